//! Other local users: the broker serves only its owner.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn another_user_is_refused_on_the_control_socket_even_when_it_is_world_writable() {
    if !can_switch_user() {
        return;
    }
    let env = TestEnv::new();
    std::fs::write(env.path("work/x.c"), "int x(void) { return 1; }\n").unwrap();
    let out = env.tcpb().args(["gcc", "-c", "x.c"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let s = env.status("");
    assert!(
        s["broker"].is_object(),
        "the owner's compile started a broker"
    );
    // Open every permission on the way to the socket, by mistake.
    let run = env.runtime_dir();
    for dir in [env.dir.path(), &env.path("run"), &run] {
        chmod(dir, 0o777);
    }
    chmod(&run.join("broker.sock"), 0o777);
    let out = env
        .cmd("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            env!("CARGO_BIN_EXE_tcpb"),
            "status",
            "--json",
        ])
        .env("TCPB_RUNTIME_DIR", &run)
        .env("TCPB_STATE_DIR", env.path("nobody-state"))
        .output()
        .unwrap();
    let text = output_text(&out);
    let answered = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .is_ok_and(|v| v["broker"].is_object());
    assert!(
        !answered,
        "nobody was answered by the owner's broker: {text}"
    );
    wait_for(Duration::from_secs(5), "the refusal in the log", || {
        env.log().contains("control connection from another user")
    });
    // The owner is still served.
    let out = env.tcpb().args(["gcc", "-c", "x.c"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(env.status("")["broker"].is_object());
    assert_eq!(
        env.brokers_started(),
        1,
        "nobody did not replace the broker"
    );
}

#[test]
fn broker_refuses_a_runtime_directory_others_can_write() {
    let env = TestEnv::new();
    let run = env.runtime_dir();
    std::fs::create_dir_all(&run).unwrap();
    chmod(&run, 0o777);
    let out = output_within(
        {
            let mut c = env.tcpb();
            c.arg("broker");
            c
        },
        Duration::from_secs(10),
    );
    let text = output_text(&out);
    assert!(!out.status.success(), "the broker started: {text}");
    assert!(
        text.contains(&run.display().to_string()) && text.contains("writable by other users"),
        "the error names the directory and why: {text}"
    );
    assert!(!run.join("broker.sock").exists());
    // A compile still works: it says why and compiles locally.
    std::fs::write(env.path("work/x.c"), "int x(void) { return 1; }\n").unwrap();
    let out = env.tcpb().args(["gcc", "-c", "x.c"]).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("writable by other users"), "{text}");
    assert!(env.path("work/x.o").exists());
}

#[test]
fn another_user_is_refused_on_a_live_relay_port() {
    if !have_distccd() || !can_switch_user() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = d.host(2);
    std::fs::write(env.path("work/z.c"), "int z(void) { return 3; }\n").unwrap();
    let child = gated_compile(&env, &hosts).spawn().unwrap();
    let port = gated_port(&env);
    // nobody connects first, speaks, and is cut off without an answer.
    let probe =
        format!("exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'DIST00000001' >&3; cat <&3 | wc -c");
    let mut cmd = env.cmd("runuser");
    cmd.args([
        "-u",
        "nobody",
        "--",
        "timeout",
        "--foreground",
        "-k",
        "1",
        "5",
        "bash",
        "-c",
        &probe,
    ]);
    let out = output_within(cmd, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "{}",
        output_text(&out)
    );
    wait_for(Duration::from_secs(5), "the refusal in the log", || {
        env.log()
            .contains("relay connection from another user refused")
    });
    // The owner's compile still goes to the farm through that port.
    std::fs::write(env.path("gate.go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        d.compiles_ok(1),
        1,
        "compiled on the farm host, not locally"
    );
    let s = env.status(&hosts);
    assert_eq!(s["fell_back"], 0, "{s}");
}

#[test]
fn arguments_reach_the_compiler_verbatim_never_through_a_shell() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = d.host(2);
    let src = "we ird;$(touch shell-ran).c";
    write_c(&env, src, "const char *m = MSG;\n");
    let define = r#"-DMSG="a; `touch shell-ran` $(touch shell-ran) 'q' \"""#;
    let out = env
        .tcpb()
        .args(["gcc", "-O2", define, "-c", src, "-o", "o u t.o"])
        .env("DISTCC_HOSTS", &hosts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!env.path("work/shell-ran").exists(), "a shell ran");
    let want = env.path("want.o");
    let st = std::process::Command::new("gcc")
        .args(["-O2", define, "-c", src, "-o"])
        .arg(&want)
        .current_dir(env.path("work"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(env.path("work/o u t.o")).unwrap(),
        std::fs::read(want).unwrap(),
        "the object differs from gcc given the same arguments"
    );
    assert_eq!(d.compiles_ok(1), 1, "compiled on the farm host");
}

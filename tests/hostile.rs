//! Another local user, or a prepared file system, against the owner's
//! broker: the log is not theirs to fill, links and shared directories are
//! not followed or trusted, and what tcpb writes is the owner's alone.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

/// `nobody` opens `n` connections to `port` and closes each (bounded: 60 s).
fn flood_as_nobody(env: &TestEnv, port: u16, n: u32) {
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do exec 3<>/dev/tcp/127.0.0.1/{port} 2>/dev/null; \
         exec 3<&- 3>&-; i=$((i+1)); done"
    );
    let mut cmd = env.cmd("runuser");
    cmd.args(["-u", "nobody", "--", "timeout", "60", "bash", "-c", &script]);
    let _ = output_within(cmd, Duration::from_secs(90));
}

#[test]
fn another_user_flooding_relay_ports_neither_fills_the_log_nor_stops_compiles() {
    if !have_distccd() || !can_switch_user() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = d.host(2);
    write_c(&env, "z.c", "int z(int a) { return a * 5; }\n");
    let child = gated_compile(&env, &hosts).spawn().unwrap();
    let port = gated_port(&env);
    // A live lease's port: each refusal is not a line of its own.
    flood_as_nobody(&env, port, 300);
    std::fs::write(env.path("gate.go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        d.compiles_ok(1),
        1,
        "the owner's compile went to the farm: {}\n{}\n{}",
        output_text(&out),
        env.log(),
        d.log()
    );
    // The same port pooled between leases: refused without a word.
    flood_as_nobody(&env, port, 1000);
    let log = env.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("relay") && l.contains("refused"))
        .count();
    assert!(
        lines <= 2,
        "{lines} lines about 1,300 refused connections:\n{log}"
    );
    let out = env
        .tcpb()
        .args(["gcc", "-O2", "-c", "z.c", "-o", "z.o"])
        .env("DISTCC_HOSTS", &hosts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(d.compiles_ok(2), 2);
}

#[test]
fn a_runtime_directory_that_is_a_link_is_refused() {
    let env = TestEnv::new();
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    chmod(&elsewhere, 0o700);
    std::os::unix::fs::symlink(&elsewhere, env.runtime_dir()).unwrap();
    write_c(&env, "x.c", "int x;\n");
    let out = env.tcpb().args(["gcc", "-c", "x.c"]).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "compiles here: {text}");
    assert!(text.contains("symbolic link"), "{text}");
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing made there"
    );
}

#[test]
fn a_log_linked_elsewhere_is_not_written_through() {
    let env = TestEnv::new();
    let victim = env.path("home/.bashrc");
    std::fs::write(&victim, "# mine\n").unwrap();
    chmod(&env.path("state"), 0o700);
    std::os::unix::fs::symlink(&victim, env.path("state/broker.log")).unwrap();
    write_c(&env, "x.c", "int x;\n");
    let out = env.tcpb().args(["gcc", "-c", "x.c"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(env.path("work/x.o").exists());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "# mine\n");
}

#[test]
fn a_state_directory_another_user_made_is_refused() {
    if !can_switch_user() {
        return;
    }
    let env = TestEnv::new();
    let state = env.path("state");
    chmod(&state, 0o777);
    // SAFETY: chown of a directory this test made, to nobody (65534).
    let c = std::ffi::CString::new(state.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    write_c(&env, "x.c", "int x;\n");
    let out = env.tcpb().args(["gcc", "-c", "x.c"]).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "compiles here: {text}");
    assert!(text.contains(&state.display().to_string()), "{text}");
    assert!(!state.join("broker.log").exists(), "{text}");
}

#[test]
fn what_tcpb_writes_is_private_whatever_the_umask() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    write_c(&env, "z.c", "int z(int a) { return a; }\n");
    // A log an earlier tcpb made under umask 022.
    std::fs::write(env.path("state/broker.log"), "earlier\n").unwrap();
    chmod(&env.path("state/broker.log"), 0o644);
    let mut cmd = env.tcpb();
    cmd.args(["gcc", "-c", "z.c"])
        .env("DISTCC_HOSTS", d.host(2));
    // SAFETY: umask in the child before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::umask(0o022);
            Ok(())
        });
    }
    assert!(cmd.status().unwrap().success());
    assert!(env.tcpb().arg("stop").status().unwrap().success());
    let mode = |p: &str| std::fs::metadata(env.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("state"), 0o700);
    for f in ["state/state.json", "state/costs.json", "state/broker.log"] {
        assert_eq!(mode(f), 0o600, "{f}");
    }
}

#[test]
fn masquerade_refuses_a_directory_another_user_owns_or_can_write() {
    if !can_switch_user() {
        return;
    }
    let env = TestEnv::new();
    let shared = env.path("shared-bin");
    std::fs::create_dir_all(&shared).unwrap();
    chmod(&shared, 0o777);
    let c = std::ffi::CString::new(shared.to_str().unwrap()).unwrap();
    // SAFETY: chown of a directory this test made.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    let out = env
        .tcpb()
        .args(["masquerade", "install"])
        .arg(&shared)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("uid 65534"),
        "{}",
        output_text(&out)
    );
    // Ours but open to everyone: refused too.
    let open = env.path("open-bin");
    std::fs::create_dir_all(&open).unwrap();
    chmod(&open, 0o777);
    let out = env
        .tcpb()
        .args(["masquerade", "install"])
        .arg(&open)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert_eq!(std::fs::metadata(&open).unwrap().uid(), unsafe {
        libc::geteuid()
    });
}

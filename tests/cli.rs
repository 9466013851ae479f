//! The command line without a farm: status with no broker, errors that
//! name what is wrong, the recursion guard.

mod common;
use common::*;
use std::os::unix::process::CommandExt;

#[test]
fn status_without_broker_shows_configured_farm_and_starts_nothing() {
    let env = TestEnv::new();
    let out = env
        .tcpb()
        .arg("status")
        .env("DISTCC_HOSTS", "build1/8 build2:4000,lzo")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not running"), "{text}");
    assert!(
        text.contains("build1:3632") && text.contains("build2:4000"),
        "{text}"
    );
    assert!(text.contains("DISTCC_HOSTS"), "{text}");
    assert!(
        !text.contains("compiles ("),
        "no compile counts without a broker: {text}"
    );
    let s = env.status("build1/8");
    assert!(s["broker"].is_null());
    assert_eq!(s["queued"], 0);
    assert_eq!(s["hosts"][0]["name"], "build1:3632");
    assert_eq!(s["hosts"][0]["slots"], 8);
    assert_eq!(s["hosts"][0]["state"], "unknown", "never seen: not up");
    assert!(
        !env.runtime_dir().join("broker.sock").exists(),
        "status must not start a broker"
    );
    assert_eq!(env.brokers_started(), 0);
}

#[test]
fn status_without_broker_shows_each_hosts_last_state_and_its_age() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let dead = DeadPort::new();
    let hosts = format!("{} 127.0.0.1:{}/2", d.host(2), dead.port);
    std::fs::write(env.path("work/s.c"), "int s;\n").unwrap();
    let out = env
        .tcpb()
        .args(["gcc", "-c", "s.c"])
        .env("DISTCC_HOSTS", &hosts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let dead_name = format!("127.0.0.1:{}", dead.port);
    env.wait_status(&hosts, std::time::Duration::from_secs(10), |s| {
        host_of(s, &dead_name).is_some_and(|h| h["state"] != "unknown" && h["state"] != "up")
    });
    assert!(env.tcpb().arg("stop").output().unwrap().status.success());
    let s = env.status(&hosts);
    assert!(s["broker"].is_null(), "{s:#}");
    let live = host_of(&s, &d.name()).unwrap();
    assert_eq!(live["state"], "up", "{s:#}");
    assert!(live["seen_s"].as_u64().is_some_and(|a| a < 60), "{live}");
    let gone = host_of(&s, &dead_name).unwrap();
    assert_ne!(gone["state"], "up", "{gone}");
    let text = env
        .tcpb()
        .arg("status")
        .env("DISTCC_HOSTS", &hosts)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let line = text.lines().find(|l| l.starts_with(&d.name())).unwrap();
    assert!(line.contains("up, ") && line.contains(" ago"), "{text}");
}

#[test]
fn hosts_file_in_distcc_dir_is_read() {
    let env = TestEnv::new();
    let dd = env.path("dd");
    std::fs::create_dir_all(&dd).unwrap();
    std::fs::write(dd.join("hosts"), "# farm\nfilehost/3\n").unwrap();
    let out = env
        .tcpb()
        .args(["status", "--json"])
        .env_remove("DISTCC_HOSTS")
        .env("DISTCC_DIR", &dd)
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["hosts"][0]["name"], "filehost:3632");
    assert!(
        s["farm_origin"].as_str().unwrap().ends_with("dd/hosts"),
        "{s}"
    );
}

#[test]
fn malformed_host_entry_is_named_and_the_compile_still_runs() {
    let env = TestEnv::new();
    std::fs::write(env.path("work/m.c"), "int m;\n").unwrap();
    let out = env
        .tcpb()
        .args(["gcc", "-c", "m.c", "-o", "m.o"])
        .env("DISTCC_HOSTS", "good build1:notaport")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("\"build1:notaport\"") && err.contains("DISTCC_HOSTS"),
        "{err}"
    );
    assert!(env.path("work/m.o").exists());
    let st = env
        .tcpb()
        .arg("status")
        .env("DISTCC_HOSTS", "x/0")
        .output()
        .unwrap();
    assert!(!st.status.success());
    assert!(stderr_of(&st).contains("\"x/0\""), "{}", output_text(&st));
}

#[test]
fn zeroconf_is_skipped_with_a_warning() {
    let env = TestEnv::new();
    std::fs::write(env.path("work/w.c"), "int w;\n").unwrap();
    let farm = "+zeroconf localhost/2";
    let out = env
        .tcpb()
        .args(["gcc", "-c", "w.c", "-o", "w.o"])
        .env("DISTCC_HOSTS", farm)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let err = stderr_of(&out);
    assert!(err.contains("\"+zeroconf\""), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // Said once per build (process group), not on every compile.
    let again = env
        .tcpb()
        .args(["gcc", "-c", "w.c", "-o", "w.o"])
        .env("DISTCC_HOSTS", farm)
        .output()
        .unwrap();
    assert_eq!(stderr_of(&again), "");
    let mut other_build = env.tcpb();
    other_build
        .args(["gcc", "-c", "w.c", "-o", "w.o"])
        .env("DISTCC_HOSTS", farm)
        .process_group(0);
    let other = other_build.output().unwrap();
    assert!(
        stderr_of(&other).contains("+zeroconf"),
        "{}",
        output_text(&other)
    );
    let s = env.status(farm);
    assert_eq!(s["hosts"].as_array().unwrap().len(), 1, "{s}");
    let text = env.tcpb().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("not used:") && text.contains("+zeroconf"),
        "{text}"
    );
}

#[test]
fn compiler_leading_back_to_tcpb_fails_clearly() {
    let env = TestEnv::new();
    let bin = env.path("loop");
    std::fs::create_dir_all(&bin).unwrap();
    // A "gcc" that is a script calling `tcpb gcc` again.
    std::fs::write(
        bin.join("gcc"),
        format!("#!/bin/sh\nexec {TCPB} gcc \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("gcc"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    std::fs::write(env.path("work/r.c"), "int r;\n").unwrap();
    let out = env
        .tcpb()
        .args(["gcc", "-c", "r.c"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("led back to tcpb"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn unknown_compiler_is_named() {
    let env = TestEnv::new();
    let out = env
        .tcpb()
        .args(["no-such-cc-xyz", "-c", "a.c"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr_of(&out).contains("\"no-such-cc-xyz\""),
        "{}",
        output_text(&out)
    );
    assert!(!stderr_of(&out).contains("did you mean"));
}

#[test]
fn a_mistyped_subcommand_is_suggested() {
    let env = TestEnv::new();
    for (typo, meant) in [
        ("statsu", "status"),
        ("stpo", "stop"),
        ("masqerade", "masquerade"),
    ] {
        let out = env.tcpb().arg(typo).output().unwrap();
        assert_eq!(out.status.code(), Some(127));
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("\"{typo}\""))
                && err.contains(&format!("did you mean `tcpb {meant}`?")),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn missing_distcc_is_named_and_the_compile_runs_locally() {
    let env = TestEnv::new();
    std::fs::write(env.path("work/n.c"), "int n;\n").unwrap();
    let out = env
        .tcpb()
        .args(["gcc", "-c", "n.c", "-o", "n.o"])
        .env("DISTCC_HOSTS", "127.0.0.1:1/2")
        .env("TCPB_DISTCC", "/nonexistent/distcc")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        stderr_of(&out).contains("TCPB_DISTCC=/nonexistent/distcc"),
        "{}",
        output_text(&out)
    );
    assert!(env.path("work/n.o").exists());
}

#[test]
fn bad_config_is_named_with_its_line() {
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 5\nbogus_key = 1\n");
    std::fs::write(env.path("work/k.c"), "int k;\n").unwrap();
    let out = env
        .tcpb()
        .args(["gcc", "-c", "k.c", "-o", "k.o"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the compile still runs: {}",
        output_text(&out)
    );
    let err = stderr_of(&out);
    assert!(
        err.contains("config.toml") && err.contains("line 3") && err.contains("bogus_key"),
        "{err}"
    );
    assert!(env.path("work/k.o").exists());
}

#[test]
fn help_and_version() {
    let env = TestEnv::new();
    let out = env.tcpb().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("status") && text.contains("tcpb COMPILER"),
        "{text}"
    );
    let out = env.tcpb().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tcpb "));
}

#[test]
fn log_shows_the_last_lines_and_follows_the_broker() {
    let env = TestEnv::new();
    let out = env.tcpb().arg("log").output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no broker log yet"),
        "{}",
        output_text(&out)
    );
    std::fs::write(env.path("work/l.c"), "int l;\n").unwrap();
    assert!(
        env.tcpb()
            .args(["gcc", "-c", "l.c"])
            .status()
            .unwrap()
            .success()
    );
    let all = env.tcpb().args(["log", "-n", "1000"]).output().unwrap();
    assert!(String::from_utf8_lossy(&all.stdout).contains("broker started"));
    let one = env.tcpb().args(["log", "-n", "1"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&one.stdout).lines().count(), 1);
    // Follow: once the follower has printed the last line (so it has
    // read the log), the stop appears in what it prints next.
    let mut follow = env
        .tcpb()
        .args(["log", "-f", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let limit = std::time::Duration::from_secs(10);
    let mut seen = rx
        .recv_timeout(limit)
        .expect("the follower printed the last line");
    assert!(env.tcpb().arg("stop").status().unwrap().success());
    let deadline = std::time::Instant::now() + limit;
    while !seen.contains("broker stopped") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(more) => seen.push_str(&more),
            Err(_) => break,
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.contains("broker stopped"),
        "the followed log showed the stop: {seen}"
    );
}

#[test]
fn man_page_renders_with_every_subcommand() {
    let env = TestEnv::new();
    let out = env.tcpb().arg("man").output().unwrap();
    assert!(out.status.success());
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(roff.contains(".TH tcpb 1"), "{roff}");
    for sub in ["status", "top", "host", "init", "masquerade", "log"] {
        assert!(
            roff.contains(&format!("tcpb\\-{sub}")) || roff.contains(sub),
            "{sub}"
        );
    }
}

#[test]
fn a_full_log_is_set_aside_while_the_broker_runs() {
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\nlog_max_kib = 1\n");
    let compile = |name: &str| {
        std::fs::write(env.path(&format!("work/{name}.c")), "int v;\n").unwrap();
        let out = env
            .tcpb()
            .args(["gcc", "-c", &format!("{name}.c")])
            .env("TCPB_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    };
    compile("first");
    let pid = env.status("")["broker"]["pid"].clone();
    for i in 0..20 {
        compile(&format!("f{i}"));
    }
    let old = env.path("state/broker.log.old");
    wait_for(std::time::Duration::from_secs(10), "broker.log.old", || {
        old.exists()
    });
    assert!(
        std::fs::read_to_string(&old)
            .unwrap()
            .contains("broker started")
    );
    compile("after");
    wait_for(std::time::Duration::from_secs(5), "the new log", || {
        env.log().contains("log set aside")
    });
    assert_eq!(env.status("")["broker"]["pid"], pid, "the same broker");
}

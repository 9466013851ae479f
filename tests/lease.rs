//! Broker life cycle and leases: cold start, slots freed by a killed client,
//! relay failover when a host refuses, and live farm changes.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Compiles `src` to `obj` through tcpb with `hosts` as the farm.
fn compile(env: &TestEnv, hosts: &str, src: &str, obj: &str) -> std::process::Output {
    env.tcpb()
        .args(["gcc", "-O2", "-c", src, "-o", obj])
        .env("DISTCC_HOSTS", hosts)
        .output()
        .unwrap()
}

#[test]
fn cold_start_of_24_compiles_starts_one_broker() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 4);
    let mut children = Vec::new();
    for i in 0..24 {
        write_c(
            &env,
            &format!("f{i}.c"),
            &format!("int f{i}(int x) {{ return x * {i} + 1; }}\n"),
        );
    }
    for i in 0..24 {
        let child = env
            .tcpb()
            .args([
                "gcc",
                "-O2",
                "-c",
                &format!("f{i}.c"),
                "-o",
                &format!("f{i}.o"),
            ])
            .env("DISTCC_HOSTS", d.host(4))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "compile {i}: {}", output_text(&out));
        assert_same_object(&env, &format!("f{i}.o"), &format!("f{i}.c"));
    }
    assert_eq!(env.brokers_started(), 1, "log:\n{}", env.log());
    assert_eq!(d.compiles_ok(24), 24);
    let s = env.status(&d.host(4));
    let pid = s["broker"]["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("broker"),
        "shows as `tcpb broker`"
    );
}

/// A compiler that sleeps, so a lease stays held.
fn slow_compiler(env: &TestEnv) -> std::path::PathBuf {
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cc = bin.join("slowcc");
    std::fs::write(
        &cc,
        "#!/bin/sh\ntrap 'echo got-term > \"$TERM_MARK\"; exit 143' TERM\necho ready > \"$TERM_MARK.ready\"\nsleep 30 &\nwait $!\n",
    )
    .unwrap();
    std::fs::set_permissions(&cc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    cc
}

#[test]
fn kill_9_of_a_client_frees_its_slot() {
    let env = TestEnv::new();
    let cc = slow_compiler(&env);
    let farm = "localhost/1";
    write_c(&env, "x.c", "int x;\n");
    write_c(&env, "y.c", "int y(void) { return 7; }\n");
    let mut holder = env
        .tcpb()
        .arg(&cc)
        .args(["-c", "x.c"])
        .env("DISTCC_HOSTS", farm)
        .env("TERM_MARK", env.path("mark"))
        .spawn()
        .unwrap();
    env.wait_status(farm, Duration::from_secs(10), |s| s["running"] == 1);
    let waiter = env
        .tcpb()
        .args(["gcc", "-O2", "-c", "y.c", "-o", "y.o"])
        .env("DISTCC_HOSTS", farm)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_status(farm, Duration::from_secs(10), |s| s["queued"] == 1);
    let started = Instant::now();
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the queued compile ran once the slot was freed"
    );
    assert_same_object(&env, "y.o", "y.c");
    let s = env.wait_status(farm, Duration::from_secs(5), |s| {
        s["running"] == 0 && s["queued"] == 0
    });
    assert_eq!(s["hosts"][0]["busy"], 0);
    let _ = Command::new("pkill")
        .args(["-f", &cc.to_string_lossy()])
        .status();
}

#[test]
fn sigterm_is_forwarded_to_the_compiler() {
    let env = TestEnv::new();
    let cc = slow_compiler(&env);
    let mark = env.path("mark");
    let mut c = env
        .tcpb()
        .arg(&cc)
        .args(["-c", "x.c"])
        .env("DISTCC_HOSTS", "localhost/1")
        .env("TERM_MARK", &mark)
        .spawn()
        .unwrap();
    env.wait_status("localhost/1", Duration::from_secs(10), |s| {
        s["running"] == 1
    });
    let ready = env.path("mark.ready");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the compiler never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let st = c.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(143),
        "the compiler's exit status passes through"
    );
    assert_eq!(std::fs::read_to_string(&mark).unwrap().trim(), "got-term");
}

#[test]
fn refusing_host_is_skipped_for_the_next_best() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let live = Distccd::start(&env, 2);
    let dead_port = DeadPort::new();
    let dead = dead_port.port;
    // The dead host is the fastest, so it is chosen first.
    env.write_config(&format!(
        "[[host]]\nname = \"127.0.0.1:{dead}\"\nspeed = 10.0\n"
    ));
    let hosts = format!("127.0.0.1:{dead}/2 {}", live.host(2));
    write_c(&env, "a.c", "int a(int x) { return x << 3; }\n");
    let out = compile(&env, &hosts, "a.c", "a.o");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        live.compiles_ok(1),
        1,
        "the compile landed on the live host"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("failed to distribute"),
        "{}",
        output_text(&out)
    );
    assert_same_object(&env, "a.o", "a.c");
    let s = env.status(&hosts);
    let d = s["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == format!("127.0.0.1:{dead}"))
        .unwrap()
        .clone();
    // The relay met it (one failure), unless the first probe found it
    // dead before the compile came.
    assert!(d["failures"].as_u64().unwrap() <= 1, "{s:#}");
    assert!(
        d["state"] == "suspect" || d["state"] == "down",
        "out of the choice: {d}"
    );
    assert!(d["last_error"].as_str().unwrap().contains("refused"), "{d}");
}

#[test]
fn a_list_of_only_a_dead_host_compiles_here_with_one_line_from_tcpb_and_none_from_distcc() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\n[health]\ninterval_ms = 200\n");
    let dead = DeadPort::new();
    let port = dead.port;
    let hosts = format!("127.0.0.1:{port}/1");
    write_c(&env, "b.c", "int b(int x) { return x * 5; }\n");
    let out = compile(&env, &hosts, "b.c", "b.o");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same_object(&env, "b.o", "b.c");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("distcc["),
        "distcc never met the dead host: {err}"
    );
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("tcpb:")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(
        ours[0].contains(&format!("127.0.0.1:{port}")) && ours[0].contains("refused"),
        "the line names the host and why: {err}"
    );
    let lock_dir = env.runtime_dir().join("distcc/lock");
    let backoff = std::fs::read_dir(&lock_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("backoff_"))
        .count();
    assert_eq!(backoff, 0, "distcc had nothing to back off from");
    let s = env.status(&hosts);
    assert_eq!(
        (s["fell_back"].as_u64(), s["granted_local"].as_u64()),
        (Some(0), Some(1)),
        "{s:#}"
    );
    assert_eq!(
        (
            s["hosts"][0]["failures"].as_u64(),
            s["hosts"][0]["fallbacks"].as_u64()
        ),
        (Some(1), Some(0)),
        "{s:#}"
    );

    // The host comes back on the same port.
    let d = Distccd::start_on(&env, dead.revive(), 2).expect("distccd on the freed port");
    env.wait_status(&hosts, Duration::from_secs(10), |s| {
        s["hosts"][0]["state"] == "up"
    });
    let out = compile(&env, &hosts, "b.c", "b2.o");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        d.compiles_ok(1),
        1,
        "the next compile went to the host that came back"
    );
    assert_same_object(&env, "b2.o", "b.c");
}

#[test]
fn distcc_replaces_the_wrapper_and_holds_the_lease() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = d.host(2);
    write_c(&env, "z.c", "int z(void) { return 3; }\n");
    let child = gated_compile(&env, &hosts).spawn().unwrap();
    env.wait_status(&hosts, Duration::from_secs(10), |s| s["running"] == 1);
    wait_for(Duration::from_secs(10), "distcc's pid", || {
        env.path("gate.pid").exists()
    });
    let pid: u32 = std::fs::read_to_string(env.path("gate.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, child.id(), "distcc runs in the wrapper's own process");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        env.status(&hosts)["running"],
        1,
        "the lease lives on in distcc"
    );
    std::fs::write(env.path("gate.go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    env.wait_status(&hosts, Duration::from_secs(5), |s| s["running"] == 0);
    assert_same_object(&env, "z.o", "z.c");
    assert_eq!(d.compiles_ok(1), 1, "compiled on the farm host");
}

#[test]
fn a_build_whose_list_names_a_dead_host_first_shows_no_line_from_distcc() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let live = Distccd::start(&env, 2);
    let dead = DeadPort::new();
    let dead_name = format!("127.0.0.1:{}", dead.port);
    // The dead host is the fastest and listed first: chosen first.
    env.write_config(&format!(
        "[broker]\nidle_exit_s = 120\n[[host]]\nname = \"{dead_name}\"\nspeed = 10.0\n"
    ));
    let hosts = format!("{dead_name}/2 {}", live.host(2));
    reference_build(&env.path("ref"));
    copy_fixture(&env.path("b"));
    let out = output_within(
        make_through_tcpb(&env, &env.path("b"), &hosts),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same_objects(&env.path("ref"), &env.path("b"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("distcc["), "distcc met the dead host: {err}");
    let n = fixture_sources().len();
    assert_eq!(
        live.compiles_ok(n),
        n,
        "every compile on the live host: {err}"
    );
    let s = env.status(&hosts);
    assert_eq!(s["fell_back"], 0, "{s:#}");
    assert_ne!(host_of(&s, &dead_name).unwrap()["state"], "up", "{s:#}");
}

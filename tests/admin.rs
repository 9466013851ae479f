//! `tcpb host …`, `tcpb reload` and the queue limit: changes apply at once
//! without disturbing compiles in flight and survive a broker restart.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn host_cmd(env: &TestEnv, hosts: &str, args: &[&str]) -> std::process::Output {
    env.tcpb()
        .arg("host")
        .args(args)
        .env("DISTCC_HOSTS", hosts)
        .output()
        .unwrap()
}

fn ok_line(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", output_text(out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn drained_host_gets_no_new_jobs_and_stays_listed() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let (a, b) = (Distccd::start(&env, 2), Distccd::start(&env, 2));
    let hosts = format!("{} {}", a.host(2), b.host(2));
    let objs = heavy_project(&env.path("p"), 20);
    reference_objects(&env.path("p"), &env.path("ref"));
    let build = spawn_build(&env, &env.path("p"), &hosts);
    // The broker may not have adopted the build's farm yet: A may be absent.
    wait_for(Duration::from_secs(60), "A busy", || {
        host_of(&env.status(&hosts), &a.name()).is_some_and(|h| h["busy"].as_u64().unwrap() > 0)
    });
    let msg = ok_line(&host_cmd(&env, &hosts, &["drain", &a.name()]));
    assert!(msg.contains("draining") && msg.contains(&a.name()), "{msg}");
    let at = host_of(&env.status(&hosts), &a.name()).unwrap();
    let placed_on_a = at["jobs"].as_u64().unwrap() + at["busy"].as_u64().unwrap();
    assert_eq!(at["state"], "draining");
    let out = build.join().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_objects_match(&objs, &env.path("ref"), &env.path("p"));
    let after = host_of(&env.status(&hosts), &a.name()).expect("a drained host stays listed");
    assert_eq!(
        after["jobs"].as_u64().unwrap(),
        placed_on_a,
        "no job was placed on A after the drain"
    );
    assert_eq!(after["state"], "draining");
    let msg = ok_line(&host_cmd(&env, &hosts, &["enable", &a.name()]));
    assert!(msg.contains("enabled"), "{msg}");
    assert_eq!(
        host_of(&env.status(&hosts), &a.name()).unwrap()["state"],
        "up"
    );
}

#[test]
fn remove_and_add_during_a_build() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let (a, b) = (Distccd::start(&env, 2), Distccd::start(&env, 2));
    let hosts = a.host(2);
    let objs = heavy_project(&env.path("p"), 20);
    reference_objects(&env.path("p"), &env.path("ref"));
    let build = spawn_build(&env, &env.path("p"), &hosts);
    wait_for(Duration::from_secs(60), "A busy", || {
        host_of(&env.status(&hosts), &a.name()).is_some_and(|h| h["busy"].as_u64().unwrap() > 0)
    });
    let msg = ok_line(&host_cmd(
        &env,
        &hosts,
        &["add", &b.host(2), "--speed", "2"],
    ));
    assert!(msg.contains("added") && msg.contains(&b.name()), "{msg}");
    let msg = ok_line(&host_cmd(&env, &hosts, &["remove", &a.name()]));
    assert!(msg.contains("removed"), "{msg}");
    let out = build.join().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_objects_match(&objs, &env.path("ref"), &env.path("p"));
    assert!(b.compiles_ok(1) >= 1, "the added host got work");
    let s = env.wait_status(&hosts, Duration::from_secs(10), |s| {
        host_of(s, &a.name()).is_none()
    });
    assert_eq!(host_of(&s, &b.name()).unwrap()["speed"], 2.0);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .matches("failed to distribute")
            .count()
            == 0,
        "removal disturbed no compile in flight"
    );
}

#[test]
fn overlay_survives_a_broker_restart_until_reset() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let (a, b) = (Distccd::start(&env, 2), Distccd::start(&env, 2));
    let hosts = format!("{} {}", a.host(2), b.host(2));
    std::fs::write(env.path("work/o.c"), "int o;\n").unwrap();
    let compile = || {
        let out = env
            .tcpb()
            .args(["gcc", "-c", "o.c"])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    };
    compile();
    ok_line(&host_cmd(&env, &hosts, &["remove", &a.name()]));
    ok_line(&host_cmd(
        &env,
        &hosts,
        &["set", &b.name(), "--slots", "7", "--speed", "3"],
    ));
    ok_line(&env.tcpb().arg("stop").output().unwrap());
    // A configured-farm view without a broker already shows the overlay.
    let s = env.status(&hosts);
    assert!(s["broker"].is_null());
    assert!(host_of(&s, &a.name()).is_none(), "{s:#}");
    compile();
    let s = env.status(&hosts);
    assert!(!s["broker"].is_null());
    assert!(
        host_of(&s, &a.name()).is_none(),
        "removed stays removed though DISTCC_HOSTS lists it: {s:#}"
    );
    let bh = host_of(&s, &b.name()).unwrap();
    assert_eq!(
        (bh["slots"].as_u64(), bh["speed"].as_f64()),
        (Some(7), Some(3.0))
    );
    assert_eq!(env.brokers_started(), 2);
    let msg = ok_line(&host_cmd(&env, &hosts, &["reset"]));
    assert!(msg.contains("dropped 2 runtime changes"), "{msg}");
    let s = env.status(&hosts);
    assert!(host_of(&s, &a.name()).is_some());
    assert_eq!(host_of(&s, &b.name()).unwrap()["slots"], 2);
}

#[test]
fn a_host_removed_and_added_back_keeps_its_counts_and_speed() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let a = Distccd::start(&env, 2);
    let hosts = a.host(2);
    for i in 0..4 {
        let src = format!("r{i}.c");
        std::fs::write(env.path("work").join(&src), format!("int r{i};\n")).unwrap();
        let out = env
            .tcpb()
            .args(["gcc", "-c", &src])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let before = env.wait_status(&hosts, Duration::from_secs(10), |s| {
        host_of(s, &a.name()).is_some_and(|h| h["jobs"] == 4 && !h["learned_speed"].is_null())
    });
    let learned = host_of(&before, &a.name()).unwrap()["learned_speed"].clone();
    ok_line(&host_cmd(&env, &hosts, &["remove", &a.name()]));
    assert!(host_of(&env.status(&hosts), &a.name()).is_none());
    ok_line(&host_cmd(&env, &hosts, &["add", &hosts]));
    let h = host_of(&env.status(&hosts), &a.name()).expect("added back");
    assert_eq!(h["jobs"], 4, "{h:#}");
    assert_eq!(h["learned_speed"], learned, "{h:#}");
    // And what it kept is what the broker saves.
    ok_line(&env.tcpb().arg("stop").output().unwrap());
    let h = host_of(&env.status(&hosts), &a.name()).unwrap();
    assert_eq!(
        (h["jobs"].as_u64(), h["samples"].as_u64()),
        (Some(4), Some(3)),
        "{h:#}"
    );
}

#[test]
fn reload_and_sighup_apply_the_config() {
    let env = TestEnv::new();
    let hosts = "build1/2";
    std::fs::write(env.path("work/c.c"), "int c;\n").unwrap();
    // A host that does not exist: the compile falls back, the broker runs.
    let _ = env
        .tcpb()
        .args(["gcc", "-c", "c.c"])
        .env("DISTCC_HOSTS", hosts)
        .env("TCPB_DISTCC", "/nonexistent")
        .output()
        .unwrap();
    env.write_config("[broker]\nidle_exit_s = 120\n[[host]]\nname = \"build1\"\nspeed = 3.0\n");
    let msg = ok_line(&env.tcpb().arg("reload").output().unwrap());
    assert!(msg.contains("reloaded"), "{msg}");
    assert_eq!(
        host_of(&env.status(hosts), "build1:3632").unwrap()["speed"],
        3.0
    );
    env.write_config("[broker]\nidle_exit_s = 120\n[[host]]\nname = \"build1\"\nspeed = 5.0\n");
    let pid = env.status(hosts)["broker"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: signalling the test's own broker.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    env.wait_status(hosts, Duration::from_secs(10), |s| {
        host_of(s, "build1:3632").unwrap()["speed"] == 5.0
    });
    // A bad config is refused with its line; the old one stays.
    env.write_config("[broker]\nnope = 1\n");
    let out = env.tcpb().arg("reload").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("nope"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(
        host_of(&env.status(hosts), "build1:3632").unwrap()["speed"],
        5.0
    );
}

#[test]
fn admin_errors_are_one_clear_line() {
    let env = TestEnv::new();
    let hosts = "build1/2";
    for (args, needle) in [
        (vec!["add", "build9:notaport"], "\"build9:notaport\""),
        (vec!["drain", "nosuchhost"], "no host nosuchhost:3632"),
        (
            vec!["set", "build1", "--slots", "0"],
            "slots must be at least 1",
        ),
        (vec!["set", "build1"], "nothing to set"),
        (
            vec!["add", "b2", "--speed", "-1"],
            "speed -1 is not a number from 0.001 to 1000",
        ),
    ] {
        let out = host_cmd(&env, hosts, &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn queued_compile_runs_locally_after_queue_timeout() {
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\nqueue_timeout_s = 1\n");
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cc = bin.join("slowcc");
    std::fs::write(&cc, "#!/bin/sh\nsleep 20\n").unwrap();
    std::fs::set_permissions(&cc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let farm = "localhost/1";
    std::fs::write(env.path("work/q.c"), "int q(void) { return 4; }\n").unwrap();
    let mut holder = env
        .tcpb()
        .arg(&cc)
        .args(["-c", "x.c"])
        .env("DISTCC_HOSTS", farm)
        .spawn()
        .unwrap();
    env.wait_status(farm, Duration::from_secs(10), |s| s["running"] == 1);
    let started = Instant::now();
    let waiter = env
        .tcpb()
        .args(["gcc", "-c", "q.c"])
        .env("DISTCC_HOSTS", farm)
        .spawn()
        .unwrap();
    let s = env.wait_status(farm, Duration::from_secs(10), |s| s["queued"] == 1);
    assert_eq!(s["queue"][0]["position"], 1, "the queue is visible: {s:#}");
    assert_eq!(s["queue"][0]["source"], "q.c");
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success());
    let waited = started.elapsed();
    assert!(env.path("work/q.o").exists());
    assert!(
        waited < Duration::from_secs(15),
        "ran locally instead of waiting for the 20 s holder"
    );
    let s = env.status(farm);
    assert_eq!(s["queue_timeouts"], 1);
    assert_eq!(s["running"], 1, "the holder still runs");
    eprintln!(
        "RESULT queue timeout 1 s: compile finished after {} ms",
        waited.as_millis()
    );
    holder.kill().unwrap();
    let _ = holder.wait();
    let _ = std::process::Command::new("pkill")
        .args(["-f", &cc.to_string_lossy()])
        .status();
}

#[test]
fn unreachable_broker_is_one_line_naming_the_path() {
    let env = TestEnv::new();
    let not_a_dir = env.path("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let out = env
        .tcpb()
        .args(["host", "add", "b1"])
        .env("TCPB_RUNTIME_DIR", &not_a_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&*not_a_dir.to_string_lossy()), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn force_remove_ends_running_jobs_and_disable_stops_new_ones() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    // A host that accepts and never answers holds the job until --force.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_name = format!("127.0.0.1:{}", hole.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming().take(50) {
            held.push(c);
        }
    });
    let live = Distccd::start(&env, 2);
    let hosts = format!("{hole_name}/1 {}", live.host(1));
    env.write_config(&format!(
        "[broker]\nidle_exit_s = 120\n[[host]]\nname = \"{hole_name}\"\nspeed = 9.0\n"
    ));
    std::fs::write(env.path("work/f.c"), "int f(void) { return 2; }\n").unwrap();
    let started = Instant::now();
    let mut cmd = env.tcpb();
    cmd.args(["gcc", "-c", "f.c"]).env("DISTCC_HOSTS", &hosts);
    let job = std::thread::spawn(move || output_within(cmd, Duration::from_secs(60)));
    wait_for(Duration::from_secs(10), "the job on the hung host", || {
        host_of(&env.status(&hosts), &hole_name).is_some_and(|h| h["busy"] == 1)
    });
    let msg = ok_line(&host_cmd(&env, &hosts, &["remove", "--force", &hole_name]));
    assert!(msg.contains("ended its 1 running jobs"), "{msg}");
    let out = job.join().unwrap();
    assert!(
        out.status.success(),
        "distcc compiled it locally: {}",
        output_text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(env.path("work/f.o").exists());

    let msg = ok_line(&host_cmd(&env, &hosts, &["disable", &live.name()]));
    assert!(msg.contains("disabled"), "{msg}");
    assert_eq!(
        host_of(&env.status(&hosts), &live.name()).unwrap()["state"],
        "disabled"
    );
    let out = env
        .tcpb()
        .args(["gcc", "-c", "f.c", "-o", "f2.o"])
        .env("DISTCC_HOSTS", &hosts)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        live.compiles_ok(0),
        0,
        "a disabled host gets no job (it ran on local CPUs)"
    );
}

#[test]
fn an_added_host_where_nothing_listens_is_never_shown_up() {
    let env = TestEnv::new();
    let dead = DeadPort::new();
    let name = format!("127.0.0.1:{}", dead.port);
    let msg = ok_line(&host_cmd(&env, "", &["add", &format!("{name}/1")]));
    assert!(msg.contains("(1 slot, speed 1)"), "{msg}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let state = host_of(&env.status(""), &name).unwrap()["state"].clone();
        assert_ne!(state, "up", "shown up before a probe: {seen:?}");
        seen.push(state.as_str().unwrap().to_string());
        if state == "suspect" || state == "down" {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|s| s == "suspect" || s == "down"),
        "the probe found it dead: {seen:?}"
    );
}

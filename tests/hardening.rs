//! Faults and bad values that once cost a compile, a file or the log: a
//! host that hangs, values past every limit, a failed save, a large farm,
//! a stopped broker.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_stopped_host_is_found_hung_before_distcc_gives_up() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let hung = Distccd::start(&env, 2);
    let good = Distccd::start(&env, 2);
    let hosts = format!("{} {}", hung.host(2), good.host(2));
    reference_build(&env.path("ref"));
    hung.stop();
    // distcc gives up on a silent host after 8 s here.
    let build = |dir: &str| {
        let dir = env.path(dir);
        copy_fixture(&dir);
        let mut cmd = make_through_tcpb(&env, &dir, &hosts);
        cmd.env("DISTCC_IO_TIMEOUT", "8");
        let started = Instant::now();
        let out = output_within(cmd, Duration::from_secs(120));
        assert!(out.status.success(), "{}", output_text(&out));
        (stderr_of(&out), started.elapsed())
    };
    let (_, took) = build("b1");
    assert_same_objects(&env.path("ref"), &env.path("b1"));
    let s = env.status(&hosts);
    let h = host_of(&s, &hung.name()).unwrap();
    assert_ne!(h["state"], "up", "{h:#}");
    assert!(h["failures"].as_u64() >= Some(1), "{h:#}");
    let log = env.log();
    assert!(log.contains("hung") && log.contains(&hung.name()), "{log}");
    // The next build loses nothing to it.
    let fell_back = s["fell_back"].as_u64().unwrap();
    let (err, _) = build("b2");
    assert_same_objects(&env.path("ref"), &env.path("b2"));
    assert!(!err.contains("failed to distribute"), "{err}");
    assert_eq!(env.status(&hosts)["fell_back"].as_u64().unwrap(), fell_back);
    hung.resume();
    eprintln!("RESULT hang: first build {took:?} with {fell_back} compiles cut after 6 s");
}

#[test]
fn a_huge_slot_count_is_refused_where_it_enters() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    write_c(&env, "z.c", "int z(int a) { return a + 1; }\n");
    let compile = |hosts: &str| {
        let out = env
            .tcpb()
            .args(["gcc", "-O2", "-c", "z.c", "-o", "z.o"])
            .env("DISTCC_HOSTS", hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert_same_object(&env, "z.o", "z.c");
        stderr_of(&out)
    };
    // A host list: the compile says why and runs here; no broker loop.
    for slots in ["4294967295", "100000000", "99999999999999"] {
        let err = compile(&format!("{}/{slots}", d.name()));
        assert!(err.contains(slots) && err.contains("1024"), "{err}");
    }
    assert!(env.brokers_started() <= 1, "{}", env.log());
    // `tcpb host set`: refused, nothing changed.
    let hosts = d.host(2);
    compile(&hosts);
    let out = env
        .tcpb()
        .args(["host", "set", &d.name(), "--slots", "4294967295"])
        .env("DISTCC_HOSTS", &hosts)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(stderr_of(&out).contains("1024"), "{}", output_text(&out));
    assert_eq!(host_of(&env.status(&hosts), &d.name()).unwrap()["slots"], 2);
    compile(&hosts);
    // config.toml: `tcpb reload` refuses it and keeps the old config.
    env.write_config(&format!(
        "[[host]]\nname = \"{}\"\nslots = 4294967295\n",
        d.name()
    ));
    let out = env.tcpb().arg("reload").output().unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(stderr_of(&out).contains("1024"), "{}", output_text(&out));
    compile(&hosts);
}

#[test]
fn a_slot_count_past_the_limit_in_state_json_is_dropped_with_a_warning() {
    let env = TestEnv::new();
    let state = r#"{"overlay":{"set":{"b9:3632":{"slots":4294967295}}}}"#;
    std::fs::write(env.path("state/state.json"), state).unwrap();
    write_c(&env, "z.c", "int z;\n");
    let out = env
        .tcpb()
        .args(["gcc", "-c", "z.c", "-o", "z.o"])
        .env("DISTCC_HOSTS", "b9/2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    wait_for(Duration::from_secs(5), "the warning", || {
        env.log().contains("out of bounds")
    });
    assert!(env.log().contains("b9:3632"), "{}", env.log());
    assert_eq!(host_of(&env.status("b9/2"), "b9:3632").unwrap()["slots"], 2);
}

#[test]
fn config_values_near_the_integer_limits_are_refused_with_the_limit_named() {
    let env = TestEnv::new();
    write_c(&env, "z.c", "int z;\n");
    let ok = env.tcpb().args(["gcc", "-c", "z.c"]).output().unwrap();
    assert!(ok.status.success(), "{}", output_text(&ok));
    for (key, section) in [
        ("queue_timeout_s", "broker"),
        ("job_timeout_s", "broker"),
        ("shutdown_grace_s", "broker"),
        ("interval_ms", "health"),
    ] {
        env.write_config(&format!("[{section}]\n{key} = 18446744073709551615\n"));
        let out = env.tcpb().arg("reload").output().unwrap();
        let err = stderr_of(&out);
        assert!(!out.status.success(), "{key}: {}", output_text(&out));
        assert!(err.contains(key) && err.contains("over the limit"), "{err}");
    }
    env.write_config("");
    let out = env.tcpb().arg("reload").output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn a_failed_save_is_an_error_and_leaves_nothing_behind() {
    let env = TestEnv::new();
    write_c(&env, "z.c", "int z;\n");
    let hosts = "127.0.0.1:9/2";
    let ok = env
        .tcpb()
        .args(["gcc", "-c", "z.c"])
        .env("DISTCC_HOSTS", hosts)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", output_text(&ok));
    // Something in the way of state.json that no save can replace.
    let state = env.path("state/state.json");
    let _ = std::fs::remove_file(&state);
    std::fs::create_dir_all(state.join("in-the-way")).unwrap();
    for speed in ["0.9", "0.8", "0.7"] {
        let out = env
            .tcpb()
            .args(["host", "set", "127.0.0.1:9", "--speed", speed])
            .env("DISTCC_HOSTS", hosts)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}", output_text(&out));
        assert!(
            stderr_of(&out).contains("could not be saved"),
            "{}",
            output_text(&out)
        );
    }
    let names: Vec<String> = std::fs::read_dir(env.path("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
    let errors = env.log().matches("cannot save").count();
    assert_eq!(errors, 1, "one line while it fails:\n{}", env.log());
}

#[test]
fn status_and_leases_work_with_ten_thousand_hosts_and_the_limit_is_named() {
    let env = TestEnv::new();
    // Too long for an environment variable: a hosts file, as distcc reads.
    let dd = env.path("distcc-dir");
    std::fs::create_dir_all(&dd).unwrap();
    let write_list = |n: u32| {
        let hosts: Vec<String> = (0..n)
            // Loopback addresses where nothing listens: probes are refused
            // at once.
            .map(|i| format!("127.{}.{}.{}:9/1", 1 + (i >> 16), (i >> 8) & 255, i & 255))
            .collect();
        std::fs::write(dd.join("hosts"), hosts.join("\n")).unwrap();
    };
    write_c(&env, "m.c", "int main(void) { return 0; }\n");
    let run = |args: &[&str]| {
        let mut cmd = env.tcpb();
        cmd.args(args)
            .env_remove("DISTCC_HOSTS")
            .env("DISTCC_DIR", &dd);
        output_within(cmd, Duration::from_secs(60))
    };
    write_list(10_000);
    // Preprocessing runs here: the broker takes the list without trying it.
    let out = run(&["gcc", "-E", "m.c", "-o", "m.i"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run(&["status", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let remote = s["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["local_only"] == false);
    assert_eq!(remote.count(), 10_000);
    let out = run(&["status"]);
    assert!(out.status.success(), "{}", output_text(&out));
    write_list(10_001);
    let out = run(&["gcc", "-E", "m.c", "-o", "m.i"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        stderr_of(&out).contains("10000 hosts"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn status_does_not_wait_forever_on_a_stopped_broker() {
    let env = TestEnv::new();
    write_c(&env, "z.c", "int z;\n");
    assert!(
        env.tcpb()
            .args(["gcc", "-c", "z.c"])
            .status()
            .unwrap()
            .success()
    );
    let pid = env.status("")["broker"]["pid"].as_u64().unwrap() as i32;
    // SAFETY: signalling the broker this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let started = Instant::now();
    let out = output_within(
        {
            let mut c = env.tcpb();
            c.arg("status");
            c
        },
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        stderr_of(&out).contains("did not answer"),
        "{}",
        output_text(&out)
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(env.tcpb().arg("status").status().unwrap().success());
}

#[test]
fn a_lease_whose_compile_never_reached_its_host_is_no_job() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = d.host(2);
    write_c(&env, "z.c", "int z;\n");
    let mut child = gated_compile(&env, &hosts).spawn().unwrap();
    wait_for(Duration::from_secs(10), "the grant", || {
        env.path("gate.pid").exists()
    });
    // The compile dies between its grant and distcc's connection.
    let pid: i32 = std::fs::read_to_string(env.path("gate.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: the gate script this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
    let s = env.wait_status(&hosts, Duration::from_secs(5), |s| s["running"] == 0);
    assert_eq!(host_of(&s, &d.name()).unwrap()["jobs"], 0, "{s:#}");
}

#[test]
fn counters_survive_a_sigkill_of_the_broker_within_seconds() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = d.host(2);
    write_c(&env, "z.c", "int z(int a) { return a; }\n");
    for _ in 0..3 {
        let out = env
            .tcpb()
            .args(["gcc", "-c", "z.c"])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let pid = env.status(&hosts)["broker"]["pid"].as_u64().unwrap() as i32;
    std::thread::sleep(Duration::from_secs(6));
    // SAFETY: the broker this test's compiles started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // A status call that meets the broker as it dies may fail: ask again.
    wait_for(Duration::from_secs(5), "the broker's exit", || {
        let out = env
            .tcpb()
            .args(["status", "--json"])
            .env("DISTCC_HOSTS", &hosts)
            .output();
        out.ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .is_some_and(|s| s["broker"].is_null())
    });
    let s = env.status(&hosts);
    assert_eq!(host_of(&s, &d.name()).unwrap()["jobs"], 3, "{s:#}");
}

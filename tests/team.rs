//! Team mode against a real etcd and real distccd: brokers of several
//! users (one under another uid when the test runs as root) share a farm
//! whose hosts record every compile they run, so going over a host's
//! slots would show at the host.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn three_brokers_never_run_more_than_a_hosts_slots_on_it() {
    if !have_distccd() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let farm_env = TestEnv::new();
    let (a, b) = (
        Distccd::start_recording(&farm_env, 8, 0.3),
        Distccd::start_recording(&farm_env, 8, 0.3),
    );
    let hosts = format!("{} {}", a.host(2), b.host(3));
    let us = users(Some(&etcd), 3, 10, true);
    let reference = farm_env.path("reference");
    reference_objects(&us[0].project, &reference);
    build_all(&us, &hosts);
    let objs: Vec<String> = (0..10).map(|f| format!("h{f}.o")).collect();
    for u in &us {
        assert_objects_match(&objs, &reference, &u.project);
    }
    let (peak_a, runs_a) = a.peak();
    let (peak_b, runs_b) = b.peak();
    eprintln!("host a: peak {peak_a}/2, {runs_a} runs; host b: peak {peak_b}/3, {runs_b} runs");
    assert!(peak_a <= 2 && peak_b <= 3, "a host ran more than its slots");
    assert!(
        runs_a + runs_b >= 20,
        "most of the 30 compiles ran on the farm"
    );
    let s = us[0].env.status(&hosts);
    assert_eq!(s["granted_local"], 0, "every compile waited for a claim");
    let team = &s["team"];
    assert_eq!(team["state"], "connected", "{team:#}");
    assert_eq!(team["brokers"].as_array().unwrap().len(), 3, "{team:#}");
    assert!(team["etcd_writes"].as_u64().unwrap() > 0);
    for u in &us {
        stop(u);
    }
}

#[test]
fn without_team_mode_the_same_builds_go_over_the_slots() {
    // The control for the test above: the recording does see
    // oversubscription when brokers do not share their accounting.
    if !have_distccd() {
        return;
    }
    let farm_env = TestEnv::new();
    let (a, b) = (
        Distccd::start_recording(&farm_env, 8, 0.3),
        Distccd::start_recording(&farm_env, 8, 0.3),
    );
    let hosts = format!("{} {}", a.host(2), b.host(3));
    let us = users(None, 3, 10, true);
    build_all(&us, &hosts);
    let (peak_a, _) = a.peak();
    let (peak_b, _) = b.peak();
    eprintln!("alone: host a peak {peak_a}/2, host b peak {peak_b}/3");
    assert!(peak_a > 2 || peak_b > 3, "alone, brokers oversubscribe");
    for u in &us {
        stop(u);
    }
}

#[test]
fn a_dead_workstations_slots_are_back_within_the_ttl() {
    if !have_distccd() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let farm_env = TestEnv::new();
    let d = Distccd::start_recording(&farm_env, 8, 1.0);
    let hosts = d.host(2);
    let us = users(Some(&etcd), 2, 10, false);
    let mut a_build = start_build(&us[0], &hosts);
    let a_id = wait_for_id(&us[0], &hosts);
    wait_for(Duration::from_secs(20), "a to hold both slots", || {
        held(&us[0], &hosts, &d.name(), &a_id) == 2
    });
    let b_build = {
        let cmd = build_as(&us[1].env, &us[1].project, &hosts, None);
        std::thread::spawn(move || output_within(cmd, Duration::from_secs(240)))
    };
    let b_id = wait_for_id(&us[1], &hosts);
    // a's workstation dies: its broker and its build, at once.
    let a_pid = us[0].env.status(&hosts)["broker"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: killing the broker and the build this test started.
    unsafe {
        libc::kill(a_pid, libc::SIGKILL);
        libc::kill(-(a_build.id() as i32), libc::SIGKILL);
    }
    let _ = a_build.wait();
    let killed = Instant::now();
    wait_for(Duration::from_secs(20), "b to hold both slots", || {
        held(&us[1], &hosts, &d.name(), &b_id) == 2
    });
    let took = killed.elapsed();
    eprintln!("b held both slots {took:?} after a's broker died (TTL 3 s)");
    assert!(
        took <= Duration::from_secs(4) + Duration::from_millis(500),
        "{took:?}"
    );
    let out = b_build.join().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let reference = farm_env.path("reference");
    reference_objects(&us[1].project, &reference);
    let objs: Vec<String> = (0..10).map(|f| format!("h{f}.o")).collect();
    assert_objects_match(&objs, &reference, &us[1].project);
    stop(&us[1]);
}

#[test]
fn etcd_stopped_killed_and_restarted_mid_build() {
    if !have_distccd() {
        return;
    }
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let farm_env = TestEnv::new();
    let d = Distccd::start_recording(&farm_env, 8, 0.5);
    let hosts = d.host(3);
    let us = users(Some(&etcd), 2, 10, false);
    // Stopped for two TTLs mid-build: unreachable, then back.
    builds_survive(&us, &hosts, || {
        wait_for(Duration::from_secs(20), "a compile on the farm", || {
            d.peak().1 > 0
        });
        etcd.stop();
        wait_for(Duration::from_secs(10), "unreachable", || {
            team_state(&us[0], &hosts) == "unreachable"
        });
        std::thread::sleep(Duration::from_secs(6));
        etcd.resume();
    });
    for u in &us {
        wait_for(Duration::from_secs(15), "connected again", || {
            team_state(u, &hosts) == "connected"
        });
    }
    assert!(
        us[0].env.log().contains("etcd unreachable"),
        "{}",
        us[0].env.log()
    );
    // Killed and restarted with its data, then with none.
    for keep_data in [true, false] {
        for u in &us {
            std::fs::remove_dir_all(&u.project).unwrap();
            heavy_project(&u.project, 6);
        }
        builds_survive(&us, &hosts, || {
            wait_for(Duration::from_secs(20), "a compile", || d.peak().1 > 0);
            etcd.kill();
            std::thread::sleep(Duration::from_secs(1));
            etcd.restart(keep_data);
        });
        for u in &us {
            wait_for(Duration::from_secs(15), "connected after a restart", || {
                team_state(u, &hosts) == "connected"
            });
        }
        // Consistent: each host's claims in etcd are what the brokers hold.
        let s = us[0].env.status(&hosts);
        let team_hosts = s["team"]["hosts"].as_array().unwrap().clone();
        assert_eq!(team_hosts.len(), 1, "the host is defined again: {s:#}");
        assert!(team_hosts[0]["slots"] == 3);
    }
    for u in &us {
        stop(u);
    }
}

#[test]
fn without_etcd_or_with_bad_team_values_builds_still_compile() {
    let env = TestEnv::new();
    let dead = DeadPort::new();
    let url = format!("http://127.0.0.1:{}", dead.port);
    env.write_config(&format!(
        "[team]\nendpoints = [\"{url}\"]\nfarm = \"lab\"\nlease_ttl_s = 1\n"
    ));
    write_c(&env, "a.c", "int a(void) { return 1; }\n");
    let out = env
        .tcpb()
        .args(["gcc", "-O2", "-c", "a.c", "-o", "a.o"])
        .env("DISTCC_HOSTS", "127.0.0.1:1/2")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("config.toml") && err.contains("lease_ttl_s = 1"),
        "{err}"
    );
    assert_same_object(&env, "a.o", "a.c");
    // etcd unreachable at start: compiles run here at once, status says so.
    env.write_config(&format!(
        "[team]\nendpoints = [\"{url}\"]\nfarm = \"lab\"\n"
    ));
    let start = Instant::now();
    let out = env
        .tcpb()
        .args(["gcc", "-O2", "-c", "a.c", "-o", "a.o"])
        .env("DISTCC_HOSTS", "127.0.0.1:1/2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_same_object(&env, "a.o", "a.c");
    let s = env.status("127.0.0.1:1/2");
    assert_eq!(s["team"]["state"], "unreachable", "{s:#}");
    let why = s["team"]["last_error"].as_str().unwrap_or("");
    assert!(why.contains(&format!("127.0.0.1:{}", dead.port)), "{why}");
    assert!(env.log().contains("etcd unreachable"), "{}", env.log());
}

#[test]
fn a_host_only_the_config_names_is_not_defined_for_the_team_but_used_alone() {
    let Some(etcd) = Etcd::start() else { return };
    let env = TestEnv::new();
    let dead = DeadPort::new();
    let host = format!("127.0.0.1:{}", dead.port);
    env.write_config(&format!(
        "{}[[host]]\nname = \"{host}\"\nspeed = 2.0\n",
        team_config(&etcd, "")
    ));
    write_c(&env, "a.c", "int a(void) { return 1; }\n");
    let compile = |hosts: &str| {
        let out = env
            .tcpb()
            .args(["gcc", "-O2", "-c", "a.c", "-o", "a.o"])
            .env("DISTCC_HOSTS", hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    };
    // The broker starts with no list naming the host: the config's host
    // (its slots a default) must not become the team's definition.
    compile("");
    std::thread::sleep(Duration::from_secs(1));
    let team_hosts = |env: &TestEnv| env.status("")["team"]["hosts"].clone();
    assert_eq!(team_hosts(&env), serde_json::json!([]), "nothing defined");
    // Meanwhile the broker uses it alone, and says so.
    let alone = env.status("")["team"]["uncoordinated"].clone();
    assert_eq!(alone, serde_json::json!([host]));
    // A list that names it defines it, with the list's slots.
    compile(&format!("{host}/2"));
    env.wait_status("", Duration::from_secs(5), |s| {
        s["team"]["hosts"][0]["slots"] == 2 && s["team"]["uncoordinated"] == serde_json::json!([])
    });
}

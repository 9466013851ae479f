//! Builds that keep going while hosts die, hang and come back, and while
//! the broker itself is killed. Every build is checked object by object
//! against a local gcc build. Timings are printed for the record, not
//! asserted, except where the issue sets a bound.

mod common;
use common::*;
use std::time::{Duration, Instant};

const FAST_HEALTH: &str = "[broker]\nidle_exit_s = 120\n[health]\ninterval_ms = 200\nidle_interval_ms = 200\ntimeout_ms = 200\nfall = 3\nrise = 2\nmax_interval_ms = 400\n";

#[test]
fn host_killed_mid_build() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    env.write_config(FAST_HEALTH);
    let (mut a, b) = (Distccd::start(&env, 2), Distccd::start(&env, 2));
    let hosts = format!("{} {}", a.host(2), b.host(2));
    let objs = heavy_project(&env.path("p"), 24);
    reference_objects(&env.path("p"), &env.path("ref"));
    let build = spawn_build(&env, &env.path("p"), &hosts);
    wait_for(Duration::from_secs(60), "A to finish a compile", || {
        a.compiles_ok(0) >= 1
    });
    a.kill();
    let died = Instant::now();
    let name = a.name();
    wait_for(Duration::from_secs(30), "A down", || {
        host_of(&env.status(&hosts), &name).unwrap()["state"] == "down"
    });
    let to_down = died.elapsed();
    let out = build.join().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_objects_match(&objs, &env.path("ref"), &env.path("p"));
    let s = env.status(&hosts);
    let fallbacks = String::from_utf8_lossy(&out.stderr)
        .matches("failed to distribute")
        .count();
    eprintln!(
        "RESULT host death -> down: {} ms; jobs that fell back locally: {fallbacks} (broker counted {}); on A {} B {}",
        to_down.as_millis(),
        s["fell_back"],
        a.compiles_ok(0),
        b.compiles_ok(0)
    );
    assert_eq!(host_of(&s, &name).unwrap()["busy"], 0);
    assert!(b.compiles_ok(1) >= 1);
}

#[test]
fn blackhole_host_does_not_hold_the_build() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    // Accepts and never answers, like a stopped distccd.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming().take(200) {
            held.push(c);
        }
    });
    let live = Distccd::start(&env, 2);
    let hole_name = format!("127.0.0.1:{hole_port}");
    let mut cfg = String::from("[broker]\nidle_exit_s = 120\njob_timeout_s = 2\n");
    cfg.push_str(&format!("[[host]]\nname = \"{hole_name}\"\nspeed = 10.0\n"));
    env.write_config(&cfg);
    let hosts = format!("{hole_name}/2 {}", live.host(2));
    reference_build(&env.path("ref"));
    copy_fixture(&env.path("b"));
    let started = Instant::now();
    let out = output_within(
        make_through_tcpb(&env, &env.path("b"), &hosts),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same_objects(&env.path("ref"), &env.path("b"));
    let s = env.status(&hosts);
    let h = host_of(&s, &hole_name).unwrap();
    assert_eq!(
        h["state"], "down",
        "a hung host stays down though it accepts connects: {h}"
    );
    assert!(h["last_error"].as_str().unwrap().contains("hung"), "{h}");
    assert!(s["fell_back"].as_u64().unwrap() >= 1);
    eprintln!(
        "RESULT blackhole build took {} ms; fell back {}",
        started.elapsed().as_millis(),
        s["fell_back"]
    );
}

#[test]
fn host_restarting_on_the_same_port_comes_back_up() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    env.write_config(FAST_HEALTH);
    let mut a = Distccd::start(&env, 2);
    let (port, hosts, name) = (a.port, a.host(2), a.name());
    std::fs::write(env.path("work/r.c"), "int r(int x) { return x + 1; }\n").unwrap();
    let compile = |obj: &str| {
        env.tcpb()
            .args(["gcc", "-c", "r.c", "-o", obj])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap()
    };
    assert!(compile("r1.o").status.success());
    let state = || {
        host_of(&env.status(&hosts), &name).unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    a.kill();
    let to_down = wait_for(Duration::from_secs(30), "down", || state() == "down");
    let b = Distccd::start_on(&env, port, 2).expect("restart on the same port");
    let to_up = wait_for(Duration::from_secs(30), "up", || state() == "up");
    eprintln!(
        "RESULT death -> down {} ms (fall 3 x 200 ms); return -> up {} ms (rise 2 x <=400 ms)",
        to_down.as_millis(),
        to_up.as_millis()
    );
    // rise x the (capped) probe interval, plus a margin for the loaded machine.
    assert!(
        to_up <= Duration::from_millis(2 * 400 + 2000),
        "up after {to_up:?}"
    );
    let out = compile("r2.o");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(b.compiles_ok(1), 1, "compiles go to the host again");
}

#[test]
fn broker_killed_mid_build() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let (a, b) = (Distccd::start(&env, 2), Distccd::start(&env, 2));
    let hosts = format!("{} {}", a.host(2), b.host(2));
    let objs = heavy_project(&env.path("p"), 24);
    reference_objects(&env.path("p"), &env.path("ref"));
    let build = spawn_build(&env, &env.path("p"), &hosts);
    wait_for(Duration::from_secs(60), "some compiles done", || {
        farm_compiles(&[&a, &b], 0) >= 3
    });
    let pid = env.status(&hosts)["broker"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: killing the test's own broker.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = build.join().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_objects_match(&objs, &env.path("ref"), &env.path("p"));
    let fallbacks = String::from_utf8_lossy(&out.stderr)
        .matches("failed to distribute")
        .count();
    let remote = farm_compiles(&[&a, &b], 0);
    eprintln!(
        "RESULT broker kill -9: {fallbacks} jobs fell back locally, {remote} of {} ran on the farm",
        objs.len()
    );
    assert_eq!(
        env.brokers_started(),
        2,
        "the next compile started a new broker"
    );
    assert!(env.status(&hosts)["broker"]["pid"].as_i64().unwrap() as i32 != pid);
}

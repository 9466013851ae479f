//! Team mode's administration and shared knowledge against a real etcd
//! and real distccd: `tcpb host … --team` reaches every broker within a
//! second, a host found down by one broker is down for all, and one
//! broker probes each host for the whole team.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn a_team_wide_drain_reaches_every_broker_within_a_second() {
    if !have_distccd() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let farm_env = TestEnv::new();
    let (a, b) = (
        Distccd::start_recording(&farm_env, 8, 0.4),
        Distccd::start_recording(&farm_env, 8, 0.4),
    );
    let hosts = format!("{} {}", a.host(2), b.host(2));
    let us = users(Some(&etcd), 2, 12, true);
    let mut drained_at = None;
    builds_survive(&us, &hosts, || {
        wait_for(Duration::from_secs(20), "compiles on a", || a.peak().1 >= 2);
        let out = us[0]
            .env
            .tcpb()
            .args(["host", "drain", &a.name(), "--team"])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert!(stderr_of(&out).is_empty(), "{}", output_text(&out));
        drained_at = Some(std::time::SystemTime::now());
    });
    let since = drained_at
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let limit = (since + Duration::from_secs(1)).as_nanos();
    let late: Vec<_> = a.starts().into_iter().filter(|t| *t > limit).collect();
    eprintln!(
        "a ran {} compiles, {} after the drain + 1 s",
        a.peak().1,
        late.len()
    );
    assert!(
        late.is_empty(),
        "{} compiles reached a drained host",
        late.len()
    );
    assert!(b.peak().1 > 0);
    // The other user's broker shows it drained; enable brings it back.
    let state = |u: &User| host_of(&status_of(u, &hosts), &a.name()).unwrap()["state"].clone();
    assert_eq!(state(&us[1]), "draining", "{}", state(&us[1]));
    let out = us[0]
        .env
        .tcpb()
        .args(["host", "enable", &a.name(), "--team"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    wait_for(Duration::from_secs(2), "enabled everywhere", || {
        state(&us[1]) != "draining"
    });
    for u in &us {
        stop(u);
    }
}

#[test]
fn without_a_team_host_team_changes_are_refused_with_the_reason() {
    let alone = TestEnv::new();
    let out = alone
        .tcpb()
        .args(["host", "drain", "h", "--team"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("[team]"), "{}", stderr_of(&out));
}

/// Connections distccd at `d` got that sent no job: tcpb's probes.
fn probes_at(d: &Distccd) -> usize {
    d.log().matches("magic fairy dust").count()
}

#[test]
fn one_broker_probes_each_host_and_a_host_down_is_down_for_all_within_a_second() {
    if !have_distccd() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let farm_env = TestEnv::new();
    let (mut a, b) = (Distccd::start(&farm_env, 4), Distccd::start(&farm_env, 4));
    let hosts = format!("{} {}", a.host(2), b.host(2));
    let us = users(Some(&etcd), 2, 1, true);
    // Probes of an up host every 300 ms, by whichever broker probes it.
    let probe_often = "[health]\nidle_interval_ms = 300\ninterval_ms = 300\n";
    for u in &us {
        let config = std::fs::read_to_string(u.env.path("config/config.toml")).unwrap();
        std::fs::write(
            u.env.path("config/config.toml"),
            format!("{config}{probe_often}"),
        )
        .unwrap();
        let out = output_within(
            build_as(&u.env, &u.project, &hosts, u.user),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let ids: Vec<String> = us
        .iter()
        .map(|u| {
            status_of(u, &hosts)["team"]["me"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let team = wait_for_probers(&us[0], &hosts, 2);
    for h in team {
        assert!(
            ids.contains(&h["prober"].as_str().unwrap().to_string()),
            "{h:#}"
        );
    }
    let before = probes_at(&a);
    std::thread::sleep(Duration::from_secs(3));
    let probes = probes_at(&a) - before;
    eprintln!("host a: {probes} probes in 3 s from two brokers probing every 300 ms");
    assert!(
        (3..=12).contains(&probes),
        "one prober: about 10, not 15-20: {probes}"
    );
    // Host a dies: whichever broker finds it, the other knows within 1 s.
    a.kill();
    let apart = found_apart(&us, &hosts, &a.name());
    eprintln!("the brokers found host a down {apart:?} apart");
    assert!(apart <= Duration::from_secs(1), "{apart:?}");
    for u in &us {
        stop(u);
    }
}

/// How far apart in time two users' brokers stopped showing `host` up.
fn found_apart(us: &[User], hosts: &str, host: &str) -> Duration {
    let up = |u: &User| host_of(&status_of(u, hosts), host).unwrap()["state"] == "up";
    let mut seen: [Option<std::time::Instant>; 2] = [None, None];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.iter().any(Option::is_none) && std::time::Instant::now() < deadline {
        for (i, u) in us.iter().enumerate().take(2) {
            if seen[i].is_none() && !up(u) {
                seen[i] = Some(std::time::Instant::now());
            }
        }
    }
    let (Some(s0), Some(s1)) = (seen[0], seen[1]) else {
        panic!("a dead host stayed up: {seen:?}");
    };
    if s0 > s1 { s0 - s1 } else { s1 - s0 }
}

/// The team's hosts once `n` of them have a prober.
fn wait_for_probers(u: &User, hosts: &str, n: usize) -> Vec<serde_json::Value> {
    let team = || {
        status_of(u, hosts)["team"]["hosts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(10), "a prober for each host", || {
        team().iter().filter(|h| h["prober"].is_string()).count() == n
    });
    team()
}

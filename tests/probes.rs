//! Health checks are quiet: a host's own traffic is its health evidence,
//! and an idle up host is probed at most once a minute (distccd logs every
//! probe as three ERROR lines, so a farm shared by many brokers would
//! otherwise fill its logs).

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Probes `d` has seen: distccd logs each connect that sends nothing as a
/// client that "did not provide distcc magic fairy dust".
fn probes(d: &Distccd) -> usize {
    d.log().matches("magic fairy dust").count()
}

#[test]
fn an_idle_broker_probes_each_host_at_most_once_a_minute() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let hosts = [1, 2, 3].map(|_| Distccd::start(&env, 2));
    let list: Vec<String> = hosts.iter().map(|d| d.host(2)).collect();
    let list = list.join(" ");
    std::fs::write(env.path("work/p.c"), "int p(void) { return 1; }\n").unwrap();
    let out = env
        .tcpb()
        .args(["gcc", "-c", "p.c", "-o", "p.o"])
        .env("DISTCC_HOSTS", &list)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(61));
    let counts: Vec<usize> = hosts.iter().map(probes).collect();
    eprintln!(
        "RESULT idle broker, 3 hosts, {} s: probes per host {counts:?}",
        start.elapsed().as_secs()
    );
    // One when the host joined the farm (unless the compile reached it
    // first), then one a minute.
    for (d, n) in hosts.iter().zip(&counts) {
        assert!(*n <= 2, "{}: {n} probes in 61 s", d.name());
    }
    let s = env.status(&list);
    for d in &hosts {
        assert_eq!(host_of(&s, &d.name()).unwrap()["state"], "up", "{s:#}");
    }
}

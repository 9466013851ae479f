use super::*;
use crate::farm::Admin;
use crate::protocol::HostState;
use std::time::Duration;

pub(super) fn hc() -> HealthConfig {
    HealthConfig {
        interval_ms: 1000,
        idle_interval_ms: 1000,
        timeout_ms: 100,
        fall: 2,
        rise: 2,
        max_interval_ms: 4000,
        hang_hold_s: 5,
    }
}

pub(super) fn remote(name: &str, slots: u32, speed: f64) -> HostSpec {
    HostSpec {
        name: name.to_string(),
        addr: Some((name.to_string(), 3632)),
        ssh: None,
        slots,
        speed,
        lzo: false,
        cpp: false,
        admin: Admin::Active,
    }
}

pub(super) fn local(slots: u32) -> HostSpec {
    HostSpec {
        name: "localhost".to_string(),
        addr: None,
        ssh: None,
        slots,
        speed: 1.0,
        lzo: false,
        cpp: false,
        admin: Admin::Active,
    }
}

pub(super) fn farm(hosts: Vec<HostSpec>) -> Farm {
    Farm {
        hosts,
        local_slots: 2,
        origin: "test".into(),
        sets: Vec::new(),
    }
}

pub(super) fn name(s: &Scheduler, p: &[Placement]) -> Vec<String> {
    p.iter().map(|p| s.host(p.host).spec.name.clone()).collect()
}

#[test]
fn earliest_finish_waits_briefly_for_a_fast_host() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![
            remote("slow", 8, 1.0),
            remote("fast", 2, 4.0),
            remote("mid", 4, 1.0),
        ]),
        hc(),
        t,
    );
    let mut got = Vec::new();
    for l in 0..6 {
        let p = s.request(l, Job::of(Need::Remote), t);
        got.extend(
            p.iter()
                .map(|p| (p.lease, s.host(p.host).spec.name.clone())),
        );
    }
    let got: Vec<(u64, &str)> = got.iter().map(|(l, n)| (*l, n.as_str())).collect();
    // 0, 1: the fast host. 2, 3: finishing on the fast host at 1/2 s beats
    // 1 s on a slow one by more than the margin, so they wait for it. 4, 5:
    // the fast host's third round, 3/4 s, does not: a slot free now wins.
    assert_eq!(got, [(0, "fast"), (1, "fast"), (4, "slow"), (5, "slow")]);
    assert_eq!((s.position(2), s.position(3)), (Some(1), Some(2)));
    // When a fast slot frees, the first waiting job takes it.
    let p = s.release(0, t);
    assert_eq!(
        p.iter()
            .map(|p| (p.lease, s.host(p.host).spec.name.as_str()))
            .collect::<Vec<_>>(),
        [(2, "fast")]
    );
    s.check().unwrap();
}

#[test]
fn equal_speeds_prefer_most_free_slots_then_farm_order() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![
            remote("a", 2, 1.0),
            remote("b", 4, 1.0),
            remote("c", 4, 1.0),
        ]),
        hc(),
        t,
    );
    let mut got = Vec::new();
    for l in 0..4 {
        let p = s.request(l, Job::of(Need::Remote), t);
        got.extend(name(&s, &p));
    }
    assert_eq!(got, ["b", "c", "b", "c"]);
}

#[test]
fn heavy_jobs_go_to_fast_hosts_light_ones_fill_slow_hosts() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("fast", 1, 4.0), remote("slow", 1, 1.0)]),
        hc(),
        t,
    );
    let heavy = Job {
        need: Need::Remote,
        cost: 8.0,
        known: true,
        light: false,
        build: 0,
        set: 0,
    };
    let light = Job {
        need: Need::Remote,
        cost: 0.2,
        known: true,
        light: false,
        build: 0,
        set: 0,
    };
    let p = s.request(1, heavy, t);
    assert_eq!(name(&s, &p), ["fast"]);
    // The fast host is busy for 2 s: a second heavy job waits for it (2 + 2
    // s) rather than take the slow host (8 s)...
    assert!(s.request(2, heavy, t).is_empty());
    // ...while a light job takes the slow host now (0.2 s).
    let p = s.request(3, light, t);
    assert_eq!(name(&s, &p), ["slow"]);
}

#[test]
fn two_builds_share_the_queue() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![remote("a", 1, 1.0)]), hc(), t);
    let a = |l| {
        (
            l,
            Job {
                need: Need::Remote,
                cost: 1.0,
                known: true,
                light: false,
                build: 100,
                set: 0,
            },
        )
    };
    for l in 0..20 {
        let (l, j) = a(l);
        s.request(l, j, t);
    }
    s.request(
        50,
        Job {
            need: Need::Remote,
            cost: 1.0,
            known: true,
            light: false,
            build: 200,
            set: 0,
        },
        t,
    );
    // Build 100 was just served (lease 0 runs): build 200 is next.
    assert_eq!(s.position(50), Some(1));
    let p = s.release(0, t);
    assert_eq!(
        p[0].lease, 50,
        "build 200 is served before build 100's 19 others"
    );
    let p = s.release(50, t);
    assert_eq!(p[0].lease, 1, "and then it is build 100's turn again");
}

#[test]
fn queue_is_fifo_and_granted_on_release() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![remote("a", 1, 1.0)]), hc(), t);
    assert_eq!(s.request(1, Job::of(Need::Remote), t).len(), 1);
    assert!(s.request(2, Job::of(Need::Remote), t).is_empty());
    assert!(s.request(3, Job::of(Need::Remote), t).is_empty());
    assert_eq!(s.position(3), Some(2));
    let p = s.release(1, t);
    assert_eq!(p.iter().map(|p| p.lease).collect::<Vec<_>>(), [2]);
    // A queued lease that goes away is simply dropped from the queue.
    assert!(s.release(3, t).is_empty());
    assert_eq!(s.queued(), 0);
    s.check().unwrap();
}

#[test]
fn local_jobs_use_local_pool_and_do_not_block_remote_ones() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![remote("a", 2, 1.0)]), hc(), t);
    // local pool has 2 slots (farm.local_slots)
    assert_eq!(s.request(1, Job::of(Need::Local), t).len(), 1);
    assert_eq!(s.request(2, Job::of(Need::Local), t).len(), 1);
    assert!(s.request(3, Job::of(Need::Local), t).is_empty());
    let p = s.request(4, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["a"]);
    s.check().unwrap();
}

#[test]
fn listed_localhost_serves_both_kinds() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![local(1), remote("a", 1, 0.5)]), hc(), t);
    assert_eq!(
        s.hosts().count(),
        2,
        "no extra local pool when localhost is listed"
    );
    let p = s.request(1, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["localhost"]);
    let p = s.request(2, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["a"]);
    assert!(s.request(3, Job::of(Need::Local), t).is_empty());
}

#[test]
fn reroute_moves_lease_and_marks_host_down() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("a", 1, 2.0), remote("b", 1, 1.0)]),
        hc(),
        t,
    );
    let p = s.request(1, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["a"]);
    let to = s.reroute(1, "refused".into(), t).unwrap();
    assert_eq!(s.host(to).spec.name, "b");
    let a = s.hosts().find(|(_, h)| h.spec.name == "a").unwrap().1;
    assert_eq!((a.busy, a.failures, a.state()), (0, 1, HostState::Suspect));
    // Now b fails too: both are down and nothing is left for lease 1.
    assert_eq!(s.reroute(1, "refused".into(), t), None);
    s.check().unwrap();
    // With the whole farm down, new compiles use the local CPUs.
    let p = s.request(2, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["localhost"]);
    // Probes decide: two good ones bring a back, and the queue moves.
    let p = s.request(3, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["localhost"]);
    assert!(
        s.request(4, Job::of(Need::Remote), t).is_empty(),
        "local pool full, farm out: it waits"
    );
    let due: Vec<String> = s.due_probes(t).into_iter().map(|d| d.name).collect();
    assert_eq!(due, ["a", "b"], "suspect hosts are probed at once");
    assert!(s.due_probes(t).is_empty(), "no second probe while one runs");
    assert!(s.probe_done("a", None, t).is_empty());
    s.due_probes(t + Duration::from_secs(1));
    let p = s.probe_done("a", None, t + Duration::from_secs(1));
    assert_eq!(name(&s, &p), ["a"]);
    assert_eq!(p[0].lease, 4);
}

#[test]
fn a_lease_whose_host_cannot_be_reached_waits_again_or_runs_here() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("a", 1, 1.0), remote("b", 1, 1.0)]),
        hc(),
        t,
    );
    assert_eq!(s.request(1, Job::of(Need::Remote), t).len(), 1);
    let first = s.placed(1).unwrap();
    assert_eq!(s.request(2, Job::of(Need::Remote), t).len(), 1);
    // 1's host refused and the other is busy: 1 waits for it.
    assert_eq!(s.reroute(1, "refused".into(), t), None);
    assert!(s.requeue(1, t).is_empty());
    assert_eq!((s.position(1), s.host(first).busy), (Some(1), 0));
    s.check().unwrap();
    // The other host goes down too: the set is dead, 1 runs on the pool.
    let other = s.placed(2).unwrap();
    s.record_failure(other, "refused".into(), Failure::Refused, false, t);
    let placed = s.requeue(2, t);
    assert_eq!(name(&s, &placed), ["localhost", "localhost"]);
    assert!(s.hosts().all(|(_, h)| !h.local_only || h.busy == 2));
    s.check().unwrap();
}

#[test]
fn each_lists_localslots_limits_the_pool_for_its_own_jobs() {
    let t = Instant::now();
    let mut f = farm(vec![remote("a", 2, 1.0)]);
    f.local_slots = 3;
    let set = |local_slots| crate::farm::HostSet {
        hosts: vec!["a".into()],
        local_slots,
    };
    f.sets = vec![set(Some(1)), set(Some(3))];
    let mut s = Scheduler::new(&f, hc(), t);
    let local = |set| Job {
        set,
        ..Job::of(Need::Local)
    };
    assert_eq!(s.request(1, local(0), t).len(), 1);
    assert!(s.request(2, local(0), t).is_empty(), "list 0 allows one");
    assert_eq!(s.request(3, local(1), t).len(), 1, "list 1 allows three");
    assert_eq!(s.request(4, local(1), t).len(), 1);
    assert!(s.request(5, local(1), t).is_empty(), "the pool is full");
    let placed = s.release(1, t);
    let leases = |p: Vec<Placement>| p.iter().map(|p| p.lease).collect::<Vec<_>>();
    assert_eq!(leases(placed), [5], "2 waits while others run here");
    assert!(s.release(3, t).is_empty() && s.release(4, t).is_empty());
    assert_eq!(
        leases(s.release(5, t)),
        [2],
        "the pool is idle: list 0's turn"
    );
    s.check().unwrap();
}

#[test]
fn dead_farm_falls_back_to_local_pool() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![remote("a", 4, 1.0)]), hc(), t);
    let a = s.hosts().next().unwrap().0;
    s.record_failure(a, "refused".into(), Failure::Refused, false, t);
    let p = s.request(1, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["localhost"]);
}

#[test]
fn farm_change_keeps_running_jobs() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![remote("a", 1, 1.0)]), hc(), t);
    s.request(1, Job::of(Need::Remote), t);
    s.request(2, Job::of(Need::Remote), t);
    let p = s.set_farm(&farm(vec![remote("b", 1, 1.0)]), t);
    assert_eq!(name(&s, &p), ["b"]);
    let a = s.hosts().find(|(_, h)| h.spec.name == "a").unwrap().1;
    assert_eq!(a.state(), HostState::Draining);
    assert!(
        s.take_retired().is_empty(),
        "a draining host is not retired"
    );
    s.release(1, t);
    assert!(
        s.hosts().all(|(_, h)| h.spec.name != "a"),
        "drained host is dropped"
    );
    let retired = s.take_retired();
    assert_eq!(retired.len(), 1, "and handed over once, with its counts");
    assert_eq!((retired[0].spec.name.as_str(), retired[0].jobs), ("a", 1));
    assert!(s.take_retired().is_empty());
    s.check().unwrap();
}

#[test]
fn capacity_shrinks_and_grows_without_disturbing_running_jobs() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![remote("a", 4, 1.0)]), hc(), t);
    let a = s.find("a").unwrap();
    for l in 1..=4 {
        assert_eq!(s.request(l, Job::of(Need::Remote), t).len(), 1);
    }
    // Down to 1 usable slot: the 4 running jobs stay, new ones wait.
    assert!(s.set_capacity(a, 1, t).is_empty());
    assert_eq!((s.running(), s.host(a).busy), (4, 4));
    assert!(s.request(5, Job::of(Need::Remote), t).is_empty());
    for l in 1..=3 {
        assert!(s.release(l, t).is_empty(), "still over capacity");
    }
    let placed = s.release(4, t);
    assert_eq!(name(&s, &placed), ["a"], "one slot frees at last");
    s.check().unwrap();
    // Grown back: queued compiles are placed at once, never past the
    // configured slots.
    for l in 6..=9 {
        s.request(l, Job::of(Need::Remote), t);
    }
    assert_eq!(s.set_capacity(a, 99, t).len(), 3);
    assert_eq!((s.host(a).cap, s.host(a).busy, s.queued()), (4, 4, 1));
    s.check().unwrap();
}

use super::dispatch::EXPLORE_EVERY;
use super::learn::{GUESS, MEASURED};
use super::*;
use crate::farm::Admin;
use crate::protocol::HostState;
use proptest::prelude::*;
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

fn local(slots: u32) -> HostSpec {
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

#[derive(Debug, Clone)]
enum Op {
    Request(bool),
    Release(usize),
    Reroute(usize),
    Fail(usize),
    Probe(usize, bool),
    Admin(usize, u8),
    Tick(u64),
    Farm(Vec<(u8, u32, u8)>),
    Capacity(usize, u32),
    Idle(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Request),
        4 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Reroute),
        1 => any::<usize>().prop_map(Op::Fail),
        1 => (0u64..20).prop_map(Op::Tick),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::Probe(i, ok)),
        1 => (any::<usize>(), 0u8..3).prop_map(|(i, a)| Op::Admin(i, a)),
        1 => proptest::collection::vec((0u8..5, 1u32..4, 1u8..4), 0..4).prop_map(Op::Farm),
        2 => (any::<usize>(), 0u32..4).prop_map(|(i, n)| Op::Capacity(i, n)),
        1 => (0u8..4).prop_map(Op::Idle),
    ]
}

fn make_farm(spec: &[(u8, u32, u8)]) -> Farm {
    let mut hosts: Vec<HostSpec> = Vec::new();
    for &(n, slots, speed) in spec {
        let h = if n == 0 {
            local(slots)
        } else {
            remote(&format!("h{n}"), slots, speed as f64)
        };
        if !hosts.iter().any(|x| x.name == h.name) {
            hosts.push(h);
        }
    }
    farm(hosts)
}

proptest! {
    // Failing seeds are kept beside this file (tests.proptest-regressions).
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn slots_in_use_equal_live_leases(ops in proptest::collection::vec(op(), 1..200)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut s = Scheduler::new(&make_farm(&[(1, 2, 1), (2, 1, 2)]), hc(), now);
        s.set_overflow(true);
        let mut live: Vec<LeaseId> = Vec::new();
        let mut next = 0;
        let mut farm_spec = vec![(1, 2, 1), (2, 1, 2)];
        let mut admin: HashMap<String, Admin> = HashMap::new();
        for op in ops {
            let before: HashMap<(String, bool), u32> =
                s.hosts().map(|(_, h)| ((h.spec.name.clone(), h.local_only), h.busy)).collect();
            let placed = match op {
                Op::Request(local_only) => {
                    next += 1;
                    live.push(next);
                    s.request(next, Job::of(if local_only { Need::Local } else { Need::Remote }), now)
                }
                Op::Release(i) if !live.is_empty() => {
                    let l = live.remove(i % live.len());
                    s.release(l, now)
                }
                Op::Reroute(i) if !live.is_empty() => {
                    let _ = s.reroute(live[i % live.len()], "x".into(), now);
                    vec![]
                }
                Op::Idle(n) => s.local_idle(f64::from(n), now),
                Op::Fail(i) => {
                    let ids: Vec<HostId> = s.hosts().map(|(id, _)| id).collect();
                    s.record_failure(ids[i % ids.len()], "x".into(), Failure::Refused, false, now);
                    vec![]
                }
                Op::Probe(i, ok) => {
                    let due = s.due_probes(now);
                    match due.get(i % due.len().max(1)) {
                        Some(h) => s.probe_done(&h.name, (!ok).then(|| "x".to_string()), now),
                        None => vec![],
                    }
                }
                Op::Admin(i, a) => {
                    let names: Vec<String> = s.hosts().filter(|(_, h)| !h.local_only).map(|(_, h)| h.spec.name.clone()).collect();
                    if names.is_empty() {
                        vec![]
                    } else {
                        admin.insert(names[i % names.len()].clone(), [Admin::Active, Admin::Drain, Admin::Disabled][a as usize]);
                        let mut f = make_farm(&farm_spec);
                        for h in &mut f.hosts {
                            h.admin = admin.get(&h.name).copied().unwrap_or_default();
                        }
                        s.set_farm(&f, now)
                    }
                }
                Op::Tick(secs) => {
                    now += Duration::from_secs(secs);
                    vec![]
                }
                Op::Farm(spec) => {
                    farm_spec = spec;
                    admin.clear();
                    s.set_farm(&make_farm(&farm_spec), now)
                }
                Op::Capacity(i, n) => {
                    let ids: Vec<HostId> = s.hosts().map(|(id, _)| id).collect();
                    s.set_capacity(ids[i % ids.len()], n, now)
                }
                _ => vec![],
            };
            prop_assert!(s.check().is_ok(), "{:?}", s.check());
            // Every lease is either placed or queued, never both, never lost.
            for l in &live {
                prop_assert!(s.placed(*l).is_some() != s.position(*l).is_some(), "lease {} lost", l);
            }
            prop_assert_eq!(s.running() + s.queued(), live.len());
            for p in &placed {
                prop_assert_eq!(s.placed(p.lease), Some(p.host));
                // New work goes only to hosts that are up and active, or to
                // the local pool.
                let h = s.host(p.host);
                prop_assert!(h.spec.is_local() || matches!(h.state(), HostState::Up | HostState::Unknown),
                    "{} placed on {} in state {:?}", p.lease, h.spec.name, h.state());
            }
            // No host goes over its usable slots by being given work.
            for (_, h) in s.hosts() {
                let was = before.get(&(h.spec.name.clone(), h.local_only)).copied().unwrap_or(0);
                prop_assert!(h.cap <= h.spec.slots, "{} cap {} > slots", h.spec.name, h.cap);
                prop_assert!(h.busy <= h.cap || h.busy <= was,
                    "{} busy {} > usable {}", h.spec.name, h.busy, h.cap);
            }
        }
    }
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

#[test]
fn learned_speed_overrides_configured_speed() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("a", 2, 2.0), remote("b", 2, 1.0)]),
        hc(),
        t,
    );
    let (a, b) = (HostId(0), HostId(1));
    assert_eq!(s.host(a).spec.name, "a");
    // a is configured faster but does 1 unit of work per second; b does 4.
    for _ in 0..15 {
        s.observe(a, 1.0, 1.0, MEASURED);
        s.observe(b, 4.0, 1.0, MEASURED);
    }
    let (la, lb) = (
        s.learned_speed(s.host(a)).unwrap(),
        s.learned_speed(s.host(b)).unwrap(),
    );
    // Relative: they keep the geometric mean of the configured speeds.
    assert!(
        lb / la > 2.5 && la < 1.0,
        "measurements outweigh the configuration: {la} {lb}"
    );
    assert!(((la * lb).sqrt() / 2f64.sqrt() - 1.0).abs() < 1e-9);
    let p = s.request(1, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["b"]);
}

#[test]
fn a_biased_work_guess_does_not_shrink_the_farm() {
    // Guessed work is in the units of the speeds that measured earlier
    // jobs; a guess that runs at half the true work must not drag every
    // host down (costs recorded at the lower speeds would then lower the
    // guesses further).
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("fast", 2, 4.0), remote("slow", 2, 1.0)]),
        hc(),
        t,
    );
    let (fast, slow) = (HostId(0), HostId(1));
    for _ in 0..15 {
        s.observe(fast, 0.5 * 4.0, 1.0, GUESS);
        s.observe(slow, 0.5 * 1.0, 1.0, GUESS);
    }
    let (lf, ls) = (
        s.learned_speed(s.host(fast)).unwrap(),
        s.learned_speed(s.host(slow)).unwrap(),
    );
    assert!(
        (lf / 4.0 - 1.0).abs() < 0.05 && (ls - 1.0).abs() < 0.05,
        "configured 4 and 1, learned {lf} and {ls}"
    );
}

#[test]
fn a_host_without_samples_is_tried_now_and_then() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("a", 4, 1.0), remote("b", 4, 0.1)]),
        hc(),
        t,
    );
    for _ in 0..3 {
        s.observe(HostId(0), 4.0, 1.0, MEASURED);
    }
    let light = Job {
        light: true,
        ..Job::of(Need::Remote)
    };
    // A job not known to be light is not risked on the unknown host...
    let p = s.request(1, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["a"]);
    // ...a light one is: b's prior is poor, but it has no samples.
    let p = s.request(2, light, t);
    assert_eq!(name(&s, &p), ["b"]);
    // And then not again until EXPLORE_EVERY has passed.
    let p = s.request(3, light, t);
    assert_eq!(name(&s, &p), ["a"]);
    let later = t + EXPLORE_EVERY;
    let p = s.request(4, light, later);
    assert_eq!(name(&s, &p), ["b"]);
}

/// A fast host busy with two long jobs, a slow one with two short ones;
/// then `heavy` (cost 4, its cost a guess unless `known`) and `light`
/// compiles of cost 0.5 wait. Returns what the release of a short job on
/// the slow host places there: the heavy compile (0) or a light one.
fn slow_slot_goes_to(known: bool, light: u64) -> Vec<(LeaseId, String)> {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("fast", 2, 4.0), remote("slow", 2, 1.0)]),
        hc(),
        t,
    );
    let long = Job {
        cost: 8.0,
        ..Job::of(Need::Remote)
    };
    let short = Job {
        cost: 0.1,
        ..Job::of(Need::Remote)
    };
    for (l, job) in [(100, long), (101, long), (102, short), (103, short)] {
        let p = s.request(l, job, t);
        assert_eq!(p.len(), 1, "lease {l} placed at once");
    }
    let guess = |cost| Job {
        cost,
        known: false,
        ..Job::of(Need::Remote)
    };
    let heavy = Job {
        known,
        ..guess(4.0)
    };
    assert!(s.request(0, heavy, t).is_empty());
    for l in 1..=light {
        assert!(s.request(l, guess(0.5), t).is_empty());
    }
    let later = t + Duration::from_millis(200);
    let placed = s.release(102, later);
    s.check().unwrap();
    placed
        .iter()
        .map(|p| (p.lease, s.host(p.host).spec.name.clone()))
        .collect()
}

#[test]
fn a_deep_queue_keeps_heavy_guesses_off_slow_hosts() {
    // Thirteen waiting on a farm of six slots (two of them local): deeper
    // than make's -j twice the slots leaves. The heavy compile's cost is a
    // guess: it waits for the fast host and a light one takes the slow slot.
    let got = slow_slot_goes_to(false, 12);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].0 != 0 && got[0].1 == "slow", "{got:?}");
    // Its cost measured before: finishing there (4 s) beats waiting for
    // the fast host (1.8 s + 1 s) by less than the margin, so it goes.
    assert_eq!(slow_slot_goes_to(true, 12), [(0, "slow".to_string())]);
    // A shallow queue (make's usual -j): a free slot is not kept idle.
    assert_eq!(slow_slot_goes_to(false, 2), [(0, "slow".to_string())]);
}

#[test]
fn a_deep_queue_does_not_hold_back_local_only_jobs() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![remote("fast", 1, 4.0)]), hc(), t);
    let long = Job {
        cost: 8.0,
        ..Job::of(Need::Remote)
    };
    assert_eq!(s.request(100, long, t).len(), 1);
    let guess = |cost, need| Job {
        cost,
        known: false,
        ..Job::of(need)
    };
    for l in 1..=8 {
        assert!(s.request(l, guess(0.5, Need::Remote), t).is_empty());
    }
    // Eight wait for the one farm slot: deeper than twice the slots. A link
    // (local only, its cost a guess above the mean) still takes a local slot.
    let p = s.request(0, guess(4.0, Need::Local), t);
    assert_eq!(name(&s, &p), ["localhost"]);
    s.check().unwrap();
}

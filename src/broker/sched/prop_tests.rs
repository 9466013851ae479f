//! The scheduler's invariant under random operations: slots in use equal
//! live leases, whatever happens to the farm, hosts and capacity.

use super::tests::{farm, hc, local, remote};
use super::*;
use crate::farm::Admin;
use crate::protocol::HostState;
use health::Failure;
use proptest::prelude::*;
use std::time::Duration;

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

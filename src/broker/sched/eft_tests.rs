use super::*;
use crate::farm::{Admin, HostSpec};
use std::time::Instant;

/// A farm of hosts given as (speed, free slots, seconds left of each
/// busy slot), with the scheduler's indexes.
struct Farm {
    hosts: Vec<Option<Host>>,
    order: BTreeSet<OrderKey>,
    free: BTreeSet<OrderKey>,
}

fn farm(spec: &[(f64, u32, &[f64])]) -> Farm {
    let t = Instant::now();
    let hosts: Vec<Option<Host>> = spec
        .iter()
        .enumerate()
        .map(|(i, (speed, free, left))| {
            let spec = HostSpec {
                name: format!("h{i}"),
                addr: Some((format!("h{i}"), 3632)),
                ssh: None,
                slots: free + left.len() as u32,
                speed: *speed,
                lzo: false,
                cpp: false,
                admin: Admin::Active,
            };
            let mut h = Host::new(spec, false, t);
            h.running = left
                .iter()
                .map(|l| Run {
                    lease: 0,
                    start: 0.0,
                    job: Job {
                        cost: l * speed,
                        ..Job::of(Need::Remote)
                    },
                })
                .collect();
            h.busy = left.len() as u32;
            h.update_first_end();
            Some(h)
        })
        .collect();
    let keys = hosts.iter().enumerate().map(|(i, h)| {
        (
            order_key(HostId(i), h.as_ref().unwrap()),
            h.as_ref().unwrap().free(),
        )
    });
    Farm {
        order: keys.clone().map(|(k, _)| k).collect(),
        free: keys.filter(|(_, f)| *f > 0).map(|(k, _)| k).collect(),
        hosts,
    }
}

impl Farm {
    fn view(&self) -> View<'_> {
        View::new(&self.hosts, (&self.order, &self.free), &[], 0.0)
    }
}

impl View<'_> {
    /// `pick_on` among every host.
    fn pick(&mut self, cost: f64, margin: f64, need: Need) -> Option<Pick> {
        let set = 0;
        self.pick_on(Want { cost, need, set }, margin, 0.0)
    }
}

/// The host a pick chose and when it starts.
fn at(p: Option<Pick>) -> (usize, f64) {
    let p = p.unwrap();
    (p.host.0, p.start)
}

const R: Need = Need::Remote;

#[test]
fn light_job_takes_the_free_slow_host_heavy_job_waits_for_the_fast_one() {
    // fast: speed 4, busy for 1 more second; slow: speed 1, free.
    let f = farm(&[(4.0, 0, &[1.0]), (1.0, 1, &[])]);
    let mut v = f.view();
    assert_eq!(at(v.pick(0.2, 1.0, R)), (1, 0.0));
    let heavy = v.pick(8.0, 1.0, R).unwrap();
    assert_eq!(heavy.host.0, 0, "8 s on slow vs 1 + 2 s on fast");
    assert_eq!(heavy.finish, 3.0);
}

#[test]
fn booked_slots_push_later_jobs_elsewhere() {
    let f = farm(&[(4.0, 1, &[]), (1.0, 2, &[])]);
    let mut v = f.view();
    let mut got = Vec::new();
    for _ in 0..4 {
        let p = v.pick(1.0, 1.0, R).unwrap();
        got.push(at(Some(p)));
        v.take(p);
    }
    // The fast host three times in a row (finishing at 0.25, 0.5, 0.75
    // beats the slow host's 1.0); the fourth ties at 1.0 and takes the
    // slot that is free now.
    assert_eq!(got, [(0, 0.0), (0, 0.25), (0, 0.5), (1, 0.0)]);
    assert!(v.any_free(), "the slow host's second slot");
    let p = v.pick(1.0, 0.0, R).unwrap();
    v.take(p);
    assert!(!v.any_free());
}

#[test]
fn a_guessed_cost_waits_only_for_a_clear_gain() {
    // fast: speed 4, frees in 0.5 s; slow: speed 1, free.
    let f = farm(&[(4.0, 0, &[0.5]), (1.0, 1, &[])]);
    let mut v = f.view();
    // 1 s of work: 0.75 s on fast (after waiting) vs 1 s on slow.
    assert_eq!(at(v.pick(1.0, 1.0, R)).0, 0, "known cost: wait");
    assert_eq!(at(v.pick(1.0, 0.6, R)).0, 1, "guess: not worth the gamble");
    // 8 s of work: 2.5 s vs 8 s is worth waiting for even on a guess.
    assert_eq!(at(v.pick(8.0, 0.6, R)).0, 0);
}

#[test]
fn equal_speeds_use_free_slots_first() {
    let f = farm(&[(1.0, 0, &[0.1]), (1.0, 2, &[]), (1.0, 3, &[])]);
    let p = f.view().pick(1.0, 1.0, R);
    assert_eq!(at(p), (2, 0.0), "free now, then the most free slots");
}

#[test]
fn overrunning_jobs_are_expected_to_last_longer() {
    assert_eq!(left(2.0, 1.0), 2.0);
    assert_eq!(left(-5.0, 10.0), 5.0);
    assert!(left(-1.0, 0.0) > 0.0);
}

/// The choice made by looking at every host, for comparison:
/// (finish, free now).
fn exhaustive(v: &mut View, cost: f64, margin: f64) -> Option<(f64, bool)> {
    let all: Vec<(f64, f64)> = (0..v.hosts.len())
        .filter_map(|i| {
            let id = HostId(i);
            let start = match v.booked.iter().find(|b| b.0 == id) {
                Some((_, t)) => *t.first()?,
                None => v.times(id).first().copied()?,
            };
            Some((start, start + cost / v.host(id).speed))
        })
        .collect();
    let key = |p: &&(f64, f64)| (p.1, p.0 != 0.0);
    let best = all
        .iter()
        .min_by(|a, b| key(a).partial_cmp(&key(b)).unwrap())?;
    let now = all
        .iter()
        .filter(|p| p.0 == 0.0)
        .min_by(|a, b| a.1.total_cmp(&b.1));
    Some(match now {
        Some(n) if best.0 != 0.0 && best.1 >= margin * n.1 => (n.1, true),
        _ => (best.1, best.0 == 0.0),
    })
}

proptest::proptest! {
    #[test]
    fn stopping_early_chooses_as_well_as_looking_at_every_host(
        hosts in proptest::collection::vec(
            (1u8..5, 0u32..3, proptest::collection::vec(1u8..40, 0..4)),
            1..12,
        ),
        jobs in proptest::collection::vec((1u8..80, proptest::bool::ANY), 1..10),
    ) {
        let lefts: Vec<Vec<f64>> = hosts
            .iter()
            .map(|(_, _, l)| l.iter().map(|x| f64::from(*x) / 10.0).collect())
            .collect();
        let spec: Vec<(f64, u32, &[f64])> = hosts
            .iter()
            .zip(&lefts)
            .map(|((s, f, _), l)| (f64::from(*s), *f, l.as_slice()))
            .collect();
        let f = farm(&spec);
        let mut v = f.view();
        for (cost, guess) in jobs {
            let (cost, margin) = (f64::from(cost) / 10.0, if guess { 0.6 } else { 0.9 });
            let want = exhaustive(&mut v, cost, margin);
            let got = v.pick(cost, margin, R);
            proptest::prop_assert_eq!(got.map(|p| (p.finish, p.start == 0.0)), want);
            match got {
                Some(p) => v.take(p),
                None => break,
            }
        }
    }
}

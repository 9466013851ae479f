//! Earliest finish time: when will each host have a slot, and where would a
//! job of a given cost finish first? A small simulation run over the queue
//! in serving order, so a job may wait for a fast host that frees soon
//! rather than take a slow one now, and heavy jobs go to fast hosts.
//!
//! The scheduler keeps its hosts ordered fastest first, then most free
//! slots first, and the hosts with a free slot in a second set in the same
//! order. A choice finds the best free host at the head of that set, then
//! walks only the hosts faster than it (at most `VISIT_BUDGET` of them) to
//! see whether one frees soon enough to be worth waiting for; a busy
//! host's slot times are worked out only when it is reached and cannot be
//! ruled out by its earliest expected end. So a choice costs the same on
//! a farm of ten hosts as on one of a thousand.

use super::host::Host;
use super::ids::{HostId, LeaseId};
use super::queue::Need;
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// Seconds counted for a running job that has outlived its estimate, as a
/// share of how long it has run: the longer it overruns, the later it is
/// expected to end, so waiting for it stops looking good.
pub(super) const OVERRUN_SHARE: f64 = 0.5;
/// The least remaining time of a running job: a busy slot never looks free.
const MIN_LEFT: f64 = 1e-3;
/// Busy hosts faster than the best free one that a choice looks at; on a
/// farm with more, the fastest are looked at and the rest wait their turn.
pub(super) const VISIT_BUDGET: usize = 16;

/// A host's place in the walk: fastest first (inverted speed bits), then
/// most free slots, then farm order.
pub(super) type OrderKey = (u64, Reverse<u32>, usize);

/// Where host `id` stands in the walk.
pub(super) fn order_key(id: HostId, h: &Host) -> OrderKey {
    (
        u64::MAX - h.speed.max(0.0).to_bits(),
        Reverse(h.free()),
        id.0,
    )
}

/// A job running in a slot; times in seconds from the scheduler's epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Run {
    /// Its lease.
    pub lease: LeaseId,
    /// When it started.
    pub start: f64,
    /// Its expected work, in seconds on a host of speed 1.0.
    pub cost: f64,
}

impl Run {
    /// Expected seconds left at `now` on a host of `speed`.
    pub(super) fn left(&self, speed: f64, now: f64) -> f64 {
        let elapsed = (now - self.start).max(0.0);
        left(self.cost / speed - elapsed, elapsed)
    }
}

/// Expected seconds left of a running job.
pub(super) fn left(expected_end: f64, elapsed: f64) -> f64 {
    expected_end.max(OVERRUN_SHARE * elapsed).max(MIN_LEFT)
}

/// Where a job would run: the host, when it would start and finish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Pick {
    /// The host.
    pub host: HostId,
    /// Seconds from now until its slot frees (0: now).
    pub start: f64,
    /// Seconds from now until the job would be done.
    pub finish: f64,
}

/// The farm as one pass of the simulation sees it: the scheduler's hosts
/// and indexes, read-only, plus the slots booked during the pass.
#[derive(Debug)]
pub(super) struct View<'a> {
    hosts: &'a [Option<Host>],
    order: &'a BTreeSet<OrderKey>,
    free: &'a BTreeSet<OrderKey>,
    farm_alive: bool,
    now: f64,
    /// Per host: seconds until its first slot frees (NaN: not worked out;
    /// infinite: it has no slot).
    first: Vec<f64>,
    /// Slot times of the hosts touched by a booking, ascending.
    booked: Vec<(HostId, Vec<f64>)>,
}

impl<'a> View<'a> {
    /// A view of `hosts` at `now` (seconds from the scheduler's epoch),
    /// walked in `order`; `free` holds the keys of hosts with a free slot.
    pub(super) fn new(
        hosts: &'a [Option<Host>],
        order: &'a BTreeSet<OrderKey>,
        free: &'a BTreeSet<OrderKey>,
        now: f64,
    ) -> View<'a> {
        let farm_alive = order.iter().any(|k| {
            let h = hosts[k.2].as_ref().expect("ordered host");
            !h.local_only && h.usable()
        });
        View {
            hosts,
            order,
            free,
            farm_alive,
            now,
            first: vec![f64::NAN; hosts.len()],
            booked: Vec::new(),
        }
    }

    /// The host `id`.
    pub(super) fn host(&self, id: HostId) -> &'a Host {
        self.hosts[id.0].as_ref().expect("live host id")
    }

    /// True if host `id` takes jobs of `need` now.
    pub(super) fn accepts(&self, id: HostId, need: Need) -> bool {
        let (remote, local) = self.host(id).kinds(self.farm_alive);
        match need {
            Need::Remote => remote,
            Need::Local => local,
        }
    }

    /// The speed of the fastest host that takes a job of `need` (0 if none).
    pub(super) fn fastest(&self, need: Need) -> f64 {
        self.order
            .iter()
            .map(|k| HostId(k.2))
            .find(|id| self.accepts(*id, need))
            .map_or(0.0, |id| self.host(id).speed)
    }

    /// Hosts with a slot free now, fastest first, that take some job.
    pub(super) fn free_hosts(&self) -> impl Iterator<Item = HostId> + '_ {
        self.free.iter().map(|k| HostId(k.2)).filter(|id| {
            let (remote, local) = self.host(*id).kinds(self.farm_alive);
            (remote || local) && self.free_now(*id)
        })
    }

    /// True while some slot is free now.
    pub(super) fn any_free(&self) -> bool {
        self.free_hosts().next().is_some()
    }

    /// True if host `id` has a slot free now.
    fn free_now(&self, id: HostId) -> bool {
        match self.booked.iter().find(|b| b.0 == id) {
            Some((_, t)) => t.first() == Some(&0.0),
            None => self.host(id).free() > 0,
        }
    }

    /// When each of host `id`'s slots frees, in seconds from now,
    /// ascending; 0 is free now. A host whose slots shrank below its jobs
    /// frees a slot only once enough of them end.
    fn times(&self, id: HostId) -> Vec<f64> {
        let h = self.host(id);
        let speed = h.speed.max(1e-6);
        let mut busy: Vec<f64> = h.running.iter().map(|r| r.left(speed, self.now)).collect();
        busy.sort_by(f64::total_cmp);
        let keep = busy.len().min(h.cap as usize);
        let mut times = vec![0.0; h.free() as usize];
        times.extend_from_slice(&busy[busy.len() - keep..]);
        times
    }

    /// When host `id`'s first slot frees, unless it cannot beat `beat` for
    /// a job that runs `run` seconds there.
    fn first(&mut self, id: HostId, run: f64, beat: Option<f64>) -> Option<f64> {
        let known = self.first[id.0];
        if !known.is_nan() {
            return known.is_finite().then_some(known);
        }
        let h = self.host(id);
        let slots = h.cap as usize;
        let t = if slots == 0 {
            f64::INFINITY
        } else if h.free() > 0 {
            0.0
        } else {
            let bound = (h.first_end - self.now).max(MIN_LEFT);
            if beat.is_some_and(|b| bound + run >= b) {
                return None;
            }
            if h.running.len() > slots {
                self.times(id)[0]
            } else {
                let speed = h.speed.max(1e-6);
                h.running
                    .iter()
                    .map(|r| r.left(speed, self.now))
                    .fold(f64::INFINITY, f64::min)
            }
        };
        self.first[id.0] = t;
        t.is_finite().then_some(t)
    }

    /// Where a job of `cost` that needs `need` should go, among the hosts
    /// of at least `min_speed`: the earliest finish, except that a slot
    /// free now is kept unless waiting for a busy host finishes in under
    /// `margin` x its time (with a cost that is only a guess, waiting on a
    /// heavy-tailed job is a gamble). Ties go to a slot free now, then the
    /// faster host, then the one with more free slots.
    pub(super) fn pick_on(
        &mut self,
        cost: f64,
        margin: f64,
        need: Need,
        min_speed: f64,
    ) -> Option<Pick> {
        let free_now = self.free_now_pick(cost, need, min_speed);
        let mut best = free_now;
        let mut visited = 0;
        let order = self.order;
        for key in order {
            let id = HostId(key.2);
            if !self.accepts(id, need) {
                continue;
            }
            if self.host(id).speed < min_speed {
                // The walk goes fastest first: none further qualifies.
                break;
            }
            let run = cost / self.host(id).speed.max(1e-6);
            // Every host from here on is no faster: none beats the free
            // slot by the margin, and none free now could turn the margin
            // against the best.
            if free_now.is_some_and(|n| run >= margin * n.finish)
                || (free_now.is_none() && best.is_some_and(|b| margin * run > b.finish))
            {
                break;
            }
            visited += 1;
            if visited > VISIT_BUDGET {
                break;
            }
            let Some(start) = self.first(id, run, best.map(|b| b.finish)) else {
                continue;
            };
            let p = Pick {
                host: id,
                start,
                finish: start + run,
            };
            let better = best.is_none_or(|b| {
                p.finish < b.finish || (p.finish == b.finish && start == 0.0 && b.start != 0.0)
            });
            if better {
                best = Some(p);
            }
        }
        let best = best?;
        match free_now {
            Some(n) if best.start != 0.0 && best.finish >= margin * n.finish => Some(n),
            _ => Some(best),
        }
    }

    /// The fastest host with a slot free now that takes a job of `need`
    /// and has at least `min_speed`.
    fn free_now_pick(&self, cost: f64, need: Need, min_speed: f64) -> Option<Pick> {
        self.free_hosts()
            .find(|id| self.accepts(*id, need) && self.host(*id).speed >= min_speed)
            .map(|id| Pick {
                host: id,
                start: 0.0,
                finish: cost / self.host(id).speed.max(1e-6),
            })
    }

    /// Books the slot of `pick`: it frees again when the job would finish.
    pub(super) fn take(&mut self, pick: Pick) {
        let at = match self.booked.iter().position(|b| b.0 == pick.host) {
            Some(at) => at,
            None => {
                let times = self.times(pick.host);
                self.booked.push((pick.host, times));
                self.booked.len() - 1
            }
        };
        let times = &mut self.booked[at].1;
        if times.is_empty() {
            return;
        }
        times.remove(0);
        let i = times.partition_point(|t| *t <= pick.finish);
        times.insert(i, pick.finish.max(MIN_LEFT));
        self.first[pick.host.0] = times[0];
    }
}

#[cfg(test)]
mod tests {
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
                        cost: l * speed,
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
            View::new(&self.hosts, &self.order, &self.free, 0.0)
        }
    }

    impl View<'_> {
        /// `pick_on` among every host.
        fn pick(&mut self, cost: f64, margin: f64, need: Need) -> Option<Pick> {
            self.pick_on(cost, margin, need, 0.0)
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
}

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
use super::queue::{Job, Need};
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
    /// The job (its expected work is `job.cost`, in seconds on a host of
    /// speed 1.0), kept so the lease can wait in the queue again.
    pub job: Job,
}

impl Run {
    /// Expected seconds left at `now` on a host of `speed`.
    pub(super) fn left(&self, speed: f64, now: f64) -> f64 {
        let elapsed = (now - self.start).max(0.0);
        left(self.job.cost / speed - elapsed, elapsed)
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
    /// A distributable job on this machine's pool while its farm is up
    /// (`overflow`).
    pub overflow: bool,
}

/// What a job asks of a host: its cost, what it needs, its host set.
#[derive(Debug, Clone, Copy)]
pub(super) struct Want {
    /// Expected work, in seconds on a host of speed 1.0.
    pub cost: f64,
    /// Where it may run.
    pub need: Need,
    /// The host set of its list.
    pub set: u32,
}

/// One host set: which host ids are in it, and how many jobs this
/// machine's pool may run at once for it (its list's `--localslots`).
#[derive(Debug, Clone, Default)]
pub(super) struct Members {
    /// By host id: in the set.
    pub hosts: Vec<bool>,
    /// The pool's limit for this set's jobs, if the list gives one.
    pub local_cap: Option<u32>,
}

/// The host sets by index; none at all: every host is in every set.
pub(super) type Sets = [Members];

/// True when host `id` is in `set` of `sets`.
pub(super) fn in_set(sets: &Sets, set: u32, id: HostId) -> bool {
    match sets.get(set as usize) {
        Some(m) => m.hosts.get(id.0).copied().unwrap_or(false),
        None => sets.is_empty(),
    }
}

/// The farm as one pass of the simulation sees it: the scheduler's hosts
/// and indexes, read-only, plus the slots booked during the pass.
#[derive(Debug)]
pub(super) struct View<'a> {
    hosts: &'a [Option<Host>],
    order: &'a BTreeSet<OrderKey>,
    free: &'a BTreeSet<OrderKey>,
    sets: &'a Sets,
    /// Per host set: some host of it takes distributable jobs (else they
    /// run on this machine's pool). One entry when there are no sets.
    alive: Vec<bool>,
    now: f64,
    /// Per host: seconds until its first slot frees (NaN: not worked out;
    /// infinite: it has no slot).
    first: Vec<f64>,
    /// Slot times of the hosts touched by a booking, ascending.
    booked: Vec<(HostId, Vec<f64>)>,
    /// Distributable jobs the pool may still take while the farm is full.
    overflow: u32,
}

/// Per host set: some farm host of it takes distributable jobs now, or
/// (`without_slots`) would if it had usable slots.
fn alive(
    hosts: &[Option<Host>],
    order: &BTreeSet<OrderKey>,
    sets: &Sets,
    without_slots: bool,
) -> Vec<bool> {
    (0..sets.len().max(1))
        .map(|set| {
            order.iter().any(|k| {
                let h = hosts[k.2].as_ref().expect("ordered host");
                !h.local_only
                    && h.usable()
                    && (h.cap > 0 || without_slots)
                    && in_set(sets, set as u32, HostId(k.2))
            })
        })
        .collect()
}

impl<'a> View<'a> {
    /// A view of `hosts` at `now` (seconds from the scheduler's epoch),
    /// walked in `order`; `free` holds the keys of hosts with a free slot.
    pub(super) fn new(
        hosts: &'a [Option<Host>],
        (order, free): (&'a BTreeSet<OrderKey>, &'a BTreeSet<OrderKey>),
        sets: &'a Sets,
        now: f64,
    ) -> View<'a> {
        let alive = alive(hosts, order, sets, false);
        View {
            hosts,
            order,
            free,
            sets,
            alive,
            now,
            first: vec![f64::NAN; hosts.len()],
            booked: Vec::new(),
            overflow: 0,
        }
    }

    /// While `may_grow`, a farm host with no usable slot may soon have one
    /// (a team claim on its way): distributable jobs wait for it rather
    /// than run on this machine's pool.
    pub(super) fn capacity_may_grow(mut self, may_grow: bool) -> Self {
        if may_grow {
            self.alive = alive(self.hosts, self.order, self.sets, true);
        }
        self
    }

    /// Lets the pool take up to `n` distributable jobs while no farm host
    /// of their set has a free slot.
    pub(super) fn with_overflow(mut self, n: u32) -> Self {
        self.overflow = n;
        self
    }

    /// The host `id`.
    pub(super) fn host(&self, id: HostId) -> &'a Host {
        self.hosts[id.0].as_ref().expect("live host id")
    }

    /// True if host `id` takes a job of `need` from host set `set` now:
    /// a distributable job goes to the hosts of its set, or to this
    /// machine's pool when none of them is up or it overflows there; a
    /// local-only job to `localhost`.
    pub(super) fn accepts(&self, id: HostId, need: Need, set: u32) -> bool {
        let h = self.host(id);
        match need {
            Need::Remote if h.local_only => {
                h.usable()
                    && self.pool_room(id, set)
                    && (!self.alive(set) || self.overflows(id, set))
            }
            Need::Remote => h.usable() && in_set(self.sets, set, id),
            Need::Local if h.local_only => !h.removed && self.pool_room(id, set),
            Need::Local => h.spec.is_local() && !h.removed,
        }
    }

    /// True when this machine's pool (host `id`) runs fewer jobs now than
    /// `set`'s list allows it (`--localslots`; distcc counts every local
    /// job of the machine against each client's own limit too).
    fn pool_room(&self, id: HostId, set: u32) -> bool {
        let Some(cap) = self.sets.get(set as usize).and_then(|m| m.local_cap) else {
            return true;
        };
        let h = self.host(id);
        let free_now = match self.booked.iter().find(|b| b.0 == id) {
            Some((_, t)) => t.iter().take_while(|x| **x == 0.0).count() as u32,
            None => h.free(),
        };
        h.cap.saturating_sub(free_now) < cap
    }

    /// True when a distributable job of `set` may overflow to the pool
    /// (host `id`) now: it has a free slot and an idle CPU, and no farm
    /// host of the set has a free slot.
    fn overflows(&self, id: HostId, set: u32) -> bool {
        self.overflow > 0
            && self.free_now(id)
            && !self.free_hosts().any(|f| {
                let h = self.host(f);
                !h.local_only && h.usable() && in_set(self.sets, set, f)
            })
    }

    /// True when `id` is the pool taking a distributable job of a set
    /// whose farm is up.
    fn is_overflow(&self, id: HostId, need: Need, set: u32) -> bool {
        need == Need::Remote && self.host(id).local_only && self.alive(set)
    }

    /// True when some host of `set` takes distributable jobs.
    fn alive(&self, set: u32) -> bool {
        let i = if self.sets.is_empty() {
            0
        } else {
            set as usize
        };
        self.alive.get(i).copied().unwrap_or(false)
    }

    /// The speed of the fastest host that takes a job of `need` from `set`
    /// (0 if none).
    pub(super) fn fastest(&self, need: Need, set: u32) -> f64 {
        // A host with no usable slot (a team's host this broker holds no
        // claim on) will not take the job: it does not count.
        self.order
            .iter()
            .map(|k| HostId(k.2))
            .find(|id| self.accepts(*id, need, set) && self.host(*id).cap > 0)
            .map_or(0.0, |id| self.host(id).speed)
    }

    /// Hosts with a slot free now, fastest first, that may take some job.
    pub(super) fn free_hosts(&self) -> impl Iterator<Item = HostId> + '_ {
        self.free.iter().map(|k| HostId(k.2)).filter(|id| {
            let h = self.host(*id);
            (h.usable() || (h.spec.is_local() && !h.removed)) && self.free_now(*id)
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
    pub(super) fn pick_on(&mut self, want: Want, margin: f64, min_speed: f64) -> Option<Pick> {
        let Want { cost, need, set } = want;
        let free_now = self.free_now_pick(want, min_speed);
        // Overflowing is worth it only if it finishes sooner.
        let margin = if free_now.is_some_and(|n| n.overflow) {
            1.0
        } else {
            margin
        };
        let mut best = free_now;
        let mut visited = 0;
        let order = self.order;
        for key in order {
            let id = HostId(key.2);
            if !self.accepts(id, need, set) {
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
                overflow: self.is_overflow(id, need, set),
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
    fn free_now_pick(&self, want: Want, min_speed: f64) -> Option<Pick> {
        self.free_hosts()
            .find(|id| self.accepts(*id, want.need, want.set) && self.host(*id).speed >= min_speed)
            .map(|id| Pick {
                host: id,
                start: 0.0,
                finish: want.cost / self.host(id).speed.max(1e-6),
                overflow: self.is_overflow(id, want.need, want.set),
            })
    }

    /// Books the slot of `pick`: it frees again when the job would finish.
    pub(super) fn take(&mut self, pick: Pick) {
        if pick.overflow && pick.start == 0.0 {
            self.overflow = self.overflow.saturating_sub(1);
        }
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
#[path = "eft_tests.rs"]
mod tests;

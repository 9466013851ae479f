//! Serving the queue: each waiting compile, in serving order, goes where it
//! would finish first (`eft`). A slot free now is taken; a busy fast host
//! that frees soon is booked, and the compile keeps waiting for it. The
//! whole pass is worked out on a read-only view first (`decide`), then
//! applied (`dispatch`).

use super::eft::{Pick, Run, View, Want};
use super::learn::MIN_SAMPLES;
use super::{HostId, Job, LeaseId, Need, Placement, Scheduler};
use std::time::{Duration, Instant};

/// Waiting for a busy host must beat a free slot by this factor. Trusting
/// known costs more (waiting for 10% instead of 40%) made builds slower in
/// the scheduler simulation (`benches/schedsim.rs`) at every `-j` below
/// twice the slots: a waiting compile holds one of make's jobs.
const WAIT_MARGIN: f64 = 0.6;

/// In a deep queue, a compile whose cost is only a guess and above the
/// mean goes only to hosts at least this share of the fastest one's speed.
/// A size guess can be several times off; a heavy file guessed medium that
/// lands on a slow host late finishes last, long after the rest (seen in
/// the farm benchmark at -j80: 11.2 s against 5.4 s once the cost was
/// known). Light compiles, most of a heavy-tailed build, keep the slower
/// hosts busy meanwhile.
const DEEP_QUEUE_SPEED_SHARE: f64 = 0.75;

/// How often a host still without enough samples is given a job anyway.
pub(super) const EXPLORE_EVERY: Duration = Duration::from_secs(2);

/// Queued compiles that may book a busy host's future slot in one pass
/// before a free slot is given to the next compile that fits it (at most
/// twice the farm's slots, as bookings beyond that reach past every slot).
const LOOKAHEAD: usize = 64;

/// One placement `decide` chose.
#[derive(Debug, Clone, Copy)]
struct Decision {
    /// The lease placed.
    lease: LeaseId,
    /// Where.
    host: HostId,
    /// Its job.
    job: Job,
    /// Chosen to learn the host's speed.
    explored: bool,
}

/// What one pass over the queue knows and has decided so far.
struct Pass<'a> {
    /// The farm, with the slots booked so far in this pass.
    view: View<'a>,
    /// Compiles that may book a later slot before free slots go to
    /// whichever compile fits them.
    lookahead: usize,
    /// Some host still has its speed to learn.
    explore: bool,
    /// More compiles wait than twice the slots: the whole build is queued.
    deep: bool,
    /// Per host set, the fastest host's speed, in a deep queue (worked
    /// out when a job of the set first needs it).
    fastest: Vec<Option<f64>>,
    /// A heavy guessed compile already waits for a fast host.
    fast_booked: bool,
    /// Compiles that booked a later slot or found none.
    waited: usize,
    /// The placements decided.
    out: Vec<Decision>,
}

impl Pass<'_> {
    /// The speed of the fastest host that takes distributable jobs of
    /// host set `set`.
    fn fastest(&mut self, set: u32) -> f64 {
        let i = set as usize;
        if self.fastest.len() <= i {
            self.fastest.resize(i + 1, None);
        }
        let view = &self.view;
        *self.fastest[i].get_or_insert_with(|| view.fastest(Need::Remote, set))
    }
}

impl Scheduler {
    /// Serves the queue and returns the leases it placed.
    pub(super) fn dispatch(&mut self, now: Instant) -> Vec<Placement> {
        if self.queue.is_empty() {
            return Vec::new();
        }
        let decided = self.decide(now);
        let mut placed = Vec::with_capacity(decided.len());
        for d in decided {
            if d.explored {
                self.host_mut(d.host).explored = Some(now);
            }
            self.queue.served(d.job.build);
            self.queue.remove(d.lease);
            self.count_overflow(d.host, d.job.need);
            let run = Run {
                lease: d.lease,
                start: self.secs(now),
                job: d.job,
            };
            self.run_on(d.host, run);
            placed.push(Placement {
                lease: d.lease,
                host: d.host,
            });
        }
        placed
    }

    /// The placements `dispatch` makes, worked out without changing anything.
    fn decide(&self, now: Instant) -> Vec<Decision> {
        let mut pass = self.pass(now);
        for (lease, job) in self.queue.iter() {
            if pass.waited > 2 * pass.lookahead || !pass.view.any_free() {
                break;
            }
            if !self.try_explore(&mut pass, lease, job, now) {
                self.choose(&mut pass, lease, job);
            }
        }
        pass.out
    }

    /// A pass over the queue as it stands at `now`.
    fn pass(&self, now: Instant) -> Pass<'_> {
        let indexes = (&self.order, &self.free);
        let view = View::new(&self.hosts, indexes, &self.sets, self.secs(now))
            .capacity_may_grow(self.may_grow)
            .with_overflow(self.overflow.allowance());
        // Enough lookahead for the free slots (a few each), and never past
        // every slot of the farm.
        let free: usize = view
            .free_hosts()
            .take(8)
            .map(|id| view.host(id).free() as usize)
            .sum();
        let lookahead = (2 * self.total_slots + 8).min(LOOKAHEAD).min(4 * free + 8);
        // More waiting than make's usual -j (twice the slots) would leave:
        // the whole build is queued, and the slower hosts can be given the
        // lighter compiles further down the queue.
        let deep = self.queue.len() > 2 * self.total_slots;
        Pass {
            view,
            lookahead,
            explore: self.learned_any && self.unlearned > 0,
            deep,
            fastest: Vec::new(),
            fast_booked: false,
            waited: 0,
            out: Vec::new(),
        }
    }

    /// Gives a known-light compile to a host whose speed is still unknown,
    /// if one is due a try. True when it did.
    fn try_explore(&self, pass: &mut Pass, lease: LeaseId, job: Job, now: Instant) -> bool {
        if job.need != Need::Remote || !job.light || !pass.explore {
            return false;
        }
        let Some(host) = self.explore(&pass.view, &pass.out, job.set, now) else {
            return false;
        };
        let finish = job.cost / pass.view.host(host).speed.max(1e-6);
        pass.view.take(Pick {
            host,
            start: 0.0,
            finish,
            overflow: false,
        });
        pass.out.push(Decision {
            lease,
            host,
            job,
            explored: true,
        });
        true
    }

    /// A free farm host that has too few jobs to know its speed, if one
    /// has not been tried for a while and not already in this pass: it
    /// gets this job so it is not judged on nothing.
    fn explore(&self, view: &View, tried: &[Decision], set: u32, now: Instant) -> Option<HostId> {
        view.free_hosts().find(|id| {
            let h = self.host(*id);
            !h.spec.is_local()
                && view.accepts(*id, Need::Remote, set)
                && h.learned.samples() < MIN_SAMPLES
                && h.explored
                    .is_none_or(|t| now.duration_since(t) >= EXPLORE_EVERY)
                && !tried.iter().any(|d| d.explored && d.host == *id)
        })
    }

    /// Places `lease` where it finishes first, or books the slot it waits
    /// for.
    fn choose(&self, pass: &mut Pass, lease: LeaseId, job: Job) {
        // Past the lookahead a free slot goes to the next compile that fits
        // it rather than stay idle.
        let margin = if pass.waited > pass.lookahead {
            0.0
        } else {
            WAIT_MARGIN
        };
        let restricted =
            pass.deep && job.need == Need::Remote && !job.known && job.cost > self.mean_cost;
        if restricted && pass.fast_booked {
            // An earlier, heavier one already waits for a fast host: this
            // one would only book a later slot there.
            return;
        }
        let min_speed = if restricted {
            DEEP_QUEUE_SPEED_SHARE * pass.fastest(job.set)
        } else {
            0.0
        };
        let want = Want {
            cost: job.cost,
            need: job.need,
            set: job.set,
        };
        // Overflowing to this machine only with a measured cost: a heavy
        // compile guessed light would finish last, here, at local speed.
        let pick = pass.view.pick_on(want, margin, min_speed);
        let Some(pick) = pick.filter(|p| !p.overflow || job.known) else {
            pass.waited += 1;
            return;
        };
        pass.view.take(pick);
        if pick.start == 0.0 {
            pass.out.push(Decision {
                lease,
                host: pick.host,
                job,
                explored: false,
            });
        } else {
            pass.fast_booked |= restricted;
            pass.waited += 1;
        }
    }
}

//! The wait queue, fair between builds: builds (the compiles of one `make`,
//! told apart by their process group) take turns, so no build starves
//! behind another's hundreds of queued compiles. Within a build the
//! heaviest expected compile goes first (longest processing time first),
//! so a long compile does not start last and hold up the end of the build.
//!
//! Each build keeps its compiles in an ordered map, so adding, removing and
//! reading the head of the serving order cost O(log n) whatever the queue's
//! length; only `position` walks the order.

use super::ids::LeaseId;
use std::collections::{BTreeMap, HashMap};

/// What a compile needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A distributable compile: any farm host (or `localhost` if listed).
    Remote,
    /// A job that must run on this machine.
    Local,
}

/// A compile asking for a slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    /// Where it may run.
    pub need: Need,
    /// Expected work, in seconds on a host of speed 1.0.
    pub cost: f64,
    /// True when `cost` was measured on this file before, not guessed.
    pub known: bool,
    /// Known to be light (well under the average): cheap to send to a host
    /// whose speed is still unknown.
    pub light: bool,
    /// The build it belongs to.
    pub build: u32,
    /// The host set of its list (`Farm::sets`): the hosts it may run on.
    pub set: u32,
}

impl Job {
    /// A job of `need` with a known unit cost, in build 0.
    #[cfg(test)]
    pub(crate) fn of(need: Need) -> Job {
        Job {
            need,
            cost: 1.0,
            known: true,
            light: false,
            build: 0,
            set: 0,
        }
    }
}

/// Serving order within a build: heaviest first, then arrival.
type Key = (u64, u64);

fn key(cost: f64, seq: u64) -> Key {
    // Non-negative floats order like their bits; invert for heaviest first.
    let cost = if cost.is_nan() { 0.0 } else { cost.max(0.0) };
    (u64::MAX - cost.to_bits(), seq)
}

/// One build's waiting compiles.
#[derive(Debug)]
struct Build {
    id: u32,
    jobs: BTreeMap<Key, (LeaseId, Job)>,
}

/// Waiting compiles.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Builds with waiting compiles, in the order their first one arrived.
    builds: Vec<Build>,
    /// Where each waiting lease is: its build and key.
    index: HashMap<LeaseId, (u32, Key)>,
    /// Arrival counter.
    seq: u64,
    /// The build served last: the next turn is the following build's.
    last: Option<u32>,
}

impl Queue {
    /// Adds a compile at the end of its build's turn.
    pub(super) fn push(&mut self, lease: LeaseId, job: Job) {
        self.remove(lease);
        self.seq += 1;
        let k = key(job.cost, self.seq);
        let b = match self.builds.iter().position(|b| b.id == job.build) {
            Some(b) => b,
            None => {
                self.builds.push(Build {
                    id: job.build,
                    jobs: BTreeMap::new(),
                });
                self.builds.len() - 1
            }
        };
        self.builds[b].jobs.insert(k, (lease, job));
        self.index.insert(lease, (job.build, k));
    }

    /// Takes `lease` out; false if it was not there.
    pub(super) fn remove(&mut self, lease: LeaseId) -> bool {
        let Some((build, k)) = self.index.remove(&lease) else {
            return false;
        };
        if let Some(b) = self.builds.iter().position(|b| b.id == build) {
            self.builds[b].jobs.remove(&k);
            if self.builds[b].jobs.is_empty() {
                self.builds.remove(b);
            }
        }
        true
    }

    /// Compiles waiting.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// True when none waits.
    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// A compile of `build` was served.
    pub(super) fn served(&mut self, build: u32) {
        self.last = Some(build);
    }

    /// The waiting compiles in serving order, lazily: builds take turns,
    /// starting after the build served last; within a build, heaviest
    /// expected first, then arrival order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (LeaseId, Job)> + '_ {
        let n = self.builds.len();
        let first = self
            .last
            .and_then(|last| self.builds.iter().position(|b| b.id == last))
            .map_or(0, |i| i + 1);
        let mut turns: Vec<_> = (0..n)
            .map(|i| self.builds[(first + i) % n].jobs.values())
            .collect();
        let mut next = 0;
        std::iter::from_fn(move || {
            while !turns.is_empty() {
                let i = next % turns.len();
                if let Some(&e) = turns[i].next() {
                    next = i + 1;
                    return Some(e);
                }
                drop(turns.remove(i));
                next = i;
            }
            None
        })
    }

    /// 1-based place of `lease` in the serving order.
    pub(super) fn position(&self, lease: LeaseId) -> Option<usize> {
        self.index.get(&lease)?;
        self.iter().position(|(l, _)| l == lease).map(|p| p + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Queue {
        fn order(&self) -> Vec<(LeaseId, Job)> {
            self.iter().collect()
        }
    }

    fn job(build: u32) -> Job {
        Job {
            need: Need::Remote,
            cost: 1.0,
            known: true,
            light: false,
            build,
            set: 0,
        }
    }

    #[test]
    fn heaviest_first_within_a_build() {
        let mut q = Queue::default();
        for (l, cost) in [(1, 0.5), (2, 4.0), (3, 1.0), (4, 4.0)] {
            q.push(l, Job { cost, ..job(1) });
        }
        let order: Vec<LeaseId> = q.order().iter().map(|e| e.0).collect();
        assert_eq!(order, [2, 4, 3, 1], "equal costs keep arrival order");
    }

    #[test]
    fn builds_take_turns() {
        let mut q = Queue::default();
        for l in 0..5 {
            q.push(l, job(1));
        }
        q.push(10, job(2));
        q.push(11, job(2));
        let order: Vec<LeaseId> = q.order().iter().map(|e| e.0).collect();
        assert_eq!(order, [0, 10, 1, 11, 2, 3, 4]);
        assert_eq!(q.position(11), Some(4));
        q.remove(0);
        q.remove(10);
        assert_eq!(q.position(11), Some(2));
        assert!(q.remove(11) && !q.remove(11));
        q.served(1);
        q.push(12, job(2));
        let order: Vec<LeaseId> = q.order().iter().map(|e| e.0).collect();
        assert_eq!(
            order,
            [12, 1, 2, 3, 4],
            "build 2's turn after build 1 was served"
        );
    }
}

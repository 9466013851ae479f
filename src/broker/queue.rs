//! The wait queue, fair between builds: builds (the compiles of one `make`,
//! told apart by their process group) take turns, so no build starves
//! behind another's hundreds of queued compiles. Within a build the
//! heaviest expected compile goes first (longest processing time first),
//! so a long compile does not start last and hold up the end of the build.

use super::sched::LeaseId;
use std::collections::{HashMap, VecDeque};

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
}

impl Job {
    /// A job of `need` with a known unit cost, in build 0.
    pub fn of(need: Need) -> Job {
        Job {
            need,
            cost: 1.0,
            known: true,
            light: false,
            build: 0,
        }
    }
}

/// Waiting compiles in arrival order.
#[derive(Debug, Default)]
pub struct Queue {
    entries: VecDeque<(LeaseId, Job)>,
    /// The build served last: the next turn is the following build's.
    last: Option<u32>,
}

impl Queue {
    /// Adds a compile at the end.
    pub fn push(&mut self, lease: LeaseId, job: Job) {
        self.entries.push_back((lease, job));
    }

    /// Takes `lease` out; false if it was not there.
    pub fn remove(&mut self, lease: LeaseId) -> bool {
        match self.entries.iter().position(|(l, _)| *l == lease) {
            Some(p) => self.entries.remove(p).is_some(),
            None => false,
        }
    }

    /// Takes every lease in `leases` out.
    pub fn remove_all(&mut self, leases: &[LeaseId]) {
        if !leases.is_empty() {
            self.entries.retain(|(l, _)| !leases.contains(l));
        }
    }

    /// Compiles waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A compile of `build` was served.
    pub fn served(&mut self, build: u32) {
        self.last = Some(build);
    }

    /// The order in which waiting compiles are served: builds take turns,
    /// starting after the build served last; within a build, heaviest
    /// expected first, then arrival order.
    pub fn order(&self) -> Vec<(LeaseId, Job)> {
        let mut groups: Vec<VecDeque<(LeaseId, Job)>> = Vec::new();
        let mut index: HashMap<u32, usize> = HashMap::new();
        for &(l, j) in &self.entries {
            let g = *index.entry(j.build).or_insert_with(|| {
                groups.push(VecDeque::new());
                groups.len() - 1
            });
            groups[g].push_back((l, j));
        }
        for g in &mut groups {
            g.make_contiguous()
                .sort_by(|a, b| b.1.cost.total_cmp(&a.1.cost));
        }
        // Builds by their first waiting compile; the turn passes on from
        // the build served last.
        if let Some(i) = self.last.and_then(|b| index.get(&b)) {
            groups.rotate_left(i + 1);
        }
        let mut out = Vec::with_capacity(self.entries.len());
        while out.len() < self.entries.len() {
            for g in &mut groups {
                if let Some(e) = g.pop_front() {
                    out.push(e);
                }
            }
        }
        out
    }

    /// 1-based place of `lease` in the serving order.
    pub fn position(&self, lease: LeaseId) -> Option<usize> {
        self.order()
            .iter()
            .position(|(l, _)| *l == lease)
            .map(|p| p + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(build: u32) -> Job {
        Job {
            need: Need::Remote,
            cost: 1.0,
            known: true,
            light: false,
            build,
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
        q.remove_all(&[0, 10]);
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

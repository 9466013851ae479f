//! Earliest finish time: when will each host have a slot, and where would a
//! job of a given cost finish first? A small simulation run over the queue
//! in serving order, so a job may wait for a fast host that frees soon
//! rather than take a slow one now, and heavy jobs go to fast hosts.

use super::sched::HostId;

/// Seconds counted for a running job that has outlived its estimate, as a
/// share of how long it has run: the longer it overruns, the later it is
/// expected to end, so waiting for it stops looking good.
pub const OVERRUN_SHARE: f64 = 0.5;
/// The least remaining time of a running job: a busy slot never looks free.
const MIN_LEFT: f64 = 1e-3;

/// One host as the simulation sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The host.
    pub id: HostId,
    /// Its speed (work per second, relative).
    pub speed: f64,
    /// May take distributable jobs.
    pub remote: bool,
    /// May take local-only jobs.
    pub local: bool,
    /// When each slot frees, in seconds from now, ascending; 0 is free now.
    times: Vec<f64>,
}

impl Entry {
    /// A host with `free` idle slots and busy slots freeing after `left`.
    pub fn new(
        id: HostId,
        speed: f64,
        remote: bool,
        local: bool,
        free: u32,
        left: Vec<f64>,
    ) -> Entry {
        let mut times = vec![0.0; free as usize];
        times.extend(left.into_iter().map(|t| t.max(MIN_LEFT)));
        times.sort_by(f64::total_cmp);
        Entry {
            id,
            speed: speed.max(1e-6),
            remote,
            local,
            times,
        }
    }

    fn free_now(&self) -> usize {
        self.times.iter().take_while(|t| **t == 0.0).count()
    }
}

/// Expected seconds left of a running job.
pub fn left(expected_end: f64, elapsed: f64) -> f64 {
    expected_end.max(OVERRUN_SHARE * elapsed).max(MIN_LEFT)
}

/// Where a job would run: the entry, when it would start and finish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Index of the entry.
    pub entry: usize,
    /// Seconds from now until its slot frees (0: now).
    pub start: f64,
    /// Seconds from now until the job would be done.
    pub finish: f64,
}

/// The farm's slots as the simulation sees them.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    /// The hosts.
    pub entries: Vec<Entry>,
}

impl Slots {
    /// True while some slot is free now.
    pub fn any_free(&self) -> bool {
        self.entries.iter().any(|e| e.times.first() == Some(&0.0))
    }

    /// Where a job of `cost` should go among the entries `ok` accepts: the
    /// earliest finish, except that a slot free now is kept unless waiting
    /// for a busy host finishes in under `margin` x its time (with a cost
    /// that is only a guess, waiting on a heavy-tailed job is a gamble).
    pub fn pick(&self, cost: f64, margin: f64, ok: impl Fn(&Entry) -> bool) -> Option<Pick> {
        let best = self.earliest(cost, &ok)?;
        if best.start == 0.0 {
            return Some(best);
        }
        match self.earliest(cost, |e| ok(e) && e.times.first() == Some(&0.0)) {
            Some(now) if best.finish >= margin * now.finish => Some(now),
            _ => Some(best),
        }
    }

    /// The entry where a job of `cost` finishes first among those `ok`
    /// accepts. Ties go to a slot free now, then the faster host, then the
    /// one with more free slots, then the earlier one.
    fn earliest(&self, cost: f64, ok: impl Fn(&Entry) -> bool) -> Option<Pick> {
        let mut best: Option<(Pick, &Entry)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let Some(&start) = e.times.first() else {
                continue;
            };
            if !ok(e) {
                continue;
            }
            let p = Pick {
                entry: i,
                start,
                finish: start + cost / e.speed,
            };
            let better = match best {
                None => true,
                Some((b, be)) => {
                    let key = |p: &Pick, e: &Entry| {
                        (p.finish, p.start != 0.0, -e.speed, -(e.free_now() as f64))
                    };
                    let (k1, k2) = (key(&p, e), key(&b, be));
                    k1.partial_cmp(&k2) == Some(std::cmp::Ordering::Less)
                }
            };
            if better {
                best = Some((p, e));
            }
        }
        best.map(|(p, _)| p)
    }

    /// Books the slot of `pick`: it frees again when the job would finish.
    pub fn take(&mut self, pick: Pick) {
        let times = &mut self.entries[pick.entry].times;
        times.remove(0);
        let at = times.partition_point(|t| *t <= pick.finish);
        times.insert(at, pick.finish.max(MIN_LEFT));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(hosts: &[(f64, u32, &[f64])]) -> Slots {
        Slots {
            entries: hosts
                .iter()
                .enumerate()
                .map(|(i, (s, free, left))| {
                    Entry::new(HostId(i), *s, true, false, *free, left.to_vec())
                })
                .collect(),
        }
    }

    #[test]
    fn light_job_takes_the_free_slow_host_heavy_job_waits_for_the_fast_one() {
        // fast: speed 4, busy for 1 more second; slow: speed 1, free.
        let s = slots(&[(4.0, 0, &[1.0]), (1.0, 1, &[])]);
        let light = s.pick(0.2, 1.0, |_| true).unwrap();
        assert_eq!((light.entry, light.start), (1, 0.0));
        let heavy = s.pick(8.0, 1.0, |_| true).unwrap();
        assert_eq!(heavy.entry, 0, "8 s on slow vs 1 + 2 s on fast");
        assert_eq!(heavy.finish, 3.0);
    }

    #[test]
    fn booked_slots_push_later_jobs_elsewhere() {
        let mut s = slots(&[(4.0, 1, &[]), (1.0, 2, &[])]);
        let mut got = Vec::new();
        for _ in 0..4 {
            let p = s.pick(1.0, 1.0, |_| true).unwrap();
            got.push((p.entry, p.start));
            s.take(p);
        }
        // The fast host three times in a row (finishing at 0.25, 0.5, 0.75
        // beats the slow host's 1.0); the fourth ties at 1.0 and takes the
        // slot that is free now.
        assert_eq!(got, [(0, 0.0), (0, 0.25), (0, 0.5), (1, 0.0)]);
    }

    #[test]
    fn a_guessed_cost_waits_only_for_a_clear_gain() {
        // fast: speed 4, frees in 0.5 s; slow: speed 1, free.
        let s = slots(&[(4.0, 0, &[0.5]), (1.0, 1, &[])]);
        // 1 s of work: 0.75 s on fast (after waiting) vs 1 s on slow.
        assert_eq!(
            s.pick(1.0, 1.0, |_| true).unwrap().entry,
            0,
            "known cost: wait"
        );
        assert_eq!(
            s.pick(1.0, 0.6, |_| true).unwrap().entry,
            1,
            "guess: not worth the gamble"
        );
        // 8 s of work: 2.5 s vs 8 s is worth waiting for even on a guess.
        assert_eq!(s.pick(8.0, 0.6, |_| true).unwrap().entry, 0);
    }

    #[test]
    fn equal_speeds_use_free_slots_first() {
        let s = slots(&[(1.0, 0, &[0.1]), (1.0, 2, &[]), (1.0, 3, &[])]);
        let p = s.pick(1.0, 1.0, |_| true).unwrap();
        assert_eq!(
            (p.entry, p.start),
            (2, 0.0),
            "free now, then the most free slots"
        );
    }

    #[test]
    fn overrunning_jobs_are_expected_to_last_longer() {
        assert_eq!(left(2.0, 1.0), 2.0);
        assert_eq!(left(-5.0, 10.0), 5.0);
        assert!(left(-1.0, 0.0) > 0.0);
    }
}

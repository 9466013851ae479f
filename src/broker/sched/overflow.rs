//! Local overflow (`[broker] local_overflow`): when no farm host of a
//! compile's list has a free slot and this machine has idle CPUs, the
//! compile may run here if it would finish sooner than by waiting for the
//! farm (the earliest-finish choice decides, with no margin in favour of
//! the free local slot) and its cost was measured on that file before (a
//! heavy compile guessed light would finish last, here). Idle CPUs are measured (`broker` samples the
//! kernel's CPU times), so the preprocessing that farm compiles do here
//! keeps its CPUs: those are busy, not idle. As in distcc when `localhost`
//! is listed, but only while the farm is full.

use super::{Need, Placement, Scheduler};
use std::time::Instant;

/// The overflow switch and what the last sample allows.
#[derive(Debug, Default, Clone)]
pub(super) struct Overflow {
    /// `[broker] local_overflow`.
    on: bool,
    /// Whole CPUs idle at the last sample.
    idle: u32,
    /// Overflow compiles started since then (the sample does not see them).
    started: u32,
}

impl Overflow {
    /// Distributable compiles the pool may start now beyond a dead farm.
    pub(super) fn allowance(&self) -> u32 {
        if self.on {
            self.idle.saturating_sub(self.started)
        } else {
            0
        }
    }
}

impl Scheduler {
    /// Turns local overflow on or off.
    pub(crate) fn set_overflow(&mut self, on: bool) {
        self.overflow.on = on;
        if !on {
            self.overflow.idle = 0;
        }
    }

    /// This machine had `idle_cpus` idle CPUs over the last sample.
    /// Returns the queued compiles that overflow to it now.
    pub(crate) fn local_idle(&mut self, idle_cpus: f64, now: Instant) -> Vec<Placement> {
        let before = self.overflow.allowance();
        self.overflow.idle = if idle_cpus.is_finite() {
            idle_cpus.clamp(0.0, u32::MAX as f64).floor() as u32
        } else {
            0
        };
        self.overflow.started = 0;
        if self.overflow.allowance() > before {
            self.dispatch(now)
        } else {
            Vec::new()
        }
    }

    /// Counts a compile placed on host `on` if it overflowed there.
    pub(super) fn count_overflow(&mut self, on: super::HostId, need: Need) {
        if need == Need::Remote && self.host(on).local_only {
            self.overflow.started += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{farm, hc, name, remote};
    use super::super::{Job, Need, Scheduler};
    use std::time::Instant;

    /// Three compiles of cost 1 on one farm slot of `speed`, with the pool's
    /// two slots, overflow `on` and `idle` CPUs: where each started.
    fn placed(speed: f64, on: bool, idle: f64) -> Vec<String> {
        let t = Instant::now();
        let mut s = Scheduler::new(&farm(vec![remote("r", 1, speed)]), hc(), t);
        s.set_overflow(on);
        assert!(s.local_idle(idle, t).is_empty(), "nothing queued yet");
        let mut got = Vec::new();
        for l in 0..3 {
            let p = s.request(l, Job::of(Need::Remote), t);
            got.extend(name(&s, &p));
        }
        got
    }

    #[test]
    fn a_full_farm_overflows_to_idle_cpus_only_when_that_finishes_sooner() {
        assert_eq!(placed(1.0, false, 2.0), ["r"], "off: the rest wait");
        assert_eq!(placed(1.0, true, 0.0), ["r"], "no idle CPU");
        assert_eq!(
            placed(1.0, true, 1.9),
            ["r", "localhost"],
            "one whole idle CPU"
        );
        assert_eq!(placed(1.0, true, 2.0), ["r", "localhost", "localhost"]);
        // Waiting for a host four times as fast finishes sooner.
        assert_eq!(placed(4.0, true, 2.0), ["r"]);
    }

    #[test]
    fn a_compile_whose_cost_is_only_a_guess_does_not_overflow() {
        let t = Instant::now();
        let mut s = Scheduler::new(&farm(vec![remote("r", 1, 1.0)]), hc(), t);
        s.set_overflow(true);
        s.local_idle(2.0, t);
        let guessed = Job {
            known: false,
            ..Job::of(Need::Remote)
        };
        let mut got = Vec::new();
        for l in 0..3 {
            let p = s.request(l, guessed, t);
            got.extend(name(&s, &p));
        }
        assert_eq!(got, ["r"]);
    }

    #[test]
    fn queued_compiles_overflow_when_cpus_become_idle_and_not_after_a_reload_off() {
        let t = Instant::now();
        let mut s = Scheduler::new(&farm(vec![remote("r", 1, 1.0)]), hc(), t);
        s.set_overflow(true);
        for l in 0..3 {
            s.request(l, Job::of(Need::Remote), t);
        }
        assert_eq!(s.queued(), 2);
        let p = s.local_idle(1.0, t);
        assert_eq!(name(&s, &p), ["localhost"]);
        // The same sample again allows nothing more: that compile counts.
        assert!(s.local_idle(0.5, t).is_empty());
        s.set_overflow(false);
        assert!(s.local_idle(2.0, t).is_empty());
        assert_eq!(s.queued(), 1);
        s.check().unwrap();
    }
}

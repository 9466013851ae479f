//! A host's health, as a pure state machine: active probes with rise/fall
//! thresholds, failures seen by the relay, and a hold after a hang.
//!
//! - `up`: takes jobs.
//! - `suspect`: the relay saw a failure, or a probe failed; out of the
//!   choice at once, until probes decide (`rise` successes: up; `fall`
//!   failures in a row: down).
//! - `down`: `fall` probe failures in a row, or a hang. Probed with growing
//!   intervals (capped), back up after `rise` successes — after a hang, not
//!   before the hold ends, since a host that accepts and never answers
//!   passes connect probes.

use crate::config::HealthConfig;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The health a host is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Takes jobs.
    Up,
    /// A failure was seen; out of the choice until probes decide.
    Suspect,
    /// Confirmed dead or hanging.
    Down,
}

/// What the relay saw go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Connect refused or timed out, or closed/reset before answering.
    Refused,
    /// Accepted but no byte in either direction for the job timeout.
    Hang,
}

/// One host's health and probe schedule.
#[derive(Debug, Clone)]
pub struct HealthState {
    /// The current health.
    pub health: Health,
    /// When `health` last changed.
    pub since: Instant,
    ok_run: u32,
    fail_run: u32,
    next_probe: Instant,
    backoff: Duration,
    probing: bool,
    hold_until: Option<Instant>,
    /// A probe, a compile or a failure has told something of the host.
    checked: bool,
}

impl HealthState {
    /// A new host: up, probed at once.
    pub(crate) fn new(now: Instant) -> HealthState {
        HealthState {
            health: Health::Up,
            since: now,
            ok_run: 0,
            fail_run: 0,
            next_probe: now,
            backoff: Duration::ZERO,
            probing: false,
            hold_until: None,
            checked: false,
        }
    }

    /// True when a probe should start now.
    pub(crate) fn probe_due(&self, now: Instant) -> bool {
        !self.probing && now >= self.next_probe
    }

    /// A probe has started.
    pub(crate) fn probe_started(&mut self) {
        self.probing = true;
    }

    fn set(&mut self, h: Health, now: Instant) -> bool {
        if self.health == h {
            return false;
        }
        self.health = h;
        self.since = now;
        true
    }

    /// A probe finished. Returns true when the health changed.
    pub(crate) fn probe_result(&mut self, ok: bool, cfg: &HealthConfig, now: Instant) -> bool {
        self.probing = false;
        self.checked = true;
        if ok {
            self.fail_run = 0;
            self.ok_run = self.ok_run.saturating_add(1);
            self.backoff = cfg.interval();
            let held = self.hold_until.is_some_and(|t| now < t);
            let changed = self.health != Health::Up && self.ok_run >= cfg.rise && !held;
            if changed {
                self.hold_until = None;
                self.set(Health::Up, now);
            }
            self.next_probe = now + self.quiet_interval(cfg);
            return changed;
        }
        self.ok_run = 0;
        self.fail_run = self.fail_run.saturating_add(1);
        // A failed probe takes an up host out of the choice at once, as a
        // failure the relay saw does; probes decide from there.
        let changed = if self.fail_run >= cfg.fall {
            self.set(Health::Down, now)
        } else if self.health == Health::Up {
            self.set(Health::Suspect, now)
        } else {
            false
        };
        self.backoff = if self.health == Health::Down {
            let cap = Duration::from_millis(cfg.max_interval_ms.max(cfg.interval_ms));
            (self.backoff * 2).clamp(cfg.interval(), cap)
        } else {
            cfg.interval()
        };
        self.next_probe = now + self.backoff;
        changed
    }

    /// How long until the next probe of a host that just passed one: an up
    /// host waits the idle interval, a host under suspicion the short one.
    fn quiet_interval(&self, cfg: &HealthConfig) -> Duration {
        if self.health == Health::Up && self.fail_run == 0 {
            cfg.idle_interval()
        } else {
            cfg.interval()
        }
    }

    /// The host just took a connection (a compile reached it): for an up
    /// host that is as good as a passed probe, and its next probe waits.
    pub(crate) fn served(&mut self, cfg: &HealthConfig, now: Instant) {
        self.checked = true;
        if self.health == Health::Up && !self.probing {
            self.fail_run = 0;
            self.next_probe = now + cfg.idle_interval();
        }
    }

    /// The relay saw `failure`. Returns true when the health changed.
    pub(crate) fn passive(&mut self, failure: Failure, cfg: &HealthConfig, now: Instant) -> bool {
        self.checked = true;
        self.ok_run = 0;
        self.next_probe = self.next_probe.min(now);
        match failure {
            Failure::Refused => {
                self.fail_run = self.fail_run.saturating_add(1);
                if self.fail_run >= cfg.fall {
                    self.set(Health::Down, now)
                } else if self.health == Health::Up {
                    self.set(Health::Suspect, now)
                } else {
                    false
                }
            }
            Failure::Hang => {
                self.fail_run = self.fail_run.max(cfg.fall);
                self.hold_until = Some(now + Duration::from_secs(cfg.hang_hold_s));
                self.set(Health::Down, now)
            }
        }
    }

    /// Another broker of the team found the host `health` (team mode):
    /// taken as this broker's own finding. Returns true when it changed.
    pub(crate) fn told(&mut self, health: Health, cfg: &HealthConfig, now: Instant) -> bool {
        self.checked = true;
        match health {
            Health::Up => {
                if self.hold_until.is_some_and(|t| now < t) {
                    return false;
                }
                self.hold_until = None;
                (self.ok_run, self.fail_run) = (cfg.rise, 0);
                self.next_probe = now + cfg.idle_interval();
                self.set(Health::Up, now)
            }
            Health::Suspect if self.health == Health::Up => {
                self.ok_run = 0;
                self.next_probe = now;
                self.set(Health::Suspect, now)
            }
            Health::Suspect => false,
            Health::Down => {
                (self.ok_run, self.fail_run) = (0, cfg.fall);
                self.backoff = cfg.interval();
                self.next_probe = self.next_probe.min(now + cfg.interval());
                self.set(Health::Down, now)
            }
        }
    }

    /// True once a probe, a compile or a failure told something of it.
    pub(crate) fn checked(&self) -> bool {
        self.checked
    }

    /// True when the host may be given jobs.
    pub(crate) fn usable(&self) -> bool {
        self.health == Health::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            interval_ms: 100,
            idle_interval_ms: 500,
            timeout_ms: 50,
            fall: 3,
            rise: 2,
            max_interval_ms: 1000,
            hang_hold_s: 5,
        }
    }

    #[test]
    fn fall_then_rise() {
        let (c, t) = (cfg(), Instant::now());
        let mut h = HealthState::new(t);
        assert!(h.probe_result(false, &c, t), "one failed probe: suspect");
        assert_eq!(h.health, Health::Suspect);
        assert!(!h.probe_result(false, &c, t));
        assert!(h.probe_result(false, &c, t));
        assert_eq!(h.health, Health::Down);
        assert!(!h.probe_result(true, &c, t));
        assert!(h.probe_result(true, &c, t));
        assert_eq!(h.health, Health::Up);
    }

    #[test]
    fn passive_failure_is_suspect_at_once_and_probes_decide() {
        let (c, t) = (cfg(), Instant::now());
        let mut h = HealthState::new(t);
        h.probe_result(true, &c, t);
        assert!(h.passive(Failure::Refused, &c, t));
        assert_eq!(h.health, Health::Suspect);
        assert!(!h.usable());
        assert!(h.probe_due(t), "probed at once");
        h.probe_result(true, &c, t);
        h.probe_result(true, &c, t);
        assert_eq!(h.health, Health::Up);
        h.passive(Failure::Refused, &c, t);
        h.probe_result(false, &c, t);
        h.probe_result(false, &c, t);
        assert_eq!(h.health, Health::Down);
    }

    #[test]
    fn down_host_is_probed_less_often_up_to_the_cap() {
        let (c, mut t) = (cfg(), Instant::now());
        let mut h = HealthState::new(t);
        let mut gaps = Vec::new();
        for _ in 0..10 {
            h.probe_started();
            h.probe_result(false, &c, t);
            gaps.push(h.next_probe - t);
            t = h.next_probe;
        }
        assert_eq!(gaps[0], Duration::from_millis(100));
        assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "{gaps:?}");
        assert_eq!(*gaps.last().unwrap(), Duration::from_millis(1000));
    }

    #[test]
    fn an_up_host_is_probed_rarely_and_not_while_compiles_reach_it() {
        let (c, t) = (cfg(), Instant::now());
        let mut h = HealthState::new(t);
        assert!(h.probe_due(t), "a new host is probed at once");
        h.probe_started();
        h.probe_result(true, &c, t);
        let idle = Duration::from_millis(c.idle_interval_ms);
        assert!(!h.probe_due(t + idle / 2));
        assert!(
            h.probe_due(t + idle),
            "an idle up host: once per idle interval"
        );
        let later = t + idle / 2;
        h.served(&c, later);
        assert!(!h.probe_due(t + idle), "a compile reached it meanwhile");
        assert!(h.probe_due(later + idle));
        // Under suspicion the short interval is back.
        h.passive(Failure::Refused, &c, later);
        h.probe_started();
        h.probe_result(true, &c, later);
        assert!(h.probe_due(later + Duration::from_millis(c.interval_ms)));
    }

    #[test]
    fn hang_holds_the_host_down_despite_good_probes() {
        let (c, t) = (cfg(), Instant::now());
        let mut h = HealthState::new(t);
        assert!(h.passive(Failure::Hang, &c, t));
        for i in 0..5 {
            h.probe_result(true, &c, t + Duration::from_millis(i));
        }
        assert_eq!(h.health, Health::Down, "connect probes pass on a hung host");
        let later = t + Duration::from_secs(6);
        h.probe_result(true, &c, later);
        assert_eq!(h.health, Health::Up);
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Probe(bool),
        Passive(bool),
        Wait(u64),
    }

    proptest! {
        /// Up only after `rise` good probes in a row (and past any hold);
        /// down only after `fall` failures in a row or a hang; the probe
        /// interval never exceeds the cap.
        #[test]
        fn transitions_follow_the_thresholds(evs in proptest::collection::vec(
            prop_oneof![
                any::<bool>().prop_map(Ev::Probe),
                any::<bool>().prop_map(Ev::Passive),
                (0u64..3000).prop_map(Ev::Wait)
            ], 1..150))
        {
            let c = cfg();
            let mut now = Instant::now();
            let mut h = HealthState::new(now);
            let (mut oks, mut fails) = (0u32, 0u32);
            let mut hold: Option<Instant> = None;
            for ev in evs {
                let before = h.health;
                match ev {
                    Ev::Probe(ok) => {
                        h.probe_started();
                        h.probe_result(ok, &c, now);
                        if ok { oks += 1; fails = 0 } else { fails += 1; oks = 0 }
                        if ok && before != Health::Up && h.health == Health::Up {
                            prop_assert!(oks >= c.rise);
                            prop_assert!(hold.is_none_or(|t| now >= t));
                        }
                        if !ok && h.health == Health::Down && before != Health::Down {
                            prop_assert!(fails >= c.fall);
                        }
                        let cap = c.max_interval_ms.max(c.idle_interval_ms);
                        prop_assert!(h.next_probe - now <= Duration::from_millis(cap));
                    }
                    Ev::Passive(hang) => {
                        oks = 0;
                        if hang {
                            h.passive(Failure::Hang, &c, now);
                            hold = Some(now + Duration::from_secs(c.hang_hold_s));
                            fails = fails.max(c.fall);
                            prop_assert_eq!(h.health, Health::Down);
                        } else {
                            fails += 1;
                            h.passive(Failure::Refused, &c, now);
                            prop_assert!(h.health != Health::Up, "a relay failure takes the host out of choice");
                        }
                    }
                    Ev::Wait(ms) => now += Duration::from_millis(ms),
                }
                prop_assert_eq!(h.usable(), h.health == Health::Up);
            }
        }
    }
}

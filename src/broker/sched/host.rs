//! One farm host as the scheduler keeps it: its definition, slots in use,
//! counters, health and learned speed.

use super::eft::Run;
use super::health::{Health, HealthState};
use super::learn::Learned;
use crate::farm::{Admin, Farm, HostSpec};
use crate::protocol::HostState;
use std::time::Instant;

/// A host and its counters.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its definition.
    pub spec: HostSpec,
    /// Slots this broker may use now (`broker::slots`): at most
    /// `spec.slots`, and possibly fewer than `busy` after it shrank.
    pub cap: u32,
    /// Slots in use: the length of `running`.
    pub busy: u32,
    /// The jobs in its slots.
    pub(super) running: Vec<Run>,
    /// The speed choices use: learned, else configured.
    pub(super) speed: f64,
    /// The earliest expected end of a running job, in seconds from the
    /// scheduler's epoch (infinite when idle).
    pub(super) first_end: f64,
    /// Jobs finished.
    pub jobs: u64,
    /// Failures the relay saw (refused, reset, hung).
    pub failures: u64,
    /// Jobs that failed here after being sent, so distcc compiled them locally.
    pub fallbacks: u64,
    /// The last error (relay or probe) and when it happened.
    pub last_error: Option<(String, Instant)>,
    /// Probe-driven health.
    pub health: HealthState,
    /// Speed learned from the jobs the relay watched.
    pub learned: Learned,
    /// When it was last given a job to learn its speed.
    pub(super) explored: Option<Instant>,
    /// No longer in the farm; dropped once its jobs finish.
    pub removed: bool,
    /// The pool for local-only jobs when the farm does not list `localhost`.
    pub local_only: bool,
    /// Given the counters and speed samples saved for its name.
    pub seeded: bool,
}

impl Host {
    pub(super) fn new(spec: HostSpec, local_only: bool, now: Instant) -> Host {
        Host {
            cap: spec.slots,
            busy: 0,
            running: Vec::new(),
            speed: spec.speed,
            first_end: f64::INFINITY,
            jobs: 0,
            failures: 0,
            fallbacks: 0,
            last_error: None,
            health: HealthState::new(now),
            learned: Learned::default(),
            explored: None,
            removed: false,
            local_only,
            seeded: false,
            spec,
        }
    }

    /// The speed choices use: learned, else configured.
    pub(crate) fn speed_for_choices(&self) -> f64 {
        self.speed
    }

    /// May take new jobs: in the farm, active and healthy.
    pub(crate) fn usable(&self) -> bool {
        !self.removed && self.spec.admin == Admin::Active && self.health.usable()
    }

    /// Recomputes `first_end` after its jobs or speed changed.
    pub(super) fn update_first_end(&mut self) {
        let speed = self.speed.max(1e-6);
        self.first_end = self
            .running
            .iter()
            .map(|r| r.start + r.job.cost / speed)
            .fold(f64::INFINITY, f64::min);
    }

    /// The state `tcpb status` shows: what the user asked for first, then
    /// the host's health.
    pub(crate) fn state(&self) -> HostState {
        match (self.removed, self.spec.admin, self.health.health) {
            (true, _, _) | (false, Admin::Drain, _) => HostState::Draining,
            (false, Admin::Disabled, _) => HostState::Disabled,
            (false, Admin::Active, Health::Up)
                if !self.spec.is_local() && !self.health.checked() =>
            {
                HostState::Unknown
            }
            (false, Admin::Active, Health::Up) => HostState::Up,
            (false, Admin::Active, Health::Suspect) => HostState::Suspect,
            (false, Admin::Active, Health::Down) => HostState::Down,
        }
    }

    /// Usable slots not in use.
    pub(crate) fn free(&self) -> u32 {
        self.cap.saturating_sub(self.busy)
    }
}

/// The hosts of `farm`, as (spec, serves only local-only jobs): the pool
/// for jobs that must run here is added when no list names `localhost`.
pub(super) fn wanted(farm: &Farm) -> Vec<(HostSpec, bool)> {
    let mut wanted: Vec<(HostSpec, bool)> = farm.hosts.iter().map(|h| (h.clone(), false)).collect();
    if !farm.hosts.iter().any(HostSpec::is_local) {
        wanted.push((
            HostSpec {
                name: "localhost".to_string(),
                addr: None,
                ssh: None,
                slots: farm.local_slots.max(1),
                speed: 1.0,
                lzo: false,
                cpp: false,
                admin: Admin::Active,
            },
            true,
        ));
    }
    wanted
}

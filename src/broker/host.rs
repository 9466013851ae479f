//! One farm host as the scheduler keeps it: its definition, slots in use,
//! counters, health and learned speed.

use super::health::{Health, HealthState};
use super::learn::Learned;
use crate::farm::{Admin, HostSpec};
use crate::protocol::HostState;
use std::time::Instant;

/// Index of a host in the scheduler; stable while the host exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostId(pub usize);

/// A host and its counters.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its definition.
    pub spec: HostSpec,
    /// Slots in use.
    pub busy: u32,
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
}

impl Host {
    pub(super) fn new(spec: HostSpec, local_only: bool, now: Instant) -> Host {
        Host {
            spec,
            busy: 0,
            jobs: 0,
            failures: 0,
            fallbacks: 0,
            last_error: None,
            health: HealthState::new(now),
            learned: Learned::default(),
            explored: None,
            removed: false,
            local_only,
        }
    }

    /// The state `tcpb status` shows: what the user asked for first, then
    /// the host's health.
    pub fn state(&self) -> HostState {
        match (self.removed, self.spec.admin, self.health.health) {
            (true, _, _) | (false, Admin::Drain, _) => HostState::Draining,
            (false, Admin::Disabled, _) => HostState::Disabled,
            (false, Admin::Active, Health::Up) => HostState::Up,
            (false, Admin::Active, Health::Suspect) => HostState::Suspect,
            (false, Admin::Active, Health::Down) => HostState::Down,
        }
    }

    /// Slots not in use.
    pub fn free(&self) -> u32 {
        self.spec.slots.saturating_sub(self.busy)
    }
}

//! What this broker may use of each host (`broker::slots`): capacities
//! that grow and shrink without disturbing running compiles.

use super::health::Health;
use super::{HostId, Placement, Scheduler};
use std::time::Instant;

impl Scheduler {
    /// Sets how many of host `id`'s slots may be used now (at most its
    /// configured slots). Running jobs are not disturbed: a host left with
    /// more jobs than capacity takes no new one until enough end. Returns
    /// the leases a grown capacity placed from the queue.
    pub(crate) fn set_capacity(&mut self, id: HostId, cap: u32, now: Instant) -> Vec<Placement> {
        let Some(h) = self.hosts.get(id.0).and_then(Option::as_ref) else {
            return Vec::new();
        };
        let cap = cap.min(h.spec.slots);
        let grew = cap > h.cap;
        self.total_slots = self.total_slots + cap as usize - h.cap as usize;
        self.with_host(id, |h| {
            h.cap = cap;
            h.update_first_end();
        });
        if grew { self.dispatch(now) } else { Vec::new() }
    }

    /// Says whether hosts with no usable slot may soon have some
    /// (`Slots::may_grow`); when that ends, queued compiles that only such
    /// hosts could take go to this machine's own slots.
    pub(crate) fn set_may_grow(&mut self, may_grow: bool, now: Instant) -> Vec<Placement> {
        let ended = self.may_grow && !may_grow;
        self.may_grow = may_grow;
        if ended {
            self.dispatch(now)
        } else {
            Vec::new()
        }
    }

    /// Another broker of the team found host `name` in `health` (`error`
    /// says why, when down): applied as if this broker had found it.
    pub(crate) fn told(
        &mut self,
        name: &str,
        health: Health,
        error: Option<String>,
        now: Instant,
    ) -> Vec<Placement> {
        let Some(id) = self.find(name) else {
            return Vec::new();
        };
        let cfg = self.health;
        let changed = self.with_host(id, |h| {
            if let Some(e) = error {
                h.last_error = Some((e, now));
            }
            h.health.told(health, &cfg, now)
        });
        if changed {
            tracing::info!(host = %name, ?health, "host health changed (team)");
        }
        if changed && health == Health::Up {
            self.dispatch(now)
        } else {
            Vec::new()
        }
    }
}

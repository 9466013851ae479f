//! Slot accounting and host choice. Plain synchronous code with no I/O; the
//! time is passed in, so every decision can be tested on its own.
//!
//! Invariant: for every host, `busy` equals the number of live leases placed
//! on it, and a job is never placed on a host with no free slot.

use super::eft::{self, Entry, Slots};
use super::health::{Failure, HealthConfig};
pub use super::host::{Host, HostId};
use super::learn::{MIN_SAMPLES, median};
use super::queue::Queue;
pub use super::queue::{Job, Need};
use crate::farm::{Admin, Farm, HostSpec};
use std::collections::HashMap;
use std::time::Instant;

/// Identifies one lease (one compile) for the broker's lifetime.
pub type LeaseId = u64;

/// A lease placed on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The lease.
    pub lease: LeaseId,
    /// Where it runs.
    pub host: HostId,
}

/// A placed lease.
#[derive(Debug, Clone, Copy)]
struct Running {
    host: HostId,
    start: Instant,
    cost: f64,
}

/// The scheduler: hosts, live leases and the queue.
#[derive(Debug)]
pub struct Scheduler {
    hosts: Vec<Option<Host>>,
    held: HashMap<LeaseId, Running>,
    queue: Queue,
    health: HealthConfig,
    /// Bytes per second that a host of configured speed 1.0 compiles,
    /// from the hosts with learned rates; scales learned rates to speeds.
    calibration: Option<f64>,
}

/// Waiting for a busy host must beat a free slot by this factor when the
/// job's cost is known from an earlier build...
const KNOWN_MARGIN: f64 = 0.9;
/// ...and by this one when it is only the average guess.
const GUESS_MARGIN: f64 = 0.6;

/// How often a host still without enough samples is given a job anyway.
const EXPLORE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl Scheduler {
    /// A scheduler for `farm` whose hosts' health follows `health`.
    pub fn new(farm: &Farm, health: HealthConfig, now: Instant) -> Scheduler {
        let mut s = Scheduler {
            hosts: Vec::new(),
            held: HashMap::new(),
            queue: Queue::default(),
            health,
            calibration: None,
        };
        s.set_farm(farm, now);
        s
    }

    /// The host `id`. Panics if it does not exist, which would be a bug:
    /// a host lives as long as a lease or a farm entry refers to it.
    pub fn host(&self, id: HostId) -> &Host {
        self.hosts[id.0].as_ref().expect("live host id")
    }

    /// The host `id`, to change its counters.
    pub fn host_mut(&mut self, id: HostId) -> &mut Host {
        self.hosts[id.0].as_mut().expect("live host id")
    }

    /// Every host with its id, in farm order.
    pub fn hosts(&self) -> impl Iterator<Item = (HostId, &Host)> {
        self.hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (HostId(i), h)))
    }

    /// Compiles waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Compiles holding a slot.
    pub fn running(&self) -> usize {
        self.held.len()
    }

    /// 1-based queue position of `lease`, if it waits.
    pub fn position(&self, lease: LeaseId) -> Option<usize> {
        self.queue.position(lease)
    }

    /// Where `lease` runs, if placed.
    pub fn placed(&self, lease: LeaseId) -> Option<HostId> {
        self.held.get(&lease).map(|r| r.host)
    }

    /// Replaces the farm. Hosts are matched by name: a kept host keeps its
    /// jobs and counters; a dropped host takes no new jobs and goes once
    /// its jobs finish. Returns the leases this placed from the queue.
    pub fn set_farm(&mut self, farm: &Farm, now: Instant) -> Vec<Placement> {
        let lists_localhost = farm.hosts.iter().any(HostSpec::is_local);
        let mut wanted: Vec<(HostSpec, bool)> =
            farm.hosts.iter().map(|h| (h.clone(), false)).collect();
        if !lists_localhost {
            wanted.push((
                HostSpec {
                    name: "localhost".to_string(),
                    addr: None,
                    slots: farm.local_slots.max(1),
                    speed: 1.0,
                    lzo: false,
                    cpp: false,
                    admin: Admin::Active,
                },
                true,
            ));
        }
        for slot in self.hosts.iter_mut().flatten() {
            slot.removed = true;
        }
        for (spec, local_only) in wanted {
            let existing = self
                .hosts
                .iter_mut()
                .flatten()
                .find(|h| h.spec.name == spec.name && h.local_only == local_only);
            match existing {
                Some(h) => {
                    h.spec = spec;
                    h.removed = false;
                }
                None => {
                    let host = Host::new(spec, local_only, now);
                    match self.hosts.iter().position(Option::is_none) {
                        Some(i) => self.hosts[i] = Some(host),
                        None => self.hosts.push(host.into()),
                    }
                }
            }
        }
        for slot in &mut self.hosts {
            if slot.as_ref().is_some_and(|h| h.removed && h.busy == 0) {
                *slot = None;
            }
        }
        self.dispatch(now)
    }

    /// Queues `lease` and places whatever can run now, in serving order.
    /// The caller finds `lease` among the placements, or it waits.
    pub fn request(&mut self, lease: LeaseId, job: Job, now: Instant) -> Vec<Placement> {
        self.queue.push(lease, job);
        self.dispatch(now)
    }

    /// Ends `lease`, queued or placed, and places what its slot allows.
    pub fn release(&mut self, lease: LeaseId, now: Instant) -> Vec<Placement> {
        if let Some(Running { host: id, .. }) = self.held.remove(&lease) {
            let h = self.hosts[id.0].as_mut().expect("held lease's host");
            h.busy -= 1;
            h.jobs += 1;
            if h.removed && h.busy == 0 {
                self.hosts[id.0] = None;
            }
            return self.dispatch(now);
        }
        self.queue.remove(lease);
        Vec::new()
    }

    /// Changes the probe settings.
    pub fn set_health_config(&mut self, health: HealthConfig) {
        self.health = health;
    }

    /// Records that the relay saw `host` fail (`error`): it leaves the
    /// choice at once. `fell_back` when a job was lost to it.
    pub fn record_failure(
        &mut self,
        host: HostId,
        error: String,
        failure: Failure,
        fell_back: bool,
        now: Instant,
    ) {
        if let Some(h) = self.hosts[host.0].as_mut() {
            h.failures += 1;
            h.fallbacks += u64::from(fell_back);
            h.last_error = Some((error, now));
            h.health.passive(failure, &self.health, now);
        }
    }

    /// Remote hosts whose probe is due, as (name, host, port); each is
    /// marked as being probed until `probe_done`.
    pub fn due_probes(&mut self, now: Instant) -> Vec<(String, String, u16)> {
        let mut due = Vec::new();
        for h in self.hosts.iter_mut().flatten() {
            if h.removed || !h.health.probe_due(now) {
                continue;
            }
            if let Some((host, port)) = &h.spec.addr {
                h.health.probe_started();
                due.push((h.spec.name.clone(), host.clone(), *port));
            }
        }
        due
    }

    /// A probe of the host `name` finished; `error` is why it failed.
    /// Returns the leases placed if the host came back.
    pub fn probe_done(
        &mut self,
        name: &str,
        error: Option<String>,
        now: Instant,
    ) -> Vec<Placement> {
        let cfg = self.health;
        let Some(h) = self
            .hosts
            .iter_mut()
            .flatten()
            .find(|h| h.spec.name == name && !h.local_only)
        else {
            return Vec::new();
        };
        let ok = error.is_none();
        if let Some(e) = error {
            h.last_error = Some((format!("probe: {e}"), now));
        }
        let changed = h.health.probe_result(ok, &cfg, now);
        if changed {
            tracing::info!(host = %h.spec.name, health = ?h.health.health, "host health changed");
        }
        if changed && h.health.usable() {
            self.dispatch(now)
        } else {
            Vec::new()
        }
    }

    /// The relay watched a job on `host`: `bytes` of source compiled in
    /// `secs` of server time.
    pub fn observe(&mut self, host: HostId, bytes: u64, secs: f64) {
        let Some(h) = self.hosts[host.0].as_mut() else {
            return;
        };
        h.learned.add(bytes, secs);
        let per_unit: Vec<f64> = self
            .hosts()
            .filter_map(|(_, h)| Some(h.learned.rate()? / h.spec.speed))
            .collect();
        self.calibration = median(per_unit);
    }

    /// The speed used for choice: learned once the host has enough jobs,
    /// else the configured one. Both are in the units of `speed` in config.
    pub fn speed(&self, h: &Host) -> f64 {
        match (h.learned.rate(), self.calibration) {
            (Some(r), Some(k)) if k > 0.0 => r / k,
            _ => h.spec.speed,
        }
    }

    /// The learned speed of `h`, if it has one.
    pub fn learned_speed(&self, h: &Host) -> Option<f64> {
        Some(h.learned.rate()? / self.calibration.filter(|k| *k > 0.0)?)
    }

    /// Leases placed on `host`.
    pub fn leases_on(&self, host: HostId) -> Vec<LeaseId> {
        self.held
            .iter()
            .filter(|(_, r)| r.host == host)
            .map(|(l, _)| *l)
            .collect()
    }

    /// The host named `name` (not a removed one).
    pub fn find(&self, name: &str) -> Option<HostId> {
        self.hosts()
            .find(|(_, h)| h.spec.name == name && !h.local_only && !h.removed)
            .map(|(id, _)| id)
    }

    /// The relay could not reach the host of `lease`: records the failure
    /// and moves the lease to the best other free farm host with the same
    /// distcc options. `None` when there is none; the lease then stays where
    /// it was (distcc will compile locally).
    pub fn reroute(&mut self, lease: LeaseId, error: String, now: Instant) -> Option<HostId> {
        let from = self.held.get(&lease)?.host;
        self.record_failure(from, error, Failure::Refused, false, now);
        let (lzo, cpp) = {
            let s = &self.host(from).spec;
            (s.lzo, s.cpp)
        };
        let to = self.best(now, |h| {
            !h.spec.is_local() && h.spec.lzo == lzo && h.spec.cpp == cpp
        })?;
        self.hosts[from.0].as_mut().expect("from host").busy -= 1;
        self.hosts[to.0].as_mut().expect("to host").busy += 1;
        if let Some(r) = self.held.get_mut(&lease) {
            r.host = to;
        }
        Some(to)
    }

    /// Takes `lease` out of the queue, if it waits there (a queue timeout).
    pub fn unqueue(&mut self, lease: LeaseId) -> bool {
        self.queue.remove(lease)
    }

    /// The queue in serving order.
    pub fn queue(&self) -> Vec<LeaseId> {
        self.queue.order().into_iter().map(|(l, _)| l).collect()
    }

    fn usable(h: &Host, _now: Instant) -> bool {
        !h.removed && h.spec.admin == Admin::Active && h.health.usable()
    }

    /// The free host that `ok` accepts with the highest speed, then the
    /// most free slots, then the earliest in the farm.
    fn best(&self, now: Instant, ok: impl Fn(&Host) -> bool) -> Option<HostId> {
        let mut best: Option<(HostId, &Host)> = None;
        for (id, h) in self.hosts() {
            if h.free() == 0 || !Self::usable(h, now) || !ok(h) {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, b)) => {
                    let (hs, bs) = (self.speed(h), self.speed(b));
                    hs > bs || (hs == bs && h.free() > b.free())
                }
            };
            if better {
                best = Some((id, h));
            }
        }
        best.map(|(id, _)| id)
    }

    /// A free farm host that has too few jobs to know its speed, if one
    /// has not been tried for a while: it gets this job so it is not judged
    /// on nothing.
    fn explore(&self, now: Instant) -> Option<HostId> {
        self.hosts()
            .find(|(_, h)| {
                !h.spec.is_local()
                    && h.free() > 0
                    && Self::usable(h, now)
                    && h.learned.samples() < MIN_SAMPLES
                    && h.explored
                        .is_none_or(|t| now.duration_since(t) >= EXPLORE_EVERY)
            })
            .map(|(id, _)| id)
    }

    /// Every host's slots as the finish-time simulation sees them.
    fn slots(&self, now: Instant) -> Slots {
        let farm_alive = self
            .hosts()
            .any(|(_, h)| !h.local_only && Self::usable(h, now));
        let mut left: HashMap<HostId, Vec<f64>> = HashMap::new();
        for r in self.held.values() {
            let speed = self.hosts[r.host.0].as_ref().map_or(1.0, |h| self.speed(h));
            let elapsed = now.saturating_duration_since(r.start).as_secs_f64();
            let expected = r.cost / speed.max(1e-6) - elapsed;
            left.entry(r.host)
                .or_default()
                .push(eft::left(expected, elapsed));
        }
        let mut slots = Slots::default();
        for (id, h) in self.hosts() {
            // With every farm host gone or down, run on local CPUs.
            let remote = Self::usable(h, now) && (!h.local_only || !farm_alive);
            // Local-only jobs run here whatever the admin state of localhost.
            let local = h.spec.is_local() && !h.removed;
            if !(remote || local) {
                continue;
            }
            let mut busy = left.remove(&id).unwrap_or_default();
            busy.sort_by(f64::total_cmp);
            // A host whose slots shrank below its jobs frees a slot only
            // once enough of them end.
            let keep = busy.len().min(h.spec.slots as usize);
            let busy = busy.split_off(busy.len() - keep);
            slots
                .entries
                .push(Entry::new(id, self.speed(h), remote, local, h.free(), busy));
        }
        slots
    }

    fn place(&mut self, lease: LeaseId, host: HostId, job: Job, now: Instant) -> Placement {
        self.hosts[host.0].as_mut().expect("chosen host").busy += 1;
        let run = Running {
            host,
            start: now,
            cost: job.cost,
        };
        self.held.insert(lease, run);
        Placement { lease, host }
    }

    /// Serves the queue: each waiting compile, in serving order, goes where
    /// it would finish first. If that is a slot free now, it is placed; if
    /// it is a busy host that frees soon, the slot is booked and the compile
    /// keeps waiting for it.
    fn dispatch(&mut self, now: Instant) -> Vec<Placement> {
        if self.queue.is_empty() {
            return Vec::new();
        }
        let mut slots = self.slots(now);
        let total: usize = self.hosts().map(|(_, h)| h.spec.slots as usize).sum();
        let calibrated = self.calibration.is_some();
        let mut placed = Vec::new();
        for (k, (lease, job)) in self.queue.order().into_iter().enumerate() {
            // Beyond this, bookings reach past every slot: nothing more can start now.
            if k > 2 * total + 8 || !slots.any_free() {
                break;
            }
            if job.need == Need::Remote
                && job.light
                && calibrated
                && let Some(id) = self.explore(now)
                && let Some(e) = slots.entries.iter().position(|e| e.id == id)
            {
                self.hosts[id.0].as_mut().expect("explored host").explored = Some(now);
                slots.take(eft::Pick {
                    entry: e,
                    start: 0.0,
                    finish: job.cost / slots.entries[e].speed,
                });
                placed.push(self.place(lease, id, job, now));
                self.queue.served(job.build);
                continue;
            }
            let ok = |e: &Entry| match job.need {
                Need::Remote => e.remote,
                Need::Local => e.local,
            };
            let margin = if job.known {
                KNOWN_MARGIN
            } else {
                GUESS_MARGIN
            };
            let Some(pick) = slots.pick(job.cost, margin, ok) else {
                continue;
            };
            let host = slots.entries[pick.entry].id;
            slots.take(pick);
            if pick.start == 0.0 {
                placed.push(self.place(lease, host, job, now));
                self.queue.served(job.build);
            }
        }
        let leases: Vec<LeaseId> = placed.iter().map(|p| p.lease).collect();
        self.queue.remove_all(&leases);
        placed
    }

    /// Checks the invariant; used by tests.
    pub fn check(&self) -> Result<(), String> {
        for (id, h) in self.hosts() {
            let held = self.held.values().filter(|r| r.host == id).count() as u32;
            if held != h.busy {
                return Err(format!(
                    "{}: busy {} but {held} leases",
                    h.spec.name, h.busy
                ));
            }
        }
        for (lease, r) in &self.held {
            if self.hosts.get(r.host.0).is_none_or(Option::is_none) {
                return Err(format!("lease {lease} on a missing host"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "sched_tests.rs"]
mod tests;

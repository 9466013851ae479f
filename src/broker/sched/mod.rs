//! Slot accounting and host choice. Plain synchronous code with no I/O; the
//! time is passed in, so every decision can be tested on its own.
//!
//! Invariant: for every host, `busy` equals the number of live leases placed
//! on it, and a job is never placed on a host with no free slot.
//!
//! Cost: hosts are kept ordered by speed and free slots, and the queue by
//! serving order, so placing a compile looks at the head of the queue and
//! at the hosts faster than the best free one; neither the queue's length
//! nor the farm's size enters the common case.

mod capacity;
mod check;
pub mod costs;
mod dispatch;
mod eft;
pub(crate) mod health;
mod host;
mod ids;
pub(crate) mod learn;
mod overflow;
mod queue;
mod speeds;

use crate::config::HealthConfig;
use crate::farm::{Farm, HostSpec};
use eft::{OrderKey, Run, order_key};
use health::Failure;
pub(crate) use host::Host;
use host::wanted;
pub use ids::{HostId, LeaseId};
use queue::Queue;
pub use queue::{Job, Need};
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// A lease placed on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The lease.
    pub lease: LeaseId,
    /// Where it runs.
    pub host: HostId,
}

/// The scheduler: hosts, live leases and the queue.
#[derive(Debug)]
pub struct Scheduler {
    hosts: Vec<Option<Host>>,
    /// Where each live lease runs; the host keeps the job itself.
    held: HashMap<LeaseId, HostId>,
    /// Per host set of `Farm::sets`, which host ids are in it.
    sets: Vec<eft::Members>,
    /// Every host, in the order choices walk them...
    order: BTreeSet<OrderKey>,
    /// ...and those with a free slot.
    free: BTreeSet<OrderKey>,
    /// Slots of the whole farm.
    total_slots: usize,
    queue: Queue,
    health: HealthConfig,
    /// Some host has a learned speed (so others can be compared with it).
    learned_any: bool,
    /// Farm hosts still learning their speed.
    unlearned: usize,
    /// What learned speeds are multiplied by (see `refresh_speeds`).
    speed_scale: f64,
    /// Time zero of the seconds kept in running jobs.
    epoch: Instant,
    /// Compiles requested, and the running mean of their expected cost.
    requests: u64,
    mean_cost: f64,
    /// Hosts dropped from the farm, until `take_retired` (their counters
    /// and learned speed outlive them in the broker's state).
    retired: Vec<Host>,
    /// Distributable compiles on this machine's idle CPUs.
    overflow: overflow::Overflow,
    /// A host with no usable slot may soon have some (`Slots::may_grow`):
    /// compiles wait for it instead of running on this machine.
    may_grow: bool,
}

/// Requests the mean compile cost is taken over (a running mean).
const MEAN_OVER: u64 = 256;

impl Scheduler {
    /// A scheduler for `farm` whose hosts' health follows `health`.
    pub fn new(farm: &Farm, health: HealthConfig, now: Instant) -> Scheduler {
        let mut s = Scheduler {
            hosts: Vec::new(),
            held: HashMap::new(),
            sets: Vec::new(),
            order: BTreeSet::new(),
            free: BTreeSet::new(),
            total_slots: 0,
            queue: Queue::default(),
            health,
            learned_any: false,
            unlearned: 0,
            speed_scale: 1.0,
            epoch: now,
            requests: 0,
            mean_cost: 0.0,
            retired: Vec::new(),
            overflow: overflow::Overflow::default(),
            may_grow: false,
        };
        s.set_farm(farm, now);
        s
    }

    /// The host `id`. Panics if it does not exist, which would be a bug:
    /// a host lives as long as a lease or a farm entry refers to it.
    pub fn host(&self, id: HostId) -> &Host {
        self.hosts[id.0].as_ref().expect("live host id")
    }

    /// The host `id`, to change its counters (not its slots or speed,
    /// which only `set_farm` and `observe` change).
    pub(crate) fn host_mut(&mut self, id: HostId) -> &mut Host {
        self.hosts[id.0].as_mut().expect("live host id")
    }

    /// Every host with its id, in farm order.
    pub(crate) fn hosts(&self) -> impl Iterator<Item = (HostId, &Host)> {
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
    pub(crate) fn running(&self) -> usize {
        self.held.len()
    }

    /// 1-based queue position of `lease`, if it waits.
    pub(crate) fn position(&self, lease: LeaseId) -> Option<usize> {
        self.queue.position(lease)
    }

    /// Where `lease` runs, if placed.
    pub(crate) fn placed(&self, lease: LeaseId) -> Option<HostId> {
        self.held.get(&lease).copied()
    }

    /// Replaces the farm, every slot usable. See `set_farm_with`.
    pub(crate) fn set_farm(&mut self, farm: &Farm, now: Instant) -> Vec<Placement> {
        self.set_farm_with(farm, now, |h| h.slots)
    }

    /// Replaces the farm; `usable` says how many of each host's slots may
    /// be used (`broker::slots`). Hosts are matched by name: a kept host
    /// keeps its jobs and counters; a dropped host takes no new jobs and
    /// goes once its jobs finish. Returns the leases this placed from the
    /// queue.
    pub(crate) fn set_farm_with(
        &mut self,
        farm: &Farm,
        now: Instant,
        usable: impl Fn(&HostSpec) -> u32,
    ) -> Vec<Placement> {
        for slot in self.hosts.iter_mut().flatten() {
            slot.removed = true;
        }
        for (spec, local_only) in wanted(farm) {
            let existing = self
                .hosts
                .iter_mut()
                .flatten()
                .find(|h| h.spec.name == spec.name && h.local_only == local_only);
            let cap = usable(&spec).min(spec.slots);
            match existing {
                Some(h) => {
                    h.spec = spec;
                    h.cap = cap;
                    h.removed = false;
                }
                None => {
                    let mut host = Host::new(spec, local_only, now);
                    host.cap = cap;
                    match self.hosts.iter().position(Option::is_none) {
                        Some(i) => self.hosts[i] = Some(host),
                        None => self.hosts.push(host.into()),
                    }
                }
            }
        }
        for slot in &mut self.hosts {
            if slot.as_ref().is_some_and(|h| h.removed && h.busy == 0) {
                self.retired.extend(slot.take());
            }
        }
        self.sets = farm
            .sets
            .iter()
            .map(|set| {
                let member = |h: &Option<Host>| {
                    h.as_ref()
                        .is_some_and(|h| !h.local_only && set.hosts.contains(&h.spec.name))
                };
                eft::Members {
                    hosts: self.hosts.iter().map(member).collect(),
                    local_cap: set.local_slots,
                }
            })
            .collect();
        self.refresh_speeds();
        self.dispatch(now)
    }
    /// Changes host `id` with `f`, keeping its place in the walk order.
    fn with_host<T>(&mut self, id: HostId, f: impl FnOnce(&mut Host) -> T) -> T {
        let h = self.hosts[id.0].as_mut().expect("live host id");
        let old = order_key(id, h);
        self.order.remove(&old);
        self.free.remove(&old);
        let out = f(h);
        let new = order_key(id, h);
        self.order.insert(new);
        if h.free() > 0 {
            self.free.insert(new);
        }
        out
    }

    /// Takes `lease`'s job off host `id`; returns it.
    fn unrun(&mut self, id: HostId, lease: LeaseId) -> Option<Run> {
        self.with_host(id, |h| {
            let i = h.running.iter().position(|r| r.lease == lease)?;
            let run = h.running.swap_remove(i);
            h.busy -= 1;
            h.update_first_end();
            Some(run)
        })
    }

    /// Puts `run` on host `id`.
    fn run_on(&mut self, id: HostId, run: Run) {
        self.held.insert(run.lease, id);
        self.with_host(id, |h| {
            h.busy += 1;
            h.first_end = h
                .first_end
                .min(run.start + run.job.cost / h.speed.max(1e-6));
            h.running.push(run);
        });
    }

    /// Drops host `id` from the farm for good.
    fn drop_host(&mut self, id: HostId) {
        if let Some(h) = self.hosts[id.0].take() {
            self.total_slots -= h.cap as usize;
            self.order.remove(&order_key(id, &h));
            self.free.remove(&order_key(id, &h));
            self.retired.push(h);
        }
    }

    /// The hosts dropped from the farm since the last call.
    pub(crate) fn take_retired(&mut self) -> Vec<Host> {
        std::mem::take(&mut self.retired)
    }

    /// Seconds from the epoch.
    fn secs(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.epoch).as_secs_f64()
    }

    /// Queues `lease` and places whatever can run now, in serving order.
    /// The caller finds `lease` among the placements, or it waits.
    pub fn request(&mut self, lease: LeaseId, job: Job, now: Instant) -> Vec<Placement> {
        self.requests += 1;
        self.mean_cost += (job.cost - self.mean_cost) / self.requests.min(MEAN_OVER) as f64;
        self.queue.push(lease, job);
        self.dispatch(now)
    }

    /// Ends `lease`, queued or placed, and places what its slot allows.
    pub fn release(&mut self, lease: LeaseId, now: Instant) -> Vec<Placement> {
        self.end(lease, true, now)
    }

    /// `release`, counting the lease as a job of its host only if it `ran`
    /// there (a grant whose compile never reached the host is no job).
    pub(crate) fn end(&mut self, lease: LeaseId, ran: bool, now: Instant) -> Vec<Placement> {
        if let Some(id) = self.held.remove(&lease) {
            self.unrun(id, lease);
            let h = self.host_mut(id);
            h.jobs += u64::from(ran);
            if h.removed && h.busy == 0 {
                self.drop_host(id);
            }
            return self.dispatch(now);
        }
        self.queue.remove(lease);
        Vec::new()
    }

    /// Changes the probe settings.
    pub(crate) fn set_health_config(&mut self, health: HealthConfig) {
        self.health = health;
    }

    /// Records that the relay saw `host` fail (`error`): it leaves the
    /// choice at once. `fell_back` when a job was lost to it.
    pub(crate) fn record_failure(
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

    /// A compile reached host `id` (its connect succeeded): it needs no
    /// probe for a while.
    pub(crate) fn served(&mut self, id: HostId, now: Instant) {
        let cfg = self.health;
        if let Some(h) = self.hosts.get_mut(id.0).and_then(Option::as_mut) {
            h.health.served(&cfg, now);
        }
    }

    /// Remote hosts whose probe is due; each is marked as being probed
    /// until `probe_done`.
    #[cfg(test)]
    pub(crate) fn due_probes(&mut self, now: Instant) -> Vec<HostSpec> {
        self.due_probes_of(now, |_| true)
    }

    /// `due_probes` of the hosts `mine` says this broker probes (team
    /// mode: one broker probes each host for the whole team).
    pub(crate) fn due_probes_of(
        &mut self,
        now: Instant,
        mine: impl Fn(&HostSpec) -> bool,
    ) -> Vec<HostSpec> {
        let mut due = Vec::new();
        for h in self.hosts.iter_mut().flatten() {
            if h.removed || h.spec.is_local() || !h.health.probe_due(now) || !mine(&h.spec) {
                continue;
            }
            h.health.probe_started();
            due.push(h.spec.clone());
        }
        due
    }

    /// A probe of the host `name` finished; `error` is why it failed.
    /// Returns the leases placed if the host came back.
    pub(crate) fn probe_done(
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

    /// Leases placed on `host`.
    pub(crate) fn leases_on(&self, host: HostId) -> Vec<LeaseId> {
        self.host(host).running.iter().map(|r| r.lease).collect()
    }

    /// The host named `name` (not a removed one).
    pub(crate) fn find(&self, name: &str) -> Option<HostId> {
        self.hosts()
            .find(|(_, h)| h.spec.name == name && !h.local_only && !h.removed)
            .map(|(id, _)| id)
    }

    /// The relay could not reach the host of `lease`: records the failure
    /// and moves the lease to the best other free host of its set with the
    /// same distcc options. `None` when there is none; the lease then stays
    /// where it was, for `requeue`.
    pub(crate) fn reroute(
        &mut self,
        lease: LeaseId,
        error: String,
        now: Instant,
    ) -> Option<HostId> {
        let from = *self.held.get(&lease)?;
        self.record_failure(from, error, Failure::Refused, false, now);
        let (lzo, cpp) = {
            let s = &self.host(from).spec;
            (s.lzo, s.cpp)
        };
        let set = self
            .host(from)
            .running
            .iter()
            .find(|r| r.lease == lease)?
            .job
            .set;
        let to = self.best(|id, h| {
            !h.spec.is_local() && h.spec.lzo == lzo && h.spec.cpp == cpp && self.in_set(set, id)
        });
        // Nowhere else to go: the broker puts the lease back in the queue.
        let to = to?;
        let run = self.unrun(from, lease)?;
        self.run_on(to, run);
        Some(to)
    }

    /// Puts the placed `lease` back in the queue (its host could not be
    /// reached and no other host of its set is free) and serves the queue:
    /// it waits for a host of its set, or runs on this machine's pool when
    /// none of them is up. Returns the leases placed.
    pub(crate) fn requeue(&mut self, lease: LeaseId, now: Instant) -> Vec<Placement> {
        let Some(from) = self.held.remove(&lease) else {
            return Vec::new();
        };
        if let Some(run) = self.unrun(from, lease) {
            self.queue.push(lease, run.job);
        }
        let h = self.host_mut(from);
        if h.removed && h.busy == 0 {
            self.drop_host(from);
        }
        self.dispatch(now)
    }

    /// Takes `lease` out of the queue, if it waits there (a queue timeout).
    pub(crate) fn unqueue(&mut self, lease: LeaseId) -> bool {
        self.queue.remove(lease)
    }

    /// The queue in serving order.
    pub(crate) fn queue(&self) -> impl Iterator<Item = LeaseId> + '_ {
        self.queue.iter().map(|(l, _)| l)
    }

    /// The free host that `ok` accepts with the highest speed, then the
    /// most free slots, then the earliest in the farm.
    fn best(&self, ok: impl Fn(HostId, &Host) -> bool) -> Option<HostId> {
        self.free.iter().map(|k| HostId(k.2)).find(|id| {
            let h = self.host(*id);
            h.usable() && ok(*id, h)
        })
    }

    /// True when host `id` is in host set `set`.
    pub(crate) fn in_set(&self, set: u32, id: HostId) -> bool {
        eft::in_set(&self.sets, set, id)
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod speed_tests;
#[cfg(test)]
mod tests;

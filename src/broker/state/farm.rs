//! The farm in force: the host list the compiles send, merged with the
//! config and the admin overlay, applied to the scheduler with the slots
//! this broker may use; and the counters and speed samples each host
//! keeps by name across farm changes and restarts.

use super::{State, deliver};
use crate::broker::relay::Relay;
use crate::broker::sched::{Host, HostId, Placement};
use crate::broker::store::{self, HostCounters, Saved, Seen};
use crate::hosts::HostList;
use crate::protocol::HostState;
use std::collections::BTreeMap;
use std::time::Instant;

/// What each host has done and learned, by name: saved, and given back to
/// a host of the same name that joins the farm later.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// Jobs, failures and fallbacks.
    pub counters: BTreeMap<String, HostCounters>,
    /// Speed samples (`learn::Learned::saved`).
    pub learned: BTreeMap<String, Vec<(f64, f64)>>,
    /// The state each host was last seen in, and when.
    pub seen: BTreeMap<String, Seen>,
}

impl Memory {
    /// Notes host `h`'s counters and speed samples.
    fn remember(&mut self, h: &Host) {
        if h.local_only || !h.seeded {
            return;
        }
        let c = HostCounters {
            jobs: h.jobs,
            failures: h.failures,
            fallbacks: h.fallbacks,
        };
        self.counters.insert(h.spec.name.clone(), c);
        if h.learned.samples() > 0 {
            self.learned.insert(h.spec.name.clone(), h.learned.saved());
        }
        let state = h.state();
        if state != HostState::Unknown {
            let at = store::unix_now();
            self.seen.insert(h.spec.name.clone(), Seen { state, at });
        }
    }
}

/// The host set of a client's host list; a list not seen before joins the
/// farm (its hosts are added, compiles of other lists are not disturbed).
pub(super) fn adopt(state: &mut State, list: &HostList, relay: &Relay, now: Instant) -> u32 {
    let (set, new) = state.lists.find_or_add(list, now);
    if !new {
        return set;
    }
    for w in &list.warnings {
        tracing::warn!("{w}");
    }
    let placed = refresh(state, now);
    deliver(state, relay, placed, None);
    let (origin, hosts) = (&list.origin, state.farm.hosts.len());
    tracing::info!(%origin, hosts, "host list added");
    set
}

/// Rebuilds the farm from the host list, the config and the overlay, and
/// applies it: kept hosts keep their jobs; dropped ones drain. Returns
/// the leases this placed, for `deliver`.
pub(super) fn refresh(state: &mut State, now: Instant) -> Vec<Placement> {
    let lists = state.lists.all();
    let cpus = crate::farm::local_cpus();
    let mut farm = crate::farm::build_all(&lists, &state.config, cpus);
    state.overlay.apply(&mut farm);
    state.slots.amend(&mut farm);
    let slots = &state.slots;
    // Before any compile is placed: in team mode the first compile waits
    // for the first claim rather than run here.
    let mut placed = state.sched.set_may_grow(slots.may_grow(), now);
    placed.extend(state.sched.set_farm_with(&farm, now, |h| slots.usable(h)));
    state.farm = farm;
    // A host dropped earlier and listed again starts from what it had.
    for h in state.sched.take_retired() {
        state.memory.remember(&h);
    }
    seed(state);
    placed
}

/// Gives each host new to the scheduler what its name had before.
fn seed(state: &mut State) {
    let State { sched, memory, .. } = state;
    let fresh: Vec<(HostId, String)> = sched
        .hosts()
        .filter(|(_, h)| !h.local_only && !h.seeded)
        .map(|(id, h)| (id, h.spec.name.clone()))
        .collect();
    let mut restored = Vec::new();
    for (id, name) in fresh {
        let h = sched.host_mut(id);
        h.seeded = true;
        if let Some(c) = memory.counters.get(&name) {
            h.jobs += c.jobs;
            h.failures += c.failures;
            h.fallbacks += c.fallbacks;
        }
        if let Some(samples) = memory.learned.get(&name) {
            restored.push((id, samples.as_slice()));
        }
    }
    if !restored.is_empty() {
        sched.restore_learned(restored);
    }
}

/// Notes every host's counters and samples, including hosts that left.
fn remember_all(state: &mut State) {
    for h in state.sched.take_retired() {
        state.memory.remember(&h);
    }
    let State { sched, memory, .. } = state;
    for (_, h) in sched.hosts() {
        memory.remember(h);
    }
}

/// What to save now, taken under the lock; marks the state saved.
pub(super) fn take_save(state: &mut State) -> store::Snapshot {
    remember_all(state);
    state.dirty = false;
    state.last_save = Instant::now();
    store::Snapshot {
        state: Saved {
            overlay: state.overlay.clone(),
            counters: state.memory.counters.clone(),
            learned: state.memory.learned.clone(),
            seen: state.memory.seen.clone(),
        },
        costs: state.costs.take_changes(),
    }
}

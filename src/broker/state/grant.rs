//! A placement becomes a grant (a compile placed on a farm host is first
//! connected to it by the relay), and a lease ends: its port goes back to
//! the pool and its slot to the next compile.

use super::lease::Phase;
use super::{State, relayed};
use crate::broker::relay::Relay;
use crate::broker::sched::{LeaseId, Placement};
use crate::protocol::Grant;
use std::time::Instant;

/// Forgets lease `id`, frees its slot and relay port, and hands the slot on.
pub(super) fn end_lease(state: &mut State, relay: &Relay, id: LeaseId, now: Instant) {
    let mut ran = false;
    if let Some(lease) = state.leases.remove(&id) {
        state.lists.ended(lease.set, lease.build, now);
        if let Some(port) = lease.port() {
            relay.close(port);
        }
        // Remote: distcc reached the relay; local: it was granted.
        ran = matches!(
            lease.phase,
            Phase::Relaying { .. } | Phase::Granted { port: None, .. }
        );
    }
    state.last_active = now;
    state.dirty = true;
    let placed = state.sched.end(id, ran, now);
    deliver(state, relay, placed, None);
}

/// Turns placements into grants and hands them to their waiting clients:
/// a compile placed on a farm host is first connected to it by the relay
/// (`relayed::ready` grants it then). Returns the grant of `own`, whose
/// client is the caller, when it runs here at once.
pub(super) fn deliver(
    state: &mut State,
    relay: &Relay,
    placed: Vec<Placement>,
    own: Option<LeaseId>,
) -> Option<Grant> {
    let mut own_grant = None;
    let mut orphans = Vec::new();
    let now = Instant::now();
    for p in placed {
        let ticket = relayed::ticket(state, p);
        let Some(lease) = state.leases.get_mut(&p.lease) else {
            continue;
        };
        let waiter = lease.take_waiter();
        if let Some(ticket) = ticket {
            lease.phase = Phase::Connecting(waiter);
            relay.prepare(ticket);
            continue;
        }
        let wait = now.duration_since(lease.since).as_secs_f64();
        lease.phase = Phase::Granted {
            at: now,
            port: None,
        };
        let note = lease.note.take().map(|n| format!("{n}; compiling here"));
        state.stats.granted(wait, true);
        if Some(p.lease) == own {
            own_grant = Some(Grant::Local);
        } else if let Some(tx) = waiter
            && tx.send((Grant::Local, note)).is_err()
        {
            orphans.push(p.lease);
        }
    }
    for lease in orphans {
        // The client went away between being placed and hearing of it.
        end_lease(state, relay, lease, now);
    }
    own_grant
}

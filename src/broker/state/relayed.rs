//! What passes between the broker's state and the relay: a ticket for each
//! remote grant, and what the relay reports back (a host that refused, how
//! a relayed job ended), turned into host health, speed samples and costs.

use super::State;
use crate::broker::relay::{Outcome, Relay, Target, Ticket, Watch};
use crate::broker::sched::health::Failure;
use crate::broker::sched::{HostId, LeaseId, Placement};
use crate::protocol::Grant;
use std::time::{Duration, Instant};

/// The grant of placement `p`, with its relay port when remote.
pub(super) fn grant_for(state: &State, relay: &Relay, p: Placement) -> (Grant, Option<u16>) {
    let spec = &state.sched.host(p.host).spec;
    let Some(target) = target(state, p.host) else {
        return (Grant::Local, None);
    };
    let b = &state.config.broker;
    let ticket = Ticket {
        lease: p.lease,
        target,
        connect: Duration::from_millis(b.connect_timeout_ms),
        idle: Duration::from_secs(b.job_timeout_s.max(1)),
    };
    match relay.open(ticket) {
        Ok(port) => {
            let options = spec.distcc_options();
            let host = spec.name.clone();
            (
                Grant::Remote {
                    host,
                    port,
                    options,
                },
                Some(port),
            )
        }
        Err(e) => {
            tracing::error!("cannot open a relay port: {e}; the compile runs locally");
            (Grant::Local, None)
        }
    }
}

/// Where the relay reaches host `id`; `None` for this machine.
pub(super) fn target(state: &State, id: HostId) -> Option<Target> {
    let spec = &state.sched.host(id).spec;
    let addr = spec.addr.clone()?;
    Some(Target {
        name: spec.name.clone(),
        addr,
    })
}

/// A relayed connection of `ticket` ended with `outcome`.
pub(super) fn ended(state: &mut State, ticket: &Ticket, outcome: Outcome, now: Instant) {
    let lease = ticket.lease;
    let host = state
        .sched
        .placed(lease)
        .or_else(|| state.sched.find(&ticket.target.name));
    let (why, failure) = match outcome {
        Outcome::Done(watch) => return observed(state, lease, host, &watch),
        Outcome::Refused => {
            state.stats.fell_back += 1;
            return;
        }
        Outcome::Lost(why) => (why, Failure::Refused),
        Outcome::Hung(why) => (why, Failure::Hang),
    };
    if let Some(id) = host {
        state.sched.record_failure(id, why, failure, true, now);
    }
    state.stats.fell_back += 1;
}

/// The relay watched a job of `lease` on `host` to its end.
fn observed(state: &mut State, lease: LeaseId, host: Option<HostId>, watch: &Watch) {
    if watch.request.broken || watch.response.broken {
        state.stats.unparsed += 1;
        return;
    }
    let (Some(host), Some(secs)) = (host, watch.server_secs()) else {
        return;
    };
    let (key, size) = state
        .leases
        .get(&lease)
        .map_or((None, 0), |j| (j.key.clone(), j.size));
    if let Some((work, weight)) = state.costs.evidence(key.as_deref(), size) {
        state.sched.observe(host, work, secs, weight);
    }
    let h = state.sched.host(host);
    state.stats.timed(&h.spec.name, secs);
    // The job's work in seconds on a host of speed 1.0.
    let cost = secs * state.sched.speed(h);
    state.costs.record(key.as_deref(), size, cost);
    state.dirty = true;
}

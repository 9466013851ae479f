//! What passes between the broker's state and the relay: a ticket for each
//! compile placed on a farm host, and what the relay reports back (a host
//! that refused, a ticket ready to grant or unreachable, how a relayed job
//! ended), turned into grants, host health, speed samples and costs.

use super::State;
use super::lease::Phase;
use crate::broker::relay::{Outcome, Relay, Target, Ticket, Watch};
use crate::broker::sched::health::Failure;
use crate::broker::sched::{HostId, Placement};
use crate::protocol::Grant;
use std::time::{Duration, Instant};

/// The ticket of placement `p` when it is on a farm host (`None`: it runs
/// on this machine).
pub(super) fn ticket(state: &State, p: Placement) -> Option<Ticket> {
    let target = target(state, p.host)?;
    let b = &state.config.broker;
    let lease = state.leases.get(&p.lease);
    let io = lease.map_or(u64::MAX, |l| l.io_timeout_s);
    Some(Ticket {
        lease: p.lease,
        target,
        connect: Duration::from_millis(b.connect_timeout_ms),
        idle: Duration::from_secs(b.job_timeout_s.min(hung_after(io)).max(1)),
        env: lease.and_then(|l| l.ssh_env.clone()),
        file: lease.map_or((None, 0), |l| (l.key.clone(), l.size)),
    })
}

/// Seconds of silence after which the relay calls a host hung, for a
/// distcc that gives up after `io_timeout` seconds: well before it does
/// (a tenth of it, at least 2 s), so the host is marked and distcc's
/// fallback comes from the relay.
pub(super) fn hung_after(io_timeout: u64) -> u64 {
    io_timeout.saturating_sub((io_timeout / 10).max(2)).max(1)
}

/// The relay connected `ticket` to its host and holds it on `port`: the
/// compile is granted. A lease that ended meanwhile gives the port back.
pub(super) fn ready(
    state: &mut State,
    relay: &Relay,
    (ticket, port): (&Ticket, u16),
    now: Instant,
) {
    let host = state.sched.placed(ticket.lease);
    if let Some(h) = host {
        state.sched.served(h, now);
    }
    let options = host.map(|h| state.sched.host(h).spec.distcc_options());
    let lease = state.leases.get_mut(&ticket.lease);
    let (Some(lease), Some(options)) = (lease, options) else {
        relay.close(port);
        return;
    };
    let waiter = lease.take_waiter();
    lease.phase = Phase::Granted {
        at: now,
        port: Some(port),
    };
    lease.note = None;
    let wait = now.duration_since(lease.since).as_secs_f64();
    state.stats.granted(wait, false);
    let grant = Grant::Remote {
        host: ticket.target.name.clone(),
        port,
        options,
    };
    if waiter.is_some_and(|tx| tx.send((grant, None)).is_err()) {
        // The client went away while its host was being reached.
        super::end_lease(state, relay, ticket.lease, now);
    }
}

/// No host of `ticket`'s list could be reached: the lease waits again (or
/// runs on this machine), and its user hears why. Returns the placements
/// for `deliver`.
pub(super) fn unreachable(
    state: &mut State,
    ticket: &Ticket,
    error: &str,
    now: Instant,
) -> Vec<Placement> {
    let Some(lease) = state.leases.get_mut(&ticket.lease) else {
        return Vec::new();
    };
    let waiter = lease.take_waiter();
    lease.phase = Phase::Waiting(waiter);
    lease.note = Some(format!("{}: {error}", ticket.target.name));
    state.sched.requeue(ticket.lease, now)
}

/// Where the relay reaches host `id`; `None` for this machine.
pub(super) fn target(state: &State, id: HostId) -> Option<Target> {
    Target::of(&state.sched.host(id).spec)
}

/// A relayed connection of `ticket` ended with `outcome`.
pub(super) fn ended(state: &mut State, ticket: &Ticket, outcome: Outcome, now: Instant) {
    let lease = ticket.lease;
    let host = state
        .sched
        .placed(lease)
        .or_else(|| state.sched.find(&ticket.target.name));
    let (why, failure) = match outcome {
        Outcome::Done(watch) => return observed(state, ticket, host, &watch),
        Outcome::Lost(why) => (why, Failure::Refused),
        Outcome::Hung(why) => (why, Failure::Hang),
    };
    if let Some(id) = host {
        state.sched.record_failure(id, why, failure, true, now);
    }
    state.stats.fell_back += 1;
}

/// The relay watched the job of `ticket` on `host` to its end (its lease
/// may have ended already: the file's key and size come with the ticket).
fn observed(state: &mut State, ticket: &Ticket, host: Option<HostId>, watch: &Watch) {
    if watch.request.broken || watch.response.broken {
        state.stats.unparsed += 1;
        return;
    }
    let (Some(host), Some(secs)) = (host, watch.server_secs()) else {
        return;
    };
    let (key, size) = (&ticket.file.0, ticket.file.1);
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

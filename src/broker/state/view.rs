//! What `tcpb status` shows, read from the broker's state: the one place a
//! `HostStatus` is made, for a running broker and for the farm as the last
//! broker left it.

use super::State;
use super::lease::Lease;
use crate::broker::sched::{Host, LeaseId};
use crate::broker::store;
use crate::protocol::{BrokerInfo, HostState, HostStatus, QueuedJob, RunningJob, StatusSnapshot};
use std::time::Instant;

/// Queued compiles listed in a snapshot.
const QUEUE_SHOWN: usize = 100;

/// A snapshot of `state` at `now`; `broker` is `None` for a farm with no
/// broker running (no compile counts then).
pub(super) fn snapshot(state: &State, broker: Option<BrokerInfo>, now: Instant) -> StatusSnapshot {
    let stats = &state.stats;
    let live = broker.is_some();
    let (wait_mean_s, wait_p95_s) = stats.wait_stats();
    StatusSnapshot {
        broker,
        farm_origin: state.farm.origin.clone(),
        queued: state.sched.queued() as u32,
        running: state.sched.running() as u32,
        granted: stats.granted,
        queue_timeouts: stats.queue_timeouts,
        fell_back: stats.fell_back,
        over_limit: stats.over_limit,
        unparsed_streams: stats.unparsed,
        granted_local: stats.granted_local,
        wait_mean_s,
        wait_p95_s,
        wait_histogram: stats.histogram(),
        wait_sum_s: stats.wait_sum,
        wait_count: stats.wait_count,
        queue: queue(state, now),
        compiling: compiling(state, now),
        hosts: hosts(state, live, now),
        lists: state.lists.status(now),
        team: state.slots.status(),
    }
}

/// Every host in farm order; hosts on their way out and the local-jobs
/// pool last.
fn hosts(state: &State, live: bool, now: Instant) -> Vec<HostStatus> {
    let mut hosts: Vec<HostStatus> = state
        .sched
        .hosts()
        .map(|(_, h)| {
            let mut s = host_status(state, h, now);
            if !live {
                last_seen(state, &mut s);
            }
            s
        })
        .collect();
    let rank = |h: &HostStatus| {
        let pos = state
            .farm
            .hosts
            .iter()
            .position(|f| f.name == h.name && !h.local_only);
        (h.local_only, pos.unwrap_or(usize::MAX))
    };
    hosts.sort_by_key(rank);
    hosts
}

/// With no broker running, a host shows the state the last broker saw it
/// in and how long ago; admin states (draining, disabled) hold as they are.
fn last_seen(state: &State, s: &mut HostStatus) {
    if !matches!(s.state, HostState::Unknown | HostState::Up) {
        return;
    }
    match state.memory.seen.get(&s.name) {
        Some(seen) => {
            s.state = seen.state;
            s.seen_s = Some(store::unix_now().saturating_sub(seen.at));
        }
        None => s.state = HostState::Unknown,
    }
}

fn host_status(state: &State, h: &Host, now: Instant) -> HostStatus {
    HostStatus {
        name: h.spec.name.clone(),
        state: h.state(),
        slots: h.spec.slots,
        busy: h.busy,
        speed: h.spec.speed,
        learned_speed: state.sched.learned_speed(h),
        samples: h.learned.samples() as u32,
        jobs: h.jobs,
        failures: h.failures,
        fallbacks: h.fallbacks,
        last_error: h.last_error.as_ref().map(|(e, _)| e.clone()),
        last_error_age_s: h
            .last_error
            .as_ref()
            .map(|(_, t)| now.duration_since(*t).as_secs()),
        local_only: h.local_only,
        mean_job_s: (!h.local_only)
            .then(|| state.stats.mean_job_secs(&h.spec.name))
            .flatten(),
        seen_s: None,
    }
}

fn queue(state: &State, now: Instant) -> Vec<QueuedJob> {
    let lease = |l: LeaseId| state.leases.get(&l);
    state
        .sched
        .queue()
        .take(QUEUE_SHOWN)
        .enumerate()
        .filter_map(|(i, l)| {
            let j: &Lease = lease(l)?;
            Some(QueuedJob {
                position: i as u32 + 1,
                pid: j.pid,
                source: j.source.clone(),
                waited_s: now.duration_since(j.since).as_secs_f64(),
            })
        })
        .collect()
}

fn compiling(state: &State, now: Instant) -> Vec<RunningJob> {
    let mut compiling: Vec<RunningJob> = state
        .leases
        .iter()
        .filter_map(|(id, j)| {
            let at = j.granted_at()?;
            let host = state.sched.placed(*id)?;
            Some(RunningJob {
                host: state.sched.host(host).spec.name.clone(),
                pid: j.pid,
                source: j.source.clone(),
                elapsed_s: now.duration_since(at).as_secs_f64(),
            })
        })
        .collect();
    compiling.sort_by(|a, b| b.elapsed_s.total_cmp(&a.elapsed_s));
    compiling
}

//! The broker's shared state: the scheduler, the clients waiting for a
//! grant, and the relay ports. One mutex, never held across an await.

use super::relay::{self, RelayPorts};
use super::sched::{HostId, LeaseId, Placement, Scheduler};
use crate::config::Config;
use crate::farm::{self, Farm};
use crate::hosts::HostList;
use crate::protocol::{BrokerInfo, Grant, HostStatus, StatusSnapshot};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Everything the broker's tasks share.
pub struct Shared {
    /// The mutable state.
    inner: Mutex<Inner>,
    /// The configuration read at start.
    pub config: Config,
    /// When the broker started.
    pub started: Instant,
    /// Set to true to stop the broker.
    pub shutdown: watch::Sender<bool>,
}

/// The mutable state.
pub struct Inner {
    /// Slot accounting and host choice.
    pub sched: Scheduler,
    /// Clients waiting in the queue, by lease.
    waiters: HashMap<LeaseId, oneshot::Sender<Grant>>,
    /// Relay ports and which lease owns each.
    pub relay: RelayPorts,
    /// The relay port of each remote lease.
    lease_ports: HashMap<LeaseId, u16>,
    /// The host list the farm was last built from.
    farm_list: Option<HostList>,
    /// The farm in force.
    pub farm: Farm,
    /// The next lease id.
    next_lease: LeaseId,
    /// Grants since start.
    granted: u64,
    /// When the last lease started or ended.
    pub last_active: Instant,
}

impl Shared {
    /// A broker state for `config`, starting on the configured farm alone.
    pub fn new(config: Config, now: Instant) -> Arc<Shared> {
        let farm = farm::build(&HostList::default(), &config, farm::local_cpus());
        let retry = Duration::from_secs(config.broker.retry_after_s);
        let (shutdown, _) = watch::channel(false);
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                sched: Scheduler::new(&farm, retry, now),
                waiters: HashMap::new(),
                relay: RelayPorts::default(),
                lease_ports: HashMap::new(),
                farm_list: None,
                farm,
                next_lease: 1,
                granted: 0,
                last_active: now,
            }),
            config,
            started: now,
            shutdown,
        })
    }

    /// Locks the state. A panic elsewhere while locked must not wedge every
    /// compile, so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the broker to stop.
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
    }

    /// Adopts a client's host list if it differs from the one in force.
    pub fn adopt_farm(self: &Arc<Self>, inner: &mut Inner, list: &HostList, now: Instant) {
        if inner.farm_list.as_ref() == Some(list) {
            return;
        }
        let farm = farm::build(list, &self.config, farm::local_cpus());
        tracing::info!(origin = %farm.origin, hosts = farm.hosts.len(), "farm changed");
        for w in &list.warnings {
            tracing::warn!("{w}");
        }
        inner.farm_list = Some(list.clone());
        let placed = inner.sched.set_farm(&farm, now);
        inner.farm = farm;
        self.deliver(inner, placed, None);
    }

    /// Starts a lease; returns its id and its grant if it runs at once.
    pub fn request(
        self: &Arc<Self>,
        inner: &mut Inner,
        need: super::sched::Need,
        waiter: oneshot::Sender<Grant>,
        now: Instant,
    ) -> (LeaseId, Option<Grant>) {
        let id = inner.next_lease;
        inner.next_lease += 1;
        inner.last_active = now;
        inner.waiters.insert(id, waiter);
        let placed = inner.sched.request(id, need, now);
        let own = self.deliver(inner, placed, Some(id));
        if own.is_some() {
            inner.waiters.remove(&id);
        }
        (id, own)
    }

    /// Ends a lease, queued or running, and hands its slot on.
    pub fn release(self: &Arc<Self>, id: LeaseId) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.waiters.remove(&id);
        if let Some(port) = inner.lease_ports.remove(&id) {
            inner.relay.give_back(port);
        }
        inner.last_active = now;
        let placed = inner.sched.release(id, now);
        self.deliver(&mut inner, placed, None);
    }

    /// Turns placements into grants and hands them to their waiting
    /// clients; returns the grant of `own`, whose client is the caller.
    pub fn deliver(
        self: &Arc<Self>,
        inner: &mut Inner,
        placed: Vec<Placement>,
        own: Option<LeaseId>,
    ) -> Option<Grant> {
        let mut own_grant = None;
        let mut orphans = Vec::new();
        for p in placed {
            let grant = self.grant_for(inner, p.lease, p.host);
            inner.granted += 1;
            if Some(p.lease) == own {
                own_grant = Some(grant);
            } else if let Some(tx) = inner.waiters.remove(&p.lease)
                && tx.send(grant).is_err()
            {
                orphans.push(p.lease);
            }
        }
        let now = Instant::now();
        for lease in orphans {
            // The client went away between being placed and hearing of it.
            if let Some(port) = inner.lease_ports.remove(&lease) {
                inner.relay.give_back(port);
            }
            let more = inner.sched.release(lease, now);
            self.deliver(inner, more, None);
        }
        own_grant
    }

    fn grant_for(self: &Arc<Self>, inner: &mut Inner, lease: LeaseId, host: HostId) -> Grant {
        let spec = inner.sched.host(host).spec.clone();
        if spec.is_local() {
            return Grant::Local;
        }
        match inner.relay.take(lease, || relay::open_port(self)) {
            Ok(port) => {
                inner.lease_ports.insert(lease, port);
                Grant::Remote {
                    options: spec.distcc_options(),
                    host: spec.name,
                    port,
                }
            }
            Err(e) => {
                tracing::error!("cannot open a relay port: {e}; the compile runs locally");
                Grant::Local
            }
        }
    }

    /// Periodic work: retry hosts whose time has come; stop when idle.
    pub fn tick(self: &Arc<Self>, now: Instant) {
        let mut inner = self.lock();
        let placed = inner.sched.tick(now);
        self.deliver(&mut inner, placed, None);
        let idle = inner.sched.running() == 0 && inner.sched.queued() == 0;
        let limit = Duration::from_secs(self.config.broker.idle_exit_s);
        if idle && now.duration_since(inner.last_active) >= limit {
            tracing::info!("idle for {}s, stopping", limit.as_secs());
            drop(inner);
            self.stop();
        }
    }

    /// Drops every waiting client's grant channel: they are told the broker
    /// is stopping.
    pub fn turn_away_waiters(&self) {
        self.lock().waiters.clear();
    }

    /// A snapshot for `tcpb status`.
    pub fn snapshot(&self) -> StatusSnapshot {
        let now = Instant::now();
        let inner = self.lock();
        let hosts = inner
            .sched
            .hosts()
            .map(|(_, h)| HostStatus {
                name: h.spec.name.clone(),
                state: h.state(now),
                slots: h.spec.slots,
                busy: h.busy,
                speed: h.spec.speed,
                jobs: h.jobs,
                failures: h.failures,
                last_error: h.last_error.as_ref().map(|(e, _)| e.clone()),
                last_error_age_s: h
                    .last_error
                    .as_ref()
                    .map(|(_, t)| now.duration_since(*t).as_secs()),
                local_only: h.local_only,
            })
            .collect();
        StatusSnapshot {
            broker: Some(BrokerInfo {
                pid: std::process::id(),
                uptime_s: now.duration_since(self.started).as_secs(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
            farm_origin: inner.farm.origin.clone(),
            queued: inner.sched.queued() as u32,
            running: inner.sched.running() as u32,
            granted: inner.granted,
            hosts,
        }
    }
}

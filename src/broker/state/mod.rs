//! The broker's one owner of its state, in the style of mini-redis's `Db`:
//! `Broker` is a cheap handle; the state behind it is private, every method
//! takes the lock itself, does one thing and returns data, never a guard.
//! No code outside this module (and its children, which are handed the
//! state, never the lock) can reach the mutex, and nothing here waits on
//! I/O while holding it: files are written by the store's own thread from
//! a copy taken under the lock.
//!
//! What it holds: the scheduler (slots, hosts, queue), one `Lease` record
//! per compile, the farm and where it came from, the admin overlay, the
//! per-file cost memory, the counters, and what to save.

mod admin;
mod admission;
mod farm;
mod grant;
mod lease;
mod lists;
mod relayed;
mod stats;
mod team;
mod view;

pub(crate) use admin::AdminError;
use admission::over_limit;
pub(crate) use admission::{Connection, Started};

use super::overlay::Overlay;
use super::relay::{Relay, Report, Target};
use super::sched::costs::{Costs, SavedCosts};
use super::sched::{HostId, LeaseId, Scheduler};
use super::slots::{AllSlots, Slots};
use super::store::{SaveError, Saved, Writer};
use crate::config::{BrokerConfig, Config};
use crate::farm::Farm;
use crate::hosts::HostList;
use crate::paths::Paths;
use crate::protocol::{BrokerInfo, HostCmd, LeaseRequest, StatusSnapshot};
use farm::Memory;
use grant::{deliver, end_lease};
use lease::Lease;
use stats::Stats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// How often counters are saved while they change: a broker killed with
/// SIGKILL loses at most this much of them.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// A handle on the broker's state; clones share it.
#[derive(Clone)]
pub(crate) struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    /// Everything that changes, behind the one lock.
    state: Mutex<State>,
    /// Where the config and the state files live.
    paths: Paths,
    /// When the broker started.
    started: Instant,
    /// Set to true to stop the broker.
    shutdown: watch::Sender<bool>,
    /// Compiles connected now (waiting or running).
    connections: AtomicUsize,
    /// The relay's ports, given a ticket at each remote grant.
    relay: Relay,
    /// The thread that writes the state files.
    writer: Writer,
}

/// Everything behind the lock.
struct State {
    /// Slots, hosts and the queue.
    sched: Scheduler,
    /// The configuration in force.
    config: Config,
    /// Runtime farm changes (`tcpb host …`).
    overlay: Overlay,
    /// What this broker may use of each host.
    slots: Box<dyn Slots>,
    /// Every live lease, waiting or granted.
    leases: HashMap<LeaseId, Lease>,
    /// The host lists compiles are using, each a host set of the farm.
    lists: lists::Lists,
    /// The farm built from it, the config and the overlay.
    farm: Farm,
    /// Per-host counters and speed samples kept by name across restarts.
    memory: Memory,
    /// Per-file costs, the expected size of each compile.
    costs: Costs,
    /// The id the next lease gets.
    next_lease: LeaseId,
    /// Counters for status and metrics.
    stats: Stats,
    /// When the last lease started or ended.
    last_active: Instant,
    /// When the state was last handed to the writer.
    last_save: Instant,
    /// Something to save changed since.
    dirty: bool,
}

impl State {
    fn new(config: Config, saved: Saved, costs: SavedCosts, now: Instant) -> State {
        let farm = crate::farm::build(&HostList::default(), &config, crate::farm::local_cpus());
        let mut sched = Scheduler::new(&farm, config.health, now);
        sched.set_overflow(config.broker.local_overflow);
        State {
            sched,
            config,
            overlay: saved.overlay,
            slots: Box::new(AllSlots),
            leases: HashMap::new(),
            lists: lists::Lists::default(),
            farm,
            memory: Memory {
                counters: saved.counters,
                learned: saved.learned,
                seen: saved.seen,
            },
            costs: Costs::restore(costs),
            next_lease: 1,
            stats: Stats::default(),
            last_active: now,
            last_save: now,
            dirty: false,
        }
    }
}

impl Broker {
    /// A broker with `config` and what the last one saved, serving its
    /// relay ports through `relay`, using of each host what `slots` allows.
    pub(crate) fn new(
        config: Config,
        paths: Paths,
        (saved, costs): (Saved, SavedCosts),
        relay: Relay,
        slots: Box<dyn Slots>,
    ) -> Broker {
        let now = Instant::now();
        let mut state = State::new(config, saved, costs, now);
        state.slots = slots;
        let placed = farm::refresh(&mut state, now);
        debug_assert!(placed.is_empty(), "nothing queued yet");
        let (shutdown, _) = watch::channel(false);
        let writer = Writer::start(paths.clone());
        let shared = Shared {
            state: Mutex::new(state),
            paths,
            started: now,
            shutdown,
            connections: AtomicUsize::new(0),
            relay,
            writer,
        };
        Broker {
            shared: Arc::new(shared),
        }
    }

    /// The farm as the last broker left it, for `tcpb status` with none
    /// running: `list` with `config`, the saved overlay, counters and
    /// learned speeds.
    pub(crate) fn offline_status(list: HostList, config: Config, saved: Saved) -> StatusSnapshot {
        let now = Instant::now();
        let mut state = State::new(config, saved, SavedCosts::default(), now);
        state.lists.find_or_add(&list, now);
        farm::refresh(&mut state, now);
        let mut snap = view::snapshot(&state, None, now);
        snap.hosts.retain(|h| !h.local_only);
        snap.lists.clear();
        snap
    }

    /// Locks the state. A panic elsewhere while locked must not wedge every
    /// compile, so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the config and state live.
    pub(crate) fn paths(&self) -> &Paths {
        &self.shared.paths
    }

    /// Asks the broker to stop.
    pub(crate) fn stop(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Completes once the broker is asked to stop.
    pub(crate) async fn stopping(&self) {
        let mut rx = self.shared.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The `[broker]` options in force.
    pub(crate) fn options(&self) -> BrokerConfig {
        self.lock().config.broker.clone()
    }

    /// Counts a compile's connection while the result lives; past
    /// `max_connections` it says why the compile must run locally.
    pub(crate) fn connection(&self) -> Connection {
        let n = self.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let mut state = self.lock();
        let max = state.config.broker.max_connections;
        let over = (n > max).then(|| {
            let what = ("max_connections", "compiles connected");
            over_limit(&mut state, &self.shared.paths, what, max)
        });
        Connection {
            shared: Arc::clone(&self.shared),
            over,
        }
    }

    /// Starts the lease of `req`: adopts its host list, queues it and
    /// places what can run. Its grant comes now or through `waiter`.
    pub(crate) fn request(&self, req: &LeaseRequest, waiter: lease::Waiter) -> Started {
        let now = Instant::now();
        let mut state = self.lock();
        let set = farm::adopt(&mut state, &req.farm, &self.shared.relay, now);
        let id = state.next_lease;
        state.next_lease += 1;
        state.last_active = now;
        let job = lease::job_of(&mut state.costs, req, set);
        let notice = state.lists.started(set, req.build);
        let lease = Lease::new(req, set, waiter, now);
        if let Some(env) = &lease.ssh_env {
            self.shared.relay.note_ssh_env(env);
        }
        state.leases.insert(id, lease);
        let placed = state.sched.request(id, job, now);
        state.slots.demand_changed();
        let grant = deliver(&mut state, &self.shared.relay, placed, Some(id));
        let max = state.config.broker.max_queue;
        // Only a compile that waits in the queue is turned away: one placed
        // on a host being reached is on its way.
        let over = state.sched.queued() > max && state.sched.unqueue(id);
        let refused = over.then(|| {
            let what = ("max_queue", "queued compiles");
            over_limit(&mut state, &self.shared.paths, what, max)
        });
        Started {
            id,
            grant,
            refused,
            notice,
        }
    }

    /// 1-based queue position of lease `id` (0 when it does not wait).
    pub(crate) fn position(&self, id: LeaseId) -> u32 {
        self.lock().sched.position(id).unwrap_or(0) as u32
    }

    /// A queued lease waited too long: it leaves the queue and runs locally.
    /// False when it was granted meanwhile.
    pub(crate) fn queue_timeout(&self, id: LeaseId) -> bool {
        let mut state = self.lock();
        if !state.sched.unqueue(id) {
            return false;
        }
        if let Some(l) = state.leases.get_mut(&id) {
            l.take_waiter();
        }
        state.stats.queue_timeouts += 1;
        true
    }

    /// Ends a lease, queued or running, and hands its slot on.
    pub(crate) fn release(&self, id: LeaseId) {
        let mut state = self.lock();
        end_lease(&mut state, &self.shared.relay, id, Instant::now());
        state.slots.demand_changed();
    }

    /// Runs `tcpb host …` with the client's host list; the answer comes
    /// once the change is saved.
    pub(crate) async fn admin(&self, cmd: &HostCmd, list: &HostList) -> Result<String, AdminError> {
        let (message, saving) = {
            let now = Instant::now();
            let mut state = self.lock();
            farm::adopt(&mut state, list, &self.shared.relay, now);
            let message = admin::execute(&mut state, &self.shared.relay, cmd)?;
            let placed = farm::refresh(&mut state, now);
            deliver(&mut state, &self.shared.relay, placed, None);
            (
                message,
                self.shared
                    .writer
                    .save_and_tell(farm::take_save(&mut state)),
            )
        };
        tracing::info!("admin: {message}");
        match saving.await {
            Ok(Ok(())) => Ok(message),
            Ok(Err(e)) => Err(AdminError::NotSaved {
                done: message,
                error: e.to_string(),
            }),
            Err(_) => Err(AdminError::NotSaved {
                done: message,
                error: "the broker is stopping".to_string(),
            }),
        }
    }

    /// Applies a configuration read anew (`tcpb reload`, SIGHUP).
    pub(crate) fn reconfigure(&self, config: Config) -> String {
        let now = Instant::now();
        let mut state = self.lock();
        state.sched.set_health_config(config.health);
        state.sched.set_overflow(config.broker.local_overflow);
        state.config = config;
        let placed = farm::refresh(&mut state, now);
        deliver(&mut state, &self.shared.relay, placed, None);
        let file = self.shared.paths.config_file.display();
        format!("reloaded {file}: {} hosts", state.farm.hosts.len())
    }

    /// What the relay reported.
    pub(crate) fn on_report(&self, report: Report) {
        let now = Instant::now();
        let mut state = self.lock();
        match report {
            Report::Connected { lease } => {
                if let Some(l) = state.leases.get_mut(&lease) {
                    l.relaying();
                }
            }
            Report::Refused {
                ticket,
                error,
                reply,
            } => {
                let next = state.sched.reroute(ticket.lease, error, now);
                let _ = reply.send(next.and_then(|h| relayed::target(&state, h)));
            }
            Report::Ready { ticket, port } => {
                let relay = &self.shared.relay;
                relayed::ready(&mut state, relay, (&ticket, port), now);
            }
            Report::Unreachable { ticket, error } => {
                let placed = relayed::unreachable(&mut state, &ticket, &error, now);
                deliver(&mut state, &self.shared.relay, placed, None);
            }
            Report::Ended { ticket, outcome } => relayed::ended(&mut state, &ticket, outcome, now),
        }
    }

    /// Asks the slot source again what this broker may use of each host
    /// and applies what changed: a grown capacity places queued compiles,
    /// a shrunk one lets running compiles finish.
    pub(crate) fn refresh_capacity(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        let State { sched, slots, .. } = &mut *state;
        let mut placed = sched.set_may_grow(slots.may_grow(), now);
        let changed: Vec<(HostId, u32)> = sched
            .hosts()
            .map(|(id, h)| (id, slots.usable(&h.spec)))
            .filter(|(id, cap)| *cap != sched.host(*id).cap)
            .collect();
        for (id, cap) in changed {
            placed.extend(sched.set_capacity(id, cap, now));
        }
        deliver(&mut state, &self.shared.relay, placed, None);
    }

    /// This machine had `idle_cpus` idle CPUs over the last sample: local
    /// overflow may place queued compiles.
    pub(crate) fn local_idle(&self, idle_cpus: f64) {
        let now = Instant::now();
        let mut state = self.lock();
        let placed = state.sched.local_idle(idle_cpus, now);
        deliver(&mut state, &self.shared.relay, placed, None);
    }

    /// Remote hosts whose probe is due, and the probe timeout.
    pub(crate) fn due_probes(&self, now: Instant) -> (Vec<Target>, Duration) {
        let mut state = self.lock();
        let timeout = Duration::from_millis(state.config.health.timeout_ms);
        let State { sched, slots, .. } = &mut *state;
        let due = sched.due_probes_of(now, |h| slots.probes(h));
        (due.iter().filter_map(Target::of).collect(), timeout)
    }

    /// A probe of `name` finished; `error` says why it failed.
    pub(crate) fn probe_done(&self, name: &str, error: Option<String>) {
        let now = Instant::now();
        let mut state = self.lock();
        let placed = state.sched.probe_done(name, error, now);
        deliver(&mut state, &self.shared.relay, placed, None);
    }

    /// Periodic work: saving counters, setting a full log aside, stopping
    /// when idle.
    pub(crate) fn tick(&self, now: Instant, check_log: bool) {
        let mut state = self.lock();
        if state.dirty && now.duration_since(state.last_save) >= SAVE_EVERY {
            self.shared.writer.save(farm::take_save(&mut state));
        }
        if check_log {
            let max = state.config.broker.log_max_kib.max(1) << 10;
            self.shared.writer.rotate_log(max);
        }
        let list_idle = Duration::from_secs(state.config.broker.list_idle_s);
        if state.lists.expire(now, list_idle) {
            let placed = farm::refresh(&mut state, now);
            deliver(&mut state, &self.shared.relay, placed, None);
        }
        let idle = state.sched.running() == 0 && state.sched.queued() == 0;
        let limit = Duration::from_secs(state.config.broker.idle_exit_s);
        if idle && now.duration_since(state.last_active) >= limit {
            drop(state);
            tracing::info!("idle for {}s, stopping", limit.as_secs());
            self.stop();
        }
    }

    /// Saves everything now; the receiver tells when it is on disk.
    pub(crate) fn save(&self) -> oneshot::Receiver<Result<(), SaveError>> {
        let snap = farm::take_save(&mut self.lock());
        self.shared.writer.save_and_tell(snap)
    }

    /// Tells every waiting compile that the broker is stopping.
    pub(crate) fn turn_away_waiters(&self) {
        for lease in self.lock().leases.values_mut() {
            lease.take_waiter();
        }
    }

    /// Compiles holding a slot.
    pub(crate) fn running(&self) -> usize {
        self.lock().sched.running()
    }

    /// A snapshot for `tcpb status`.
    pub(crate) fn snapshot(&self) -> StatusSnapshot {
        let now = Instant::now();
        let info = BrokerInfo {
            pid: std::process::id(),
            uptime_s: now.duration_since(self.shared.started).as_secs(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        view::snapshot(&self.lock(), Some(info), now)
    }
}

#[cfg(test)]
mod tests;

//! The broker's shared state: the scheduler, the clients waiting for a
//! grant, relay ports, the admin overlay and the configuration. One mutex,
//! never held across an await.

use super::costs::{self, Costs};
use super::overlay::Overlay;
use super::pump;
use super::relay::{self, RelayPorts};
use super::sched::{Host, HostId, Job, LeaseId, Need, Placement, Scheduler};
use super::store::{self, HostCounters, Saved};
use crate::config::Config;
use crate::farm::{self, Farm};
use crate::hosts::HostList;
use crate::paths::Paths;
use crate::protocol::{BrokerInfo, Grant, HostStatus, QueuedJob, RunningJob, StatusSnapshot};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;

/// How often counters are saved while they change.
const SAVE_EVERY: Duration = Duration::from_secs(30);

/// Everything the broker's tasks share.
pub struct Shared {
    /// The mutable state.
    inner: Mutex<Inner>,
    /// Where the config and state live.
    pub paths: Paths,
    /// When the broker started.
    pub started: Instant,
    /// Set to true to stop the broker.
    pub shutdown: watch::Sender<bool>,
    /// Control connections of this user being served now.
    pub connections: AtomicUsize,
}

/// A lease's facts, for status and the cost memory.
struct JobInfo {
    pid: u32,
    source: Option<String>,
    key: Option<String>,
    size: u64,
    since: Instant,
    /// When it was granted.
    started: Option<Instant>,
}

/// Queue waits remembered for the status's mean and p95.
const WAITS_KEPT: usize = 1000;
/// Upper bounds (seconds) of the wait histogram's buckets.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// What the broker is told of a compile when it asks for a slot.
pub struct JobFacts {
    /// The client's pid.
    pub pid: u32,
    /// The source as written.
    pub source: Option<String>,
    /// Its canonical path.
    pub key: Option<String>,
    /// Its size in bytes.
    pub size: u64,
    /// Its build.
    pub build: u32,
}

/// The mutable state.
pub struct Inner {
    /// Slot accounting, host choice and health.
    pub sched: Scheduler,
    /// The configuration in force.
    pub config: Config,
    /// Runtime farm changes.
    pub overlay: Overlay,
    waiters: HashMap<LeaseId, oneshot::Sender<Grant>>,
    /// Relay ports and which lease owns each.
    pub relay: RelayPorts,
    lease_ports: HashMap<LeaseId, u16>,
    relays: HashMap<LeaseId, AbortHandle>,
    /// Leases whose jobs were ended (`host remove --force`): a relay
    /// connection that arrives for one later is closed at once.
    ended: HashSet<LeaseId>,
    jobs: HashMap<LeaseId, JobInfo>,
    farm_list: Option<HostList>,
    farm: Farm,
    counters: BTreeMap<String, HostCounters>,
    /// Speed samples by host name, as last saved or restored.
    learned: BTreeMap<String, Vec<(f64, f64)>>,
    costs: Costs,
    next_lease: LeaseId,
    granted: u64,
    queue_timeouts: u64,
    fell_back: u64,
    over_limit: u64,
    granted_local: u64,
    /// The last `WAITS_KEPT` queue waits, in seconds.
    waits: std::collections::VecDeque<f64>,
    /// Waits per `WAIT_BUCKETS` bucket (not cumulative), and their sum.
    wait_counts: [u64; WAIT_BUCKETS.len()],
    wait_sum: f64,
    wait_count: u64,
    /// Per host name: server seconds and jobs the relay timed.
    job_secs: HashMap<String, (f64, u64)>,
    unparsed: u64,
    /// When the last lease started or ended.
    pub last_active: Instant,
    last_save: Instant,
    dirty: bool,
}

/// Notes host `h`'s counters and speed samples, to be saved and to seed a
/// host of the same name later.
fn remember(
    counters: &mut BTreeMap<String, HostCounters>,
    learned: &mut BTreeMap<String, Vec<(f64, f64)>>,
    h: &Host,
) {
    if h.local_only || !h.seeded {
        return;
    }
    let c = HostCounters {
        jobs: h.jobs,
        failures: h.failures,
        fallbacks: h.fallbacks,
    };
    counters.insert(h.spec.name.clone(), c);
    if h.learned.samples() > 0 {
        learned.insert(h.spec.name.clone(), h.learned.saved());
    }
}

impl Shared {
    /// A broker state for `config`, with `saved` state restored.
    pub fn new(config: Config, paths: Paths, saved: Saved, now: Instant) -> Arc<Shared> {
        let farm = farm::build(&HostList::default(), &config, farm::local_cpus());
        let (costs, warning) = Costs::load(&costs::path(&paths.state_dir));
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                sched: Scheduler::new(&farm, config.health, now),
                config,
                overlay: saved.overlay,
                waiters: HashMap::new(),
                relay: RelayPorts::default(),
                lease_ports: HashMap::new(),
                relays: HashMap::new(),
                ended: HashSet::new(),
                jobs: HashMap::new(),
                farm_list: None,
                farm,
                counters: saved.counters,
                learned: saved.learned,
                costs,
                next_lease: 1,
                granted: 0,
                queue_timeouts: 0,
                fell_back: 0,
                over_limit: 0,
                granted_local: 0,
                waits: std::collections::VecDeque::new(),
                wait_counts: [0; WAIT_BUCKETS.len()],
                wait_sum: 0.0,
                wait_count: 0,
                job_secs: HashMap::new(),
                unparsed: 0,
                last_active: now,
                last_save: now,
                dirty: false,
            }),
            paths,
            started: now,
            shutdown,
            connections: AtomicUsize::new(0),
        });
        {
            let mut inner = shared.lock();
            shared.refresh(&mut inner, now);
        }
        shared
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
        for w in &list.warnings {
            tracing::warn!("{w}");
        }
        inner.farm_list = Some(list.clone());
        self.refresh(inner, now);
        tracing::info!(origin = %inner.farm.origin, hosts = inner.farm.hosts.len(), "farm changed");
    }

    /// Rebuilds the farm from the host list, the config and the overlay,
    /// and applies it: kept hosts keep their jobs; dropped ones drain.
    pub fn refresh(self: &Arc<Self>, inner: &mut Inner, now: Instant) {
        let list = inner.farm_list.clone().unwrap_or_default();
        let mut farm = farm::build(&list, &inner.config, farm::local_cpus());
        inner.overlay.apply(&mut farm);
        let placed = inner.sched.set_farm(&farm, now);
        inner.farm = farm;
        let Inner {
            sched,
            counters,
            learned,
            ..
        } = &mut *inner;
        // A host dropped earlier and listed again starts from what it had.
        for h in sched.take_retired() {
            remember(counters, learned, &h);
        }
        let fresh: Vec<(HostId, String)> = sched
            .hosts()
            .filter(|(_, h)| !h.local_only && !h.seeded)
            .map(|(id, h)| (id, h.spec.name.clone()))
            .collect();
        let mut restored = Vec::new();
        for (id, name) in fresh {
            let h = sched.host_mut(id);
            h.seeded = true;
            if let Some(c) = counters.get(&name) {
                h.jobs += c.jobs;
                h.failures += c.failures;
                h.fallbacks += c.fallbacks;
            }
            if let Some(samples) = learned.get(&name) {
                restored.push((id, samples.as_slice()));
            }
        }
        if !restored.is_empty() {
            sched.restore_learned(restored);
        }
        self.deliver(inner, placed, None);
    }

    /// Re-reads `config.toml` and applies it. On error the old config stays.
    pub fn reload(self: &Arc<Self>) -> Result<String, String> {
        let config = Config::load(&self.paths.config_file).map_err(|e| e.to_string())?;
        let mut inner = self.lock();
        inner.sched.set_health_config(config.health);
        inner.config = config;
        self.refresh(&mut inner, Instant::now());
        let msg = format!(
            "reloaded {}: {} hosts",
            self.paths.config_file.display(),
            inner.farm.hosts.len()
        );
        tracing::info!("{msg}");
        Ok(msg)
    }

    /// Starts a lease; returns its id and its grant if it runs at once.
    pub fn request(
        self: &Arc<Self>,
        inner: &mut Inner,
        need: Need,
        facts: JobFacts,
        waiter: oneshot::Sender<Grant>,
        now: Instant,
    ) -> (LeaseId, Option<Grant>) {
        let id = inner.next_lease;
        inner.next_lease += 1;
        inner.last_active = now;
        let known = facts.key.as_deref().is_some_and(|k| inner.costs.knows(k));
        let cost = inner.costs.expected(facts.key.as_deref(), facts.size);
        let job = Job {
            need,
            cost,
            known,
            light: known && cost < 0.5 * inner.costs.mean(),
            build: facts.build,
        };
        inner.jobs.insert(
            id,
            JobInfo {
                pid: facts.pid,
                source: facts.source,
                key: facts.key,
                size: facts.size,
                since: now,
                started: None,
            },
        );
        inner.waiters.insert(id, waiter);
        let placed = inner.sched.request(id, job, now);
        let own = self.deliver(inner, placed, Some(id));
        if own.is_some() {
            inner.waiters.remove(&id);
        }
        (id, own)
    }

    /// A queued lease waited too long: it leaves the queue and runs locally.
    /// False when it was granted meanwhile.
    pub fn queue_timeout(&self, id: LeaseId) -> bool {
        let mut inner = self.lock();
        if !inner.sched.unqueue(id) {
            return false;
        }
        inner.waiters.remove(&id);
        inner.queue_timeouts += 1;
        true
    }

    /// A compile refused a place by `max_queue` or `max_connections`: it
    /// leaves the queue (if it was in it) and compiles locally. The message
    /// is for the user; the broker's log has the first of each burst.
    pub fn over_limit(
        &self,
        inner: &mut Inner,
        id: Option<LeaseId>,
        (key, what): (&str, &str),
        max: usize,
    ) -> String {
        if let Some(id) = id {
            inner.sched.unqueue(id);
            inner.waiters.remove(&id);
        }
        inner.over_limit += 1;
        let message = format!(
            "at its limit of {max} {what} ({key} in {})",
            self.paths.config_file.display()
        );
        if inner.over_limit.is_power_of_two() {
            tracing::warn!(count = inner.over_limit, "{message}");
        }
        message
    }

    /// Ends a lease, queued or running, and hands its slot on.
    pub fn release(self: &Arc<Self>, id: LeaseId) {
        let mut inner = self.lock();
        self.end_lease(&mut inner, id, Instant::now());
    }

    /// Forgets everything about lease `id`, frees its slot and relay port,
    /// and hands the slot on.
    fn end_lease(self: &Arc<Self>, inner: &mut Inner, id: LeaseId, now: Instant) {
        inner.waiters.remove(&id);
        inner.jobs.remove(&id);
        inner.relays.remove(&id);
        inner.ended.remove(&id);
        if let Some(port) = inner.lease_ports.remove(&id) {
            inner.relay.give_back(port);
        }
        inner.last_active = now;
        inner.dirty = true;
        let placed = inner.sched.release(id, now);
        self.deliver(inner, placed, None);
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
        let now = Instant::now();
        for p in placed {
            let grant = self.grant_for(inner, p.lease, p.host);
            inner.granted += 1;
            inner.granted_local += u64::from(grant == Grant::Local);
            if let Some(j) = inner.jobs.get_mut(&p.lease) {
                j.started = Some(now);
                let wait = now.duration_since(j.since).as_secs_f64();
                if inner.waits.len() == WAITS_KEPT {
                    inner.waits.pop_front();
                }
                inner.waits.push_back(wait);
                inner.wait_sum += wait;
                inner.wait_count += 1;
                if let Some(b) = WAIT_BUCKETS.iter().position(|le| wait <= *le) {
                    inner.wait_counts[b] += 1;
                }
            }
            if Some(p.lease) == own {
                own_grant = Some(grant);
            } else if let Some(tx) = inner.waiters.remove(&p.lease)
                && tx.send(grant).is_err()
            {
                orphans.push(p.lease);
            }
        }
        for lease in orphans {
            // The client went away between being placed and hearing of it.
            self.end_lease(inner, lease, now);
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

    /// Remembers the relay task of `lease`, so `host remove --force` can end it.
    pub fn register_relay(&self, lease: LeaseId, handle: AbortHandle) {
        self.lock().relays.insert(lease, handle);
    }

    /// Ends the relays of every job on `host`; returns how many.
    pub fn end_jobs_on(inner: &mut Inner, host: HostId) -> usize {
        let leases = inner.sched.leases_on(host);
        for l in &leases {
            if let Some(h) = inner.relays.remove(l) {
                h.abort();
            }
            inner.ended.insert(*l);
        }
        leases.len()
    }

    /// True when the job of `lease` was ended and must not be relayed.
    pub fn is_ended(inner: &Inner, lease: LeaseId) -> bool {
        inner.ended.contains(&lease)
    }

    /// Counts a job a host lost (distcc then compiles it locally).
    pub fn count_fallback(inner: &mut Inner) {
        inner.fell_back += 1;
    }

    /// The relay finished watching a job of `lease`.
    pub fn observed(&self, lease: LeaseId, watch: &pump::Watch) {
        let mut inner = self.lock();
        if watch.request.broken || watch.response.broken {
            inner.unparsed += 1;
            return;
        }
        let (Some(host), Some(secs)) = (inner.sched.placed(lease), watch.server_secs()) else {
            return;
        };
        let (key, size) = inner
            .jobs
            .get(&lease)
            .map_or((None, 0), |j| (j.key.clone(), j.size));
        if let Some((work, weight)) = inner.costs.evidence(key.as_deref(), size) {
            inner.sched.observe(host, work, secs, weight);
        }
        let name = inner.sched.host(host).spec.name.clone();
        let timed = inner.job_secs.entry(name).or_default();
        timed.0 += secs;
        timed.1 += 1;
        // The job's work in seconds on a host of speed 1.0.
        let cost = secs * inner.sched.speed(inner.sched.host(host));
        inner.costs.record(key.as_deref(), size, cost);
        inner.dirty = true;
    }

    /// A probe of `name` finished.
    pub fn probe_done(self: &Arc<Self>, name: &str, error: Option<String>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let placed = inner.sched.probe_done(name, error, now);
        self.deliver(&mut inner, placed, None);
    }

    /// Periodic work: queued leases, saving counters, stopping when idle.
    pub fn tick(self: &Arc<Self>, now: Instant) {
        let mut inner = self.lock();
        if inner.dirty && now.duration_since(inner.last_save) >= SAVE_EVERY {
            self.save(&mut inner);
        }
        let idle = inner.sched.running() == 0 && inner.sched.queued() == 0;
        let limit = Duration::from_secs(inner.config.broker.idle_exit_s);
        if idle && now.duration_since(inner.last_active) >= limit {
            tracing::info!("idle for {}s, stopping", limit.as_secs());
            drop(inner);
            self.stop();
        }
    }

    /// Writes the overlay, counters and speed samples to the state file.
    pub fn save(&self, inner: &mut Inner) {
        let retired = inner.sched.take_retired();
        let Inner {
            sched,
            counters,
            learned,
            ..
        } = inner;
        for h in sched.hosts().map(|(_, h)| h).chain(&retired) {
            remember(counters, learned, h);
        }
        let saved = Saved {
            overlay: inner.overlay.clone(),
            counters: inner.counters.clone(),
            learned: inner.learned.clone(),
        };
        if let Err(e) = inner.costs.save(&costs::path(&self.paths.state_dir)) {
            tracing::error!("cannot save the cost memory: {e}");
        }
        let file = store::path(&self.paths.state_dir);
        match store::save(&file, &saved) {
            Ok(()) => {
                inner.dirty = false;
                inner.last_save = Instant::now();
            }
            Err(e) => tracing::error!("cannot save state to {}: {e}", file.display()),
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
        let mut hosts: Vec<HostStatus> = inner
            .sched
            .hosts()
            .map(|(_, h)| HostStatus {
                name: h.spec.name.clone(),
                state: h.state(),
                slots: h.spec.slots,
                busy: h.busy,
                speed: h.spec.speed,
                learned_speed: inner.sched.learned_speed(h),
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
                mean_job_s: inner
                    .job_secs
                    .get(&h.spec.name)
                    .filter(|(_, n)| *n > 0 && !h.local_only)
                    .map(|(secs, n)| secs / *n as f64),
            })
            .collect();
        // Farm order; hosts on their way out and the local-jobs pool last.
        let rank = |h: &HostStatus| {
            let pos = inner
                .farm
                .hosts
                .iter()
                .position(|f| f.name == h.name && !h.local_only);
            (h.local_only, pos.unwrap_or(usize::MAX))
        };
        hosts.sort_by_key(rank);
        let queue = inner
            .sched
            .queue()
            .into_iter()
            .take(100)
            .enumerate()
            .filter_map(|(i, l)| {
                let j = inner.jobs.get(&l)?;
                Some(QueuedJob {
                    position: i as u32 + 1,
                    pid: j.pid,
                    source: j.source.clone(),
                    waited_s: now.duration_since(j.since).as_secs_f64(),
                })
            })
            .collect();
        let mut compiling: Vec<RunningJob> = inner
            .jobs
            .iter()
            .filter_map(|(lease, j)| {
                let started = j.started?;
                let host = inner.sched.placed(*lease)?;
                Some(RunningJob {
                    host: inner.sched.host(host).spec.name.clone(),
                    pid: j.pid,
                    source: j.source.clone(),
                    elapsed_s: now.duration_since(started).as_secs_f64(),
                })
            })
            .collect();
        compiling.sort_by(|a, b| b.elapsed_s.total_cmp(&a.elapsed_s));
        let (wait_mean_s, wait_p95_s) = wait_stats(&inner.waits);
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
            queue_timeouts: inner.queue_timeouts,
            fell_back: inner.fell_back,
            over_limit: inner.over_limit,
            unparsed_streams: inner.unparsed,
            granted_local: inner.granted_local,
            wait_mean_s,
            wait_p95_s,
            wait_histogram: WAIT_BUCKETS
                .iter()
                .zip(inner.wait_counts.iter().scan(0, |acc, n| {
                    *acc += n;
                    Some(*acc)
                }))
                .map(|(le, n)| (*le, n))
                .collect(),
            wait_sum_s: inner.wait_sum,
            wait_count: inner.wait_count,
            queue,
            compiling,
            hosts,
        }
    }
}

/// Mean and 95th percentile of `waits`.
fn wait_stats(waits: &std::collections::VecDeque<f64>) -> (Option<f64>, Option<f64>) {
    if waits.is_empty() {
        return (None, None);
    }
    let mut v: Vec<f64> = waits.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let p95 = v[((v.len() - 1) as f64 * 0.95).round() as usize];
    (Some(mean), Some(p95))
}

//! The team task: keeps the broker's lease alive, reads the team's farm
//! (one range, then one watch, of every key but the claims' own: no
//! polling), publishes the hosts of this
//! broker's lists the team does not know yet and the broker's demand, and
//! moves its claims toward what `plan` says. `TeamSlots` answers the
//! broker's `Slots` questions from the claims held.
//!
//! The task wakes when a compile asks or ends (`Slots::demand_changed`),
//! when the farm's keys change, and every 200 ms for the linger and the
//! keep-alive. A compile that reuses a held claim costs no call to etcd.

use super::claims::Claims;
use super::etcd::{Batch, Change, Etcd, EtcdError, Watcher};
use super::health::Told;
use super::member::{Member, TeamDemand};
use super::session::{Session, TeamState};
use super::view::{Published, TeamHost, View};
use crate::config::{Offline, TeamConfig};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A claim idle this long (no compile of this broker waiting for it) is
/// given back.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// A whole read of the farm after the first waits this long for etcd at
/// least (no compile waits for it: the broker goes on with what it holds).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys `create_keys` creates in one call at most (a transaction holds at
/// most 128 operations by default).
const KEYS_PER_CALL: usize = 100;

/// One broker's membership of its team.
pub struct Team {
    pub(super) config: TeamConfig,
    pub(super) etcd: Etcd,
    pub(super) session: Session,
    pub(super) claims: Claims,
    pub(super) user: String,
    pub(super) workstation: String,
    pub(super) wake: Notify,
    inner: Mutex<Inner>,
}

/// What the task keeps between wakes.
#[derive(Default)]
pub(super) struct Inner {
    /// The team's farm as last read.
    pub(super) view: View,
    /// The demand last published, and when.
    published: Option<(Published, Instant)>,
    /// Per host, since when this broker's claims there have been idle.
    pub(super) idle_since: HashMap<String, Instant>,
    /// The lease the claims were made under.
    lease: Option<i64>,
    /// Per host, how many of its claims this broker may fill now
    /// (`plan::usable`); no entry: all of them.
    pub(super) caps: HashMap<String, u32>,
    /// Per host, when this broker last wrote its learned speed.
    pub(super) speed_written: HashMap<String, Instant>,
    /// The shares last computed (`moving`).
    pub(super) shares: super::moving::Cached,
    /// Per host, the health last agreed with the team (`health`).
    pub(super) synced: HashMap<String, crate::broker::sched::health::Health>,
    /// Hosts of the broker's farm that no list names and the team does
    /// not know: used with all their slots, uncoordinated.
    pub(super) uncoordinated: BTreeSet<String>,
}

impl Team {
    /// A team member for `config`, each call to etcd bounded by `timeout`:
    /// this user's broker on this workstation.
    pub fn new(config: &TeamConfig, timeout: Duration) -> Result<Arc<Team>, String> {
        let who = (crate::sys::user_name(), crate::sys::host_name());
        Team::named(config, timeout, who, std::process::id())
    }

    /// A team member for `config` as broker `instance` of `user` on
    /// `workstation` (the scale benchmark runs many in one process).
    pub fn named(
        config: &TeamConfig,
        timeout: Duration,
        (user, workstation): (String, String),
        instance: u32,
    ) -> Result<Arc<Team>, String> {
        let etcd = Etcd::new(&config.endpoints, timeout)?;
        let etcd = match (&config.user, &config.password) {
            (None, _) => etcd,
            (Some(user), Some(password)) => etcd.with_auth(user, &password.0),
            (Some(user), None) => {
                return Err(format!(
                    "[team] user {user}: no password read from password_file"
                ));
            }
        };
        let etcd = match &config.tls {
            Some(tls) => etcd.with_tls(tls.clone()),
            None => etcd,
        };
        let clean = |s: &str| s.replace(['/', '@', ':'], "_");
        let me = format!("{}@{}:{instance}", clean(&user), clean(&workstation));
        Ok(Arc::new(Team {
            session: Session::new(etcd.clone(), config.lease_ttl_s),
            claims: Claims::new(&config.farm, &me),
            etcd,
            config: config.clone(),
            user,
            workstation,
            wake: Notify::new(),
            inner: Mutex::new(Inner {
                view: View::new(&config.farm),
                ..Inner::default()
            }),
        }))
    }

    /// Slots of `host` (which its list gives `slots`) the broker may use
    /// now: its claims there, within what the plan lets it fill; while
    /// etcd cannot confirm them, as `[team] offline` says.
    pub fn usable(&self, host: &str, slots: u32) -> u32 {
        let cap = {
            let inner = self.lock();
            if !inner.view.hosts.contains_key(host) {
                return if inner.uncoordinated.contains(host) {
                    slots
                } else {
                    0
                };
            }
            inner.caps.get(host).copied().unwrap_or(u32::MAX)
        };
        let sure = self.session.lease(Instant::now()).is_some();
        match (sure, self.config.offline) {
            // Unsure: the claims held when etcd went away, never more
            // (none are made until it answers).
            (true, _) | (false, Offline::Share) => self.claims.held(host).min(cap).min(slots),
            (false, Offline::Local) => 0,
        }
    }

    /// Slots of `host` this broker holds.
    pub fn held(&self, host: &str) -> u32 {
        self.claims.held(host)
    }

    /// The hosts where this broker holds slots.
    pub fn claimed_hosts(&self) -> Vec<String> {
        self.claims.hosts()
    }

    /// Slots this broker holds on all hosts.
    pub fn held_total(&self) -> u32 {
        self.claims.held_total()
    }

    /// What its etcd client did so far.
    pub fn counts(&self) -> &super::etcd::Counts {
        self.etcd.counts()
    }

    /// Wakes the team task: a compile asked or ended.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This broker's id in the team.
    pub fn me(&self) -> &str {
        self.claims.me()
    }

    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}{rest}", super::prefix(&self.config.farm))
    }

    /// Revokes the lease: every claim goes at once (`tcpb stop`, idle exit).
    pub async fn end(&self) {
        match self.session.end().await {
            Ok(()) => tracing::info!("team: left {}, claims returned", self.config.farm),
            Err(e) => tracing::warn!("team: could not return the claims: {e}"),
        }
        self.claims.forget();
    }

    /// Keeps the lease alive; a new lease drops the old one's claims.
    pub(super) async fn keep_alive(&self) {
        let before = self.session.state();
        let after = self.session.tick().await;
        let id = self.session.id();
        let renewed = {
            let mut inner = self.lock();
            let renewed = inner.lease.is_some() && inner.lease != id;
            if inner.lease != id {
                inner.lease = id;
                inner.published = None;
            }
            renewed
        };
        if renewed {
            self.claims.forget();
        }
        if before != after {
            self.log_state(after);
        }
    }

    fn log_state(&self, state: TeamState) {
        let farm = &self.config.farm;
        match state {
            TeamState::Connected => {
                tracing::info!("team: connected to farm {farm} as {}", self.me())
            }
            TeamState::Rejoining => tracing::warn!("team: lease expired; rejoining farm {farm}"),
            TeamState::Unreachable => tracing::warn!(
                "team: etcd unreachable ({}); using {}",
                self.session.error().unwrap_or_default(),
                match self.config.offline {
                    Offline::Share => "at most the slots already claimed",
                    Offline::Local => "only this machine's slots",
                }
            ),
            TeamState::Connecting => {}
        }
    }

    /// Reads the whole farm anew — the keys it watches, then the slot
    /// keys as they were at the same revision — and watches it from there;
    /// also returns the hosts' health as the team found it, and the
    /// revision read. `again`: the broker has read it before (and may wait
    /// longer for it).
    pub(super) async fn load(&self, again: bool) -> Result<(Watcher, Vec<Told>, i64), EtcdError> {
        let (prefix, end) = (self.key(""), super::watched_end(&self.config.farm));
        let loads = &self.etcd.counts().loads;
        loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A busy etcd takes a while to read a large farm; a read given up
        // is work it did for nothing, and is asked for again. The first
        // read keeps the call timeout: compiles wait for it.
        let etcd = match again {
            true => self.etcd.patient(RELOAD_TIMEOUT),
            false => self.etcd.clone(),
        };
        let (revision, pairs) = etcd.range_span(&prefix, &end, 0).await?;
        let (_, slots) = etcd.range(&self.key(super::TAKEN), revision).await?;
        {
            let mut inner = self.lock();
            inner.view.clear();
            for (k, v) in pairs.iter().chain(&slots) {
                if let Err(e) = inner.view.apply(k, Some(v)) {
                    bad_value(&e);
                }
            }
        }
        let keys: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        let told = self.told(&keys);
        let watch = self.etcd.watch_span(&prefix, &end, revision + 1).await?;
        // The view has every write up to here (and etcd restarted empty
        // counts revisions from 1 again).
        let written = &self.etcd.counts().written;
        written.fetch_min(revision, std::sync::atomic::Ordering::Relaxed);
        Ok((watch, told, revision))
    }

    /// Applies watched changes: whether a host's definition changed, and
    /// what other brokers found of hosts' health.
    pub(super) fn apply(&self, changes: &[Change]) -> (bool, Vec<Told>) {
        let (hosts, speeds) = (self.key("hosts/"), self.key("speeds/"));
        {
            let mut inner = self.lock();
            inner.view.advance(Instant::now());
            for c in changes {
                if let Err(e) = inner.view.apply(&c.key, c.value.as_deref()) {
                    bad_value(&e);
                }
            }
        }
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        let redefined = changes
            .iter()
            .any(|c| c.key.starts_with(&hosts) || c.key.starts_with(&speeds));
        (redefined, self.told(&keys))
    }
}

/// Logs a value in etcd that was ignored (at most one line a minute).
fn bad_value(why: &str) {
    static QUIET: crate::sys::Quiet = crate::sys::Quiet::new(60);
    if let Some(more) = QUIET.due() {
        tracing::warn!("team: {why} (and {more} more since the last such line)");
    }
}

impl Team {
    /// Publishes what changed and moves the claims toward the plan; true
    /// when the claims held changed.
    pub(super) async fn reconcile(&self, broker: &impl Member) -> bool {
        let now = Instant::now();
        let Some(lease) = self.session.lease(now) else {
            return false;
        };
        let demand = broker.demand();
        let alone = self.note_uncoordinated(&demand);
        let done = async {
            self.publish_hosts(&demand).await?;
            self.publish_demand(&demand, lease, now).await?;
            self.claim_probes(&demand, lease).await?;
            self.publish_health(&demand).await?;
            self.publish_speeds(&demand, now).await?;
            self.move_claims(broker, &demand, lease, now).await
        };
        match done.await {
            Ok(changed) => changed || alone,
            Err(e) => {
                self.session.failed(&e);
                self.log_state(TeamState::Unreachable);
                true
            }
        }
    }

    /// Notes the hosts of this broker's farm that the team does not know
    /// and that it will not define (no list names them: their slots may be
    /// `config.toml`'s default): used uncoordinated, with a warning. True
    /// when they changed.
    fn note_uncoordinated(&self, demand: &TeamDemand) -> bool {
        let new: Vec<String> = {
            let mut inner = self.lock();
            let known = |n: &str| inner.view.hosts.contains_key(n);
            let now: BTreeSet<String> = (demand.needs.iter())
                .filter(|n| !n.listed && !known(&n.name))
                .map(|n| n.name.clone())
                .collect();
            if now == inner.uncoordinated {
                return false;
            }
            let new = now.difference(&inner.uncoordinated).cloned().collect();
            inner.uncoordinated = now;
            new
        };
        for name in new {
            tracing::warn!(
                "team: host {name} is not in the team's farm and no host list names it: \
                 used uncoordinated (`tcpb host add {name} --team` shares it)"
            );
        }
        true
    }

    /// Defines the hosts of this broker's lists that the team does not
    /// know, with the slots the list gives them and the speed its config
    /// gives them: the first definition wins, and stays (bound to no
    /// lease); `tcpb host set --team` changes it. A host only
    /// `config.toml` names is not defined from here (its slots there may be
    /// a default): a list naming it, or `tcpb host add --team`, does.
    async fn publish_hosts(&self, demand: &TeamDemand) -> Result<(), EtcdError> {
        let unknown: Vec<(String, u32, f64)> = {
            let inner = self.lock();
            let known = |n: &str| inner.view.hosts.contains_key(n);
            demand
                .needs
                .iter()
                .filter(|n| n.listed && !known(&n.name))
                .map(|n| (n.name.clone(), n.slots, n.configured))
                .collect()
        };
        let keys = (unknown.iter()).map(|(name, slots, speed)| {
            let host = TeamHost {
                slots: *slots,
                speed: (*speed != 1.0).then_some(*speed),
                admin: None,
            };
            let value = serde_json::to_string(&host).expect("serialises");
            (self.key(&format!("hosts/{name}")), value)
        });
        for (key, value) in self.create_keys(keys.collect(), 0).await? {
            tracing::info!("team: defined {key} as {value} for the team");
        }
        Ok(())
    }

    /// Creates each of `keys` (= its value, bound to `lease`; 0: none)
    /// that does not exist, in one call per 100 keys of one value, and
    /// applies them to the view: the ones created. A farm first seen by
    /// many brokers at once costs each a few calls, not one per host.
    pub(super) async fn create_keys(
        &self,
        mut keys: Vec<(String, String)>,
        lease: i64,
    ) -> Result<Vec<(String, String)>, EtcdError> {
        keys.sort_by(|a, b| a.1.cmp(&b.1));
        let mut made = Vec::new();
        for same in keys.chunk_by(|a, b| a.1 == b.1) {
            for chunk in same.chunks(KEYS_PER_CALL) {
                let batches: Vec<(Vec<String>, String)> = chunk
                    .iter()
                    .map(|(k, _)| (vec![k.clone()], k.clone()))
                    .collect();
                let answers = self
                    .etcd
                    .create_each(&batches, (&chunk[0].1, lease), None)
                    .await?;
                let created = chunk.iter().zip(answers);
                made.extend(
                    created
                        .filter(|(_, a)| *a == Batch::Created)
                        .map(|(k, _)| k.clone()),
                );
            }
        }
        let mut inner = self.lock();
        for (key, value) in &made {
            let _ = inner.view.apply(key, Some(value));
        }
        Ok(made)
    }

    /// This broker's demand now.
    pub(super) fn published(&self, demand: &TeamDemand) -> Published {
        let inner = self.lock();
        let slots: u32 = demand
            .needs
            .iter()
            .filter_map(|n| inner.view.hosts.get(&n.name))
            .map(|h| h.slots)
            .fold(0, u32::saturating_add);
        Published {
            user: self.user.clone(),
            workstation: self.workstation.clone(),
            weight: self.config.weight,
            want: (demand.running + demand.queued).min(slots),
            builds: demand.builds,
        }
    }

    /// Writes this broker's demand when it changed in a way that moves the
    /// team's shares (`plan::demand_due`): writes follow demand, not
    /// compiles.
    async fn publish_demand(
        &self,
        demand: &TeamDemand,
        lease: i64,
        now: Instant,
    ) -> Result<(), EtcdError> {
        let mine = self.published(demand);
        let due = {
            let inner = self.lock();
            let share = inner.shares.total(self.me());
            let last = inner
                .published
                .as_ref()
                .map(|(p, at)| (p, now.duration_since(*at)));
            let held = self.claims.held_total();
            super::plan::demand_due(last, &mine, (held, share))
        };
        if due {
            let value = serde_json::to_string(&mine).expect("serialises");
            let key = self.key(&format!("brokers/{}", self.me()));
            self.etcd.put(&key, &value, lease).await?;
            let mut inner = self.lock();
            let _ = inner.view.apply(&key, Some(&value));
            inner.published = Some((mine, now));
        }
        Ok(())
    }
}

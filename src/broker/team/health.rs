//! What brokers find out about hosts, shared by the team. Speeds: a
//! broker whose learned speed of a host is 30% or more away from the
//! team's writes it to `speeds/NAME` (at most every 30 s per host: each
//! change moves shares, and so claims); the
//! team's shares and every broker's prior for the host follow it. Health: a broker that finds a host's health
//! changed (its probes, or failures its relay saw) writes it to
//! `health/NAME`; every other broker takes it as its own finding within a
//! second. One broker probes each host for the whole team (it holds
//! `probers/NAME`, bound to its lease; when it goes, another takes over),
//! so a farm's probe traffic does not grow with the number of users.
//!
//! Each broker remembers the health it last agreed with the team per host
//! (`Inner::synced`) and writes only when its own finding moves away from
//! it, so a report never echoes back and forth.

use super::driver::Team;
use super::etcd::EtcdError;
use super::member::TeamDemand;
use super::plan::Need;
use super::view::{TeamHealth, TeamSpeed};
use crate::broker::sched::health::Health;
use std::time::{Duration, Instant};

/// A learned speed this far (as a ratio) from the team's is written.
const SPEED_MOVED: f64 = 1.3;
/// At most one speed written per host this often.
const SPEED_EVERY: Duration = Duration::from_secs(30);

pub(crate) use super::member::Told;

impl Team {
    /// Writes the health this broker found where it moved away from what
    /// it last agreed with the team.
    pub(super) async fn publish_health(&self, demand: &TeamDemand) -> Result<(), EtcdError> {
        let due: Vec<(String, TeamHealth)> = {
            let inner = self.lock();
            demand
                .needs
                .iter()
                .filter_map(|n| {
                    let health = n.health?;
                    let agreed = inner.synced.get(&n.name).copied().unwrap_or(Health::Up);
                    let report = TeamHealth {
                        health,
                        error: (health != Health::Up).then(|| n.error.clone()).flatten(),
                        by: self.me().to_string(),
                    };
                    (health != agreed).then(|| (n.name.clone(), report))
                })
                .collect()
        };
        for (name, report) in due {
            let key = self.key(&format!("health/{name}"));
            let value = serde_json::to_string(&report).expect("serialises");
            self.etcd.put(&key, &value, 0).await?;
            tracing::info!("team: told the team {name} is {:?}", report.health);
            let mut inner = self.lock();
            inner.synced.insert(name, report.health);
            let _ = inner.view.apply(&key, Some(&value));
        }
        Ok(())
    }

    /// Writes the speeds this broker learned that are far from the team's.
    pub(super) async fn publish_speeds(
        &self,
        demand: &TeamDemand,
        now: Instant,
    ) -> Result<(), EtcdError> {
        let due: Vec<(String, f64)> = {
            let inner = self.lock();
            let far = |n: &Need| {
                let team = inner.view.speeds.get(&n.name).map(|s| s.speed);
                team.is_none_or(|t| (n.speed / t).ln().abs() > SPEED_MOVED.ln())
            };
            let quiet = |n: &Need| {
                let last = inner.speed_written.get(&n.name);
                last.is_none_or(|t| now.duration_since(*t) >= SPEED_EVERY)
            };
            let set = |n: &Need| {
                inner
                    .view
                    .hosts
                    .get(&n.name)
                    .is_some_and(|h| h.speed.is_some())
            };
            demand
                .needs
                .iter()
                .filter(|n| n.learned && !set(n) && far(n) && quiet(n))
                .map(|n| (n.name.clone(), n.speed))
                .collect()
        };
        for (name, speed) in due {
            let key = self.key(&format!("speeds/{name}"));
            let value = serde_json::to_string(&TeamSpeed {
                speed,
                by: self.me().to_string(),
            })
            .expect("serialises");
            self.etcd.put(&key, &value, 0).await?;
            let mut inner = self.lock();
            inner.speed_written.insert(name, now);
            let _ = inner.view.apply(&key, Some(&value));
        }
        Ok(())
    }

    /// Takes on probing the hosts of this broker's lists that no broker
    /// probes for the team.
    pub(super) async fn claim_probes(
        &self,
        demand: &TeamDemand,
        lease: i64,
    ) -> Result<(), EtcdError> {
        let free: Vec<String> = {
            let inner = self.lock();
            demand
                .needs
                .iter()
                .filter(|n| !inner.view.probers.contains_key(&n.name))
                .map(|n| n.name.clone())
                .collect()
        };
        let me = self.me().to_string();
        let keys = free
            .iter()
            .map(|name| (self.key(&format!("probers/{name}")), me.clone()));
        self.create_keys(keys.collect(), lease).await?;
        Ok(())
    }

    /// What other brokers reported in the health keys among `keys` (read
    /// from the view, already updated); each becomes the agreed health.
    pub(super) fn told(&self, keys: &[&str]) -> Vec<Told> {
        let prefix = self.key("health/");
        let mut inner = self.lock();
        let mut out = Vec::new();
        for key in keys {
            let Some(name) = key.strip_prefix(&prefix) else {
                continue;
            };
            let Some(report) = inner.view.health.get(name).cloned() else {
                continue;
            };
            if report.by == self.me() {
                continue;
            }
            inner.synced.insert(name.to_string(), report.health);
            let why = report
                .error
                .map(|e| format!("{e} (found by {})", report.by));
            out.push((name.to_string(), report.health, why));
        }
        out
    }

    /// True when this broker probes `host`: it holds the host's prober
    /// key, or nobody does yet, or etcd cannot confirm anything now.
    pub(super) fn probes(&self, host: &str) -> bool {
        if self.session.lease(Instant::now()).is_none() {
            return true;
        }
        let inner = self.lock();
        inner.view.probers.get(host).is_none_or(|p| p == self.me())
    }
}

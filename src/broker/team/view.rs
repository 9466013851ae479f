//! What a broker knows of its team's farm, read from etcd's keys under
//! `/tcpb/FARM/` (one range, then one watch):
//!
//! - `hosts/NAME` = `{"slots": N}`: the team's hosts (no lease: they stay);
//! - `brokers/ID` = `{"user", "workstation", "weight", "want", "builds"}`:
//!   each live broker's demand, bound to its lease;
//! - `slots/NAME/N` = `ID`: slot N of host NAME is held by broker ID, bound
//!   to that broker's lease;
//! - `health/NAME` = `{"health", "error", "by"}`: the host's health as a
//!   broker last found it (no entry: up);
//! - `probers/NAME` = `ID`: the broker that probes the host for the team,
//!   bound to its lease;
//! - `speeds/NAME` = `{"speed", "by"}`: the host's speed as a broker
//!   learned it (per-file costs stay with each broker: they belong to
//!   one checkout).
//!
//! A value that does not parse, or is out of bounds, or a key of a kind this
//! version does not know, is ignored: `apply` says why, for the log. A
//! claim always counts against its host, whatever its index, so a hostile
//! or stale key can only make a broker claim less.

use crate::broker::sched::health::Health;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One broker's demand as it publishes it (fields another version adds
/// are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The user it serves.
    pub user: String,
    /// The workstation it runs on.
    pub workstation: String,
    /// The user's weight (`[team] weight`).
    pub weight: f64,
    /// Compiles it could run on the farm now (running and queued).
    pub want: u32,
    /// Builds it serves now.
    pub builds: u32,
}

/// A host as the team defines it. Fields another version adds are
/// ignored, so older brokers keep using the host.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TeamHost {
    /// Slots the whole team may use.
    pub slots: u32,
    /// Its relative speed, when set for the team (`tcpb host set --team`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Taken out of service for the whole team, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<TeamAdmin>,
}

/// A host out of service for the whole team (`tcpb host … --team`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeamAdmin {
    /// No new compiles; running ones finish.
    Drain,
    /// No compiles until enabled.
    Disabled,
    /// Not in the team's farm: no broker uses it, even if its list names
    /// it, until it is added again.
    Removed,
}

/// A host's health as a broker of the team found it (`health/NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamHealth {
    /// Up, suspect or down.
    pub health: Health,
    /// Why, when not up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The broker that found it.
    pub by: String,
}

/// The farm's keys, as last read.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// `/tcpb/FARM/`.
    prefix: String,
    /// The team's hosts by name.
    pub hosts: BTreeMap<String, TeamHost>,
    /// Live brokers by id.
    pub brokers: BTreeMap<String, Published>,
    /// Claims by host, then slot index: who holds it.
    pub slots: BTreeMap<String, BTreeMap<u32, String>>,
    /// Hosts' health as last reported (no entry: up).
    pub health: BTreeMap<String, TeamHealth>,
    /// Which broker probes each host for the team.
    pub probers: BTreeMap<String, String>,
    /// Hosts' speeds as brokers learned them.
    pub speeds: BTreeMap<String, TeamSpeed>,
    /// Each broker's service since its demand began: capacity held
    /// (slots × the team's speed) × seconds, as this broker saw it.
    pub service: BTreeMap<String, f64>,
    /// When `service` was last brought up to date.
    clock: Option<std::time::Instant>,
    /// `slots` counted by holder, then host (kept with `slots`).
    by_holder: BTreeMap<String, BTreeMap<String, u32>>,
    /// Capacity (slots × the team's speed) held by each holder (kept with
    /// `by_holder`; counted again when a speed changes), so that service
    /// grows in O(brokers), not O(claims), per wake.
    capacity: BTreeMap<String, f64>,
    /// Counts changes to what shares are computed from, but claims.
    generation: u64,
}

/// A host's speed as a broker of the team learned it (`speeds/NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamSpeed {
    /// Relative speed.
    pub speed: f64,
    /// The broker that learned it.
    pub by: String,
}

impl View {
    /// An empty view of farm `farm`.
    pub fn new(farm: &str) -> View {
        View {
            prefix: super::prefix(farm),
            ..View::default()
        }
    }

    /// The prefix every key of the farm starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Forgets everything (before a new range).
    pub fn clear(&mut self) {
        self.hosts.clear();
        self.brokers.clear();
        self.generation += 1;
        self.slots.clear();
        self.by_holder.clear();
        self.capacity.clear();
        self.service.clear();
        self.health.clear();
        self.probers.clear();
        self.speeds.clear();
    }

    /// Brings each broker's service up to `now`: what it held since the
    /// last call, while it had demand.
    pub fn advance(&mut self, now: std::time::Instant) {
        let dt = self
            .clock
            .map_or(0.0, |c| now.saturating_duration_since(c).as_secs_f64());
        self.clock = Some(now);
        if dt <= 0.0 {
            return;
        }
        let capacity: Vec<(String, f64)> = (self.brokers.iter())
            .filter(|(_, b)| b.want > 0)
            .map(|(id, _)| (id.clone(), self.capacity_of(id)))
            .collect();
        for (id, cap) in capacity {
            *self.service.entry(id).or_default() += cap * dt;
        }
    }

    /// Starts or ends broker `id`'s service count as its demand begins
    /// (it starts level with the least-served broker with demand, so a
    /// newcomer is not owed the past) or ends.
    fn track_service(&mut self, id: &str, want: Option<u32>) {
        let had = self.brokers.get(id).is_some_and(|b| b.want > 0);
        match want {
            Some(w) if w > 0 && !had => {
                let others = self.brokers.iter().filter(|(o, b)| *o != id && b.want > 0);
                let least = others
                    .filter_map(|(o, _)| self.service.get(o))
                    .copied()
                    .fold(f64::INFINITY, f64::min);
                let start = if least.is_finite() { least } else { 0.0 };
                self.service.insert(id.to_string(), start);
            }
            Some(w) if w > 0 => {}
            _ => {
                self.service.remove(id);
            }
        }
    }

    /// Applies one key's new value (`None`: deleted). An error says why the
    /// key was ignored.
    pub fn apply(&mut self, key: &str, value: Option<&str>) -> Result<(), String> {
        let Some(rest) = key.strip_prefix(&self.prefix) else {
            return Err(format!("key {key:?} is not under {}", self.prefix));
        };
        let bad = |why: String| format!("ignored {key:?}: {why}");
        if !rest.starts_with("slots/") {
            self.generation += 1;
        }
        if let Some(name) = rest.strip_prefix("hosts/") {
            let applied = self.apply_host(name, value).map_err(bad);
            self.recount_capacity();
            return applied;
        }
        if let Some(id) = rest.strip_prefix("brokers/") {
            return self.apply_broker(id, value).map_err(bad);
        }
        if let Some(slot) = rest.strip_prefix("slots/") {
            return self.apply_slot(slot, value).map_err(bad);
        }
        if let Some(name) = rest.strip_prefix("health/") {
            return put_json(&mut self.health, name, value).map_err(bad);
        }
        if let Some(name) = rest.strip_prefix("speeds/") {
            if let Some(v) = value {
                let t: TeamSpeed = serde_json::from_str(v).map_err(|e| bad(e.to_string()))?;
                crate::limits::speed(t.speed).map_err(bad)?;
            }
            let applied = put_json(&mut self.speeds, name, value).map_err(bad);
            self.recount_capacity();
            return applied;
        }
        if let Some(name) = rest.strip_prefix("probers/") {
            match value {
                Some(v) => self.probers.insert(name.to_string(), v.to_string()),
                None => self.probers.remove(name),
            };
            return Ok(());
        }
        Err(bad("not a kind of key this version knows".to_string()))
    }

    fn apply_host(&mut self, name: &str, value: Option<&str>) -> Result<(), String> {
        let Some(v) = value else {
            self.hosts.remove(name);
            return Ok(());
        };
        let host: TeamHost = serde_json::from_str(v).map_err(|e| e.to_string())?;
        crate::limits::slots(host.slots)?;
        if let Some(s) = host.speed {
            crate::limits::speed(s)?;
        }
        self.hosts.insert(name.to_string(), host);
        Ok(())
    }

    fn apply_broker(&mut self, id: &str, value: Option<&str>) -> Result<(), String> {
        let Some(v) = value else {
            self.track_service(id, None);
            self.brokers.remove(id);
            return Ok(());
        };
        let mut b: Published = serde_json::from_str(v).map_err(|e| e.to_string())?;
        if !(b.weight.is_finite() && (0.001..=1000.0).contains(&b.weight)) {
            return Err(format!("weight {} out of bounds", b.weight));
        }
        b.want = b.want.min(crate::limits::MAX_SLOTS * 16);
        self.track_service(id, Some(b.want));
        self.brokers.insert(id.to_string(), b);
        Ok(())
    }

    fn apply_slot(&mut self, slot: &str, value: Option<&str>) -> Result<(), String> {
        let (host, n) = slot.rsplit_once('/').ok_or("no slot index")?;
        let n: u32 = n.parse().map_err(|_| format!("slot index {n:?}"))?;
        let held = self.slots.entry(host.to_string()).or_default();
        let before = match value {
            Some(holder) => held.insert(n, holder.to_string()),
            None => held.remove(&n),
        };
        if held.is_empty() {
            self.slots.remove(host);
        }
        let speed = self.speed(host);
        if let Some(old) = before {
            *self.capacity.entry(old.clone()).or_default() -= speed;
            let mine = self.by_holder.get_mut(&old).expect("counted with slots");
            let count = mine.get_mut(host).expect("counted with slots");
            *count -= 1;
            if *count == 0 {
                mine.remove(host);
            }
            if mine.is_empty() {
                self.by_holder.remove(&old);
                self.capacity.remove(&old);
            }
        }
        if let Some(holder) = value {
            let mine = self.by_holder.entry(holder.to_string()).or_default();
            *mine.entry(host.to_string()).or_default() += 1;
            *self.capacity.entry(holder.to_string()).or_default() += speed;
        }
        Ok(())
    }

    /// Counts each holder's capacity again (a host's speed may have
    /// changed): O(claims), on a host or speed key only.
    fn recount_capacity(&mut self) {
        let speed = |host: &str| self.speed(host);
        self.capacity = (self.by_holder.iter())
            .map(|(id, held)| {
                let cap = held.iter().map(|(h, n)| speed(h) * f64::from(*n)).sum();
                (id.clone(), cap)
            })
            .collect();
    }

    /// `host`'s speed for the team: set for the team, else as a broker
    /// learned it, else 1.
    pub fn speed(&self, host: &str) -> f64 {
        self.known_speed(host).unwrap_or(1.0)
    }

    /// `host`'s speed set for the team, or learned by a broker of it.
    pub fn known_speed(&self, host: &str) -> Option<f64> {
        let set = self.hosts.get(host).and_then(|h| h.speed);
        set.or_else(|| self.speeds.get(host).map(|s| s.speed))
    }

    /// Slots of `host` held by anyone.
    pub fn claimed(&self, host: &str) -> u32 {
        self.slots.get(host).map_or(0, |s| s.len() as u32)
    }

    /// Indexes of `host`'s slots held by anyone.
    pub fn taken(&self, host: &str) -> std::collections::BTreeSet<u32> {
        self.slots
            .get(host)
            .map(|s| s.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Slots of `host` held by broker `id`.
    pub fn held_on(&self, host: &str, id: &str) -> u32 {
        let mine = self.by_holder.get(id);
        mine.and_then(|m| m.get(host)).copied().unwrap_or(0)
    }

    /// Slots held by broker `id`, on every host.
    pub fn held_by(&self, id: &str) -> u32 {
        self.by_holder.get(id).map_or(0, |m| m.values().sum())
    }

    /// Changes so far to the hosts, brokers, speeds and health (not to
    /// the claims): shares computed at one generation stay right until
    /// the next, but for claims moving and service growing.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The hosts where broker `id` holds slots, with how many.
    pub fn holdings(&self, id: &str) -> impl Iterator<Item = (&str, u32)> {
        let mine = self.by_holder.get(id).into_iter().flatten();
        mine.map(|(host, n)| (host.as_str(), *n))
    }

    /// Capacity (slots × the team's speed) held by broker `id`.
    pub fn capacity_of(&self, id: &str) -> f64 {
        self.capacity.get(id).copied().unwrap_or(0.0)
    }

    /// Slots of `host` held by each broker, most first.
    pub fn holders(&self, host: &str) -> Vec<(String, u32)> {
        let mut by: BTreeMap<&str, u32> = BTreeMap::new();
        for h in self.slots.get(host).into_iter().flat_map(|s| s.values()) {
            *by.entry(h.as_str()).or_default() += 1;
        }
        let mut out: Vec<(String, u32)> = by.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

/// Sets `map[key]` to `value` parsed as JSON, or removes it (`None`).
fn put_json<T: serde::de::DeserializeOwned>(
    map: &mut BTreeMap<String, T>,
    key: &str,
    value: Option<&str>,
) -> Result<(), String> {
    match value {
        Some(v) => {
            let parsed = serde_json::from_str(v).map_err(|e| e.to_string())?;
            map.insert(key.to_string(), parsed);
        }
        None => {
            map.remove(key);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;

//! What a broker knows of its team's farm, read from etcd's keys under
//! `/tcpb/FARM/` (one range, then one watch):
//!
//! - `hosts/NAME` = `{"slots": N}`: the team's hosts (no lease: they stay);
//! - `brokers/ID` = `{"user", "workstation", "weight", "want", "builds"}`:
//!   each live broker's demand, bound to its lease;
//! - `taken/NAME/N` = `ID`: slot N of host NAME is held by broker ID,
//!   bound to its lease: read when the farm is loaded, not watched;
//! - `moves/ID` = `{"add": {"NAME": "0-3,7"}, "drop": {...}}`: what broker
//!   ID's last claim or release changed (`held`), put in the same
//!   transaction as the `taken/` keys it creates or deletes and bound to
//!   the same lease: this is how the others follow the claims, one event
//!   per transaction; deleted, its broker holds nothing;
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
//! claim always counts against its host, even an index another broker
//! says it holds too, so a hostile or stale key can only make a broker
//! claim less.

use super::held::{self, Held};
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
    /// The slots each broker holds, by host.
    by_holder: BTreeMap<String, Held>,
    /// The same by host, then slot index: how many brokers say they hold
    /// it (one, but for a hostile or stale key).
    taken: BTreeMap<String, BTreeMap<u32, u32>>,
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
        self.taken.clear();
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
        if !rest.starts_with("moves/") && !rest.starts_with(super::TAKEN) {
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
        if let Some(id) = rest.strip_prefix("moves/") {
            return self.apply_moves(id, value).map_err(bad);
        }
        if let Some(slot) = rest.strip_prefix(super::TAKEN) {
            return self.apply_taken(slot, value).map_err(bad);
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

    /// Broker `id`'s last claim or release (`None`: its lease ended, it
    /// holds nothing).
    fn apply_moves(&mut self, id: &str, value: Option<&str>) -> Result<(), String> {
        let Some(value) = value else {
            for (host, slots) in self.by_holder.get(id).cloned().unwrap_or_default() {
                slots.iter().for_each(|n| self.unhold(id, &host, *n));
            }
            return Ok(());
        };
        let moves = held::decode(value)?;
        for (host, slots) in &moves.drop {
            slots.iter().for_each(|n| self.unhold(id, host, *n));
        }
        for (host, slots) in &moves.add {
            slots.iter().for_each(|n| self.hold(id, host, *n));
        }
        Ok(())
    }

    /// A slot key, as the farm is loaded.
    fn apply_taken(&mut self, slot: &str, holder: Option<&str>) -> Result<(), String> {
        let (host, n) = slot.rsplit_once('/').ok_or("no slot index")?;
        let n: u32 = n.parse().map_err(|_| format!("slot index {n:?}"))?;
        crate::limits::slots(n + 1)?;
        match holder {
            Some(id) => self.hold(id, host, n),
            None => {
                let ids: Vec<String> = self.by_holder.keys().cloned().collect();
                ids.iter().for_each(|id| self.unhold(id, host, n));
            }
        }
        Ok(())
    }

    /// Broker `id` holds slot `n` of `host` (no change if it did).
    fn hold(&mut self, id: &str, host: &str, n: u32) {
        let mine = self.by_holder.entry(id.to_string()).or_default();
        if !mine.entry(host.to_string()).or_default().insert(n) {
            return;
        }
        let on = self.taken.entry(host.to_string()).or_default();
        *on.entry(n).or_default() += 1;
        let speed = self.speed(host);
        *self.capacity.entry(id.to_string()).or_default() += speed;
    }

    /// Broker `id` no longer holds slot `n` of `host` (no change if it did
    /// not).
    fn unhold(&mut self, id: &str, host: &str, n: u32) {
        let Some(mine) = self.by_holder.get_mut(id) else {
            return;
        };
        let Some(slots) = mine.get_mut(host) else {
            return;
        };
        if !slots.remove(&n) {
            return;
        }
        if slots.is_empty() {
            mine.remove(host);
        }
        if mine.is_empty() {
            self.by_holder.remove(id);
        }
        let on = self.taken.get_mut(host).expect("counted with by_holder");
        let count = on.get_mut(&n).expect("counted with by_holder");
        *count -= 1;
        if *count == 0 {
            on.remove(&n);
        }
        if on.is_empty() {
            self.taken.remove(host);
        }
        let speed = self.speed(host);
        if self.by_holder.contains_key(id) {
            *self.capacity.entry(id.to_string()).or_default() -= speed;
        } else {
            self.capacity.remove(id);
        }
    }

    /// The capacity (slots × the team's speed) of `held`.
    fn capacity_in(&self, held: &Held) -> f64 {
        (held.iter())
            .map(|(host, slots)| self.speed(host) * slots.len() as f64)
            .sum()
    }

    /// Counts each holder's capacity again (a host's speed may have
    /// changed): O(claims), on a host or speed key only.
    fn recount_capacity(&mut self) {
        self.capacity = (self.by_holder.iter())
            .map(|(id, held)| (id.clone(), self.capacity_in(held)))
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
        self.taken.get(host).map_or(0, |s| s.values().sum())
    }

    /// Indexes of `host`'s slots held by anyone.
    pub fn taken(&self, host: &str) -> std::collections::BTreeSet<u32> {
        self.taken
            .get(host)
            .map(|s| s.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Slots of `host` held by broker `id`.
    pub fn held_on(&self, host: &str, id: &str) -> u32 {
        let mine = self.by_holder.get(id);
        mine.and_then(|m| m.get(host)).map_or(0, |s| s.len() as u32)
    }

    /// Slots held by broker `id`, on every host.
    pub fn held_by(&self, id: &str) -> u32 {
        let held = self.by_holder.get(id).into_iter().flat_map(|m| m.values());
        held.map(|s| s.len() as u32).sum()
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
        mine.map(|(host, s)| (host.as_str(), s.len() as u32))
    }

    /// Capacity (slots × the team's speed) held by broker `id`.
    pub fn capacity_of(&self, id: &str) -> f64 {
        self.capacity.get(id).copied().unwrap_or(0.0)
    }

    /// Slots of `host` held by each broker, most first.
    pub fn holders(&self, host: &str) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = (self.by_holder.iter())
            .filter_map(|(id, held)| Some((id.clone(), held.get(host)?.len() as u32)))
            .collect();
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

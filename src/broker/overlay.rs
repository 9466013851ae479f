//! Runtime farm changes made with `tcpb host …`: an overlay on the farm read
//! from the host list and the config, kept across broker restarts until
//! `tcpb host reset`.

use crate::farm::{Admin, Farm, HostSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Slots and speed set with `tcpb host set`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tweak {
    /// Slots, if set.
    pub slots: Option<u32>,
    /// Speed, if set.
    pub speed: Option<f64>,
}

/// The runtime changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Overlay {
    /// Hosts added with `tcpb host add`.
    pub added: Vec<HostSpec>,
    /// Hosts removed with `tcpb host remove`, by name.
    pub removed: BTreeSet<String>,
    /// Drained or disabled hosts.
    pub admin: BTreeMap<String, Admin>,
    /// Slots and speed set with `tcpb host set`.
    pub set: BTreeMap<String, Tweak>,
}

impl Overlay {
    /// Drops the changes whose slots or speed are outside `limits` (a
    /// state file edited by hand, or written by an older tcpb); returns
    /// what was dropped, for the log.
    pub(super) fn sanitize(&mut self) -> Vec<String> {
        use crate::limits::{slots, speed};
        let mut dropped = Vec::new();
        self.added
            .retain(|h| match slots(h.slots).and(speed(h.speed)) {
                Ok(_) => true,
                Err(e) => {
                    dropped.push(format!("added host {}: {e}", h.name));
                    false
                }
            });
        self.set.retain(|name, t| {
            let bad = t
                .slots
                .map(slots)
                .transpose()
                .and(t.speed.map(speed).transpose());
            match bad {
                Ok(_) => true,
                Err(e) => {
                    dropped.push(format!("host set {name}: {e}"));
                    false
                }
            }
        });
        dropped
    }

    /// Applies the changes to `farm`. An added host serves every list.
    pub(super) fn apply(&self, farm: &mut Farm) {
        farm.hosts.retain(|h| !self.removed.contains(&h.name));
        for a in &self.added {
            if !farm.hosts.iter().any(|h| h.name == a.name) {
                farm.hosts.push(a.clone());
            }
            for set in &mut farm.sets {
                if !set.hosts.contains(&a.name) {
                    set.hosts.push(a.name.clone());
                }
            }
        }
        for h in &mut farm.hosts {
            if let Some(t) = self.set.get(&h.name) {
                h.slots = t.slots.unwrap_or(h.slots);
                h.speed = t.speed.unwrap_or(h.speed);
            }
            h.admin = self.admin.get(&h.name).copied().unwrap_or_default();
        }
    }

    /// The number of changes.
    pub(super) fn len(&self) -> usize {
        self.added.len() + self.removed.len() + self.admin.len() + self.set.len()
    }

    /// Adds `spec`, replacing an earlier addition and undoing a removal.
    pub(super) fn add(&mut self, spec: HostSpec) {
        self.removed.remove(&spec.name);
        self.added.retain(|h| h.name != spec.name);
        self.added.push(spec);
    }

    /// Removes the host `name`.
    pub(super) fn remove(&mut self, name: &str) {
        self.added.retain(|h| h.name != name);
        self.admin.remove(name);
        self.set.remove(name);
        self.removed.insert(name.to_string());
    }

    /// Sets the admin state of `name`.
    pub(super) fn set_admin(&mut self, name: &str, admin: Admin) {
        match admin {
            Admin::Active => self.admin.remove(name),
            other => self.admin.insert(name.to_string(), other),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> HostSpec {
        HostSpec {
            name: name.into(),
            addr: Some((name.into(), 3632)),
            ssh: None,
            slots: 4,
            speed: 1.0,
            lzo: false,
            cpp: false,
            admin: Admin::Active,
        }
    }

    #[test]
    fn apply_in_order() {
        let mut farm = Farm {
            hosts: vec![spec("a"), spec("b")],
            local_slots: 2,
            origin: "t".into(),
            sets: Vec::new(),
        };
        let mut o = Overlay::default();
        o.remove("a");
        o.add(spec("c"));
        o.set_admin("b", Admin::Drain);
        o.set.insert(
            "c".into(),
            Tweak {
                slots: Some(9),
                speed: None,
            },
        );
        o.apply(&mut farm);
        let names: Vec<_> = farm.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(farm.hosts[0].admin, Admin::Drain);
        assert_eq!(farm.hosts[1].slots, 9);
        o.add(spec("a"));
        assert!(!o.removed.contains("a"), "adding back undoes the removal");
        assert_eq!(o.len(), 4);
    }
}

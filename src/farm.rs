//! The farm the scheduler works with: distcc's host list merged with the
//! `[[host]]` tables of `config.toml`.

use crate::config::Config;
use crate::hosts::{HostEntry, HostList, SshHost};
use serde::{Deserialize, Serialize};

/// One host as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// `addr:port`, or `localhost`.
    pub name: String,
    /// Where its distccd listens; `None` for `localhost` (run locally)
    /// and for an ssh host.
    pub addr: Option<(String, u16)>,
    /// How ssh reaches an ssh host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshHost>,
    /// Concurrent jobs it takes.
    pub slots: u32,
    /// Relative speed; higher is faster.
    pub speed: f64,
    /// distcc's `,lzo`.
    pub lzo: bool,
    /// distcc's `,cpp`.
    pub cpp: bool,
    /// What the user asked for with `tcpb host drain|disable|enable`.
    #[serde(default)]
    pub admin: Admin,
}

/// A host's administrative state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    /// Takes jobs.
    #[default]
    Active,
    /// No new jobs; running ones finish; stays listed.
    Drain,
    /// No jobs at all until enabled.
    Disabled,
}

impl HostSpec {
    /// True for `localhost`: jobs granted here run on this machine.
    pub(crate) fn is_local(&self) -> bool {
        self.addr.is_none() && self.ssh.is_none()
    }

    /// The options distcc must see for this host (`,lzo`, `,cpp`).
    pub(crate) fn distcc_options(&self) -> String {
        crate::hosts::options_suffix(self.lzo, self.cpp).to_string()
    }

    /// The spec of a host-list entry, at speed 1.0.
    pub(crate) fn from_entry(e: &HostEntry) -> HostSpec {
        let (addr, ssh, slots, lzo, cpp) = match e {
            HostEntry::Local { slots } => (None, None, *slots, false, false),
            HostEntry::Tcp {
                host,
                port,
                slots,
                lzo,
                cpp,
            } => (Some((host.clone(), *port)), None, *slots, *lzo, *cpp),
            HostEntry::Ssh {
                ssh,
                slots,
                lzo,
                cpp,
            } => (None, Some(ssh.clone()), *slots, *lzo, *cpp),
        };
        HostSpec {
            name: e.name(),
            addr,
            ssh,
            slots,
            speed: 1.0,
            lzo,
            cpp,
            admin: Admin::Active,
        }
    }
}

/// The hosts one host list lets its compiles use: the names it lists
/// (`localhost` among them when it names it) and the hosts that apply to
/// every list (added in `config.toml` or with `tcpb host add`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSet {
    /// Host names (`addr:port`, `localhost`).
    pub hosts: Vec<String>,
    /// The list's `--localslots`: how many jobs this machine's pool may run
    /// at once for it (the pool has the largest of the lists').
    #[serde(default)]
    pub local_slots: Option<u32>,
}

/// The whole farm: every host some list in use names, and each list's set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Farm {
    /// Hosts in the order the lists first name them.
    pub hosts: Vec<HostSpec>,
    /// Slots for jobs that must run locally when `localhost` is not listed.
    pub local_slots: u32,
    /// Where the host lists came from, for `tcpb status`.
    pub origin: String,
    /// Per list, by its index: the hosts its compiles may use. Empty: every
    /// host serves every compile (one list, or a farm built by hand).
    #[serde(default)]
    pub sets: Vec<HostSet>,
}

/// The number of CPUs of this machine.
pub(crate) fn local_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The farm of one host list merged with `config`.
pub(crate) fn build(list: &HostList, config: &Config, cpus: u32) -> Farm {
    build_all(&[Some(list)], config, cpus)
}

/// Merges the host lists in use (`None`: a list no longer in use, whose
/// set stays empty) with `config`. A host several lists name is one host,
/// with the most slots any of them gives it. With no host at all the farm
/// is `localhost` with `cpus` slots: tcpb then limits jobs on this machine.
pub(crate) fn build_all(lists: &[Option<&HostList>], config: &Config, cpus: u32) -> Farm {
    let mut hosts: Vec<HostSpec> = Vec::new();
    let mut sets = Vec::with_capacity(lists.len());
    for list in lists {
        let entries = list.map_or(&[][..], |l| l.entries.as_slice());
        for e in entries {
            let spec = HostSpec::from_entry(e);
            match hosts.iter_mut().find(|h| h.name == spec.name) {
                Some(h) => h.slots = h.slots.max(spec.slots),
                None => hosts.push(spec),
            }
        }
        sets.push(HostSet {
            hosts: entries.iter().map(HostEntry::name).collect(),
            local_slots: list.and_then(|l| l.localslots),
        });
    }
    let added = apply_config(&mut hosts, config);
    for set in &mut sets {
        set.hosts.extend(added.iter().cloned());
    }
    let mut origin = origins(lists);
    if !added.is_empty() {
        origin = if origin.is_empty() {
            "config".to_string()
        } else {
            format!("{origin} + config")
        };
    }
    if hosts.is_empty() {
        hosts.push(HostSpec {
            name: "localhost".to_string(),
            addr: None,
            ssh: None,
            slots: cpus,
            speed: 1.0,
            lzo: false,
            cpp: false,
            admin: Admin::Active,
        });
        for set in &mut sets {
            set.hosts.push("localhost".to_string());
        }
        origin = format!("no farm configured: localhost with {cpus} slots");
    }
    let local_slots = lists.iter().flatten().filter_map(|l| l.localslots).max();
    Farm {
        hosts,
        local_slots: local_slots.unwrap_or(cpus),
        origin,
        sets,
    }
}

/// Where the lists came from, each once, in order.
fn origins(lists: &[Option<&HostList>]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for l in lists.iter().flatten() {
        if !l.origin.is_empty() && !seen.contains(&l.origin.as_str()) {
            seen.push(&l.origin);
        }
    }
    seen.join(", ")
}

/// Applies the `[[host]]` tables of `config` to `hosts`; returns the names
/// of the hosts it added (they serve every list).
fn apply_config(hosts: &mut Vec<HostSpec>, config: &Config) -> Vec<String> {
    let mut added = Vec::new();
    for hc in &config.hosts {
        // Config::parse has checked that every name parses.
        let Ok(parsed) = crate::hosts::parse(&hc.name, "config") else {
            continue;
        };
        let Some(entry) = parsed.entries.first() else {
            continue;
        };
        let name = entry.name();
        let idx = match hosts.iter().position(|h| h.name == name) {
            Some(i) => i,
            None => {
                let mut spec = HostSpec::from_entry(entry);
                spec.lzo |= hc.lzo;
                spec.cpp |= hc.cpp;
                hosts.push(spec);
                added.push(name);
                hosts.len() - 1
            }
        };
        if let Some(s) = hc.speed {
            hosts[idx].speed = s;
        }
        if let Some(n) = hc.slots {
            hosts[idx].slots = n;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_and_adds() {
        let list = crate::hosts::parse("b1/2 localhost", "DISTCC_HOSTS").unwrap();
        let config = Config::parse(
            "[[host]]\nname = \"b1:3632\"\nspeed = 3.0\n[[host]]\nname = \"b2:4000\"\nslots = 6\nlzo = true\n",
            "c",
        )
        .unwrap();
        let farm = build(&list, &config, 8);
        let names: Vec<_> = farm.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["b1:3632", "localhost", "b2:4000"]);
        assert_eq!(farm.hosts[0].speed, 3.0);
        assert_eq!(farm.hosts[0].slots, 2);
        assert_eq!(farm.hosts[2].slots, 6);
        assert_eq!(farm.hosts[2].distcc_options(), ",lzo");
        assert_eq!(farm.origin, "DISTCC_HOSTS + config");
        assert_eq!(farm.local_slots, 8);
    }

    #[test]
    fn no_farm_is_local_cpus() {
        let farm = build(&HostList::default(), &Config::default(), 6);
        assert_eq!(farm.hosts.len(), 1);
        assert!(farm.hosts[0].is_local());
        assert_eq!(farm.hosts[0].slots, 6);
    }

    #[test]
    fn lists_share_hosts_and_keep_their_own_sets() {
        let a = crate::hosts::parse("b1/2 b2/4", "DISTCC_HOSTS").unwrap();
        let b = crate::hosts::parse("b2/6 localhost/3 --localslots=5", "/h").unwrap();
        let config = Config::parse("[[host]]\nname = \"b9\"\n", "c").unwrap();
        let farm = build_all(&[Some(&a), None, Some(&b)], &config, 8);
        let names: Vec<_> = farm.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["b1:3632", "b2:3632", "localhost", "b9:3632"]);
        assert_eq!(farm.hosts[1].slots, 6, "the most slots a list gives");
        let set = |i: usize| farm.sets[i].hosts.clone();
        assert_eq!(set(0), ["b1:3632", "b2:3632", "b9:3632"]);
        assert_eq!(set(1), ["b9:3632"], "a list no longer in use");
        assert_eq!(set(2), ["b2:3632", "localhost", "b9:3632"]);
        assert_eq!(farm.origin, "DISTCC_HOSTS, /h + config");
        assert_eq!(farm.local_slots, 5);
    }

    #[test]
    fn localslots_sets_local_pool() {
        let list = crate::hosts::parse("--localslots=3 b1", "DISTCC_HOSTS").unwrap();
        assert_eq!(build(&list, &Config::default(), 8).local_slots, 3);
    }
}

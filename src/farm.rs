//! The farm the scheduler works with: distcc's host list merged with the
//! `[[host]]` tables of `config.toml`.

use crate::config::Config;
use crate::hosts::{HostEntry, HostList};
use serde::{Deserialize, Serialize};

/// One host as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// `addr:port`, or `localhost`.
    pub name: String,
    /// Where its distccd listens; `None` for `localhost` (run locally).
    pub addr: Option<(String, u16)>,
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
        self.addr.is_none()
    }

    /// The options distcc must see for this host (`,lzo`, `,cpp`).
    pub(crate) fn distcc_options(&self) -> String {
        crate::hosts::options_suffix(self.lzo, self.cpp).to_string()
    }

    /// The spec of a host-list entry, at speed 1.0.
    pub(crate) fn from_entry(e: &HostEntry) -> HostSpec {
        match e {
            HostEntry::Local { slots } => HostSpec {
                name: e.name(),
                addr: None,
                slots: *slots,
                speed: 1.0,
                lzo: false,
                cpp: false,
                admin: Admin::Active,
            },
            HostEntry::Tcp {
                host,
                port,
                slots,
                lzo,
                cpp,
            } => HostSpec {
                name: e.name(),
                addr: Some((host.clone(), *port)),
                slots: *slots,
                speed: 1.0,
                lzo: *lzo,
                cpp: *cpp,
                admin: Admin::Active,
            },
        }
    }
}

/// The whole farm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Farm {
    /// Hosts in list order.
    pub hosts: Vec<HostSpec>,
    /// Slots for jobs that must run locally when `localhost` is not listed.
    pub local_slots: u32,
    /// Where the host list came from, for `tcpb status`.
    pub origin: String,
}

/// The number of CPUs of this machine.
pub(crate) fn local_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Merges `list` with `config`. With no host at all the farm is
/// `localhost` with `cpus` slots: tcpb then limits jobs on this machine.
pub(crate) fn build(list: &HostList, config: &Config, cpus: u32) -> Farm {
    let mut hosts: Vec<HostSpec> = list.entries.iter().map(HostSpec::from_entry).collect();
    let mut origin = list.origin.clone();
    let mut added = false;
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
                added = true;
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
    if added {
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
            slots: cpus,
            speed: 1.0,
            lzo: false,
            cpp: false,
            admin: Admin::Active,
        });
        origin = format!("no farm configured: localhost with {cpus} slots");
    }
    Farm {
        hosts,
        local_slots: list.localslots.unwrap_or(cpus),
        origin,
    }
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
    fn localslots_sets_local_pool() {
        let list = crate::hosts::parse("--localslots=3 b1", "DISTCC_HOSTS").unwrap();
        assert_eq!(build(&list, &Config::default(), 8).local_slots, 3);
    }
}

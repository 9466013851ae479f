//! Team mode in `tcpb status` (`team` in `--json`, absent without `[team]`).

use serde::{Deserialize, Serialize};

/// Where this broker stands with its team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamStatus {
    /// `connecting`, `connected`, `unreachable` or `rejoining`.
    pub state: String,
    /// The team's farm (`[team] farm`).
    pub farm: String,
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
    /// This broker's id in the team (`USER@WORKSTATION:PID`).
    pub me: String,
    /// What it uses while etcd cannot confirm its claims: `share` or
    /// `local`.
    pub offline: String,
    /// The last failure talking to etcd, if any since it last answered.
    pub last_error: Option<String>,
    /// Every live broker of the team.
    pub brokers: Vec<TeamBroker>,
    /// Every host of the team's farm and who holds its slots.
    pub hosts: Vec<TeamHostStatus>,
    /// Calls to etcd that were answered.
    pub etcd_calls: u64,
    /// Calls to etcd no member answered.
    pub etcd_failures: u64,
    /// Keys this broker wrote (claims made and returned, its demand, hosts).
    pub etcd_writes: u64,
    /// Slots this broker asked for that another broker had taken first.
    #[serde(default)]
    pub etcd_conflicts: u64,
    /// Hosts of this broker's farm that the team does not know and no list
    /// names (`config.toml` or `tcpb host add` without `--team`): used with
    /// all their slots, uncoordinated.
    #[serde(default)]
    pub uncoordinated: Vec<String>,
}

/// One broker of the team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamBroker {
    /// `USER@WORKSTATION:PID`.
    pub id: String,
    /// Its user.
    pub user: String,
    /// Its workstation.
    pub workstation: String,
    /// Builds it serves.
    pub builds: u32,
    /// Compiles it could run on the farm now (its published demand).
    pub demand: u32,
    /// Slots it holds.
    pub held: u32,
    /// Its fair share of the farm, summed over the hosts.
    pub share: u32,
    /// Capacity × seconds it held since its demand began, as this broker
    /// counted it (what fairness over time evens out).
    #[serde(default)]
    pub service: f64,
}

/// One host of the team's farm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamHostStatus {
    /// Its name.
    pub name: String,
    /// Slots the team may use.
    pub slots: u32,
    /// Who holds them: (broker id, slots), most first.
    pub holders: Vec<(String, u32)>,
    /// The broker that probes it for the team.
    #[serde(default)]
    pub prober: Option<String>,
    /// Its health as the team last heard it (`up` when nobody reported).
    #[serde(default)]
    pub health: String,
}

#[cfg(test)]
impl TeamStatus {
    /// Two brokers sharing host `b"1` (for tests of what shows it).
    pub(crate) fn example() -> TeamStatus {
        let broker = |id: &str, held| TeamBroker {
            id: id.into(),
            user: "u".into(),
            workstation: "w".into(),
            builds: 1,
            demand: 4,
            held,
            share: 2,
            service: 0.0,
        };
        TeamStatus {
            state: "connected".into(),
            farm: "lab".into(),
            endpoints: vec!["http://e:2379".into()],
            me: "ann@ws1:7".into(),
            offline: "share".into(),
            last_error: None,
            brokers: vec![broker("ann@ws1:7", 1), broker("bob@ws2:9", 3)],
            hosts: vec![TeamHostStatus {
                name: "b\"1".into(),
                slots: 4,
                holders: vec![("bob@ws2:9".into(), 3), ("ann@ws1:7".into(), 1)],
                prober: Some("bob@ws2:9".into()),
                health: "up".into(),
            }],
            etcd_calls: 12,
            etcd_failures: 1,
            etcd_writes: 5,
            etcd_conflicts: 2,
            uncoordinated: vec!["solo:3632".into()],
        }
    }
}

//! Team mode's answers to the broker (`Slots`): the slots claimed, what
//! to do while etcd cannot confirm them, and the team's part of status.

use super::driver::Team;
use super::plan::{self, Me};
use super::session::TeamState;
use super::view::TeamAdmin;
use crate::broker::slots::Slots;
use crate::config::Offline;
use crate::farm::{Admin, Farm, HostSpec};
use crate::protocol::{TeamBroker, TeamHostStatus, TeamStatus};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The broker's slot source in team mode.
pub(crate) struct TeamSlots(pub(crate) Arc<Team>);

impl Slots for TeamSlots {
    fn usable(&self, host: &HostSpec) -> u32 {
        if host.is_local() {
            return host.slots;
        }
        self.0.usable(&host.name, host.slots)
    }

    fn may_grow(&self) -> bool {
        // Connecting too: the first grant comes within the connect
        // timeout, or the state becomes unreachable.
        self.0.session.state() != TeamState::Unreachable
    }

    fn demand_changed(&self) {
        self.0.wake();
    }

    fn status(&self) -> Option<TeamStatus> {
        Some(self.0.status())
    }

    fn amend(&self, farm: &mut Farm) {
        let inner = self.0.lock();
        let team = &inner.view.hosts;
        let removed = |h: &HostSpec| {
            team.get(&h.name)
                .is_some_and(|t| t.admin == Some(TeamAdmin::Removed))
        };
        farm.hosts.retain(|h| !removed(h));
        for h in &mut farm.hosts {
            let Some(t) = team.get(&h.name) else {
                continue;
            };
            h.speed = inner.view.known_speed(&h.name).unwrap_or(h.speed);
            h.admin = match (t.admin, h.admin) {
                (_, Admin::Disabled) | (Some(TeamAdmin::Disabled), _) => Admin::Disabled,
                (Some(TeamAdmin::Drain), _) => Admin::Drain,
                (_, local) => local,
            };
        }
    }

    fn probes(&self, host: &HostSpec) -> bool {
        self.0.probes(&host.name)
    }

    fn team(&self) -> Option<Arc<Team>> {
        Some(self.0.clone())
    }
}

impl Team {
    /// The team's part of `tcpb status`.
    pub fn status(&self) -> TeamStatus {
        let inner = self.lock();
        let view = &inner.view;
        let shares = own_shares(view);
        let brokers = view
            .brokers
            .iter()
            .map(|(id, b)| TeamBroker {
                id: id.clone(),
                user: b.user.clone(),
                workstation: b.workstation.clone(),
                builds: b.builds,
                demand: b.want,
                held: view.held_by(id),
                share: shares.total(id),
                service: view.service.get(id).copied().unwrap_or(0.0),
            })
            .collect();
        let hosts = view
            .hosts
            .iter()
            .map(|(name, t)| TeamHostStatus {
                name: name.clone(),
                slots: t.slots,
                holders: view.holders(name),
                prober: view.probers.get(name).cloned(),
                health: view.health.get(name).map_or("up".to_string(), |h| {
                    format!("{:?}", h.health).to_lowercase()
                }),
            })
            .collect();
        let counts = self.etcd.counts();
        TeamStatus {
            state: state_name(self.session.state()).to_string(),
            farm: self.config.farm.clone(),
            endpoints: self.config.endpoints.clone(),
            me: self.me().to_string(),
            offline: match self.config.offline {
                Offline::Share => "share",
                Offline::Local => "local",
            }
            .to_string(),
            last_error: self.session.error(),
            brokers,
            hosts,
            etcd_calls: counts.calls.load(Ordering::Relaxed),
            etcd_failures: counts.failures.load(Ordering::Relaxed),
            etcd_writes: counts.writes.load(Ordering::Relaxed),
            etcd_conflicts: counts.conflicts.load(Ordering::Relaxed),
            uncoordinated: inner.uncoordinated.iter().cloned().collect(),
        }
    }
}

/// The shares of the brokers as they published their demand.
fn own_shares(view: &super::view::View) -> plan::Shares {
    let Some((id, first)) = view.brokers.iter().next() else {
        return plan::Shares::default();
    };
    let me = Me {
        id,
        demand: first,
        queued: 0,
    };
    plan::shares(view, &me)
}

/// A state as status and `--json` name it.
fn state_name(state: TeamState) -> &'static str {
    match state {
        TeamState::Connecting => "connecting",
        TeamState::Connected => "connected",
        TeamState::Unreachable => "unreachable",
        TeamState::Rejoining => "rejoining",
    }
}

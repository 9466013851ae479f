//! What team mode needs from the broker's state (`Member`): per farm
//! host, the compiles running there and queued for it.

use super::{Broker, State};
use crate::broker::team::member::{Member, TeamDemand, Told};
use crate::broker::team::plan::Need;
use crate::protocol::HostCmd;
use std::collections::{BTreeSet, HashMap};

impl Member for Broker {
    fn demand(&self) -> TeamDemand {
        demand(&self.lock())
    }

    fn busy_on(&self, name: &str) -> u32 {
        let state = self.lock();
        state
            .sched
            .find(name)
            .map_or(0, |id| state.sched.host(id).busy)
    }

    fn capacity_changed(&self) {
        self.refresh_capacity();
    }

    fn hosts_changed(&self) {
        let now = std::time::Instant::now();
        let mut state = self.lock();
        let placed = super::farm::refresh(&mut state, now);
        super::deliver(&mut state, &self.shared.relay, placed, None);
    }

    fn told(&self, found: Vec<Told>) {
        let now = std::time::Instant::now();
        let mut state = self.lock();
        let mut placed = Vec::new();
        for (name, health, error) in found {
            placed.extend(state.sched.told(&name, health, error, now));
        }
        super::deliver(&mut state, &self.shared.relay, placed, None);
    }
}

impl Broker {
    /// `tcpb host … --team`: the change goes to etcd (no lock held while
    /// it does); every broker of the team applies it from its watch.
    pub(crate) async fn team_admin(&self, cmd: &HostCmd) -> Result<String, String> {
        let team = self.lock().slots.team();
        match team {
            Some(t) => t.admin(cmd).await,
            None => Err("--team: this broker has no [team] in its config.toml".to_string()),
        }
    }
}

fn demand(state: &State) -> TeamDemand {
    let sched = &state.sched;
    let mut per_set: HashMap<u32, u32> = HashMap::new();
    for lease in sched.queue() {
        if let Some(l) = state.leases.get(&lease) {
            *per_set.entry(l.set).or_default() += 1;
        }
    }
    let listed: BTreeSet<String> = state
        .lists
        .all()
        .into_iter()
        .flatten()
        .flat_map(|l| l.entries.iter().map(crate::hosts::HostEntry::name))
        .collect();
    let mut out = TeamDemand {
        queued: sched.queued() as u32,
        builds: state
            .leases
            .values()
            .map(|l| l.build)
            .collect::<BTreeSet<_>>()
            .len() as u32,
        ..TeamDemand::default()
    };
    for (id, h) in sched.hosts() {
        if h.local_only || h.spec.is_local() || h.removed {
            continue;
        }
        let queued = per_set
            .iter()
            .filter(|(set, _)| sched.in_set(**set, id))
            .map(|(_, n)| *n)
            .sum();
        out.running += h.busy;
        out.needs.push(Need {
            name: h.spec.name.clone(),
            slots: h.spec.slots,
            speed: h.speed_for_choices(),
            configured: h.spec.speed,
            busy: h.busy,
            queued,
            usable: h.usable(),
            health: h.health.checked().then_some(h.health.health),
            error: h.last_error.as_ref().map(|e| e.0.clone()),
            learned: h.learned.samples() >= crate::broker::sched::learn::MIN_SAMPLES,
            listed: listed.contains(&h.spec.name),
        });
    }
    out
}

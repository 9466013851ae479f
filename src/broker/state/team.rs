//! What team mode needs from the broker's state: per farm host, the
//! compiles running there and queued for it (`team_demand`).

use super::{Broker, State};
use crate::broker::team::plan::Need;
use std::collections::{BTreeSet, HashMap};

/// This broker's demand on the farm.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TeamDemand {
    /// Every farm host of its lists (not `localhost`).
    pub needs: Vec<Need>,
    /// Compiles running on farm hosts.
    pub running: u32,
    /// Compiles waiting in the queue.
    pub queued: u32,
    /// Builds with compiles running or waiting.
    pub builds: u32,
}

impl Broker {
    /// What this broker needs of each farm host now.
    pub(crate) fn team_demand(&self) -> TeamDemand {
        demand(&self.lock())
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
            busy: h.busy,
            queued,
            usable: h.usable(),
        });
    }
    out
}

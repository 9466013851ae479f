//! Moving this broker's claims toward the plan (`plan::targets`).

use super::driver::{LINGER, Team};
use super::etcd::EtcdError;
use super::plan::{self, Me};
use crate::broker::state::TeamDemand;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// One host's claims to change: name, the team's slots, the target, the
/// slot indexes known to be held.
type Move = (String, u32, u32, BTreeSet<u32>);

impl Team {
    /// Claims or returns slots so that each host's count meets the plan;
    /// true when any count changed.
    pub(super) async fn move_claims(
        &self,
        demand: &TeamDemand,
        lease: i64,
        now: Instant,
    ) -> Result<bool, EtcdError> {
        let (moves, caps_changed) = self.plan(demand, now);
        let mut changed = caps_changed;
        for (host, slots, target, taken) in moves {
            let before = self.claims.held(&host);
            let after = self
                .claims
                .adjust(&self.etcd, lease, (&host, slots), target, &taken)
                .await?;
            changed |= after != before;
        }
        Ok(changed)
    }

    /// The plan's targets with what `adjust` needs to reach them, after
    /// setting what may be filled of the claims held (true when that
    /// changed).
    fn plan(&self, demand: &TeamDemand, now: Instant) -> (Vec<Move>, bool) {
        let mine = self.published(demand);
        let mut inner = self.lock();
        inner.view.advance(now);
        for n in &demand.needs {
            let idle = self.claims.held(&n.name) > n.busy && n.queued == 0;
            if idle {
                inner.idle_since.entry(n.name.clone()).or_insert(now);
            } else {
                inner.idle_since.remove(&n.name);
            }
        }
        let me = Me {
            id: self.me(),
            demand: &mine,
            queued: demand.queued,
        };
        let lingered = |h: &str| {
            inner
                .idle_since
                .get(h)
                .is_some_and(|at| now.duration_since(*at) >= LINGER)
        };
        let held = |h: &str| self.claims.held(h);
        let shares = plan::shares(&inner.view, &me);
        let targets = plan::targets(&inner.view, &me, &demand.needs, (&shares, held), lingered);
        let caps = plan::usable(&inner.view, &me, &demand.needs, &shares);
        let caps: HashMap<String, u32> = caps.into_iter().collect();
        let caps_changed = caps != inner.caps;
        inner.caps = caps;
        let moves = targets
            .into_iter()
            .filter_map(|(host, target)| {
                let slots = inner.view.hosts.get(&host)?.slots;
                let taken = inner.view.taken(&host);
                Some((host, slots, target, taken))
            })
            .collect();
        (moves, caps_changed)
    }
}

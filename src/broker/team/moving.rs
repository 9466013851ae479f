//! Moving this broker's claims toward the plan (`plan::targets`).

use super::driver::{LINGER, Team};
use super::etcd::EtcdError;
use super::plan::{self, Me};
use crate::broker::state::TeamDemand;
use std::collections::BTreeSet;
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
        let moves = self.plan(demand, now);
        let mut changed = false;
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

    /// The plan's targets with what `adjust` needs to reach them.
    fn plan(&self, demand: &TeamDemand, now: Instant) -> Vec<Move> {
        let mine = self.published(demand);
        let mut inner = self.lock();
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
        let turn = minute();
        let lingered = |h: &str| {
            inner
                .idle_since
                .get(h)
                .is_some_and(|at| now.duration_since(*at) >= LINGER)
        };
        let targets = plan::targets(
            &inner.view,
            &me,
            &demand.needs,
            |h| self.claims.held(h),
            lingered,
            turn,
        );
        targets
            .into_iter()
            .filter_map(|(host, target)| {
                let slots = inner.view.hosts.get(&host)?.slots;
                let taken = inner.view.taken(&host);
                Some((host, slots, target, taken))
            })
            .collect()
    }
}

/// Minutes since the epoch: which broker gets the slots that do not divide
/// evenly changes once a minute, the same for every broker.
pub(super) fn minute() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_secs() / 60)
}

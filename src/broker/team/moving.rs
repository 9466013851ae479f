//! Moving this broker's claims toward the plan (`plan::targets`).

use super::claims::Want;
use super::driver::{LINGER, Team};
use super::etcd::EtcdError;
use super::member::{Member, TeamDemand};
use super::plan::{self, Me, Shares};
use super::view::{Published, View};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// One host's claims to change: name, the team's slots, the target, the
/// slot indexes known to be held.
type Move = (String, u32, u32, BTreeSet<u32>);

impl Team {
    /// Claims or returns slots so that each host's count meets the plan;
    /// true when any count changed.
    pub(super) async fn move_claims(
        &self,
        broker: &impl Member,
        demand: &TeamDemand,
        lease: i64,
        now: Instant,
    ) -> Result<bool, EtcdError> {
        let (moves, caps_changed) = self.plan(demand, now);
        let mut changed = caps_changed;
        let mut wants = Vec::new();
        let mut gives = Vec::new();
        for (host, slots, want, taken) in moves {
            let before = self.claims.held(&host);
            if want < before {
                gives.push((host, before - want));
            } else {
                wants.push(Want {
                    host,
                    slots,
                    want,
                    taken,
                });
            }
        }
        if !gives.is_empty() || self.claims.unfreed() {
            self.give_back(broker, &gives, lease).await?;
            changed = true;
        }
        let before: Vec<u32> = wants.iter().map(|w| self.claims.held(&w.host)).collect();
        self.claims.claim(&self.etcd, lease, &mut wants).await?;
        let after = wants.iter().map(|w| self.claims.held(&w.host));
        changed |= after.zip(before).any(|(a, b)| a != b);
        Ok(changed)
    }

    /// Gives back `n` slots of each host in `gives`: they stop counting
    /// for the broker first, then any that a compile took meanwhile are
    /// kept, and only the rest are freed in etcd (one write for all), so no
    /// slot is ever used by this broker after another may have claimed it.
    async fn give_back(
        &self,
        broker: &impl Member,
        gives: &[(String, u32)],
        lease: i64,
    ) -> Result<(), EtcdError> {
        let given: Vec<(&String, Vec<u32>)> = (gives.iter())
            .map(|(host, n)| (host, self.claims.take_back(host, *n)))
            .collect();
        broker.capacity_changed();
        let mut free = Vec::new();
        for (host, slots) in given {
            let busy = broker.busy_on(host);
            let short = busy.saturating_sub(self.claims.held(host)) as usize;
            let (keep, rest) = slots.split_at(short.min(slots.len()));
            self.claims.keep(host, keep);
            free.push((host.clone(), rest.to_vec()));
        }
        self.claims.free_all(&self.etcd, lease, &free).await
    }

    /// The plan's targets with what `claim` needs to reach them, after
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
        let inner = &mut *inner;
        let lingered = |h: &str| {
            inner
                .idle_since
                .get(h)
                .is_some_and(|at| now.duration_since(*at) >= LINGER)
        };
        let held = |h: &str| self.claims.held(h);
        let shares = inner.shares.fresh(&inner.view, &mine, now);
        let shares = match shares {
            Some(s) => s,
            None => {
                let s = plan::shares(&inner.view, &me);
                inner.shares = Cached::new(&inner.view, &mine, now, s);
                &inner.shares.shares
            }
        };
        let targets = plan::targets(&inner.view, &me, &demand.needs, (shares, held), lingered);
        let caps = plan::usable(&inner.view, &me, &demand.needs, shares);
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

/// Shares are computed again (it costs O(hosts × brokers)) at once when
/// this broker's own demand changes; within this when a host or another
/// broker's demand changes (at 100 brokers one does on nearly every wake);
/// and every `SHARES_AGE` while only claims move and service grows.
const SHARES_EVERY: Duration = Duration::from_millis(100);
const SHARES_AGE: Duration = Duration::from_millis(250);

/// The shares last computed, and from what.
#[derive(Default)]
pub(super) struct Cached {
    at: Option<Instant>,
    generation: u64,
    mine: Option<Published>,
    shares: Shares,
}

impl Cached {
    /// Broker `id`'s share of the whole farm when last computed.
    pub(super) fn total(&self, id: &str) -> u32 {
        self.shares.total(id)
    }

    fn new(view: &View, mine: &Published, now: Instant, shares: Shares) -> Cached {
        Cached {
            at: Some(now),
            generation: view.generation(),
            mine: Some(mine.clone()),
            shares,
        }
    }

    /// The shares, unless they are due to be computed again.
    fn fresh(&self, view: &View, mine: &Published, now: Instant) -> Option<&Shares> {
        let age = self.at.map(|at| now.duration_since(at))?;
        let others_same = self.generation == view.generation();
        let due = age >= SHARES_AGE || (age >= SHARES_EVERY && !others_same);
        (self.mine.as_ref() == Some(mine) && !due).then_some(&self.shares)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_kept_while_only_others_change_and_briefly() {
        let mut view = View::new("lab");
        let mine = Published {
            user: "ann".into(),
            workstation: "ws".into(),
            weight: 1.0,
            want: 4,
            builds: 1,
        };
        let t0 = Instant::now();
        let cached = Cached::new(&view, &mine, t0, Shares::default());
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(cached.fresh(&view, &mine, at(50)).is_some());
        assert!(
            cached.fresh(&view, &mine, at(250)).is_none(),
            "service grew"
        );
        let other = r#"{"user":"bob","workstation":"w","weight":1,"want":9,"builds":1}"#;
        view.apply("/tcpb/lab/brokers/bob@w:1", Some(other))
            .unwrap();
        assert!(cached.fresh(&view, &mine, at(50)).is_some());
        assert!(cached.fresh(&view, &mine, at(100)).is_none());
        let more = Published {
            want: 5,
            ..mine.clone()
        };
        assert!(cached.fresh(&view, &more, at(1)).is_none(), "own demand");
    }
}

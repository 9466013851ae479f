//! How many of each host's slots a broker should hold, from what it needs
//! and what the team's keys say (pure; the driver makes the calls).
//!
//! - A claim is kept while it runs a compile, and for a short linger after
//!   (the next compile reuses it without a call to etcd).
//! - Each broker with demand has a fair share of each host's slots
//!   (`share::split`: even in capacity per weight, and over time). While
//!   another broker waits (wants more than it holds), a broker above its
//!   share on a host gives back its idle slots there at once and claims no
//!   more than its share; while nobody waits, free slots go to whoever
//!   needs them.
//! - New claims go to the fastest usable hosts that queued compiles may
//!   run on; compiles running without a claim (after a new lease) are
//!   covered first.

use super::share::{Demand, Slots, split};
use super::view::{Published, View};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One farm host as this broker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// Its name (the key in the team's farm).
    pub name: String,
    /// Slots this broker's list gives it.
    pub slots: u32,
    /// The speed choices use.
    pub speed: f64,
    /// The speed its list or config gives it (1 when none does).
    pub configured: f64,
    /// Compiles of this broker running there.
    pub busy: u32,
    /// Queued compiles that may run there.
    pub queued: u32,
    /// Healthy and active: may take new compiles.
    pub usable: bool,
    /// Its health as this broker knows it, once something told it.
    pub health: Option<crate::broker::sched::health::Health>,
    /// The last error seen there.
    pub error: Option<String>,
    /// `speed` is learned from enough of this broker's compiles.
    pub learned: bool,
    /// A host list in use names it (its slots are the list's, not a
    /// default for a host only `config.toml` names).
    pub listed: bool,
}

/// What the plan needs to know about this broker.
pub struct Me<'a> {
    /// Its id (what its claims hold).
    pub id: &'a str,
    /// Its demand now.
    pub demand: &'a Published,
    /// Compiles waiting in its queue.
    pub queued: u32,
}

/// Each broker's fair share of each of the team's hosts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shares {
    /// The hosts shared, in name order (as `View::hosts`).
    hosts: Vec<String>,
    /// Per broker id, its share of each host in `hosts`' order.
    brokers: BTreeMap<String, Vec<u32>>,
}

impl Shares {
    /// `id`'s share of `host`.
    pub fn of(&self, id: &str, host: &str) -> u32 {
        let Ok(h) = self.hosts.binary_search_by(|n| n.as_str().cmp(host)) else {
            return 0;
        };
        self.brokers.get(id).map_or(0, |s| s[h])
    }

    /// `id`'s share of the whole farm.
    pub fn total(&self, id: &str) -> u32 {
        self.brokers.get(id).map_or(0, |s| s.iter().sum())
    }
}

/// The fair shares of the team's hosts between the live brokers (with
/// `me`'s demand as it is now), as every broker computes them alike.
pub fn shares(view: &View, me: &Me) -> Shares {
    let mut brokers: BTreeMap<&str, &Published> = view
        .brokers
        .iter()
        .map(|(id, p)| (id.as_str(), p))
        .collect();
    brokers.insert(me.id, me.demand);
    let hosts: Vec<(&String, Slots)> = view
        .hosts
        .iter()
        .filter(|(_, h)| h.admin.is_none())
        .map(|(name, h)| {
            let speed = view.speed(name);
            (
                name,
                Slots {
                    speed,
                    slots: h.slots,
                },
            )
        })
        .collect();
    let index: HashMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    let slots: Vec<Slots> = hosts.iter().map(|h| h.1).collect();
    let demands: Vec<Demand> = brokers
        .iter()
        .map(|(id, p)| {
            let mut holds = vec![0; hosts.len()];
            for (host, n) in view.holdings(id) {
                if let Some(i) = index.get(host) {
                    holds[*i] = n;
                }
            }
            Demand {
                user: p.user.clone(),
                weight: p.weight,
                want: p.want,
                service: view.service.get(*id).copied().unwrap_or(0.0),
                holds,
            }
        })
        .collect();
    let got = split(&slots, &demands);
    Shares {
        hosts: hosts.into_iter().map(|(name, _)| name.clone()).collect(),
        brokers: brokers.keys().map(|id| id.to_string()).zip(got).collect(),
    }
}

/// A lower demand is published at most this often.
pub const PUBLISH_DOWN_EVERY: Duration = Duration::from_millis(500);
/// A higher one at most this often (from none, at once): a build's first
/// compiles arrive within this and make one write, not one each.
pub const PUBLISH_UP_EVERY: Duration = Duration::from_millis(100);
/// Builds counted in status are brought up to date at least this often.
pub const PUBLISH_BUILDS_EVERY: Duration = Duration::from_secs(5);

/// Whether a broker whose demand is now `mine`, which holds `held` slots
/// and whose share of the farm is `share`, and which last published `last`
/// (how long ago), should publish again. Starting or ending demand: at
/// once. A want that changed while the old or the new one is within the
/// share (so the split moves), or that now says otherwise whether the
/// broker waits for slots (others cap themselves while one waits): up
/// after 100 ms, down after 500 ms. A want that stays above the share
/// changes nobody's share: not written (but for the builds count, every
/// 5 s).
pub fn demand_due(
    last: Option<(&Published, Duration)>,
    mine: &Published,
    (held, share): (u32, u32),
) -> bool {
    let Some((p, ago)) = last else {
        return true;
    };
    if (p.want == 0) != (mine.want == 0) {
        return true;
    }
    let waits = |want: u32| want > held;
    let moves = p.want != mine.want
        && (p.want.min(mine.want) <= share || waits(p.want) != waits(mine.want));
    if mine.want > p.want && moves {
        return ago >= PUBLISH_UP_EVERY;
    }
    if moves || (&p.user, p.weight) != (&mine.user, mine.weight) {
        return ago >= PUBLISH_DOWN_EVERY;
    }
    p.builds != mine.builds && ago >= PUBLISH_BUILDS_EVERY
}

/// True when a broker other than `me` wants more slots than it holds.
pub fn others_wait(view: &View, me: &str) -> bool {
    view.brokers
        .iter()
        .any(|(id, b)| id != me && b.want > view.held_by(id))
}

/// The hosts whose claims this broker may not all fill now, and how many
/// it may: while another broker waits, no more than its share, so that a
/// slot above the share is not refilled when its compile ends but given
/// back. While nobody waits, every claim may be filled (no entry).
pub fn usable(view: &View, me: &Me, needs: &[Need], shares: &Shares) -> Vec<(String, u32)> {
    if !others_wait(view, me.id) {
        return Vec::new();
    }
    needs
        .iter()
        .filter(|n| view.hosts.contains_key(&n.name))
        .map(|n| (n.name.clone(), shares.of(me.id, &n.name)))
        .collect()
}

/// The slots this broker should hold of each host whose count should
/// change: `held(name)` is what it holds, `lingered(name)` is true when
/// its idle claims there have been idle long enough to give back.
pub fn targets(
    view: &View,
    me: &Me,
    needs: &[Need],
    (shares, held): (&Shares, impl Fn(&str) -> u32),
    lingered: impl Fn(&str) -> bool,
) -> Vec<(String, u32)> {
    let waiting = others_wait(view, me.id);
    let mut target: Vec<(usize, u32, u32)> = Vec::new(); // (need, cap, target)
    for (i, n) in needs.iter().enumerate() {
        let Some(team) = view.hosts.get(&n.name) else {
            continue;
        };
        let cap = team.slots.min(n.slots);
        let have = held(&n.name);
        let share = shares.of(me.id, &n.name);
        let idle = have.saturating_sub(n.busy);
        let mut t = have;
        if idle > 0 && waiting && have > share {
            t = n.busy.max(share);
        } else if idle > 0 && n.queued == 0 && lingered(&n.name) {
            t = n.busy;
        }
        // Compiles running without a claim (the lease was renewed while
        // they ran) are covered first.
        let t = t.min(have).max(n.busy.min(cap));
        target.push((i, cap, t));
    }
    let room = Room { waiting, shares };
    claim_for_queue(view, me, needs, &held, &mut target, room);
    target
        .into_iter()
        .filter(|(i, _, t)| *t != held(&needs[*i].name))
        .map(|(i, _, t)| (needs[i].name.clone(), t))
        .collect()
}

/// Whether another broker waits, and the shares that then bound claims.
struct Room<'a> {
    waiting: bool,
    shares: &'a Shares,
}

/// Raises targets for the compiles waiting in the queue, fastest hosts
/// first, within free slots (and within the share while others wait).
fn claim_for_queue(
    view: &View,
    me: &Me,
    needs: &[Need],
    held: &impl Fn(&str) -> u32,
    target: &mut [(usize, u32, u32)],
    room_for: Room,
) {
    let idle: u32 = target
        .iter()
        .map(|(i, _, t)| (&needs[*i], *t))
        .filter(|(n, _)| n.usable && n.queued > 0)
        .map(|(n, t)| t.saturating_sub(n.busy))
        .sum();
    let mut left = me.queued.saturating_sub(idle);
    target.sort_by(|a, b| needs[b.0].speed.total_cmp(&needs[a.0].speed));
    for (i, cap, t) in target.iter_mut() {
        let n = &needs[*i];
        if left == 0 {
            break;
        }
        if !n.usable || n.queued == 0 {
            continue;
        }
        let team = view.hosts[&n.name].slots;
        let free = team.saturating_sub(view.claimed(&n.name));
        let mut room = free.min(cap.saturating_sub(*t));
        if room_for.waiting {
            let share = room_for.shares.of(me.id, &n.name);
            room = room.min(share.saturating_sub(held(&n.name)));
        }
        let add = room.min(left).min(n.queued);
        *t += add;
        left -= add;
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

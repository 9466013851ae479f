//! How many of each host's slots a broker should hold, from what it needs
//! and what the team's keys say (pure; the driver makes the calls).
//!
//! - A claim is kept while it runs a compile, and for a short linger after
//!   (the next compile reuses it without a call to etcd).
//! - Each host's slots have a fair share per broker with demand
//!   (`share::shares`, each broker wanting up to the host's slots). While
//!   another broker waits (wants more than it holds), a broker above its
//!   share on a host gives back its idle slots there at once and claims no
//!   more than its share; while nobody waits, free slots go to whoever
//!   needs them.
//! - New claims go to the fastest usable hosts that queued compiles may
//!   run on; compiles running without a claim (after a new lease) are
//!   covered first.

use super::share::{Demand, shares};
use super::view::{Published, View};

/// One farm host as this broker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// Its name (the key in the team's farm).
    pub name: String,
    /// Slots this broker's list gives it.
    pub slots: u32,
    /// The speed choices use.
    pub speed: f64,
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

/// This broker's fair share of `host` (which has `slots` for the team).
pub fn my_share(view: &View, me: &Me, host: &str, slots: u32, turn: u64) -> u32 {
    let mut ids: Vec<&str> = view.brokers.keys().map(String::as_str).collect();
    if !view.brokers.contains_key(me.id) {
        ids.push(me.id);
        ids.sort_unstable();
    }
    let demands: Vec<Demand> = ids
        .iter()
        .map(|id| {
            let p = if *id == me.id {
                me.demand
            } else {
                &view.brokers[*id]
            };
            Demand {
                user: p.user.clone(),
                weight: p.weight,
                want: p.want.min(slots),
            }
        })
        .collect();
    let turn = turn.wrapping_add(host.bytes().map(u64::from).sum::<u64>());
    let at = ids.iter().position(|id| *id == me.id).unwrap_or(0);
    shares(slots, &demands, turn)[at]
}

/// True when a broker other than `me` wants more slots than it holds.
pub fn others_wait(view: &View, me: &str) -> bool {
    view.brokers
        .iter()
        .any(|(id, b)| id != me && b.want > view.held_by(id))
}

/// The slots this broker should hold of each host whose count should
/// change: `held(name)` is what it holds, `lingered(name)` is true when
/// its idle claims there have been idle long enough to give back.
pub fn targets(
    view: &View,
    me: &Me,
    needs: &[Need],
    held: impl Fn(&str) -> u32,
    lingered: impl Fn(&str) -> bool,
    turn: u64,
) -> Vec<(String, u32)> {
    let waiting = others_wait(view, me.id);
    let mut target: Vec<(usize, u32, u32)> = Vec::new(); // (need, cap, target)
    for (i, n) in needs.iter().enumerate() {
        let Some(team) = view.hosts.get(&n.name) else {
            continue;
        };
        let cap = team.slots.min(n.slots);
        let have = held(&n.name);
        let share = my_share(view, me, &n.name, team.slots, turn);
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
    claim_for_queue(view, me, needs, &held, &mut target, waiting, turn);
    target
        .into_iter()
        .filter(|(i, _, t)| *t != held(&needs[*i].name))
        .map(|(i, _, t)| (needs[i].name.clone(), t))
        .collect()
}

/// Raises targets for the compiles waiting in the queue, fastest hosts
/// first, within free slots (and within the share while others wait).
fn claim_for_queue(
    view: &View,
    me: &Me,
    needs: &[Need],
    held: &impl Fn(&str) -> u32,
    target: &mut [(usize, u32, u32)],
    waiting: bool,
    turn: u64,
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
        if waiting {
            let share = my_share(view, me, &n.name, team, turn);
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

//! Fair shares of a farm's slots (team mode), in compile capacity rather
//! than in slot counts (a slot of a host twice as fast is worth twice as
//! much), and fair over time: each broker's service so far (capacity held
//! × seconds, since its demand began) counts, so a broker that had the
//! slow slots gets the fast ones next.
//!
//! Each user's weight is split evenly between the user's brokers with
//! demand. The slots, fastest host first, go one at a time to the broker
//! with the lowest level: (service + `HORIZON` × capacity after taking the
//! slot) ÷ weight, among those that want more. A broker that holds a slot
//! of that host now is ahead by `MARGIN` for it, so slots change hands
//! (two etcd writes) only once the service gap passes the margin. Pure and
//! deterministic: every broker that reads the same demands computes the
//! same split.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Seconds of service that one unit of capacity held now is worth when
/// comparing brokers.
pub const HORIZON: f64 = 4.0;
/// Capacity-seconds of service by which the broker holding a slot keeps
/// it against one that is behind.
pub const MARGIN: f64 = 16.0;

/// One broker's demand and standing.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// Whose broker it is: shares are fair between users first.
    pub user: String,
    /// The user's share weight (`[team] weight`), positive.
    pub weight: f64,
    /// Slots the broker could use now (its running and queued compiles).
    pub want: u32,
    /// Capacity × seconds it held since its demand began (`View`).
    pub service: f64,
    /// Slots it holds now, per host (in the hosts' order; empty: none).
    pub holds: Vec<u32>,
}

/// One host of the farm: its speed (the team's) and slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slots {
    /// Relative speed, positive.
    pub speed: f64,
    /// Slots for the whole team.
    pub slots: u32,
}

/// For each of `demands`, how many slots of each of `hosts` (in their
/// order) it may hold: never more slots in all than it wants, never more
/// than a host's slots per host. Per host, the brokers that want more wait
/// in a heap by level, so a farm of S slots and B brokers costs
/// O(hosts × B + S × log B).
pub fn split(hosts: &[Slots], demands: &[Demand]) -> Vec<Vec<u32>> {
    let n = demands.len();
    let mut out = vec![vec![0u32; hosts.len()]; n];
    if n == 0 {
        return out;
    }
    let weights = per_broker_weights(demands);
    let floor = demands
        .iter()
        .map(|d| d.service)
        .fold(f64::INFINITY, f64::min);
    let mut order: Vec<usize> = (0..hosts.len()).collect();
    order.sort_by(|a, b| hosts[*b].speed.total_cmp(&hosts[*a].speed).then(a.cmp(b)));
    let mut capacity = vec![0.0f64; n];
    let mut count = vec![0u32; n];
    for h in order {
        let speed = hosts[h].speed.max(1e-9);
        let level = |i: usize, out: &[Vec<u32>], capacity: &[f64]| {
            let d = &demands[i];
            let holder = d.holds.get(h).is_some_and(|held| out[i][h] < *held);
            let ahead = if holder { MARGIN } else { 0.0 };
            let level = (d.service - floor - ahead + HORIZON * (capacity[i] + speed)) / weights[i];
            Reverse(Level(level, i))
        };
        let mut wanting: BinaryHeap<Reverse<Level>> = (0..n)
            .filter(|i| count[*i] < demands[*i].want)
            .map(|i| level(i, &out, &capacity))
            .collect();
        for _ in 0..hosts[h].slots {
            let Some(Reverse(Level(_, i))) = wanting.pop() else {
                return out;
            };
            out[i][h] += 1;
            count[i] += 1;
            capacity[i] += speed;
            if count[i] < demands[i].want {
                wanting.push(level(i, &out, &capacity));
            }
        }
    }
    out
}

/// A broker's level and index: the lowest level first, then the lowest
/// index (so every broker breaks ties alike).
#[derive(PartialEq)]
struct Level(f64, usize);

impl Eq for Level {}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Level) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Level {
    fn cmp(&self, other: &Level) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Each broker's weight: its user's weight, split evenly between the
/// user's brokers.
fn per_broker_weights(demands: &[Demand]) -> Vec<f64> {
    // Per user: the largest weight its brokers publish, and how many.
    let mut users: std::collections::HashMap<&str, (f64, f64)> = Default::default();
    for d in demands {
        let u = users.entry(d.user.as_str()).or_insert((0.0, 0.0));
        *u = (u.0.max(d.weight), u.1 + 1.0);
    }
    (demands.iter())
        .map(|d| users[d.user.as_str()])
        .map(|(weight, brokers)| weight.max(1e-9) / brokers)
        .collect()
}

#[cfg(test)]
#[path = "share_tests.rs"]
mod tests;

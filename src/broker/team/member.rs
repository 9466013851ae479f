//! What the team task needs of the broker it serves (`Member`): its
//! demand per farm host, and where to say that the slots it may use, the
//! team's hosts or their health changed. The broker's state implements it
//! (`state/team`); the scale benchmark drives the same task with simulated
//! brokers through it.

use super::plan::Need;
use crate::broker::sched::health::Health;

/// A broker's demand on the farm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamDemand {
    /// Every farm host of its lists (not `localhost`).
    pub needs: Vec<Need>,
    /// Compiles running on farm hosts.
    pub running: u32,
    /// Compiles waiting in the queue.
    pub queued: u32,
    /// Builds with compiles running or waiting.
    pub builds: u32,
}

/// A host's health as another broker found it: name, health, why.
pub type Told = (String, Health, Option<String>);

/// The broker a team task serves.
pub trait Member: Send + Sync + 'static {
    /// What it needs of each farm host now.
    fn demand(&self) -> TeamDemand;
    /// Compiles running (or placed) on farm host `host`.
    fn busy_on(&self, host: &str) -> u32;
    /// The slots it may use changed: claims came or went, or its caps.
    fn capacity_changed(&self);
    /// The team changed its hosts' definitions (slots, speed, admin).
    fn hosts_changed(&self);
    /// Other brokers of the team found these hosts in these states.
    fn told(&self, found: Vec<Told>);
}

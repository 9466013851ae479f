//! The scheduler's invariant, checked by the tests, the property test and
//! the decision benchmark.

use super::Scheduler;
use super::eft::order_key;

/// How the scheduler's books disagree with themselves.
#[derive(Debug, thiserror::Error)]
#[error("scheduler invariant broken: {0}")]
pub struct Broken(String);

impl Scheduler {
    /// Checks the invariant; used by tests.
    pub fn check(&self) -> Result<(), Broken> {
        for (id, h) in self.hosts() {
            let held = self.held.values().filter(|host| **host == id).count() as u32;
            if held != h.busy || h.running.len() != h.busy as usize {
                return Err(Broken(format!(
                    "{}: busy {} but {held} leases and {} jobs",
                    h.spec.name,
                    h.busy,
                    h.running.len()
                )));
            }
            let key = order_key(id, h);
            if !self.order.contains(&key) || self.free.contains(&key) != (h.free() > 0) {
                return Err(Broken(format!(
                    "{} misplaced in the walk order",
                    h.spec.name
                )));
            }
        }
        for (lease, id) in &self.held {
            match self.hosts.get(id.0).and_then(Option::as_ref) {
                None => return Err(Broken(format!("lease {lease} on a missing host"))),
                Some(h) if !h.running.iter().any(|r| r.lease == *lease) => {
                    return Err(Broken(format!(
                        "lease {lease} not among {}'s jobs",
                        h.spec.name
                    )));
                }
                Some(_) => {}
            }
        }
        let caps: usize = self.hosts().map(|(_, h)| h.cap as usize).sum();
        if caps != self.total_slots || self.hosts().any(|(_, h)| h.cap > h.spec.slots) {
            return Err(Broken(format!(
                "usable slots {caps}, counted {}",
                self.total_slots
            )));
        }
        if self.order.len() != self.hosts().count() || self.free.len() > self.order.len() {
            return Err(Broken("walk order lists a missing host".into()));
        }
        Ok(())
    }
}

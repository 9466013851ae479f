//! The host lists compiles have sent. Each compile goes only where its own
//! list says, so the broker keeps every list in use, each with a stable
//! index that is its host set in the farm (`Farm::sets`). A list with no
//! compile running and none for `list_idle_s` is dropped; its index stays
//! empty until a new list takes it.

use crate::hosts::HostList;
use crate::protocol::ListStatus;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// One list in use.
#[derive(Debug)]
struct InUse {
    /// The list as the compiles sent it.
    list: HostList,
    /// When a compile last asked with it.
    last_used: Instant,
    /// Live compiles by build (process group).
    live: HashMap<u32, u32>,
    /// Builds already told what of the list tcpb does not use.
    warned: HashSet<u32>,
}

/// Every list in use, by host-set index.
#[derive(Debug, Default)]
pub(super) struct Lists {
    /// `None`: a dropped list's index, free for the next new one.
    entries: Vec<Option<InUse>>,
}

impl Lists {
    /// The index of `list`, adding it if new; true when it is new.
    pub fn find_or_add(&mut self, list: &HostList, now: Instant) -> (u32, bool) {
        let found = self
            .entries
            .iter_mut()
            .enumerate()
            .find_map(|(i, e)| e.as_mut().filter(|e| e.list == *list).map(|e| (i, e)));
        if let Some((i, e)) = found {
            e.last_used = now;
            return (i as u32, false);
        }
        let entry = InUse {
            list: list.clone(),
            last_used: now,
            live: HashMap::new(),
            warned: HashSet::new(),
        };
        let i = match self.entries.iter().position(Option::is_none) {
            Some(i) => {
                self.entries[i] = Some(entry);
                i
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len() - 1
            }
        };
        (i as u32, true)
    }

    /// A compile of `build` with list `set` started. Returns what of the
    /// list tcpb does not use (ssh hosts, `+zeroconf`), once per build, for
    /// the user to read.
    pub fn started(&mut self, set: u32, build: u32) -> Option<String> {
        let e = self.entries.get_mut(set as usize)?.as_mut()?;
        *e.live.entry(build).or_default() += 1;
        if e.list.warnings.is_empty() || !e.warned.insert(build) {
            return None;
        }
        Some(e.list.warnings.join("; "))
    }

    /// A compile of `build` with list `set` ended.
    pub fn ended(&mut self, set: u32, build: u32, now: Instant) {
        if let Some(Some(e)) = self.entries.get_mut(set as usize) {
            e.last_used = now;
            if let Some(n) = e.live.get_mut(&build) {
                *n -= 1;
                if *n == 0 {
                    e.live.remove(&build);
                }
            }
        }
    }

    /// Drops the lists with no live compile and none for `idle`; true
    /// when one was dropped.
    pub fn expire(&mut self, now: Instant, idle: Duration) -> bool {
        let mut dropped = false;
        for slot in &mut self.entries {
            let stale = slot.as_ref().is_some_and(|e| {
                e.live.is_empty() && now.saturating_duration_since(e.last_used) >= idle
            });
            if stale {
                if let Some(e) = slot.take() {
                    tracing::info!(origin = %e.list.origin, "host list no longer in use");
                }
                dropped = true;
            }
        }
        while matches!(self.entries.last(), Some(None)) {
            self.entries.pop();
        }
        dropped
    }

    /// Every list by index (`None`: dropped).
    pub fn all(&self) -> Vec<Option<&HostList>> {
        self.entries
            .iter()
            .map(|e| e.as_ref().map(|e| &e.list))
            .collect()
    }

    /// The lists in use, for `tcpb status`.
    pub fn status(&self, now: Instant) -> Vec<ListStatus> {
        self.entries
            .iter()
            .flatten()
            .map(|e| ListStatus {
                origin: e.list.origin.clone(),
                hosts: e.list.entries.iter().map(|h| h.to_string()).collect(),
                builds: {
                    let mut b: Vec<u32> = e.live.keys().copied().collect();
                    b.sort_unstable();
                    b
                },
                compiles: e.live.values().sum(),
                idle_s: now.saturating_duration_since(e.last_used).as_secs(),
                skipped: e.list.warnings.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> HostList {
        crate::hosts::parse(text, "DISTCC_HOSTS").unwrap()
    }

    #[test]
    fn a_list_keeps_its_index_while_used_and_leaves_when_idle() {
        let t = Instant::now();
        let mut l = Lists::default();
        assert_eq!(l.find_or_add(&list("a"), t), (0, true));
        assert_eq!(l.find_or_add(&list("b"), t), (1, true));
        assert_eq!(l.find_or_add(&list("a"), t), (0, false));
        l.started(1, 7);
        let later = t + Duration::from_secs(100);
        assert!(l.expire(later, Duration::from_secs(10)), "a is idle");
        assert_eq!(l.all().len(), 2, "b keeps index 1");
        assert!(l.all()[0].is_none());
        assert_eq!(l.find_or_add(&list("c"), later), (0, true), "reused");
        l.ended(1, 7, later);
        assert!(!l.expire(later, Duration::from_secs(10)), "b just ended");
        let s = l.status(later);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].hosts, ["b:3632/4"]);
    }
}

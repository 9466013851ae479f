//! Per-file cost memory: how much work each source file took, in seconds on
//! a host of speed 1.0, keyed by its canonical path and kept in the state
//! directory. A later build uses it as the job's expected size. A file never
//! seen is expected to cost its source size at the running cost per byte
//! (bigger sources tend to take longer; before any measurement, at a prior
//! cost per byte), or the running average.

use super::learn::{GUESS, MEASURED};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Files remembered at most; the least recently used go first.
const MAX_FILES: usize = 50_000;
/// The cost of a file before anything is known at all.
const UNKNOWN: f64 = 1.0;
/// Seconds per source byte before any compile was measured (a 20 KB file
/// takes about a second): with no measurement yet, a build that queues
/// every file at once is still served biggest first.
const PRIOR_PER_BYTE: f64 = 1.0 / 20_000.0;

/// What is saved (`costs.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SavedCosts {
    files: HashMap<String, f64>,
    mean: Option<f64>,
    per_byte: Option<f64>,
}

/// The memory.
#[derive(Debug, Clone, Default)]
pub struct Costs {
    files: HashMap<String, (f64, u64)>,
    clock: u64,
    mean: Option<f64>,
    per_byte: Option<f64>,
    dirty: bool,
}

impl Costs {
    /// The memory as it was saved.
    /// Costs that are not sane numbers (`limits::cost`) are dropped.
    pub(crate) fn restore(saved: SavedCosts) -> Costs {
        use crate::limits::cost;
        let files = saved
            .files
            .into_iter()
            .filter_map(|(k, c)| Some((k, (cost(c)?, 0))))
            .collect();
        Costs {
            files,
            clock: 1,
            mean: saved.mean.and_then(cost),
            per_byte: saved.per_byte.and_then(cost),
            dirty: false,
        }
    }

    /// What to save, if anything changed since the last call.
    pub(crate) fn take_changes(&mut self) -> Option<SavedCosts> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(SavedCosts {
            files: self
                .files
                .iter()
                .map(|(k, (c, _))| (k.clone(), *c))
                .collect(),
            mean: self.mean,
            per_byte: self.per_byte,
        })
    }

    /// The expected cost of the file `key` of `size` source bytes (0 when
    /// unknown).
    pub fn expected(&mut self, key: Option<&str>, size: u64) -> f64 {
        self.clock += 1;
        if let Some(e) = key.and_then(|k| self.files.get_mut(k)) {
            e.1 = self.clock;
            return e.0;
        }
        match (self.per_byte, self.mean) {
            (Some(pb), _) if size > 0 => pb * size as f64,
            (None, None) if size > 0 => PRIOR_PER_BYTE * size as f64,
            (_, mean) => mean.unwrap_or(UNKNOWN),
        }
    }

    /// What a finished job of `key` (`size` source bytes) tells of its
    /// host's speed: the work it is expected to be, and how far to trust
    /// that (a cost measured on an earlier build, or a guess from the size).
    pub fn evidence(&self, key: Option<&str>, size: u64) -> Option<(f64, f64)> {
        if let Some((cost, _)) = key.and_then(|k| self.files.get(k)) {
            return Some((*cost, MEASURED));
        }
        let pb = self.per_byte.filter(|_| size > 0)?;
        Some((pb * size as f64, GUESS))
    }

    /// The running average cost.
    pub fn mean(&self) -> f64 {
        self.mean.unwrap_or(UNKNOWN)
    }

    /// True when `key` has a remembered cost.
    pub fn knows(&self, key: &str) -> bool {
        self.files.contains_key(key)
    }

    /// Records that `key`, of `size` source bytes, cost `cost`; recent
    /// builds weigh more.
    pub fn record(&mut self, key: Option<&str>, size: u64, cost: f64) {
        if !(cost.is_finite() && cost > 0.0) {
            return;
        }
        self.clock += 1;
        self.mean = Some(self.mean.map_or(cost, |m| 0.9 * m + 0.1 * cost));
        if size > 0 {
            // Averaged in log space: a guess from it is then as often too
            // high as too low, which is what the speed estimate assumes.
            let pb = (cost / size as f64).ln();
            self.per_byte = Some(
                self.per_byte
                    .map_or(pb.exp(), |m| (0.9 * m.ln() + 0.1 * pb).exp()),
            );
        }
        self.dirty = true;
        let Some(key) = key else {
            return;
        };
        let e = self.files.entry(key.to_string()).or_insert((cost, 0));
        e.0 = 0.5 * e.0 + 0.5 * cost;
        e.1 = self.clock;
        if self.files.len() > MAX_FILES {
            let mut ages: Vec<u64> = self.files.values().map(|(_, t)| *t).collect();
            ages.sort_unstable();
            let cut = ages[MAX_FILES / 10];
            self.files.retain(|_, (_, t)| *t > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_saves_and_reloads() {
        let mut c = Costs::default();
        assert_eq!(c.expected(Some("/src/a.c"), 0), UNKNOWN);
        c.record(Some("/src/a.c"), 4000, 4.0);
        c.record(Some("/src/b.c"), 0, 0.5);
        assert_eq!(c.expected(Some("/src/a.c"), 4000), 4.0);
        assert!(
            c.expected(Some("/src/new.c"), 0) > 0.5,
            "unknown files cost the average"
        );
        assert!(
            (c.expected(Some("/src/big.c"), 8000) - 8.0).abs() < 1e-9,
            "or their size at the cost per byte"
        );
        c.record(Some("/src/a.c"), 4000, 2.0);
        assert_eq!(
            c.expected(Some("/src/a.c"), 4000),
            3.0,
            "recent builds weigh half"
        );
        let saved = c.take_changes().unwrap();
        assert!(c.take_changes().is_none(), "nothing changed since");
        let mut again = Costs::restore(saved);
        assert_eq!(again.expected(Some("/src/a.c"), 0), 3.0);
        assert!(again.knows("/src/b.c"));
    }

    #[test]
    fn evidence_is_a_measured_cost_or_a_guess_from_the_size() {
        let mut c = Costs::default();
        assert_eq!(c.evidence(Some("/a.c"), 100), None, "nothing known yet");
        c.record(Some("/a.c"), 100, 2.0);
        assert_eq!(c.evidence(Some("/a.c"), 100), Some((2.0, MEASURED)));
        let (work, weight) = c.evidence(Some("/b.c"), 300).unwrap();
        assert!((work - 6.0).abs() < 1e-9 && weight == GUESS);
        assert_eq!(c.evidence(None, 0), None);
    }

    #[test]
    fn before_any_measurement_bigger_files_are_expected_heavier() {
        let mut c = Costs::default();
        let (small, big) = (c.expected(None, 4_000), c.expected(None, 40_000));
        assert!(big > small && small > 0.0, "{small} {big}");
        assert_eq!(c.expected(None, 0), UNKNOWN, "no size: the default");
        assert_eq!(c.evidence(None, 40_000), None, "a prior is not evidence");
        // Once a compile was measured, its cost per byte takes over.
        c.record(Some("/a.c"), 1_000, 3.0);
        assert!((c.expected(None, 2_000) - 6.0).abs() < 1e-9);
    }

    #[test]
    fn bounded() {
        let mut c = Costs::default();
        for i in 0..(MAX_FILES + 10) {
            c.record(Some(&format!("/f{i}.c")), 10, 1.0);
        }
        assert!(c.files.len() <= MAX_FILES);
        assert!(
            c.knows(&format!("/f{}.c", MAX_FILES + 9)),
            "recent files stay"
        );
    }
}

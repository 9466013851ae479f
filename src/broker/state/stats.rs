//! The broker's counters for status and metrics: compiles granted, how
//! long they waited, what fell back, per-host server time.

use std::collections::{HashMap, VecDeque};

/// Queue waits remembered for the status's mean and p95.
const WAITS_KEPT: usize = 1000;
/// Upper bounds (seconds) of the wait histogram's buckets.
const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Counters since the broker started.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Compiles granted a slot.
    pub granted: u64,
    /// Of those, granted on this machine.
    pub granted_local: u64,
    /// Compiles that waited `queue_timeout_s` and ran locally.
    pub queue_timeouts: u64,
    /// Jobs a failing host lost (distcc compiled them locally).
    pub fell_back: u64,
    /// Compiles turned away by `max_queue` or `max_connections`.
    pub over_limit: u64,
    /// Relayed streams that did not parse as distcc's.
    pub unparsed: u64,
    /// The last `WAITS_KEPT` queue waits, in seconds.
    waits: VecDeque<f64>,
    /// Waits per `WAIT_BUCKETS` bucket (not cumulative), and their sum.
    wait_counts: [u64; WAIT_BUCKETS.len()],
    /// The sum of every wait.
    pub wait_sum: f64,
    /// How many waits.
    pub wait_count: u64,
    /// Per host name: server seconds and jobs the relay timed.
    job_secs: HashMap<String, (f64, u64)>,
}

impl Stats {
    /// A compile was granted after waiting `wait` seconds.
    pub(super) fn granted(&mut self, wait: f64, local: bool) {
        self.granted += 1;
        self.granted_local += u64::from(local);
        if self.waits.len() == WAITS_KEPT {
            self.waits.pop_front();
        }
        self.waits.push_back(wait);
        self.wait_sum += wait;
        self.wait_count += 1;
        if let Some(b) = WAIT_BUCKETS.iter().position(|le| wait <= *le) {
            self.wait_counts[b] += 1;
        }
    }

    /// The relay timed a job of `secs` server seconds on `host`.
    pub(super) fn timed(&mut self, host: &str, secs: f64) {
        let t = self.job_secs.entry(host.to_string()).or_default();
        t.0 += secs;
        t.1 += 1;
    }

    /// Mean server seconds of the jobs timed on `host`.
    pub(super) fn mean_job_secs(&self, host: &str) -> Option<f64> {
        self.job_secs
            .get(host)
            .filter(|(_, n)| *n > 0)
            .map(|(secs, n)| secs / *n as f64)
    }

    /// Mean and 95th percentile of the recent waits.
    pub(super) fn wait_stats(&self) -> (Option<f64>, Option<f64>) {
        if self.waits.is_empty() {
            return (None, None);
        }
        let mut v: Vec<f64> = self.waits.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let p95 = v[((v.len() - 1) as f64 * 0.95).round() as usize];
        (Some(mean), Some(p95))
    }

    /// Every wait as a cumulative histogram: (upper bound, waits at most).
    pub(super) fn histogram(&self) -> Vec<(f64, u64)> {
        let cumulative = self.wait_counts.iter().scan(0, |acc, n| {
            *acc += n;
            Some(*acc)
        });
        WAIT_BUCKETS.iter().copied().zip(cumulative).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_make_a_cumulative_histogram_and_a_p95() {
        let mut s = Stats::default();
        for w in [0.0005, 0.02, 0.02, 2.0] {
            s.granted(w, false);
        }
        let h = s.histogram();
        assert_eq!(h[0], (0.001, 1));
        assert_eq!(h[3], (0.05, 3));
        assert_eq!(h.last(), Some(&(300.0, 4)));
        assert_eq!(s.wait_stats().1, Some(2.0));
        assert_eq!((s.granted, s.granted_local), (4, 0));
    }
}

//! Learned host speed: preprocessed bytes compiled per second of server
//! time, the median of a host's recent jobs, so one odd job cannot swing it
//! and a host that slows down or speeds up is followed within a few jobs.

use std::collections::VecDeque;

/// Jobs a host needs before its learned speed is used.
pub const MIN_SAMPLES: usize = 3;
/// Jobs remembered per host.
const WINDOW: usize = 15;

/// One host's recent rates.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    rates: VecDeque<f64>,
    /// The median, kept current by `add` so reading it is free.
    median: Option<f64>,
}

impl Learned {
    /// Records a job: `bytes` of source compiled in `secs` of server time.
    pub fn add(&mut self, bytes: u64, secs: f64) {
        if bytes == 0 || !(secs.is_finite() && secs > 0.0005) {
            return;
        }
        if self.rates.len() == WINDOW {
            self.rates.pop_front();
        }
        self.rates.push_back(bytes as f64 / secs);
        self.median = if self.rates.len() < MIN_SAMPLES {
            None
        } else {
            median(self.rates.iter().copied().collect())
        };
    }

    /// Jobs recorded.
    pub fn samples(&self) -> usize {
        self.rates.len()
    }

    /// The median rate (bytes per second), once there are enough jobs.
    pub fn rate(&self) -> Option<f64> {
        self.median
    }
}

/// The median of `values` (none when empty).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn needs_samples_and_ignores_one_outlier() {
        let mut l = Learned::default();
        l.add(1000, 1.0);
        l.add(1000, 1.0);
        assert_eq!(l.rate(), None);
        l.add(1000, 0.001); // one absurdly fast job
        assert_eq!(l.rate(), Some(1000.0));
        l.add(0, 1.0);
        l.add(10, 0.0);
        assert_eq!(l.samples(), 3, "empty and instant jobs are not samples");
    }

    #[test]
    fn follows_a_host_that_slows_down_and_recovers() {
        let mut l = Learned::default();
        for _ in 0..WINDOW {
            l.add(1000, 1.0);
        }
        for _ in 0..WINDOW / 2 + 1 {
            l.add(1000, 4.0);
        }
        assert_eq!(l.rate(), Some(250.0), "slowed down within half a window");
        for _ in 0..WINDOW / 2 + 1 {
            l.add(1000, 1.0);
        }
        assert_eq!(l.rate(), Some(1000.0), "and recovered");
    }

    proptest! {
        #[test]
        fn rate_is_within_the_samples(jobs in proptest::collection::vec((1u64..1_000_000, 0.001f64..100.0), 3..40)) {
            let mut l = Learned::default();
            for (b, s) in &jobs {
                l.add(*b, *s);
            }
            let recent: Vec<f64> = jobs.iter().rev().take(WINDOW).map(|(b, s)| *b as f64 / s).collect();
            let r = l.rate().unwrap();
            let lo = recent.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = recent.iter().copied().fold(0.0, f64::max);
            prop_assert!(r >= lo * 0.999999 && r <= hi * 1.000001);
        }
    }
}

//! Learned host speed, in the units of `speed` in config.toml: each job
//! the relay watched gives one sample, its expected work (seconds on a host
//! of speed 1.0, from the per-file cost memory) divided by the server time
//! it took. Samples are averaged in log space together with the configured
//! speed as a prior, each clipped near the window's median, so one odd job
//! cannot swing the estimate, a host that slows down or speeds up is
//! followed within a window, and a work guess from the file's size counts
//! for less than a cost measured on an earlier build.

use std::collections::VecDeque;

/// Jobs a host needs before its learned speed is used.
pub(crate) const MIN_SAMPLES: usize = 3;
/// Jobs remembered per host.
const WINDOW: usize = 15;
/// The configured speed counts as this many measured jobs: little, so an
/// unconfigured farm (every host at 1.0) is learned within a build.
const PRIOR_WEIGHT: f64 = 1.0;
/// How far (natural log) a sample may sit from the window's median before
/// it is clipped: a factor of about 4.5.
const CLIP: f64 = 1.5;
/// Weight of a sample whose work is a measured cost from an earlier build;
/// a work guessed from the file's size weighs `GUESS`.
pub(crate) const MEASURED: f64 = 1.0;
/// See `MEASURED`.
pub(crate) const GUESS: f64 = 0.5;

/// One host's recent samples.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    /// (ln of work per second, weight), oldest first.
    samples: VecDeque<(f64, f64)>,
    /// The weighted sum of the clipped samples and their total weight,
    /// kept current by `add`: the scheduler asks for every host's speed
    /// after each job, which must not re-sort every window.
    clipped: (f64, f64),
}

impl Learned {
    /// Records a job: `work` (seconds at speed 1.0) done in `secs` of server
    /// time, trusted with `weight`.
    pub(crate) fn add(&mut self, work: f64, secs: f64, weight: f64) {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if !(ok(work) && ok(weight) && secs.is_finite() && secs > 0.0005) {
            return;
        }
        let bound = crate::limits::MAX_SPEED.ln();
        self.push((work / secs).ln().clamp(-bound, bound), weight);
    }

    /// The samples as (ln of work per second, weight), oldest first: what
    /// a broker keeps across restarts.
    pub(crate) fn saved(&self) -> Vec<(f64, f64)> {
        self.samples.iter().copied().collect()
    }

    /// A host's estimate from samples `saved` earlier (the newest window;
    /// a sample outside the speeds `limits` allows, or with a weight no
    /// sample has, is dropped).
    pub(crate) fn restore(saved: &[(f64, f64)]) -> Learned {
        let bound = crate::limits::MAX_SPEED.ln();
        let mut l = Learned::default();
        for (ln, weight) in saved {
            if ln.is_finite() && ln.abs() <= bound && (GUESS..=MEASURED).contains(weight) {
                l.push(*ln, *weight);
            }
        }
        l
    }

    fn push(&mut self, ln: f64, weight: f64) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((ln, weight));
        let Some(mid) = median(self.samples.iter().map(|s| s.0).collect()) else {
            return;
        };
        self.clipped = self
            .samples
            .iter()
            .fold((0.0, 0.0), |(sum, total), (l, w)| {
                (sum + w * l.clamp(mid - CLIP, mid + CLIP), total + w)
            });
    }

    /// Jobs recorded.
    pub(crate) fn samples(&self) -> usize {
        self.samples.len()
    }

    /// The speed estimate for a host configured at `prior`, once there are
    /// enough jobs.
    pub(crate) fn speed(&self, prior: f64) -> Option<f64> {
        if self.samples.len() < MIN_SAMPLES || !(prior.is_finite() && prior > 0.0) {
            return None;
        }
        let (sum, weight) = self.clipped;
        Some(((PRIOR_WEIGHT * prior.ln() + sum) / (PRIOR_WEIGHT + weight)).exp())
    }
}

/// The median of `values` (none when empty).
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
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

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a / b - 1.0).abs() < tol
    }

    #[test]
    fn needs_samples_and_one_odd_job_moves_it_little() {
        let mut l = Learned::default();
        l.add(2.0, 1.0, MEASURED);
        l.add(2.0, 1.0, MEASURED);
        assert_eq!(l.speed(1.0), None);
        l.add(0.0, 1.0, MEASURED);
        l.add(1.0, 0.0, MEASURED);
        assert_eq!(l.samples(), 2, "empty and instant jobs are not samples");
        for _ in 0..10 {
            l.add(2.0, 1.0, MEASURED);
        }
        let before = l.speed(2.0).unwrap();
        l.add(2.0, 0.001, MEASURED); // one absurdly fast job
        let after = l.speed(2.0).unwrap();
        assert!(close(before, 2.0, 1e-9));
        assert!(after / before < 1.15, "{before} -> {after}");
    }

    #[test]
    fn measured_jobs_overrule_the_configured_speed() {
        let mut l = Learned::default();
        for _ in 0..WINDOW {
            l.add(4.0, 1.0, MEASURED);
        }
        let s = l.speed(1.0).unwrap();
        assert!(s > 2.8 && s < 4.0, "configured 1, measured 4: {s}");
    }

    #[test]
    fn guesses_move_it_less_than_measurements() {
        let (mut g, mut m) = (Learned::default(), Learned::default());
        for _ in 0..WINDOW {
            g.add(4.0, 1.0, GUESS);
            m.add(4.0, 1.0, MEASURED);
        }
        let (g, m) = (g.speed(1.0).unwrap(), m.speed(1.0).unwrap());
        assert!(g > 1.5 && g < m, "{g} {m}");
    }

    #[test]
    fn follows_a_host_that_slows_down_and_recovers() {
        let mut l = Learned::default();
        for _ in 0..WINDOW {
            l.add(1.0, 1.0, MEASURED);
        }
        for _ in 0..WINDOW {
            l.add(1.0, 4.0, MEASURED);
        }
        let slow = l.speed(1.0).unwrap();
        assert!(slow < 0.45, "slowed down within a window: {slow}");
        for _ in 0..WINDOW {
            l.add(1.0, 1.0, MEASURED);
        }
        assert!(close(l.speed(1.0).unwrap(), 1.0, 1e-9), "and recovered");
    }

    #[test]
    fn restored_samples_give_the_same_estimate() {
        let mut l = Learned::default();
        for i in 0..(WINDOW + 5) {
            l.add(
                1.0 + i as f64,
                1.0,
                if i % 2 == 0 { MEASURED } else { GUESS },
            );
        }
        let mut saved = l.saved();
        assert_eq!(saved.len(), WINDOW);
        let again = Learned::restore(&saved);
        assert_eq!(again.speed(2.0), l.speed(2.0));
        saved.push((f64::NAN, 1.0));
        saved.push((1.0, -1.0));
        assert_eq!(
            Learned::restore(&saved).speed(2.0),
            l.speed(2.0),
            "junk dropped"
        );
    }

    proptest! {
        #[test]
        fn estimate_lies_between_the_prior_and_the_samples(
            jobs in proptest::collection::vec((0.01f64..100.0, 0.001f64..100.0, 0.1f64..1.0), 3..40),
            prior in 0.1f64..10.0,
        ) {
            let mut l = Learned::default();
            for (w, s, wt) in &jobs {
                l.add(*w, *s, *wt);
            }
            let recent: Vec<f64> = jobs.iter().rev().take(WINDOW).map(|(w, s, _)| w / s).collect();
            let lo = recent.iter().copied().fold(prior, f64::min);
            let hi = recent.iter().copied().fold(prior, f64::max);
            let r = l.speed(prior).unwrap();
            prop_assert!(r >= lo * 0.999999 && r <= hi * 1.000001, "{} not in [{}, {}]", r, lo, hi);
        }

        #[test]
        fn samples_at_the_prior_keep_it(prior in 0.1f64..10.0, n in 3usize..30) {
            let mut l = Learned::default();
            for _ in 0..n {
                l.add(prior * 2.0, 2.0, MEASURED);
            }
            prop_assert!(close(l.speed(prior).unwrap(), prior, 1e-9));
        }
    }
}

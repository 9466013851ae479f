//! Learned speeds: each finished job is a sample of its host's speed
//! (`learn`), and the speed choices use is the learned one once a host has
//! enough samples, scaled so that the learned hosts keep the geometric
//! mean of their configured speeds.

use super::eft::order_key;
use super::learn::{self, MIN_SAMPLES};
use super::{Host, HostId, Scheduler};

impl Scheduler {
    /// Recomputes every host's speed from what was learned, and the walk
    /// order with it.
    pub(super) fn refresh_speeds(&mut self) {
        self.order.clear();
        self.free.clear();
        self.unlearned = 0;
        self.learned_any = false;
        self.total_slots = 0;
        // Learned speeds are relative. A size-guessed work is in the units
        // of the speeds that measured earlier jobs, so a learned scale would
        // feed on itself (a small bias, compounded over a window, once took
        // a farm configured 4/2/1 to 1.5/1.2/0.4). The hosts with learned
        // speeds keep the geometric mean of their configured speeds.
        let (mut sum, mut n) = (0.0, 0usize);
        for h in self.hosts.iter().flatten() {
            if let Some(l) = h.learned.speed(h.spec.speed) {
                sum += h.spec.speed.ln() - l.ln();
                n += 1;
            }
        }
        self.speed_scale = if n > 0 { (sum / n as f64).exp() } else { 1.0 };
        for (i, slot) in self.hosts.iter_mut().enumerate() {
            let Some(h) = slot else { continue };
            let learned = h.learned.speed(h.spec.speed);
            self.learned_any |= learned.is_some();
            h.speed = learned.map_or(h.spec.speed, |l| l * self.speed_scale);
            h.update_first_end();
            self.unlearned += usize::from(!h.spec.is_local() && h.learned.samples() < MIN_SAMPLES);
            self.total_slots += h.cap as usize;
            let key = order_key(HostId(i), h);
            self.order.insert(key);
            if h.free() > 0 {
                self.free.insert(key);
            }
        }
    }

    /// The relay watched a job on `host`: `work` (seconds at speed 1.0, as
    /// the cost memory expects it) done in `secs` of server time, trusted
    /// with `weight` (`learn::MEASURED` or `learn::GUESS`).
    pub fn observe(&mut self, host: HostId, work: f64, secs: f64, weight: f64) {
        let Some(h) = self.hosts[host.0].as_mut() else {
            return;
        };
        h.learned.add(work, secs, weight);
        self.refresh_speeds();
    }

    /// Gives hosts the speed samples a previous broker learned for them.
    pub(crate) fn restore_learned<'a>(
        &mut self,
        saved: impl IntoIterator<Item = (HostId, &'a [(f64, f64)])>,
    ) {
        for (id, samples) in saved {
            if let Some(h) = self.hosts[id.0].as_mut() {
                h.learned = learn::Learned::restore(samples);
            }
        }
        self.refresh_speeds();
    }

    /// The speed used for choice: learned once the host has enough jobs,
    /// else the configured one. Both are in the units of `speed` in config.
    pub fn speed(&self, h: &Host) -> f64 {
        h.speed
    }

    /// The learned speed of `h`, if it has one.
    pub fn learned_speed(&self, h: &Host) -> Option<f64> {
        h.learned.speed(h.spec.speed).map(|l| l * self.speed_scale)
    }
}

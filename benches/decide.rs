//! Scheduler decision time: how long the broker's choice of host takes at
//! farm sizes 10, 100 and 1,000 hosts (16 slots each, speeds spread over
//! 1..4 so no two hosts tie), with 0 and 10,000 compiles queued.
//!
//! With nothing queued a decision is a request placed at once on a farm
//! half busy; with 10,000 queued it is a release on a full farm, which
//! hands the freed slot to a queued compile (or books a faster host).
//!
//! Run: `cargo bench --bench decide` (`-- --iters N` to change the count).

use std::time::{Duration, Instant};
use tcpb::broker::sched::{Job, LeaseId, Need, Scheduler};
use tcpb::config::HealthConfig;
use tcpb::farm::{Admin, Farm, HostSpec};

/// A small deterministic generator, so every run sees the same farm.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn farm(hosts: usize, rng: &mut Lcg) -> Farm {
    Farm {
        hosts: (0..hosts)
            .map(|i| HostSpec {
                name: format!("h{i}"),
                addr: Some((format!("10.0.{}.{}", i / 250, i % 250), 3632)),
                ssh: None,
                slots: 16,
                speed: 1.0 + 3.0 * rng.next(),
                lzo: false,
                cpp: false,
                admin: Admin::Active,
            })
            .collect(),
        local_slots: 2,
        origin: "bench".into(),
        sets: Vec::new(),
    }
}

fn job(rng: &mut Lcg) -> Job {
    // Heavy-tailed, like compile times: most light, a few very heavy.
    let u = rng.next().max(1e-9);
    Job {
        need: Need::Remote,
        cost: (0.3 / u.powf(1.0 / 1.5)).min(60.0),
        known: rng.next() < 0.5,
        light: false,
        build: (rng.next() * 3.0) as u32,
        set: 0,
    }
}

struct Stats(Vec<Duration>);

impl Stats {
    fn line(mut self) -> String {
        self.0.sort();
        let at = |q: f64| self.0[((self.0.len() - 1) as f64 * q) as usize];
        let mean = self.0.iter().sum::<Duration>() / self.0.len() as u32;
        format!(
            "median {:>6.2} µs  p99 {:>6.2} µs  mean {:>6.2} µs",
            at(0.5).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6
        )
    }
}

/// Decision times with `queued` compiles waiting on a farm of `hosts`.
fn run(hosts: usize, queued: usize, iters: usize) -> (Stats, usize) {
    let mut rng = Lcg(hosts as u64 * 7 + queued as u64);
    let t0 = Instant::now();
    let mut s = Scheduler::new(&farm(hosts, &mut rng), HealthConfig::default(), t0);
    let slots = hosts * 16;
    let mut now = t0;
    let mut next: LeaseId = 0;
    let mut running: Vec<LeaseId> = Vec::new();
    // Fill the farm (half of it when nothing is to be queued), then queue.
    let fill = if queued == 0 {
        slots / 2
    } else {
        slots + queued
    };
    for _ in 0..fill {
        next += 1;
        for p in s.request(next, job(&mut rng), now) {
            running.push(p.lease);
        }
    }
    // A heavy compile may rather wait for a fast host than take a slow
    // free one, so "nothing queued" means next to nothing.
    assert!(
        s.queued().abs_diff(queued) <= slots / 8,
        "the farm holds what was planned"
    );
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        now += Duration::from_millis(1);
        let pick = (rng.next() * running.len() as f64) as usize;
        next += 1;
        let j = job(&mut rng);
        if queued == 0 {
            // The decision: a request placed at once.
            let t = Instant::now();
            let placed = s.request(next, j, now);
            times.push(t.elapsed());
            running.extend(placed.iter().map(|p| p.lease));
            let gone = running.swap_remove(pick.min(running.len() - 1));
            running.extend(s.release(gone, now).iter().map(|p| p.lease));
        } else {
            // The decision: a release hands its slot to the queue.
            let gone = running.swap_remove(pick);
            let t = Instant::now();
            let placed = s.release(gone, now);
            times.push(t.elapsed());
            running.extend(placed.iter().map(|p| p.lease));
            for p in s.request(next, j, now) {
                running.push(p.lease);
            }
        }
    }
    s.check().expect("scheduler invariant");
    (Stats(times), s.queued())
}

fn main() {
    let mut iters = 20_000;
    let mut only: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|n| n.parse().ok());
        match a.as_str() {
            "--iters" => iters = value().unwrap_or(iters),
            "--hosts" => only = value(),
            _ => {}
        }
    }
    println!(
        "scheduler decision time ({iters} decisions each; target: <= 20 µs at 1,000 hosts with 10,000 queued)"
    );
    for hosts in [10, 100, 1000] {
        if only.is_some_and(|n| n != hosts) {
            continue;
        }
        for queued in [0, 10_000] {
            let (stats, left) = run(hosts, queued, iters);
            println!(
                "{hosts:>5} hosts x 16 slots, {queued:>6} queued: {}  (queue at the end: {left})",
                stats.line()
            );
        }
    }
}

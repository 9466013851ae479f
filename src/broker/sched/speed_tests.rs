//! Learned speeds, exploring unlearned hosts, and a deep queue keeping
//! heavy guesses off slow hosts.

use super::dispatch::EXPLORE_EVERY;
use super::learn::{GUESS, MEASURED};
use super::tests::{farm, hc, name, remote};
use super::*;
use std::time::Duration;

#[test]
fn learned_speed_overrides_configured_speed() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("a", 2, 2.0), remote("b", 2, 1.0)]),
        hc(),
        t,
    );
    let (a, b) = (HostId(0), HostId(1));
    assert_eq!(s.host(a).spec.name, "a");
    // a is configured faster but does 1 unit of work per second; b does 4.
    for _ in 0..15 {
        s.observe(a, 1.0, 1.0, MEASURED);
        s.observe(b, 4.0, 1.0, MEASURED);
    }
    let (la, lb) = (
        s.learned_speed(s.host(a)).unwrap(),
        s.learned_speed(s.host(b)).unwrap(),
    );
    // Relative: they keep the geometric mean of the configured speeds.
    assert!(
        lb / la > 2.5 && la < 1.0,
        "measurements outweigh the configuration: {la} {lb}"
    );
    assert!(((la * lb).sqrt() / 2f64.sqrt() - 1.0).abs() < 1e-9);
    let p = s.request(1, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["b"]);
}

#[test]
fn a_biased_work_guess_does_not_shrink_the_farm() {
    // Guessed work is in the units of the speeds that measured earlier
    // jobs; a guess that runs at half the true work must not drag every
    // host down (costs recorded at the lower speeds would then lower the
    // guesses further).
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("fast", 2, 4.0), remote("slow", 2, 1.0)]),
        hc(),
        t,
    );
    let (fast, slow) = (HostId(0), HostId(1));
    for _ in 0..15 {
        s.observe(fast, 0.5 * 4.0, 1.0, GUESS);
        s.observe(slow, 0.5 * 1.0, 1.0, GUESS);
    }
    let (lf, ls) = (
        s.learned_speed(s.host(fast)).unwrap(),
        s.learned_speed(s.host(slow)).unwrap(),
    );
    assert!(
        (lf / 4.0 - 1.0).abs() < 0.05 && (ls - 1.0).abs() < 0.05,
        "configured 4 and 1, learned {lf} and {ls}"
    );
}

#[test]
fn a_host_without_samples_is_tried_now_and_then() {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("a", 4, 1.0), remote("b", 4, 0.1)]),
        hc(),
        t,
    );
    for _ in 0..3 {
        s.observe(HostId(0), 4.0, 1.0, MEASURED);
    }
    let light = Job {
        light: true,
        ..Job::of(Need::Remote)
    };
    // A job not known to be light is not risked on the unknown host...
    let p = s.request(1, Job::of(Need::Remote), t);
    assert_eq!(name(&s, &p), ["a"]);
    // ...a light one is: b's prior is poor, but it has no samples.
    let p = s.request(2, light, t);
    assert_eq!(name(&s, &p), ["b"]);
    // And then not again until EXPLORE_EVERY has passed.
    let p = s.request(3, light, t);
    assert_eq!(name(&s, &p), ["a"]);
    let later = t + EXPLORE_EVERY;
    let p = s.request(4, light, later);
    assert_eq!(name(&s, &p), ["b"]);
}

/// A fast host busy with two long jobs, a slow one with two short ones;
/// then `heavy` (cost 4, its cost a guess unless `known`) and `light`
/// compiles of cost 0.5 wait. Returns what the release of a short job on
/// the slow host places there: the heavy compile (0) or a light one.
fn slow_slot_goes_to(known: bool, light: u64) -> Vec<(LeaseId, String)> {
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("fast", 2, 4.0), remote("slow", 2, 1.0)]),
        hc(),
        t,
    );
    let long = Job {
        cost: 8.0,
        ..Job::of(Need::Remote)
    };
    let short = Job {
        cost: 0.1,
        ..Job::of(Need::Remote)
    };
    for (l, job) in [(100, long), (101, long), (102, short), (103, short)] {
        let p = s.request(l, job, t);
        assert_eq!(p.len(), 1, "lease {l} placed at once");
    }
    let guess = |cost| Job {
        cost,
        known: false,
        ..Job::of(Need::Remote)
    };
    let heavy = Job {
        known,
        ..guess(4.0)
    };
    assert!(s.request(0, heavy, t).is_empty());
    for l in 1..=light {
        assert!(s.request(l, guess(0.5), t).is_empty());
    }
    let later = t + Duration::from_millis(200);
    let placed = s.release(102, later);
    s.check().unwrap();
    placed
        .iter()
        .map(|p| (p.lease, s.host(p.host).spec.name.clone()))
        .collect()
}

#[test]
fn a_deep_queue_keeps_heavy_guesses_off_slow_hosts() {
    // Thirteen waiting on a farm of six slots (two of them local): deeper
    // than make's -j twice the slots leaves. The heavy compile's cost is a
    // guess: it waits for the fast host and a light one takes the slow slot.
    let got = slow_slot_goes_to(false, 12);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].0 != 0 && got[0].1 == "slow", "{got:?}");
    // Its cost measured before: finishing there (4 s) beats waiting for
    // the fast host (1.8 s + 1 s) by less than the margin, so it goes.
    assert_eq!(slow_slot_goes_to(true, 12), [(0, "slow".to_string())]);
    // A shallow queue (make's usual -j): a free slot is not kept idle.
    assert_eq!(slow_slot_goes_to(false, 2), [(0, "slow".to_string())]);
}

#[test]
fn a_deep_queue_does_not_hold_back_local_only_jobs() {
    let t = Instant::now();
    let mut s = Scheduler::new(&farm(vec![remote("fast", 1, 4.0)]), hc(), t);
    let long = Job {
        cost: 8.0,
        ..Job::of(Need::Remote)
    };
    assert_eq!(s.request(100, long, t).len(), 1);
    let guess = |cost, need| Job {
        cost,
        known: false,
        ..Job::of(need)
    };
    for l in 1..=8 {
        assert!(s.request(l, guess(0.5, Need::Remote), t).is_empty());
    }
    // Eight wait for the one farm slot: deeper than twice the slots. A link
    // (local only, its cost a guess above the mean) still takes a local slot.
    let p = s.request(0, guess(4.0, Need::Local), t);
    assert_eq!(name(&s, &p), ["localhost"]);
    s.check().unwrap();
}

#[test]
fn a_deep_queue_does_not_wait_for_a_host_it_has_no_slot_on() {
    // Team mode: the fast host's slots are all another broker's (capacity
    // 0 here). A heavy guess in a deep queue must not wait for it: the
    // next slow slot this broker holds takes it.
    let t = Instant::now();
    let mut s = Scheduler::new(
        &farm(vec![remote("fast", 2, 4.0), remote("slow", 2, 1.0)]),
        hc(),
        t,
    );
    let fast = s.find("fast").unwrap();
    assert!(s.set_capacity(fast, 0, t).is_empty());
    let long = Job {
        cost: 8.0,
        ..Job::of(Need::Remote)
    };
    for l in [100, 101] {
        assert_eq!(s.request(l, long, t).len(), 1, "the slow slots fill");
    }
    let guess = |cost| Job {
        cost,
        known: false,
        ..Job::of(Need::Remote)
    };
    assert!(s.request(0, guess(4.0), t).is_empty());
    for l in 1..=8 {
        assert!(s.request(l, guess(0.5), t).is_empty());
    }
    let placed = s.release(100, t + Duration::from_millis(200));
    let got: Vec<_> = placed.iter().map(|p| (p.lease, name(&s, &[*p]))).collect();
    assert_eq!(got, [(0, vec!["slow".to_string()])]);
    s.check().unwrap();
}

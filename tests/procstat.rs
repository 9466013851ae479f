//! The benchmarks' CPU accounting (`benches/common/procstat.rs`): the
//! CPU columns of BENCHMARKS.md rest on it.

#[path = "../benches/common/procstat.rs"]
mod procstat;

use std::time::{Duration, Instant};

#[test]
fn ticks_are_read_by_position_even_after_a_negative_field() {
    // A daemon's line: no terminal, so tty_nr 0 and tpgid -1.
    let stat = "4242 (tcpb (broker) x) S 1 4242 4242 0 -1 4194368 900 0 3 0 \
                1234 56 7 8 20 0 3 0 100 0 0";
    assert_eq!(procstat::cpu_ticks(stat), 1234 + 56);
    assert_eq!(procstat::cpu_ticks("garbage"), 0);
}

#[test]
fn a_busy_process_is_seen_busy() {
    let me = std::process::id();
    let before = procstat::cpu_secs(me);
    let started = Instant::now();
    let mut x = 0u64;
    while started.elapsed() < Duration::from_millis(400) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    let used = procstat::cpu_secs(me) - before;
    assert!(used >= 0.2, "spun 400 ms of CPU, /proc says {used:.2} s");
}

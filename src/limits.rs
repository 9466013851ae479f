//! The bounds every value is held to where it enters tcpb: `config.toml`,
//! host lists, `tcpb host`, the state files. Each is far above any real
//! farm and far below what could overflow a count or a time, or make the
//! broker allocate without end; a value past one is refused with an error
//! that names it and the limit (state files: dropped, with a warning).

/// Slots of one host, and `--localslots`: more than any machine's CPUs.
pub const MAX_SLOTS: u32 = 1024;
/// Hosts one list may name (status and lease frames are sized for them).
pub const MAX_HOSTS: usize = 10_000;
/// The slowest and fastest relative host speed.
pub const MIN_SPEED: f64 = 1e-3;
/// See `MIN_SPEED`.
pub const MAX_SPEED: f64 = 1e3;
/// The longest any configured time may be: a week.
pub const MAX_SECS: u64 = 7 * 24 * 3600;
/// The most compiles a queue or a connection limit may allow.
pub const MAX_COUNT: u64 = 1_000_000;
/// The largest per-file cost (seconds of work at speed 1.0) a state file
/// may hold, and the smallest.
pub const MAX_COST: f64 = 1e5;
/// See `MAX_COST`.
pub const MIN_COST: f64 = 1e-6;

/// `n` slots, if within `1..=MAX_SLOTS`; else why not.
pub fn slots(n: u32) -> Result<u32, String> {
    match n {
        0 => Err("slots must be at least 1".to_string()),
        n if n > MAX_SLOTS => Err(format!("{n} slots is over the limit of {MAX_SLOTS}")),
        n => Ok(n),
    }
}

/// A speed, if a number within `MIN_SPEED..=MAX_SPEED`; else why not.
pub fn speed(s: f64) -> Result<f64, String> {
    if s.is_finite() && (MIN_SPEED..=MAX_SPEED).contains(&s) {
        Ok(s)
    } else {
        Err(format!(
            "speed {s} is not a number from {MIN_SPEED} to {MAX_SPEED}"
        ))
    }
}

/// `key = value` if `value` is at most `max`; else an error naming both.
pub fn at_most(key: &str, value: u64, max: u64) -> Result<(), String> {
    if value > max {
        Err(format!("{key} = {value} is over the limit of {max}"))
    } else {
        Ok(())
    }
}

/// A per-file cost from a state file, if it is a sane one.
pub fn cost(c: f64) -> Option<f64> {
    (c.is_finite() && (MIN_COST..=MAX_COST).contains(&c)).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_a_limit_are_refused_with_the_limit_named() {
        assert_eq!(slots(1024), Ok(1024));
        let e = slots(4_294_967_295).unwrap_err();
        assert!(e.contains("4294967295") && e.contains("1024"), "{e}");
        assert!(slots(0).is_err());
        assert!(speed(0.5).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e308, 1e-9] {
            assert!(speed(bad).is_err(), "{bad}");
        }
        assert!(at_most("[broker] job_timeout_s", MAX_SECS, MAX_SECS).is_ok());
        let e = at_most("[broker] job_timeout_s", u64::MAX, MAX_SECS).unwrap_err();
        assert!(
            e.contains("job_timeout_s") && e.contains(&MAX_SECS.to_string()),
            "{e}"
        );
        assert_eq!(cost(1.5), Some(1.5));
        assert_eq!(cost(1e308), None);
        assert_eq!(cost(-1.0), None);
    }
}

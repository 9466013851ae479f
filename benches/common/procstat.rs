//! CPU time of a process, from /proc/PID/stat. Its own file so that
//! `tests/procstat.rs` checks it in the test suite.

/// CPU seconds (user + system, all threads) process `pid` has used; 0 if
/// it is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    cpu_ticks(&stat) as f64 / per_sec.max(1) as f64
}

/// utime + stime of a /proc/PID/stat line: fields 14 and 15. Counted by
/// position after the command name (which may hold spaces and
/// parentheses), since fields before them may be negative: tpgid is -1
/// for a process without a controlling terminal.
pub fn cpu_ticks(stat: &str) -> u64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (the state) is the first after the name: field n is n - 3.
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

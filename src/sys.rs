//! The few system calls used in more than one place, each done one way:
//! whose process this is, installing a signal handler, setting the broker
//! log aside when it grows too large, raising the open-file limit.

use std::io;
use std::path::Path;

/// The kernel's CPU time counters since boot, summed over every CPU, in
/// clock ticks: (idle, total). Idle counts I/O wait too.
pub(crate) fn cpu_times() -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let line = text.lines().next().unwrap_or("");
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/stat");
    let mut fields = line.split_whitespace();
    if fields.next() != Some("cpu") {
        return Err(bad());
    }
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if v.len() < 5 {
        return Err(bad());
    }
    Ok((v[3] + v[4], v.iter().sum()))
}

/// This process's effective uid: whose compiles the broker serves, whose
/// directories and peers are trusted.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Installs `handler` for `sig` with `sigaction` (`SA_RESTART`).
/// `handler` must be async-signal-safe, or `SIG_DFL`/`SIG_IGN`.
pub(crate) fn set_signal_handler(sig: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction with a valid handler is well-formed.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Sets `log` aside as `old` when it is over `max` bytes. True when it did.
pub(crate) fn set_log_aside(log: &Path, old: &Path, max: u64) -> io::Result<bool> {
    match std::fs::metadata(log) {
        Ok(meta) if meta.len() > max => std::fs::rename(log, old).map(|()| true),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// True when this process's stderr is the file `path`.
pub(crate) fn stderr_is(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    // SAFETY: fstat writes only into `st`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(2, &mut st) }) == 0 && st.st_ino == meta.ino() && st.st_dev == meta.dev()
}

/// Points this process's stdout and stderr at `path` (appending).
pub(crate) fn redirect_output(path: &Path) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let new = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)?;
    // SAFETY: dup2 onto our own stdout and stderr; `new` stays open until
    // then and its descriptor is closed after.
    unsafe {
        libc::dup2(new.as_raw_fd(), 1);
        libc::dup2(new.as_raw_fd(), 2);
    }
    Ok(())
}

/// Each waiting or running compile holds a control connection and, when
/// remote, two relayed sockets: a `make -j200` outgrows the usual soft
/// limit of 1,024 descriptors. Raise it to the hard limit.
pub fn raise_open_file_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `l`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                tracing::debug!("cannot raise the open-file limit");
            }
        }
    }
}

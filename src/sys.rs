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

/// Logging of what another user, or a fault that repeats, can trigger: at
/// most one line per period, which says how many were not logged.
pub(crate) struct Quiet {
    secs: u64,
    /// When the last line was logged, and the events since.
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Quiet {
    /// At most one line every `secs` seconds.
    pub(crate) const fn new(secs: u64) -> Quiet {
        Quiet {
            secs,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a line is due now (`n` events since the last line
    /// were not logged); `None` when this one is not to be logged.
    pub(crate) fn due(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match s.0 {
            Some(at) if now.duration_since(at).as_secs() < self.secs => {
                s.1 += 1;
                None
            }
            _ => {
                let n = s.1;
                *s = (Some(now), 0);
                Some(n)
            }
        }
    }
}

/// This process's effective uid: whose compiles the broker serves, whose
/// directories and peers are trusted.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The name of the user running this process (its uid as a number when
/// the password database has no entry).
pub(crate) fn user_name() -> String {
    let uid = euid();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live memory of the sizes given.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pw.pw_name.is_null() {
        return uid.to_string();
    }
    // SAFETY: getpwuid_r left a NUL-terminated name in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    name.to_string_lossy().into_owned()
}

/// This machine's host name.
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match rc {
        0 if end > 0 => String::from_utf8_lossy(&buf[..end]).into_owned(),
        _ => "localhost".to_string(),
    }
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
    if !over(log, max)? {
        return Ok(false);
    }
    std::fs::rename(log, old).map(|()| true)
}

/// True when the file `log` exists and is over `max` bytes.
fn over(log: &Path, max: u64) -> io::Result<bool> {
    match std::fs::metadata(log) {
        Ok(meta) => Ok(meta.len() > max),
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

/// Sets the log this process writes to (its stdout and stderr, the file
/// `log`) aside as `old` once it is over `max` bytes, and writes a new one.
/// The new file is opened before anything is renamed: when it cannot be
/// (no descriptors left), nothing changes and the next call tries again.
/// True when it did.
pub(crate) fn rotate_output(log: &Path, old: &Path, max: u64) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    if !over(log, max)? {
        return Ok(false);
    }
    let mut next = log.as_os_str().to_os_string();
    next.push(".new");
    let next = std::path::PathBuf::from(next);
    match std::fs::remove_file(&next) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let new = crate::paths::create_private(&next)?;
    if let Err(e) = std::fs::rename(log, old).and_then(|()| std::fs::rename(&next, log)) {
        let _ = std::fs::remove_file(&next);
        return Err(e);
    }
    // SAFETY: dup2 onto our own stdout and stderr; `new` stays open until
    // then and its descriptor is closed after.
    unsafe {
        libc::dup2(new.as_raw_fd(), 1);
        libc::dup2(new.as_raw_fd(), 2);
    }
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_set_aside_only_once_its_successor_can_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let (log, old) = (
            dir.path().join("broker.log"),
            dir.path().join("broker.log.old"),
        );
        std::fs::write(&log, "x".repeat(100)).unwrap();
        // The new file cannot be made (as with no descriptors left).
        std::fs::create_dir_all(dir.path().join("broker.log.new/in-the-way")).unwrap();
        assert!(rotate_output(&log, &old, 10).is_err());
        assert!(!old.exists(), "nothing renamed");
        assert_eq!(std::fs::read_to_string(&log).unwrap().len(), 100);
        // Under the limit: nothing to do, and no file touched.
        assert!(!rotate_output(&log, &old, 1000).unwrap());
    }
}

//! Running the compile. distcc replaces the wrapper (exec), so output,
//! exit status and signals are its own with no process in between; the
//! lease's control connection is handed down across the exec and the slot
//! is held exactly as long as distcc keeps it open. A local compile runs
//! as a child instead, with SIGINT, SIGTERM, SIGHUP and SIGQUIT forwarded:
//! a compiler may leave a daemon behind (a cache server), which must not
//! inherit the lease.

use crate::sys::set_signal_handler;
use interprocess::local_socket::Stream;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

static CHILD: AtomicI32 = AtomicI32::new(0);
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Runs `cmd` to the end and returns its exit status as ours. A child
/// killed by a signal makes this process die of the same signal.
pub(super) fn run(mut cmd: Command, what: &str) -> ExitCode {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tcpb: cannot run {what}: {e}");
            return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    for sig in FORWARDED {
        set_signal_handler(sig, forward as *const () as libc::sighandler_t);
    }
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("tcpb: lost track of {what}: {e}");
                return ExitCode::from(1);
            }
        }
    };
    CHILD.store(0, Ordering::SeqCst);
    exit_like(status)
}

fn exit_like(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return ExitCode::from(code as u8);
    }
    if let Some(sig) = status.signal() {
        set_signal_handler(sig, libc::SIG_DFL);
        // SAFETY: raising a signal at ourselves with its default action.
        unsafe { libc::raise(sig) };
        return ExitCode::from(128 + sig as u8);
    }
    ExitCode::from(1)
}

/// Execs `cmd`, keeping `lease` open in it. Returns only when the exec
/// failed, with the shell's codes: 127 not found, 126 not runnable.
pub(super) fn exec(mut cmd: Command, what: &str, lease: &Stream) -> ExitCode {
    let Stream::UdSocket(s) = lease;
    let fd = s.inner().as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; only FD_CLOEXEC changes.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
        }
    }
    let e = cmd.exec();
    eprintln!("tcpb: cannot run {what}: {e}");
    ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

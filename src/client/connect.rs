//! Finding the broker, and starting it when nothing answers: under a start
//! lock, so many compiles starting at once start exactly one broker.

use crate::frame;
use crate::paths::{Paths, ensure_private_dir};
use crate::protocol::{BrokerMsg, ClientMsg, PROTOCOL_VERSION, Request, Response, VersionProbe};
use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericFilePath, Stream};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a client waits for the start lock and for a new broker.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long `status`, `host`, `reload` and `stop` wait for the broker's
/// answer: a broker that is stopped (SIGSTOP) or wedged is not waited for.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// Connects to a running broker. Errors name the socket and keep their kind.
pub(crate) fn connect(paths: &Paths) -> io::Result<Stream> {
    let socket = paths.socket();
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", socket.display()));
    let name = socket
        .as_path()
        .to_fs_name::<GenericFilePath>()
        .map_err(named)?;
    let s = Stream::connect(name).map_err(named)?;
    // Only a broker of this user is trusted with the compile.
    let me = crate::sys::euid();
    match s.peer_creds().map(|c| c.euid()) {
        Ok(Some(uid)) if uid == me => Ok(s),
        Ok(uid) => Err(io::Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "{} is served by uid {}, not by this user (uid {me})",
                socket.display(),
                uid.map_or("unknown".to_string(), |u| u.to_string())
            ),
        )),
        Err(e) => Err(named(e)),
    }
}

/// Sends one request and reads one answer, for the commands that talk to
/// the broker (`status`, `stop`, `host`, `reload`). With `start` false and no
/// broker running, `Ok(None)`.
pub(crate) fn call(paths: &Paths, req: Request, start: bool) -> anyhow::Result<Option<Response>> {
    match ask(paths, req, start)? {
        None => Ok(None),
        Some(Answer::Msg(msg)) => Ok(Some(msg.resp)),
        Some(Answer::OtherVersion { v, pid }) => anyhow::bail!(
            "the broker (pid {pid}) speaks protocol {v}, this tcpb {PROTOCOL_VERSION}: run `tcpb stop`"
        ),
    }
}

/// Like `call`, but a broker of another version is an answer too.
pub(crate) fn ask(paths: &Paths, req: Request, start: bool) -> anyhow::Result<Option<Answer>> {
    use anyhow::Context;
    let mut conn = if start {
        let mut started = false;
        connect_or_start(paths, &mut started).context("cannot reach the broker")?
    } else {
        match connect(paths) {
            Ok(c) => c,
            Err(_) => return Ok(None),
        }
    };
    let Stream::UdSocket(uds) = &conn;
    let sock = socket2::SockRef::from(uds);
    sock.set_read_timeout(Some(ANSWER_DEADLINE))?;
    sock.set_write_timeout(Some(ANSWER_DEADLINE))?;
    let silent = |e: io::Error| -> anyhow::Error {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            anyhow::anyhow!(
                "the broker did not answer within {} s ({}); is it stopped? `tcpb log` may say why",
                ANSWER_DEADLINE.as_secs(),
                paths.socket().display()
            )
        } else {
            e.into()
        }
    };
    let msg = ClientMsg {
        v: PROTOCOL_VERSION,
        req,
    };
    frame::write_sync(&mut conn, &msg).map_err(silent)?;
    let payload = frame::read_sync(&mut conn)
        .map_err(|e| match e {
            frame::FrameError::Io(io) => silent(io),
            e => e.into(),
        })?
        .ok_or_else(|| anyhow::anyhow!("the broker closed the connection"))?;
    Ok(Some(
        answer(&payload).context("cannot read the broker's answer")?,
    ))
}

/// Sends SIGTERM to a broker (of another version) that gave `pid`. Only a
/// single process of this user's is signalled: 0 and pids past `i32::MAX`
/// would reach a whole process group (the build's own) or every process.
pub(crate) fn terminate(pid: u32) -> io::Result<()> {
    let target = i32::try_from(pid).ok().filter(|p| *p > 1).ok_or_else(|| {
        io::Error::new(
            ErrorKind::InvalidInput,
            format!("{pid} is not a broker's pid"),
        )
    })?;
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(format!("/proc/{target}"))?.uid();
    if owner != crate::sys::euid() {
        return Err(io::Error::new(
            ErrorKind::PermissionDenied,
            format!("process {pid} belongs to another user"),
        ));
    }
    // SAFETY: kill(2) only signals, and `target` is one process.
    match unsafe { libc::kill(target, libc::SIGTERM) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Whether process `pid` is still running (a zombie is not).
pub(crate) fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Waits until the broker `pid` has closed its socket and exited (it saves
/// its state last), at most its grace for running compiles and 5 s more;
/// `slow` is called once if that takes over a second. The error is the
/// limit that passed.
pub(crate) fn wait_exit(paths: &Paths, pid: u32, slow: impl FnOnce()) -> Result<(), Duration> {
    let grace = crate::config::Config::load(&paths.config_file)
        .unwrap_or_default()
        .broker
        .shutdown_grace_s;
    let limit = Duration::from_secs(grace + 5);
    let start = Instant::now();
    let mut slow = Some(slow);
    while connect(paths).is_ok() || running(pid) {
        if start.elapsed() > limit {
            return Err(limit);
        }
        if start.elapsed() > Duration::from_secs(1)
            && let Some(f) = slow.take()
        {
            f();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A broker's answer, as far as this tcpb can read it.
pub(crate) enum Answer {
    /// A message of this protocol version.
    Msg(BrokerMsg),
    /// A broker speaking protocol `v`; its pid, so it can be stopped.
    OtherVersion {
        /// Its protocol version.
        v: u32,
        /// Its pid (0 if it did not say).
        pid: u32,
    },
}

/// Decodes a broker's frame, checking its protocol version first.
pub(crate) fn answer(payload: &[u8]) -> Result<Answer, frame::FrameError> {
    let probe: VersionProbe = frame::decode(payload)?;
    if probe.v != PROTOCOL_VERSION {
        let pid = probe.pid.unwrap_or(0);
        return Ok(Answer::OtherVersion { v: probe.v, pid });
    }
    Ok(Answer::Msg(frame::decode(payload)?))
}

fn absent(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused)
}

/// Connects to the broker, starting it first if none answers. `started`
/// is set when this call started it.
pub(crate) fn connect_or_start(paths: &Paths, started: &mut bool) -> io::Result<Stream> {
    match connect(paths) {
        Ok(s) => return Ok(s),
        Err(e) if absent(&e) => {}
        Err(e) => return Err(e),
    }
    ensure_private_dir(&paths.runtime_dir).map_err(at(&paths.runtime_dir))?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.start_lock())
        .map_err(at(&paths.start_lock()))?;
    lock_with_deadline(&lock, Instant::now() + START_DEADLINE)?;
    // Someone else may have started it while we waited for the lock.
    match connect(paths) {
        Ok(s) => return Ok(s),
        Err(e) if absent(&e) => {}
        Err(e) => return Err(e),
    }
    let socket = paths.socket();
    if socket.exists() {
        // It did not answer: stale. A socket that answers is never removed.
        let _ = std::fs::remove_file(&socket);
    }
    let child = spawn_broker(paths)?;
    *started = true;
    await_start(paths, child)
}

/// Waits (bounded) until the broker `child` just started answers.
fn await_start(paths: &Paths, mut child: std::process::Child) -> io::Result<Stream> {
    let socket = paths.socket();
    let deadline = Instant::now() + START_DEADLINE;
    let mut pause = Duration::from_millis(1);
    loop {
        match connect(paths) {
            Ok(s) => return Ok(s),
            Err(e) if !absent(&e) => return Err(e),
            Err(_) => {}
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "the broker exited at start ({status}); its log {} says:\n{}",
                paths.log_file().display(),
                log_tail(paths)
            )));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "the broker did not answer on {} within {}s; see {}",
                    socket.display(),
                    START_DEADLINE.as_secs(),
                    paths.log_file().display()
                ),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn lock_with_deadline(lock: &File, deadline: Instant) -> io::Result<()> {
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != ErrorKind::WouldBlock {
            return Err(e);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "timed out waiting for the broker start lock",
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An error about `p` that names it.
fn at(p: &std::path::Path) -> impl Fn(io::Error) -> io::Error {
    let p = p.display().to_string();
    move |e: io::Error| io::Error::new(e.kind(), format!("{p}: {e}"))
}

fn spawn_broker(paths: &Paths) -> io::Result<std::process::Child> {
    ensure_private_dir(&paths.state_dir).map_err(at(&paths.state_dir))?;
    let log = paths.log_file();
    // A log past its limit is set aside as a running broker would.
    let max = crate::config::Config::load(&paths.config_file)
        .unwrap_or_default()
        .broker
        .log_max_kib
        .max(1)
        << 10;
    let _ = crate::sys::set_log_aside(&log, &paths.old_log_file(), max);
    let out = crate::paths::append_private(&log).map_err(at(&log))?;
    let err = out.try_clone()?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("broker")
        .current_dir("/")
        .env_remove(super::WRAPPED_VAR)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid and close_range are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // Own session: no terminal signals, not killed with the build.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // Do not keep the build's inherited descriptors (make's jobserver,
            // pipes) open for the broker's lifetime.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    cmd.spawn()
}

fn log_tail(paths: &Paths) -> String {
    let text = std::fs::read_to_string(paths.log_file()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminate_signals_only_one_process_of_this_user() {
        for pid in [0, 1, u32::MAX, i32::MAX as u32 + 1] {
            let e = super::terminate(pid).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{pid}: {e}");
        }
        assert!(
            super::terminate(i32::MAX as u32).is_err(),
            "no such process"
        );
    }
}

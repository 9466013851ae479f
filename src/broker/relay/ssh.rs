//! ssh hosts, run as distcc runs them: `$DISTCC_SSH` (split at spaces) or
//! `ssh`, then `[-l USER] HOST COMMAND --inetd --enable-tcp-insecure`, one
//! per job, its stdin and stdout one end of a socket pair that the relay
//! copies to and from as it does a TCP connection, so the job is observed
//! and learned from like any other.
//!
//! Each host has one master connection (ssh's `ControlMaster`), started in
//! the environment of the compile that first needs it. Starting it is the
//! host's connect (before the grant, so a host whose ssh fails is known
//! before distcc runs) and its probe; each job's ssh then rides on it and
//! costs no handshake. A master is this broker's child, killed when the
//! broker exits, however it exits.

use crate::hosts::SshHost;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// The compile's `DISTCC_SSH` and `SSH_*` variables.
pub(crate) type SshEnv = Arc<[(String, String)]>;

/// The least time a master gets to log in, whatever the connect timeout:
/// an ssh handshake takes several round trips.
const MASTER_START: Duration = Duration::from_secs(5);
/// How often a starting master's control socket is looked for.
const MASTER_POLL: Duration = Duration::from_millis(10);
/// The most of ssh's stderr kept for a message.
const STDERR_MAX: u64 = 4096;

/// The master connections, one per host (user, host and command).
pub(super) struct Masters {
    /// Where their control sockets are (private to this user).
    dir: PathBuf,
    /// Each master behind its own lock, held while it starts so that one
    /// start serves every job waiting for it. This map's lock never leaves
    /// the module and is never held across an await.
    all: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Master>>>>,
    /// The ssh environment of the latest compile that sent one: a probe of
    /// a host no compile has reached yet runs ssh in it (an agent-only key
    /// works only with the compile's `SSH_AUTH_SOCK`).
    latest: Mutex<Option<SshEnv>>,
}

#[derive(Default)]
struct Master {
    /// The running master.
    child: Option<Child>,
    /// The environment it was last asked for in (probes reuse it).
    env: Option<SshEnv>,
}

/// One job's ssh: the relay's end of its stdin and stdout, and the process.
pub(super) struct Session {
    /// What the relay copies to and from.
    pub stream: UnixStream,
    child: Child,
}

impl Masters {
    pub(super) fn new(dir: PathBuf) -> Masters {
        Masters {
            dir,
            all: Mutex::default(),
            latest: Mutex::default(),
        }
    }

    /// A compile sent `env`: the latest ssh environment.
    pub(super) fn note(&self, env: &SshEnv) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(env));
    }

    /// Makes sure `host` has a running master, started within `timeout`
    /// (at least `MASTER_START`) if it has none, in `env` (else the one it
    /// was last given, else the latest a compile sent). Returns its control
    /// socket, or why it failed.
    pub(super) async fn ensure(
        &self,
        host: &SshHost,
        env: Option<&SshEnv>,
        timeout: Duration,
    ) -> Result<PathBuf, String> {
        let slot = {
            let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(all.entry(host.to_string()).or_default())
        };
        let mut master = slot.lock().await;
        if let Some(e) = env {
            master.env = Some(Arc::clone(e));
        }
        let latest = || {
            self.latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let env = master
            .env
            .clone()
            .or_else(latest)
            .unwrap_or_else(|| Arc::from([]));
        let path = self.control_path(host);
        if let Some(child) = &mut master.child {
            if matches!(child.try_wait(), Ok(None)) {
                return Ok(path);
            }
            master.child = None;
        }
        let child = start_master(host, &env, &path, timeout.max(MASTER_START)).await?;
        master.child = Some(child);
        Ok(path)
    }

    /// Starts one job's ssh on `host`'s master at `path`.
    pub(super) fn session(
        &self,
        host: &SshHost,
        env: &[(String, String)],
        path: &Path,
    ) -> io::Result<Session> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let out = theirs.try_clone()?;
        let mut cmd = ssh(env, path, "no");
        user_and_host(&mut cmd, host)
            .args([host.command(), "--inetd", "--enable-tcp-insecure"])
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(out)))
            .stderr(Stdio::piped());
        let child = cmd.spawn()?;
        ours.set_nonblocking(true)?;
        Ok(Session {
            stream: UnixStream::from_std(ours)?,
            child,
        })
    }

    /// A control socket path short enough for `sun_path`, one per host.
    fn control_path(&self, host: &SshHost) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        host.hash(&mut h);
        self.dir.join(format!("{:016x}", h.finish()))
    }
}

impl Session {
    /// Ends the job's ssh. When the job failed, waits a little for ssh to
    /// exit and returns the last line it wrote (why, in its words).
    pub(super) async fn finish(self, failed: bool) -> Option<String> {
        let Session { stream, mut child } = self;
        drop(stream);
        if !failed {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            });
            return None;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
        last_line(&mut child).await
    }
}

/// distcc's ssh command: `$DISTCC_SSH` split at spaces, else `ssh`.
fn ssh_command(env: &[(String, String)]) -> Vec<String> {
    let words = env.iter().find(|(k, _)| k == "DISTCC_SSH").map(|(_, v)| {
        v.split(' ')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    });
    match words {
        Some(w) if !Vec::is_empty(&w) => w,
        _ => vec!["ssh".to_string()],
    }
}

/// ssh in the compile's environment, never asking for a password, with
/// `ControlMaster=master` on the control socket `path`.
fn ssh(env: &[(String, String)], path: &Path, master: &str) -> Command {
    let words = ssh_command(env);
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SSH_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .args(["-o", "BatchMode=yes", "-o"])
        .arg(format!("ControlMaster={master}"))
        .arg("-o")
        .arg(format!("ControlPath={}", path.display()))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn user_and_host<'a>(cmd: &'a mut Command, host: &SshHost) -> &'a mut Command {
    if let Some(user) = &host.user {
        cmd.args(["-l", user]);
    }
    cmd.arg(&host.host)
}

/// Starts a master and waits until its control socket is there (it is
/// made once ssh has logged in), it exits, or `timeout` passes.
async fn start_master(
    host: &SshHost,
    env: &[(String, String)],
    path: &Path,
    timeout: Duration,
) -> Result<Child, String> {
    let _ = tokio::fs::remove_file(path).await;
    let mut cmd = ssh(env, path, "yes");
    cmd.args(["-N", "-o", "ControlPersist=no"])
        .arg("-o")
        .arg(format!("ConnectTimeout={}", timeout.as_secs().max(1)));
    user_and_host(&mut cmd, host)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    die_with_broker(&mut cmd);
    let what = format!("ssh to {host}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let why = last_line(&mut child).await.unwrap_or_default();
            return Err(format!("{what} failed ({status}): {why}"));
        }
        if tokio::fs::try_exists(path).await.unwrap_or(false) {
            return Ok(child);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{what} did not log in within {} s",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(MASTER_POLL).await;
    }
}

/// The master gets SIGTERM when the broker exits, even by SIGKILL.
fn die_with_broker(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The last non-empty line `child` wrote to its stderr.
async fn last_line(child: &mut Child) -> Option<String> {
    let mut text = String::new();
    let mut stderr = child.stderr.take()?.take(STDERR_MAX);
    let read = stderr.read_to_string(&mut text);
    let _ = tokio::time::timeout(Duration::from_millis(500), read).await;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn distcc_ssh_is_split_at_spaces_like_distcc() {
        assert_eq!(ssh_command(&[]), ["ssh"]);
        let e = env(&[("DISTCC_SSH", "ssh  -F /tmp/cfg -q")]);
        assert_eq!(ssh_command(&e), ["ssh", "-F", "/tmp/cfg", "-q"]);
        assert_eq!(ssh_command(&env(&[("DISTCC_SSH", " ")])), ["ssh"]);
    }

    #[tokio::test]
    async fn a_probe_before_any_job_uses_the_latest_compiles_ssh_environment() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let fake = dir.path().join("fake-ssh");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$SSH_AUTH_SOCK\" > {}\nexit 255\n",
                seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let m = Masters::new(dir.path().to_path_buf());
        let fake = fake.display().to_string();
        let e: SshEnv = Arc::from(env(&[
            ("DISTCC_SSH", &fake),
            ("SSH_AUTH_SOCK", "/agent/of/the/compile"),
        ]));
        m.note(&e);
        let host = SshHost {
            user: None,
            host: "b1".into(),
            command: None,
        };
        let r = m.ensure(&host, None, Duration::from_secs(1)).await;
        assert!(r.is_err());
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap().trim(),
            "/agent/of/the/compile"
        );
    }

    #[test]
    fn control_paths_are_short_and_per_host() {
        let m = Masters::new(PathBuf::from("/run/user/1000/tcpb/ssh"));
        let h = |user: Option<&str>, host: &str| SshHost {
            user: user.map(Into::into),
            host: host.into(),
            command: None,
        };
        let a = m.control_path(&h(None, "b1"));
        assert_eq!(a, m.control_path(&h(None, "b1")));
        assert_ne!(a, m.control_path(&h(Some("me"), "b1")));
        assert_ne!(a, m.control_path(&h(None, "b2")));
        assert!(a.as_os_str().len() < 100, "{}", a.display());
    }
}

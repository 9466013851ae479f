//! A real sshd on 127.0.0.1 (Debian's openssh-server) on a port chosen at
//! run time, with keys made for the test, and the pieces a distcc user
//! sets up for ssh hosts: a `DISTCC_SSH` wrapper that runs `ssh -F CONFIG`
//! (ssh reads `~/.ssh` from the passwd entry, not `$HOME`), and a remote
//! command that logs each `distccd --inetd` job.

use super::{TestEnv, free_port};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd and the client side that reaches it.
pub struct Sshd {
    child: Child,
    /// Its port.
    pub port: u16,
    /// `DISTCC_SSH` for it: a wrapper running `ssh -F CONFIG "$@"`.
    pub ssh: PathBuf,
    /// The remote command: distccd --inetd logging to `remote_log`.
    pub distccd: PathBuf,
    /// Where the remote distccd logs its jobs.
    pub remote_log: PathBuf,
    /// sshd's own log.
    pub log: PathBuf,
    dir: PathBuf,
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen {}", path.display());
}

/// The sshd binary, if installed (it is outside a non-root PATH).
fn sshd_binary() -> Option<PathBuf> {
    which::which("sshd")
        .ok()
        .or_else(|| Some(PathBuf::from("/usr/sbin/sshd")).filter(|p| p.exists()))
}

/// Whether sshd, ssh and ssh-keygen are installed. Outside CI a missing
/// one skips the test loudly; under `CI=true` it fails.
pub fn have_sshd() -> bool {
    let present = sshd_binary().is_some()
        && which::which("ssh").is_ok()
        && which::which("ssh-keygen").is_ok();
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("sshd/ssh not installed, and CI=true: .ci/run must install openssh-server");
    }
    eprintln!(
        "\n!!!!!!!!!! SKIPPED: sshd/ssh not installed (apt-get install openssh-server) !!!!!!!!!!\n"
    );
    false
}

/// The login name ssh uses by default: this user's.
pub fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Sshd {
    /// Starts sshd in a directory of `env`, accepting a key made here.
    pub fn start(env: &TestEnv) -> Sshd {
        let dir = env.path("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        keygen(&dir.join("hostkey"));
        keygen(&dir.join("userkey"));
        std::fs::copy(dir.join("userkey.pub"), dir.join("authorized_keys")).unwrap();
        // distccd drops to its own user when run as root: its log must be
        // writable by it.
        let remote_log = dir.join("remote-distccd.log");
        std::fs::write(&remote_log, "").unwrap();
        std::fs::set_permissions(&remote_log, std::fs::Permissions::from_mode(0o666)).unwrap();
        let distccd = dir.join("remote-distccd");
        write_exec(
            &distccd,
            &format!(
                "#!/bin/sh\nexec distccd \"$@\" --log-file {} --log-level info\n",
                remote_log.display()
            ),
        );
        if is_root() {
            // What the openssh-server package's service makes at boot.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        for _ in 0..10 {
            let port = free_port();
            if let Some(s) = Sshd::spawn(&dir, port, &distccd, &remote_log) {
                return s;
            }
        }
        panic!("could not start sshd");
    }

    fn spawn(dir: &Path, port: u16, distccd: &Path, remote_log: &Path) -> Option<Sshd> {
        let d = dir.display();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/hostkey\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 LogLevel VERBOSE\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("ssh_config"),
            format!(
                "Host *\n  Port {port}\n  IdentityFile {d}/userkey\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  LogLevel ERROR\n"
            ),
        )
        .unwrap();
        let ssh = dir.join("ssh-wrapper");
        write_exec(
            &ssh,
            &format!("#!/bin/sh\nexec ssh -F {d}/ssh_config \"$@\"\n"),
        );
        let log = dir.join("sshd.log");
        let child = Command::new(sshd_binary().unwrap())
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn sshd");
        let mut s = Sshd {
            child,
            port,
            ssh,
            distccd: distccd.to_path_buf(),
            remote_log: remote_log.to_path_buf(),
            log,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&s.log).unwrap_or_default();
            if text.contains("Server listening") {
                return Some(s);
            }
            if s.child.try_wait().unwrap().is_some() {
                assert!(
                    text.contains("Address already in use") || text.contains("Bind to port"),
                    "sshd failed:\n{text}"
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "sshd did not start:\n{}",
            std::fs::read_to_string(&s.log).unwrap_or_default()
        );
    }

    /// A `DISTCC_SSH` that fails to log in: a key sshd does not accept.
    pub fn bad_key_ssh(&self) -> PathBuf {
        let d = self.dir.display();
        keygen(&self.dir.join("otherkey"));
        let config = self.dir.join("bad_ssh_config");
        let good = std::fs::read_to_string(self.dir.join("ssh_config")).unwrap();
        std::fs::write(&config, good.replace("/userkey", "/otherkey")).unwrap();
        let ssh = self.dir.join("bad-ssh-wrapper");
        write_exec(
            &ssh,
            &format!("#!/bin/sh\nexec ssh -F {d}/bad_ssh_config \"$@\"\n"),
        );
        ssh
    }

    /// Logins sshd accepted (a master connection is one; jobs that ride on
    /// it are none).
    pub fn logins(&self) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.matches("Accepted publickey").count()
    }

    /// Jobs the remote distccd finished.
    pub fn compiles_ok(&self) -> usize {
        let text = std::fs::read_to_string(&self.remote_log).unwrap_or_default();
        text.matches("COMPILE_OK").count()
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // sshd's session children are in its process group.
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

//! Real distccd instances on 127.0.0.1, and ports that refuse connections.

use super::TestEnv;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port, chosen at run time.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A port that refuses connections: bound but not listening, so no other
/// socket (a relay port, another test's distccd) can take it meanwhile.
pub struct DeadPort {
    fd: std::os::fd::OwnedFd,
    pub port: u16,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain socket calls on a descriptor we own.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                len,
            );
            assert_eq!(rc, 0, "bind");
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut glen = len;
            libc::getsockname(
                fd.as_raw_fd(),
                &mut got as *mut _ as *mut libc::sockaddr,
                &mut glen,
            );
            DeadPort {
                fd,
                port: u16::from_be(got.sin_port),
            }
        }
    }

    /// Frees the port so a server can listen there.
    pub fn revive(self) -> u16 {
        drop(self.fd);
        self.port
    }
}

/// A real distccd on 127.0.0.1.
pub struct Distccd {
    pub port: u16,
    child: Child,
    log: PathBuf,
    /// A wrapper directory to remove with the daemon.
    extra_dir: Option<PathBuf>,
    /// Where a recording distccd's compiles write when they start and end.
    record: Option<PathBuf>,
    /// The daemon's TMPDIR: the temporary files of jobs killed mid-compile
    /// go with it rather than stay in /tmp.
    _tmp: tempfile::TempDir,
}

impl Distccd {
    pub fn start(env: &TestEnv, jobs: u32) -> Distccd {
        for _ in 0..10 {
            if let Some(d) = Distccd::start_on(env, free_port(), jobs) {
                return d;
            }
        }
        panic!("could not start distccd");
    }

    /// Starts distccd on `port`; `None` if it could not listen there.
    pub fn start_on(env: &TestEnv, port: u16, jobs: u32) -> Option<Distccd> {
        Distccd::spawn(env, port, jobs, None)
    }

    /// A distccd whose compiles each take `delay_s` longer: a slower host.
    pub fn start_slow(env: &TestEnv, jobs: u32, delay_s: f64) -> Distccd {
        Distccd::start_wrapped(env, jobs, &format!("sleep {delay_s}\n"), "")
    }

    /// A distccd whose compiles each take `delay_s` longer and that
    /// records when each starts and ends (`peak` reads it): what a farm
    /// host really ran, whoever sent it.
    pub fn start_recording(env: &TestEnv, jobs: u32, delay_s: f64) -> Distccd {
        let record = tempfile::Builder::new()
            .prefix("tcpb-record")
            .tempfile()
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        std::fs::set_permissions(&record, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        let r = record.display();
        let before = format!("echo \"start $(date +%s%N)\" >> {r}\nsleep {delay_s}\n");
        let after = format!("echo \"end $(date +%s%N)\" >> {r}\n");
        let mut d = Distccd::start_wrapped(env, jobs, &before, &after);
        d.record = Some(record);
        d
    }

    /// The most compiles this host ran at once (`start_recording`), and
    /// how many it ran.
    pub fn peak(&self) -> (usize, usize) {
        let text = std::fs::read_to_string(self.record.as_ref().expect("a recording distccd"))
            .unwrap_or_default();
        let mut events: Vec<(u128, i32)> = text
            .lines()
            .filter_map(|l| {
                let (what, at) = l.split_once(' ')?;
                let at: u128 = at.trim().parse().ok()?;
                Some((at, if what == "start" { 1 } else { -1 }))
            })
            .collect();
        // At the same instant an end comes before a start.
        events.sort();
        let (mut now, mut peak) = (0i32, 0i32);
        for (_, d) in &events {
            now += d;
            peak = peak.max(now);
        }
        let runs = events.iter().filter(|e| e.1 == 1).count();
        (peak as usize, runs)
    }

    /// When each compile started (`start_recording`), in nanoseconds
    /// since the epoch.
    pub fn starts(&self) -> Vec<u128> {
        let text = std::fs::read_to_string(self.record.as_ref().expect("a recording distccd"))
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix("start ")?.trim().parse().ok())
            .collect()
    }

    /// A distccd whose compiler runs `before`, then gcc, then `after`.
    fn start_wrapped(env: &TestEnv, jobs: u32, before: &str, after: &str) -> Distccd {
        // distccd drops to its own user: the wrapper must be readable by it.
        let dir = tempfile::Builder::new()
            .prefix("tcpb-slow")
            .tempdir()
            .unwrap()
            .keep();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
        };
        mode(&dir, 0o755);
        let real = which::which("x86_64-linux-gnu-gcc").expect("gcc");
        for name in ["x86_64-linux-gnu-gcc", "gcc", "cc"] {
            let w = dir.join(name);
            let text = format!(
                "#!/bin/sh\n{before}{} \"$@\"\nrc=$?\n{after}exit $rc\n",
                real.display()
            );
            std::fs::write(&w, text).unwrap();
            mode(&w, 0o755);
        }
        for _ in 0..10 {
            if let Some(mut d) = Distccd::spawn(env, free_port(), jobs, Some(&dir)) {
                d.extra_dir = Some(dir);
                return d;
            }
        }
        panic!("could not start a wrapped distccd");
    }

    fn spawn(env: &TestEnv, port: u16, jobs: u32, path_prefix: Option<&Path>) -> Option<Distccd> {
        let log = env.path(&format!("distccd-{port}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("distccd");
        // distccd drops to its own user when started as root: the directory
        // must be writable by it, as /tmp is.
        let tmp = tempfile::Builder::new()
            .prefix("tcpb-distccd")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        cmd.env("TMPDIR", tmp.path());
        if let Some(dir) = path_prefix {
            let path = std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
            ))
            .unwrap();
            cmd.env("PATH", path);
        }
        let child = cmd
            .args(["--daemon", "--no-detach", "--listen", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--allow", "127.0.0.1", "--jobs"])
            .arg(jobs.to_string())
            .args(["--log-stderr", "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("spawn distccd");
        let mut d = Distccd {
            port,
            child,
            log,
            extra_dir: None,
            record: None,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&d.log).unwrap_or_default();
            if text.contains("listening on") {
                return Some(d);
            }
            if d.child.try_wait().unwrap().is_some() || text.contains("Address already in use") {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = d.child.kill();
        None
    }

    /// Kills the daemon and its running jobs at once, like a host dying.
    pub fn kill(&mut self) {
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Stops the daemon and its workers (SIGSTOP): a host that hangs,
    /// still accepting connections.
    pub fn stop(&self) {
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGSTOP) };
    }

    /// Lets a stopped daemon run again.
    pub fn resume(&self) {
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGCONT) };
    }

    /// `127.0.0.1:PORT/SLOTS`.
    pub fn host(&self, slots: u32) -> String {
        format!("127.0.0.1:{}/{slots}", self.port)
    }

    pub fn name(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Compiles this distccd finished successfully. distccd logs a job
    /// after answering it, so this waits (at most 5 s) for `expect`.
    pub fn compiles_ok(&self, expect: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = self.log().matches("COMPILE_OK").count();
            if n >= expect || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Distccd {
    fn drop(&mut self) {
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let _ = self.child.wait();
        if let Some(dir) = &self.extra_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(r) = &self.record {
            let _ = std::fs::remove_file(r);
        }
    }
}

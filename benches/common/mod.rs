//! What the benchmarks share: free loopback ports, a private broker, and
//! percentiles.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod etcd;
mod jobs;
mod procstat;
mod sharedhost;
mod simfarm;
#[allow(unused_imports)]
pub use etcd::{count, db_size, revision, start_etcd, start_etcd_with};
#[allow(unused_imports)]
pub use jobs::Profile;
pub use procstat::cpu_secs;
#[allow(unused_imports)]
pub use sharedhost::{HostCount, Oversubscribed, SharedFarm};
#[allow(unused_imports)]
pub use simfarm::{Host, chmod, farm_jobs, local_compiler, objects_in, start_host, write_job_set};

/// One simulated farm of the farm benchmark and its simulation: its name,
/// (speed, slots) per host, and the mean job work in ms of its job sets.
pub struct FarmSpec {
    pub name: &'static str,
    pub hosts: &'static [(f64, u32)],
    pub mean_ms: f64,
}

/// The two farms: speeds 4, 2 and 1, and three equal hosts.
pub const FARMS: [FarmSpec; 2] = [
    FarmSpec {
        name: "heterogeneous",
        hosts: &[(4.0, 2), (2.0, 2), (1.0, 4)],
        mean_ms: 1000.0,
    },
    FarmSpec {
        name: "uniform",
        hosts: &[(1.0, 3), (1.0, 3), (1.0, 2)],
        mean_ms: 500.0,
    },
];

impl FarmSpec {
    /// Slots of the whole farm.
    pub fn slots(&self) -> u32 {
        self.hosts.iter().map(|(_, n)| n).sum()
    }

    /// Work per second the farm does with every slot busy.
    pub fn capacity(&self) -> f64 {
        self.hosts.iter().map(|(s, n)| s * *n as f64).sum()
    }

    /// The fastest host's speed.
    pub fn fastest(&self) -> f64 {
        self.hosts.iter().map(|(s, _)| *s).fold(0.0, f64::max)
    }
}

/// The `tcpb` binary under test.
pub const TCPB: &str = env!("CARGO_BIN_EXE_tcpb");

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A broker of its own, with private runtime, state and config; stopped
/// when dropped.
pub struct Broker {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Broker {
    /// Starts `tcpb broker` with `config` as its config.toml.
    pub fn start(config: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.toml"), config).expect("config");
        let log = std::fs::File::create(dir.path().join("broker.log")).expect("log");
        let mut cmd = Command::new(TCPB);
        env(&mut cmd, dir.path());
        let child = cmd
            .arg("broker")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tcpb broker");
        let b = Broker { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(b.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not start: {}",
                b.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        b
    }

    /// Its control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/broker.sock")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Resident and peak memory in KiB, from /proc.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// CPU seconds (user + system) the broker has used, from /proc.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.child.id())
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Environment for a `tcpb` process that should use this broker.
    pub fn env(&self, cmd: &mut Command) {
        env(cmd, self.dir.path());
    }
}

/// Environment for a `tcpb` process whose runtime, state and config are
/// `root`'s `run`, `state` and `config.toml`, with no farm unless set
/// after.
pub fn env(cmd: &mut Command, root: &Path) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("TCPB_") || k.starts_with("DISTCC_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TCPB_RUNTIME_DIR", root.join("run"))
        .env("TCPB_STATE_DIR", root.join("state"))
        .env("TCPB_CONFIG", root.join("config.toml"))
        .env("DISTCC_HOSTS", "");
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percentiles of durations, in microseconds: (p50, p90, p99, max).
pub fn percentiles(mut v: Vec<Duration>) -> [f64; 4] {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    [at(0.5), at(0.9), at(0.99), at(1.0)]
}

/// The median of `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// True when `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    which::which(cmd).is_ok()
}

/// Says loudly that a peer is missing, and how to install it.
pub fn skipped(what: &str, cmd: &str, package: &str) {
    eprintln!(
        "\n*** SKIPPED {what}: `{cmd}` is not installed (apt-get install -y {package}) ***\n"
    );
}

/// A child process killed when dropped, with its process group when it
/// leads one (distccd's workers).
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        // SAFETY: getpgid and kill take plain integers.
        unsafe {
            if libc::getpgid(pid) == pid {
                libc::kill(-pid, libc::SIGTERM);
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts HAProxy in TCP mode on a free loopback port in front of
/// `servers`, given as (port, weight, maxconn; 0 for no limit), balanced
/// by `leastconn`. Its config goes to `dir`.
pub fn haproxy(dir: &Path, servers: &[(u16, u32, u32)]) -> (Guard, u16) {
    let port = free_port();
    let mut cfg = format!(
        "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10m\n  \
         timeout server 10m\n  timeout queue 10m\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\
         backend b\n  balance leastconn\n"
    );
    for (i, (p, weight, maxconn)) in servers.iter().enumerate() {
        let limit = if *maxconn > 0 {
            format!(" maxconn {maxconn}")
        } else {
            String::new()
        };
        cfg.push_str(&format!(
            "  server h{i} 127.0.0.1:{p} weight {weight}{limit}\n"
        ));
    }
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, cfg).expect("haproxy.cfg");
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).expect("haproxy.log"))
        .spawn()
        .expect("start haproxy");
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "haproxy did not start: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, port)
}

/// Starts a real distccd on a free loopback port with `jobs` slots, its
/// log in `log` and, if given, `path` as its PATH (a compiler wrapper).
/// Retries a few ports, in case another process takes one first.
pub fn distccd(log: &Path, jobs: u32, path: Option<&str>) -> (Guard, u16) {
    use std::os::unix::process::CommandExt;
    for _ in 0..10 {
        let port = free_port();
        let mut cmd = Command::new("distccd");
        cmd.args([
            "--daemon",
            "--no-detach",
            "--listen",
            "127.0.0.1",
            "--allow",
            "127.0.0.1",
            "--log-stderr",
            "--log-level",
            "info",
        ])
        .args(["--port", &port.to_string(), "--jobs", &jobs.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("distccd log"))
        .process_group(0);
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let guard = Guard(cmd.spawn().expect("start distccd"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (guard, port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("distccd did not start");
}

/// Spearman's rank correlation of the pairs (ties broken by position).
pub fn spearman(pairs: &[(f64, f64)]) -> f64 {
    let ranks = |key: &dyn Fn(&(f64, f64)) -> f64| {
        let mut idx: Vec<usize> = (0..pairs.len()).collect();
        idx.sort_by(|a, b| key(&pairs[*a]).total_cmp(&key(&pairs[*b])));
        let mut r = vec![0.0; pairs.len()];
        for (rank, i) in idx.into_iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    };
    let (a, b) = (ranks(&|p| p.0), ranks(&|p| p.1));
    let n = pairs.len() as f64;
    let d2: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

//! Shared test harness: private directories per test, real distccd
//! instances on 127.0.0.1 with ports chosen at run time, and helpers to
//! build the fixture project and compare objects.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const TCPB: &str = env!("CARGO_BIN_EXE_tcpb");
pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hello");

/// One test's world: its own HOME, runtime, state and config.
pub struct TestEnv {
    pub dir: TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("tcpb-test")
            .tempdir()
            .unwrap();
        for d in ["home", "run", "state", "config", "work"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let env = TestEnv { dir };
        env.write_config("[broker]\nidle_exit_s = 120\n");
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.path("run/tcpb")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("state/broker.log")).unwrap_or_default()
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.path("config/config.toml"), text).unwrap();
    }

    /// `program` with the inherited DISTCC_*/TCPB_* stripped and this
    /// test's directories set. DISTCC_HOSTS is empty (no farm) unless set.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("DISTCC_") || k.starts_with("TCPB_") || k.starts_with("XDG_") {
                cmd.env_remove(&*k);
            }
        }
        cmd.env("HOME", self.path("home"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("TCPB_STATE_DIR", self.path("state"))
            .env("TCPB_CONFIG", self.path("config/config.toml"))
            .env("DISTCC_HOSTS", "")
            .current_dir(self.path("work"));
        cmd
    }

    pub fn tcpb(&self) -> Command {
        self.cmd(TCPB)
    }

    /// `tcpb status --json`, parsed.
    pub fn status(&self, hosts: &str) -> serde_json::Value {
        let out = self
            .tcpb()
            .args(["status", "--json"])
            .env("DISTCC_HOSTS", hosts)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls `status` until `pred` holds; panics after `limit`.
    pub fn wait_status(
        &self,
        hosts: &str,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.status(hosts);
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "status never matched: {s:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The number of brokers that have started in this test's directories.
    pub fn brokers_started(&self) -> usize {
        self.log().matches("broker started").count()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = self
            .tcpb()
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Returns whether `distccd` is installed. Under CI=true it must be.
pub fn have_distccd() -> bool {
    if which::which("distccd").is_ok() && which::which("distcc").is_ok() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("distcc/distccd are not installed, and CI=true: .ci/run must install them");
    }
    eprintln!(
        "\n!!!!!!!!!! SKIPPED: distccd/distcc not installed (apt-get install distcc) !!!!!!!!!!\n"
    );
    false
}

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
            std::fs::write(
                &w,
                format!(
                    "#!/bin/sh\nsleep {delay_s}\nexec {} \"$@\"\n",
                    real.display()
                ),
            )
            .unwrap();
            mode(&w, 0o755);
        }
        for _ in 0..10 {
            if let Some(mut d) = Distccd::spawn(env, free_port(), jobs, Some(&dir)) {
                d.extra_dir = Some(dir);
                return d;
            }
        }
        panic!("could not start a slow distccd");
    }

    fn spawn(env: &TestEnv, port: u16, jobs: u32, path_prefix: Option<&Path>) -> Option<Distccd> {
        let log = env.path(&format!("distccd-{port}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("distccd");
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
    }
}

/// Compiles finished on all of `farm`, waiting (at most 5 s) for `expect`.
pub fn farm_compiles(farm: &[&Distccd], expect: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n: usize = farm.iter().map(|d| d.compiles_ok(0)).sum();
        if n >= expect || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies the fixture project into `dest`.
pub fn copy_fixture(dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(FIXTURE).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".c") || n.ends_with(".h") || n == "Makefile" {
            std::fs::copy(e.path(), dest.join(&name)).unwrap();
        }
    }
}

/// The fixture's source files.
pub fn fixture_sources() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(FIXTURE)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".c"))
        .collect();
    v.sort();
    v
}

/// Builds the fixture in `dir` with plain gcc: the reference objects.
pub fn reference_build(dir: &Path) {
    copy_fixture(&dir.join("src"));
    reference_objects(&dir.join("src"), dir);
}

/// The fixture's object names.
pub fn fixture_objects() -> Vec<String> {
    fixture_sources()
        .iter()
        .map(|s| s.replace(".c", ".o"))
        .collect()
}

/// Asserts every fixture object in `got` is byte-identical to the one in `want`.
pub fn assert_same_objects(want: &Path, got: &Path) {
    assert_objects_match(&fixture_objects(), want, got);
}

pub fn output_text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Reads a child's whole stderr.
pub fn read_all(r: &mut impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

/// Writes `n` C files that take gcc -O2 a few hundred ms each, and a
/// Makefile that compiles them all. Returns the object names.
pub fn heavy_project(dir: &Path, n: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut objs = Vec::new();
    for f in 0..n {
        let mut src = String::from("#include <stdint.h>\n");
        for g in 0..4 {
            src.push_str(&format!("uint64_t f{f}_{g}(uint64_t x) {{\n"));
            for i in 0..100u64 {
                let k = (i * 2654435761 + f as u64) % 1000003 + 3;
                src.push_str(&format!(
                    "  x = (x * {k}u) ^ (x >> {}); if (x % {}) x += {i};\n",
                    i % 31 + 1,
                    i + 7
                ));
            }
            src.push_str("  return x;\n}\n");
        }
        std::fs::write(dir.join(format!("h{f}.c")), src).unwrap();
        objs.push(format!("h{f}.o"));
    }
    let mk = format!(
        "OBJS := {}\nall: $(OBJS)\n%.o: %.c\n\t$(CC) -O2 -c $< -o $@\n",
        objs.join(" ")
    );
    std::fs::write(dir.join("Makefile"), mk).unwrap();
    objs
}

/// Runs `cmd` to the end, killing it after `limit` (then panicking).
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: killing the process group we created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            panic!("command did not finish within {limit:?}");
        }
    }
}

/// Builds `objs` in `reference` with plain gcc (same Makefile).
pub fn reference_objects(project: &Path, reference: &Path) {
    std::fs::create_dir_all(reference).unwrap();
    for e in std::fs::read_dir(project).unwrap().flatten() {
        std::fs::copy(e.path(), reference.join(e.file_name())).unwrap();
    }
    let out = Command::new("make")
        .args(["-s", "-j2", "CC=gcc"])
        .current_dir(reference)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reference build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts each of `objs` is identical in both directories.
pub fn assert_objects_match(objs: &[String], want: &Path, got: &Path) {
    for o in objs {
        let a = std::fs::read(want.join(o)).unwrap();
        let b = std::fs::read(got.join(o)).unwrap_or_else(|e| panic!("{o}: {e}"));
        assert!(a == b, "{o} differs from the local build");
    }
}

/// One host's entry in a status JSON.
pub fn host_of(status: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    status["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["name"] == name)
        .cloned()
}

/// `make -j8 CC="tcpb gcc"` in `dir` with `hosts` as the farm.
pub fn make_through_tcpb(env: &TestEnv, dir: &Path, hosts: &str) -> Command {
    let mut cmd = env.cmd("make");
    cmd.args(["-j8", &format!("CC={TCPB} gcc")])
        .current_dir(dir)
        .env("DISTCC_HOSTS", hosts);
    cmd
}

/// Runs that make in the background (bounded to 240 s).
pub fn spawn_build(env: &TestEnv, dir: &Path, hosts: &str) -> std::thread::JoinHandle<Output> {
    let cmd = make_through_tcpb(env, dir, hosts);
    std::thread::spawn(move || output_within(cmd, Duration::from_secs(240)))
}

/// Polls `f` every 10 ms until it holds; panics after `limit`. Returns the wait.
pub fn wait_for(limit: Duration, what: &str, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

//! Shared test harness: private directories per test, real distccd
//! instances on 127.0.0.1 with ports chosen at run time, and helpers to
//! build the fixture project and compare objects.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

mod distccd;
mod etcd;
mod sshd;
mod team;
pub use distccd::*;
#[allow(unused_imports)] // only the team tests use it
pub use etcd::*;
#[allow(unused_imports)] // only the ssh tests use it
pub use sshd::*;
#[allow(unused_imports)] // only the team tests use it
pub use team::*;

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
    have_component(&["distccd", "distcc"], "distcc")
}

/// True when every one of `bins` is on PATH. Outside CI a missing one
/// skips the test with a loud line; under `CI=true` it fails.
pub fn have_component(bins: &[&str], package: &str) -> bool {
    let missing: Vec<&str> = bins
        .iter()
        .copied()
        .filter(|b| which::which(b).is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join("/");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{missing} not installed, and CI=true: .ci/run must install {package}");
    }
    eprintln!(
        "\n!!!!!!!!!! SKIPPED: {missing} not installed (apt-get install {package}) !!!!!!!!!!\n"
    );
    false
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
    write_makefile(dir, &objs);
    objs
}

/// A Makefile in `dir` that compiles each of `objs` from its `.c` with -O2.
pub fn write_makefile(dir: &Path, objs: &[String]) {
    let mk = format!(
        "OBJS := {}\nall: $(OBJS)\n%.o: %.c\n\t$(CC) -O2 -c $< -o $@\n",
        objs.join(" ")
    );
    std::fs::write(dir.join("Makefile"), mk).unwrap();
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

/// `tcpb gcc -O2 -c z.c -o z.o` on `hosts`, its distcc behind a gate: a
/// script that writes its pid to `gate.pid` and its `DISTCC_HOSTS` to
/// `gate.hosts`, then waits for `gate.go` to exist (30 s at most, so a
/// failed test leaves nothing behind) before exec'ing the real distcc.
/// stderr is piped.
pub fn gated_compile(env: &TestEnv, hosts: &str) -> Command {
    let real = which::which("distcc").expect("distcc on PATH");
    let script = env.path("gated-distcc");
    let (pid, list, go) = (
        env.path("gate.pid"),
        env.path("gate.hosts"),
        env.path("gate.go"),
    );
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > '{pid}.tmp' && mv '{pid}.tmp' '{pid}'\n\
             echo \"$DISTCC_HOSTS\" > '{list}.tmp' && mv '{list}.tmp' '{list}'\n\
             i=0; while [ ! -e '{go}' ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done\n\
             exec '{real}' \"$@\"\n",
            pid = pid.display(),
            list = list.display(),
            go = go.display(),
            real = real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = env.tcpb();
    cmd.args(["gcc", "-O2", "-c", "z.c", "-o", "z.o"])
        .env("DISTCC_HOSTS", hosts)
        .env("TCPB_DISTCC", &script)
        .stderr(Stdio::piped());
    cmd
}

/// Writes `name` in the work directory.
pub fn write_c(env: &TestEnv, name: &str, body: &str) {
    std::fs::write(env.path("work").join(name), body).unwrap();
}

/// `src` compiled by plain `gcc -O2 -c`.
pub fn local_object(env: &TestEnv, src: &str) -> Vec<u8> {
    let out = env.path(&format!("{src}.ref.o"));
    let st = Command::new("gcc")
        .args(["-O2", "-c", src, "-o"])
        .arg(&out)
        .current_dir(env.path("work"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

/// Asserts `obj` in the work directory is what plain gcc makes of `src`.
pub fn assert_same_object(env: &TestEnv, obj: &str, src: &str) {
    let got = std::fs::read(env.path("work").join(obj)).unwrap();
    assert!(
        got == local_object(env, src),
        "{obj} differs from a local gcc -O2 build of {src}"
    );
}

/// True when every one of `tools` is on PATH. Outside CI a missing one is a
/// loud skip; under CI=true it is a failure (`.ci/run` installs them).
pub fn have_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which::which(t).is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {missing:?} not installed: .ci/run must install them");
    }
    eprintln!("\n!!!!!!!!!! SKIPPED: {missing:?} not installed !!!!!!!!!!\n");
    false
}

/// Runs `cmd` (killed after 180 s), asserting success; returns stdout.
pub fn run_ok(cmd: Command) -> String {
    let what = format!("{cmd:?}");
    let out = output_within(cmd, Duration::from_secs(180));
    assert!(out.status.success(), "{what}:\n{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// True when this test can act as another user (root with `runuser`).
/// Outside CI a non-root run skips loudly; under CI it must be root.
pub fn can_switch_user() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root && which::which("runuser").is_ok() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: the security tests must run as root with runuser");
    }
    eprintln!("\n!!!!!!!!!! SKIPPED: needs root and runuser to act as another user !!!!!!!!!!\n");
    false
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The relay port distcc was given by a gated compile.
pub fn gated_port(env: &TestEnv) -> u16 {
    wait_for(Duration::from_secs(10), "the relay port", || {
        env.path("gate.hosts").exists()
    });
    let line = std::fs::read_to_string(env.path("gate.hosts")).unwrap();
    let port = line.trim().trim_start_matches("127.0.0.1:");
    port.split('/').next().unwrap().parse().unwrap()
}

/// A child's stderr as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

//! Per-compile overhead: a trivial C file compiled against the same real
//! distccd on loopback, alternating `tcpb gcc -c` with plain `distcc gcc -c`
//! and with `distcc` through HAProxy (a relay peer), many runs; medians and
//! their differences. Also `tcpb --version` against `/bin/true`, for the
//! cost of starting the wrapper itself.
//!
//! Run: `cargo bench --bench compile` (`-- --runs N`).

#[path = "common/mod.rs"]
mod common;

use common::{Broker, TCPB, median};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One way of compiling.
struct Way {
    name: &'static str,
    cmd: Command,
    times: Vec<f64>,
}

impl Way {
    fn new(name: &'static str, program: &str, args: &[&str], dir: &Path) -> Way {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("TCPB_") || k.starts_with("DISTCC_") {
                cmd.env_remove(k);
            }
        }
        Way {
            name,
            cmd,
            times: Vec::new(),
        }
    }

    /// Runs it once; milliseconds.
    fn run(&mut self) -> f64 {
        let t = Instant::now();
        let out = self.cmd.output().expect("run");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert!(
            out.status.success(),
            "{} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        self.times.push(ms);
        ms
    }

    fn median(&self) -> f64 {
        median(self.times.clone())
    }
}

/// Remote jobs the broker counted on its farm host.
fn remote_jobs(broker: &Broker) -> u64 {
    let mut cmd = Command::new(TCPB);
    broker.env(&mut cmd);
    let out = cmd
        .args(["status", "--json"])
        .output()
        .expect("tcpb status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    v["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["local_only"] != true)
        .map(|h| h["jobs"].as_u64().unwrap_or(0))
        .sum()
}

/// The ways to compile `t.c` in `root` against the distccd on `port`, in
/// the order they run and print: tcpb, plain distcc, distcc through
/// HAProxy when it is installed (with the guard that stops it), a local
/// compile.
fn ways(root: &Path, port: u16, broker: &Broker) -> (Vec<Way>, Option<common::Guard>) {
    let distcc_dir = root.join("distcc");
    std::fs::create_dir_all(&distcc_dir).expect("DISTCC_DIR");
    let compile = |out: &'static str| [&["gcc", "-c", "t.c", "-o"][..], &[out]].concat();
    let hosts = format!("127.0.0.1:{port}/4");
    let mut tcpb = Way::new("tcpb gcc", TCPB, &compile("a.o"), root);
    broker.env(&mut tcpb.cmd);
    tcpb.cmd.env("DISTCC_HOSTS", &hosts);
    let mut distcc = Way::new("distcc gcc", "distcc", &compile("b.o"), root);
    distcc
        .cmd
        .env("DISTCC_HOSTS", &hosts)
        .env("DISTCC_DIR", &distcc_dir);
    let local = Way::new("gcc (local)", "gcc", &compile("c.o")[1..], root);
    let mut ways = vec![tcpb, distcc];
    let guard = if common::have("haproxy") {
        let (guard, hp) = common::haproxy(root, &[(port, 1, 0)]);
        let mut via = Way::new("distcc via HAProxy", "distcc", &compile("d.o"), root);
        via.cmd
            .env("DISTCC_HOSTS", format!("127.0.0.1:{hp}/4"))
            .env("DISTCC_DIR", &distcc_dir);
        ways.push(via);
        Some(guard)
    } else {
        common::skipped("the HAProxy row", "haproxy", "haproxy");
        None
    };
    ways.push(local);
    (ways, guard)
}

/// Prints each way's median against plain distcc (`ways[1]`).
fn report(ways: &[Way], runs: usize) {
    println!(
        "per-compile overhead: trivial C file, distccd on loopback, {runs} runs each, interleaved"
    );
    let base = ways[1].median();
    println!("{:<20} {:>10} {:>16}", "way", "median ms", "vs distcc");
    for w in ways {
        let m = w.median();
        println!(
            "{:<20} {:>10.2} {:>+9.2} ms {:>+5.1}%",
            w.name,
            m,
            m - base,
            100.0 * (m - base) / base
        );
    }
}

/// The wrapper's own start-up against a process that does nothing.
fn start_up(root: &Path, runs: usize) {
    let mut version = Way::new("tcpb --version", TCPB, &["--version"], root);
    let mut truth = Way::new("/bin/true", "/bin/true", &[], root);
    for _ in 0..runs {
        version.run();
        truth.run();
    }
    println!(
        "start-up: tcpb --version {:.3} ms, /bin/true {:.3} ms (+{:.3} ms), medians of {runs} runs",
        version.median(),
        truth.median(),
        version.median() - truth.median(),
    );
}

fn main() {
    let mut runs = 300usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs);
        }
    }
    for (cmd, package) in [("distccd", "distcc"), ("distcc", "distcc"), ("gcc", "gcc")] {
        assert!(
            common::have(cmd),
            "{cmd} is needed: apt-get install -y {package}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("t.c"), "int f(int x) { return x + 1; }\n").expect("t.c");
    let (_daemon, port) = common::distccd(&root.join("distccd.log"), 4, None);
    let broker = Broker::start("");
    let (mut ways, _haproxy) = ways(root, port, &broker);
    // Warm up every path (the broker adopts the farm, caches fill).
    for w in &mut ways {
        for _ in 0..5 {
            w.run();
        }
        w.times.clear();
    }
    let before = remote_jobs(&broker);
    for _ in 0..runs {
        for w in &mut ways {
            w.run();
        }
    }
    let sent = remote_jobs(&broker) - before;
    assert_eq!(sent, runs as u64, "every tcpb compile went to distccd");
    let objects: Vec<Vec<u8>> = ["a.o", "b.o", "c.o"]
        .iter()
        .map(|o| std::fs::read(root.join(o)).expect("object"))
        .collect();
    assert!(objects.windows(2).all(|w| w[0] == w[1]), "objects differ");
    report(&ways, runs);
    start_up(root, runs * 3);
}

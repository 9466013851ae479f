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
    let distcc_dir = root.join("distcc");
    std::fs::create_dir_all(&distcc_dir).expect("DISTCC_DIR");
    let compile = ["gcc", "-c", "t.c", "-o"];

    let mut tcpb = Way::new("tcpb gcc", TCPB, &[&compile[..], &["a.o"]].concat(), root);
    broker.env(&mut tcpb.cmd);
    tcpb.cmd.env("DISTCC_HOSTS", format!("127.0.0.1:{port}/4"));
    let mut distcc = Way::new(
        "distcc gcc",
        "distcc",
        &[&compile[..], &["b.o"]].concat(),
        root,
    );
    distcc
        .cmd
        .env("DISTCC_HOSTS", format!("127.0.0.1:{port}/4"))
        .env("DISTCC_DIR", &distcc_dir);
    let mut local = Way::new(
        "gcc (local)",
        "gcc",
        &[&compile[1..], &["c.o"]].concat(),
        root,
    );
    let mut ways = Vec::new();
    let _haproxy = if common::have("haproxy") {
        let (guard, hp) = common::haproxy(root, &[(port, 1, 0)]);
        let mut via = Way::new(
            "distcc via HAProxy",
            "distcc",
            &[&compile[..], &["d.o"]].concat(),
            root,
        );
        via.cmd
            .env("DISTCC_HOSTS", format!("127.0.0.1:{hp}/4"))
            .env("DISTCC_DIR", &distcc_dir);
        ways.push(via);
        Some(guard)
    } else {
        common::skipped("the HAProxy row", "haproxy", "haproxy");
        None
    };
    // Warm up every path (the broker adopts the farm, caches fill).
    for w in [&mut tcpb, &mut distcc, &mut local]
        .into_iter()
        .chain(ways.iter_mut())
    {
        for _ in 0..5 {
            w.run();
        }
        w.times.clear();
    }
    let before = remote_jobs(&broker);
    for _ in 0..runs {
        tcpb.run();
        distcc.run();
        for w in &mut ways {
            w.run();
        }
        local.run();
    }
    let sent = remote_jobs(&broker) - before;
    assert_eq!(sent, runs as u64, "every tcpb compile went to distccd");
    let objects: Vec<Vec<u8>> = ["a.o", "b.o", "c.o"]
        .iter()
        .map(|o| std::fs::read(root.join(o)).expect("object"))
        .collect();
    assert!(objects.windows(2).all(|w| w[0] == w[1]), "objects differ");

    println!(
        "per-compile overhead: trivial C file, distccd on loopback, {runs} runs each, interleaved"
    );
    let base = distcc.median();
    println!("{:<20} {:>10} {:>16}", "way", "median ms", "vs distcc");
    for w in [&tcpb, &distcc]
        .into_iter()
        .chain(ways.iter())
        .chain([&local])
    {
        let m = w.median();
        println!(
            "{:<20} {:>10.2} {:>+9.2} ms {:>+5.1}%",
            w.name,
            m,
            m - base,
            100.0 * (m - base) / base
        );
    }

    let mut version = Way::new("tcpb --version", TCPB, &["--version"], root);
    let mut truth = Way::new("/bin/true", "/bin/true", &[], root);
    for _ in 0..runs * 3 {
        version.run();
        truth.run();
    }
    println!(
        "start-up: tcpb --version {:.3} ms, /bin/true {:.3} ms (+{:.3} ms), medians of {} runs",
        version.median(),
        truth.median(),
        version.median() - truth.median(),
        runs * 3
    );
}

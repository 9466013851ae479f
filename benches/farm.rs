//! Farm benchmark: the same build through tcpb, plain distcc and HAProxy
//! `leastconn`, on a simulated farm of real distccd instances.
//!
//! Each simulated host is a distccd on 127.0.0.1 whose compiler is a small
//! wrapper: it reads the job's declared work (`tcpb_work_ms` in the
//! preprocessed source), sleeps work ÷ the host's speed, then really
//! compiles. Job work follows a heavy-tailed (Pareto) distribution, or
//! with `--profile openssl|libgit2|protobuf` the compile times and source sizes
//! measured on a real project's build (`benches/data`).
//!
//! Run: `cargo bench --bench farm` (options: `--reps N`, `--jobs N`,
//! `--quick`, `--only heterogeneous|uniform`, `--j N`; `--j 0` runs only
//! the two-build memory comparison, `--no-memory` skips it, `--memory-j
//! 16,80` sets its -j levels (default twice the slots); `--seed N`
//! another job set). Needs distcc, distccd, haproxy and make; says loudly what it
//! skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use common::{
    FARMS, FarmSpec, Host, Profile, TCPB, chmod, free_port, median, spearman, start_host,
    write_job_set,
};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tool {
    Tcpb,
    Distcc,
    Haproxy,
}

struct World {
    root: PathBuf,
    project: PathBuf,
    hosts: Vec<Host>,
    haproxy: Option<(Child, u16)>,
}

impl World {
    fn hosts_line(&self) -> String {
        // Fastest first: the best order a distcc user can give.
        let mut hs: Vec<&Host> = self.hosts.iter().collect();
        hs.sort_by(|a, b| b.speed.total_cmp(&a.speed));
        hs.iter()
            .map(|h| format!("127.0.0.1:{}/{}", h.port, h.slots))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn tcpb_env(&self, cmd: &mut Command, state: &Path) {
        cmd.env("TCPB_RUNTIME_DIR", self.root.join("tcpb-run"))
            .env("TCPB_STATE_DIR", state)
            .env("TCPB_CONFIG", self.root.join("tcpb.toml"));
    }

    /// Jobs the farm's hosts have compiled so far.
    fn farm_jobs(&self) -> usize {
        common::farm_jobs(&self.hosts)
    }

    /// `make -jJ` of the project through `tool`, with distcc's files in
    /// `distcc_dir`.
    fn make(&self, tool: Tool, j: u32, tcpb_state: &Path, distcc_dir: &Path) -> Command {
        let mut cmd = Command::new("make");
        cmd.args(["-s", &format!("-j{j}")])
            .current_dir(&self.project);
        for (k, _) in std::env::vars() {
            if k.starts_with("DISTCC_") || k.starts_with("TCPB_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("DISTCC_DIR", distcc_dir);
        match tool {
            Tool::Tcpb => {
                cmd.arg(format!("CC={TCPB} gcc"))
                    .env("DISTCC_HOSTS", self.hosts_line());
                self.tcpb_env(&mut cmd, tcpb_state);
            }
            Tool::Distcc => {
                cmd.arg("CC=distcc gcc")
                    .env("DISTCC_HOSTS", self.hosts_line());
            }
            Tool::Haproxy => {
                let port = self.haproxy.as_ref().expect("haproxy").1;
                cmd.arg("CC=distcc gcc")
                    .env("DISTCC_HOSTS", format!("127.0.0.1:{port}/{j}"));
            }
        }
        cmd
    }

    /// One clean build through `tool`; its makespan.
    fn build(&self, tool: Tool, j: u32, tcpb_state: &Path) -> Duration {
        let before = self.farm_jobs();
        let clean = Command::new("make")
            .args(["-s", "clean"])
            .current_dir(&self.project)
            .status()
            .unwrap();
        assert!(clean.success());
        let dd = self.root.join(format!("distcc-dir-{}", free_port()));
        std::fs::create_dir_all(&dd).unwrap();
        let mut cmd = self.make(tool, j, tcpb_state, &dd);
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let took = started.elapsed();
        let _ = std::fs::remove_dir_all(&dd);
        assert!(
            out.status.success(),
            "{tool:?} -j{j} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.note_local_compiles(tool, j, &out.stderr, before);
        took
    }

    /// Says how many compiles of the last build did not run on the farm.
    fn note_local_compiles(&self, tool: Tool, j: u32, stderr: &[u8], farm_jobs_before: usize) {
        let fallbacks = String::from_utf8_lossy(stderr)
            .matches("failed to distribute")
            .count();
        if fallbacks > 0 {
            eprintln!("  note: {tool:?} -j{j}: {fallbacks} compiles fell back to local");
        }
        let objs = common::objects_in(&self.project);
        let remote = self.farm_jobs() - farm_jobs_before;
        if remote != objs {
            eprintln!("  note: {tool:?} -j{j}: {remote} of {objs} compiles ran on the farm");
        }
    }

    /// The speeds the broker has learned, fastest configured host first.
    fn learned(&self, state: &Path) -> String {
        let mut cmd = Command::new(TCPB);
        cmd.args(["status", "--json"]);
        self.tcpb_env(&mut cmd, state);
        let out = cmd.output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let Some(hosts) = v["hosts"].as_array() else {
            return "?".into();
        };
        let mut speeds: Vec<(f64, String)> = self
            .hosts
            .iter()
            .map(|h| {
                let name = format!("127.0.0.1:{}", h.port);
                let learned = hosts
                    .iter()
                    .find(|x| x["name"] == name.as_str())
                    .and_then(|x| x["learned_speed"].as_f64());
                let shown = learned.map_or("-".into(), |l| format!("{l:.2}"));
                (h.speed, format!("{}:{shown}", h.speed))
            })
            .collect();
        speeds.sort_by(|a, b| b.0.total_cmp(&a.0));
        speeds
            .into_iter()
            .map(|s| s.1)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// How well the broker's cost memory (`costs.json`, written when it
    /// stops) knows each file's declared work: the median of cost ÷ work,
    /// the 10%-90% spread around it, and the rank correlation of the two.
    fn memory_accuracy(&self, state: &Path, works: &[u64]) -> String {
        let text = std::fs::read_to_string(state.join("costs.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let mut pairs = Vec::new();
        for (i, w) in works.iter().enumerate() {
            let file = self.project.join(format!("j{i}.c"));
            let key = std::fs::canonicalize(&file).unwrap_or(file);
            if let Some(c) = v["files"][key.to_string_lossy().as_ref()].as_f64() {
                pairs.push((c, *w as f64 / 1000.0));
            }
        }
        if pairs.len() < 2 {
            return format!("{} of {} files remembered", pairs.len(), works.len());
        }
        let mut ratios: Vec<f64> = pairs.iter().map(|(c, w)| c / w).collect();
        ratios.sort_by(f64::total_cmp);
        let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
        let mid = at(0.5);
        format!(
            "{} files, cost / work {mid:.2} (10%-90%: {:.2}x-{:.2}x of it), rank correlation {:.2}",
            pairs.len(),
            at(0.1) / mid,
            at(0.9) / mid,
            spearman(&pairs)
        )
    }

    fn stop_tcpb(&self, state: &Path) {
        let mut cmd = Command::new(TCPB);
        cmd.arg("stop").stdout(Stdio::null());
        self.tcpb_env(&mut cmd, state);
        let _ = cmd.status();
    }
}

/// tcpb's config: the hosts' speeds, or (`speeds` false) none, so they
/// are learned.
fn write_tcpb_config(root: &Path, hosts: &[Host], speeds: bool) {
    let mut cfg = String::from("[broker]\nidle_exit_s = 600\n");
    for h in hosts.iter().filter(|_| speeds) {
        cfg.push_str(&format!(
            "[[host]]\nname = \"127.0.0.1:{}\"\nspeed = {:.1}\n",
            h.port, h.speed
        ));
    }
    std::fs::write(root.join("tcpb.toml"), cfg).unwrap();
}

fn start_haproxy(root: &Path, hosts: &[Host]) -> (Child, u16) {
    let port = free_port();
    let mut cfg = format!(
        "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 10m\n  \
         timeout server 10m\n  timeout queue 10m\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n\
         backend b\n  balance leastconn\n"
    );
    for (i, h) in hosts.iter().enumerate() {
        let w = (h.speed * 10.0).round() as u32;
        cfg.push_str(&format!(
            "  server h{i} 127.0.0.1:{} weight {w} maxconn {}\n",
            h.port, h.slots
        ));
    }
    let file = root.join("haproxy.cfg");
    std::fs::write(&file, cfg).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// What to run.
struct Opts {
    jobs: usize,
    reps: usize,
    only_j: Option<u32>,
    tools: Vec<Tool>,
    /// Where the job sets come from.
    profile: Profile,
    /// The job set (0: the one BENCHMARKS.md reports).
    seed: u64,
    /// Run the two-build comparison.
    memory: bool,
    /// Its -j levels (none given: twice the slots).
    memory_j: Vec<u32>,
    /// Only the farm of this name.
    only: Option<String>,
}

/// Runs every tool at every -j on one farm; prints the table.
fn run_farm(root: &Path, farm: &FarmSpec, opts: &Opts) {
    let project = root.join(format!("proj-{}", farm.name));
    let set = opts.profile.job_set(opts.jobs, farm.mean_ms, opts.seed);
    let works = write_job_set(&project, set);
    let hosts: Vec<Host> = farm
        .hosts
        .iter()
        .enumerate()
        .map(|(i, (s, n))| start_host(root, i, *s, *n))
        .collect();
    let haproxy = opts
        .tools
        .contains(&Tool::Haproxy)
        .then(|| start_haproxy(root, &hosts));
    write_tcpb_config(root, &hosts, true);
    let world = World {
        root: root.to_path_buf(),
        project,
        hosts,
        haproxy,
    };
    let bound = print_farm(farm, &works, opts.jobs);
    let levels: Vec<u32> = match opts.only_j {
        Some(0) => vec![],
        Some(j) => vec![j],
        None => vec![farm.slots() / 2, farm.slots(), farm.slots() * 2],
    };
    let total: f64 = works.iter().map(|w| *w as f64 / 1000.0).sum();
    for j in levels {
        run_level(&world, farm, j, opts, (bound, total));
    }
    if opts.memory {
        run_memory(&world, farm, opts, &works);
    }
    write_tcpb_config(root, &world.hosts, true);
    if let Some((mut h, _)) = world.haproxy {
        let _ = h.kill();
        let _ = h.wait();
    }
}

/// Prints the farm, its job set and the table's header; returns the
/// lower bound of a build.
fn print_farm(farm: &FarmSpec, works: &[u64], jobs: usize) -> f64 {
    let total: f64 = works.iter().map(|w| *w as f64 / 1000.0).sum();
    let fastest = farm.fastest();
    let longest = works.iter().copied().max().unwrap_or(0) as f64 / 1000.0;
    let bound = (total / farm.capacity()).max(longest / fastest);
    let spec: Vec<String> = farm.hosts.iter().map(|(s, n)| format!("{s}x{n}")).collect();
    println!(
        "\nfarm {}: speed x slots = {}; {jobs} jobs, total work {total:.1} s, longest {longest:.2} s",
        farm.name,
        spec.join(", ")
    );
    println!(
        "lower bound {bound:.2} s (total work / capacity, or longest job on the fastest host)"
    );
    println!(
        "{:>4}  {:<8}  {:>9}  {:>6}  {:>6}  each repetition",
        "-j", "tool", "makespan", "xLB", "util"
    );
    bound
}

/// Every tool at `-j j`, repeated; prints a row per tool.
fn run_level(world: &World, farm: &FarmSpec, j: u32, opts: &Opts, (bound, total): (f64, f64)) {
    let tools = &opts.tools;
    let mut times: Vec<(Tool, Vec<f64>)> = tools.iter().map(|t| (*t, Vec::new())).collect();
    for rep in 0..opts.reps {
        for k in 0..tools.len() {
            // Interleaved, and the order turns each round.
            let idx = (k + rep) % tools.len();
            let state = world
                .root
                .join(format!("tcpb-state-{}-{j}-{rep}", farm.name));
            let t = world.build(tools[idx], j, &state).as_secs_f64();
            times[idx].1.push(t);
            if tools[idx] == Tool::Tcpb {
                world.stop_tcpb(&state);
            }
        }
    }
    for (tool, ts) in &times {
        let m = median(ts.clone());
        let name = format!("{tool:?}").to_lowercase();
        let each: Vec<String> = ts.iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "{j:>4}  {name:<8}  {m:>8.2}s  {:>6.2}  {:>5.0}%  {}",
            m / bound,
            100.0 * total / farm.capacity() / m,
            each.join(" ")
        );
    }
}

/// The same tree twice through one broker: the second build knows each
/// file's cost (and the speeds it learned). With the speeds configured,
/// and left to be learned.
fn run_memory(world: &World, farm: &FarmSpec, opts: &Opts, works: &[u64]) {
    let memory_j = if opts.memory_j.is_empty() {
        vec![farm.slots() * 2]
    } else {
        opts.memory_j.clone()
    };
    for (j, speeds) in memory_j.iter().flat_map(|j| [(*j, true), (*j, false)]) {
        write_tcpb_config(&world.root, &world.hosts, speeds);
        let (mut firsts, mut seconds) = (Vec::new(), Vec::new());
        for rep in 0..opts.reps {
            let name = format!("tcpb-state-{}-memory-{j}-{speeds}-{rep}", farm.name);
            let state = world.root.join(name);
            firsts.push(world.build(Tool::Tcpb, j, &state).as_secs_f64());
            if rep == 0 {
                let learned = world.learned(&state);
                println!("  learned after a first build (true:learned): {learned}");
            }
            seconds.push(world.build(Tool::Tcpb, j, &state).as_secs_f64());
            world.stop_tcpb(&state);
            if rep == 0 {
                let accuracy = world.memory_accuracy(&state, works);
                println!("  memory after two builds: {accuracy}");
            }
        }
        // Each repetition's second build against its own first: the VM's
        // noise moves whole repetitions, so the pairs say more than medians.
        let paired: Vec<String> = firsts
            .iter()
            .zip(&seconds)
            .map(|(f, s)| format!("{:+.1}%", 100.0 * (s / f - 1.0)))
            .collect();
        let (first, second) = (median(firsts), median(seconds));
        println!(
            "tcpb -j{j}, speeds {}: first build {first:.2} s, second build {second:.2} s ({:+.1}%; each repetition {})",
            if speeds { "configured" } else { "learned  " },
            100.0 * (second / first - 1.0),
            paired.join(" ")
        );
    }
}

/// The tools to compare: tcpb and distcc always (exits loudly without
/// them), HAProxy when installed.
fn tools() -> Vec<Tool> {
    for (bin, what) in [
        ("distccd", "distcc"),
        ("distcc", "distcc"),
        ("make", "make"),
    ] {
        if which::which(bin).is_err() {
            eprintln!("\n!!!!! SKIPPED: {bin} is missing (apt-get install {what}) !!!!!\n");
            std::process::exit(2);
        }
    }
    let mut tools = vec![Tool::Tcpb, Tool::Distcc];
    if which::which("haproxy").is_ok() {
        tools.push(Tool::Haproxy);
    } else {
        eprintln!(
            "\n!!!!! HAProxy is missing (apt-get install haproxy): its column is SKIPPED !!!!!\n"
        );
    }
    tools
}

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let value = |name: &str| {
            let i = args.iter().position(|a| a == name)?;
            args.get(i + 1)
        };
        let opt = |name: &str, default: usize| {
            value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
        };
        let quick = args.iter().any(|a| a == "--quick");
        Opts {
            jobs: opt("--jobs", if quick { 40 } else { 80 }),
            reps: opt("--reps", if quick { 1 } else { 3 }),
            only_j: value("--j").and_then(|v| v.parse().ok()),
            tools: tools(),
            profile: Profile::from_args(args),
            seed: opt("--seed", 0) as u64,
            memory: !args.iter().any(|a| a == "--no-memory"),
            memory_j: value("--memory-j")
                .map(|v| v.split(',').filter_map(|j| j.parse().ok()).collect())
                .unwrap_or_default(),
            only: value("--only").cloned(),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opts = Opts::parse(&args);
    let root = tempfile::Builder::new()
        .prefix("tcpb-farm")
        .tempdir()
        .unwrap();
    chmod(root.path(), 0o755);
    println!(
        "tcpb farm benchmark: {} jobs ({}), {} rep(s), median shown",
        opts.jobs,
        opts.profile.describe(),
        opts.reps
    );
    for farm in &FARMS {
        if opts.only.as_deref().is_none_or(|o| o == farm.name) {
            run_farm(root.path(), farm, &opts);
        }
    }
}

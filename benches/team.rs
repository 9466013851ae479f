//! Team benchmark: K users on K workstations each build the farm
//! benchmark's job set at once on one simulated heterogeneous farm whose
//! hosts share their speed (`common/sharedhost.rs`), through team mode
//! (one etcd), per-user brokers without team mode, plain distcc for each
//! user, and one shared HAProxy `leastconn` with `maxconn` = slots. Prints
//! each user's makespan, all the work together against its lower bound,
//! the most compiles each host ran at once against its slots (counted at
//! the host) and the seconds it ran more, etcd writes per compile (counted
//! at etcd: its revision; in parentheses without the team's one-time
//! set-up, its hosts defined and their probers claimed, as each run is a
//! new team), and the latency team mode adds per compile.
//!
//! Run: `cargo bench --bench team` (options: `--users 2,4,8`, `--jobs N`
//! per user, `--mean MS`, `--j N` per user, `--only team|alone|distcc|haproxy`
//! (or several, comma-separated), `--oversubscribed share|queue` (what a
//! host does with more compiles than slots: share its speed, or queue them
//! as distccd with `--jobs` = slots does),
//! `--reps N` rows per tool,
//! `--latency N` compiles, 0 to skip; `TCPB_TEAM_TRACE=1` prints what the
//! first user's broker sees of the team as it goes, `TCPB_TEAM_EACH=1`
//! each user's makespan in start order). Needs distcc,
//! distccd, haproxy, etcd and make; says loudly what it skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

use common::{
    FARMS, Oversubscribed, Profile, SharedFarm, TCPB, chmod, haproxy, revision, start_etcd,
};

#[path = "common/team_latency.rs"]
mod latency;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tool {
    Team,
    Alone,
    Distcc,
    Haproxy,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Team => "team",
            Tool::Alone => "alone",
            Tool::Distcc => "distcc",
            Tool::Haproxy => "haproxy",
        }
    }
}

struct Opts {
    users: Vec<usize>,
    jobs: usize,
    mean_ms: f64,
    j: u32,
    tools: Vec<Tool>,
    over: Oversubscribed,
    latency: usize,
    reps: usize,
}

/// What one run of K users' builds measured.
struct Run {
    each: Vec<f64>,
    all: f64,
    counts: Vec<common::HostCount>,
    writes: i64,
    /// Of `writes`, the team's one-time set-up.
    setup: i64,
    compiles: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    needs();
    let opts = options(&args);
    let root = tempfile::Builder::new()
        .prefix("tcpb-team")
        .tempdir()
        .unwrap();

    chmod(root.path(), 0o755);
    let spec = &FARMS[0];
    let farm = SharedFarm::start(root.path(), spec.hosts, 4, opts.over);
    let (_etcd, url) = start_etcd(root.path());
    let set = Profile::Pareto.job_set(opts.jobs, opts.mean_ms, 0);
    let work: f64 = set.iter().map(|j| j.0 as f64).sum();
    let longest = set.iter().map(|j| j.0).max().unwrap_or(0) as f64;
    println!(
        "tcpb team benchmark: {} farm {:?} (speed, slots), {}; \
         each user builds {} jobs (mean {} ms) with make -j{}",
        spec.name,
        spec.hosts,
        match opts.over {
            Oversubscribed::Share => "hosts share their speed beyond their slots",
            Oversubscribed::Queue => "hosts queue compiles beyond their slots",
        },
        opts.jobs,
        opts.mean_ms,
        opts.j
    );
    for &k in &opts.users {
        let bound = (work * k as f64 / spec.capacity()).max(longest / spec.fastest()) / 1000.0;
        println!("\n{k} users: lower bound of all the work {bound:.2} s");
        println!(
            "  {:<8} {:>8} {:>6} {:>16} {:>7}  {:<26} {:>15} {:>6}",
            "tool",
            "all (s)",
            "x LB",
            "users (s)",
            "spread",
            "peak/slots per host",
            "writes/c",
            "remote"
        );
        for &tool in &opts.tools {
            for _ in 0..opts.reps.max(1) {
                let run = run(root.path(), &farm, &url, &set, k, tool, opts.j);
                print_row(tool, &run, bound, &farm);
            }
        }
    }
    if opts.latency > 0 {
        latency::measure(root.path(), &farm, &url, opts.latency);
    }
}

/// Exits, saying so loudly, when a tool the benchmark runs is missing.
fn needs() {
    for (bin, pkg) in [
        ("distcc", "distcc"),
        ("distccd", "distcc"),
        ("make", "make"),
        ("haproxy", "haproxy"),
        ("etcd", "etcd-server"),
    ] {
        if which::which(bin).is_err() {
            common::skipped("the team benchmark", bin, pkg);
            std::process::exit(2);
        }
    }
}

fn options(args: &[String]) -> Opts {
    let value = |name: &str| {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1).cloned()
    };
    let users = value("--users").map_or(vec![2, 4, 8], |v| {
        v.split(',').filter_map(|n| n.parse().ok()).collect()
    });
    let all = [Tool::Team, Tool::Alone, Tool::Distcc, Tool::Haproxy];
    let tools = match value("--only") {
        Some(names) => (all.into_iter())
            .filter(|t| names.split(',').any(|n| n == t.name()))
            .collect(),
        None => all.to_vec(),
    };
    let over = match value("--oversubscribed").as_deref() {
        None | Some("share") => Oversubscribed::Share,
        Some("queue") => Oversubscribed::Queue,
        Some(other) => {
            eprintln!("--oversubscribed {other}: expected share or queue");
            std::process::exit(2);
        }
    };
    let num =
        |name: &str, default: f64| value(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    Opts {
        users,
        jobs: num("--jobs", 80.0) as usize,
        mean_ms: num("--mean", FARMS[0].mean_ms),
        j: num("--j", 16.0) as u32,
        tools,
        over,
        latency: num("--latency", 300.0) as usize,
        reps: num("--reps", 1.0) as usize,
    }
}

fn print_row(tool: Tool, run: &Run, bound: f64, farm: &SharedFarm) {
    let min = run.each.iter().copied().fold(f64::INFINITY, f64::min);
    let max = run.each.iter().copied().fold(0.0, f64::max);
    let peaks: Vec<String> = run
        .counts
        .iter()
        .zip(&farm.hosts)
        .map(|(c, (_, slots))| {
            let over = if c.over_s > 0.0 {
                format!("({:.1}s over)", c.over_s)
            } else {
                String::new()
            };
            let used = c.busy_s / (f64::from(*slots) * run.all) * 100.0;
            format!("{}/{slots}{over}@{used:.0}%", c.peak)
        })
        .collect();
    let writes = match tool {
        Tool::Team => {
            let per = |w: i64| w as f64 / run.compiles.max(1) as f64;
            format!(
                "{:.3} ({:.3})",
                per(run.writes),
                per(run.writes - run.setup)
            )
        }
        _ => "-".to_string(),
    };
    println!(
        "  {:<8} {:>8.2} {:>6.2} {:>7.2}-{:<7.2} {:>6.1}%  {:<26} {:>15} {:>6}",
        tool.name(),
        run.all,
        run.all / bound,
        min,
        max,
        (max / min - 1.0) * 100.0,
        peaks.join(" "),
        writes,
        run.compiles
    );
}

/// One user's directories for one run.
struct User {
    dir: PathBuf,
    project: PathBuf,
}

fn user(base: &Path, i: usize, set: &[(u64, u64)], config: &str) -> User {
    let dir = base.join(format!("u{i}"));
    for d in ["run", "state", "distcc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let project = dir.join("p");
    common::write_job_set(&project, set.to_vec());
    User { dir, project }
}

/// `make` of `u`'s project through `tool`.
fn make(u: &User, tool: Tool, j: u32, hosts: &str) -> Command {
    let mut cmd = Command::new("make");
    cmd.args(["-s", &format!("-j{j}")]).current_dir(&u.project);
    common::env(&mut cmd, &u.dir);
    cmd.env("DISTCC_DIR", u.dir.join("distcc"))
        .env("DISTCC_HOSTS", hosts);
    match tool {
        Tool::Team | Tool::Alone => cmd.arg(format!("CC={TCPB} gcc")),
        Tool::Distcc | Tool::Haproxy => cmd.arg("CC=distcc gcc"),
    };
    cmd
}

/// Each user's config.toml for `tool`: team mode's `[team]`, and the
/// hosts' speeds, as a team's config would give them.
fn config_for(tool: Tool, url: &str, team: &str, farm: &SharedFarm) -> String {
    let mut config = "[broker]\nidle_exit_s = 600\n".to_string();
    if tool == Tool::Team {
        config.push_str(&format!(
            "[team]\nendpoints = [\"{url}\"]\nfarm = \"{team}\"\n"
        ));
    }
    for ((port, _), (speed, _)) in farm.hosts.iter().zip(FARMS[0].hosts) {
        config.push_str(&format!(
            "[[host]]\nname = \"127.0.0.1:{port}\"\nspeed = {speed:.1}\n"
        ));
    }
    config
}

/// The host list the users' builds get: the farm's, or one shared
/// HAProxy in front of it (`leastconn`, `maxconn` = each host's slots,
/// weights by speed) with the farm's slots.
fn hosts_for(tool: Tool, farm: &SharedFarm, base: &Path) -> (Option<common::Guard>, String) {
    if tool != Tool::Haproxy {
        return (None, farm.hosts_line());
    }
    let servers: Vec<(u16, u32, u32)> = farm
        .hosts
        .iter()
        .zip(FARMS[0].hosts)
        .map(|((p, s), (speed, _))| (*p, (speed * 10.0) as u32, *s))
        .collect();
    let (g, port) = haproxy(base, &servers);
    (Some(g), format!("127.0.0.1:{port}/{}", FARMS[0].slots()))
}

/// K users' builds at once through `tool`.
fn run(
    root: &Path,
    farm: &SharedFarm,
    url: &str,
    set: &[(u64, u64)],
    k: usize,
    tool: Tool,
    j: u32,
) -> Run {
    let base = root.join(format!("run-{k}-{}-{}", tool.name(), common::free_port()));
    let team = format!("bench{k}-{}", common::free_port());
    let config = config_for(tool, url, &team, farm);
    let users: Vec<User> = (0..k).map(|i| user(&base, i, set, &config)).collect();
    let (_proxy, hosts) = hosts_for(tool, farm, &base);
    farm.take_counts();
    let before = revision(url).unwrap_or(0);
    let started = Instant::now();
    let handles: Vec<_> = users
        .iter()
        .map(|u| {
            let mut cmd = make(u, tool, j, &hosts);
            std::thread::spawn(move || {
                let out = cmd.output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                started.elapsed().as_secs_f64()
            })
        })
        .collect();
    if std::env::var("TCPB_TEAM_TRACE").is_ok() && tool == Tool::Team {
        trace(&users[0], farm, started, &handles);
    }
    let each: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    if std::env::var("TCPB_TEAM_EACH").is_ok() {
        eprintln!("each user's makespan: {each:.2?}");
    }
    let all = started.elapsed().as_secs_f64();
    let writes = revision(url).unwrap_or(0) - before;
    let setup = setup_writes(url, &team);
    let counts = farm.take_counts();
    let compiles = counts.iter().map(|c| c.jobs).sum();
    for u in &users {
        stop(u);
    }
    Run {
        each,
        all,
        counts,
        writes,
        setup,
        compiles,
    }
}

/// The writes a team makes once in its life, not per build: its hosts
/// defined and their probers claimed (each run is a new team).
fn setup_writes(url: &str, team: &str) -> i64 {
    let prefix = tcpb::broker::team::prefix(team);
    ["hosts/", "probers/"]
        .iter()
        .filter_map(|kind| common::count(url, &format!("{prefix}{kind}")))
        .sum()
}

/// `TCPB_TEAM_TRACE=1`: every half second until the builds end, what the
/// first user's broker sees of the team (per broker: demand, held, share,
/// service) and what each host runs.
fn trace<T>(u: &User, farm: &SharedFarm, started: Instant, builds: &[std::thread::JoinHandle<T>]) {
    for _ in 0..120 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut c = Command::new(TCPB);
        c.args(["status", "--json"]);
        common::env(&mut c, &u.dir);
        let v: serde_json::Value =
            serde_json::from_slice(&c.output().unwrap().stdout).unwrap_or_default();
        let list = |key: &str| v["team"][key].as_array().cloned().unwrap_or_default();
        let brokers: Vec<String> = list("brokers")
            .iter()
            .map(|b| {
                let id = b["id"].as_str().unwrap_or("");
                let service = b["service"].as_f64().unwrap_or(0.0);
                let (d, h, s) = (&b["demand"], &b["held"], &b["share"]);
                format!("{id}: want {d} held {h} share {s} service {service:.0}")
            })
            .collect();
        eprintln!(
            "{:.1}s hosts run {:?}; {}",
            started.elapsed().as_secs_f64(),
            farm.running(),
            brokers.join("; ")
        );
        if builds.iter().all(|h| h.is_finished()) {
            break;
        }
    }
}

/// Stops `u`'s broker, if one runs.
fn stop(u: &User) {
    let mut cmd = Command::new(TCPB);
    cmd.arg("stop");
    common::env(&mut cmd, &u.dir);
    let _ = cmd.output();
}

//! Local overflow benchmark: when the farm is full, does running
//! distributable compiles on this machine's idle CPUs make a build faster,
//! or ever slower? The farm benchmark's simulated farms and job sets, with
//! this machine counted as a host too: compiles run here take their
//! declared work ÷ `--local-speed` (`local_compiler`), and the list gives
//! it `--local-slots` slots. Rows, same farm and job set: tcpb with
//! `local_overflow` off and on, and plain distcc with `localhost/N` listed
//! (distcc's own way to count this machine; it then sends it jobs whether
//! or not the farm is full).
//!
//! Run: `cargo bench --bench overflow` (options: `--reps N`, `--jobs N`,
//! `--seed N`, `--local-speed S`, `--local-slots N`, `--j N`). Needs
//! distcc, distccd and make.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

use common::{
    FARMS, FarmSpec, Host, Profile, TCPB, chmod, local_compiler, median, start_host, write_job_set,
};

/// What one row builds with.
#[derive(Clone, Copy, PartialEq)]
enum Row {
    TcpbOff,
    TcpbOn,
    DistccLocalhost,
}

impl Row {
    fn label(self) -> &'static str {
        match self {
            Row::TcpbOff => "tcpb, overflow off",
            Row::TcpbOn => "tcpb, overflow on",
            Row::DistccLocalhost => "distcc + localhost",
        }
    }
}

struct Opts {
    jobs: usize,
    reps: usize,
    seed: u64,
    local_speed: f64,
    local_slots: u32,
    only_j: Option<u32>,
}

/// One farm, its job set and this machine's simulated compiler.
struct World {
    root: PathBuf,
    project: PathBuf,
    hosts: Vec<Host>,
    path: String,
    local_slots: u32,
}

impl World {
    /// The farm's list, fastest first.
    fn hosts_line(&self) -> String {
        let mut hs: Vec<&Host> = self.hosts.iter().collect();
        hs.sort_by(|a, b| b.speed.total_cmp(&a.speed));
        let v: Vec<String> = hs
            .iter()
            .map(|h| format!("127.0.0.1:{}/{}", h.port, h.slots))
            .collect();
        v.join(" ")
    }

    fn farm_jobs(&self) -> usize {
        common::farm_jobs(&self.hosts)
    }

    /// tcpb's directories and config for `row`.
    fn tcpb_env(&self, row: Row, cmd: &mut Command) {
        let on = row == Row::TcpbOn;
        let dir = self.root.join(if on { "tcpb-on" } else { "tcpb-off" });
        let config = dir.join("config.toml");
        if !config.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let mut cfg = format!("[broker]\nidle_exit_s = 600\nlocal_overflow = {on}\n");
            for h in &self.hosts {
                cfg += &format!(
                    "[[host]]\nname = \"127.0.0.1:{}\"\nspeed = {:.1}\n",
                    h.port, h.speed
                );
            }
            std::fs::write(&config, cfg).unwrap();
        }
        cmd.env("TCPB_RUNTIME_DIR", dir.join("run"))
            .env("TCPB_STATE_DIR", dir.join("state"))
            .env("TCPB_CONFIG", config);
    }

    /// One clean build of `row` at `-jJ`: seconds, and compiles run here.
    fn build(&self, row: Row, j: u32) -> (f64, usize) {
        let clean = Command::new("make")
            .args(["-s", "clean"])
            .current_dir(&self.project)
            .status();
        assert!(clean.unwrap().success());
        let before = self.farm_jobs();
        let dd = self.root.join("distcc-dir");
        let _ = std::fs::remove_dir_all(&dd);
        std::fs::create_dir_all(&dd).unwrap();
        let mut cmd = Command::new("make");
        cmd.args(["-s", &format!("-j{j}")])
            .current_dir(&self.project)
            .env("PATH", &self.path)
            .env("DISTCC_DIR", &dd);
        let list = self.hosts_line();
        match row {
            Row::TcpbOff | Row::TcpbOn => {
                cmd.arg(format!("CC={TCPB} gcc")).env(
                    "DISTCC_HOSTS",
                    format!("--localslots={} {list}", self.local_slots),
                );
                self.tcpb_env(row, &mut cmd);
            }
            Row::DistccLocalhost => {
                cmd.arg("CC=distcc gcc").env(
                    "DISTCC_HOSTS",
                    format!("{list} localhost/{}", self.local_slots),
                );
            }
        }
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let secs = started.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{} -j{j}: {err}", row.label());
        let objs = common::objects_in(&self.project);
        (secs, objs.saturating_sub(self.farm_jobs() - before))
    }

    fn stop_tcpb(&self) {
        for row in [Row::TcpbOff, Row::TcpbOn] {
            let mut cmd = Command::new(TCPB);
            cmd.arg("stop").stdout(Stdio::null()).stderr(Stdio::null());
            self.tcpb_env(row, &mut cmd);
            let _ = cmd.status();
        }
    }
}

/// Every row at `-jJ`, `reps` times each (interleaved, so the machine's
/// drift spreads over all rows); prints one line per row.
fn run_level(world: &World, j: u32, reps: usize, bound: f64) {
    let rows = [Row::TcpbOff, Row::TcpbOn, Row::DistccLocalhost];
    let mut got: Vec<Vec<(f64, usize)>> = vec![Vec::new(); rows.len()];
    for _ in 0..reps {
        for (i, row) in rows.iter().enumerate() {
            got[i].push(world.build(*row, j));
        }
    }
    let off = median(got[0].iter().map(|g| g.0).collect());
    for (row, runs) in rows.iter().zip(&got) {
        let m = median(runs.iter().map(|g| g.0).collect());
        let each: Vec<String> = runs.iter().map(|g| format!("{:.2}", g.0)).collect();
        let local: Vec<String> = runs.iter().map(|g| g.1.to_string()).collect();
        println!(
            "  -j{j:<3} {:<20} {m:6.2} s  ({:+5.1}% vs off, {:.2}x bound)  runs {}  run here {}",
            row.label(),
            100.0 * (m / off - 1.0),
            m / bound,
            each.join(" "),
            local.join(" ")
        );
    }
}

fn run_farm(root: &Path, farm: &FarmSpec, opts: &Opts) {
    let dir = root.join(farm.name);
    std::fs::create_dir_all(&dir).unwrap();
    chmod(&dir, 0o755);
    let project = dir.join("proj");
    let works = write_job_set(
        &project,
        Profile::Pareto.job_set(opts.jobs, farm.mean_ms, opts.seed),
    );
    let hosts = farm
        .hosts
        .iter()
        .enumerate()
        .map(|(i, (s, n))| start_host(&dir, i, *s, *n))
        .collect();
    let bin = local_compiler(&dir, opts.local_speed);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let world = World {
        root: dir,
        project,
        hosts,
        path,
        local_slots: opts.local_slots,
    };
    let total: f64 = works.iter().map(|w| *w as f64 / 1000.0).sum();
    let capacity = farm.capacity() + opts.local_speed * f64::from(opts.local_slots);
    let longest = works.iter().copied().max().unwrap_or(0) as f64 / 1000.0;
    let bound = (total / capacity).max(longest / farm.fastest().max(opts.local_speed));
    let spec: Vec<String> = farm.hosts.iter().map(|(s, n)| format!("{s}x{n}")).collect();
    println!(
        "\n{} farm {} + this machine {}x{}: {:.1} s of work, bound {bound:.2} s",
        farm.name,
        spec.join(" "),
        opts.local_speed,
        opts.local_slots,
        total
    );
    // One build per tcpb row first: the brokers start and learn the costs.
    for row in [Row::TcpbOff, Row::TcpbOn] {
        world.build(row, farm.slots());
    }
    let levels = match opts.only_j {
        Some(j) => vec![j],
        None => vec![
            farm.slots() / 2,
            farm.slots(),
            farm.slots() + opts.local_slots,
            farm.slots() * 2,
        ],
    };
    for j in levels {
        run_level(&world, j, opts.reps, bound);
    }
    world.stop_tcpb();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    for bin in ["distcc", "distccd", "make"] {
        if which::which(bin).is_err() {
            eprintln!("\n!!!!! SKIPPED: {bin} is missing (apt-get install distcc make) !!!!!\n");
            std::process::exit(2);
        }
    }
    let value = |name: &str| {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1).and_then(|v| v.parse::<f64>().ok())
    };
    let opts = Opts {
        jobs: value("--jobs").unwrap_or(80.0) as usize,
        reps: value("--reps").unwrap_or(3.0) as usize,
        seed: value("--seed").unwrap_or(0.0) as u64,
        local_speed: value("--local-speed").unwrap_or(1.0),
        local_slots: value("--local-slots").unwrap_or(2.0) as u32,
        only_j: value("--j").map(|j| j as u32),
    };
    let root = tempfile::Builder::new()
        .prefix("tcpb-overflow")
        .tempdir()
        .unwrap();
    chmod(root.path(), 0o755);
    println!(
        "tcpb local overflow benchmark: {} jobs, {} rep(s), median shown; this machine has {} CPUs",
        opts.jobs,
        opts.reps,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for farm in &FARMS {
        run_farm(root.path(), farm, &opts);
    }
}

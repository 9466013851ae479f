//! Team scale benchmark: many brokers (the real team task, each with its
//! own etcd client, lease and watch; compiles simulated by
//! `common/teamsim.rs`) share one farm of many hosts through one local
//! etcd started as README recommends (revision compaction). Phases: half
//! the brokers start builds deeper than their share; then the other half
//! start; then the first half stop; then nothing changes. Prints per phase
//! how long a new build waited for its first compile (claim latency), how
//! long until every building broker held its fair capacity ±10%
//! (convergence), etcd writes per second and per compile (counted at
//! etcd), and the CPU the brokers and etcd used; at the end etcd's
//! database size and its growth per hour, and per phase the brokers'
//! calls to etcd, how many found a slot taken, and their whole reads of
//! the farm.
//!
//! Run: `cargo bench --bench teamscale` (options: `--brokers N` (100),
//! `--hosts N` (1000), `--slots N` (16), `--work S` mean compile work on a
//! speed-1 host (16), `--phase S` (60), `--steady S` (60);
//! `TCPB_SCALE_TRACE=1` prints the team as one broker sees it at the end).
//! Needs etcd.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tcpb::broker::team::driver::Team;
use tcpb::broker::team::task;
use tcpb::config::TeamConfig;

#[path = "common/mod.rs"]
mod common;
#[path = "common/teamsim.rs"]
mod teamsim;

use teamsim::{Sim, SimBroker, SimFarm};

struct Opts {
    brokers: usize,
    hosts: usize,
    slots: u32,
    work: f64,
    phase: f64,
    steady: f64,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, default: f64| -> f64 {
        let at = args.iter().position(|a| a == name);
        at.and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} {v}: not a number"))
            })
            .unwrap_or(default)
    };
    Opts {
        brokers: get("--brokers", 100.0).max(2.0) as usize,
        hosts: get("--hosts", 1000.0).max(1.0) as usize,
        slots: get("--slots", 16.0).max(1.0) as u32,
        work: get("--work", 16.0),
        phase: get("--phase", 60.0),
        steady: get("--steady", 60.0),
    }
}

/// The compaction README recommends for etcd run for tcpb.
const COMPACTION: [&str; 2] = [
    "--auto-compaction-mode=revision",
    "--auto-compaction-retention=10000",
];

fn main() {
    if !common::have("etcd") {
        common::skipped("the team scale benchmark", "etcd", "etcd-server");
        std::process::exit(2);
    }
    raise_open_files();
    let o = opts();
    let dir = tempfile::tempdir().unwrap();
    let (etcd, url) = common::start_etcd_with(dir.path(), &COMPACTION);
    let etcd_pid = etcd.0.id();
    println!(
        "team scale: {} brokers, {} hosts x {} slots, compile work {} s mean (0.5-1.5x) at speed 1, \
         speeds 4/2/1; etcd {} on loopback",
        o.brokers,
        o.hosts,
        o.slots,
        o.work,
        COMPACTION.join(" ")
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(&o, &url, etcd_pid));
    drop(etcd);
}

/// Lets the process hold a watch and a few connections per broker.
fn raise_open_files() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    /// Build start to first compile, per broker that started a build.
    first: Vec<Duration>,
    converged: Option<f64>,
    /// A read's round trip to etcd, sampled every 250 ms.
    rtt: Vec<Duration>,
    /// The least and most capacity a building broker held at the end, ÷
    /// its fair capacity.
    spread: (f64, f64),
    writes: i64,
    compiles: u64,
    secs: f64,
    cpu: (f64, f64),
    /// Calls the brokers made to etcd, how many of them were creates
    /// that found a slot taken, and whole reads of the farm.
    calls: (u64, u64, u64),
}

/// Calls `all` made to etcd so far, creates that found a key taken, and
/// whole reads of the farm.
fn etcd_calls(all: &[Arc<SimBroker>]) -> (u64, u64, u64) {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    (all.iter().map(|b| b.team.counts())).fold((0, 0, 0), |(calls, taken, loads), c| {
        (
            calls + load(&c.calls),
            taken + load(&c.conflicts),
            loads + load(&c.loads),
        )
    })
}

async fn run(o: &Opts, url: &str, etcd_pid: u32) {
    let farm = Arc::new(SimFarm::new(o.hosts, o.slots));
    let brokers = start_brokers(o, url, &farm).await;
    let half = o.brokers / 2;
    let deep = 2 * farm.slots() / half as u32;
    let (first, second) = brokers.split_at(half);
    let cpu = || {
        (
            common::cpu_secs(std::process::id()),
            common::cpu_secs(etcd_pid),
        )
    };
    let mut phases = Vec::new();
    let measure = |name, starting: &[Arc<SimBroker>], active: &[Arc<SimBroker>]| {
        let (starting, active) = (starting.to_vec(), active.to_vec());
        let (farm, url) = (farm.clone(), url.to_string());
        async move { phase(name, &starting, &active, &farm, &url, o.phase, cpu).await }
    };
    for b in first {
        b.set_jobs(deep);
    }
    phases.push(measure("half start", first, first).await);
    for b in second {
        b.set_jobs(deep);
    }
    phases.push(measure("other half start", second, &brokers).await);
    for b in first {
        b.set_jobs(0);
    }
    phases.push(measure("first half stop", &[], second).await);
    let db_before = common::db_size(url);
    let mut steady = phase("steady", &[], second, &farm, url, o.steady, cpu).await;
    steady.converged = None;
    phases.push(steady);
    let db_after = common::db_size(url);
    if std::env::var("TCPB_SCALE_TRACE").is_ok() {
        trace(&second[0], &brokers);
        let taken = format!(
            "{}{}",
            tcpb::broker::team::prefix("scale"),
            tcpb::broker::team::TAKEN
        );
        let probe = tcpb::broker::team::etcd::Etcd::new(&[url.to_string()], Duration::from_secs(5));
        let (_, keys) = probe.unwrap().range(&taken, 0).await.unwrap();
        let mut by: std::collections::BTreeMap<String, u32> = Default::default();
        for (_, holder) in keys {
            *by.entry(holder).or_default() += 1;
        }
        println!("in etcd by holder: {by:?}");
    }
    report(o, &phases, (db_before, db_after));
    // No leases are revoked at the end: etcd goes with the benchmark, and
    // 100 revokes through a saturated etcd took minutes.
}

/// Starts the brokers: the first alone until it defined the farm's hosts
/// for the team (a long-lived team has them already), then the others.
async fn start_brokers(o: &Opts, url: &str, farm: &Arc<SimFarm>) -> Vec<Arc<SimBroker>> {
    let config = TeamConfig::new(&[url.to_string()], "scale");
    let work = Duration::from_secs_f64(o.work);
    let start = |i: usize| {
        let who = (format!("user{i:03}"), format!("ws{i:03}"));
        let team = Team::named(&config, Duration::from_secs(2), who, i as u32).unwrap();
        let b = SimBroker::new(team.clone(), farm.clone(), work);
        tokio::spawn(task::run(team, Sim(b.clone())));
        tokio::spawn(b.clone().run());
        b
    };
    let t0 = Instant::now();
    let mut brokers = vec![start(0)];
    let hosts = format!("{}hosts/", tcpb::broker::team::prefix(&config.farm));
    let probe = tcpb::broker::team::etcd::Etcd::new(&config.endpoints, Duration::from_secs(5));
    let probe = probe.unwrap();
    while probe.range(&hosts, 0).await.map_or(0, |r| r.1.len()) < o.hosts {
        assert!(t0.elapsed() < Duration::from_secs(300), "hosts not defined");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "the first broker defined {} hosts for the team in {:.1} s",
        o.hosts,
        t0.elapsed().as_secs_f64()
    );
    brokers.extend((1..o.brokers).map(start));
    tokio::time::sleep(Duration::from_secs(3)).await;
    brokers
}

/// Samples a phase every 250 ms for `secs`: when every building broker
/// first held its fair capacity ±10%, writes, compiles, CPU.
async fn phase(
    name: &'static str,
    starting: &[Arc<SimBroker>],
    active: &[Arc<SimBroker>],
    farm: &SimFarm,
    url: &str,
    secs: f64,
    cpu: impl Fn() -> (f64, f64),
) -> Phase {
    let t0 = Instant::now();
    let (rev0, cpu0) = (common::revision(url).unwrap_or(0), cpu());
    let compiles =
        |all: &[Arc<SimBroker>]| -> u64 { all.iter().map(|b| b.first_and_compiles().1).sum() };
    let everyone: Vec<Arc<SimBroker>> = starting.iter().chain(active).cloned().collect();
    let done0 = compiles(&everyone);
    let calls0 = etcd_calls(&everyone);
    let mut converged = None;
    let mut rtt = Vec::new();
    while t0.elapsed().as_secs_f64() < secs {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // etcd's answer time as any client sees it (a blocking call).
        let asked = Instant::now();
        common::revision(url);
        rtt.push(asked.elapsed());
        if converged.is_none() && within(spread(active, farm), 0.1) {
            converged = Some(t0.elapsed().as_secs_f64());
        }
    }
    let cpu1 = cpu();
    let calls1 = etcd_calls(&everyone);
    Phase {
        calls: (
            calls1.0 - calls0.0,
            calls1.1 - calls0.1,
            calls1.2 - calls0.2,
        ),
        name,
        first: starting
            .iter()
            .filter_map(|b| b.first_and_compiles().0)
            .collect(),
        converged,
        rtt,
        spread: spread(active, farm),
        writes: common::revision(url).unwrap_or(0) - rev0,
        compiles: compiles(&everyone) - done0,
        secs: t0.elapsed().as_secs_f64(),
        cpu: (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1),
    }
}

/// The least and most capacity any of `active` holds, ÷ its fair
/// capacity (the farm's ÷ their number: equal users).
fn spread(active: &[Arc<SimBroker>], farm: &SimFarm) -> (f64, f64) {
    let total: f64 = farm
        .hosts
        .iter()
        .map(|h| h.speed * f64::from(h.slots))
        .sum();
    let each = total / active.len() as f64;
    let held = active.iter().map(|b| capacity_held(b, farm) / each);
    // + 0.0: a broker holding nothing sums to -0.0, printed "-0.00".
    held.fold((f64::INFINITY, 0.0), |(lo, hi), h| {
        (lo.min(h) + 0.0, hi.max(h))
    })
}

/// True when `spread` is within ±`by` of fair.
fn within((lo, hi): (f64, f64), by: f64) -> bool {
    lo >= 1.0 - by && hi <= 1.0 + by
}

/// Capacity (slots × speed) broker `b` holds.
fn capacity_held(b: &SimBroker, farm: &SimFarm) -> f64 {
    let speed = |name: &str| {
        farm.hosts
            .iter()
            .find(|h| h.name == name)
            .map_or(0.0, |h| h.speed)
    };
    b.team
        .claimed_hosts()
        .iter()
        .map(|h| speed(h) * f64::from(b.team.held(h)))
        .sum()
}

/// Prints the team as one broker sees it: each broker's demand, claims,
/// share and service, and the slots nobody holds.
fn trace(b: &SimBroker, all: &[Arc<SimBroker>]) {
    let mut states = std::collections::BTreeMap::new();
    for b in all {
        let st = b.team.status();
        let e = states.entry(st.state).or_insert((0, 0, 0));
        e.0 += 1;
        e.1 += st.etcd_failures;
        e.2 += st.etcd_calls;
    }
    println!("brokers by state (count, etcd failures, calls): {states:?}");
    let st = b.team.status();
    for b in &st.brokers {
        println!(
            "{} want {} held {} share {} service {:.0}",
            b.id, b.demand, b.held, b.share, b.service
        );
    }
    let held: u32 = st.hosts.iter().flat_map(|h| &h.holders).map(|x| x.1).sum();
    let slots: u32 = st.hosts.iter().map(|h| h.slots).sum();
    println!("slots held by nobody: {}", slots - held);
}

/// etcd's database (file, in use) at the steady phase's start and end.
type DbSizes = (Option<(u64, u64)>, Option<(u64, u64)>);

fn report(o: &Opts, phases: &[Phase], db: DbSizes) {
    println!(
        "\n{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "phase",
        "first p50",
        "first max",
        "converged",
        "held/fair",
        "etcd p50",
        "etcd p99",
        "writes/s",
        "w/compile",
        "compiles",
        "cpu tcpb",
        "cpu etcd"
    );
    for p in phases {
        let pct = if p.first.is_empty() {
            None
        } else {
            Some(common::percentiles(p.first.clone()))
        };
        let first = |i: usize| pct.map_or("-".to_string(), |p| format!("{:.0} ms", p[i] / 1000.0));
        let converged = p.converged.map_or("-".to_string(), |s| format!("{s:.1} s"));
        let rtt = common::percentiles(p.rtt.clone());
        println!(
            "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9.1} {:>9.3} {:>9} {:>8.0}% {:>8.0}%",
            p.name,
            first(0),
            first(3),
            converged,
            format!("{:.2}-{:.2}", p.spread.0, p.spread.1),
            format!("{:.1} ms", rtt[0] / 1000.0),
            format!("{:.1} ms", rtt[2] / 1000.0),
            p.writes as f64 / p.secs,
            p.writes as f64 / p.compiles.max(1) as f64,
            p.compiles,
            100.0 * p.cpu.0 / p.secs,
            100.0 * p.cpu.1 / p.secs,
        );
    }
    footer(o, phases, db);
}

/// What the table does not show: the database's growth, the brokers'
/// calls to etcd.
fn footer(o: &Opts, phases: &[Phase], db: DbSizes) {
    let steady = phases.last().expect("phases ran");
    if let (Some((size0, used0)), Some((size1, used1))) = db {
        let per_hour = |a: u64, b: u64| (b as f64 - a as f64) / steady.secs * 3600.0 / 1e6;
        println!(
            "\netcd database: {:.1} MB file ({:.1} MB in use) after the steady phase; \
             over it {:+.1} MB/h file, {:+.1} MB/h in use; {:.0} revisions/h",
            size1 as f64 / 1e6,
            used1 as f64 / 1e6,
            per_hour(size0, size1),
            per_hour(used0, used1),
            steady.writes as f64 / steady.secs * 3600.0
        );
    }
    let calls: Vec<String> = (phases.iter())
        .map(|p| {
            format!(
                "{} {}/s ({} % found a slot taken, {} farm reads)",
                p.name,
                (p.calls.0 as f64 / p.secs) as u64,
                100 * p.calls.1 / p.calls.0.max(1),
                p.calls.2
            )
        })
        .collect();
    println!("etcd calls by the brokers: {}", calls.join(", "));
    println!(
        "(cpu: % of one core over the phase; tcpb is all {} simulated brokers together)",
        o.brokers
    );
}

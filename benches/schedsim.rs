//! Scheduler simulation: the farm benchmark's job sets and farms, run
//! through the broker's own scheduler and cost memory on a simulated clock,
//! in milliseconds instead of minutes. It shows how far a policy is from the
//! lower bound, and what the per-file memory gives a second build, without
//! the noise of real processes.
//!
//! Columns are makespans over the lower bound (total work and overhead ÷
//! the farm's capacity, or the longest job on the fastest host), medians
//! over job sets: a first build by a fresh broker; a second build by the
//! same broker (learned speeds and per-file costs); a build by a fresh
//! scheduler with only the cost memory of the first build; and one by a
//! fresh scheduler that knows every file's exact cost.
//!
//! Run: `cargo bench --bench schedsim` (options: `--jobs N`, `--overhead S`,
//! `--seeds N`, `--seed FIRST`, `--trace`: where the longest jobs and the
//! last to end ran in both builds, `--unconfigured`: every host
//! configured at speed 1.0; `--profile openssl|libgit2|protobuf`: job sets drawn
//! from a real project's measured build).

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};
use tcpb::broker::sched::costs::Costs;
use tcpb::broker::sched::{HostId, Job, LeaseId, Need, Placement, Scheduler};
use tcpb::config::HealthConfig;
use tcpb::farm::{Admin, Farm, HostSpec};

#[path = "common/mod.rs"]
mod common;

use common::{FARMS, FarmSpec};

/// The part of a job's fixed overhead spent on the server (the relay
/// counts it in the server time the broker learns speeds from).
const SERVER_SHARE: f64 = 0.5;

/// One simulated compile.
struct Sim {
    work: f64,
    size: u64,
    key: String,
}

/// A finish event, earliest first.
#[derive(PartialEq)]
struct Done(f64, LeaseId);

impl Eq for Done {}
impl PartialOrd for Done {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Done {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

/// The farm as the broker is told of it: with the true speeds configured,
/// or (`unconfigured`) all at the default 1.0, left to be learned.
fn sim_farm(spec: &[(f64, u32)], unconfigured: bool) -> Farm {
    let hosts = spec
        .iter()
        .enumerate()
        .map(|(i, (speed, slots))| HostSpec {
            name: format!("h{i}:3632"),
            addr: Some((format!("h{i}"), 3632)),
            ssh: None,
            slots: *slots,
            speed: if unconfigured { 1.0 } else { *speed },
            lzo: false,
            cpp: false,
            admin: Admin::Active,
        })
        .collect();
    Farm {
        hosts,
        local_slots: 2,
        origin: "sim".into(),
        sets: Vec::new(),
    }
}

/// What the broker keeps between builds.
struct Broker {
    sched: Scheduler,
    costs: Costs,
    epoch: Instant,
}

/// A build in progress on the simulated clock: which job each lease is,
/// where and when it was placed, and the finish events to come.
struct Clock<'a> {
    jobs: &'a [Sim],
    speeds: &'a [f64],
    overhead: f64,
    /// Per lease: its job, and its host and start once placed.
    leases: Vec<(usize, Option<(usize, f64)>)>,
    events: BinaryHeap<Done>,
}

impl Clock<'_> {
    /// Starts the jobs the scheduler placed at `now`.
    fn place(&mut self, placed: Vec<Placement>, now: f64) {
        for p in placed {
            let l = &mut self.leases[p.lease as usize];
            l.1 = Some((p.host.0, now));
            let end = now + self.jobs[l.0].work / self.speeds[p.host.0] + self.overhead;
            self.events.push(Done(end, p.lease));
        }
    }

    /// Per job: its start (from `t0`) and host.
    fn starts(&self, t0: f64) -> Vec<(f64, usize)> {
        let mut starts = vec![(f64::NAN, usize::MAX); self.jobs.len()];
        for (job, placed) in &self.leases {
            starts[*job] = placed.map_or((f64::NAN, usize::MAX), |p| (p.1 - t0, p.0));
        }
        starts
    }
}

/// The scheduler's view of job `s`, as the broker builds it.
fn job_of(costs: &mut Costs, s: &Sim) -> Job {
    let known = costs.knows(&s.key);
    let cost = costs.expected(Some(&s.key), s.size);
    Job {
        need: Need::Remote,
        cost,
        known,
        light: known && cost < 0.5 * costs.mean(),
        build: 1,
        set: 0,
    }
}

/// What the broker learns when the job of `lease` ends: its host's speed
/// and the file's cost.
fn learn(b: &mut Broker, c: &Clock, lease: LeaseId) {
    let (job, host) = c.leases[lease as usize];
    let (s, h) = (&c.jobs[job], host.expect("placed").0);
    // The server's time: the work, and its share of the overhead
    // (receiving the job and the real compile, at any host speed).
    let server = s.work / c.speeds[h] + SERVER_SHARE * c.overhead;
    let id = HostId(h);
    if let Some((work, weight)) = b.costs.evidence(Some(&s.key), s.size) {
        b.sched.observe(id, work, server, weight);
    }
    let speed = b.sched.speed(b.sched.host(id));
    b.costs.record(Some(&s.key), s.size, server * speed);
}

/// One build at `-j j` starting at `t0`; returns its makespan in seconds
/// and each job's start and host. A job holds its slot for its work on the
/// host's true speed plus `overhead` (preprocessing, transfer); make
/// starts the next job when one ends.
fn build(
    b: &mut Broker,
    jobs: &[Sim],
    speeds: &[f64],
    j: usize,
    overhead: f64,
    t0: f64,
) -> (f64, Vec<(f64, usize)>) {
    let epoch = b.epoch;
    let at = |s: f64| epoch + Duration::from_secs_f64(s);
    let mut c = Clock {
        jobs,
        speeds,
        overhead,
        leases: Vec::new(),
        events: BinaryHeap::new(),
    };
    let mut now = t0;
    let (mut next, mut done) = (0usize, 0usize);
    while done < jobs.len() {
        while next < jobs.len() && next - done < j {
            let lease = c.leases.len() as LeaseId;
            c.leases.push((next, None));
            let job = job_of(&mut b.costs, &jobs[next]);
            c.place(b.sched.request(lease, job, at(now)), now);
            next += 1;
        }
        let Done(t, lease) = c.events.pop().expect("a job runs");
        now = t;
        learn(b, &c, lease);
        c.place(b.sched.release(lease, at(now)), now);
        done += 1;
    }
    (now - t0, c.starts(t0))
}

/// The same build through plain distcc's choice: each client takes the
/// lowest free slot index over the hosts in list order (fastest first), and
/// when every slot is busy sleeps `DISTCC_PAUSE_TIME_MSEC` (1 s) and tries
/// again. Returns the makespan and each job's start time.
fn distcc_build(jobs: &[Sim], spec: &[(f64, u32)], j: usize, overhead: f64) -> (f64, Vec<f64>) {
    let mut order: Vec<usize> = (0..spec.len()).collect();
    order.sort_by(|a, b| spec[*b].0.total_cmp(&spec[*a].0));
    let mut busy: Vec<Vec<bool>> = spec.iter().map(|(_, n)| vec![false; *n as usize]).collect();
    // (time, job, Some((host, slot)) when it finishes; None when it tries).
    type Event = (f64, usize, Option<(usize, usize)>);
    let mut events: Vec<Event> = Vec::new();
    let mut starts = vec![f64::NAN; jobs.len()];
    let (mut next, mut done, mut now) = (0usize, 0usize, 0.0f64);
    while done < jobs.len() {
        while next < jobs.len() && next - done < j {
            events.push((now, next, None));
            next += 1;
        }
        // The earliest event; a finish before a try at the same time.
        let i = (0..events.len())
            .min_by(|a, b| {
                let (x, y) = (&events[*a], &events[*b]);
                x.0.total_cmp(&y.0).then(y.2.is_some().cmp(&x.2.is_some()))
            })
            .expect("an event");
        let (t, job, fin) = events.swap_remove(i);
        now = t;
        match fin {
            Some((h, slot)) => {
                busy[h][slot] = false;
                done += 1;
            }
            None => {
                let max = busy.iter().map(Vec::len).max().unwrap_or(0);
                let free = (0..max).find_map(|slot| {
                    order
                        .iter()
                        .find(|h| busy[**h].get(slot) == Some(&false))
                        .map(|h| (*h, slot))
                });
                match free {
                    Some((h, slot)) => {
                        busy[h][slot] = true;
                        starts[job] = now;
                        let end = now + jobs[job].work / spec[h].0 + overhead;
                        events.push((end, job, Some((h, slot))));
                    }
                    None => events.push((now + 1.0, job, None)),
                }
            }
        }
    }
    (now, starts)
}

/// The command line.
struct Opts {
    n: usize,
    overhead: f64,
    seeds: u64,
    first_seed: u64,
    unconfigured: bool,
    trace: bool,
    /// A further -j level (for example one as wide as the build).
    extra_j: Option<u32>,
    profile: common::Profile,
}

impl Opts {
    fn parse() -> Opts {
        let args: Vec<String> = std::env::args().collect();
        let opt = |name: &str, default: f64| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1)?.parse().ok())
                .unwrap_or(default)
        };
        Opts {
            n: opt("--jobs", 80.0) as usize,
            overhead: opt("--overhead", 0.1),
            seeds: opt("--seeds", 9.0) as u64,
            first_seed: opt("--seed", 0.0) as u64,
            unconfigured: args.iter().any(|a| a == "--unconfigured"),
            trace: args.iter().any(|a| a == "--trace"),
            extra_j: Some(opt("--j", 0.0) as u32).filter(|j| *j > 0),
            profile: common::Profile::from_args(&args),
        }
    }
}

/// The simulation's view of a farm.
trait Simulated {
    fn speeds(&self) -> Vec<f64>;
    fn bound(&self, jobs: &[Sim], overhead: f64) -> f64;
}

impl Simulated for FarmSpec {
    fn speeds(&self) -> Vec<f64> {
        self.hosts.iter().map(|(s, _)| *s).collect()
    }

    /// The lower bound of a build of `jobs`: all work over the farm's
    /// capacity, or the longest job on the fastest host.
    fn bound(&self, jobs: &[Sim], overhead: f64) -> f64 {
        let total: f64 = jobs.iter().map(|s| s.work + overhead).sum();
        let longest = jobs.iter().map(|s| s.work).fold(0.0, f64::max);
        (total / self.capacity()).max(longest / self.fastest() + overhead)
    }
}

fn main() {
    let o = Opts::parse();
    println!(
        "scheduler simulation: {} jobs ({}), {} s overhead per job, {} job sets, speeds {}",
        o.n,
        o.profile.describe(),
        o.overhead,
        o.seeds,
        if o.unconfigured {
            "left to be learned (all configured 1.0)"
        } else {
            "configured"
        }
    );
    for farm in &FARMS {
        println!("\nfarm {}", farm.name);
        println!(
            "{:>4}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}",
            "-j", "first", "second", "gain", "memory", "oracle", "distcc"
        );
        let slots = farm.slots();
        let mut levels = vec![slots / 2, slots, slots * 2];
        levels.extend(o.extra_j);
        for j in levels {
            let mut runs: [Vec<f64>; 5] = Default::default();
            for seed in o.first_seed..o.first_seed + o.seeds {
                for (r, t) in runs.iter_mut().zip(run_seed(&o, farm, j, seed)) {
                    r.push(t);
                }
            }
            let [first, second, memory, oracle, distcc] = runs.map(common::median);
            println!(
                "{j:>4}  {first:>7.3}  {second:>7.3}  {:>6.1}%  {memory:>7.3}  {oracle:>7.3}  {distcc:>7.3}",
                100.0 * (1.0 - second / first)
            );
        }
    }
}

/// One job set at `-j j` on `farm`: first build, second build, a build
/// with only the cost memory, one knowing every cost, and distcc; each
/// over the lower bound.
fn run_seed(o: &Opts, farm: &FarmSpec, j: u32, seed: u64) -> [f64; 5] {
    let jobs: Vec<Sim> = o
        .profile
        .job_set(o.n, farm.mean_ms, seed)
        .iter()
        .enumerate()
        .map(|(i, (w, size))| Sim {
            work: *w as f64 / 1000.0,
            size: *size,
            key: format!("/p/j{i}.c"),
        })
        .collect();
    let (speeds, overhead) = (farm.speeds(), o.overhead);
    let broker = |costs: Costs| {
        let epoch = Instant::now();
        let told = sim_farm(farm.hosts, o.unconfigured);
        let sched = Scheduler::new(&told, HealthConfig::default(), epoch);
        Broker {
            sched,
            costs,
            epoch,
        }
    };
    let j = j as usize;
    let mut b = broker(Costs::default());
    let (first, starts) = build(&mut b, &jobs, &speeds, j, overhead, 0.0);
    let mut memory = broker(b.costs.clone());
    let (second, starts2) = build(&mut b, &jobs, &speeds, j, overhead, first + 1.0);
    let memory = build(&mut memory, &jobs, &speeds, j, overhead, 0.0).0;
    let mut exact = Costs::default();
    for s in &jobs {
        exact.record(Some(&s.key), s.size, s.work);
    }
    let oracle = build(&mut broker(exact), &jobs, &speeds, j, overhead, 0.0).0;
    let (distcc, distcc_starts) = distcc_build(&jobs, farm.hosts, j, overhead);
    if o.trace && seed == o.first_seed && j == o.extra_j.unwrap_or(2 * farm.slots()) as usize {
        let t = Trace {
            jobs: &jobs,
            speeds: &speeds,
            overhead,
        };
        t.print(&b, (seed, j), [&starts, &starts2], &distcc_starts);
    }
    let bound = farm.bound(&jobs, overhead);
    [first, second, memory, oracle, distcc].map(|t| t / bound)
}

/// Where the longest jobs and the last to end ran (`--trace`).
struct Trace<'a> {
    jobs: &'a [Sim],
    speeds: &'a [f64],
    overhead: f64,
}

impl Trace<'_> {
    fn print(
        &self,
        b: &Broker,
        (seed, j): (u64, usize),
        [starts, starts2]: [&[(f64, usize)]; 2],
        distcc_starts: &[f64],
    ) {
        let (jobs, speeds) = (self.jobs, self.speeds);
        let learned: Vec<String> = (0..speeds.len())
            .map(|h| {
                let l = b.sched.learned_speed(b.sched.host(HostId(h)));
                format!("{}:{:.2}", speeds[h], l.unwrap_or(f64::NAN))
            })
            .collect();
        println!(
            "  seed {seed}, -j{j}: learned after two builds (true:learned) {}",
            learned.join(" ")
        );
        println!(
            "  seed {seed}, -j{j}: the longest jobs, then the last to end in the second build (index, work, size): start and host speed under tcpb, first and second build, start under distcc"
        );
        for i in self.shown(starts2) {
            let on = |(start, host): (f64, usize)| {
                let speed = speeds.get(host).copied().unwrap_or(f64::NAN);
                let end = start + jobs[i].work / speed + self.overhead;
                format!("{start:5.2}-{end:5.2} on {speed}")
            };
            println!(
                "    j{i:<3} {:5.2} s {:>7} B: {} | {} / {:5.2}",
                jobs[i].work,
                jobs[i].size,
                on(starts[i]),
                on(starts2[i]),
                distcc_starts[i]
            );
        }
    }

    /// The ten longest jobs, then those of the last five to end (in the
    /// build that `starts` describes) that are not among them.
    fn shown(&self, starts: &[(f64, usize)]) -> Vec<usize> {
        let (jobs, speeds) = (self.jobs, self.speeds);
        let mut longest: Vec<usize> = (0..jobs.len()).collect();
        longest.sort_by(|a, b| jobs[*b].work.total_cmp(&jobs[*a].work));
        let end = |i: usize, (start, host): (f64, usize)| {
            start + jobs[i].work / speeds.get(host).copied().unwrap_or(f64::NAN)
        };
        let mut last: Vec<usize> = (0..jobs.len()).collect();
        last.sort_by(|a, b| end(*b, starts[*b]).total_cmp(&end(*a, starts[*a])));
        longest.truncate(10);
        let late: Vec<usize> = last
            .into_iter()
            .take(5)
            .filter(|i| !longest.contains(i))
            .collect();
        longest.extend(late);
        longest
    }
}

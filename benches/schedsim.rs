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
fn farm(spec: &[(f64, u32)], unconfigured: bool) -> Farm {
    let hosts = spec
        .iter()
        .enumerate()
        .map(|(i, (speed, slots))| HostSpec {
            name: format!("h{i}:3632"),
            addr: Some((format!("h{i}"), 3632)),
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
    }
}

/// What the broker keeps between builds.
struct Broker {
    sched: Scheduler,
    costs: Costs,
    epoch: Instant,
}

/// One build at `-j j` starting at `t0`; returns its makespan in seconds.
/// A job holds its slot for its work on the host's true speed plus
/// `overhead` (preprocessing, transfer); make starts the next job when one
/// ends.
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
    let mut now = t0;
    let (mut next, mut done) = (0usize, 0usize);
    // Per lease: its job, and its host and start once placed.
    let mut leases: Vec<(usize, Option<(usize, f64)>)> = Vec::new();
    let mut events = BinaryHeap::new();
    let place = |placed: Vec<Placement>,
                 now: f64,
                 leases: &mut Vec<(usize, Option<(usize, f64)>)>,
                 events: &mut BinaryHeap<Done>| {
        for p in placed {
            let l = &mut leases[p.lease as usize];
            l.1 = Some((p.host.0, now));
            events.push(Done(
                now + jobs[l.0].work / speeds[p.host.0] + overhead,
                p.lease,
            ));
        }
    };
    while done < jobs.len() {
        while next < jobs.len() && next - done < j {
            let s = &jobs[next];
            let known = b.costs.knows(&s.key);
            let cost = b.costs.expected(Some(&s.key), s.size);
            let job = Job {
                need: Need::Remote,
                cost,
                known,
                light: known && cost < 0.5 * b.costs.mean(),
                build: 1,
            };
            let lease = leases.len() as LeaseId;
            leases.push((next, None));
            place(
                b.sched.request(lease, job, at(now)),
                now,
                &mut leases,
                &mut events,
            );
            next += 1;
        }
        let Done(t, lease) = events.pop().expect("a job runs");
        now = t;
        let (job, host) = leases[lease as usize];
        let (s, h) = (&jobs[job], host.expect("placed").0);
        // The server's time: the work, and its share of the overhead
        // (receiving the job and the real compile, at any host speed).
        let server = s.work / speeds[h] + SERVER_SHARE * overhead;
        let id = HostId(h);
        if let Some((work, weight)) = b.costs.evidence(Some(&s.key), s.size) {
            b.sched.observe(id, work, server, weight);
        }
        let speed = b.sched.speed(b.sched.host(id));
        b.costs.record(Some(&s.key), s.size, server * speed);
        place(
            b.sched.release(lease, at(now)),
            now,
            &mut leases,
            &mut events,
        );
        done += 1;
    }
    let mut starts = vec![(f64::NAN, usize::MAX); jobs.len()];
    for (job, placed) in leases {
        starts[job] = placed.map_or((f64::NAN, usize::MAX), |p| (p.1 - t0, p.0));
    }
    (now - t0, starts)
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: f64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    let n = opt("--jobs", 80.0) as usize;
    let overhead = opt("--overhead", 0.1);
    let seeds = opt("--seeds", 9.0) as u64;
    let unconfigured = args.iter().any(|a| a == "--unconfigured");
    let trace = args.iter().any(|a| a == "--trace");
    let first_seed = opt("--seed", 0.0) as u64;
    // A further -j level (for example one as wide as the build).
    let extra_j = Some(opt("--j", 0.0) as u32).filter(|j| *j > 0);
    type F<'a> = (&'a str, &'a [(f64, u32)], f64);
    let farms: [F; 2] = [
        ("heterogeneous", &[(4.0, 2), (2.0, 2), (1.0, 4)], 1000.0),
        ("uniform", &[(1.0, 3), (1.0, 3), (1.0, 2)], 500.0),
    ];
    let profile = common::Profile::from_args(&args);
    println!(
        "scheduler simulation: {n} jobs ({}), {overhead} s overhead per job, {seeds} job sets, speeds {}",
        profile.describe(),
        if unconfigured {
            "left to be learned (all configured 1.0)"
        } else {
            "configured"
        }
    );
    for (name, spec, mean) in farms {
        let slots: u32 = spec.iter().map(|(_, s)| s).sum();
        let capacity: f64 = spec.iter().map(|(s, n)| s * *n as f64).sum();
        let fastest = spec.iter().map(|(s, _)| *s).fold(0.0, f64::max);
        let speeds: Vec<f64> = spec.iter().map(|(s, _)| *s).collect();
        println!("\nfarm {name}");
        println!(
            "{:>4}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}",
            "-j", "first", "second", "gain", "memory", "oracle", "distcc"
        );
        let mut levels = vec![slots / 2, slots, slots * 2];
        levels.extend(extra_j);
        for j in levels {
            let mut runs: [Vec<f64>; 5] = Default::default();
            for seed in first_seed..first_seed + seeds {
                let set = profile.job_set(n, mean, seed);
                let jobs: Vec<Sim> = set
                    .iter()
                    .enumerate()
                    .map(|(i, (w, size))| Sim {
                        work: *w as f64 / 1000.0,
                        size: *size,
                        key: format!("/p/j{i}.c"),
                    })
                    .collect();
                let total: f64 = jobs.iter().map(|s| s.work + overhead).sum();
                let longest = jobs.iter().map(|s| s.work).fold(0.0, f64::max);
                let bound = (total / capacity).max(longest / fastest + overhead);
                let broker = |costs: Costs| {
                    let epoch = Instant::now();
                    let sched =
                        Scheduler::new(&farm(spec, unconfigured), HealthConfig::default(), epoch);
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
                let (distcc, distcc_starts) = distcc_build(&jobs, spec, j, overhead);
                if trace && seed == first_seed && j == extra_j.unwrap_or(2 * slots) as usize {
                    let mut longest: Vec<usize> = (0..jobs.len()).collect();
                    longest.sort_by(|a, b| jobs[*b].work.total_cmp(&jobs[*a].work));
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
                    let end = |i: usize, (start, host): (f64, usize)| {
                        start + jobs[i].work / speeds.get(host).copied().unwrap_or(f64::NAN)
                    };
                    let mut last: Vec<usize> = (0..jobs.len()).collect();
                    last.sort_by(|a, b| end(*b, starts2[*b]).total_cmp(&end(*a, starts2[*a])));
                    longest.truncate(10);
                    let late: Vec<usize> = last
                        .into_iter()
                        .take(5)
                        .filter(|i| !longest.contains(i))
                        .collect();
                    longest.extend(late);
                    for i in longest {
                        let on = |(start, host): (f64, usize)| {
                            let speed = speeds.get(host).copied().unwrap_or(f64::NAN);
                            let end = start + jobs[i].work / speed + overhead;
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
                for (r, t) in runs.iter_mut().zip([first, second, memory, oracle, distcc]) {
                    r.push(t / bound);
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

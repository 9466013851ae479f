//! Simulated farm hosts that share their speed, for comparing tools that
//! may oversubscribe a host: with N compiles running on a host of S slots,
//! each progresses at min(1, S/N) of its speed (three sleeps on a two-slot
//! host must not end as fast as two). Or, as a host whose distccd has
//! `--jobs` = its slots (`Oversubscribed::Queue`): S compiles run at full
//! speed and the others wait at the host in arrival order. Each host is a
//! real distccd, started with room for far more jobs than its slots,
//! whose compiler wrapper asks this process's simulator (over a loopback
//! TCP port) to run the job's declared work, then really compiles. The
//! simulator counts, at the host, how many compiles run at once.

use super::{Guard, chmod, distccd};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One job in progress on a simulated host.
struct Job {
    host: usize,
    /// Work left, in ms at speed 1.
    left: f64,
    done: Sender<()>,
}

/// What the simulator counts per host.
#[derive(Debug, Clone, Default)]
pub struct HostCount {
    /// The most compiles that ran at once.
    pub peak: usize,
    /// Seconds with more compiles running than slots.
    pub over_s: f64,
    /// Compiles run.
    pub jobs: usize,
    /// Slot-seconds in use (at most the slots at any moment).
    pub busy_s: f64,
}

/// What a host does with more compiles than slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Oversubscribed {
    /// All run, each at slots ÷ compiles of the host's speed.
    Share,
    /// The first `slots` to arrive run at full speed; the rest wait.
    Queue,
}

/// The hosts' speeds and slots, their jobs, and what was counted.
struct Sim {
    over: Oversubscribed,
    hosts: Vec<(f64, u32)>,
    jobs: Vec<Job>,
    counts: Vec<HostCount>,
}

/// A simulated farm: its distccd hosts and the simulator they ask.
pub struct SharedFarm {
    /// (port, slots) of each host's distccd.
    pub hosts: Vec<(u16, u32)>,
    sim: Arc<Mutex<Sim>>,
    _daemons: Vec<Guard>,
}

impl SharedFarm {
    /// Hosts of (speed, slots) under `root`; each distccd takes up to
    /// `room` × its slots at once, and runs them as `over` says.
    pub fn start(root: &Path, spec: &[(f64, u32)], room: u32, over: Oversubscribed) -> SharedFarm {
        let sim = Arc::new(Mutex::new(Sim {
            over,
            hosts: spec.to_vec(),
            jobs: Vec::new(),
            counts: vec![HostCount::default(); spec.len()],
        }));
        let port = serve(sim.clone());
        let mut hosts = Vec::new();
        let mut daemons = Vec::new();
        for (i, (_, slots)) in spec.iter().enumerate() {
            let bin = wrappers(root, i, port);
            let path = format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let log = root.join(format!("shared-host{i}.log"));
            let (guard, p) = distccd(&log, slots * room, Some(&path));
            hosts.push((p, *slots));
            daemons.push(guard);
        }
        SharedFarm {
            hosts,
            sim,
            _daemons: daemons,
        }
    }

    /// `127.0.0.1:PORT/SLOTS ...`, fastest host first as given.
    pub fn hosts_line(&self) -> String {
        let each = self.hosts.iter().map(|(p, s)| format!("127.0.0.1:{p}/{s}"));
        each.collect::<Vec<_>>().join(" ")
    }

    /// Compiles running on each host now.
    pub fn running(&self) -> Vec<usize> {
        let sim = self.sim.lock().unwrap();
        (0..sim.hosts.len())
            .map(|h| sim.jobs.iter().filter(|j| j.host == h).count())
            .collect()
    }

    /// What each host counted since the last call (then starts anew).
    pub fn take_counts(&self) -> Vec<HostCount> {
        let mut sim = self.sim.lock().unwrap();
        let n = sim.counts.len();
        std::mem::replace(&mut sim.counts, vec![HostCount::default(); n])
    }
}

/// Compiler wrappers for host `idx`: a compile of a `.i` file asks the
/// simulator at `port` to run its declared work, then runs gcc.
fn wrappers(root: &Path, idx: usize, port: u16) -> PathBuf {
    let bin = root.join(format!("shared-host{idx}-bin"));
    std::fs::create_dir_all(&bin).unwrap();
    chmod(&bin, 0o755);
    let real = which::which("x86_64-linux-gnu-gcc").expect("gcc");
    let script = format!(
        "#!/bin/bash\nf=\nfor a in \"$@\"; do case \"$a\" in -E) exec {real} \"$@\";; *.i) f=\"$a\";; esac; done\n\
         if [ -n \"$f\" ]; then\n  w=$(sed -n 's/.*tcpb_work_ms = \\([0-9]*\\).*/\\1/p' \"$f\" | head -n 1)\n  \
         exec 3<>/dev/tcp/127.0.0.1/{port}\n  echo \"{idx} ${{w:-0}}\" >&3\n  read -r _ <&3\n  exec 3>&-\nfi\n\
         exec {real} \"$@\"\n",
        real = real.display()
    );
    for name in ["x86_64-linux-gnu-gcc", "gcc", "cc"] {
        std::fs::write(bin.join(name), &script).unwrap();
        chmod(&bin.join(name), 0o755);
    }
    bin
}

/// Serves the wrappers on a loopback port and runs the clock.
fn serve(sim: Arc<Mutex<Sim>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = sim.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || job(conn, &s));
        }
    });
    std::thread::spawn(move || tick(&sim));
    port
}

/// One wrapper's job: registered, then answered once its work is done.
fn job(conn: TcpStream, sim: &Mutex<Sim>) {
    let mut line = String::new();
    if BufReader::new(&conn).read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line
        .split_whitespace()
        .map(|p| p.parse::<f64>().unwrap_or(0.0));
    let (host, work) = (
        parts.next().unwrap_or(0.0) as usize,
        parts.next().unwrap_or(0.0),
    );
    let (tx, rx) = channel();
    {
        let mut s = sim.lock().unwrap();
        if host >= s.hosts.len() {
            return;
        }
        s.jobs.push(Job {
            host,
            left: work,
            done: tx,
        });
        let running = s.jobs.iter().filter(|j| j.host == host).count();
        let c = &mut s.counts[host];
        c.peak = c.peak.max(running);
        c.jobs += 1;
    }
    let _ = rx.recv();
    let _ = (&conn).write_all(b"done\n");
}

/// Every 2 ms: each host's jobs progress at speed × min(1, slots / N),
/// or (`Queue`) the first `slots` of them at full speed.
fn tick(sim: &Mutex<Sim>) {
    let mut last = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(2));
        let now = Instant::now();
        let dt_ms = now.duration_since(last).as_secs_f64() * 1000.0;
        last = now;
        let mut s = sim.lock().unwrap();
        let Sim {
            over,
            hosts,
            jobs,
            counts,
        } = &mut *s;
        for (h, (speed, slots)) in hosts.iter().enumerate() {
            let n = jobs.iter().filter(|j| j.host == h).count();
            if n == 0 {
                continue;
            }
            if n > *slots as usize {
                counts[h].over_s += dt_ms / 1000.0;
            }
            counts[h].busy_s += n.min(*slots as usize) as f64 * dt_ms / 1000.0;
            let (rate, running) = match over {
                Oversubscribed::Share => (speed * (f64::from(*slots) / n as f64).min(1.0), n),
                Oversubscribed::Queue => (*speed, n.min(*slots as usize)),
            };
            for j in jobs.iter_mut().filter(|j| j.host == h).take(running) {
                j.left -= dt_ms * rate;
            }
        }
        jobs.retain(|j| {
            let finished = j.left <= 0.0;
            if finished {
                let _ = j.done.send(());
            }
            !finished
        });
    }
}

//! A simulated broker for the team scale benchmark: the real team task
//! (`tcpb::broker::team::task::run`) drives it through `Member`, and it
//! runs its build's compiles on the slots its claims let it use, each one
//! a sleep of its work ÷ the host's speed. No distccd, no compiler: what is
//! measured is the team's coordination through etcd.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tcpb::broker::team::driver::Team;
use tcpb::broker::team::member::{Member, TeamDemand, Told};
use tcpb::broker::team::plan::Need;
use tokio::sync::Notify;

/// One host of the simulated farm.
pub struct SimHost {
    pub name: String,
    pub speed: f64,
    pub slots: u32,
}

/// The farm: hosts fastest first, and each one's index by name.
pub struct SimFarm {
    pub hosts: Vec<SimHost>,
    index: HashMap<String, usize>,
}

impl SimFarm {
    /// `n` hosts of `slots` each, speeds 4, 2 and 1 in turn.
    pub fn new(n: usize, slots: u32) -> SimFarm {
        let mut hosts: Vec<SimHost> = (0..n)
            .map(|i| SimHost {
                name: format!("sim{i:04}:3632"),
                speed: [4.0, 2.0, 1.0][i % 3],
                slots,
            })
            .collect();
        hosts.sort_by(|a, b| b.speed.total_cmp(&a.speed).then(a.name.cmp(&b.name)));
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        SimFarm { hosts, index }
    }

    /// Every slot's capacity together.
    pub fn slots(&self) -> u32 {
        self.hosts.iter().map(|h| h.slots).sum()
    }
}

/// What one simulated broker's build is doing.
#[derive(Default)]
struct Build {
    busy: Vec<u32>,
    running: u32,
    /// When each waiting compile was queued, oldest first.
    queued: std::collections::VecDeque<Instant>,
    /// The build's -j: running + queued while it builds; 0: no build.
    jobs: u32,
    started: Option<Instant>,
    /// Build start to its first compile running.
    first: Option<Duration>,
    compiles: u64,
}

/// A simulated broker: its team membership and its build.
pub struct SimBroker {
    pub team: Arc<Team>,
    farm: Arc<SimFarm>,
    build: Mutex<Build>,
    kick: Notify,
    /// Mean work of a compile on a host of speed 1.
    work: Duration,
}

/// `Member` for a shared simulated broker.
#[derive(Clone)]
pub struct Sim(pub Arc<SimBroker>);

impl SimBroker {
    pub fn new(team: Arc<Team>, farm: Arc<SimFarm>, work: Duration) -> Arc<SimBroker> {
        let busy = vec![0; farm.hosts.len()];
        Arc::new(SimBroker {
            team,
            farm,
            build: Mutex::new(Build {
                busy,
                ..Build::default()
            }),
            kick: Notify::new(),
            work,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Build> {
        self.build.lock().unwrap()
    }

    /// Starts a build of `jobs` compiles at once, kept that deep (each
    /// compile that ends is followed by another); 0 ends the build (the
    /// compiles running finish).
    pub fn set_jobs(&self, jobs: u32) {
        let now = Instant::now();
        {
            let mut b = self.lock();
            b.jobs = jobs;
            b.queued.clear();
            if jobs > 0 {
                b.started = Some(now);
                b.first = None;
                let more = jobs.saturating_sub(b.running);
                b.queued.extend(std::iter::repeat_n(now, more as usize));
            }
        }
        self.team.wake();
        self.kick.notify_one();
    }

    /// Build start to first compile running, once it ran; compiles ended.
    pub fn first_and_compiles(&self) -> (Option<Duration>, u64) {
        let b = self.lock();
        (b.first, b.compiles)
    }

    /// Runs compiles on the slots the team lets this broker use, until
    /// the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            for (host, took) in self.place() {
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(took).await;
                    me.end(host);
                });
            }
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Starts queued compiles on free usable slots, fastest hosts first:
    /// the host and how long each compile takes.
    fn place(&self) -> Vec<(usize, Duration)> {
        let mut hosts: Vec<usize> = (self.team.claimed_hosts().iter())
            .filter_map(|h| self.farm.index.get(h).copied())
            .collect();
        hosts.sort_unstable();
        let mut b = self.lock();
        let mut out = Vec::new();
        let now = Instant::now();
        for h in hosts {
            let host = &self.farm.hosts[h];
            let usable = self.team.usable(&host.name, host.slots);
            while b.busy[h] < usable {
                let Some(_queued_at) = b.queued.pop_front() else {
                    break;
                };
                b.busy[h] += 1;
                b.running += 1;
                if b.first.is_none() {
                    b.first = b.started.map(|s| now - s);
                }
                out.push((h, self.took(host.speed, b.compiles + out.len() as u64)));
            }
        }
        if !out.is_empty() {
            self.team.wake();
        }
        out
    }

    /// A compile's time on a host of `speed`: its work (0.5 to 1.5 × the
    /// mean, spread by a fixed sequence) ÷ the speed.
    fn took(&self, speed: f64, n: u64) -> Duration {
        let spread = 0.5 + (n.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
        self.work.mul_f64(spread / speed)
    }

    fn end(&self, host: usize) {
        {
            let mut b = self.lock();
            b.busy[host] -= 1;
            b.running -= 1;
            b.compiles += 1;
            if b.jobs > b.running + b.queued.len() as u32 {
                b.queued.push_back(Instant::now());
            }
        }
        self.team.wake();
        self.kick.notify_one();
    }
}

impl Member for Sim {
    fn demand(&self) -> TeamDemand {
        let b = self.0.lock();
        let queued = b.queued.len() as u32;
        let needs = (self.0.farm.hosts.iter().enumerate())
            .map(|(i, h)| Need {
                name: h.name.clone(),
                slots: h.slots,
                speed: h.speed,
                configured: h.speed,
                busy: b.busy[i],
                queued,
                usable: true,
                health: None,
                error: None,
                learned: false,
                listed: true,
            })
            .collect();
        TeamDemand {
            needs,
            running: b.running,
            queued,
            builds: u32::from(b.jobs > 0 || b.running > 0),
        }
    }

    fn busy_on(&self, host: &str) -> u32 {
        let i = self.0.farm.index.get(host);
        i.map_or(0, |i| self.0.lock().busy[*i])
    }

    fn capacity_changed(&self) {
        self.0.kick.notify_one();
    }

    fn hosts_changed(&self) {}

    fn told(&self, _found: Vec<Told>) {}
}

//! The control protocol between the `tcpb` client and its broker: typed,
//! versioned messages. Framing lives in `frame`.

use crate::hosts::HostList;
use serde::{Deserialize, Serialize};

mod team;
pub use team::{TeamBroker, TeamHostStatus, TeamStatus};

/// Bumped whenever a message changes shape. Both sides send it first.
pub const PROTOCOL_VERSION: u32 = 2;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientMsg {
    /// The sender's `PROTOCOL_VERSION`.
    pub v: u32,
    /// The request.
    pub req: Request,
}

/// What a broker sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerMsg {
    /// The broker's `PROTOCOL_VERSION`.
    pub v: u32,
    /// The broker's pid, so a client of another version can stop it.
    pub pid: u32,
    /// The answer.
    pub resp: Response,
}

/// The part of any message that every version can read.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionProbe {
    /// The sender's `PROTOCOL_VERSION`.
    pub v: u32,
    /// The broker's pid (only in broker messages).
    #[serde(default)]
    pub pid: Option<u32>,
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Ask for a slot for one compile; the lease lives as long as the connection.
    Lease(LeaseRequest),
    /// Ask for a status snapshot.
    Status,
    /// Ask the broker to exit once its leases are done.
    Stop,
    /// Change the farm at run time (`tcpb host …`).
    Host {
        /// The change.
        cmd: HostCmd,
        /// The client's host list, adopted first when it changed.
        farm: HostList,
        /// A change to the team's farm (`--team`), not this broker's.
        #[serde(default)]
        team: bool,
    },
    /// Re-read `config.toml` (`tcpb reload`).
    Reload,
}

/// A runtime farm change. Hosts are named `HOST[:PORT]` or `localhost`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostCmd {
    /// Add a host (`HOST[:PORT][/SLOTS][,lzo][,cpp]`).
    Add {
        /// The host spec.
        spec: String,
        /// Its speed.
        speed: Option<f64>,
    },
    /// Remove a host; `force` ends its running jobs.
    Remove {
        /// The host.
        name: String,
        /// End running jobs (distcc compiles them locally).
        force: bool,
    },
    /// No new jobs; running ones finish; the host stays listed.
    Drain {
        /// The host.
        name: String,
    },
    /// Undo drain and disable.
    Enable {
        /// The host.
        name: String,
    },
    /// No jobs until enabled.
    Disable {
        /// The host.
        name: String,
    },
    /// Change slots and/or speed.
    Set {
        /// The host.
        name: String,
        /// New slots.
        slots: Option<u32>,
        /// New speed.
        speed: Option<f64>,
    },
    /// Drop every runtime change.
    Reset,
}

/// The facts of one compile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The client's pid.
    pub pid: u32,
    /// The client's working directory.
    pub cwd: String,
    /// The compiler as invoked.
    pub compiler: String,
    /// The source file, for distributable jobs.
    pub source: Option<String>,
    /// The source file's size in bytes (0 when unknown).
    pub source_size: u64,
    /// The source file's canonical path, the key of its cost memory.
    #[serde(default)]
    pub source_path: Option<String>,
    /// The build it belongs to (the client's process group): builds share
    /// the queue fairly.
    #[serde(default)]
    pub build: u32,
    /// True when the job must run on this machine.
    pub local_only: bool,
    /// The client's distcc host list; the broker adopts it when it changed.
    pub farm: HostList,
    /// When the list names ssh hosts: the compile's `DISTCC_SSH` and
    /// `SSH_*` variables, the environment the broker runs ssh with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_env: Vec<(String, String)>,
    /// The compile's `DISTCC_IO_TIMEOUT` in seconds, when set: distcc
    /// gives up on a silent host after it (300 s when unset), so the relay
    /// calls the host hung before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_timeout_s: Option<u64>,
}

/// A broker's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The compile waits; `position` 1 is next.
    Queued {
        /// Place in the queue.
        position: u32,
    },
    /// Something the user should read before the compile runs (why it
    /// runs here although its list names farm hosts); the grant follows.
    Notice {
        /// One line for the user.
        message: String,
    },
    /// The slot is granted.
    Granted(Grant),
    /// The status snapshot.
    Status(Box<StatusSnapshot>),
    /// The broker is stopping.
    Stopping,
    /// A change was made; what changed.
    Done {
        /// What changed, for the user.
        message: String,
    },
    /// The request could not be served.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Where a compile runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Grant {
    /// Run distcc against the loopback relay port, which leads to `host`.
    Remote {
        /// The farm host chosen (`addr:port`).
        host: String,
        /// The loopback relay port.
        port: u16,
        /// The host's distcc options (`,lzo`, `,cpp`).
        options: String,
    },
    /// Run the real compiler on this machine.
    Local,
}

/// What `tcpb status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    /// The broker process; `None` when no broker runs.
    pub broker: Option<BrokerInfo>,
    /// Where the farm came from.
    pub farm_origin: String,
    /// Compiles waiting for a slot.
    pub queued: u32,
    /// Compiles holding a slot.
    pub running: u32,
    /// Compiles granted since the broker started.
    pub granted: u64,
    /// Compiles that waited `queue_timeout_s` and ran locally.
    #[serde(default)]
    pub queue_timeouts: u64,
    /// Jobs a failing host lost, which distcc compiled locally.
    #[serde(default)]
    pub fell_back: u64,
    /// Compiles sent to compile locally because the queue or the number of
    /// connections was at its limit (`max_queue`, `max_connections`).
    #[serde(default)]
    pub over_limit: u64,
    /// Relayed streams that did not parse as distcc's protocol (relayed
    /// untouched all the same).
    #[serde(default)]
    pub unparsed_streams: u64,
    /// Compiles granted that ran on this machine (no farm, or local-only).
    #[serde(default)]
    pub granted_local: u64,
    /// Mean wait in the queue over the last 1,000 grants, in seconds.
    #[serde(default)]
    pub wait_mean_s: Option<f64>,
    /// 95th percentile of that wait, in seconds.
    #[serde(default)]
    pub wait_p95_s: Option<f64>,
    /// Every wait since the broker started, as a cumulative histogram:
    /// (upper bound in seconds, grants that waited at most that long).
    #[serde(default)]
    pub wait_histogram: Vec<(f64, u64)>,
    /// The sum of those waits, in seconds.
    #[serde(default)]
    pub wait_sum_s: f64,
    /// How many waits (grants) there were.
    #[serde(default)]
    pub wait_count: u64,
    /// The first compiles in the queue.
    #[serde(default)]
    pub queue: Vec<QueuedJob>,
    /// The compiles holding a slot now.
    #[serde(default)]
    pub compiling: Vec<RunningJob>,
    /// Every host, in farm order.
    pub hosts: Vec<HostStatus>,
    /// The host lists compiles are using: each compile goes only to the
    /// hosts of its own list.
    #[serde(default)]
    pub lists: Vec<ListStatus>,
    /// Team mode, when `[team]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamStatus>,
}

/// A host list in use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListStatus {
    /// Where the compiles read it (`DISTCC_HOSTS`, a file).
    pub origin: String,
    /// Its entries, as `HOST:PORT/SLOTS[,lzo][,cpp]` or `localhost/N`.
    pub hosts: Vec<String>,
    /// The builds (make's process group ids) with compiles running or
    /// waiting on it.
    pub builds: Vec<u32>,
    /// Compiles running or waiting.
    pub compiles: u32,
    /// Seconds since a compile last used it.
    pub idle_s: u64,
    /// Its entries tcpb does not use (ssh hosts, `+zeroconf`), and why.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// A compile waiting in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedJob {
    /// 1 is next.
    pub position: u32,
    /// The client's pid.
    pub pid: u32,
    /// The source file, for distributable jobs.
    pub source: Option<String>,
    /// Seconds waited so far.
    pub waited_s: f64,
}

/// A compile holding a slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningJob {
    /// The host it runs on (`localhost` for this machine).
    pub host: String,
    /// The client's pid.
    pub pid: u32,
    /// The source file, for distributable jobs.
    pub source: Option<String>,
    /// Seconds since it was granted.
    pub elapsed_s: f64,
}

/// The broker process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Its pid.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Its version.
    pub version: String,
}

/// A host's state as `tcpb status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Takes jobs.
    Up,
    /// Takes jobs, but neither a probe nor a compile has reached it yet (a
    /// host just added), or, with no broker running, never seen.
    Unknown,
    /// The relay saw it fail; out of the choice until probes decide.
    Suspect,
    /// Confirmed dead (probes failed) or hanging.
    Down,
    /// Removed from the farm; jobs in flight are finishing.
    Draining,
    /// Disabled by the user.
    Disabled,
}

/// One host's line in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// `addr:port` or `localhost`.
    pub name: String,
    /// Its state.
    pub state: HostState,
    /// Its slots.
    pub slots: u32,
    /// Slots in use.
    pub busy: u32,
    /// Configured relative speed.
    pub speed: f64,
    /// Speed learned from its recent jobs, in the same units.
    #[serde(default)]
    pub learned_speed: Option<f64>,
    /// Jobs the learned speed is based on.
    #[serde(default)]
    pub samples: u32,
    /// Jobs finished on it.
    pub jobs: u64,
    /// Failures the relay saw.
    pub failures: u64,
    /// Jobs lost to this host's failure, which distcc compiled locally.
    #[serde(default)]
    pub fallbacks: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Seconds since the last error.
    pub last_error_age_s: Option<u64>,
    /// True for the pool that only serves jobs which must run locally.
    #[serde(default)]
    pub local_only: bool,
    /// Mean server time of its jobs (from the relay), in seconds.
    #[serde(default)]
    pub mean_job_s: Option<f64>,
    /// With no broker running: seconds since `state` was last known (the
    /// last broker saved it).
    #[serde(default)]
    pub seen_s: Option<u64>,
}

#[cfg(test)]
impl HostStatus {
    /// An up host `name` with 4 slots, one busy, nothing else known (for
    /// tests of what shows it).
    pub(crate) fn example(name: &str) -> HostStatus {
        HostStatus {
            name: name.into(),
            state: HostState::Up,
            slots: 4,
            busy: 1,
            speed: 1.0,
            learned_speed: None,
            samples: 0,
            jobs: 0,
            failures: 0,
            fallbacks: 0,
            last_error: None,
            last_error_age_s: None,
            local_only: false,
            mean_job_s: None,
            seen_s: None,
        }
    }
}

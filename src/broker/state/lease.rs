//! One lease: a compile from the moment it asks for a slot until its
//! control connection closes. Its whole life is this one record in the
//! broker's map: waiting in the queue; connecting (placed on a farm host,
//! the relay connecting to it before the grant); granted (with a relay
//! port when remote); relaying once distcc has connected to that port.
//! Ending it removes the record.

use crate::broker::relay::SshEnv;
use crate::broker::sched::costs::Costs;
use crate::broker::sched::{Job, Need};
use crate::protocol::{Grant, LeaseRequest};
use std::time::Instant;
use tokio::sync::oneshot;

/// distcc's I/O timeout when `DISTCC_IO_TIMEOUT` is unset.
const DISTCC_IO_TIMEOUT_S: u64 = 300;

/// A lease's facts and where it is in its life.
pub(super) struct Lease {
    /// The client's pid.
    pub pid: u32,
    /// The source file as written, for status.
    pub source: Option<String>,
    /// Its canonical path: the key of the cost memory.
    pub key: Option<String>,
    /// Its size in bytes.
    pub size: u64,
    /// Its build (process group).
    pub build: u32,
    /// Its host list's index: the host set it may use.
    pub set: u32,
    /// When it asked for a slot.
    pub since: Instant,
    /// Where it is now.
    pub phase: Phase,
    /// Why it runs here although its list names farm hosts, for the user.
    pub note: Option<String>,
    /// Its ssh environment, when its list names ssh hosts.
    pub ssh_env: Option<SshEnv>,
    /// Seconds after which its distcc gives up on a silent host.
    pub io_timeout_s: u64,
}

/// How a waiting client hears of its grant, with a note for the user.
pub(crate) type Waiter = oneshot::Sender<(Grant, Option<String>)>;

/// Where a lease is in its life.
pub(super) enum Phase {
    /// In the queue. Its client hears of the grant through the sender;
    /// `None` once the broker is stopping and turned it away.
    Waiting(Option<Waiter>),
    /// Placed on a farm host; the relay is connecting to it.
    Connecting(Option<Waiter>),
    /// Holding a slot since `at`; `port` is its relay port when remote.
    Granted {
        /// When it was granted.
        at: Instant,
        /// Its relay port.
        port: Option<u16>,
    },
    /// distcc connected to its relay port; the relay serves the job.
    Relaying {
        /// When it was granted.
        at: Instant,
        /// Its relay port.
        port: u16,
    },
}

impl Lease {
    /// A lease for `req`, waiting for the grant `waiter` carries.
    pub(super) fn new(req: &LeaseRequest, set: u32, waiter: Waiter, now: Instant) -> Lease {
        Lease {
            pid: req.pid,
            source: req.source.clone(),
            key: req.source_path.clone(),
            size: req.source_size,
            build: req.build,
            set,
            since: now,
            phase: Phase::Waiting(Some(waiter)),
            note: None,
            ssh_env: (!req.ssh_env.is_empty()).then(|| SshEnv::from(req.ssh_env.as_slice())),
            io_timeout_s: req.io_timeout_s.unwrap_or(DISTCC_IO_TIMEOUT_S),
        }
    }

    /// When it was granted, if it was.
    pub(super) fn granted_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Granted { at, .. } | Phase::Relaying { at, .. } => Some(at),
            Phase::Waiting(_) | Phase::Connecting(_) => None,
        }
    }

    /// Its relay port, if it has one.
    pub(super) fn port(&self) -> Option<u16> {
        match self.phase {
            Phase::Granted { port, .. } => port,
            Phase::Relaying { port, .. } => Some(port),
            Phase::Waiting(_) | Phase::Connecting(_) => None,
        }
    }

    /// Its waiting client's sender, taken (`None` if it was turned away).
    pub(super) fn take_waiter(&mut self) -> Option<Waiter> {
        match &mut self.phase {
            Phase::Waiting(w) | Phase::Connecting(w) => w.take(),
            _ => None,
        }
    }

    /// distcc connected to the relay port: the job is being relayed.
    pub(super) fn relaying(&mut self) {
        if let Phase::Granted {
            at,
            port: Some(port),
        } = self.phase
        {
            self.phase = Phase::Relaying { at, port };
        }
    }
}

/// The scheduler's view of the compile `req` asks for, on host set `set`.
pub(super) fn job_of(costs: &mut Costs, req: &LeaseRequest, set: u32) -> Job {
    let key = req.source_path.as_deref();
    let known = key.is_some_and(|k| costs.knows(k));
    let cost = costs.expected(key, req.source_size);
    Job {
        need: if req.local_only {
            Need::Local
        } else {
            Need::Remote
        },
        cost,
        known,
        light: known && cost < 0.5 * costs.mean(),
        build: req.build,
        set,
    }
}

//! The relay. Before a lease is granted, its `Ticket` (where to connect,
//! the timeouts) is connected to its host (`Relay::prepare`; `reach`: a
//! TCP connect, or for an ssh host an ssh run as distcc runs it, `ssh`); a
//! host that refuses or does not answer is reported before distcc has
//! started, and the broker names the next host to try or runs the compile
//! here, so distcc never meets a host already dead. The connection then
//! waits on a loopback port from the pool (`ports`) for distcc's one
//! connection, from this user only (`peer`), and the relay copies bytes
//! both ways (`pump`), watching distcc's token stream as it passes
//! (`observe`).
//!
//! The relay changes no broker state. It sends `Report`s: a host that
//! refused (the broker answers with the next host), a ticket ready on its
//! port or unreachable, that distcc connected, and exactly one `Outcome`
//! per connection it served. A port nobody connected to ends with its
//! lease (`Relay::close`) and reports nothing. It never half-closes toward
//! distccd (distccd kills a job whose client side reads EOF).

mod lane;
pub mod observe;
mod peer;
mod ports;
mod pump;
mod reach;
mod ssh;

pub(crate) use peer::tcp_socket_uid;
pub(crate) use pump::Watch;
pub(crate) use ssh::SshEnv;

use super::sched::LeaseId;
use crate::farm::HostSpec;
use crate::hosts::SshHost;
use crate::sys::Quiet;
use lane::Socket;
use ports::Ports;
use pump::{End, pump};
use reach::Upstream;
use ssh::Masters;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A farm host to connect to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    /// Its name in the farm (`addr:port`, `[USER]@HOST`).
    pub name: String,
    /// How it is reached.
    pub via: Via,
}

/// How a farm host is reached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Via {
    /// Its distccd listens on this address and port.
    Tcp(String, u16),
    /// ssh starts `distccd --inetd` there for each job.
    Ssh(SshHost),
}

impl Target {
    /// How the relay reaches `spec`; `None` for this machine.
    pub(crate) fn of(spec: &HostSpec) -> Option<Target> {
        let via = match (&spec.addr, &spec.ssh) {
            (Some((host, port)), _) => Via::Tcp(host.clone(), *port),
            (None, Some(ssh)) => Via::Ssh(ssh.clone()),
            (None, None) => return None,
        };
        Some(Target {
            name: spec.name.clone(),
            via,
        })
    }
}

/// Everything the relay needs for one lease, handed over at grant time.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    /// The lease.
    pub lease: LeaseId,
    /// The host it was granted.
    pub target: Target,
    /// How long a connect to the host may take.
    pub connect: Duration,
    /// How long the job may pass no byte either way (then it hung).
    pub idle: Duration,
    /// For an ssh host: the compile's ssh environment.
    pub env: Option<SshEnv>,
    /// The compiled file's cost key and size, handed back with the outcome:
    /// the lease may have ended before the relay reports.
    pub file: (Option<String>, u64),
}

/// How a relayed connection ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The host answered (or the client left); what the relay saw.
    Done(Box<Watch>),
    /// The host went away before its answer was complete.
    Lost(String),
    /// No byte either way for the ticket's idle time; why, for the log.
    Hung(String),
}

/// What the relay tells the broker.
#[derive(Debug)]
pub(crate) enum Report {
    /// distcc connected to the relay port of `lease`.
    Connected {
        /// The lease.
        lease: LeaseId,
    },
    /// The ticket's host refused the connect or did not answer it. The
    /// broker answers with the host to try next, or `None`.
    Refused {
        /// The ticket, with the host that refused.
        ticket: Ticket,
        /// Why.
        error: String,
        /// Where to try next.
        reply: oneshot::Sender<Option<Target>>,
    },
    /// The ticket's host answered the connect; the connection waits on
    /// `port` for distcc.
    Ready {
        /// The ticket, with the host it is connected to.
        ticket: Ticket,
        /// Its relay port.
        port: u16,
    },
    /// No host could be reached (each refusal was reported) or no port
    /// could be had: the compile must run here.
    Unreachable {
        /// The ticket, with the last host tried.
        ticket: Ticket,
        /// Why.
        error: String,
    },
    /// A relayed connection ended.
    Ended {
        /// The ticket, with the host it ended on.
        ticket: Ticket,
        /// How.
        outcome: Outcome,
    },
}

/// The relay: its port pool and the way back to the broker.
#[derive(Clone)]
pub(crate) struct Relay {
    /// What the accept loops and relay tasks share with the handle.
    shared: Arc<Shared>,
}

struct Shared {
    /// The open ports and their tickets.
    ports: Ports,
    /// Where reports go (the broker's `relay_reports` task).
    reports: mpsc::UnboundedSender<Report>,
    /// ssh hosts' master connections.
    masters: Masters,
}

impl Relay {
    /// A relay with no port open yet, and the receiver of its reports.
    /// ssh's control sockets go in `ssh_dir`, a private directory.
    pub(crate) fn new(ssh_dir: PathBuf) -> (Relay, mpsc::UnboundedReceiver<Report>) {
        let (reports, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            ports: Ports::default(),
            reports,
            masters: Masters::new(ssh_dir),
        });
        (Relay { shared }, rx)
    }

    /// A compile sent its ssh environment: ssh hosts' probes use the latest.
    pub(crate) fn note_ssh_env(&self, env: &SshEnv) {
        self.shared.masters.note(env);
    }

    /// Whether `target` answers within `timeout`: `None`, or why not.
    pub(crate) async fn probe(&self, target: &Target, timeout: Duration) -> Option<String> {
        reach::probe(&self.shared.masters, target, timeout).await
    }

    /// Connects `ticket` to its host (or the next ones the broker names)
    /// and reports it `Ready` on a relay port, or `Unreachable`; call
    /// within the runtime.
    pub(crate) fn prepare(&self, ticket: Ticket) {
        tokio::spawn(prepare(Arc::clone(&self.shared), ticket));
    }

    /// The lease on `port` ended: the port returns to the pool.
    pub(crate) fn close(&self, port: u16) {
        self.shared.ports.give_back(port);
    }

    /// Ends the job on `port` now (`host remove --force`).
    pub(crate) fn cut(&self, port: u16) {
        self.shared.ports.cut(port);
    }
}

impl Shared {
    fn report(&self, r: Report) {
        // The broker is stopping when nobody listens: nothing to tell.
        let _ = self.reports.send(r);
    }
}

/// Opens a new loopback relay port and starts accepting on it.
fn open_port(shared: &Arc<Shared>) -> io::Result<u16> {
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    std_listener.set_nonblocking(true)?;
    let port = std_listener.local_addr()?.port();
    let listener = TcpListener::from_std(std_listener)?;
    tokio::spawn(accept_loop(Arc::clone(shared), listener, port));
    tracing::debug!(port, "relay port opened");
    Ok(port)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, port: u16) {
    static ACCEPT_FAILED: Quiet = Quiet::new(10);
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                if let Some(n) = ACCEPT_FAILED.due() {
                    tracing::warn!(port, "relay accept failed: {e} ({n} more)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A pooled port between leases: refused at once, without asking
        // the kernel who it was or logging it (anyone may connect).
        if !shared.ports.expects(port) {
            continue;
        }
        // Checked before the lease's one connection is claimed, so another
        // user's attempt does not use it up.
        if !from_this_user(&client, peer) {
            continue;
        }
        let started = shared.ports.claim(port, |ticket, server| {
            let task = serve(Arc::clone(&shared), ticket, port, client, server);
            tokio::spawn(task).abort_handle()
        });
        if !started {
            tracing::debug!(
                port,
                "connection to a relay port with no live lease refused"
            );
        }
    }
}

/// True when the socket at the other end of `client` (from `peer`) belongs
/// to this broker's user. Fails closed: where the kernel cannot say, the
/// connection is refused (distcc then compiles locally).
fn from_this_user(client: &TcpStream, peer: std::net::SocketAddr) -> bool {
    static REFUSED: Quiet = Quiet::new(10);
    let (Ok(std::net::SocketAddr::V4(local)), std::net::SocketAddr::V4(peer)) =
        (client.local_addr(), peer)
    else {
        return false;
    };
    let owner = tcp_socket_uid(peer, local);
    let mine = is_mine(&owner, crate::sys::euid());
    if !mine && let Some(n) = REFUSED.due() {
        let port = local.port();
        match owner {
            Ok(uid) => tracing::warn!(
                port,
                ?uid,
                "relay connection from another user refused ({n} more)"
            ),
            Err(e) => tracing::warn!(
                port,
                "cannot tell who connected to the relay port ({e}); refused ({n} more)"
            ),
        }
    }
    mine
}

/// The decision of `from_this_user`: only a socket known to be `me`'s.
fn is_mine(owner: &io::Result<Option<u32>>, me: u32) -> bool {
    matches!(owner, Ok(Some(uid)) if *uid == me)
}

/// Enables TCP keepalive, so a host that vanishes from the network is
/// noticed even when no byte is due.
fn keepalive(s: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(s).set_tcp_keepalive(&ka);
}

/// Connects `ticket` to its host before the grant; on a refusal the
/// broker names the next host to try (nothing was sent yet).
async fn prepare(shared: Arc<Shared>, mut ticket: Ticket) {
    let error = loop {
        let error = match reach::connect(&shared.masters, &ticket).await {
            Ok(server) => match shared
                .ports
                .take(ticket.clone(), server, || open_port(&shared))
            {
                Ok(port) => return shared.report(Report::Ready { ticket, port }),
                Err(e) => break format!("cannot open a relay port: {e}"),
            },
            Err(e) => e,
        };
        let t = &ticket.target;
        tracing::warn!(host = %t.name, lease = ticket.lease, "{error}");
        let (reply, next) = oneshot::channel();
        let refused = ticket.clone();
        shared.report(Report::Refused {
            ticket: refused,
            error: error.clone(),
            reply,
        });
        match next.await {
            Ok(Some(target)) => ticket.target = target,
            _ => break error,
        }
    };
    shared.report(Report::Unreachable { ticket, error });
}

/// Serves the lease's connection from distcc on `port`, already connected
/// to its host by `server`, and reports how it ended.
async fn serve(
    shared: Arc<Shared>,
    ticket: Ticket,
    port: u16,
    client: TcpStream,
    server: Upstream,
) {
    shared.report(Report::Connected {
        lease: ticket.lease,
    });
    let _ = client.set_nodelay(true);
    keepalive(&client);
    let outcome = match server {
        Upstream::Tcp(server) => {
            let _ = server.set_nodelay(true);
            keepalive(&server);
            relay(&ticket, port, &client, &server).await
        }
        Upstream::Ssh(session) => {
            let outcome = relay(&ticket, port, &client, &session.stream).await;
            let failed = !matches!(outcome, Outcome::Done(_));
            match (session.finish(failed).await, outcome) {
                (Some(ssh), Outcome::Lost(why)) => Outcome::Lost(format!("{why} (ssh: {ssh})")),
                (Some(ssh), Outcome::Hung(why)) => Outcome::Hung(format!("{why} (ssh: {ssh})")),
                (_, outcome) => outcome,
            }
        }
    };
    shared.report(Report::Ended { ticket, outcome });
}

/// Copies one job between distcc (on relay port `port`) and its host.
async fn relay(ticket: &Ticket, port: u16, client: &TcpStream, server: &impl Socket) -> Outcome {
    let started = Instant::now();
    let mut watch = Watch::default();
    let (end, moved) = pump(client, server, ticket.idle, &mut watch).await;
    let ms = started.elapsed().as_millis() as u64;
    let (host, lease) = (&ticket.target.name, ticket.lease);
    let (why, hung) = match end {
        End::Done => {
            let server_s = watch.server_secs();
            tracing::debug!(%host, lease, ?moved, ms, ?server_s, "relay done");
            return Outcome::Done(Box::new(watch));
        }
        End::HostLost(why) => (why, false),
        End::Hung => (
            format!("no answer for {}s: hung", ticket.idle.as_secs()),
            true,
        ),
        End::GaveUp(silent) => (
            format!(
                "distcc gave up after {}s without an answer: hung",
                silent.as_secs()
            ),
            true,
        ),
    };
    // distcc's own message names only the relay port: say which host it is.
    tracing::warn!(%host, relay_port = port, lease, up = moved.up, down = moved.down, ms, "{why}; distcc compiles the job locally");
    // Dropping `client` closes it: distcc falls back to a local compile.
    if hung {
        Outcome::Hung(why)
    } else {
        Outcome::Lost(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_check_fails_closed() {
        assert!(is_mine(&Ok(Some(1000)), 1000));
        assert!(!is_mine(&Ok(Some(0)), 1000));
        assert!(!is_mine(&Ok(None), 1000));
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(!is_mine(&Err(emfile), 1000), "no answer is no");
    }
}

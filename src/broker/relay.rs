//! The TCP relay: a bounded pool of loopback ports, each leading to the farm
//! host of the one lease that owns it. distcc never deletes its per-port
//! lock files, so ports are reused rather than opened anew.
//!
//! A job's bytes are copied both ways (`broker::pump`) until both sides
//! close. The relay never half-closes toward distccd (distccd kills a job
//! whose client side reads EOF). What ends the copy tells whether the host
//! failed.

use super::health::Failure;
use super::pump::{End, Watch, pump};
use super::sched::LeaseId;
use super::state::Shared;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The most relay ports one broker opens.
pub const MAX_PORTS: usize = 4096;

/// Relay ports and their owners.
#[derive(Debug, Default)]
pub struct RelayPorts {
    /// Every open port and the lease that owns it (if any), and whether that
    /// lease's one connection has been accepted.
    owners: HashMap<u16, Option<(LeaseId, bool)>>,
    /// Open ports with no owner, reused last-in first-out.
    free: Vec<u16>,
}

impl RelayPorts {
    /// Gives `lease` a port, opening one with `open` when none is free.
    pub fn take(
        &mut self,
        lease: LeaseId,
        open: impl FnOnce() -> io::Result<u16>,
    ) -> io::Result<u16> {
        let port = match self.free.pop() {
            Some(p) => p,
            None if self.owners.len() >= MAX_PORTS => {
                return Err(io::Error::other(format!(
                    "all {MAX_PORTS} relay ports are in use"
                )));
            }
            None => open()?,
        };
        self.owners.insert(port, Some((lease, false)));
        Ok(port)
    }

    /// Returns `port` to the pool.
    pub fn give_back(&mut self, port: u16) {
        if let Some(owner) = self.owners.get_mut(&port) {
            *owner = None;
            self.free.push(port);
        }
    }

    /// A connection arrived on `port`: the owning lease, if it is live and
    /// has not connected before.
    pub fn claim(&mut self, port: u16) -> Option<LeaseId> {
        match self.owners.get_mut(&port) {
            Some(Some((lease, accepted))) if !*accepted => {
                *accepted = true;
                Some(*lease)
            }
            _ => None,
        }
    }

    /// Open ports.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True when no port is open.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

/// Opens a new loopback relay port and starts accepting on it.
pub fn open_port(shared: &Arc<Shared>) -> io::Result<u16> {
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    std_listener.set_nonblocking(true)?;
    let port = std_listener.local_addr()?.port();
    let listener = TcpListener::from_std(std_listener)?;
    tokio::spawn(accept_loop(Arc::clone(shared), listener, port));
    tracing::debug!(port, "relay port opened");
    Ok(port)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, port: u16) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(port, "relay accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Checked before the lease's one connection is claimed, so another
        // user's attempt does not use it up.
        if !from_this_user(&client, peer) {
            continue;
        }
        let lease = shared.lock().relay.claim(port);
        match lease {
            Some(lease) => {
                let task = tokio::spawn(relay(Arc::clone(&shared), lease, client));
                shared.register_relay(lease, task.abort_handle());
            }
            None => tracing::warn!(
                port,
                "connection to a relay port with no live lease refused"
            ),
        }
    }
}

/// True when the socket at the other end of `client` (from `peer`) belongs
/// to this broker's user. Where the kernel cannot say (no `sock_diag`), the
/// connection is let through with a warning: the lease and its single
/// connection still bound it.
fn from_this_user(client: &TcpStream, peer: std::net::SocketAddr) -> bool {
    let (Ok(std::net::SocketAddr::V4(local)), std::net::SocketAddr::V4(peer)) =
        (client.local_addr(), peer)
    else {
        return false;
    };
    let me = crate::paths::euid();
    match super::peer::tcp_socket_uid(peer, local) {
        Ok(Some(uid)) if uid == me => true,
        Ok(uid) => {
            tracing::warn!(
                port = local.port(),
                ?uid,
                "relay connection from another user refused"
            );
            false
        }
        Err(e) => {
            tracing::warn!(
                port = local.port(),
                "cannot tell who connected to the relay port ({e}); let through"
            );
            true
        }
    }
}

/// Where `lease` should connect now, and the timeouts in force.
struct Target {
    name: String,
    host: String,
    port: u16,
    connect: Duration,
    idle: Duration,
}

fn target(shared: &Shared, lease: LeaseId) -> Option<Target> {
    let inner = shared.lock();
    if Shared::is_ended(&inner, lease) {
        return None;
    }
    let host = inner.sched.host(inner.sched.placed(lease)?);
    let (addr, port) = host.spec.addr.clone()?;
    Some(Target {
        name: host.spec.name.clone(),
        host: addr,
        port,
        connect: Duration::from_millis(inner.config.broker.connect_timeout_ms),
        idle: Duration::from_secs(inner.config.broker.job_timeout_s.max(1)),
    })
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

async fn relay(shared: Arc<Shared>, lease: LeaseId, client: TcpStream) {
    let _ = client.set_nodelay(true);
    loop {
        let Some(t) = target(&shared, lease) else {
            return;
        };
        let connect = TcpStream::connect((t.host.as_str(), t.port));
        let error = match tokio::time::timeout(t.connect, connect).await {
            Ok(Ok(server)) => {
                let _ = server.set_nodelay(true);
                keepalive(&server);
                keepalive(&client);
                let started = Instant::now();
                let mut watch = Watch::default();
                let (end, moved) = pump(&client, &server, t.idle, &mut watch).await;
                let ms = started.elapsed().as_millis() as u64;
                let failure = match end {
                    End::Done => {
                        let server_s = watch.server_secs();
                        tracing::debug!(host = %t.name, lease, ?moved, ms, ?server_s, "relay done");
                        shared.observed(lease, &watch);
                        return;
                    }
                    End::HostLost(why) => (why, Failure::Refused),
                    End::Hung => (
                        format!("no answer for {}s: hung", t.idle.as_secs()),
                        Failure::Hang,
                    ),
                };
                tracing::warn!(host = %t.name, lease, up = moved.up, down = moved.down, ms, "{}; distcc compiles the job locally", failure.0);
                let mut inner = shared.lock();
                if let Some(id) = inner.sched.placed(lease) {
                    inner
                        .sched
                        .record_failure(id, failure.0, failure.1, true, Instant::now());
                }
                Shared::count_fallback(&mut inner);
                // Dropping `client` closes it: distcc falls back to a local compile.
                return;
            }
            Ok(Err(e)) => format!("connect failed: {e}"),
            Err(_) => format!("connect timed out after {} ms", t.connect.as_millis()),
        };
        tracing::warn!(host = %t.name, lease, "{error}");
        let mut inner = shared.lock();
        if inner.sched.reroute(lease, error, Instant::now()).is_none() {
            // Nothing forwarded yet and no other host: closing makes distcc
            // compile locally.
            Shared::count_fallback(&mut inner);
            return;
        }
    }
}

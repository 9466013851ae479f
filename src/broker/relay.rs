//! The TCP relay: a bounded pool of loopback ports, each leading to the farm
//! host of the one lease that owns it. distcc never deletes its per-port
//! lock files, so ports are reused rather than opened anew.

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
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(port, "relay accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let lease = shared.lock().relay.claim(port);
        match lease {
            Some(lease) => {
                tokio::spawn(relay(Arc::clone(&shared), lease, client));
            }
            None => tracing::warn!(
                port,
                "connection to a relay port with no live lease refused"
            ),
        }
    }
}

/// Where `lease` should connect now: the host's name and address.
fn target(shared: &Shared, lease: LeaseId) -> Option<(String, (String, u16))> {
    let inner = shared.lock();
    let host = inner.sched.host(inner.sched.placed(lease)?);
    Some((host.spec.name.clone(), host.spec.addr.clone()?))
}

async fn relay(shared: Arc<Shared>, lease: LeaseId, mut client: TcpStream) {
    let _ = client.set_nodelay(true);
    let timeout = Duration::from_millis(shared.config.broker.connect_timeout_ms);
    loop {
        let Some((name, (host, port))) = target(&shared, lease) else {
            return;
        };
        let error =
            match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
                Ok(Ok(mut server)) => {
                    let _ = server.set_nodelay(true);
                    let started = Instant::now();
                    match tokio::io::copy_bidirectional(&mut client, &mut server).await {
                        Ok((up, down)) => tracing::debug!(
                            host = %name, lease, up, down,
                            ms = started.elapsed().as_millis() as u64, "relay done"
                        ),
                        Err(e) => tracing::info!(host = %name, lease, "relay ended: {e}"),
                    }
                    return;
                }
                Ok(Err(e)) => format!("connect failed: {e}"),
                Err(_) => format!("connect timed out after {} ms", timeout.as_millis()),
            };
        tracing::warn!(host = %name, lease, "{error}");
        let next = shared.lock().sched.reroute(lease, error, Instant::now());
        if next.is_none() {
            // Nothing forwarded yet and no other host: closing makes distcc
            // compile locally.
            return;
        }
    }
}

//! The relay's port pool: loopback ports, each holding the ticket of the
//! one lease that owns it. distcc never deletes its per-port lock files, so
//! ports are reused rather than opened anew, up to `MAX_PORTS`. The pool's
//! lock never leaves this module and is never held across an await.

use super::Ticket;
use super::reach::Upstream;
use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use tokio::task::AbortHandle;

/// The most relay ports one broker opens.
pub(crate) const MAX_PORTS: usize = 4096;

/// One open port.
#[derive(Default)]
struct Port {
    /// The ticket of the lease that owns the port and the connection to
    /// its host, made before the grant, until distcc's one connection
    /// arrives.
    ticket: Option<(Ticket, Upstream)>,
    /// Owned by a lease (whether or not its connection came).
    owned: bool,
    /// The relay task serving the lease's connection.
    task: Option<AbortHandle>,
}

/// Open ports and their owners.
#[derive(Default)]
pub(crate) struct Ports {
    /// The pool, behind a lock that never leaves this module.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Every open port.
    ports: HashMap<u16, Port>,
    /// Open ports with no owner, reused last-in first-out.
    free: Vec<u16>,
}

impl Ports {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `ticket`, already connected to its host by `server`, a port: a
    /// free one, or one `open` opens. `open` runs under the pool's lock (it
    /// only binds a socket).
    pub(crate) fn take(
        &self,
        ticket: Ticket,
        server: Upstream,
        open: impl FnOnce() -> io::Result<u16>,
    ) -> io::Result<u16> {
        let mut inner = self.lock();
        let port = match inner.free.pop() {
            Some(p) => p,
            None if inner.ports.len() >= MAX_PORTS => {
                return Err(io::Error::other(format!(
                    "all {MAX_PORTS} relay ports are in use"
                )));
            }
            None => open()?,
        };
        inner.ports.insert(
            port,
            Port {
                ticket: Some((ticket, server)),
                owned: true,
                task: None,
            },
        );
        Ok(port)
    }

    /// The lease of `port` ended: the port goes back to the pool. A relay
    /// still running finishes on its own.
    pub(crate) fn give_back(&self, port: u16) {
        let mut inner = self.lock();
        if let Some(p) = inner.ports.get_mut(&port)
            && p.owned
        {
            *p = Port::default();
            inner.free.push(port);
        }
    }

    /// Ends the job on `port` now: its relay stops (distcc then compiles
    /// locally) and a connection that comes later is refused.
    pub(crate) fn cut(&self, port: u16) {
        let mut inner = self.lock();
        if let Some(p) = inner.ports.get_mut(&port) {
            p.ticket = None;
            if let Some(task) = p.task.take() {
                task.abort();
            }
        }
    }

    /// True when a live lease owns `port` and its connection has not come.
    pub(crate) fn expects(&self, port: u16) -> bool {
        self.lock()
            .ports
            .get(&port)
            .is_some_and(|p| p.ticket.is_some())
    }

    /// A connection arrived on `port`: if a live lease owns it and has not
    /// connected before, `start` runs its relay with the ticket and the
    /// connection to its host.
    pub(crate) fn claim(
        &self,
        port: u16,
        start: impl FnOnce(Ticket, Upstream) -> AbortHandle,
    ) -> bool {
        let mut inner = self.lock();
        let Some(p) = inner.ports.get_mut(&port) else {
            return false;
        };
        match p.ticket.take() {
            Some((ticket, server)) => {
                p.task = Some(start(ticket, server));
                true
            }
            None => false,
        }
    }
}

//! One control connection: read a request, answer it, and for a lease hold
//! the slot exactly as long as the client keeps the connection open.

use super::sched::{LeaseId, Need};
use super::state::Shared;
use crate::frame;
use crate::protocol::{
    BrokerMsg, ClientMsg, Grant, LeaseRequest, PROTOCOL_VERSION, Request, Response, VersionProbe,
};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// How often a waiting client hears its queue position.
const QUEUE_UPDATE: Duration = Duration::from_secs(5);

async fn send(conn: &Stream, resp: Response) -> std::io::Result<()> {
    let msg = BrokerMsg {
        v: PROTOCOL_VERSION,
        pid: std::process::id(),
        resp,
    };
    frame::write(&mut &*conn, &msg).await
}

/// Serves one connection until the client closes it.
pub async fn serve(shared: Arc<Shared>, conn: Stream) {
    if !same_user(&conn) {
        return;
    }
    let first = Duration::from_secs(shared.lock().config.broker.client_timeout_s.max(1));
    let payload = match tokio::time::timeout(first, frame::read(&mut &conn)).await {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!("bad control frame: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("control client sent nothing; dropped");
            return;
        }
    };
    // Decode once; only a message that does not parse is probed for the
    // version, to tell a client of another version why.
    let msg: ClientMsg = match frame::decode::<ClientMsg>(&payload) {
        Ok(m) if m.v == PROTOCOL_VERSION => m,
        parsed => {
            let message = match frame::decode::<VersionProbe>(&payload) {
                Ok(p) if p.v != PROTOCOL_VERSION => format!(
                    "protocol mismatch: broker speaks {PROTOCOL_VERSION}, client {}",
                    p.v
                ),
                _ => match parsed {
                    Err(e) => e.to_string(),
                    Ok(_) => "bad request".to_string(),
                },
            };
            let _ = send(&conn, Response::Error { message }).await;
            return;
        }
    };
    let result = match msg.req {
        Request::Status => send(&conn, Response::Status(Box::new(shared.snapshot()))).await,
        Request::Stop => {
            tracing::info!("stop requested");
            shared.stop();
            send(&conn, Response::Stopping).await
        }
        Request::Lease(req) => {
            let counted = Counted::new(&shared);
            match counted.over {
                Some(max) => {
                    let message = shared.over_limit(
                        &mut shared.lock(),
                        None,
                        ("max_connections", "compiles connected"),
                        max,
                    );
                    send(&conn, Response::Error { message }).await
                }
                None => lease(&shared, &conn, req).await,
            }
        }
        Request::Host { cmd, farm } => {
            let result = {
                let mut inner = shared.lock();
                shared.adopt_farm(&mut inner, &farm, Instant::now());
                super::admin::execute(&shared, &mut inner, &cmd)
            };
            send(&conn, done_or_error(result)).await
        }
        Request::Reload => send(&conn, done_or_error(shared.reload())).await,
    };
    if let Err(e) = result {
        tracing::debug!("control connection: {e}");
    }
}

/// True when the peer runs as this broker's user (`SO_PEERCRED`). Any
/// other connection is closed unanswered, even if the socket's mode was
/// opened by mistake.
fn same_user(conn: &Stream) -> bool {
    let me = crate::paths::euid();
    match conn.peer_creds().map(|c| (c.euid(), c.pid())) {
        Ok((Some(uid), _)) if uid == me => true,
        Ok((uid, pid)) => {
            tracing::warn!(?uid, ?pid, "control connection from another user; closed");
            false
        }
        Err(e) => {
            tracing::warn!("cannot read a control peer's credentials ({e}); closed");
            false
        }
    }
}

fn done_or_error(r: Result<String, String>) -> Response {
    match r {
        Ok(message) => Response::Done { message },
        Err(message) => Response::Error { message },
    }
}

/// Counts a compile's connection while it is served. Past
/// `max_connections` the compile is sent to compile locally. Only compiles
/// count: status, stop and host commands always answer.
struct Counted<'a> {
    shared: &'a Shared,
    /// The limit, when this connection is over it.
    over: Option<usize>,
}

impl<'a> Counted<'a> {
    fn new(shared: &'a Shared) -> Counted<'a> {
        let max = shared.lock().config.broker.max_connections;
        let n = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        Counted {
            shared,
            over: (n > max).then_some(max),
        }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Releases its lease when dropped, however the handler ends.
struct LeaseGuard<'a> {
    shared: &'a Arc<Shared>,
    id: LeaseId,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        self.shared.release(self.id);
    }
}

async fn lease(shared: &Arc<Shared>, conn: &Stream, req: LeaseRequest) -> std::io::Result<()> {
    let need = if req.local_only {
        Need::Local
    } else {
        Need::Remote
    };
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let started = Instant::now();
    let (id, now_grant, queue_timeout, full) = {
        let mut inner = shared.lock();
        shared.adopt_farm(&mut inner, &req.farm, started);
        let facts = super::state::JobFacts {
            pid: req.pid,
            source: req.source.clone(),
            key: req.source_path.clone(),
            size: req.source_size,
            build: req.build,
        };
        let (id, g) = shared.request(&mut inner, need, facts, tx, started);
        let max = inner.config.broker.max_queue;
        let full = (g.is_none() && inner.sched.queued() > max).then(|| {
            shared.over_limit(&mut inner, Some(id), ("max_queue", "queued compiles"), max)
        });
        (id, g, inner.config.broker.queue_timeout_s, full)
    };
    let mut give_up = (queue_timeout > 0)
        .then(|| tokio::time::Instant::from_std(started) + Duration::from_secs(queue_timeout));
    let guard = LeaseGuard { shared, id };
    tracing::debug!(lease = id, pid = req.pid, source = ?req.source, "lease requested");
    if let Some(message) = full {
        return send(conn, Response::Error { message }).await;
    }
    let mut probe = [0u8; 64];
    let mut reader = conn;
    let grant: Grant = match now_grant {
        Some(g) => g,
        None => loop {
            let position = shared.lock().sched.position(id).unwrap_or(0) as u32;
            send(conn, Response::Queued { position }).await?;
            tokio::select! {
                g = &mut rx => match g {
                    Ok(g) => break g,
                    Err(_) => {
                        let message = "the broker is stopping".to_string();
                        return send(conn, Response::Error { message }).await;
                    }
                },
                // The client sends nothing more; a read returning means it left.
                _ = reader.read(&mut probe) => return Ok(()),
                _ = tokio::time::sleep(QUEUE_UPDATE) => {}
                _ = sleep_until_opt(give_up) => {
                    // Once only: if the grant came first, it is waiting in `rx`.
                    give_up = None;
                    if shared.queue_timeout(id) {
                        tracing::info!(lease = id, "waited {queue_timeout}s in the queue; runs locally");
                        break Grant::Local;
                    }
                }
            }
        },
    };
    send(conn, Response::Granted(grant)).await?;
    // Hold the slot until the client closes the connection.
    while let Ok(n) = reader.read(&mut probe).await {
        if n == 0 {
            break;
        }
    }
    drop(guard);
    Ok(())
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

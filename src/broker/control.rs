//! One control connection: read a request, answer it, and for a lease hold
//! the slot exactly as long as the client keeps the connection open.

use super::state::Broker;
use crate::frame;
use crate::protocol::{
    BrokerMsg, ClientMsg, Grant, LeaseRequest, PROTOCOL_VERSION, Request, Response, VersionProbe,
};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon as _;
use std::time::Duration;
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
pub(super) async fn serve(broker: Broker, conn: Stream) {
    if !same_user(&conn) {
        return;
    }
    let Some(msg) = first_message(&broker, &conn).await else {
        return;
    };
    let result = match msg.req {
        Request::Status => send(&conn, Response::Status(Box::new(broker.snapshot()))).await,
        Request::Stop => {
            tracing::info!("stop requested");
            broker.stop();
            send(&conn, Response::Stopping).await
        }
        Request::Lease(req) => {
            let counted = broker.connection();
            match &counted.over {
                Some(message) => {
                    let message = message.clone();
                    send(&conn, Response::Error { message }).await
                }
                None => lease(&broker, &conn, req).await,
            }
        }
        Request::Host { cmd, farm, team } => {
            let result = match team {
                true => broker.team_admin(&cmd).await,
                false => broker.admin(&cmd, &farm).await.map_err(|e| e.to_string()),
            };
            send(&conn, done_or_error(result)).await
        }
        Request::Reload => {
            let result = super::reload(&broker).await.map_err(|e| e.to_string());
            send(&conn, done_or_error(result)).await
        }
    };
    if let Err(e) = result {
        tracing::debug!("control connection: {e}");
    }
}

/// The client's request, read within `client_timeout_s`. A client of
/// another version is told why it is not served.
async fn first_message(broker: &Broker, conn: &Stream) -> Option<ClientMsg> {
    let first = Duration::from_secs(broker.options().client_timeout_s.max(1));
    let payload = match tokio::time::timeout(first, frame::read(&mut &*conn)).await {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!("bad control frame: {e}");
            return None;
        }
        Err(_) => {
            tracing::debug!("control client sent nothing; dropped");
            return None;
        }
    };
    // Decode once; only a message that does not parse is probed for the
    // version, to tell a client of another version why.
    let parsed = frame::decode::<ClientMsg>(&payload);
    if let Ok(m) = &parsed
        && m.v == PROTOCOL_VERSION
    {
        return parsed.ok();
    }
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
    let _ = send(conn, Response::Error { message }).await;
    None
}

/// True when the peer runs as this broker's user (`SO_PEERCRED`). Any
/// other connection is closed unanswered, even if the socket's mode was
/// opened by mistake.
fn same_user(conn: &Stream) -> bool {
    let me = crate::sys::euid();
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

/// Releases its lease when dropped, however the handler ends.
struct LeaseGuard<'a> {
    broker: &'a Broker,
    id: u64,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        self.broker.release(self.id);
    }
}

async fn lease(broker: &Broker, conn: &Stream, req: LeaseRequest) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = broker.request(&req, tx);
    let _guard = LeaseGuard {
        broker,
        id: started.id,
    };
    tracing::debug!(lease = started.id, pid = req.pid, source = ?req.source, "lease requested");
    if let Some(message) = started.refused {
        return send(conn, Response::Error { message }).await;
    }
    if let Some(message) = started.notice {
        send(conn, Response::Notice { message }).await?;
    }
    let grant = match started.grant {
        Some(g) => g,
        None => match wait(broker, conn, started.id, rx).await? {
            Some((g, None)) => g,
            Some((g, Some(message))) => {
                send(conn, Response::Notice { message }).await?;
                g
            }
            None => return Ok(()),
        },
    };
    send(conn, Response::Granted(grant)).await?;
    // Hold the slot until the client closes the connection.
    let mut probe = [0u8; 64];
    let mut reader = conn;
    while let Ok(n) = reader.read(&mut probe).await {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// Waits in the queue for the grant, telling the client its position.
/// `None` when the client left or was told the broker is stopping.
async fn wait(
    broker: &Broker,
    conn: &Stream,
    id: u64,
    mut rx: tokio::sync::oneshot::Receiver<(Grant, Option<String>)>,
) -> std::io::Result<Option<(Grant, Option<String>)>> {
    let queue_timeout = broker.options().queue_timeout_s;
    let mut give_up = (queue_timeout > 0)
        .then(|| tokio::time::Instant::now() + Duration::from_secs(queue_timeout.min(1 << 32)));
    let mut probe = [0u8; 64];
    let mut reader = conn;
    loop {
        // Position 0: placed, its host being reached; the grant follows.
        let position = broker.position(id);
        if position > 0 {
            send(conn, Response::Queued { position }).await?;
        }
        tokio::select! {
            g = &mut rx => return match g {
                Ok(g) => Ok(Some(g)),
                Err(_) => {
                    let message = "the broker is stopping".to_string();
                    send(conn, Response::Error { message }).await.map(|()| None)
                }
            },
            // The client sends nothing more; a read returning means it left.
            _ = reader.read(&mut probe) => return Ok(None),
            _ = tokio::time::sleep(QUEUE_UPDATE) => {}
            _ = sleep_until_opt(give_up) => {
                // Once only: if the grant came first, it is waiting in `rx`.
                give_up = None;
                if broker.queue_timeout(id) {
                    tracing::info!(lease = id, "waited {queue_timeout}s in the queue; runs locally");
                    return Ok(Some((Grant::Local, None)));
                }
            }
        }
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

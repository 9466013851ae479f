//! HTTP/1.1 to etcd's JSON gateway: calls on kept-alive connections (one
//! TCP connection per concurrent call, reused for the next, instead of a
//! new one per call: no handshake per claim, and no thousands of sockets
//! in TIME_WAIT on a busy workstation), and watches on a connection of
//! their own.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Idle connections kept for reuse, at most.
const KEEP: usize = 4;

/// One open connection: its sender and the task that drives it.
struct Conn {
    endpoint: String,
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The idle connections of one client (and its clones).
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<Vec<Conn>>,
    /// Connections opened so far.
    pub(super) opened: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// An idle connection to `endpoint` that is still open, if any.
    fn take(&self, endpoint: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| !c.sender.is_closed());
        let at = idle.iter().position(|c| c.endpoint == endpoint)?;
        Some(idle.swap_remove(at))
    }

    fn put(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEEP {
            idle.push(conn);
        }
    }

    /// One POST of `body` to `endpoint` (`host:port`): the status and the
    /// whole answer as JSON. A kept connection that the member closed
    /// before reading the request is replaced by a new one, once.
    pub(super) async fn post(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let kept = self.take(endpoint);
        let reused = kept.is_some();
        let mut conn = match kept {
            Some(c) => c,
            None => self.connect(endpoint).await?,
        };
        let answer = match conn
            .sender
            .try_send_request(request(endpoint, path, body, token)?)
            .await
        {
            Err(e) if reused && (e.message().is_some() || e.error().is_incomplete_message()) => {
                conn = self.connect(endpoint).await?;
                conn.sender
                    .send_request(request(endpoint, path, body, token)?)
                    .await
            }
            other => other.map_err(|e| e.into_error()),
        };
        let answer = answer.map_err(|e| e.to_string())?;
        let status = answer.status().as_u16();
        let bytes = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        self.put(conn);
        let v = serde_json::from_slice(&bytes.to_bytes()).map_err(|e| format!("not JSON: {e}"))?;
        Ok((status, v))
    }

    async fn connect(&self, endpoint: &str) -> Result<Conn, String> {
        let (sender, task) = handshake(endpoint).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            endpoint: endpoint.to_string(),
            sender,
            task,
        })
    }
}

/// A new connection to `endpoint`, driven by a task of its own.
async fn handshake(endpoint: &str) -> Result<(SendRequest<Full<Bytes>>, JoinHandle<()>), String> {
    let stream = TcpStream::connect(endpoint)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, task))
}

fn request(
    endpoint: &str,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let mut req = hyper::Request::post(path)
        .header("host", endpoint)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    req.body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())
}

/// Opens a streaming POST of `body` to `endpoint` on a new connection: the
/// status, the answer as it comes, and the connection's task.
pub(super) async fn stream(
    endpoint: &str,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> Result<(u16, Incoming, JoinHandle<()>), String> {
    let (mut sender, task) = handshake(endpoint).await?;
    match sender
        .send_request(request(endpoint, path, body, token)?)
        .await
    {
        Ok(resp) => Ok((resp.status().as_u16(), resp.into_body(), task)),
        Err(e) => {
            task.abort();
            Err(e.to_string())
        }
    }
}

//! HTTP/1.1 to etcd's JSON gateway: calls on kept-alive connections (one
//! TCP connection per concurrent call, reused for the next, instead of a
//! new one per call: no handshake per claim, and no thousands of sockets
//! in TIME_WAIT on a busy workstation), and watches on a connection of
//! their own; `text` and `int` read the gateway's base64 keys and values
//! and its numbers written as strings.

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
pub(super) struct Pool {
    idle: Mutex<Vec<Conn>>,
    /// Connections opened so far.
    pub(super) opened: AtomicU64,
    /// Whether the members are reached over TLS, and how.
    tls: Tls,
}

/// A pool's TLS: none, wanted (`https://`) but not set up, or set up.
enum Tls {
    No,
    Wanted,
    With(super::tls::Tls),
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for members reached over TLS (`tls`) or not.
    pub(super) fn new(tls: bool) -> Pool {
        Pool {
            idle: Mutex::default(),
            opened: AtomicU64::default(),
            tls: if tls { Tls::Wanted } else { Tls::No },
        }
    }

    /// A new pool like this one, reaching `https://` members with `tls`.
    pub(super) fn with_tls(&self, tls: super::tls::Tls) -> Pool {
        let mut pool = Pool::new(false);
        if !matches!(self.tls, Tls::No) {
            pool.tls = Tls::With(tls);
        }
        pool
    }

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
        let answer = answer.map_err(|e| why(&e))?;
        let status = answer.status().as_u16();
        let bytes = answer.into_body().collect().await.map_err(|e| why(&e))?;
        self.put(conn);
        let v = serde_json::from_slice(&bytes.to_bytes()).map_err(|e| format!("not JSON: {e}"))?;
        Ok((status, v))
    }

    async fn connect(&self, endpoint: &str) -> Result<Conn, String> {
        let (sender, task) = self.handshake(endpoint).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            endpoint: endpoint.to_string(),
            sender,
            task,
        })
    }

    /// A new connection to `endpoint`, driven by a task of its own.
    async fn handshake(&self, endpoint: &str) -> Result<Connected, String> {
        let stream = TcpStream::connect(endpoint)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            Tls::No => drive(stream).await,
            Tls::Wanted => Err("https:// without TLS set up ([team] ca)".to_string()),
            Tls::With(tls) => {
                let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                drive(tls.connect(host, stream).await?).await
            }
        }
    }

    /// Opens a streaming POST of `body` to `endpoint` on a new connection:
    /// the status, the answer as it comes, and the connection's task.
    pub(super) async fn stream(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(u16, Incoming, JoinHandle<()>), String> {
        let (mut sender, task) = self.handshake(endpoint).await?;
        match sender
            .send_request(request(endpoint, path, body, token)?)
            .await
        {
            Ok(resp) => Ok((resp.status().as_u16(), resp.into_body(), task)),
            Err(e) => {
                task.abort();
                Err(why(&e))
            }
        }
    }
}

/// A connection's sender and the task that drives it.
type Connected = (SendRequest<Full<Bytes>>, JoinHandle<()>);

/// HTTP/1.1 over `io`, driven by a task of its own.
async fn drive<T>(io: T) -> Result<Connected, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| why(&e))?;
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

/// etcd's client URLs as `HOST:PORT` (port 2379 by default), and whether
/// they are `https://` (all or none).
pub(super) fn endpoints(urls: &[String]) -> Result<(Vec<String>, bool), String> {
    let parsed = urls
        .iter()
        .map(|u| endpoint(u))
        .collect::<Result<Vec<_>, _>>()?;
    let Some((_, tls)) = parsed.first() else {
        return Err("no endpoint given".to_string());
    };
    if parsed.iter().any(|(_, t)| t != tls) {
        return Err("endpoints mix http:// and https://: use one for all".to_string());
    }
    let tls = *tls;
    Ok((parsed.into_iter().map(|(e, _)| e).collect(), tls))
}

/// `http[s]://HOST[:PORT][/]` as `HOST:PORT` and whether it is https.
pub(super) fn endpoint(url: &str) -> Result<(String, bool), String> {
    let (hp, tls) = match url.strip_prefix("https://") {
        Some(rest) => (Some(rest), true),
        None => (url.strip_prefix("http://"), false),
    };
    match hp.map(|r| r.trim_end_matches('/')) {
        Some(hp) if !hp.is_empty() && !hp.contains('/') => {
            let with_port = hp.contains(':') && !hp.ends_with(']');
            let hp = if with_port {
                hp.to_string()
            } else {
                format!("{hp}:2379")
            };
            Ok((hp, tls))
        }
        _ => Err(format!("endpoint \"{url}\" is not http://HOST:PORT")),
    }
}

/// An error with its causes ("connection error" alone does not say that
/// etcd wanted a client certificate).
fn why(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// A key or value as the gateway writes it (base64), as text.
pub(super) fn text(v: &Value) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .unwrap_or_default();
    String::from_utf8_lossy(&raw).into_owned()
}

/// A 64-bit number as the gateway writes it (a string), or 0.
pub(super) fn int(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
        .unwrap_or(0)
}

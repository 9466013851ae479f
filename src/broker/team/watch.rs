//! A watch on a range of etcd's keys through the JSON gateway: one
//! streaming `POST /v3/watch` whose answers are newline-separated JSON,
//! read as they come.

use super::gateway::{int, text};
use http_body_util::BodyExt;
use serde_json::Value;

/// A change to a watched key.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The store's revision of the change.
    pub revision: i64,
    /// The key.
    pub key: String,
    /// Its new value; `None` when it was deleted (or its lease ended).
    pub value: Option<String>,
}

/// An open watch: etcd's newline-separated JSON answers, read as they come.
pub struct Watcher {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Watcher {
    /// The next changes, in order; an error when the stream ends (etcd
    /// went away: watch again from the last revision seen).
    pub async fn next(&mut self) -> Result<Vec<Change>, String> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                let v: Value =
                    serde_json::from_slice(&line).map_err(|e| format!("not JSON: {e}"))?;
                if v["result"]["canceled"].as_bool() == Some(true) || v.get("error").is_some() {
                    let why = v["result"]["cancel_reason"].as_str();
                    return Err(format!(
                        "etcd ended the watch: {}",
                        why.unwrap_or("no reason")
                    ));
                }
                let changes = changes(&v["result"]);
                if !changes.is_empty() {
                    return Ok(changes);
                }
                continue;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the watch ended".to_string()),
            }
        }
    }
}

/// The changes in one watch answer.
fn changes(result: &Value) -> Vec<Change> {
    let revision = int(&result["header"]["revision"]);
    let events = result["events"].as_array().map_or(&[][..], Vec::as_slice);
    events
        .iter()
        .map(|e| Change {
            revision: int(&e["kv"]["mod_revision"]).max(revision),
            key: text(&e["kv"]["key"]),
            // A put has no "type" (its value, 0, is left out).
            value: (e["type"].as_str() != Some("DELETE")).then(|| text(&e["kv"]["value"])),
        })
        .collect()
}

/// Opens a watch (a streaming POST of `body`) on `endpoint`.
pub(super) async fn open_stream(
    pool: &super::gateway::Pool,
    endpoint: &str,
    body: &Value,
    token: Option<&str>,
) -> Result<Watcher, String> {
    let (status, body, conn) = pool.stream(endpoint, "/v3/watch", body, token).await?;
    if status != 200 {
        conn.abort();
        return Err(format!("answered {status}"));
    }
    Ok(Watcher {
        body,
        buf: Vec::new(),
        conn,
    })
}

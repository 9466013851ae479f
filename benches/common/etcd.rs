//! A private etcd for the team benchmark, and the store's revision (how
//! many writes it has taken, counted at etcd).

use super::{Guard, free_port};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts etcd with its data under `root`; returns it and its client URL.
pub fn start_etcd(root: &Path) -> (Guard, String) {
    start_etcd_with(root, &[])
}

/// Starts etcd as `start_etcd` does, with `extra` arguments.
pub fn start_etcd_with(root: &Path, extra: &[&str]) -> (Guard, String) {
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .arg("--data-dir")
        .arg(root.join("etcd-data"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .arg("--initial-cluster")
        .arg(format!("default={peer_url}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while revision(&url).is_none() {
        assert!(Instant::now() < deadline, "etcd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (guard, url)
}

/// The store's revision: one more for every write it took.
pub fn revision(url: &str) -> Option<i64> {
    let v = post(url, "/v3/kv/range", r#"{"key":"AA=="}"#)?;
    v["header"]["revision"].as_str()?.parse().ok()
}

/// How many keys start with `prefix`.
pub fn count(url: &str, prefix: &str) -> Option<i64> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut()? += 1;
    let body = format!(
        r#"{{"key":"{}","range_end":"{}","count_only":true}}"#,
        b64.encode(prefix),
        b64.encode(&end)
    );
    let v = post(url, "/v3/kv/range", &body)?;
    Some(
        v["count"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
    )
}

/// The size of etcd's database file and the part of it in use, in bytes.
pub fn db_size(url: &str) -> Option<(u64, u64)> {
    let v = post(url, "/v3/maintenance/status", "{}")?;
    let n = |f: &str| v[f].as_str().and_then(|s| s.parse().ok());
    Some((n("dbSize")?, n("dbSizeInUse")?))
}

/// One POST of `body` to `path` on `url`'s gateway; its answer as JSON.
fn post(url: &str, path: &str, body: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let json = out.split_once("\r\n\r\n")?.1;
    serde_json::from_str(json).ok()
}

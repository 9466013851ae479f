//! The calls team mode makes to etcd, through etcd's JSON gateway
//! (`POST /v3/...`, etcd 3.4 and later) over the hyper already in the tree:
//! the `etcd-client` crate needs `protoc` at build time, which `cargo
//! install` on a fresh machine does not have. In the gateway's JSON, keys
//! and values are base64 and 64-bit numbers are strings; a field that is
//! false or zero is left out.

use super::gateway::{int, text};
use super::watch::open_stream;
pub use super::watch::{Change, Watcher};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// An etcd cluster, by the client URLs of its members.
#[derive(Debug, Clone)]
pub struct Etcd {
    /// `host:port` of each member, tried in order.
    endpoints: Vec<String>,
    /// How long one call to one member may take.
    timeout: Duration,
    /// Calls made, for status and metrics.
    counts: Arc<Counts>,
    /// Connections kept for the next call.
    pool: Arc<super::gateway::Pool>,
    /// The user calls are made as, if etcd wants one.
    auth: Option<Arc<super::auth::Auth>>,
}

/// What a client has done so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Calls that reached a member (answered or refused).
    pub calls: AtomicU64,
    /// Calls no member answered.
    pub failures: AtomicU64,
    /// Writes made: keys created, put or deleted.
    pub writes: AtomicU64,
    /// Creates where a key asked for existed (a slot taken meanwhile).
    pub conflicts: AtomicU64,
    /// Whole reads of the farm begun (the first, each after a broken or
    /// lagging watch, and each try again after a failed one).
    pub loads: AtomicU64,
    /// The store's revision after this client's last write: its watch
    /// is behind until it has seen that revision.
    pub written: AtomicI64,
}

/// What one batch of `create_each` did.
#[derive(Debug, PartialEq)]
pub enum Batch {
    /// Every key was created.
    Created,
    /// None was: some existed. The keys under the prefix asked about.
    Taken(Vec<String>),
}

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No member answered; the last one's reason.
    #[error("no etcd member answered (last: {endpoint}: {why})")]
    Unreachable {
        /// The member tried last.
        endpoint: String,
        /// Why it did not answer.
        why: String,
    },
    /// A member answered with an error.
    #[error("etcd at {endpoint} refused {path}: {message}")]
    Refused {
        /// The member.
        endpoint: String,
        /// The call.
        path: String,
        /// etcd's message.
        message: String,
    },
}

impl Etcd {
    /// A client of the members at `urls` (`http://HOST:PORT`, or all
    /// `https://HOST:PORT`: then `with_tls` must follow).
    pub fn new(urls: &[String], timeout: Duration) -> Result<Etcd, String> {
        let (endpoints, tls) = super::gateway::endpoints(urls)?;
        Ok(Etcd {
            endpoints,
            timeout,
            counts: Arc::default(),
            pool: Arc::new(super::gateway::Pool::new(tls)),
            auth: None,
        })
    }

    /// This client with calls bounded by `at_least` if that is longer.
    pub fn patient(&self, at_least: Duration) -> Etcd {
        let timeout = self.timeout.max(at_least);
        Etcd {
            timeout,
            ..self.clone()
        }
    }

    /// This client, reaching its `https://` members with `tls`.
    pub fn with_tls(mut self, tls: super::tls::Tls) -> Etcd {
        self.pool = Arc::new(self.pool.with_tls(tls));
        self
    }

    /// This client, making its calls as `user` with `password`.
    pub fn with_auth(mut self, user: &str, password: &str) -> Etcd {
        self.auth = Some(Arc::new(super::auth::Auth::new(user, password)));
        self
    }

    /// What this client (and its clones) did so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Connections opened to members so far (watches not counted).
    pub fn connections(&self) -> u64 {
        self.pool.opened.load(Ordering::Relaxed)
    }

    /// Counts a write, and the store's revision after it (`answer`'s).
    fn wrote(&self, answer: &Value) {
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        let revision = int(&answer["header"]["revision"]);
        self.counts.written.fetch_max(revision, Ordering::Relaxed);
    }

    /// Grants a lease of `ttl_s` seconds; returns its id.
    pub async fn grant(&self, ttl_s: u64) -> Result<i64, EtcdError> {
        let v = self
            .post("/v3/lease/grant", json!({ "TTL": ttl_s }))
            .await?;
        Ok(int(&v["ID"]))
    }

    /// Keeps `lease` alive; returns its remaining TTL (0: it has expired).
    pub async fn keep_alive(&self, lease: i64) -> Result<u64, EtcdError> {
        let v = self
            .post("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        Ok(int(&v["result"]["TTL"]).max(0) as u64)
    }

    /// Ends `lease` and deletes every key bound to it.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.post("/v3/kv/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
            .map(drop)
    }

    /// Creates `key` = `value` bound to `lease` only if `key` does not
    /// exist: true when this call created it.
    pub async fn create(&self, key: &str, value: &str, lease: i64) -> Result<bool, EtcdError> {
        let k = B64.encode(key);
        let body = json!({
            "compare": [{ "key": k, "target": "CREATE", "create_revision": "0" }],
            "success": [{ "requestPut": {
                "key": k, "value": B64.encode(value), "lease": lease.to_string()
            } }],
        });
        let v = self.post("/v3/kv/txn", body).await?;
        let made = v["succeeded"].as_bool().unwrap_or(false);
        if made {
            self.wrote(&v);
        }
        Ok(made)
    }

    /// For each batch of keys, creates every one of them = `value` bound
    /// to `lease`, only if none of them exists; when one does, nothing of
    /// that batch is created and its answer lists the keys under its
    /// prefix as they are now. All batches go in one call: one nested
    /// transaction each, inside one (one write in all), with `also` (a
    /// key and its value, bound to `lease`) put whatever the batches do.
    pub async fn create_each(
        &self,
        batches: &[(Vec<String>, String)],
        (value, lease): (&str, i64),
        also: Option<(&str, &str)>,
    ) -> Result<Vec<Batch>, EtcdError> {
        let (value, lease) = (B64.encode(value), lease.to_string());
        let txn = |keys: &[String], prefix: &str| {
            let keys: Vec<String> = keys.iter().map(|k| B64.encode(k)).collect();
            json!({ "request_txn": {
                "compare": keys.iter().map(|k| json!({
                    "key": k, "target": "CREATE", "create_revision": "0"
                })).collect::<Vec<_>>(),
                "success": keys.iter().map(|k| json!({ "requestPut": {
                    "key": k, "value": value, "lease": lease
                } })).collect::<Vec<_>>(),
                "failure": [keys_under(prefix)],
            } })
        };
        let mut ops: Vec<Value> = batches.iter().map(|(k, p)| txn(k, p)).collect();
        if let Some((key, v)) = also {
            let (key, v) = (B64.encode(key), B64.encode(v));
            ops.push(json!({ "requestPut": { "key": key, "value": v, "lease": lease } }));
        }
        let v = self.post("/v3/kv/txn", json!({ "success": ops })).await?;
        let answers = v["responses"].as_array().map_or(&[][..], Vec::as_slice);
        let answers = &answers[..batches.len().min(answers.len())];
        let out: Vec<Batch> = answers.iter().map(|a| batch(&a["response_txn"])).collect();
        if also.is_some() || out.contains(&Batch::Created) {
            self.wrote(&v);
        }
        if out.iter().any(|b| *b != Batch::Created) {
            self.counts.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        answered(out, batches.len())
    }

    /// Creates every one of the batches' keys = `value` bound to `lease`,
    /// and puts `also` (a key and its value, bound to the same lease), all
    /// in one transaction (one write), only if none of the keys exists;
    /// when one does, nothing is written and each batch's answer lists the
    /// keys under its prefix as they are now.
    pub async fn create_all(
        &self,
        batches: &[(Vec<String>, String)],
        (value, lease): (&str, i64),
        also: (&str, &str),
    ) -> Result<Vec<Batch>, EtcdError> {
        let (value, lease) = (B64.encode(value), lease.to_string());
        let keys: Vec<String> = (batches.iter())
            .flat_map(|(keys, _)| keys.iter().map(|k| B64.encode(k)))
            .collect();
        let put =
            |k: &str, v: &str| json!({ "requestPut": { "key": k, "value": v, "lease": lease } });
        let mut success: Vec<Value> = keys.iter().map(|k| put(k, &value)).collect();
        success.push(put(&B64.encode(also.0), &B64.encode(also.1)));
        let body = json!({
            "compare": keys.iter().map(|k| json!({
                "key": k, "target": "CREATE", "create_revision": "0"
            })).collect::<Vec<_>>(),
            "success": success,
            "failure": batches.iter().map(|(_, prefix)| keys_under(prefix)).collect::<Vec<_>>(),
        });
        let v = self.post("/v3/kv/txn", body).await?;
        if v["succeeded"].as_bool().unwrap_or(false) {
            self.wrote(&v);
            return Ok(batches.iter().map(|_| Batch::Created).collect());
        }
        self.counts.conflicts.fetch_add(1, Ordering::Relaxed);
        let answers = v["responses"].as_array().map_or(&[][..], Vec::as_slice);
        let taken = answers.iter().map(|a| Batch::Taken(keys_of(a)));
        answered(taken.collect(), batches.len())
    }

    /// Deletes each of `keys` that is still bound to `lease` (a key that
    /// went with an expired lease and was created again by another broker
    /// stays), and sets `also` = its value bound to `lease`, all in one
    /// transaction (one write).
    pub async fn delete_own(
        &self,
        keys: &[String],
        lease: i64,
        also: (&str, &str),
    ) -> Result<(), EtcdError> {
        let lease = lease.to_string();
        let mut ops: Vec<Value> = (keys.iter().map(|k| B64.encode(k)))
            .map(|k| {
                json!({ "request_txn": {
                    "compare": [{ "key": k, "target": "LEASE", "lease": lease }],
                    "success": [{ "requestDeleteRange": { "key": k } }],
                } })
            })
            .collect();
        let (key, value) = (B64.encode(also.0), B64.encode(also.1));
        ops.push(json!({ "requestPut": { "key": key, "value": value, "lease": lease } }));
        let v = self.post("/v3/kv/txn", json!({ "success": ops })).await?;
        self.wrote(&v);
        Ok(())
    }

    /// Sets `key` = `value`, bound to `lease` (0: to none).
    pub async fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), EtcdError> {
        let body = json!({
            "key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string()
        });
        let v = self.post("/v3/kv/put", body).await?;
        self.wrote(&v);
        Ok(())
    }

    /// Every key under `prefix` with its value, as they were at revision
    /// `rev` (0: now), and the store's revision.
    pub async fn range(
        &self,
        prefix: &str,
        rev: i64,
    ) -> Result<(i64, Vec<(String, String)>), EtcdError> {
        self.range_span(prefix, &prefix_end(prefix), rev).await
    }

    /// Every key from `from` up to (not with) `to`, with its value, as
    /// they were at revision `rev` (0: now), and the store's revision.
    pub async fn range_span(
        &self,
        from: &str,
        to: &[u8],
        rev: i64,
    ) -> Result<(i64, Vec<(String, String)>), EtcdError> {
        let body = json!({
            "key": B64.encode(from), "range_end": B64.encode(to), "revision": rev.to_string()
        });
        let v = self.post("/v3/kv/range", body).await?;
        let kvs = v["kvs"].as_array().map_or(&[][..], Vec::as_slice);
        let pairs = kvs.iter().map(|kv| (text(&kv["key"]), text(&kv["value"])));
        Ok((int(&v["header"]["revision"]), pairs.collect()))
    }

    /// Watches the keys under `prefix` from revision `rev` (0: from now):
    /// the changes come in order through `Watcher::next`.
    pub async fn watch(&self, prefix: &str, rev: i64) -> Result<Watcher, EtcdError> {
        self.watch_span(prefix, &prefix_end(prefix), rev).await
    }

    /// Watches the keys from `from` up to (not with) `to`, from revision
    /// `rev` (0: from now).
    pub async fn watch_span(&self, from: &str, to: &[u8], rev: i64) -> Result<Watcher, EtcdError> {
        let body = json!({ "create_request": {
            "key": B64.encode(from),
            "range_end": B64.encode(to),
            "start_revision": rev.to_string(),
        } });
        let token = self.token().await?;
        let (body, token, pool) = (&body, token.as_deref(), &self.pool);
        let open = |ep: String| async move { open_stream(pool, &ep, body, token).await };
        self.on_a_member(open).await
    }

    /// Posts `body` to `path` on the first member that answers, with the
    /// auth token when there is a user (obtained first, and again once if
    /// etcd no longer knows it).
    async fn post(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let token = self.token().await?;
        match self.post_as(path, &body, token.as_deref()).await? {
            (_, 200, v) => Ok(v),
            (_, 401, _) if self.auth.is_some() => {
                self.auth.as_ref().expect("checked").set(None);
                let token = self.token().await?;
                let (endpoint, status, v) = self.post_as(path, &body, token.as_deref()).await?;
                refused(endpoint, status, path, v)
            }
            (endpoint, status, v) => refused(endpoint, status, path, v),
        }
    }

    /// The auth token to send: none without a user; the one held, or a new
    /// one from etcd.
    async fn token(&self) -> Result<Option<String>, EtcdError> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        if let Some(t) = auth.token() {
            return Ok(Some(t));
        }
        let path = "/v3/auth/authenticate";
        let (endpoint, status, v) = self.post_as(path, &auth.body(), None).await?;
        let v = refused(endpoint, status, path, v).map_err(|e| match e {
            EtcdError::Refused {
                endpoint, message, ..
            } => EtcdError::Refused {
                endpoint,
                path: format!("user {}", auth.user()),
                message,
            },
            other => other,
        })?;
        let token = v["token"].as_str().map(str::to_string);
        auth.set(token.clone());
        Ok(token)
    }

    /// One POST on the first member that answers: which, its status and
    /// its answer.
    async fn post_as(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(String, u16, Value), EtcdError> {
        let answer = |ep: String| async move {
            let (status, v) = self.pool.post(&ep, path, body, token).await?;
            Ok((ep, status, v))
        };
        self.on_a_member(answer).await
    }

    /// `call` on each member in turn, each within the timeout, until one
    /// answers.
    async fn on_a_member<T, F>(&self, call: impl Fn(String) -> F) -> Result<T, EtcdError>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        let mut last = String::new();
        for endpoint in &self.endpoints {
            match tokio::time::timeout(self.timeout, call(endpoint.clone())).await {
                Ok(Ok(v)) => {
                    self.counts.calls.fetch_add(1, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {} ms", self.timeout.as_millis()),
            }
        }
        self.counts.failures.fetch_add(1, Ordering::Relaxed);
        let endpoint = self.endpoints.last().cloned().unwrap_or_default();
        Err(EtcdError::Unreachable {
            endpoint,
            why: last,
        })
    }
}

/// What one nested create-if-absent transaction did.
fn batch(answer: &Value) -> Batch {
    if answer["succeeded"].as_bool().unwrap_or(false) {
        return Batch::Created;
    }
    Batch::Taken(keys_of(&answer["responses"][0]))
}

/// A transaction's read of the keys under `prefix` (keys only), as a
/// create's failure branch asks what is taken.
fn keys_under(prefix: &str) -> Value {
    json!({ "requestRange": {
        "key": B64.encode(prefix),
        "range_end": B64.encode(prefix_end(prefix)),
        "keys_only": true,
    } })
}

/// The keys in the answer to a `keys_under` read.
fn keys_of(answer: &Value) -> Vec<String> {
    let kvs = answer["response_range"]["kvs"].as_array();
    let kvs = kvs.map_or(&[][..], Vec::as_slice);
    kvs.iter().map(|kv| text(&kv["key"])).collect()
}

/// The answers to `asked` batches, or an error when etcd gave another
/// number of them.
fn answered(out: Vec<Batch>, asked: usize) -> Result<Vec<Batch>, EtcdError> {
    if out.len() == asked {
        return Ok(out);
    }
    Err(EtcdError::Refused {
        endpoint: "etcd".to_string(),
        path: "/v3/kv/txn".to_string(),
        message: format!("{} answers to {} batches", out.len(), asked),
    })
}

/// The answer of a call that succeeded, or etcd's reason for refusing it.
fn refused(endpoint: String, status: u16, path: &str, v: Value) -> Result<Value, EtcdError> {
    if status == 200 {
        return Ok(v);
    }
    let message = v["message"].as_str().or(v["error"].as_str());
    Err(EtcdError::Refused {
        endpoint,
        path: path.to_string(),
        message: message.unwrap_or("no message").to_string(),
    })
}

/// The end of the range of keys that start with `prefix`.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
#[path = "etcd_tests.rs"]
pub(crate) mod tests;

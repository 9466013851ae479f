//! The broker's etcd lease, which every key it writes in team mode is bound
//! to: granted, kept alive by `tick` (every TTL/3), revoked by `end`. A
//! claim counts only while the lease surely lives: until the last confirmed
//! keep-alive (timed from when it was sent) plus the TTL, minus a margin.
//! When etcd does not answer the session is `Unreachable`; when it answers
//! again after the lease expired, a new lease is granted and the session is
//! `Rejoining` (its claims are gone) until the next keep-alive.

use super::etcd::{Etcd, EtcdError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the session stands, as `tcpb status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamState {
    /// No lease yet.
    Connecting,
    /// The lease is alive and confirmed.
    Connected,
    /// etcd did not answer the last call.
    Unreachable,
    /// A new lease after the old one expired: claims must be made again.
    Rejoining,
}

/// One broker's lease and what is known of it. Its lock never leaves this
/// module and is never held across a call to etcd.
pub struct Session {
    etcd: Etcd,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The lease, and when the keep-alive (or grant) last confirmed it was
    /// sent.
    lease: Option<(i64, Instant)>,
    state: TeamState,
    /// Why etcd did not answer last, until it answers again.
    error: Option<String>,
}

impl Session {
    /// A session with leases of `ttl_s` seconds (at least 2).
    pub fn new(etcd: Etcd, ttl_s: u64) -> Session {
        Session {
            etcd,
            ttl: Duration::from_secs(ttl_s.max(2)),
            inner: Mutex::new(Inner {
                lease: None,
                state: TeamState::Connecting,
                error: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How often `tick` should run.
    pub fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// Where the session stands.
    pub fn state(&self) -> TeamState {
        self.lock().state
    }

    /// The lease held, sure or not.
    pub fn id(&self) -> Option<i64> {
        self.lock().lease.map(|l| l.0)
    }

    /// Why etcd did not answer the last call, while it does not.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// A call to etcd other than the session's own failed: unreachable
    /// until the next keep-alive is answered.
    pub fn failed(&self, why: &EtcdError) {
        let mut inner = self.lock();
        inner.state = TeamState::Unreachable;
        inner.error = Some(why.to_string());
    }

    /// The lease, while keys bound to it surely live (a margin of a fifth
    /// of the TTL, at least 1 s, before etcd could expire it).
    pub fn lease(&self, now: Instant) -> Option<i64> {
        let margin = (self.ttl / 5).max(Duration::from_secs(1));
        let (id, sent) = self.lock().lease?;
        (now < sent + self.ttl.saturating_sub(margin)).then_some(id)
    }

    /// Keeps the lease alive, or grants one; returns the state after.
    pub async fn tick(&self) -> TeamState {
        let sent = Instant::now();
        let held = self.lock().lease.map(|l| l.0);
        let result = match held {
            Some(id) => self
                .etcd
                .keep_alive(id)
                .await
                .map(|ttl| (ttl > 0).then_some(id)),
            None => self.etcd.grant(self.ttl.as_secs()).await.map(Some),
        };
        let mut inner = self.lock();
        inner.error = result.as_ref().err().map(ToString::to_string);
        match result {
            Ok(Some(id)) => {
                let fresh = held != Some(id);
                let had_one = held.is_some() || inner.state != TeamState::Connecting;
                inner.lease = Some((id, sent));
                inner.state = match (fresh, had_one) {
                    (true, true) => TeamState::Rejoining,
                    _ => TeamState::Connected,
                };
            }
            // The lease expired (etcd was away too long): grant anew next.
            Ok(None) => {
                inner.lease = None;
                inner.state = TeamState::Rejoining;
            }
            Err(EtcdError::Refused { .. }) if held.is_some() => {
                inner.lease = None;
                inner.state = TeamState::Rejoining;
            }
            Err(_) => inner.state = TeamState::Unreachable,
        }
        inner.state
    }

    /// Revokes the lease: every key bound to it goes at once.
    pub async fn end(&self) -> Result<(), EtcdError> {
        let held = self.lock().lease.take();
        match held {
            Some((id, _)) => self.etcd.revoke(id).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

//! The team task's loop: keeps the lease alive (on a task of its own),
//! (re)reads the farm and watches it, and reconciles after every wake — a compile asked or
//! ended, a change to the farm's keys, or `PERIOD`. Every change already
//! received is applied before reconciling: a busy broker wakes far more
//! often than one change at a time would let its view keep up. A failed
//! call leaves the watch be (it breaks by itself if etcd went away); a
//! failed read of the farm is tried again later and later (`Retry`).

use super::driver::Team;
use super::etcd::{Change, Watcher};
use super::member::Member;
use super::session::TeamState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The longest the task sleeps with nothing to wake it.
const PERIOD: Duration = Duration::from_millis(200);
/// Watch answers applied at most between two reconciles.
const DRAIN: usize = 10_000;
/// Other brokers' changes start a reconcile at most this often after the
/// last one (a compile of this broker's own, at once): in a team of 100
/// one arrives nearly every millisecond, and a reconcile walks every host.
const SETTLE: Duration = Duration::from_millis(100);
/// A watch that has not shown this broker's own last write for this long
/// is behind (etcd holds a slow watcher's events back): the farm is read
/// again rather than planned from a view that old.
const LAG: Duration = Duration::from_secs(5);

/// Runs the team task until the broker stops.
pub async fn run(team: Arc<Team>, member: impl Member) {
    let _lease = Abort(tokio::spawn(keep_alive(team.clone())));
    let mut watcher: Option<Watch> = None;
    let mut retry = Retry::default();
    let mut last = Instant::now();
    loop {
        let reachable = matches!(
            team.session.state(),
            TeamState::Connected | TeamState::Rejoining
        );
        // A watch outlives a failed call: a stalled etcd resumes it in
        // order, one that died or restarted ends it.
        if reachable && watcher.is_none() && retry.due(Instant::now()) {
            watcher = load(&team, &member, &mut retry).await;
        }
        if reachable && watcher.is_some() {
            last = Instant::now();
            if team.reconcile(&member).await {
                member.capacity_changed();
            }
        }
        let wait = Instant::now() + PERIOD;
        let others = tokio::select! {
            _ = team.wake.notified() => false,
            changes = next_change(&mut watcher) => {
                changed(&team, &member, changes, &mut watcher);
                true
            }
            _ = tokio::time::sleep_until(wait.into()) => false,
        };
        if others {
            // Unless this broker's own compiles wake it first.
            let settled = last + SETTLE;
            tokio::select! {
                _ = team.wake.notified() => {}
                _ = tokio::time::sleep_until(settled.into()) => {}
            }
        }
        drain(&team, &member, &mut watcher);
        if watcher.as_mut().is_some_and(|w| w.behind(&team)) {
            tracing::warn!(
                "team: the farm's watch has not shown this broker's own write for {} s; \
                 reading the farm again",
                LAG.as_secs()
            );
            watcher = None;
        }
    }
}

/// Reads the whole farm and watches it from there; on failure, when to
/// try again goes in `retry`.
async fn load(team: &Team, member: &impl Member, retry: &mut Retry) -> Option<Watch> {
    match team.load(retry.loaded).await {
        Ok((w, told, revision)) => {
            *retry = Retry {
                loaded: true,
                ..Retry::default()
            };
            member.hosts_changed();
            member.told(told);
            Some(Watch::new(w, revision))
        }
        Err(e) => {
            retry.failed(Instant::now());
            team.session.failed(&e);
            None
        }
    }
}

/// Keeps the lease alive every third of its TTL, on a task of its own: a
/// reconcile slowed by a slow etcd must not let the lease, and with it
/// every claim, expire. Wakes the team task when the state changes.
async fn keep_alive(team: Arc<Team>) {
    loop {
        let before = team.session.state();
        team.keep_alive().await;
        if team.session.state() != before {
            team.wake();
        }
        tokio::time::sleep(team.session.period()).await;
    }
}

/// Aborts a task when dropped (the team task's end ends its keep-alive).
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The farm's watch, read on a task of its own as fast as etcd sends, so
/// that a broker busy reconciling never holds etcd's watch stream back;
/// the answers wait in order in `rx`.
struct Watch {
    rx: mpsc::UnboundedReceiver<Result<Vec<Change>, String>>,
    _reader: Abort,
    /// The store's revision the view is at.
    applied: i64,
    /// Since when it has been behind this broker's own last write.
    lag: Lag,
}

impl Watch {
    /// Whether the view has stayed behind this broker's own last write
    /// for `LAG`.
    fn behind(&mut self, team: &Team) -> bool {
        let written = team
            .counts()
            .written
            .load(std::sync::atomic::Ordering::Relaxed);
        self.lag.behind(written > self.applied, Instant::now())
    }

    fn new(mut watcher: Watcher, revision: i64) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                let answer = watcher.next().await;
                let ended = answer.is_err();
                if tx.send(answer).is_err() || ended {
                    return;
                }
            }
        });
        Watch {
            rx,
            _reader: Abort(reader),
            applied: revision,
            lag: Lag::default(),
        }
    }
}

/// How long something has been behind.
#[derive(Default)]
struct Lag {
    since: Option<Instant>,
}

impl Lag {
    /// True once `behind` has held for `LAG` without a break.
    fn behind(&mut self, behind: bool, now: Instant) -> bool {
        if !behind {
            self.since = None;
            return false;
        }
        now.duration_since(*self.since.get_or_insert(now)) >= LAG
    }
}

/// When to read the farm again after a read failed: 1 s after the first
/// failure, doubling up to `RETRY_MOST` (a busy etcd is not asked for
/// the whole farm again by every broker every few seconds).
#[derive(Default)]
struct Retry {
    next: Option<Instant>,
    wait: Duration,
    /// A read has succeeded before: the broker has a view and claims to
    /// go on with, and no compile waits for this read.
    loaded: bool,
}

/// The longest wait between two failed reads of the farm.
const RETRY_MOST: Duration = Duration::from_secs(30);

impl Retry {
    fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|at| now >= at)
    }

    fn failed(&mut self, now: Instant) {
        self.wait = (self.wait * 2).clamp(Duration::from_secs(1), RETRY_MOST);
        self.next = Some(now + self.wait);
    }
}

/// Applies every watch answer already received (none is waited for).
fn drain(team: &Team, member: &impl Member, watcher: &mut Option<Watch>) {
    for _ in 0..DRAIN {
        let Some(w) = watcher.as_mut() else { return };
        match w.rx.try_recv() {
            Ok(changes) => changed(team, member, changes, watcher),
            Err(_) => return,
        }
    }
}

/// Applies one watch answer; a broken watch is dropped (the loop reads the
/// farm again).
fn changed(
    team: &Team,
    member: &impl Member,
    changes: Result<Vec<Change>, String>,
    watcher: &mut Option<Watch>,
) {
    match changes {
        Ok(changes) => {
            let last = changes.iter().map(|c| c.revision).max().unwrap_or(0);
            if let Some(w) = watcher.as_mut() {
                w.applied = w.applied.max(last);
            }
            let (redefined, told) = team.apply(&changes);
            if redefined {
                member.hosts_changed();
            }
            if !told.is_empty() {
                member.told(told);
            }
        }
        Err(e) => {
            tracing::warn!("team: {e}; reading the farm again");
            *watcher = None;
        }
    }
}

/// The next watched changes; never, without a watch.
async fn next_change(watcher: &mut Option<Watch>) -> Result<Vec<Change>, String> {
    match watcher {
        Some(w) => {
            w.rx.recv()
                .await
                .unwrap_or_else(|| Err("the watch ended".to_string()))
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;

//! The team task's loop: keeps the lease alive (on a task of its own),
//! (re)reads the farm and watches it, and reconciles after every wake — a compile asked or
//! ended, a change to the farm's keys, or `PERIOD`. Every change already
//! received is applied before reconciling: a busy broker wakes far more
//! often than one change at a time would let its view keep up.

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

/// Runs the team task until the broker stops.
pub async fn run(team: Arc<Team>, member: impl Member) {
    let _lease = Abort(tokio::spawn(keep_alive(team.clone())));
    let mut watcher: Option<Watch> = None;
    let mut last = Instant::now();
    loop {
        let reachable = matches!(
            team.session.state(),
            TeamState::Connected | TeamState::Rejoining
        );
        if !reachable {
            watcher = None;
        } else if watcher.is_none() {
            match team.load().await {
                Ok((w, told)) => {
                    watcher = Some(Watch::new(w));
                    member.hosts_changed();
                    member.told(told);
                }
                Err(e) => team.session.failed(&e),
            }
        }
        if watcher.is_some() {
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
}

impl Watch {
    fn new(mut watcher: Watcher) -> Watch {
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
        }
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

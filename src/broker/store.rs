//! The broker's persisted state: the admin overlay, per-host counters and
//! learned speed samples in `state.json`, the per-file cost memory in
//! `costs.json`, both in the state directory and written atomically (temp
//! file, fsync, rename) so a crash mid-write loses nothing.
//!
//! Every write happens on one thread of its own (`Writer`), never under the
//! broker's lock nor on an async worker: the broker hands it a copy taken
//! under the lock. The same thread sets a full log aside.

use super::overlay::Overlay;
use super::sched::costs::SavedCosts;
use crate::paths::Paths;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// A host's counters, kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct HostCounters {
    /// Jobs finished.
    pub jobs: u64,
    /// Failures the relay saw.
    pub failures: u64,
    /// Jobs lost to a failure and compiled locally.
    pub fallbacks: u64,
}

/// Everything persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Saved {
    /// Runtime farm changes.
    pub overlay: Overlay,
    /// Counters by host name.
    pub counters: BTreeMap<String, HostCounters>,
    /// Speed samples by host name (`learn::Learned::saved`): a broker
    /// started later does not judge the farm on nothing again.
    pub learned: BTreeMap<String, Vec<(f64, f64)>>,
    /// Each host's state when the broker last saw it, for `tcpb status`
    /// with no broker running.
    pub seen: BTreeMap<String, Seen>,
}

/// A host's state and when it was known (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Seen {
    /// The state.
    pub state: crate::protocol::HostState,
    /// When.
    pub at: u64,
}

/// Seconds since the Unix epoch now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The state file in `state_dir`.
pub(crate) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

/// The cost memory's file in `state_dir`.
fn costs_path(state_dir: &Path) -> PathBuf {
    state_dir.join("costs.json")
}

/// Reads the state. A missing file is an empty state; an unreadable one is
/// renamed aside (never silently discarded) and reported in the warning.
pub(crate) fn load(file: &Path) -> (Saved, Option<String>) {
    let (mut saved, warning) = load_json::<Saved>(file);
    let dropped = saved.overlay.sanitize();
    if dropped.is_empty() {
        return (saved, warning);
    }
    let w = format!(
        "{}: dropped what is out of bounds: {}",
        file.display(),
        dropped.join("; ")
    );
    (
        saved,
        Some(warning.map_or(w.clone(), |first| format!("{first}; {w}"))),
    )
}

/// Reads the state and the cost memory of `state_dir`, with the warnings
/// for files that could not be used.
pub(crate) fn load_all(state_dir: &Path) -> (Saved, SavedCosts, Vec<String>) {
    let (saved, w1) = load(&path(state_dir));
    let (costs, w2) = load_json(&costs_path(state_dir));
    (saved, costs, w1.into_iter().chain(w2).collect())
}

/// What one save writes: the state, and the cost memory if it changed.
pub(crate) struct Snapshot {
    /// `state.json`.
    pub state: Saved,
    /// `costs.json`, when it changed.
    pub costs: Option<SavedCosts>,
}

/// A file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot save {what} to {}: {source}", file.display())]
pub(crate) struct SaveError {
    /// What it holds.
    what: &'static str,
    /// The file.
    file: PathBuf,
    /// Why.
    source: std::io::Error,
}

/// What the writer thread does.
enum Work {
    Save(
        Box<Snapshot>,
        Option<oneshot::Sender<Result<(), SaveError>>>,
    ),
    RotateLog(u64),
}

/// The thread that writes the broker's files.
pub(crate) struct Writer {
    /// The writer thread's work; it ends when this is dropped.
    tx: mpsc::Sender<Work>,
}

impl Writer {
    /// Starts the writer for the files of `paths`.
    pub(crate) fn start(paths: Paths) -> Writer {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("tcpb-store".into())
            .spawn(move || {
                let mut failing = Failing::default();
                for work in rx {
                    match work {
                        Work::Save(snap, done) => {
                            let r = failing.write(&paths.state_dir, *snap);
                            if let Some(done) = done {
                                let _ = done.send(r);
                            }
                        }
                        Work::RotateLog(max) => rotate_log(&paths, max),
                    }
                }
            })
            .expect("a thread for the state writer");
        Writer { tx }
    }

    /// Writes `snap` in the background; a failure is logged.
    pub(crate) fn save(&self, snap: Snapshot) {
        let _ = self.tx.send(Work::Save(Box::new(snap), None));
    }

    /// Writes `snap`; the receiver tells when it is on disk, or why not.
    pub(crate) fn save_and_tell(&self, snap: Snapshot) -> oneshot::Receiver<Result<(), SaveError>> {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Work::Save(Box::new(snap), Some(done)));
        rx
    }

    /// Sets the log aside if it is over `max` bytes.
    pub(crate) fn rotate_log(&self, max: u64) {
        let _ = self.tx.send(Work::RotateLog(max));
    }
}

/// Saves that fail: the cost memory of a failed save is kept for the next
/// one, and the log gets one line when saving starts failing, at most one
/// a minute while it goes on, and one when it works again.
#[derive(Default)]
struct Failing {
    /// The cost memory a failed save did not write.
    costs: Option<SavedCosts>,
    /// Failures since the last line about them, and when that was.
    since_logged: Option<(u64, std::time::Instant)>,
}

impl Failing {
    fn write(&mut self, state_dir: &Path, mut snap: Snapshot) -> Result<(), SaveError> {
        if snap.costs.is_none() {
            snap.costs = self.costs.take();
        }
        let costs = snap.costs.clone();
        let r = write(state_dir, snap);
        match (&r, &mut self.since_logged) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => {
                tracing::info!("saving works again");
                self.since_logged = None;
            }
            (Err(e), None) => {
                tracing::error!("{e}; retried with each save, logged once a minute");
                self.since_logged = Some((0, std::time::Instant::now()));
            }
            (Err(e), Some((n, at))) => {
                *n += 1;
                if at.elapsed() >= std::time::Duration::from_secs(60) {
                    tracing::error!("{e} ({n} more failures)");
                    (*n, *at) = (0, std::time::Instant::now());
                }
            }
        }
        if r.is_err() {
            self.costs = costs;
        }
        r
    }
}

fn write(state_dir: &Path, snap: Snapshot) -> Result<(), SaveError> {
    if let Some(costs) = &snap.costs {
        let file = costs_path(state_dir);
        save_json(&file, costs).map_err(|source| SaveError {
            what: "the cost memory",
            file,
            source,
        })?;
    }
    let file = path(state_dir);
    save_json(&file, &snap.state).map_err(|source| SaveError {
        what: "state",
        file,
        source,
    })
}

/// When the log this broker writes to (its stdout and stderr) is over
/// `max` bytes, sets it aside as `broker.log.old` and writes a new one.
fn rotate_log(paths: &Paths, max: u64) {
    let log = paths.log_file();
    // Only the file our stderr is (a foreground broker writes elsewhere).
    if !crate::sys::stderr_is(&log) {
        return;
    }
    let old = paths.old_log_file();
    match crate::sys::rotate_output(&log, &old, max) {
        Ok(true) => tracing::info!("log set aside as {} past {max} bytes", old.display()),
        Ok(false) => {}
        Err(e) => {
            static QUIET: crate::sys::Quiet = crate::sys::Quiet::new(60);
            if let Some(n) = QUIET.due() {
                tracing::warn!("cannot set the log aside: {e}; tried again each second ({n} more)");
            }
        }
    }
}

/// Reads a JSON file. Missing: the default. Unreadable (a read error, a
/// directory, not JSON): the default, with the file renamed
/// `NAME.bad-TIME[-N]` so the next save cannot overwrite it, and a warning
/// that says so.
fn load_json<T: DeserializeOwned + Default>(file: &Path) -> (T, Option<String>) {
    let why = match std::fs::read(file) {
        Ok(text) => match serde_json::from_slice(&text) {
            Ok(v) => return (v, None),
            Err(e) => format!("is unreadable ({e})"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (T::default(), None),
        Err(e) => format!("cannot be read ({e})"),
    };
    let kept = match set_aside(file) {
        Ok(aside) => format!("kept aside as {}", aside.display()),
        Err(e) => format!("could not set it aside: {e}"),
    };
    let w = format!(
        "state file {} {why}; {kept}; starting from an empty state",
        file.display()
    );
    (T::default(), Some(w))
}

/// Renames `file` to the first free `NAME.bad-TIME[-N]`.
fn set_aside(file: &Path) -> std::io::Result<PathBuf> {
    let stamp = unix_now();
    for n in 0..1000 {
        let mut aside = file.as_os_str().to_os_string();
        aside.push(format!(".bad-{stamp}"));
        if n > 0 {
            aside.push(format!("-{n}"));
        }
        let aside = PathBuf::from(aside);
        if std::fs::symlink_metadata(&aside).is_err() {
            std::fs::rename(file, &aside)?;
            return Ok(aside);
        }
    }
    Err(std::io::Error::other("too many set-aside copies"))
}

/// Writes `value` as JSON atomically: a new private temporary file (never
/// one that was there, nor through a link), synced, renamed. A failed
/// write leaves no temporary file behind.
fn save_json<T: Serialize>(file: &Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        crate::paths::ensure_private_dir(dir)?;
    }
    let mut tmp = file.as_os_str().to_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = crate::paths::create_private(&tmp).and_then(|mut f| {
        serde_json::to_writer(&mut f, value)?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    let r = written.and_then(|()| std::fs::rename(&tmp, file));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

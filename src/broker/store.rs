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
    load_json(file)
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
                for work in rx {
                    match work {
                        Work::Save(snap, done) => {
                            let r = write(&paths.state_dir, *snap);
                            if let Err(e) = &r {
                                tracing::error!("{e}");
                            }
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
    if crate::sys::set_log_aside(&log, &old, max).unwrap_or(false)
        && crate::sys::redirect_output(&log).is_ok()
    {
        tracing::info!("log set aside as {} past {max} bytes", old.display());
    }
}

/// Reads a JSON file. Missing: the default. Unreadable: the default, with
/// the file renamed `NAME.bad-TIME` and a warning that says so.
fn load_json<T: DeserializeOwned + Default>(file: &Path) -> (T, Option<String>) {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (T::default(), None),
        Err(e) => {
            return (
                T::default(),
                Some(format!("cannot read {}: {e}", file.display())),
            );
        }
    };
    match serde_json::from_slice(&text) {
        Ok(v) => (v, None),
        Err(e) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut aside = file.as_os_str().to_os_string();
            aside.push(format!(".bad-{stamp}"));
            let aside = PathBuf::from(aside);
            let kept = match std::fs::rename(file, &aside) {
                Ok(()) => format!("kept aside as {}", aside.display()),
                Err(re) => format!("could not set it aside: {re}"),
            };
            let w = format!(
                "state file {} is unreadable ({e}); {kept}; starting from an empty state",
                file.display()
            );
            (T::default(), Some(w))
        }
    }
}

/// Writes `value` as JSON atomically: a temporary file, synced, renamed.
fn save_json<T: Serialize>(file: &Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = file.as_os_str().to_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer(&mut f, value)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bad_file_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        assert_eq!(load(&file), (Saved::default(), None));
        let mut s = Saved::default();
        s.overlay.remove("b1:3632");
        s.counters.insert(
            "b1:3632".into(),
            HostCounters {
                jobs: 5,
                failures: 1,
                fallbacks: 0,
            },
        );
        save_json(&file, &s).unwrap();
        assert_eq!(load(&file).0, s);
        std::fs::write(&file, "{ not json").unwrap();
        let (got, warning) = load(&file);
        assert_eq!(got, Saved::default());
        let w = warning.unwrap();
        assert!(w.contains("unreadable") && w.contains("kept aside"), "{w}");
        let aside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert!(
            aside
                .iter()
                .any(|e| e.file_name().to_string_lossy().contains("bad-"))
        );
    }
}

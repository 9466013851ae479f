//! The broker's persisted state: the admin overlay, per-host counters and
//! learned speed samples, in one JSON file in the state directory, written
//! atomically (temp file, fsync, rename) so a crash mid-write loses nothing.

use super::overlay::Overlay;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A host's counters, kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostCounters {
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
pub struct Saved {
    /// Runtime farm changes.
    pub overlay: Overlay,
    /// Counters by host name.
    pub counters: BTreeMap<String, HostCounters>,
    /// Speed samples by host name (`learn::Learned::saved`): a broker
    /// started later does not judge the farm on nothing again.
    pub learned: BTreeMap<String, Vec<(f64, f64)>>,
}

/// The state file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

/// Reads the state. A missing file is an empty state; an unreadable one is
/// renamed aside (never silently discarded) and reported in the warning.
pub fn load(file: &Path) -> (Saved, Option<String>) {
    load_json(file)
}

/// Writes the state atomically.
pub fn save(file: &Path, saved: &Saved) -> std::io::Result<()> {
    save_json(file, saved)
}

/// Reads a JSON file. Missing: the default. Unreadable: the default, with
/// the file renamed `NAME.bad-TIME` and a warning that says so.
pub fn load_json<T: DeserializeOwned + Default>(file: &Path) -> (T, Option<String>) {
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
pub fn save_json<T: Serialize>(file: &Path, value: &T) -> std::io::Result<()> {
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
        save(&file, &s).unwrap();
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

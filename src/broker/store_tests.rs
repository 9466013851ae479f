//! Saving and loading the broker's files.

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

#[test]
fn unusable_state_files_are_set_aside_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path());
    // A directory where the file should be: set aside, then saves work.
    std::fs::create_dir_all(file.join("x")).unwrap();
    let (_, w) = load(&file);
    assert!(w.unwrap().contains("cannot be read"));
    save_json(&file, &Saved::default()).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "state files are private");
    // Two bad files in the same second keep two copies.
    for _ in 0..2 {
        std::fs::write(&file, "{ not json").unwrap();
        assert!(load(&file).1.is_some());
    }
    let copies = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".bad-"))
        .count();
    assert_eq!(copies, 3);
}

#[test]
fn well_typed_nonsense_is_dropped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path());
    let text = r#"{"overlay":{"set":{"a:3632":{"slots":4294967295},"b:3632":{"speed":0.5}},
        "added":[{"name":"c:3632","addr":["c",3632],"slots":0,"speed":-1.0,"lzo":false,"cpp":false}]}}"#;
    std::fs::write(&file, text).unwrap();
    let (saved, w) = load(&file);
    let w = w.unwrap();
    assert!(w.contains("a:3632") && w.contains("c:3632"), "{w}");
    assert!(saved.overlay.added.is_empty());
    assert_eq!(saved.overlay.set.keys().collect::<Vec<_>>(), ["b:3632"]);
}

#[test]
fn a_failed_save_leaves_no_temporary_file_and_keeps_the_cost_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path());
    // A non-empty directory in the way: the rename fails.
    std::fs::create_dir_all(file.join("x")).unwrap();
    let mut failing = Failing::default();
    let snap = |costs| Snapshot {
        state: Saved::default(),
        costs,
    };
    let costs = SavedCosts::default();
    assert!(
        failing
            .write(dir.path(), snap(Some(costs.clone())))
            .is_err()
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
    std::fs::remove_dir_all(&file).unwrap();
    assert!(failing.write(dir.path(), snap(None)).is_ok());
    assert!(
        costs_path(dir.path()).exists(),
        "the kept cost memory was written"
    );
}

#[test]
fn a_link_where_the_temporary_file_goes_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me\n").unwrap();
    let file = path(&dir.path().join("state"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut tmp = file.as_os_str().to_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    save_json(&file, &Saved::default()).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    assert_eq!(load(&file), (Saved::default(), None));
}

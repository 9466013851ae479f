//! The fuzz targets (`tests/fuzz`), run for a bounded time: under CI, or
//! when `TCPB_FUZZ_SECS` says how long each may run. They need a nightly
//! toolchain and cargo-fuzz (`.ci/run` installs cargo-fuzz when a nightly
//! toolchain is there); without them the test says loudly that it skipped,
//! since a nightly toolchain is not something every machine can get.

use std::process::Command;
use std::time::Duration;

mod common;
use common::output_within;

/// Seconds each target runs, if fuzzing is asked for here.
fn budget() -> Option<u64> {
    match std::env::var("TCPB_FUZZ_SECS") {
        Ok(v) => v.parse().ok(),
        Err(_) => std::env::var("CI").is_ok_and(|v| v == "true").then_some(20),
    }
}

/// `cargo +nightly fuzz ...` in the repository, with the outer cargo's
/// variables removed so the nightly build is its own.
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let keep = matches!(k.as_ref(), "CARGO_HOME" | "RUSTUP_HOME");
        if !keep && (k.starts_with("CARGO") || k.starts_with("RUST")) {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.args(["+nightly", "fuzz"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

#[test]
fn fuzz_targets_find_nothing_in_a_bounded_run() {
    let Some(secs) = budget() else {
        eprintln!("fuzzing not asked for (CI=true or TCPB_FUZZ_SECS=N runs it)");
        return;
    };
    let have = cargo_fuzz(&["--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!(
            "\n!!!!!!!!!! SKIPPED: fuzzing needs a nightly toolchain and cargo-fuzz \
             (rustup toolchain install nightly; cargo install cargo-fuzz) !!!!!!!!!!\n"
        );
        return;
    }
    let time = format!("-max_total_time={secs}");
    let targets = [
        ("control_frame", vec![time.as_str()]),
        (
            "distcc_stream",
            vec!["-dict=tests/fuzz/distcc.dict", time.as_str()],
        ),
    ];
    for (target, opts) in targets {
        let mut args = vec!["run", "--fuzz-dir", "tests/fuzz", target, "--"];
        args.extend(opts);
        let out = output_within(cargo_fuzz(&args), Duration::from_secs(secs + 600));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{target} found something:\n{err}");
        let runs = err
            .lines()
            .rev()
            .find(|l| l.starts_with("Done "))
            .unwrap_or("");
        eprintln!("RESULT fuzz {target}: {runs}");
    }
}

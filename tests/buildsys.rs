//! tcpb inside the build systems people use: CMake + Ninja with the
//! compiler launcher, ccache in front (`CCACHE_PREFIX`), Meson with
//! `CC="tcpb gcc"`, and C++. Each builds against a real distccd and checks
//! the objects byte for byte against the same build without tcpb.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIXED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mixed");
const MIXED_OBJECTS: [&str; 4] = ["main.cpp.o", "shapes.cpp.o", "stats.c.o", "text.c.o"];

/// True when `tools` and distccd are installed.
fn have(tools: &[&str]) -> bool {
    have_distccd() && have_tools(tools)
}

/// Copies the mixed C/C++ fixture into `dest`.
fn copy_mixed(dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(MIXED).unwrap().flatten() {
        std::fs::copy(e.path(), dest.join(e.file_name())).unwrap();
    }
}

fn objects_in(dir: &Path) -> Vec<PathBuf> {
    MIXED_OBJECTS.iter().map(|o| dir.join(o)).collect()
}

fn assert_same_files(want: &[PathBuf], got: &[PathBuf]) {
    for (w, g) in want.iter().zip(got) {
        let (a, b) = (std::fs::read(w).unwrap(), std::fs::read(g).unwrap());
        assert!(a == b, "{} differs from {}", g.display(), w.display());
    }
}

#[test]
fn cmake_ninja_with_the_compiler_launcher_matches_a_plain_build() {
    if !have(&["cmake", "ninja", "g++"]) {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 4);
    let src = env.path("src");
    copy_mixed(&src);
    let configure = |build: &str, launcher: bool| {
        let mut c = env.cmd("cmake");
        c.args(["-G", "Ninja", "-S"])
            .arg(&src)
            .arg("-B")
            .arg(env.path(build))
            .env("DISTCC_HOSTS", d.host(4));
        if launcher {
            c.arg(format!("-DCMAKE_C_COMPILER_LAUNCHER={TCPB}"))
                .arg(format!("-DCMAKE_CXX_COMPILER_LAUNCHER={TCPB}"));
        }
        run_ok(c);
        let mut b = env.cmd("cmake");
        b.arg("--build")
            .arg(env.path(build))
            .env("DISTCC_HOSTS", d.host(4));
        run_ok(b);
    };
    configure("ref", false);
    let before = d.compiles_ok(0);
    configure("farm", true);
    let dir = |b: &str| env.path(&format!("{b}/CMakeFiles/mixed.dir"));
    assert_same_files(&objects_in(&dir("ref")), &objects_in(&dir("farm")));
    assert_eq!(
        d.compiles_ok(before + 4) - before,
        4,
        "each C and C++ file compiled on the farm"
    );
    let out = run_ok(Command::new(env.path("farm/mixed")));
    assert!(out.contains("area=19 mean=2.5 words=6"), "{out}");
}

#[test]
fn ccache_in_front_sends_misses_to_the_farm_and_hits_never_reach_the_broker() {
    if !have(&["ccache"]) {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 4);
    reference_build(&env.path("ref"));
    let dir = env.path("farm");
    copy_fixture(&dir);
    let make = |target: Option<&str>| {
        let mut c = env.cmd("make");
        c.args(["-j8", "CC=ccache gcc"])
            .args(target)
            .current_dir(&dir)
            .env("DISTCC_HOSTS", d.host(4))
            .env("CCACHE_PREFIX", TCPB)
            .env("CCACHE_DIR", env.path("ccache"));
        run_ok(c);
    };
    let n = fixture_sources().len();
    make(None);
    assert_same_objects(&env.path("ref"), &dir);
    assert_eq!(d.compiles_ok(n), n, "every miss compiled on the farm");
    let granted = env.status(&d.host(4))["granted"].as_u64().unwrap();
    make(Some("clean"));
    make(None);
    assert_same_objects(&env.path("ref"), &dir);
    assert_eq!(d.compiles_ok(0), n, "hits did not reach the farm");
    // ccache runs the link through the prefix too: one local lease.
    assert_eq!(
        env.status(&d.host(4))["granted"].as_u64().unwrap(),
        granted + 1,
        "only the link reached the broker"
    );
}

#[test]
fn meson_with_cc_tcpb_gcc_matches_a_plain_build() {
    if !have(&["meson", "ninja", "g++"]) {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 4);
    let src = env.path("src");
    copy_mixed(&src);
    // Set up, then compile; returns the farm's compiles during the compile.
    let build = |name: &str, cc: Option<(String, String)>| {
        let expect = if cc.is_some() { 4 } else { 0 };
        let mut c = env.cmd("meson");
        c.args(["setup", "--buildtype=release", name, "src"])
            .current_dir(env.dir.path())
            .env("DISTCC_HOSTS", d.host(4));
        if let Some((cc, cxx)) = cc {
            c.env("CC", cc).env("CXX", cxx);
        }
        run_ok(c);
        let before = d.compiles_ok(0);
        let mut b = env.cmd("meson");
        b.args(["compile", "-C", name])
            .current_dir(env.dir.path())
            .env("DISTCC_HOSTS", d.host(4));
        run_ok(b);
        d.compiles_ok(before + expect) - before
    };
    build("ref", None);
    let remote = build("farm", Some((format!("{TCPB} gcc"), format!("{TCPB} g++"))));
    let dir = |b: &str| env.path(&format!("{b}/mixed.p"));
    assert_same_files(&objects_in(&dir("ref")), &objects_in(&dir("farm")));
    assert_eq!(remote, 4, "each C and C++ file compiled on the farm");
    let out = run_ok(Command::new(env.path("farm/mixed")));
    assert!(out.contains("area=19"), "{out}");
}

#[test]
fn cxx_through_tcpb_gxx_matches_local() {
    if !have(&["g++"]) {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    copy_mixed(&env.path("work"));
    let mut c = env.tcpb();
    c.args([
        "g++",
        "-O2",
        "-std=c++17",
        "-c",
        "shapes.cpp",
        "-o",
        "farm.o",
    ])
    .env("DISTCC_HOSTS", d.host(2));
    run_ok(c);
    let mut l = Command::new("g++");
    l.args(["-O2", "-std=c++17", "-c", "shapes.cpp", "-o", "local.o"])
        .current_dir(env.path("work"));
    run_ok(l);
    assert_same_files(&[env.path("work/local.o")], &[env.path("work/farm.o")]);
    assert_eq!(d.compiles_ok(1), 1, "compiled on the farm");
}

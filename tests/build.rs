//! End to end: the fixture project built with make through tcpb against
//! real distccd instances on 127.0.0.1, objects checked byte for byte
//! against a local gcc build.

mod common;
use common::*;
use std::process::Command;

/// Builds the fixture in `dir` with `make -j8` plus `make_args`, through
/// `env`, with `hosts` as the farm; returns make's output.
fn make_through(
    env: &TestEnv,
    dir: &std::path::Path,
    hosts: &str,
    make_args: &[&str],
    path: Option<&std::ffi::OsStr>,
) {
    copy_fixture(dir);
    let mut cmd = env.cmd("make");
    cmd.args(["-j8"])
        .args(make_args)
        .current_dir(dir)
        .env("DISTCC_HOSTS", hosts);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "make through tcpb failed:\n{}",
        output_text(&out)
    );
    let run = Command::new(dir.join("hello")).output().unwrap();
    assert!(String::from_utf8_lossy(&run.stdout).contains("hello from tcpb"));
}

#[test]
fn make_with_cc_tcpb_gcc_matches_local_build() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let (a, b) = (Distccd::start(&env, 2), Distccd::start(&env, 2));
    let hosts = format!("{} {}", a.host(2), b.host(2));
    reference_build(&env.path("ref"));
    make_through(
        &env,
        &env.path("farm"),
        &hosts,
        &[&format!("CC={TCPB} gcc")],
        None,
    );
    assert_same_objects(&env.path("ref"), &env.path("farm"));
    let n = fixture_sources().len();
    assert_eq!(
        farm_compiles(&[&a, &b], n),
        n,
        "every compile ran on the farm"
    );
    eprintln!(
        "distribution: {} on A, {} on B",
        a.compiles_ok(0),
        b.compiles_ok(0)
    );
    let s = env.status(&hosts);
    assert_eq!(s["queued"], 0);
    assert!(
        s["broker"]["pid"].is_u64() && s["broker"]["uptime_s"].is_u64(),
        "{s:#}"
    );
    for h in s["hosts"].as_array().unwrap() {
        for key in ["slots", "busy", "jobs", "failures"] {
            assert!(h[key].is_u64(), "{key} in {h}");
        }
        assert!(h["speed"].is_f64() && h["name"].is_string(), "{h}");
        assert!(["up", "down", "draining", "disabled"].contains(&h["state"].as_str().unwrap()));
    }
    assert_eq!(s["hosts"][0]["name"], a.name(), "name is addr:port");
    let jobs: u64 = s["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] != "localhost")
        .map(|h| h["jobs"].as_u64().unwrap())
        .sum();
    assert_eq!(jobs as usize, n, "status counts the farm's jobs: {s:#}");
    assert_eq!(env.brokers_started(), 1);
}

#[test]
fn make_through_masquerade_link_matches_local_build() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 4);
    let masq = env.path("masq");
    std::fs::create_dir_all(&masq).unwrap();
    std::os::unix::fs::symlink(TCPB, masq.join("gcc")).unwrap();
    let path = std::env::join_paths(
        std::iter::once(masq.clone())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    reference_build(&env.path("ref"));
    make_through(
        &env,
        &env.path("farm"),
        &d.host(4),
        &["CC=gcc"],
        Some(&path),
    );
    assert_same_objects(&env.path("ref"), &env.path("farm"));
    assert_eq!(
        d.compiles_ok(fixture_sources().len()),
        fixture_sources().len()
    );
}

#[test]
fn make_with_absolute_compiler_path_matches_local_build() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 4);
    let gcc = which::which("gcc").unwrap();
    reference_build(&env.path("ref"));
    make_through(
        &env,
        &env.path("farm"),
        &d.host(4),
        &[&format!("CC={TCPB} {}", gcc.display())],
        None,
    );
    assert_same_objects(&env.path("ref"), &env.path("farm"));
    assert_eq!(
        d.compiles_ok(fixture_sources().len()),
        fixture_sources().len()
    );
    assert!(
        d.log().contains(&format!("{} ", gcc.display())),
        "distccd ran the compiler as given"
    );
}

#[test]
fn no_farm_builds_on_local_slots() {
    let env = TestEnv::new();
    reference_build(&env.path("ref"));
    make_through(
        &env,
        &env.path("local"),
        "",
        &[&format!("CC={TCPB} gcc")],
        None,
    );
    assert_same_objects(&env.path("ref"), &env.path("local"));
    let s = env.status("");
    let hosts = s["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{s:#}");
    assert_eq!(hosts[0]["name"], "localhost");
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(hosts[0]["slots"], cpus);
    assert_eq!(
        hosts[0]["jobs"].as_u64().unwrap() as usize,
        fixture_sources().len() + 1
    );
}

#[test]
fn compile_errors_pass_through_unchanged() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    std::fs::write(
        env.path("work/bad.c"),
        "int f(void) { return undeclared_thing; }\n",
    )
    .unwrap();
    let out = env
        .tcpb()
        .args(["gcc", "-c", "bad.c", "-o", "bad.o"])
        .env("DISTCC_HOSTS", d.host(2))
        .output()
        .unwrap();
    let direct = Command::new("gcc")
        .args(["-c", "bad.c", "-o", "bad2.o"])
        .current_dir(env.path("work"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        direct.status.code(),
        "{}",
        output_text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("undeclared_thing"),
        "compiler diagnostics reach the user: {err}"
    );
    assert!(
        d.log().contains("COMPILE_ERROR") || d.log().contains("bad.c"),
        "it ran on the farm"
    );
    let h = host_of(&env.status(&d.host(2)), &d.name()).unwrap();
    assert_eq!(
        h["failures"], 0,
        "a compiler error is not a host failure: {h}"
    );
    assert_eq!(h["state"], "up");
}

/// A compile whose preprocessed source and object are megabytes: the
/// relay moves those payloads through a pipe unseen; the object and the
/// remote compiler's warnings must still arrive intact.
#[test]
fn large_source_and_object_arrive_intact() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 1);
    let mut src = String::from(
        "int warn(int x) { int unused_here; return x; }\nconst unsigned table[] = {\n",
    );
    let mut x = 12345u32;
    for i in 0..300_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        src.push_str(&format!("{x},{}", if i % 16 == 15 { "\n" } else { " " }));
    }
    src.push_str("};\n");
    write_c(&env, "big.c", &src);
    let out = env
        .tcpb()
        .args(["gcc", "-O2", "-Wall", "-c", "big.c", "-o", "big.o"])
        .env("DISTCC_HOSTS", d.host(1))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unused_here"),
        "the remote warning reached the user: {}",
        output_text(&out)
    );
    let object = std::fs::read(env.path("work/big.o")).unwrap();
    assert!(
        object.len() > 1 << 20,
        "a megabyte object: {}",
        object.len()
    );
    assert_same_object(&env, "big.o", "big.c");
    assert_eq!(d.compiles_ok(1), 1, "compiled on the farm");
}

//! Pump mode (`,cpp` hosts under `distcc-pump make`) through tcpb behaves
//! exactly as plain distcc under pump on the same machine: the same
//! objects, the same compiles sent to the farm, the same fallback where the
//! include server fails (Debian 12's packaged include server dies under
//! Python 3.11, distcc issue #454, so both preprocess locally there).

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

/// `distcc-pump make -j4 CC=...` of the fixture in `dir` with `hosts`.
fn pump_make(env: &TestEnv, dir: &std::path::Path, cc: &str, hosts: &str) -> String {
    copy_fixture(dir);
    let mut cmd = env.cmd("distcc-pump");
    cmd.args(["make", "-j4", &format!("CC={cc}")])
        .current_dir(dir)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", env.path("plain-distcc-dir"));
    let out = output_within(cmd, Duration::from_secs(180));
    assert!(out.status.success(), "{cc}: {}", output_text(&out));
    let run = Command::new(dir.join("hello")).output().unwrap();
    assert!(String::from_utf8_lossy(&run.stdout).contains("hello from tcpb"));
    output_text(&out)
}

#[test]
fn pump_make_through_tcpb_matches_plain_distcc_under_pump() {
    if !have_distccd() || !have_component(&["distcc-pump"], "distcc-pump") {
        return;
    }
    let env = TestEnv::new();
    std::fs::create_dir_all(env.path("plain-distcc-dir")).unwrap();
    let d = Distccd::start(&env, 4);
    let hosts = format!("{},lzo,cpp", d.host(4));
    let n = fixture_sources().len();
    reference_build(&env.path("ref"));

    let plain = pump_make(&env, &env.path("plain"), "distcc gcc", &hosts);
    let plain_remote = d.compiles_ok(n);
    let ours = pump_make(&env, &env.path("tcpb"), &format!("{TCPB} gcc"), &hosts);
    let ours_remote = d.compiles_ok(plain_remote + n) - plain_remote;

    assert_same_objects(&env.path("ref"), &env.path("plain"));
    assert_same_objects(&env.path("ref"), &env.path("tcpb"));
    assert_eq!(
        (plain_remote, ours_remote),
        (n, n),
        "every compile ran on the farm both ways"
    );
    let fell_back = |out: &str| out.contains("preprocessing locally");
    assert_eq!(
        fell_back(&plain),
        fell_back(&ours),
        "the same include-server fallback\nplain:\n{plain}\ntcpb:\n{ours}"
    );
    eprintln!(
        "RESULT pump: {plain_remote} remote under plain distcc, {ours_remote} through tcpb; include server {}",
        if fell_back(&ours) {
            "failed (local preprocessing both ways)"
        } else {
            "worked"
        }
    );
    let s = env.status(&hosts);
    assert_eq!(s["fell_back"], 0, "{s:#}");
    assert_eq!(
        s["unparsed_streams"], 0,
        "the relay read every stream: {s:#}"
    );
}

#[test]
fn distcc_gets_the_lists_local_limits() {
    let env = TestEnv::new();
    // A distcc that records the host list it was given.
    let fake = env.path("fake-distcc");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s' \"$DISTCC_HOSTS\" > {}\n",
            env.path("got").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || l.incoming().take(8).for_each(drop));
    std::fs::write(env.path("work/k.c"), "int k;\n").unwrap();
    let hosts = format!("--localslots=3 --localslots_cpp=5 127.0.0.1:{port}/2,lzo,cpp");
    let out = env
        .tcpb()
        .args(["gcc", "-c", "k.c"])
        .env("DISTCC_HOSTS", &hosts)
        .env("TCPB_DISTCC", &fake)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let got = std::fs::read_to_string(env.path("got")).unwrap();
    assert!(
        got.starts_with("--localslots=3 --localslots_cpp=5 127.0.0.1:")
            && got.ends_with("/1,lzo,cpp"),
        "{got}"
    );
}

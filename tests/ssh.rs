//! ssh hosts (`[USER]@HOST[/LIMIT][:COMMAND]`) against a real sshd on
//! 127.0.0.1: compiles go through ssh as distcc sends them, on one master
//! connection per host, in the compile's own ssh environment; a host whose
//! ssh fails goes down and the build still finishes with the same objects.

mod common;
use common::*;
use std::time::Duration;

/// `make -j4` of the fixture in `dir` through tcpb with `hosts`, ssh being
/// `ssh` and `mark` in `SSH_TCPB_MARK`.
fn build(env: &TestEnv, dir: &str, hosts: &str, ssh: &std::path::Path, mark: &str) -> String {
    let dir = env.path(dir);
    copy_fixture(&dir);
    let mut cmd = make_through_tcpb(env, &dir, hosts);
    cmd.arg("-j4")
        .env("DISTCC_SSH", ssh)
        .env("SSH_TCPB_MARK", mark);
    let out = output_within(cmd, Duration::from_secs(180));
    assert!(out.status.success(), "{}", output_text(&out));
    output_text(&out)
}

/// A `DISTCC_SSH` that records `$SSH_TCPB_MARK`, then runs `real`.
fn marking_ssh(env: &TestEnv, real: &std::path::Path) -> std::path::PathBuf {
    let path = env.path("marking-ssh");
    let marks = env.path("marks");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$SSH_TCPB_MARK\" >> {}\nexec {} \"$@\"\n",
            marks.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[test]
fn build_through_an_ssh_host_matches_a_local_build() {
    if !have_distccd() || !have_sshd() {
        return;
    }
    let env = TestEnv::new();
    let sshd = Sshd::start(&env);
    let host = format!("{}@127.0.0.1", user_name());
    let hosts = format!("{host}/3:{}", sshd.distccd.display());
    let name = format!("{host}:{}", sshd.distccd.display());
    let ssh = marking_ssh(&env, &sshd.ssh);
    // The broker starts from a compile with another ssh environment and
    // no ssh host: ssh must see the environment of the compile it serves.
    write_c(&env, "w.c", "int w;\n");
    let st = env
        .tcpb()
        .args(["gcc", "-c", "w.c", "-o", "w.o"])
        .env("SSH_TCPB_MARK", "broker-start")
        .status()
        .unwrap();
    assert!(st.success());

    reference_build(&env.path("ref"));
    let n = fixture_sources().len();
    let out = build(&env, "b1", &hosts, &ssh, "build-one");
    assert_same_objects(&env.path("ref"), &env.path("b1"));
    assert!(!out.contains("distcc["), "distcc said nothing: {out}");
    let remote = sshd.compiles_ok();
    assert_eq!(remote, n, "every compile ran over ssh\n{}", env.log());

    let s = env.status(&hosts);
    let h = host_of(&s, &name).unwrap_or_else(|| panic!("{name} in status: {s:#}"));
    assert_eq!(h["state"], "up", "{h:#}");
    assert_eq!(h["slots"], 3, "{h:#}");
    assert_eq!(h["jobs"], n, "{h:#}");
    assert_eq!(s["fell_back"], 0, "{s:#}");
    assert_eq!(
        s["unparsed_streams"], 0,
        "the relay read every stream: {s:#}"
    );

    // A second build reuses the master connection: no new login.
    let logins = sshd.logins();
    build(&env, "b2", &hosts, &ssh, "build-two");
    assert_same_objects(&env.path("ref"), &env.path("b2"));
    assert_eq!(sshd.compiles_ok(), 2 * n);
    assert_eq!(sshd.logins(), logins, "jobs ride on the master");
    assert_eq!(logins, 1, "one master connection for {} jobs", 2 * n);

    let marks = std::fs::read_to_string(env.path("marks")).unwrap();
    assert!(!marks.contains("broker-start"), "{marks}");
    assert!(
        marks.contains("build-one") && marks.contains("build-two"),
        "{marks}"
    );
    eprintln!(
        "RESULT ssh: {} jobs over ssh, {} login(s), {} ssh runs",
        2 * n,
        logins,
        marks.lines().count()
    );
}

#[test]
fn an_ssh_host_whose_ssh_fails_goes_down_and_the_build_finishes() {
    if !have_distccd() || !have_sshd() {
        return;
    }
    let env = TestEnv::new();
    let sshd = Sshd::start(&env);
    let d = Distccd::start(&env, 4);
    let host = format!("@127.0.0.1:{}", sshd.distccd.display());
    // The ssh host comes first: distcc would try it first.
    let hosts = format!("@127.0.0.1/4:{} {}", sshd.distccd.display(), d.host(2));
    let bad = sshd.bad_key_ssh();
    reference_build(&env.path("ref"));
    let n = fixture_sources().len();

    let out = build(&env, "b", &hosts, &bad, "x");
    assert_same_objects(&env.path("ref"), &env.path("b"));
    assert!(!out.contains("distcc["), "distcc met no dead host: {out}");
    assert_eq!(sshd.compiles_ok(), 0);
    assert_eq!(farm_compiles(&[&d], n), n, "all on the TCP host");

    let s = env.status(&hosts);
    let h = host_of(&s, &host).unwrap_or_else(|| panic!("{host}: {s:#}"));
    assert_ne!(h["state"], "up", "{h:#}");
    let log = env.log();
    assert!(
        log.contains("Permission denied"),
        "ssh's reason is logged:\n{log}"
    );
    assert_eq!(s["fell_back"], 0, "{s:#}");
}

#[test]
fn a_list_of_only_a_failing_ssh_host_compiles_here_with_one_line() {
    if !have_distccd() || !have_sshd() {
        return;
    }
    let env = TestEnv::new();
    let sshd = Sshd::start(&env);
    let hosts = format!("@127.0.0.1/2:{}", sshd.distccd.display());
    write_c(&env, "z.c", "int z(int a) { return a * 7; }\n");
    let out = env
        .tcpb()
        .args(["gcc", "-O2", "-c", "z.c", "-o", "z.o"])
        .env("DISTCC_HOSTS", &hosts)
        .env("DISTCC_SSH", sshd.bad_key_ssh())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same_object(&env, "z.o", "z.c");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line from tcpb: {err}");
    assert!(err.contains("tcpb") && err.contains("@127.0.0.1"), "{err}");
    assert!(err.contains("Permission denied"), "ssh's reason: {err}");
}

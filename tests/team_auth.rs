//! Team mode against an etcd that wants a user: the broker reads the
//! password from `[team] password_file` and its compiles reach the farm
//! through claims made as that user; a password file others can read is
//! refused where it enters, naming the file, and the compile runs here.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// Turns on authentication in `etcd`: `root`, and `tcpb` with password
/// `pw`, who may read and write `/tcpb/` only.
fn enable_auth(etcd: &Etcd) {
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let perm = format!(
        r#"{{"name":"farm","perm":{{"permType":"READWRITE","key":"{}","range_end":"{}"}}}}"#,
        b64("/tcpb/"),
        b64("/tcpb0")
    );
    for (path, body) in [
        (
            "/v3/auth/user/add",
            r#"{"name":"root","password":"rootpw"}"#,
        ),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/user/add", r#"{"name":"tcpb","password":"pw"}"#),
        ("/v3/auth/role/add", r#"{"name":"farm"}"#),
        ("/v3/auth/role/grant", &perm),
        ("/v3/auth/user/grant", r#"{"user":"tcpb","role":"farm"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        let answer = etcd.post(path, body);
        assert!(!answer.contains("\"error\""), "{path}: {answer}");
    }
}

#[test]
fn a_broker_claims_as_its_etcd_user_and_a_readable_password_file_is_refused() {
    if !have_distccd() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    enable_auth(&etcd);
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = format!("127.0.0.1:{}/2", d.port);
    let file = env.path("etcd-password");
    std::fs::write(&file, "pw\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let auth = format!("user = \"tcpb\"\npassword_file = \"{}\"\n", file.display());
    env.write_config(&team_config(&etcd, &auth));
    write_c(&env, "a.c", "int a(void) { return 1; }\n");
    let compile = || {
        let out = env
            .tcpb()
            .args(["gcc", "-O2", "-c", "a.c", "-o", "a.o"])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert_same_object(&env, "a.o", "a.c");
        stderr_of(&out)
    };
    let err = compile();
    assert!(
        err.contains("etcd-password") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    compile();
    // The broker joined as tcpb: connected, and its list's host defined
    // for the team (a write only tcpb may make).
    let s = env.wait_status(&hosts, Duration::from_secs(10), |s| {
        s["team"]["state"] == "connected" && s["team"]["hosts"][0]["slots"] == 2
    });
    assert_eq!(s["team"]["etcd_failures"], 0, "{s:#}");
    let farm = s["hosts"].as_array().cloned().unwrap_or_default();
    let ran = farm.iter().filter_map(|h| h["jobs"].as_u64()).sum::<u64>();
    assert!(ran >= 1, "the compile went to the farm: {s:#}");
}

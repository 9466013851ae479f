//! Team mode's test harness: users with their own directories (one of
//! them under another uid when the tests run as root), builds run as
//! them, and their brokers' view of the team.

use super::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// A `[team]` config for farm "test" at `etcd`.
pub fn team_config(etcd: &Etcd, extra: &str) -> String {
    format!(
        "[broker]\nidle_exit_s = 120\n[team]\nendpoints = [\"{}\"]\nfarm = \"test\"\n\
         lease_ttl_s = 3\n{extra}",
        etcd.url
    )
}

/// `program` in `env`, as `user` (None: this test's user).
fn as_user(env: &TestEnv, user: Option<&str>, program: &str) -> Command {
    match user {
        Some(u) => {
            let mut c = env.cmd("runuser");
            c.args(["-u", u, "--", program]);
            c
        }
        None => env.cmd(program),
    }
}

/// `make -j8` through tcpb in `dir`, as `user` (None: this test's user).
pub fn build_as(env: &TestEnv, dir: &Path, hosts: &str, user: Option<&str>) -> Command {
    let mut cmd = as_user(env, user, "make");
    cmd.args(["-j8", &format!("CC={TCPB} gcc")])
        .current_dir(dir)
        .env("DISTCC_HOSTS", hosts);
    cmd
}

/// Hands `env`'s directories to `nobody`.
pub fn give_to_nobody(env: &TestEnv) {
    let ok = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(env.dir.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown to nobody");
}

/// A user's world: its directories, its copy of the project, and whom it
/// runs as.
pub struct User {
    pub env: TestEnv,
    pub project: std::path::PathBuf,
    pub user: Option<&'static str>,
}

/// `n` users sharing `etcd`'s team, each with `files` heavy files; with
/// `other_uid`, the last one runs as `nobody` when this test can switch
/// users.
pub fn users(etcd: Option<&Etcd>, n: usize, files: usize, other_uid: bool) -> Vec<User> {
    let nobody = other_uid && can_switch_user();
    (0..n)
        .map(|i| {
            let env = TestEnv::new();
            if let Some(e) = etcd {
                env.write_config(&team_config(e, ""));
            }
            let project = env.path("work/p");
            heavy_project(&project, files);
            let user = (nobody && i == n - 1).then_some("nobody");
            if user.is_some() {
                give_to_nobody(&env);
            }
            User { env, project, user }
        })
        .collect()
}

/// Builds every user's project at once; each must succeed.
pub fn build_all(users: &[User], hosts: &str) -> Vec<Output> {
    let handles: Vec<_> = users
        .iter()
        .map(|u| {
            let cmd = build_as(&u.env, &u.project, hosts, u.user);
            std::thread::spawn(move || output_within(cmd, Duration::from_secs(240)))
        })
        .collect();
    let outs: Vec<Output> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for o in &outs {
        assert!(o.status.success(), "build failed:\n{}", output_text(o));
    }
    outs
}

/// Stops a user's broker as that user.
pub fn stop(u: &User) {
    let mut cmd = as_user(&u.env, u.user, TCPB);
    cmd.arg("stop");
    let _ = output_within(cmd, Duration::from_secs(30));
}

/// `tcpb status --json` as `u`'s user.
pub fn status_of(u: &User, hosts: &str) -> serde_json::Value {
    let mut cmd = as_user(&u.env, u.user, TCPB);
    cmd.args(["status", "--json"]).env("DISTCC_HOSTS", hosts);
    let out = output_within(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The broker id of `u` in the team, from its status.
pub fn team_id(u: &User, hosts: &str) -> String {
    u.env.status(hosts)["team"]["me"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Slots of `host` that broker `id` holds, as `u`'s status shows them.
pub fn held(u: &User, hosts: &str, host: &str, id: &str) -> u64 {
    let s = u.env.status(hosts);
    let team_hosts = s["team"]["hosts"].as_array().cloned().unwrap_or_default();
    let Some(h) = team_hosts.iter().find(|h| h["name"] == host) else {
        return 0;
    };
    let holders = h["holders"].as_array().cloned().unwrap_or_default();
    holders
        .iter()
        .find(|x| x[0] == id)
        .and_then(|x| x[1].as_u64())
        .unwrap_or(0)
}

/// Starts `u`'s build in its own process group (to be killed as a whole).
pub fn start_build(u: &User, hosts: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    build_as(&u.env, &u.project, hosts, u.user)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// `u`'s team id once its broker is up.
pub fn wait_for_id(u: &User, hosts: &str) -> String {
    wait_for(Duration::from_secs(20), "a broker", || {
        u.env
            .tcpb()
            .arg("status")
            .arg("--json")
            .output()
            .unwrap()
            .stdout
            .starts_with(b"{")
            && u.env.status(hosts)["broker"].is_object()
    });
    team_id(u, hosts)
}

/// `u`'s team state.
pub fn team_state(u: &User, hosts: &str) -> String {
    u.env.status(hosts)["team"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Builds both users' projects while `meanwhile` does something to etcd;
/// both builds finish within 120 s with objects identical to gcc's.
pub fn builds_survive(us: &[User], hosts: &str, meanwhile: impl FnOnce()) {
    let handles: Vec<_> = us
        .iter()
        .map(|u| {
            let cmd = build_as(&u.env, &u.project, hosts, u.user);
            std::thread::spawn(move || output_within(cmd, Duration::from_secs(120)))
        })
        .collect();
    meanwhile();
    for h in handles {
        let out = h.join().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let reference = us[0].env.path("reference");
    reference_objects(&us[0].project, &reference);
    let n = std::fs::read_dir(&us[0].project)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "c")
        })
        .count();
    let objs: Vec<String> = (0..n).map(|f| format!("h{f}.o")).collect();
    for u in us {
        assert_objects_match(&objs, &reference, &u.project);
    }
}

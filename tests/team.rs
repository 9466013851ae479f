//! Team mode against a real etcd and real distccd: brokers of several
//! users (one under another uid when the test runs as root) share a farm
//! whose hosts record every compile they run, so going over a host's
//! slots would show at the host.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A `[team]` config for farm "test" at `etcd`.
fn team_config(etcd: &Etcd, extra: &str) -> String {
    format!(
        "[broker]\nidle_exit_s = 120\n[team]\nendpoints = [\"{}\"]\nfarm = \"test\"\n\
         lease_ttl_s = 3\n{extra}",
        etcd.url
    )
}

/// `make -j8` through tcpb in `dir`, as `user` (None: this test's user).
fn build_as(env: &TestEnv, dir: &Path, hosts: &str, user: Option<&str>) -> Command {
    let cc = format!("CC={TCPB} gcc");
    let mut cmd = match user {
        Some(u) => {
            let mut c = env.cmd("runuser");
            c.args(["-u", u, "--", "make", "-j8", &cc]);
            c
        }
        None => {
            let mut c = env.cmd("make");
            c.args(["-j8", &cc]);
            c
        }
    };
    cmd.current_dir(dir).env("DISTCC_HOSTS", hosts);
    cmd
}

/// Hands `env`'s directories to `nobody`.
fn give_to_nobody(env: &TestEnv) {
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
struct User {
    env: TestEnv,
    project: std::path::PathBuf,
    user: Option<&'static str>,
}

/// `n` users sharing `etcd`'s team, each with `files` heavy files; with
/// `other_uid`, the last one runs as `nobody` when this test can switch
/// users.
fn users(etcd: Option<&Etcd>, n: usize, files: usize, other_uid: bool) -> Vec<User> {
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
fn build_all(users: &[User], hosts: &str) -> Vec<Output> {
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
fn stop(u: &User) {
    let mut cmd = match u.user {
        Some(name) => {
            let mut c = u.env.cmd("runuser");
            c.args(["-u", name, "--", TCPB, "stop"]);
            c
        }
        None => {
            let mut c = u.env.tcpb();
            c.arg("stop");
            c
        }
    };
    let _ = output_within(cmd_quiet(&mut cmd), Duration::from_secs(30));
}

fn cmd_quiet(cmd: &mut Command) -> Command {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

#[test]
fn three_brokers_never_run_more_than_a_hosts_slots_on_it() {
    if !have_distccd() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let farm_env = TestEnv::new();
    let (a, b) = (
        Distccd::start_recording(&farm_env, 8, 0.3),
        Distccd::start_recording(&farm_env, 8, 0.3),
    );
    let hosts = format!("{} {}", a.host(2), b.host(3));
    let us = users(Some(&etcd), 3, 10, true);
    let reference = farm_env.path("reference");
    reference_objects(&us[0].project, &reference);
    build_all(&us, &hosts);
    let objs: Vec<String> = (0..10).map(|f| format!("h{f}.o")).collect();
    for u in &us {
        assert_objects_match(&objs, &reference, &u.project);
    }
    let (peak_a, runs_a) = a.peak();
    let (peak_b, runs_b) = b.peak();
    eprintln!("host a: peak {peak_a}/2, {runs_a} runs; host b: peak {peak_b}/3, {runs_b} runs");
    assert!(peak_a <= 2 && peak_b <= 3, "a host ran more than its slots");
    assert!(
        runs_a + runs_b >= 20,
        "most of the 30 compiles ran on the farm"
    );
    let s = us[0].env.status(&hosts);
    let team = &s["team"];
    assert_eq!(team["state"], "connected", "{team:#}");
    assert_eq!(team["brokers"].as_array().unwrap().len(), 3, "{team:#}");
    assert!(team["etcd_writes"].as_u64().unwrap() > 0);
    for u in &us {
        stop(u);
    }
}

#[test]
fn without_team_mode_the_same_builds_go_over_the_slots() {
    // The control for the test above: the recording does see
    // oversubscription when brokers do not share their accounting.
    if !have_distccd() {
        return;
    }
    let farm_env = TestEnv::new();
    let (a, b) = (
        Distccd::start_recording(&farm_env, 8, 0.3),
        Distccd::start_recording(&farm_env, 8, 0.3),
    );
    let hosts = format!("{} {}", a.host(2), b.host(3));
    let us = users(None, 3, 10, true);
    build_all(&us, &hosts);
    let (peak_a, _) = a.peak();
    let (peak_b, _) = b.peak();
    eprintln!("alone: host a peak {peak_a}/2, host b peak {peak_b}/3");
    assert!(peak_a > 2 || peak_b > 3, "alone, brokers oversubscribe");
    for u in &us {
        stop(u);
    }
}

/// `tcpb status --json` as `u`'s user.
fn status_of(u: &User, hosts: &str) -> serde_json::Value {
    let mut cmd = match u.user {
        Some(name) => {
            let mut c = u.env.cmd("runuser");
            c.args(["-u", name, "--", TCPB]);
            c
        }
        None => u.env.tcpb(),
    };
    cmd.args(["status", "--json"]).env("DISTCC_HOSTS", hosts);
    let out = output_within(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The broker id of `u` in the team, from its status.
fn team_id(u: &User, hosts: &str) -> String {
    u.env.status(hosts)["team"]["me"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Slots of `host` that broker `id` holds, as `u`'s status shows them.
fn held(u: &User, hosts: &str, host: &str, id: &str) -> u64 {
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
fn start_build(u: &User, hosts: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    build_as(&u.env, &u.project, hosts, u.user)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn a_dead_workstations_slots_are_back_within_the_ttl() {
    if !have_distccd() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let farm_env = TestEnv::new();
    let d = Distccd::start_recording(&farm_env, 8, 1.0);
    let hosts = d.host(2);
    let us = users(Some(&etcd), 2, 10, false);
    let mut a_build = start_build(&us[0], &hosts);
    let a_id = wait_for_id(&us[0], &hosts);
    wait_for(Duration::from_secs(20), "a to hold both slots", || {
        held(&us[0], &hosts, &d.name(), &a_id) == 2
    });
    let b_build = {
        let cmd = build_as(&us[1].env, &us[1].project, &hosts, None);
        std::thread::spawn(move || output_within(cmd, Duration::from_secs(240)))
    };
    let b_id = wait_for_id(&us[1], &hosts);
    // a's workstation dies: its broker and its build, at once.
    let a_pid = us[0].env.status(&hosts)["broker"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: killing the broker and the build this test started.
    unsafe {
        libc::kill(a_pid, libc::SIGKILL);
        libc::kill(-(a_build.id() as i32), libc::SIGKILL);
    }
    let _ = a_build.wait();
    let killed = Instant::now();
    wait_for(Duration::from_secs(20), "b to hold both slots", || {
        held(&us[1], &hosts, &d.name(), &b_id) == 2
    });
    let took = killed.elapsed();
    eprintln!("b held both slots {took:?} after a's broker died (TTL 3 s)");
    assert!(
        took <= Duration::from_secs(4) + Duration::from_millis(500),
        "{took:?}"
    );
    let out = b_build.join().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let reference = farm_env.path("reference");
    reference_objects(&us[1].project, &reference);
    let objs: Vec<String> = (0..10).map(|f| format!("h{f}.o")).collect();
    assert_objects_match(&objs, &reference, &us[1].project);
    stop(&us[1]);
}

/// `u`'s team id once its broker is up.
fn wait_for_id(u: &User, hosts: &str) -> String {
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
fn team_state(u: &User, hosts: &str) -> String {
    u.env.status(hosts)["team"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Builds both users' projects while `meanwhile` does something to etcd;
/// both builds finish within 120 s with objects identical to gcc's.
fn builds_survive(us: &[User], hosts: &str, meanwhile: impl FnOnce()) {
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

#[test]
fn etcd_stopped_killed_and_restarted_mid_build() {
    if !have_distccd() {
        return;
    }
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let farm_env = TestEnv::new();
    let d = Distccd::start_recording(&farm_env, 8, 0.5);
    let hosts = d.host(3);
    let us = users(Some(&etcd), 2, 10, false);
    // Stopped for two TTLs mid-build: unreachable, then back.
    builds_survive(&us, &hosts, || {
        wait_for(Duration::from_secs(20), "a compile on the farm", || {
            d.peak().1 > 0
        });
        etcd.stop();
        wait_for(Duration::from_secs(10), "unreachable", || {
            team_state(&us[0], &hosts) == "unreachable"
        });
        std::thread::sleep(Duration::from_secs(6));
        etcd.resume();
    });
    for u in &us {
        wait_for(Duration::from_secs(15), "connected again", || {
            team_state(u, &hosts) == "connected"
        });
    }
    assert!(
        us[0].env.log().contains("etcd unreachable"),
        "{}",
        us[0].env.log()
    );
    // Killed and restarted with its data, then with none.
    for keep_data in [true, false] {
        for u in &us {
            std::fs::remove_dir_all(&u.project).unwrap();
            heavy_project(&u.project, 6);
        }
        builds_survive(&us, &hosts, || {
            wait_for(Duration::from_secs(20), "a compile", || d.peak().1 > 0);
            etcd.kill();
            std::thread::sleep(Duration::from_secs(1));
            etcd.restart(keep_data);
        });
        for u in &us {
            wait_for(Duration::from_secs(15), "connected after a restart", || {
                team_state(u, &hosts) == "connected"
            });
        }
        // Consistent: each host's claims in etcd are what the brokers hold.
        let s = us[0].env.status(&hosts);
        let team_hosts = s["team"]["hosts"].as_array().unwrap().clone();
        assert_eq!(team_hosts.len(), 1, "the host is defined again: {s:#}");
        assert!(team_hosts[0]["slots"] == 3);
    }
    for u in &us {
        stop(u);
    }
}

#[test]
fn without_etcd_or_with_bad_team_values_builds_still_compile() {
    let env = TestEnv::new();
    let dead = DeadPort::new();
    let url = format!("http://127.0.0.1:{}", dead.port);
    env.write_config(&format!(
        "[team]\nendpoints = [\"{url}\"]\nfarm = \"lab\"\nlease_ttl_s = 1\n"
    ));
    write_c(&env, "a.c", "int a(void) { return 1; }\n");
    let out = env
        .tcpb()
        .args(["gcc", "-O2", "-c", "a.c", "-o", "a.o"])
        .env("DISTCC_HOSTS", "127.0.0.1:1/2")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("config.toml") && err.contains("lease_ttl_s = 1"),
        "{err}"
    );
    assert_same_object(&env, "a.o", "a.c");
    // etcd unreachable at start: compiles run here at once, status says so.
    env.write_config(&format!(
        "[team]\nendpoints = [\"{url}\"]\nfarm = \"lab\"\n"
    ));
    let start = Instant::now();
    let out = env
        .tcpb()
        .args(["gcc", "-O2", "-c", "a.c", "-o", "a.o"])
        .env("DISTCC_HOSTS", "127.0.0.1:1/2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_same_object(&env, "a.o", "a.c");
    let s = env.status("127.0.0.1:1/2");
    assert_eq!(s["team"]["state"], "unreachable", "{s:#}");
    let why = s["team"]["last_error"].as_str().unwrap_or("");
    assert!(why.contains(&format!("127.0.0.1:{}", dead.port)), "{why}");
    assert!(env.log().contains("etcd unreachable"), "{}", env.log());
}

#[test]
fn a_team_wide_drain_reaches_every_broker_within_a_second() {
    if !have_distccd() {
        return;
    }
    let Some(etcd) = Etcd::start() else { return };
    let farm_env = TestEnv::new();
    let (a, b) = (
        Distccd::start_recording(&farm_env, 8, 0.4),
        Distccd::start_recording(&farm_env, 8, 0.4),
    );
    let hosts = format!("{} {}", a.host(2), b.host(2));
    let us = users(Some(&etcd), 2, 12, true);
    let mut drained_at = None;
    builds_survive(&us, &hosts, || {
        wait_for(Duration::from_secs(20), "compiles on a", || a.peak().1 >= 2);
        let out = us[0]
            .env
            .tcpb()
            .args(["host", "drain", &a.name(), "--team"])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert!(stderr_of(&out).is_empty(), "{}", output_text(&out));
        drained_at = Some(std::time::SystemTime::now());
    });
    let since = drained_at
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let limit = (since + Duration::from_secs(1)).as_nanos();
    let late: Vec<_> = a.starts().into_iter().filter(|t| *t > limit).collect();
    eprintln!(
        "a ran {} compiles, {} after the drain + 1 s",
        a.peak().1,
        late.len()
    );
    assert!(
        late.is_empty(),
        "{} compiles reached a drained host",
        late.len()
    );
    assert!(b.peak().1 > 0);
    // The other user's broker shows it drained; enable brings it back.
    let state = |u: &User| host_of(&status_of(u, &hosts), &a.name()).unwrap()["state"].clone();
    assert_eq!(state(&us[1]), "draining", "{}", state(&us[1]));
    let out = us[0]
        .env
        .tcpb()
        .args(["host", "enable", &a.name(), "--team"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    wait_for(Duration::from_secs(2), "enabled everywhere", || {
        state(&us[1]) != "draining"
    });
    // Without [team], --team is refused with the reason.
    let alone = TestEnv::new();
    let out = alone
        .tcpb()
        .args(["host", "drain", "h", "--team"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("[team]"), "{}", stderr_of(&out));
    for u in &us {
        stop(u);
    }
}

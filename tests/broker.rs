//! The broker's life: stop, idle exit, SIGTERM, stale sockets, a live
//! socket never taken over, bad frames, and a broker of another version.

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

fn compile_ok(env: &TestEnv, name: &str) {
    std::fs::write(
        env.path("work").join(format!("{name}.c")),
        format!("int {name}(void) {{ return 1; }}\n"),
    )
    .unwrap();
    let out = env
        .tcpb()
        .args([
            "gcc",
            "-c",
            &format!("{name}.c"),
            "-o",
            &format!("{name}.o"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

fn broker_pid(env: &TestEnv) -> i32 {
    env.status("")["broker"]["pid"]
        .as_i64()
        .expect("a broker runs") as i32
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); look at its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn stop_ends_the_broker_and_removes_its_socket() {
    let env = TestEnv::new();
    compile_ok(&env, "s1");
    let pid = broker_pid(&env);
    let out = env.tcpb().arg("stop").output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!env.runtime_dir().join("broker.sock").exists());
    // Back from `tcpb stop`, the broker is gone and its state saved: the
    // state directory can be removed without the broker writing it anew.
    assert!(!alive(pid), "tcpb stop returned before the broker exited");
    assert!(env.path("state/state.json").exists());
    let out = env.tcpb().arg("stop").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no broker running"));
}

#[test]
fn idle_broker_exits_by_itself() {
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 1\n");
    compile_ok(&env, "i1");
    let pid = broker_pid(&env);
    wait_for(Duration::from_secs(10), "the idle broker to exit", || {
        !alive(pid)
    });
    assert!(!env.runtime_dir().join("broker.sock").exists());
    compile_ok(&env, "i2");
    assert_eq!(
        env.brokers_started(),
        2,
        "the next compile started a new broker"
    );
}

#[test]
fn sigterm_stops_the_broker_cleanly() {
    let env = TestEnv::new();
    compile_ok(&env, "t1");
    let pid = broker_pid(&env);
    // SAFETY: signalling the test's own broker.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_for(Duration::from_secs(10), "the broker to exit", || {
        !alive(pid)
    });
    assert!(!env.runtime_dir().join("broker.sock").exists());
    assert!(env.log().contains("broker stopped"), "{}", env.log());
}

#[test]
fn stale_socket_is_replaced() {
    let env = TestEnv::new();
    let dir = env.runtime_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let sock = dir.join("broker.sock");
    drop(UnixListener::bind(&sock).unwrap()); // leaves the file, nobody listening
    assert!(sock.exists());
    compile_ok(&env, "st");
    assert_eq!(env.brokers_started(), 1);
}

#[test]
fn a_live_socket_is_never_taken_over() {
    let env = TestEnv::new();
    compile_ok(&env, "l1");
    let pid = broker_pid(&env);
    let out = env.tcpb().arg("broker").output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already listening"),
        "{}",
        output_text(&out)
    );
    assert_eq!(broker_pid(&env), pid, "the first broker still answers");
}

#[test]
fn malformed_frames_do_not_hurt_the_broker() {
    let env = TestEnv::new();
    compile_ok(&env, "f1");
    let sock = env.runtime_dir().join("broker.sock");
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff, 0xff],                   // oversize length
        vec![0, 0, 0, 5, b'{', b'x'],                   // truncated
        [&[0u8, 0, 0, 4][..], b"nope"].concat(),        // not JSON
        [&[0u8, 0, 0, 8][..], b"{\"v\":1}\0"].concat(), // not a message
        [&[0u8, 0, 0, 17][..], b"{\"v\":1,\"req\":42}"].concat(),
        vec![], // connects, says nothing, leaves
    ];
    for _ in 0..20 {
        for g in &garbage {
            let mut s = UnixStream::connect(&sock).unwrap();
            let _ = s.write_all(g);
        }
    }
    compile_ok(&env, "f2");
    let s = env.wait_status("", Duration::from_secs(5), |s| s["running"] == 0);
    assert_eq!(s["queued"], 0);
    assert_eq!(s["hosts"][0]["busy"], 0, "no slot leaked");
}

/// A "broker" of protocol 999 on `env`'s socket, whose one answer gives
/// the pid of a shell standing for its process (or, `with_pid` false, no
/// pid). The shell, on SIGTERM, takes 0.3 s to "save its state", notes in
/// `work/early` whether a new broker had started by then, leaves
/// `work/termed`, and exits. The thread ends after the answer.
fn fake_broker_of_another_version(
    env: &TestEnv,
    with_pid: bool,
) -> (std::process::Child, std::thread::JoinHandle<()>) {
    let dir = env.runtime_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let sock = dir.join("broker.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let script = format!(
        "trap 'sleep 0.3; grep -qs \"broker started\" {log} && touch {early}; touch {termed}; exit 0' TERM; \
         n=0; while [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done",
        log = env.path("state/broker.log").display(),
        early = env.path("work/early").display(),
        termed = env.path("work/termed").display(),
    );
    let old = std::process::Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let pid = if with_pid {
        format!(",\"pid\":{}", old.id())
    } else {
        String::new()
    };
    let fake = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut len = [0u8; 4];
        conn.read_exact(&mut len).unwrap();
        let mut body = vec![0; u32::from_be_bytes(len) as usize];
        conn.read_exact(&mut body).unwrap();
        let reply = format!("{{\"v\":999{pid},\"resp\":\"Whatever\"}}");
        conn.write_all(&(reply.len() as u32).to_be_bytes()).unwrap();
        conn.write_all(reply.as_bytes()).unwrap();
        drop(listener); // the old broker goes away (its socket file stays: stale)
    });
    (old, fake)
}

/// `tcpb gcc -c v.c` in a process group of its own: a signal sent to the
/// caller's group cannot reach the test.
fn compile_alone(env: &TestEnv) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    std::fs::write(env.path("work/v.c"), "int v;\n").unwrap();
    let mut cmd = env.tcpb();
    cmd.args(["gcc", "-O2", "-c", "v.c", "-o", "v.o"])
        .process_group(0);
    output_within(cmd, Duration::from_secs(60))
}

#[test]
fn broker_of_another_protocol_version_is_restarted() {
    let env = TestEnv::new();
    let (mut old, fake) = fake_broker_of_another_version(&env, true);
    let out = compile_alone(&env);
    fake.join().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("protocol 999") && err.contains("restarting"),
        "{err}"
    );
    old.wait().unwrap();
    assert!(
        env.path("work/termed").exists(),
        "the old broker got SIGTERM"
    );
    assert!(
        !env.path("work/early").exists(),
        "the new broker started only after the old one had exited"
    );
    assert_eq!(
        env.brokers_started(),
        1,
        "a broker of this version took over"
    );
}

#[test]
fn a_broker_of_another_version_that_gives_no_pid_is_left_alone() {
    let env = TestEnv::new();
    let (mut old, fake) = fake_broker_of_another_version(&env, false);
    let out = compile_alone(&env);
    fake.join().unwrap();
    // kill(0) would have ended the whole build's process group, this
    // compile with it.
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("protocol 999")
            && err.contains("stop it by hand")
            && err.contains("compiling locally"),
        "{err}"
    );
    assert_same_object(&env, "v.o", "v.c");
    assert!(old.try_wait().unwrap().is_none(), "nothing was signalled");
    old.kill().unwrap();
    old.wait().unwrap();
    assert_eq!(env.brokers_started(), 0);
}

#[test]
fn stop_ends_a_broker_of_another_protocol_version() {
    let env = TestEnv::new();
    let (mut old, fake) = fake_broker_of_another_version(&env, true);
    let out = env.tcpb().arg("stop").output().unwrap();
    fake.join().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(
        text.contains("protocol 999")
            && text.contains("SIGTERM")
            && text.contains("broker stopped"),
        "{text}"
    );
    assert!(env.path("work/termed").exists(), "stop waited for the exit");
    old.wait().unwrap();
}

#[test]
fn a_thousand_vanishing_clients_and_a_silent_one() {
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\nclient_timeout_s = 1\n");
    compile_ok(&env, "v1");
    let sock = env.runtime_dir().join("broker.sock");
    let mut silent = UnixStream::connect(&sock).unwrap();
    for i in 0..1000 {
        let mut s = UnixStream::connect(&sock).unwrap();
        if i % 2 == 0 {
            // Half of them start a frame and vanish in the middle of it.
            let _ = s.write_all(&[0, 0, 0, 40, b'{']);
        }
    }
    // A wrong protocol version is answered with an error, not served.
    let mut old = UnixStream::connect(&sock).unwrap();
    let body = br#"{"v":999,"req":"Status"}"#;
    old.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    old.write_all(body).unwrap();
    let mut reply = Vec::new();
    old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    old.read_to_end(&mut reply).unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("protocol mismatch"));
    // The silent client is dropped after client_timeout_s.
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(silent.read(&mut buf).unwrap(), 0, "the broker closed it");
    assert!(started.elapsed() < Duration::from_secs(4));
    compile_ok(&env, "v2");
    let s = env.wait_status("", Duration::from_secs(5), |s| s["running"] == 0);
    assert_eq!(s["hosts"][0]["busy"], 0, "no slot leaked");
    assert_eq!(env.brokers_started(), 1, "the broker kept serving");
}

#[test]
fn relay_port_without_a_live_lease_is_refused() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    // Probes connect too: one at start, then none during the test.
    env.write_config("[broker]\nidle_exit_s = 120\n[health]\ninterval_ms = 600000\n");
    let d = Distccd::start(&env, 2);
    std::fs::write(env.path("work/g.c"), "int g;\n").unwrap();
    let out = env
        .tcpb()
        .args(["gcc", "-c", "g.c"])
        .env("DISTCC_HOSTS", d.host(2))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(d.compiles_ok(1), 1);
    // distcc's lock file names the relay port the compile used.
    let port: u16 = std::fs::read_dir(env.runtime_dir().join("distcc/lock"))
        .unwrap()
        .flatten()
        .find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("cpu_tcp_127.0.0.1_")?
                .split('_')
                .next()?
                .parse()
                .ok()
        })
        .expect("a relay port");
    let connections = |d: &Distccd| d.log().matches("connection from").count();
    std::thread::sleep(Duration::from_millis(500));
    let before = connections(&d);
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"DIST00000001garbage garbage garbage");
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed without an answer");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        connections(&d),
        before,
        "no connection reached the farm host"
    );
    let s = env.status(&d.host(2));
    assert_eq!(s["running"], 0);
    assert_eq!(host_of(&s, &d.name()).unwrap()["busy"], 0);
}

#[test]
fn unreadable_state_file_is_kept_aside() {
    let env = TestEnv::new();
    std::fs::write(env.path("state/state.json"), "{ this is not json").unwrap();
    compile_ok(&env, "u1");
    let aside: Vec<String> = std::fs::read_dir(env.path("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json.bad-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(env.log().contains("unreadable"), "{}", env.log());
    let kept = std::fs::read_to_string(env.path("state").join(&aside[0])).unwrap();
    assert_eq!(kept, "{ this is not json");
}

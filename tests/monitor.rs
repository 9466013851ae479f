//! What the user sees of a working broker: the status table's totals and
//! per-host times, and the live view (`tcpb top`, `tcpb status --watch`)
//! showing files as they compile and leaving the terminal clean.

mod common;
use common::*;
use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Reads `child`'s stdout on a thread; the receiver gets every chunk.
fn stream(child: &mut Child) -> mpsc::Receiver<Vec<u8>> {
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects output from `rx` until `want` appears (10 s at most).
fn until(rx: &mpsc::Receiver<Vec<u8>>, seen: &mut Vec<u8>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(seen).contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!("never saw {want:?} in:\n{}", String::from_utf8_lossy(seen)),
        }
    }
}

/// SIGINT to `child`; it must exit successfully within 5 s.
fn interrupt(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "exited with {st:?}");
            return;
        }
        assert!(Instant::now() < deadline, "did not exit on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_shows_totals_waits_and_mean_compile_times() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = d.host(2);
    for i in 0..3 {
        write_c(
            &env,
            &format!("s{i}.c"),
            &format!("int s{i}(void) {{ return {i}; }}\n"),
        );
        let out = env
            .tcpb()
            .args(["gcc", "-c", &format!("s{i}.c")])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let s = env.wait_status(&hosts, Duration::from_secs(5), |s| {
        host_of(s, &d.name()).is_some_and(|h| h["mean_job_s"].is_number())
    });
    assert_eq!(
        (s["granted"].as_u64(), s["granted_local"].as_u64()),
        (Some(3), Some(0))
    );
    assert!(s["wait_mean_s"].as_f64().unwrap() >= 0.0 && s["wait_p95_s"].is_number());
    let out = env
        .tcpb()
        .arg("status")
        .env("DISTCC_HOSTS", &hosts)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 compiles (3 remote, 0 local)"), "{text}");
    assert!(text.contains("wait    in the queue: mean"), "{text}");
    assert!(text.contains("MEAN"), "{text}");
    assert!(!text.contains('\x1b'), "no colour when piped: {text:?}");
}

#[test]
fn top_shows_the_file_compiling_on_its_host_and_exits_on_ctrl_c() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    let hosts = d.host(2);
    write_c(&env, "z.c", "int z(void) { return 3; }\n");
    let held = gated_compile(&env, &hosts).spawn().unwrap();
    let mut top = env
        .tcpb()
        .args(["top", "--interval", "0.2"])
        .env("DISTCC_HOSTS", &hosts)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stream(&mut top);
    let mut seen = Vec::new();
    until(&rx, &mut seen, "z.c");
    let text = String::from_utf8_lossy(&seen).into_owned();
    let frame = text.rsplit("tcpb  broker").next().unwrap();
    assert!(
        frame.contains(&format!("{}  [#.]   1/2", d.name())),
        "{frame}"
    );
    interrupt(&mut top);
    std::fs::write(env.path("gate.go"), "").unwrap();
    let out = held.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn watch_on_a_terminal_restores_it_on_ctrl_c() {
    if which::which("script").is_err() {
        eprintln!("\n!!!!!!!!!! SKIPPED: script (util-linux) is missing !!!!!!!!!!\n");
        return;
    }
    let env = TestEnv::new();
    // `script` gives tcpb a pseudo-terminal and copies what it draws.
    let mut child = env
        .cmd("script")
        .args([
            "-qfec",
            &format!("{TCPB} status --watch --interval 0.1"),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stream(&mut child);
    let mut seen = Vec::new();
    until(&rx, &mut seen, "no broker running");
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        text.starts_with("\x1b[?1049h\x1b[?25l"),
        "alternate screen: {text:?}"
    );
    // Ctrl-C reaches tcpb through the terminal.
    let pid = wait_for_pid(TCPB);
    // SAFETY: signalling a process of this test.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).ends_with("\x1b[?25h\x1b[?1049l") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!(
                "terminal not restored: {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}");
}

/// The pid of the newest process running `exe` whose parent is `script`.
fn wait_for_pid(exe: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmd.starts_with(exe.as_bytes()) && cmd.windows(7).any(|w| w == b"--watch") {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "tcpb --watch did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 GET (or `method`) to 127.0.0.1:`port`: status code and body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

#[test]
fn http_endpoint_serves_status_and_metrics_on_loopback() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_config(&format!(
        "[broker]\nidle_exit_s = 120\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    write_c(&env, "h.c", "int h;\n");
    assert!(
        env.tcpb()
            .args(["gcc", "-c", "h.c"])
            .status()
            .unwrap()
            .success()
    );
    let pid = env.status("")["broker"]["pid"].as_u64().unwrap();
    wait_for(Duration::from_secs(5), "the HTTP endpoint", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (code, body) = http(port, "GET", "/status");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["broker"]["pid"].as_u64(), Some(pid));
    assert_eq!(v["granted"], 1);
    let (code, body) = http(port, "GET", "/metrics");
    assert_eq!(code, 200);
    for line in [
        "tcpb_compiles_total 1",
        "tcpb_compiles_local_total 1",
        "tcpb_queue_length 0",
        "tcpb_queue_wait_seconds_count 1",
    ] {
        assert!(body.lines().any(|l| l == line), "{line:?} not in\n{body}");
    }
    assert_eq!(http(port, "GET", "/nope").0, 404);
    assert_eq!(http(port, "POST", "/status").0, 405);
}

#[test]
fn status_colours_states_on_a_terminal_unless_no_color() {
    if which::which("script").is_err() {
        eprintln!("\n!!!!!!!!!! SKIPPED: script (util-linux) is missing !!!!!!!!!!\n");
        return;
    }
    let env = TestEnv::new();
    let on_tty = |no_color: Option<&str>| {
        let mut c = env.cmd("script");
        c.args(["-qec", &format!("{TCPB} status"), "/dev/null"])
            .env("DISTCC_HOSTS", "127.0.0.1:1/2");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = output_within(c, Duration::from_secs(20));
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_tty(None);
    // No broker has seen the host: it is shown dim, not as up.
    assert!(coloured.contains("\x1b[2munknown"), "{coloured:?}");
    let plain = on_tty(Some("1"));
    assert!(
        plain.contains("unknown") && !plain.contains("\x1b["),
        "{plain:?}"
    );
}

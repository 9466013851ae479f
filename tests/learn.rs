//! What the relay learns from distcc's bytes: the stream parser on real
//! captured exchanges, and learned speeds ordering two real hosts.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use tcpb::broker::relay::observe::{RequestWatch, ResponseWatch};

/// Runs distcc once through a capturing proxy in front of `d`; returns the
/// bytes each way and distcc's output.
fn capture(
    env: &TestEnv,
    d: &Distccd,
    opts: &str,
    args: &[&str],
) -> (Vec<u8>, Vec<u8>, std::process::Output) {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let pport = proxy.local_addr().unwrap().port();
    let dport = d.port;
    let relay = std::thread::spawn(move || {
        let (mut c, _) = proxy.accept().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", dport)).unwrap();
        let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
        let down = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = s2.read(&mut buf) {
                if n == 0 || c2.write_all(&buf[..n]).is_err() {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let _ = c2.shutdown(std::net::Shutdown::Write);
            got
        });
        let mut up = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
            up.extend_from_slice(&buf[..n]);
        }
        (up, down.join().unwrap())
    });
    std::fs::create_dir_all(env.path("dd")).unwrap();
    let out = env
        .cmd("distcc")
        .args(args)
        .env("DISTCC_HOSTS", format!("127.0.0.1:{pport}/1{opts}"))
        .env("DISTCC_DIR", env.path("dd"))
        .output()
        .unwrap();
    let (up, down) = relay.join().unwrap();
    (up, down, out)
}

#[test]
fn parser_reads_real_distcc_exchanges() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let d = Distccd::start(&env, 2);
    std::fs::write(
        env.path("work/p.c"),
        "#include <stdio.h>\nint p(void) { return puts(\"x\"); }\n",
    )
    .unwrap();
    std::fs::write(env.path("work/bad.c"), "int q(void) { return nope; }\n").unwrap();
    for (opts, version) in [("", 1), (",lzo", 2)] {
        let (up, down, out) = capture(&env, &d, opts, &["gcc", "-c", "p.c", "-o", "p.o"]);
        assert!(out.status.success(), "{}", output_text(&out));
        // Fed in awkward chunks, as the relay may read them.
        let (mut req, mut resp) = (RequestWatch::default(), ResponseWatch::default());
        let completed = up.chunks(7).filter(|c| req.feed(c)).count();
        let done = down.chunks(5).filter(|c| resp.feed(c)).count();
        assert_eq!((completed, done), (1, 1), "opts {opts:?}");
        assert!(!req.broken && !resp.broken);
        assert_eq!(req.version, version);
        assert_eq!(req.bytes, up.len() as u64);
        assert!(
            req.source_bytes > 1000,
            "preprocessed stdio.h: {}",
            req.source_bytes
        );
        assert_eq!(resp.stat, Some(0));
        let obj = std::fs::metadata(env.path("work/p.o")).unwrap().len();
        if opts.is_empty() {
            assert_eq!(resp.object_bytes, obj, "DOTO carries the object");
        }
    }
    let (up, down, out) = capture(&env, &d, "", &["gcc", "-c", "bad.c", "-o", "bad.o"]);
    assert!(!out.status.success());
    let (mut req, mut resp) = (RequestWatch::default(), ResponseWatch::default());
    req.feed(&up);
    resp.feed(&down);
    assert!(req.complete && resp.done);
    assert_ne!(resp.stat, Some(0), "a compile error shows in STAT");
}

/// The learned speeds of hosts `a` and `b` in a status snapshot.
fn learned_pair(s: &serde_json::Value, a: &str, b: &str) -> (f64, f64) {
    let speed = |name: &str| {
        host_of(s, name)
            .and_then(|h| h["learned_speed"].as_f64())
            .unwrap_or_else(|| panic!("no learned speed for {name}: {s:#}"))
    };
    (speed(a), speed(b))
}

#[test]
fn learned_speeds_order_a_fast_and_a_slow_host() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    let fast = Distccd::start(&env, 2);
    let slow = Distccd::start_slow(&env, 2, 0.4);
    // Configured the other way round: learning must correct it.
    env.write_config(&format!(
        "[broker]\nidle_exit_s = 120\n[[host]]\nname = \"{}\"\nspeed = 2.0\n",
        slow.name()
    ));
    let hosts = format!("{} {}", slow.host(2), fast.host(2));
    for round in 0..2 {
        let dir = env.path(&format!("b{round}"));
        copy_fixture(&dir);
        let out = output_within(
            make_through_tcpb(&env, &dir, &hosts),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let s = env.status(&hosts);
    let (f, sl) = (
        host_of(&s, &fast.name()).unwrap(),
        host_of(&s, &slow.name()).unwrap(),
    );
    eprintln!(
        "RESULT learned speeds: fast {} ({} jobs), slow {} ({} jobs)",
        f["learned_speed"], f["samples"], sl["learned_speed"], sl["samples"]
    );
    assert!(
        f["samples"].as_u64().unwrap() >= 3 && sl["samples"].as_u64().unwrap() >= 3,
        "{s:#}"
    );
    let (lf, ls) = (
        f["learned_speed"].as_f64().unwrap(),
        sl["learned_speed"].as_f64().unwrap(),
    );
    assert!(
        lf > ls * 2.0,
        "the fast host is learned faster, against the configuration: {lf} vs {ls}"
    );
    // One compile at a time now goes to the fast host.
    let before = (fast.compiles_ok(0), slow.compiles_ok(0));
    std::fs::write(env.path("work/one.c"), "int one(void) { return 1; }\n").unwrap();
    for i in 0..3 {
        let out = env
            .tcpb()
            .args(["gcc", "-c", "one.c", "-o", &format!("one{i}.o")])
            .env("DISTCC_HOSTS", &hosts)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    assert_eq!(fast.compiles_ok(before.0 + 3), before.0 + 3);
    assert_eq!(slow.compiles_ok(0), before.1);
    // With no broker running, status shows what was learned.
    let out = env.tcpb().arg("stop").output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let s = env.status(&hosts);
    assert!(s["broker"].is_null(), "{s:#}");
    let (kf, ks) = learned_pair(&s, &fast.name(), &slow.name());
    let jobs = host_of(&s, &fast.name()).unwrap()["jobs"].as_u64();
    assert!(kf > ks * 2.0 && jobs > Some(3), "{s:#}");
    // A broker started later knows what this one learned: its first
    // compile goes to the fast host, not to the one configured faster.
    let out = env
        .tcpb()
        .args(["gcc", "-c", "one.c", "-o", "again.o"])
        .env("DISTCC_HOSTS", &hosts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(env.brokers_started(), 2, "{}", env.log());
    assert_eq!(fast.compiles_ok(before.0 + 4), before.0 + 4);
    assert_eq!(slow.compiles_ok(0), before.1);
    let (rf, rs) = learned_pair(&env.status(&hosts), &fast.name(), &slow.name());
    assert!(rf > rs * 2.0, "restored speeds: {rf} vs {rs}");
}

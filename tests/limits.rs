//! Resource limits and hostile input: a compile past `max_queue` or
//! `max_connections` compiles locally with a warning instead of waiting or
//! being refused, the broker keeps answering its owner, and hundreds of
//! malformed frames leave it building correctly.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `tcpb gcc -O2 -c src` on `hosts`, stderr piped.
fn compile(env: &TestEnv, hosts: &str, src: &str) -> Command {
    let mut cmd = env.tcpb();
    cmd.args(["gcc", "-O2", "-c", src])
        .env("DISTCC_HOSTS", hosts)
        .stderr(Stdio::piped());
    cmd
}

/// One farm slot held by a gated compile, `queued` more compiles waiting
/// behind it. Returns the held compile and the waiting ones.
fn fill(env: &TestEnv, hosts: &str, queued: usize) -> (Child, Vec<Child>) {
    write_c(env, "z.c", "int z(void) { return 3; }\n");
    let held = gated_compile(env, hosts).spawn().unwrap();
    wait_for(Duration::from_secs(10), "the held compile", || {
        env.path("gate.pid").exists()
    });
    let waiting = (0..queued)
        .map(|i| {
            let src = format!("q{i}.c");
            write_c(
                env,
                &src,
                &format!("int q{i}(int x) {{ return x + {i}; }}\n"),
            );
            compile(env, hosts, &src).spawn().unwrap()
        })
        .collect();
    env.wait_status(hosts, Duration::from_secs(10), |s| s["queued"] == queued);
    (held, waiting)
}

/// Opens the gate and checks every compile finished with a correct object.
fn finish(env: &TestEnv, held: Child, waiting: Vec<Child>) {
    std::fs::write(env.path("gate.go"), "").unwrap();
    for (i, c) in waiting.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        assert_same_object(env, &format!("q{i}.o"), &format!("q{i}.c"));
    }
    let out = held.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same_object(env, "z.o", "z.c");
}

/// The over-limit compile: done at once, locally, with a warning naming
/// the setting.
fn over_limit_compile(env: &TestEnv, hosts: &str, setting: &str) {
    write_c(env, "over.c", "int over(int x) { return x * 7; }\n");
    let out = output_within(compile(env, hosts, "over.c"), Duration::from_secs(20));
    assert!(out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(setting) && err.contains("compiling locally"),
        "the warning names {setting}: {err}"
    );
    assert_same_object(env, "over.o", "over.c");
}

#[test]
fn a_full_queue_sends_the_next_compile_local_with_a_warning() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\nmax_queue = 2\n");
    let d = Distccd::start(&env, 1);
    let hosts = d.host(1);
    let (held, waiting) = fill(&env, &hosts, 2);
    over_limit_compile(&env, &hosts, "max_queue");
    let s = env.status(&hosts);
    assert_eq!(s["over_limit"], 1);
    assert_eq!(s["queued"], 2, "the waiting compiles kept their places");
    finish(&env, held, waiting);
    assert_eq!(d.compiles_ok(3), 3, "the others compiled on the farm");
}

#[test]
fn too_many_connections_compile_locally_and_status_still_answers() {
    if !have_distccd() {
        return;
    }
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\nmax_connections = 2\n");
    let d = Distccd::start(&env, 1);
    let hosts = d.host(1);
    // Two connections: the held compile and one waiting.
    let (held, waiting) = fill(&env, &hosts, 1);
    over_limit_compile(&env, &hosts, "max_connections");
    let s = env.status(&hosts);
    assert_eq!(s["over_limit"], 1, "status answers over the limit: {s:#}");
    assert_eq!(s["queued"], 1);
    finish(&env, held, waiting);
    assert_eq!(d.compiles_ok(2), 2, "the others compiled on the farm");
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32).to_be_bytes()[..], body].concat()
}

/// The `i`th malformed input: random bytes, random payloads behind a valid
/// length, messages of the wrong shape, nesting past the parser's limit,
/// oversize and cut-off frames.
fn malformed(rng: &mut XorShift, i: usize) -> Vec<u8> {
    let n = (rng.next() % 300) as usize;
    match i % 8 {
        0 => rng.bytes(n),
        1 => framed(&rng.bytes(n)),
        2 => framed(br#"{"v":1,"req":{"Lease":{"pid":"x","farm":7}}}"#),
        3 => framed(format!("{}{}", "[".repeat(5000), "]".repeat(5000)).as_bytes()),
        4 => [&0x7fff_ffffu32.to_be_bytes()[..], &rng.bytes(n)].concat(),
        5 => framed(br#"{"v":1,"req":{"Host":{"cmd":{"Add":{}},"farm":null}}}"#)[..n.min(20)]
            .to_vec(),
        6 => framed(br#"{"v":1,"req":"Status","extra":"#),
        _ => framed(&[b"{\"v\":1,\"req\":\"".as_slice(), &rng.bytes(n), b"\"}"].concat()),
    }
}

#[test]
fn hundreds_of_malformed_frames_then_a_build_matches_local() {
    if !have_distccd() {
        return;
    }
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let env = TestEnv::new();
    env.write_config("[broker]\nidle_exit_s = 120\nclient_timeout_s = 1\n");
    let (a, b) = (Distccd::start(&env, 2), Distccd::start(&env, 2));
    let hosts = format!("{} {}", a.host(2), b.host(2));
    env.status(&hosts);
    write_c(&env, "warm.c", "int warm;\n");
    let out = output_within(compile(&env, &hosts, "warm.c"), Duration::from_secs(30));
    assert!(out.status.success(), "{}", output_text(&out));
    let sock = env.runtime_dir().join("broker.sock");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut held = Vec::new();
    for i in 0..400 {
        let mut s = UnixStream::connect(&sock).unwrap();
        let _ = s.write_all(&malformed(&mut rng, i));
        if i % 50 == 0 {
            held.push(s); // left open: the broker must time these out
        } else if matches!(i % 8, 2 | 3 | 6 | 7) {
            // A whole frame that is not a valid request is answered.
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reply = Vec::new();
            let _ = s.read_to_end(&mut reply);
            let reply = String::from_utf8_lossy(&reply);
            assert!(reply.contains("\"Error\""), "input {i}: {reply}");
        }
    }
    let dir = env.path("farm");
    copy_fixture(&dir);
    let out = output_within(
        make_through_tcpb(&env, &dir, &hosts),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    reference_build(&env.path("ref"));
    assert_same_objects(&env.path("ref"), &dir);
    let n = fixture_sources().len();
    assert_eq!(farm_compiles(&[&a, &b], n + 1), n + 1, "all on the farm");
    let s = env.wait_status(&hosts, Duration::from_secs(5), |s| s["running"] == 0);
    assert_eq!(s["queued"], 0);
    for h in s["hosts"].as_array().unwrap() {
        assert_eq!(h["busy"], 0, "no slot leaked on {}", h["name"]);
    }
    assert_eq!(env.brokers_started(), 1, "one broker served it all");
    drop(held);
}

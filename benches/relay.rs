//! Relay throughput and latency: a load generator and sink written for the
//! benchmark push a large stream and many small exchanges through (a) a
//! direct loopback connection, (b) tcpb's relay (a lease per connection,
//! as a compile takes one), (c) HAProxy in TCP mode.
//!
//! The stream is one distcc request whose preprocessed source (`DOTI`) is
//! the whole stream, answered as distccd answers, so the relay treats it
//! as it treats a compile. Reported per path: stream throughput (median of
//! runs), connection
//! setup (connect to the first answered byte) and the round trip of a
//! 64-byte request/response on an open connection.
//!
//! Run: `cargo bench --bench relay` (`-- --mib N --conns N --runs N`;
//! `--only direct|tcpb|HAProxy` runs one path, for a profile).

#[path = "common/mod.rs"]
mod common;

use common::{Broker, median, percentiles};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use tcpb::frame;
use tcpb::hosts;
use tcpb::protocol::{
    BrokerMsg, ClientMsg, Grant, LeaseRequest, PROTOCOL_VERSION, Request, Response,
};

const CHUNK: usize = 256 * 1024;

/// A distcc request header announcing a `DOTI` payload of `len` bytes.
fn request_header(len: u32) -> Vec<u8> {
    format!("DIST00000001ARGC00000000DOTI{len:08x}").into_bytes()
}

/// The answer the sink gives a request (an 8-byte object: the byte count).
const ANSWER: &[u8] = b"DONE00000001STAT00000000SERR00000000SOUT00000000DOTO00000008";

/// The sink: each connection either streams (a distcc request whose `DOTI`
/// payload is the stream: read it, answer as distccd does with the byte
/// count as the object, so the relay watches and splices as for a compile)
/// or echoes (first byte `E`: echo 64-byte messages until EOF). Anything
/// else (the broker's probes) is dropped.
fn sink() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    port
}

fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut kind = [0u8; 1];
    if s.read_exact(&mut kind).is_err() {
        return;
    }
    match kind[0] {
        b'D' => {
            let mut header = vec![0u8; request_header(0).len() - 1];
            if s.read_exact(&mut header).is_err() {
                return;
            }
            let hex = std::str::from_utf8(&header[header.len() - 8..]).unwrap_or("");
            let want = u64::from_str_radix(hex, 16).unwrap_or(0);
            let mut buf = vec![0u8; CHUNK];
            let mut total: u64 = 0;
            while total < want {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            let mut answer = ANSWER.to_vec();
            answer.extend(total.to_be_bytes());
            let _ = s.write_all(&answer);
        }
        b'E' => {
            let mut msg = [0u8; 64];
            let _ = s.write_all(b"E");
            while s.read_exact(&mut msg).is_ok() {
                if s.write_all(&msg).is_err() {
                    break;
                }
            }
        }
        _ => {}
    }
}

/// How a connection reaches the sink.
enum Path {
    Direct(u16),
    Tcpb {
        broker: Broker,
        farm: hosts::HostList,
    },
    Haproxy(u16),
}

/// A connection to the sink, and the lease that carries it (tcpb only).
struct Conn {
    tcp: TcpStream,
    _lease: Option<UnixStream>,
}

impl Path {
    fn name(&self) -> &'static str {
        match self {
            Path::Direct(_) => "direct",
            Path::Tcpb { .. } => "tcpb relay",
            Path::Haproxy(_) => "HAProxy",
        }
    }

    /// Takes a lease (tcpb) and returns the port to connect to.
    fn prepare(&self) -> (u16, Option<UnixStream>) {
        match self {
            Path::Direct(p) | Path::Haproxy(p) => (*p, None),
            Path::Tcpb { broker, farm } => {
                let mut s = UnixStream::connect(broker.socket()).expect("control socket");
                let msg = ClientMsg {
                    v: PROTOCOL_VERSION,
                    req: Request::Lease(LeaseRequest {
                        pid: std::process::id(),
                        cwd: "/".into(),
                        compiler: "gcc".into(),
                        source: Some("x.c".into()),
                        source_size: 100,
                        source_path: None,
                        build: 1,
                        local_only: false,
                        farm: farm.clone(),
                        ssh_env: Vec::new(),
                        io_timeout_s: None,
                    }),
                };
                frame::write_sync(&mut s, &msg).expect("lease request");
                loop {
                    let payload = frame::read_sync(&mut s).expect("read").expect("answer");
                    match frame::decode::<BrokerMsg>(&payload).expect("decode").resp {
                        Response::Granted(Grant::Remote { port, .. }) => return (port, Some(s)),
                        Response::Queued { .. } => continue,
                        r => panic!("unexpected answer {r:?}"),
                    }
                }
            }
        }
    }

    /// The relaying process, if any.
    fn relay_pid(&self, haproxy: Option<u32>) -> Option<u32> {
        match self {
            Path::Direct(_) => None,
            Path::Tcpb { broker, .. } => Some(broker.pid()),
            Path::Haproxy(_) => haproxy,
        }
    }

    fn connect(&self, port_and_lease: (u16, Option<UnixStream>)) -> Conn {
        let (port, lease) = port_and_lease;
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        Conn { tcp, _lease: lease }
    }
}

/// Streams `bytes` through `path` as one distcc request; returns MiB/s.
fn stream(path: &Path, bytes: u64) -> f64 {
    let mut c = path.connect(path.prepare());
    let buf = vec![0x5au8; CHUNK];
    let t = Instant::now();
    let len = u32::try_from(bytes).expect("a DOTI payload is under 4 GiB");
    c.tcp.write_all(&request_header(len)).expect("write");
    let mut sent = 0u64;
    while sent < bytes {
        let n = CHUNK.min((bytes - sent) as usize);
        c.tcp.write_all(&buf[..n]).expect("write");
        sent += n as u64;
    }
    let mut answer = vec![0u8; ANSWER.len() + 8];
    c.tcp.read_exact(&mut answer).expect("answer");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(&answer[..ANSWER.len()], ANSWER);
    let count: [u8; 8] = answer[ANSWER.len()..].try_into().expect("8 bytes");
    assert_eq!(u64::from_be_bytes(count), bytes, "the sink got every byte");
    bytes as f64 / secs / (1 << 20) as f64
}

/// Connection setup times (connect to the first answered byte), without
/// and with taking the lease first; and the 64-byte round trip.
fn exchanges(path: &Path, conns: usize) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let (mut setup, mut with_lease, mut rtt) = (Vec::new(), Vec::new(), Vec::new());
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..conns {
        let t0 = Instant::now();
        let prepared = path.prepare();
        let t = Instant::now();
        let mut c = path.connect(prepared);
        c.tcp.write_all(b"E").expect("write");
        let mut e = [0u8; 1];
        c.tcp.read_exact(&mut e).expect("echo start");
        setup.push(t.elapsed());
        with_lease.push(t0.elapsed());
        for _ in 0..10 {
            let t = Instant::now();
            c.tcp.write_all(&msg).expect("write");
            c.tcp.read_exact(&mut back).expect("echo");
            rtt.push(t.elapsed());
        }
    }
    (setup, with_lease, rtt)
}

/// The command line.
struct Opts {
    mib: u64,
    conns: usize,
    runs: usize,
    /// One path alone, to profile it (`perf record -a` meanwhile).
    only: Option<String>,
}

impl Opts {
    fn parse() -> Opts {
        let mut o = Opts {
            mib: 2048,
            conns: 2000,
            runs: 5,
            only: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = || args.next().and_then(|n| n.parse().ok());
            match a.as_str() {
                "--mib" => o.mib = value().unwrap_or(o.mib as usize) as u64,
                "--conns" => o.conns = value().unwrap_or(o.conns),
                "--runs" => o.runs = value().unwrap_or(o.runs),
                "--only" => o.only = args.next(),
                _ => {}
            }
        }
        o
    }
}

/// Streams through every path `runs` times, interleaved: per path, the
/// MiB/s of each run and the CPU seconds of the ends (this process) and
/// of the relay.
fn throughput(paths: &[Path], o: &Opts, haproxy_pid: Option<u32>) -> Vec<(Vec<f64>, (f64, f64))> {
    let mut out = vec![(Vec::new(), (0.0, 0.0)); paths.len()];
    let me = std::process::id();
    for _ in 0..o.runs {
        for (p, (speeds, cpu)) in paths.iter().zip(&mut out) {
            let relay = p.relay_pid(haproxy_pid);
            let cpu_of = |pid: Option<u32>| pid.map_or(0.0, common::cpu_secs);
            let before = (common::cpu_secs(me), cpu_of(relay));
            speeds.push(stream(p, o.mib << 20));
            cpu.0 += common::cpu_secs(me) - before.0;
            cpu.1 += cpu_of(relay) - before.1;
        }
    }
    out
}

/// A row per path: throughput against the direct path, connection set-up,
/// and round trips.
fn report_latency(paths: &[Path], measured: &[(Vec<f64>, (f64, f64))], conns: usize) {
    let direct = median(measured[0].0.clone());
    println!(
        "{:<11} {:>10} {:>8} {:>12} {:>12} {:>12} {:>16} {:>10} {:>10}",
        "path",
        "MiB/s",
        "vs direct",
        "setup p50",
        "setup p99",
        "added p50",
        "lease+setup p50",
        "rtt p50",
        "rtt p99"
    );
    let mut direct_setup = 0.0;
    for (i, p) in paths.iter().enumerate() {
        let s = median(measured[i].0.clone());
        let (setup, with_lease, rtt) = exchanges(p, conns);
        let [s50, _, s99, _] = percentiles(setup);
        let [l50, ..] = percentiles(with_lease);
        let [r50, _, r99, _] = percentiles(rtt);
        if i == 0 {
            direct_setup = s50;
        }
        println!(
            "{:<11} {:>10.0} {:>8.1}% {:>9.1} µs {:>9.1} µs {:>9.1} µs {:>13.1} µs {:>7.1} µs {:>7.1} µs",
            p.name(),
            s,
            100.0 * s / direct,
            s50,
            s99,
            s50 - direct_setup,
            l50,
            r50,
            r99
        );
    }
}

/// What each path costs the machine: its throughput cannot exceed the
/// cores divided by the CPU a GiB takes (ends, relay and the kernel's work
/// for both TCP hops, which is charged to whoever runs it).
fn report_cpu(paths: &[Path], measured: &[(Vec<f64>, (f64, f64))], o: &Opts) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let gib = (o.runs as u64 * o.mib) as f64 / 1024.0;
    println!("CPU per GiB streamed (user + system; {cores} cores):");
    for (p, (_, cpu)) in paths.iter().zip(measured) {
        let (ends, relay) = (cpu.0 / gib, cpu.1 / gib);
        println!(
            "  {:<11} ends {:.3} s + relay {:.3} s = {:.3} s  -> at most {:.0} MiB/s with every core busy",
            p.name(),
            ends,
            relay,
            ends + relay,
            cores * 1024.0 / (ends + relay)
        );
    }
}

fn main() {
    let o = Opts::parse();
    tcpb::sys::raise_open_file_limit();
    let port = sink();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start("");
    let farm = hosts::parse(&format!("127.0.0.1:{port}/64"), "DISTCC_HOSTS").expect("hosts");
    let mut paths = vec![Path::Direct(port), Path::Tcpb { broker, farm }];
    let haproxy = if common::have("haproxy") {
        let (guard, hp) = common::haproxy(dir.path(), &[(port, 1, 0)]);
        paths.push(Path::Haproxy(hp));
        Some(guard)
    } else {
        common::skipped("the HAProxy column", "haproxy", "haproxy");
        None
    };
    let haproxy_pid = haproxy.as_ref().map(|g| g.0.id());
    if let Some(only) = &o.only {
        paths.retain(|p| p.name().starts_with(only.as_str()));
    }
    println!(
        "relay: {} MiB stream x {} runs (interleaved), {} connections with 10 round trips each",
        o.mib, o.runs, o.conns
    );
    let measured = throughput(&paths, &o, haproxy_pid);
    report_latency(&paths, &measured, o.conns);
    report_cpu(&paths, &measured, &o);
}

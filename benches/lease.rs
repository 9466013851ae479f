//! Lease rate and a broker holding thousands of compiles, on the real
//! control socket of a real `tcpb broker`.
//!
//! 1. 1,000 concurrent clients take and release leases on a farm of 64
//!    hosts x 32 slots (always a free slot): grants per second and grant
//!    latency; then one client at a time, for the latency of a grant when a
//!    slot is free and nothing else is asked.
//! 2. 2,000 clients queue on a one-slot farm: broker memory with all of them
//!    waiting, and the order they are served in once the slot frees.
//!
//! Run: `cargo bench --bench lease` (`-- --grants N --queued N` to change
//! the counts).

#[path = "common/mod.rs"]
mod common;

use common::{Broker, percentiles};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tcpb::frame;
use tcpb::hosts::{self, HostList};
use tcpb::protocol::{BrokerMsg, ClientMsg, LeaseRequest, PROTOCOL_VERSION, Request, Response};
use tokio::net::{TcpListener, UnixStream};

/// Farm hosts that accept connections (the broker's health probes) and
/// close them.
async fn sinks(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        ports.push(l.local_addr().expect("addr").port());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
    }
    ports
}

fn farm(ports: &[u16], slots: u32) -> HostList {
    let text: Vec<String> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}/{slots}"))
        .collect();
    hosts::parse(&text.join(" "), "DISTCC_HOSTS").expect("host list")
}

fn request(farm: &HostList, n: usize) -> ClientMsg {
    ClientMsg {
        v: PROTOCOL_VERSION,
        req: Request::Lease(LeaseRequest {
            pid: std::process::id(),
            cwd: "/".into(),
            compiler: "gcc".into(),
            source: Some(format!("f{n}.c")),
            source_size: 1000,
            source_path: None,
            build: 1,
            local_only: false,
            farm: farm.clone(),
            ssh_env: Vec::new(),
            io_timeout_s: None,
        }),
    }
}

/// Reads the broker's next answer.
async fn answer(s: &mut UnixStream) -> Response {
    let payload = frame::read(s).await.expect("read").expect("broker closed");
    frame::decode::<BrokerMsg>(&payload).expect("decode").resp
}

/// Asks for a lease; returns the connection (the lease) once granted and
/// how long the grant took, or the connection still queued.
async fn ask(socket: &Path, msg: &ClientMsg) -> (UnixStream, Response) {
    let mut s = UnixStream::connect(socket).await.expect("connect");
    frame::write(&mut s, msg).await.expect("write");
    let r = answer(&mut s).await;
    (s, r)
}

/// Asks for a lease and waits for its grant (a remote grant comes once the
/// broker has reached the host); returns the connection that holds it.
async fn granted(socket: &Path, msg: &ClientMsg) -> UnixStream {
    let (mut s, mut r) = ask(socket, msg).await;
    while matches!(r, Response::Queued { .. }) {
        r = answer(&mut s).await;
    }
    assert!(matches!(r, Response::Granted(_)), "{r:?}");
    s
}

async fn rate(socket: &Path, farm: &HostList, clients: usize, grants: usize) {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (socket, done) = (socket.to_path_buf(), Arc::clone(&done));
        let msg = request(farm, c);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while done.fetch_add(1, Ordering::Relaxed) < grants {
                let t = Instant::now();
                let s = granted(&socket, &msg).await;
                lat.push(t.elapsed());
                drop(s);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client"));
    }
    let secs = started.elapsed().as_secs_f64();
    let [p50, p90, p99, max] = percentiles(lat.clone());
    println!(
        "{clients:>5} concurrent clients: {:>6} grants in {secs:.2} s = {:>7.0} grants/s; latency p50 {p50:.0} µs, p90 {p90:.0}, p99 {p99:.0}, max {max:.0}",
        lat.len(),
        lat.len() as f64 / secs
    );
}

async fn queued(socket: &Path, n: usize, broker: &Broker) {
    let port = sinks(1).await;
    let farm = farm(&port, 1);
    let holder = granted(socket, &request(&farm, 0)).await;
    let (idle, _) = broker.rss_kib();
    let served = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let mut tasks = Vec::new();
    let t = Instant::now();
    for i in 0..n {
        // One at a time, so the arrival order is known.
        let (mut s, r) = ask(socket, &request(&farm, i + 1)).await;
        assert!(matches!(r, Response::Queued { .. }), "{r:?}");
        let served = Arc::clone(&served);
        tasks.push(tokio::spawn(async move {
            loop {
                match answer(&mut s).await {
                    Response::Queued { .. } => continue,
                    Response::Granted(_) => break,
                    r => panic!("{r:?}"),
                }
            }
            served.lock().unwrap().push(i);
            drop(s);
        }));
    }
    let queue_secs = t.elapsed().as_secs_f64();
    let (rss, hwm) = broker.rss_kib();
    // Waiting clients hear their place every 5 s: what that costs.
    let (cpu0, wait) = (broker.cpu_secs(), Duration::from_secs(11));
    tokio::time::sleep(wait).await;
    let held_cpu = (broker.cpu_secs() - cpu0) / wait.as_secs_f64();
    let t = Instant::now();
    drop(holder);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("queue drained within 2 minutes")
            .expect("client");
    }
    let drain = t.elapsed().as_secs_f64();
    let order = served.lock().unwrap().clone();
    let fifo = order.iter().enumerate().all(|(k, i)| k == *i);
    let misplaced = order.iter().enumerate().filter(|(k, i)| k != *i).count();
    println!(
        "{n} compiles queued on a one-slot farm (queued in {queue_secs:.2} s): broker RSS {:.1} MiB (peak {:.1} MiB; {:.1} MiB with one lease)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        idle as f64 / 1024.0
    );
    println!(
        "  while they wait, the broker uses {:.1}% of a CPU (queue positions every 5 s)",
        100.0 * held_cpu
    );
    println!(
        "  served one after another in {drain:.2} s ({:.0}/s), in {} order ({misplaced} out of place)",
        n as f64 / drain,
        if fifo { "FIFO" } else { "NOT FIFO" }
    );
}

fn main() {
    let (mut grants, mut queue) = (100_000usize, 2000usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|n| n.parse().ok());
        match a.as_str() {
            "--grants" => grants = value().unwrap_or(grants),
            "--queued" => queue = value().unwrap_or(queue),
            _ => {}
        }
    }
    tcpb::sys::raise_open_file_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "lease rate on the control socket (targets: >= 20,000 grants/s with 1,000 clients; p99 < 1 ms with a free slot; RSS <= 32 MiB with 2,000 queued)"
    );
    rt.block_on(async {
        let broker = Broker::start("");
        let ports = sinks(64).await;
        let farm = farm(&ports, 32);
        let socket = broker.socket();
        // Warm up: the broker adopts the farm.
        rate(&socket, &farm, 10, 1000).await;
        rate(&socket, &farm, 1000, grants).await;
        rate(&socket, &farm, 1, grants / 10).await;
        drop(broker);
        let broker = Broker::start("");
        queued(&broker.socket(), queue, &broker).await;
    });
}

use super::*;
use crate::broker::relay::Report;
use crate::farm::HostSpec;
use crate::protocol::Grant;
use std::sync::atomic::AtomicU32;
use tokio::sync::mpsc::UnboundedReceiver;

/// A slot source whose answer the test moves, as team mode's claims would.
struct Claimed(Arc<AtomicU32>);

impl Slots for Claimed {
    fn usable(&self, host: &HostSpec) -> u32 {
        self.0.load(Ordering::SeqCst).min(host.slots)
    }
}

fn paths(dir: &std::path::Path) -> Paths {
    Paths {
        runtime_dir: dir.join("run"),
        state_dir: dir.join("state"),
        config_file: dir.join("config.toml"),
        masquerade_dir: dir.join("masq"),
    }
}

/// A broker with the default config in `dir`, its slots from `slots`,
/// and its relay's reports (kept for the test's length).
fn broker(dir: &std::path::Path, slots: Box<dyn Slots>) -> (Broker, UnboundedReceiver<Report>) {
    let (relay, reports) = Relay::new(std::env::temp_dir());
    let broker = Broker::new(
        Config::default(),
        paths(dir),
        Default::default(),
        relay,
        slots,
    );
    (broker, reports)
}

fn request(farm: &HostList, pid: u32) -> LeaseRequest {
    LeaseRequest {
        pid,
        cwd: "/".into(),
        compiler: "gcc".into(),
        source: Some(format!("f{pid}.c")),
        source_size: 100,
        source_path: None,
        build: 1,
        local_only: false,
        farm: farm.clone(),
        ssh_env: Vec::new(),
        io_timeout_s: None,
    }
}

#[tokio::test]
async fn capacity_follows_the_slot_source_without_disturbing_running_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let usable = Arc::new(AtomicU32::new(4));
    let (broker, _reports) = broker(dir.path(), Box::new(Claimed(Arc::clone(&usable))));
    // A farm of this machine alone: grants are local, no relay port.
    let farm = crate::hosts::parse("localhost/4", "test").unwrap();
    let mut leases = Vec::new();
    for pid in 1..=4 {
        let (tx, _rx) = oneshot::channel();
        let started = broker.request(&request(&farm, pid), tx);
        assert_eq!(started.grant, Some(Grant::Local), "slot {pid} of 4");
        leases.push(started.id);
    }
    // The source now allows one slot: the four keep running, a fifth waits.
    usable.store(1, Ordering::SeqCst);
    broker.refresh_capacity();
    let (tx, mut fifth) = oneshot::channel();
    let waiting = broker.request(&request(&farm, 5), tx);
    assert_eq!((waiting.grant, broker.running()), (None, 4));
    for id in &leases[..3] {
        broker.release(*id);
    }
    assert!(fifth.try_recv().is_err(), "still over the one usable slot");
    broker.release(leases[3]);
    assert_eq!(fifth.try_recv(), Ok((Grant::Local, None)));
    // Grown again: queued compiles are served at once.
    let (tx, mut sixth) = oneshot::channel();
    assert_eq!(broker.request(&request(&farm, 6), tx).grant, None);
    usable.store(4, Ordering::SeqCst);
    broker.refresh_capacity();
    assert_eq!(sixth.try_recv(), Ok((Grant::Local, None)));
    assert_eq!(
        broker.snapshot().hosts[0].slots,
        4,
        "configured slots shown"
    );
}

#[tokio::test]
async fn a_compile_placed_on_a_host_is_not_turned_away_by_a_long_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _reports) = broker(dir.path(), Box::new(AllSlots));
    // Two compiles wait behind one on a one-slot local farm...
    let local = crate::hosts::parse("localhost/1", "test").unwrap();
    let mut waiting = Vec::new();
    for pid in 1..=3 {
        let (tx, rx) = oneshot::channel();
        let started = broker.request(&request(&local, pid), tx);
        assert!(started.refused.is_none());
        waiting.push(rx);
    }
    // ...when max_queue is lowered below the queue's length.
    let mut config = Config::default();
    config.broker.max_queue = 1;
    broker.reconfigure(config);
    // Another list's free host takes the next compile: it is being
    // connected to, not queued, and must not be refused.
    let host = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = host.local_addr().unwrap().port();
    let farm = crate::hosts::parse(&format!("127.0.0.1:{port}/1"), "test").unwrap();
    let (tx, _rx) = oneshot::channel();
    let started = broker.request(&request(&farm, 4), tx);
    assert_eq!(started.grant, None, "granted once its host is reached");
    assert!(started.refused.is_none(), "{:?}", started.refused);
    // One that would wait is still refused.
    let (tx, _rx) = oneshot::channel();
    assert!(broker.request(&request(&local, 5), tx).refused.is_some());
}

#[tokio::test]
async fn a_job_observed_after_its_lease_ended_still_teaches_speed_and_cost() {
    let now = Instant::now();
    let farm = crate::hosts::parse("127.0.0.1:9/2", "test").unwrap();
    let mut state = State::new(
        Config::default(),
        Saved::default(),
        SavedCosts::default(),
        now,
    );
    let (relay, _reports) = Relay::new(std::env::temp_dir());
    let set = farm::adopt(&mut state, &farm, &relay, now);
    // Another file's cost, so a size says something.
    state.costs.record(Some("/src/other.c"), 100, 0.5);
    let mut req = request(&farm, 7);
    req.source_path = Some("/src/f7.c".into());
    let (tx, _rx) = tokio::sync::oneshot::channel();
    state.leases.insert(1, Lease::new(&req, set, tx, now));
    let job = lease::job_of(&mut state.costs, &req, set);
    let placed = state.sched.request(1, job, now);
    let ticket = relayed::ticket(&state, placed[0]).expect("a farm host");
    // The client is gone before the relay reports how the job ended.
    end_lease(&mut state, &relay, 1, now);
    let mut watch = crate::broker::relay::Watch {
        request_end: Some(now),
        done_at: Some(now + Duration::from_millis(40)),
        ..Default::default()
    };
    watch.request.feed(b"");
    relayed::ended(
        &mut state,
        &ticket,
        crate::broker::relay::Outcome::Done(Box::new(watch)),
        now,
    );
    let host = state.sched.find("127.0.0.1:9").unwrap();
    assert_eq!(
        state.sched.host(host).learned.samples(),
        1,
        "a speed sample"
    );
    assert!(state.costs.knows("/src/f7.c"), "the file's cost");
}

/// A team whose claim has not come yet: no slot, but one is on its way.
struct Claiming;

impl Slots for Claiming {
    fn usable(&self, host: &HostSpec) -> u32 {
        if host.is_local() { host.slots } else { 0 }
    }

    fn may_grow(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn the_first_compile_of_a_new_broker_waits_for_its_team_claim() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _reports) = broker(dir.path(), Box::new(Claiming));
    // No tick has run: the very first request must wait, not run here.
    let farm = crate::hosts::parse("127.0.0.1:9/2", "test").unwrap();
    let (tx, _rx) = oneshot::channel();
    let started = broker.request(&request(&farm, 1), tx);
    assert_eq!(started.grant, None, "it waits for a claim");
    assert_eq!(broker.snapshot().queued, 1);
}

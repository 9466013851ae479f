//! The team task against a real etcd, with a broker of its own.

use super::*;
use crate::broker::team::etcd::tests::{client, first_lease, start_etcd};
use crate::broker::team::member::{TeamDemand, Told};
use crate::config::TeamConfig;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

/// A broker whose every reconcile is slow (its demand takes this long),
/// as a busy broker's reconciles are when each makes calls to a slow etcd.
struct Slow(Duration);

impl Member for Slow {
    fn demand(&self) -> TeamDemand {
        // Other tasks move to another worker meanwhile, as they would
        // while a reconcile awaits etcd.
        tokio::task::block_in_place(|| std::thread::sleep(self.0));
        TeamDemand::default()
    }
    fn busy_on(&self, _host: &str) -> u32 {
        0
    }
    fn capacity_changed(&self) {}
    fn hosts_changed(&self) {}
    fn told(&self, _found: Vec<Told>) {}
}

fn config(url: &str, lease_ttl_s: u64) -> TeamConfig {
    TeamConfig {
        lease_ttl_s,
        ..TeamConfig::new(&[url.to_string()], "t")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_broker_sees_every_change_as_it_comes() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let team = Team::named(
        &config(&e.url, 10),
        Duration::from_secs(5),
        ("u".into(), "w".into()),
        1,
    )
    .unwrap();
    let task = tokio::spawn(run(team.clone(), Slow(Duration::from_millis(50))));
    let waker = {
        let team = team.clone();
        tokio::spawn(async move {
            loop {
                team.wake();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let seen = || {
        let st = team.status();
        st.brokers.iter().filter(|b| b.id.starts_with('x')).count()
    };
    // 200 brokers join, one write each (one watch answer each).
    let value = r#"{"user":"x","workstation":"w","weight":1.0,"want":1,"builds":1}"#;
    for n in 0..200 {
        c.put(&format!("/tcpb/t/brokers/x{n}"), value, lease)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while seen() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    waker.abort();
    task.abort();
    assert_eq!(seen(), 200, "the view fell behind the farm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_lives_through_reconciles_longer_than_its_ttl() {
    let Some(e) = start_etcd() else { return };
    first_lease(&client(&e), 10).await;
    let who = ("u".to_string(), "w".to_string());
    let team = Team::named(&config(&e.url, 2), Duration::from_secs(5), who, 1).unwrap();
    let task = tokio::spawn(run(team.clone(), Slow(Duration::from_millis(2500))));
    let deadline = Instant::now() + Duration::from_secs(5);
    while team.session.id().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lease = team.session.id();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (now, state) = (team.session.id(), team.session.state());
    task.abort();
    assert!(lease.is_some());
    assert_eq!(
        (now, state),
        (lease, TeamState::Connected),
        "the lease expired"
    );
}

/// A broker that counts its reconciles (each asks its demand once).
#[derive(Clone, Default)]
struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Member for Counted {
    fn demand(&self) -> TeamDemand {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TeamDemand::default()
    }
    fn busy_on(&self, _host: &str) -> u32 {
        0
    }
    fn capacity_changed(&self) {}
    fn hosts_changed(&self) {}
    fn told(&self, _found: Vec<Told>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_changes_start_a_reconcile_at_most_once_per_settle() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let who = ("u".to_string(), "w".to_string());
    let team = Team::named(&config(&e.url, 10), Duration::from_secs(5), who, 1).unwrap();
    let counted = Counted::default();
    let task = tokio::spawn(run(team.clone(), counted.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Other brokers' demand changes, one write (one watch answer) each,
    // for a second or 2,000 writes.
    let (t0, before) = (Instant::now(), counted.0.load(Ordering::Relaxed));
    let value = r#"{"user":"x","workstation":"w","weight":1.0,"want":1,"builds":1}"#;
    for n in 0..2000 {
        if t0.elapsed() >= Duration::from_secs(1) {
            break;
        }
        c.put(&format!("/tcpb/t/brokers/x{}", n % 50), value, lease)
            .await
            .unwrap();
    }
    let (secs, reconciles) = (t0.elapsed(), counted.0.load(Ordering::Relaxed) - before);
    task.abort();
    let most = (secs.as_secs_f64() / SETTLE.as_secs_f64()).ceil() as usize + 2;
    assert!(reconciles <= most, "{reconciles} reconciles in {secs:?}");
}

/// A broker whose lists name `.0` hosts (`hN:3632`) and whose config
/// alone names `.1` more (`uN:3632`), none busy.
struct Farm(usize, usize);

impl Member for Farm {
    fn demand(&self) -> TeamDemand {
        let need = |i: usize| crate::broker::team::plan::Need {
            name: if i < self.0 {
                format!("h{i}:3632")
            } else {
                format!("u{}:3632", i - self.0)
            },
            slots: 4,
            speed: 1.0,
            configured: 1.0,
            busy: 0,
            queued: 0,
            usable: true,
            health: None,
            error: None,
            learned: false,
            listed: i < self.0,
        };
        TeamDemand {
            needs: (0..self.0 + self.1).map(need).collect(),
            ..TeamDemand::default()
        }
    }
    fn busy_on(&self, _host: &str) -> u32 {
        0
    }
    fn capacity_changed(&self) {}
    fn hosts_changed(&self) {}
    fn told(&self, _found: Vec<Told>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_farm_is_defined_and_its_probers_claimed_in_a_few_calls() {
    let Some(e) = start_etcd() else { return };
    let who = ("u".to_string(), "w".to_string());
    let team = Team::named(&config(&e.url, 10), Duration::from_secs(5), who, 1).unwrap();
    let task = tokio::spawn(run(team.clone(), Farm(250, 0)));
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = |st: &crate::protocol::TeamStatus| {
        st.hosts.len() == 250 && st.hosts.iter().all(|h| h.prober.as_deref() == Some(&st.me))
    };
    while !done(&team.status()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    let st = team.status();
    assert!(done(&st), "{} hosts defined", st.hosts.len());
    // 250 hosts and 250 probers: 3 calls each (100 keys a call), not 500.
    assert!(st.etcd_calls <= 30, "{} calls to etcd", st.etcd_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_only_this_broker_knows_is_used_uncoordinated_until_the_team_adds_it() {
    let Some(e) = start_etcd() else { return };
    let who = ("u".to_string(), "w".to_string());
    let team = Team::named(&config(&e.url, 10), Duration::from_secs(5), who, 1).unwrap();
    let task = tokio::spawn(run(team.clone(), Farm(1, 1)));
    let until = |done: &dyn Fn(&crate::protocol::TeamStatus) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&team.status()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        team.status()
    };
    let st = until(&|st| st.hosts.len() == 1 && !st.uncoordinated.is_empty());
    // The listed host is the team's; the other is used alone, all slots.
    assert_eq!(st.hosts[0].name, "h0:3632");
    assert_eq!(st.uncoordinated, ["u0:3632"]);
    assert_eq!(team.usable("u0:3632", 4), 4);
    assert_eq!(team.usable("h0:3632", 4), 0, "nothing claimed: no demand");
    // `tcpb host add u0:3632 --team`: from then on only claims count.
    let c = client(&e);
    c.put("/tcpb/t/hosts/u0:3632", r#"{"slots":4}"#, 0)
        .await
        .unwrap();
    let st = until(&|st| st.uncoordinated.is_empty());
    task.abort();
    assert!(st.uncoordinated.is_empty(), "still uncoordinated");
    assert_eq!(team.usable("u0:3632", 4), 0);
}

#[tokio::test]
async fn a_broker_that_loads_the_farm_sees_claims_made_before_and_after() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let a = crate::broker::team::claims::Claims::new("t", "a");
    let want = |host: &str, n| crate::broker::team::claims::Want {
        host: host.into(),
        slots: 8,
        want: n,
        taken: Default::default(),
    };
    a.claim(&c, lease, &mut [want("h", 3)]).await.unwrap();
    let b = Team::named(
        &config(&e.url, 10),
        Duration::from_secs(5),
        ("u".into(), "w".into()),
        1,
    );
    let b = b.unwrap();
    // Before: read from the slot keys as the farm loads.
    let (mut watch, _, _) = b.load(false).await.unwrap();
    let held = |b: &Team, host: &str| b.lock().view.held_on(host, "a");
    assert_eq!(held(&b, "h"), 3);
    // After: one watched change per claim or release.
    a.claim(&c, lease, &mut [want("h", 5), want("g", 2)])
        .await
        .unwrap();
    let back = a.take_back("h", 1);
    a.free_all(&c, lease, &[("h".into(), back)]).await.unwrap();
    let (mut changes, mut last) = (0, 0);
    while changes < 2 {
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
        let seen = next.expect("a change within 5 s").unwrap();
        changes += seen.len();
        last = seen.iter().map(|c| c.revision).max().unwrap_or(last);
        b.apply(&seen);
    }
    assert_eq!((changes, held(&b, "h"), held(&b, "g")), (2, 4, 2));
    // The writer knows the revision its last write made: a watch that
    // has shown it is not behind.
    assert_eq!(c.counts().written.load(Ordering::Relaxed), last);
    let (_, keys) = c.range("/tcpb/t/taken/h/", 0).await.unwrap();
    let in_etcd: BTreeSet<u32> = keys
        .iter()
        .map(|(k, _)| k.rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(b.lock().view.taken("h"), in_etcd);
}

#[test]
fn a_watch_is_behind_only_after_lag_without_a_break() {
    let mut lag = Lag::default();
    let t0 = Instant::now();
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    assert!(!lag.behind(true, at(0.0)));
    assert!(!lag.behind(true, at(4.9)));
    assert!(
        !lag.behind(false, at(5.0)),
        "caught up: the count starts again"
    );
    assert!(!lag.behind(true, at(6.0)));
    assert!(!lag.behind(true, at(10.9)));
    assert!(lag.behind(true, at(11.0)));
}

#[test]
fn a_failed_read_of_the_farm_is_tried_again_later_and_later() {
    let mut retry = Retry::default();
    let t0 = Instant::now();
    assert!(retry.due(t0));
    let mut waits = Vec::new();
    let mut now = t0;
    for _ in 0..7 {
        retry.failed(now);
        let next = retry.next.unwrap();
        assert!(!retry.due(next - Duration::from_millis(1)));
        assert!(retry.due(next));
        waits.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_etcd_did_not_answer_keeps_the_watch_and_the_view() {
    let Some(e) = start_etcd() else { return };
    let who = ("u".to_string(), "w".to_string());
    let team = Team::named(&config(&e.url, 3), Duration::from_millis(300), who, 1).unwrap();
    let task = tokio::spawn(run(team.clone(), Counted::default()));
    let loads = || team.counts().loads.load(Ordering::Relaxed);
    let until = async |done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done()
    };
    let connected = || team.session.state() == TeamState::Connected;
    assert!(until(&|| connected() && loads() == 1).await, "joined");
    // A keep-alive (every second) finds etcd stopped: unreachable.
    e.stop();
    let unreachable = until(&|| team.session.state() == TeamState::Unreachable).await;
    e.resume();
    assert!(unreachable, "etcd's silence went unnoticed");
    assert!(until(&connected).await, "did not rejoin");
    // The watch went on: a change shows without the farm read again.
    let c = client(&e);
    let value = r#"{"user":"x","workstation":"w","weight":1.0,"want":1,"builds":1}"#;
    c.put("/tcpb/t/brokers/x1", value, 0).await.unwrap();
    let seen = until(&|| team.status().brokers.iter().any(|b| b.id == "x1")).await;
    task.abort();
    assert!(seen, "the change did not show");
    assert_eq!(loads(), 1, "the farm was read again");
}

#[tokio::test]
async fn the_first_read_of_the_farm_waits_no_longer_than_a_call() {
    let Some(e) = start_etcd() else { return };
    let who = ("u".to_string(), "w".to_string());
    let team = Team::named(&config(&e.url, 10), Duration::from_millis(300), who, 1).unwrap();
    // Compiles wait for the first read: etcd silent, it fails in time.
    e.stop();
    let t0 = Instant::now();
    let read = team.load(false).await;
    let took = t0.elapsed();
    e.resume();
    assert!(read.is_err());
    assert!(took < Duration::from_secs(2), "waited {took:?}");
}

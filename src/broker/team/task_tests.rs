//! The team task against a real etcd, with a broker of its own.

use super::*;
use crate::broker::team::etcd::tests::{client, first_lease, start_etcd};
use crate::broker::team::member::{TeamDemand, Told};
use crate::config::{Offline, TeamConfig};

/// A broker whose every reconcile is slow (its demand takes 50 ms), as a
/// busy broker's reconciles are when each makes calls to etcd.
struct Slow;

impl Member for Slow {
    fn demand(&self) -> TeamDemand {
        std::thread::sleep(Duration::from_millis(50));
        TeamDemand::default()
    }
    fn busy_on(&self, _host: &str) -> u32 {
        0
    }
    fn capacity_changed(&self) {}
    fn hosts_changed(&self) {}
    fn told(&self, _found: Vec<Told>) {}
}

fn config(url: &str) -> TeamConfig {
    TeamConfig {
        endpoints: vec![url.to_string()],
        farm: "t".to_string(),
        lease_ttl_s: 10,
        weight: 1.0,
        offline: Offline::Share,
        user: None,
        password_file: None,
        ca: None,
        cert: None,
        key: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_broker_sees_every_change_as_it_comes() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let team = Team::named(
        &config(&e.url),
        Duration::from_secs(5),
        ("u".into(), "w".into()),
        1,
    )
    .unwrap();
    let task = tokio::spawn(run(team.clone(), Slow));
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

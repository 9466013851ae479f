//! The session against a real etcd: kept alive past its TTL, gone after,
//! unreachable while etcd is stopped, back when it returns.

use super::*;
use crate::broker::team::etcd::tests::{client, first_lease, start_etcd};

/// Ticks `s` every period for `d`.
async fn tick_for(s: &Session, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        s.tick().await;
        tokio::time::sleep(s.period()).await;
    }
}

#[tokio::test]
async fn the_lease_lives_while_ticked_and_its_keys_go_with_it() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    first_lease(&c, 10).await;
    let s = Session::new(c.clone(), 2);
    assert_eq!(s.tick().await, TeamState::Connected);
    let lease = s.lease(Instant::now()).expect("a lease");
    assert!(c.create("/tcpb/f/taken/h/0", "me", lease).await.unwrap());
    tick_for(&s, Duration::from_secs(4)).await;
    assert_eq!(
        c.range("/tcpb/f/", 0).await.unwrap().1.len(),
        1,
        "kept alive past its TTL"
    );
    // No more ticks: the claim counts no longer, and etcd drops it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        s.lease(Instant::now()),
        None,
        "not counted past TTL - margin"
    );
    let gone = Instant::now();
    while !c.range("/tcpb/f/", 0).await.unwrap().1.is_empty() {
        assert!(gone.elapsed() < Duration::from_secs(5), "etcd kept it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "RESULT session: key gone {:?} after the lease stopped counting",
        gone.elapsed()
    );
}

#[tokio::test]
async fn a_stopped_etcd_makes_the_session_unreachable_then_it_rejoins() {
    let Some(e) = start_etcd() else { return };
    let c = Etcd::new(std::slice::from_ref(&e.url), Duration::from_millis(300)).unwrap();
    first_lease(&c, 10).await;
    let s = Session::new(c.clone(), 2);
    assert_eq!(s.tick().await, TeamState::Connected);
    e.stop();
    assert_eq!(s.tick().await, TeamState::Unreachable);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.lease(Instant::now()), None, "claims stop counting");
    e.resume();
    let mut state = s.tick().await;
    for _ in 0..20 {
        if s.lease(Instant::now()).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        state = s.tick().await;
    }
    assert!(
        matches!(state, TeamState::Connected | TeamState::Rejoining),
        "{state:?}"
    );
    assert!(s.lease(Instant::now()).is_some(), "back with a live lease");
    let lease = s.lease(Instant::now()).unwrap();
    assert!(c.create("/tcpb/f/taken/h/1", "me", lease).await.unwrap());
    s.end().await.unwrap();
    assert!(
        c.range("/tcpb/f/", 0).await.unwrap().1.is_empty(),
        "revoked with the lease"
    );
}

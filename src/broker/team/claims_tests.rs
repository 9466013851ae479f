//! Tests of `claims.rs` against a real etcd.

use super::*;
use crate::broker::team::etcd::tests::{client, first_lease, free_port, start_etcd};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A want of `n` of host `h`'s `slots`, knowing of no other claim.
fn want(h: &str, slots: u32, n: u32) -> Want {
    Want {
        host: h.to_string(),
        slots,
        want: n,
        taken: BTreeSet::new(),
    }
}

/// `claim` on host `h:3632` of 3 slots, knowing of no other claim.
async fn claim(c: &Claims, etcd: &Etcd, lease: i64, n: u32) -> u32 {
    c.claim(etcd, lease, &mut [want("h:3632", 3, n)])
        .await
        .unwrap();
    c.held("h:3632")
}

/// Gives back `n` of `h:3632`'s slots.
async fn give_back(c: &Claims, etcd: &Etcd, lease: i64, n: u32) {
    let given = c.take_back("h:3632", n);
    let given = [("h:3632".to_string(), given)];
    c.free_all(etcd, lease, &given).await.unwrap();
}

/// The slots broker `id` holds in farm `f`, as its slot keys say.
async fn held_in_etcd(etcd: &Etcd, id: &str) -> Held {
    let (_, kvs) = etcd.range("/tcpb/f/taken/", 0).await.unwrap();
    let mut held = Held::new();
    for (key, _) in kvs.iter().filter(|(_, v)| v == id) {
        let (host, n) = key["/tcpb/f/taken/".len()..].rsplit_once('/').unwrap();
        held.entry(host.to_string())
            .or_default()
            .insert(n.parse().unwrap());
    }
    held
}

/// Slot keys of `host` in etcd.
async fn taken_in_etcd(etcd: &Etcd, host: &str) -> usize {
    let keys = etcd.range(&format!("/tcpb/f/taken/{host}/"), 0).await;
    keys.unwrap().1.len()
}

#[tokio::test]
async fn two_brokers_never_hold_more_than_a_hosts_slots() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let (la, lb) = (first_lease(&c, 10).await, c.grant(10).await.unwrap());
    let (a, b) = (Claims::new("f", "a"), Claims::new("f", "b"));
    assert_eq!(claim(&a, &c, la, 5).await, 3, "at most the slots");
    assert_eq!(claim(&b, &c, lb, 3).await, 0, "none left");
    give_back(&a, &c, la, 2).await;
    assert_eq!(a.held("h:3632"), 1, "two given back");
    assert_eq!(claim(&b, &c, lb, 3).await, 2);
    assert_eq!(a.held("h:3632") + b.held("h:3632"), 3);
    assert_eq!(taken_in_etcd(&c, "h:3632").await, 3);
    // What each holds is in etcd, as it holds it.
    let (ha, hb) = (held_in_etcd(&c, "a").await, held_in_etcd(&c, "b").await);
    assert_eq!((ha["h:3632"].len(), hb["h:3632"].len()), (1, 2));
    assert!(ha["h:3632"].is_disjoint(&hb["h:3632"]));
    // a's workstation dies: its claims go with its lease.
    c.revoke(la).await.unwrap();
    a.forget();
    assert_eq!(claim(&b, &c, lb, 3).await, 3);
    assert_eq!(
        (a.held("h:3632"), taken_in_etcd(&c, "h:3632").await),
        (0, 3)
    );
    assert!(held_in_etcd(&c, "a").await.is_empty());
}

#[tokio::test]
async fn slots_are_claimed_and_freed_in_one_write_each_way() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let (a, b) = (Claims::new("f", "a"), Claims::new("f", "b"));
    let writes = || c.counts().writes.load(Ordering::Relaxed);
    let revision = || async { c.range("/none", 0).await.unwrap().0 };
    let (w0, r0) = (writes(), revision().await);
    assert_eq!(claim(&a, &c, lease, 3).await, 3);
    give_back(&a, &c, lease, 3).await;
    assert_eq!((writes() - w0, revision().await - r0), (2, 2));
    // b believes slot 0 free, but a took it meanwhile: b's call writes
    // nothing, its answer says what is taken, and b gets the other two in
    // a second call.
    assert_eq!(claim(&a, &c, lease, 1).await, 1);
    let (w1, calls1) = (writes(), c.counts().calls.load(Ordering::Relaxed));
    assert_eq!(claim(&b, &c, lease, 3).await, 2);
    let calls = c.counts().calls.load(Ordering::Relaxed) - calls1;
    assert_eq!((writes() - w1, calls), (1, 2));
    assert_eq!(a.held("h:3632") + b.held("h:3632"), 3);
    assert_eq!(taken_in_etcd(&c, "h:3632").await, 3);
    // Three hosts in one call and one write.
    let (w2, r2) = (writes(), revision().await);
    let mut wants = ["x", "y", "z"].map(|h| want(h, 2, 2));
    a.claim(&c, lease, &mut wants).await.unwrap();
    assert_eq!(a.held("x") + a.held("y") + a.held("z"), 6);
    assert_eq!((writes() - w2, revision().await - r2), (1, 1));
    // And given back in one.
    let given: Vec<(String, Vec<u32>)> = ["x", "y", "z"]
        .map(|h| (h.to_string(), a.take_back(h, 2)))
        .to_vec();
    a.free_all(&c, lease, &given).await.unwrap();
    assert_eq!((writes() - w2, revision().await - r2), (2, 2));
    assert_eq!(taken_in_etcd(&c, "x").await, 0);
    assert_eq!(
        held_in_etcd(&c, "a").await.keys().collect::<Vec<_>>(),
        ["h:3632"]
    );
}

/// The next changes `watch` sees (within 5 s).
async fn next(
    watch: &mut crate::broker::team::etcd::Watcher,
) -> Vec<crate::broker::team::etcd::Change> {
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next());
    next.await.expect("a change within 5 s").unwrap()
}

/// The next `n` values of a moves/ key that `watch` sees.
async fn moves_seen(watch: &mut crate::broker::team::etcd::Watcher, n: usize) -> Vec<Moves> {
    let mut out = Vec::new();
    while out.len() < n {
        let changes = next(watch).await;
        let values = changes.iter().filter_map(|c| c.value.as_deref());
        out.extend(values.map(|v| held::decode(v).unwrap()));
    }
    out
}

#[tokio::test]
async fn others_see_a_claim_of_many_slots_as_one_change() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let a = Claims::new("f", "a");
    let end = crate::broker::team::watched_end("f");
    let mut watch = c.watch_span("/tcpb/f/", &end, 0).await.unwrap();
    let mut wants = ["x", "y", "z"].map(|h| want(h, 8, 5));
    a.claim(&c, lease, &mut wants).await.unwrap();
    let held = held_in_etcd(&c, "a").await;
    assert_eq!(
        held.values().map(BTreeSet::len).collect::<Vec<_>>(),
        [5, 5, 5]
    );
    let given: Vec<(String, Vec<u32>)> = vec![("y".into(), a.take_back("y", 5))];
    a.free_all(&c, lease, &given).await.unwrap();
    let claimed = next(&mut watch).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].key, "/tcpb/f/moves/a");
    let moves = held::decode(claimed[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(
        moves,
        Moves {
            add: held.clone(),
            drop: Held::new()
        }
    );
    let freed = next(&mut watch).await;
    assert_eq!(freed.len(), 1, "{freed:?}");
    let moves = held::decode(freed[0].value.as_deref().unwrap()).unwrap();
    let y: Held = held.into_iter().filter(|(h, _)| h == "y").collect();
    assert_eq!(
        moves,
        Moves {
            add: Held::new(),
            drop: y
        }
    );
    // The lease ends: the key goes with the claims.
    c.revoke(lease).await.unwrap();
    let gone = next(&mut watch).await;
    assert_eq!((gone.len(), gone[0].value.as_deref()), (1, None));
}

#[tokio::test]
async fn a_big_claim_goes_in_transactions_etcd_takes() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let a = Claims::new("f", "a");
    // 5 hosts of 64 slots: 64 a round per host, at most 120 a call.
    let mut wants: Vec<Want> = (0..5).map(|i| want(&format!("h{i}"), 64, 64)).collect();
    let calls0 = c.counts().calls.load(Ordering::Relaxed);
    a.claim(&c, lease, &mut wants).await.unwrap();
    let calls = c.counts().calls.load(Ordering::Relaxed) - calls0;
    assert_eq!((a.held_total(), calls), (320, 5));
    let held = held_in_etcd(&c, "a").await;
    assert!(held.values().all(|s| s.len() == 64), "{held:?}");
    let given: Vec<(String, Vec<u32>)> = (0..5)
        .map(|i| format!("h{i}"))
        .map(|h| (h.clone(), a.take_back(&h, 64)))
        .collect();
    a.free_all(&c, lease, &given).await.unwrap();
    assert!(c.range("/tcpb/f/taken/", 0).await.unwrap().1.is_empty());
}

#[tokio::test]
async fn a_release_etcd_did_not_confirm_is_made_with_the_next() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let a = Claims::new("f", "a");
    assert_eq!(claim(&a, &c, lease, 2).await, 2);
    // etcd does not answer (none listens where this client calls).
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gone = Etcd::new(&[dead], Duration::from_millis(300)).unwrap();
    let given = a.take_back("h:3632", 2);
    let r = a
        .free_all(&gone, lease, &[("h:3632".to_string(), given)])
        .await;
    assert!(r.is_err(), "etcd is not there");
    // Whether or not etcd freed them, this broker no longer uses them.
    assert_eq!(a.held("h:3632"), 0);
    assert!(a.unfreed());
    assert_eq!(taken_in_etcd(&c, "h:3632").await, 2, "still in etcd");
    a.free_all(&c, lease, &[]).await.unwrap();
    assert_eq!(taken_in_etcd(&c, "h:3632").await, 0, "freed with the next");
    assert!(held_in_etcd(&c, "a").await.is_empty());
    assert!(!a.unfreed());
}

#[tokio::test]
async fn a_slot_another_broker_took_does_not_fail_the_other_hosts() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let b = Claims::new("f", "b");
    // Another broker took the slot of y that b asks for first, after b's
    // first round (which writes all or nothing) learned what was taken.
    let first = format!("/tcpb/f/taken/y/{}", b.place % 4);
    let mut wants = ["x", "y", "z"].map(|h| want(h, 4, 2));
    let asked: Vec<Asked> = (wants.iter().enumerate())
        .map(|(i, w)| (i, b.free_for(w)))
        .collect();
    assert!(c.create(&first, "a", lease).await.unwrap());
    let mut watch = c.watch("/tcpb/f/moves/", 0).await.unwrap();
    let (calls, writes) = (
        c.counts().calls.load(Ordering::Relaxed),
        c.counts().writes.load(Ordering::Relaxed),
    );
    b.claim_each(&c, lease, &mut wants, &asked).await.unwrap();
    assert_eq!((b.held("x"), b.held("y"), b.held("z")), (2, 0, 2));
    assert!(
        wants[1].taken.contains(&(b.place % 4)),
        "y's answer says so"
    );
    let calls = c.counts().calls.load(Ordering::Relaxed) - calls;
    let writes = c.counts().writes.load(Ordering::Relaxed) - writes;
    assert_eq!(
        (calls, writes),
        (2, 2),
        "the claim, then what y did not get"
    );
    // Its moves/ key said it took all three, then that it did not take y.
    let said = moves_seen(&mut watch, 2).await;
    assert_eq!(said[0].add.keys().collect::<Vec<_>>(), ["x", "y", "z"]);
    assert_eq!(said[1].drop.keys().collect::<Vec<_>>(), ["y"]);
    // The next round, knowing what is taken there, gets y's.
    b.claim(&c, lease, &mut wants).await.unwrap();
    assert_eq!(b.held("y"), 2);
}

#[tokio::test]
async fn a_claim_etcd_did_not_confirm_is_undone_unless_made_again() {
    let Some(e) = start_etcd() else { return };
    let c = client(&e);
    let lease = first_lease(&c, 10).await;
    let a = Claims::new("f", "a");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gone = Etcd::new(&[dead], Duration::from_millis(300)).unwrap();
    let r = a.claim(&gone, lease, &mut [want("h:3632", 3, 2)]).await;
    assert!(r.is_err(), "etcd is not there");
    assert!((a.held("h:3632"), a.unfreed()) == (0, true));
    // The same slots claimed again, for real: the next release must not
    // delete what is now this broker's and in use.
    assert_eq!(claim(&a, &c, lease, 2).await, 2);
    a.free_all(&c, lease, &[]).await.unwrap();
    assert_eq!(
        (a.held("h:3632"), taken_in_etcd(&c, "h:3632").await),
        (2, 2)
    );
    assert!(!a.unfreed());
}

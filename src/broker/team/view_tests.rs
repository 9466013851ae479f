//! Unit tests of `view.rs`.

use super::*;

#[test]
fn keys_of_each_kind_and_deletes() {
    let mut v = View::new("lab");
    v.apply("/tcpb/lab/hosts/b:3632", Some(r#"{"slots":4}"#))
        .unwrap();
    let pub_a = r#"{"user":"ann","workstation":"ws1","weight":1.0,"want":3,"builds":1}"#;
    v.apply("/tcpb/lab/brokers/ann@ws1:7", Some(pub_a)).unwrap();
    v.apply(
        "/tcpb/lab/moves/ann@ws1:7",
        Some(r#"{"add":{"b:3632":"0"}}"#),
    )
    .unwrap();
    v.apply("/tcpb/lab/taken/b:3632/3", Some("bob@ws2:9"))
        .unwrap();
    assert_eq!(v.hosts["b:3632"].slots, 4);
    assert_eq!(v.brokers["ann@ws1:7"].want, 3);
    assert_eq!((v.claimed("b:3632"), v.held_by("ann@ws1:7")), (2, 1));
    assert_eq!(v.taken("b:3632").into_iter().collect::<Vec<_>>(), [0, 3]);
    // A broker's lease ends: its moves/ key goes, and all it held.
    v.apply("/tcpb/lab/moves/ann@ws1:7", None).unwrap();
    v.apply("/tcpb/lab/brokers/ann@ws1:7", None).unwrap();
    assert_eq!((v.claimed("b:3632"), v.brokers.len()), (1, 0));
    assert_eq!(v.holders("b:3632"), [("bob@ws2:9".to_string(), 1)]);
    // Moves that add and drop, seen twice, drops of slots never held,
    // and deletes of keys never seen keep the counts true.
    let moves = "/tcpb/lab/moves/ann@ws1:8";
    for _ in 0..2 {
        v.apply(moves, Some(r#"{"add":{"b:3632":"1-2"}}"#)).unwrap();
    }
    v.apply(moves, Some(r#"{"drop":{"b:3632":"0-1"}}"#))
        .unwrap();
    v.apply(
        "/tcpb/lab/moves/bob@ws2:9",
        Some(r#"{"drop":{"b:3632":"3"}}"#),
    )
    .unwrap();
    v.apply("/tcpb/lab/moves/zed@ws3:1", None).unwrap();
    let counts = |v: &View| (v.held_by("bob@ws2:9"), v.held_on("b:3632", "ann@ws1:8"));
    assert_eq!(counts(&v), (0, 1));
    assert_eq!(v.capacity_of("ann@ws1:8"), 1.0);
    assert_eq!(v.taken("b:3632").into_iter().collect::<Vec<_>>(), [2]);
    v.apply(moves, None).unwrap();
    assert_eq!(
        (counts(&v), v.by_holder.len(), v.taken.len()),
        ((0, 0), 0, 0)
    );
    assert!(v.capacity.is_empty());
}

#[test]
fn hostile_values_are_ignored_and_say_why() {
    let mut v = View::new("lab");
    v.apply("/tcpb/lab/hosts/b", Some(r#"{"slots":4}"#))
        .unwrap();
    for (key, value) in [
        ("/tcpb/lab/hosts/b", r#"{"slots":99999999}"#),
        ("/tcpb/lab/hosts/b", r#"{"slots":0}"#),
        ("/tcpb/lab/hosts/b", r#"{"slots":"four"}"#),
        ("/tcpb/lab/hosts/b", "not json"),
        ("/tcpb/lab/brokers/x", r#"{"user":1}"#),
        (
            "/tcpb/lab/brokers/x",
            r#"{"user":"u","workstation":"w","weight":-1,"want":1,"builds":1}"#,
        ),
        ("/tcpb/lab/moves/x", "not json"),
        ("/tcpb/lab/moves/x", r#"{"add":{"b":"0-99999"}}"#),
        ("/tcpb/lab/moves/x", r#"{"add":{"b":[1,2]}}"#),
        ("/tcpb/lab/taken/b/x", "someone"),
        ("/tcpb/lab/taken/b", "someone"),
        ("/tcpb/lab/taken/b/4000000", "someone"),
        ("/tcpb/lab/future-kind/y", "?"),
        ("/tcpb/other/hosts/b", r#"{"slots":4}"#),
    ] {
        let e = v.apply(key, Some(value)).unwrap_err();
        assert!(e.contains(key), "{e}");
    }
    assert_eq!(v.hosts["b"].slots, 4, "the good value stays");
    assert!(v.brokers.is_empty());
    // A huge want is held to a bound; a claim past the slots counts.
    let huge = r#"{"user":"u","workstation":"w","weight":1,"want":4000000000,"builds":1}"#;
    v.apply("/tcpb/lab/brokers/x", Some(huge)).unwrap();
    assert!(v.brokers["x"].want <= 16 * 1024);
    v.apply("/tcpb/lab/moves/x", Some(r#"{"add":{"b":"1000"}}"#))
        .unwrap();
    assert_eq!(v.claimed("b"), 1);
    // Two brokers saying they hold the same slot both count.
    v.apply("/tcpb/lab/taken/b/1000", Some("y")).unwrap();
    assert_eq!((v.claimed("b"), v.taken("b").len()), (2, 1));
}

#[test]
fn capacity_held_follows_claims_and_speeds() {
    // Random claims, releases, host and speed changes: each holder's
    // kept capacity always equals the sum over its claims.
    let mut v = View::new("lab");
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for _ in 0..3000 {
        let host = format!("h{}", next(5));
        let who = format!("b{}", next(4));
        let (key, value) = match next(10) {
            0 => (
                format!("hosts/{host}"),
                Some(format!(r#"{{"slots":16,"speed":{}}}"#, 1 + next(4))),
            ),
            1 => (
                format!("speeds/{host}"),
                Some(format!(r#"{{"speed":{},"by":"x"}}"#, 1 + next(3))),
            ),
            2 => (format!("speeds/{host}"), None),
            3..=7 => {
                let mut moves = super::held::Moves::default();
                for _ in 0..next(4) {
                    let host = format!("h{}", next(5));
                    let side = if next(2) == 0 {
                        &mut moves.add
                    } else {
                        &mut moves.drop
                    };
                    let slots = side.entry(host).or_default();
                    for _ in 0..next(16) {
                        slots.insert(next(16) as u32);
                    }
                }
                (format!("moves/{who}"), Some(super::held::encode(&moves)))
            }
            8 => (format!("taken/{host}/{}", next(16)), Some(who)),
            _ => (format!("moves/{who}"), None),
        };
        v.apply(&format!("/tcpb/lab/{key}"), value.as_deref())
            .unwrap();
        for id in ["b0", "b1", "b2", "b3"] {
            let counted: f64 = v.holdings(id).map(|(h, n)| v.speed(h) * f64::from(n)).sum();
            assert!((v.capacity_of(id) - counted).abs() < 1e-9, "{id}");
        }
    }
}

#[test]
fn every_kind_the_view_reads_comes_before_the_slot_keys() {
    // The farm's range and watch end where `taken/` begins.
    let mut v = View::new("lab");
    let end = String::from_utf8(crate::broker::team::watched_end("lab")).unwrap();
    for kind in [
        "hosts/", "brokers/", "moves/", "health/", "probers/", "speeds/",
    ] {
        let key = format!("/tcpb/lab/{kind}x");
        assert!(key < end, "{key} is not watched");
        if let Err(e) = v.apply(&key, Some("{")) {
            assert!(!e.contains("not a kind"), "{kind} is a kind the view reads");
        }
    }
}

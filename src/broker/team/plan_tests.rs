use super::*;
use crate::broker::team::share::MARGIN;
use std::collections::{BTreeMap, HashMap};

fn published(user: &str, want: u32) -> Published {
    Published {
        user: user.into(),
        workstation: "ws".into(),
        weight: 1.0,
        want,
        builds: 1,
    }
}

fn need(name: &str, speed: f64, busy: u32, queued: u32) -> Need {
    Need {
        name: name.into(),
        slots: 4,
        speed,
        configured: 1.0,
        busy,
        queued,
        usable: true,
        health: None,
        error: None,
        learned: false,
        listed: true,
    }
}

/// A farm of hosts `names` with 4 slots each, `claims` (host, holder,
/// count) and brokers (id, want).
fn farm(names: &[&str], claims: &[(&str, &str, u32)], brokers: &[(&str, u32)]) -> View {
    let mut v = View::new("f");
    for n in names {
        v.apply(&format!("/tcpb/f/hosts/{n}"), Some(r#"{"slots":4}"#))
            .unwrap();
    }
    let mut next: HashMap<&str, u32> = HashMap::new();
    let mut held: BTreeMap<&str, crate::broker::team::held::Held> = BTreeMap::new();
    for (host, holder, count) in claims {
        let i = next.entry(host).or_default();
        let mine = held.entry(holder).or_default();
        mine.entry(host.to_string())
            .or_default()
            .extend(*i..*i + count);
        *i += count;
    }
    for (holder, add) in held {
        let moves = crate::broker::team::held::Moves {
            add,
            ..Default::default()
        };
        let text = crate::broker::team::held::encode(&moves);
        v.apply(&format!("/tcpb/f/moves/{holder}"), Some(&text))
            .unwrap();
    }
    for (id, want) in brokers {
        let text = serde_json::to_string(&published(id, *want)).unwrap();
        v.apply(&format!("/tcpb/f/brokers/{id}"), Some(&text))
            .unwrap();
    }
    v
}

fn held_in(v: &View, id: &str) -> impl Fn(&str) -> u32 {
    let v = v.clone();
    let id = id.to_string();
    move |h| {
        v.holders(h)
            .iter()
            .find(|(b, _)| *b == id)
            .map_or(0, |x| x.1)
    }
}

#[test]
fn alone_a_queue_claims_the_fastest_free_slots() {
    let v = farm(&["slow", "fast"], &[], &[]);
    let d = published("a", 5);
    let me = Me {
        id: "a",
        demand: &d,
        queued: 5,
    };
    let needs = [need("slow", 1.0, 0, 5), need("fast", 3.0, 0, 5)];
    let mut got = targets(&v, &me, &needs, (&shares(&v, &me), |_| 0), |_| false);
    got.sort();
    assert_eq!(got, [("fast".into(), 4), ("slow".into(), 1)]);
}

#[test]
fn claims_are_kept_while_busy_and_given_back_after_the_linger() {
    let v = farm(&["h"], &[("h", "a", 3)], &[("a", 1)]);
    let d = published("a", 1);
    let me = Me {
        id: "a",
        demand: &d,
        queued: 0,
    };
    let needs = [need("h", 1.0, 1, 0)];
    let held = held_in(&v, "a");
    assert!(
        targets(&v, &me, &needs, (&shares(&v, &me), &held), |_| false).is_empty(),
        "kept for reuse"
    );
    assert_eq!(
        targets(&v, &me, &needs, (&shares(&v, &me), &held), |_| true),
        [("h".into(), 1)],
        "idle ones go, the busy one stays"
    );
}

#[test]
fn above_its_share_while_another_waits_a_broker_gives_back_idle_slots() {
    // a holds all 4 slots, runs 3, and has been served more than the
    // holder's margin ahead of b; b wants 4 and holds none.
    let mut v = farm(&["h"], &[("h", "a", 4)], &[("a", 4), ("b", 4)]);
    v.service.insert("a".into(), MARGIN + 4.0);
    v.service.insert("b".into(), 0.0);
    let d = published("a", 4);
    let me = Me {
        id: "a",
        demand: &d,
        queued: 0,
    };
    let needs = [need("h", 1.0, 3, 0)];
    assert_eq!(
        targets(
            &v,
            &me,
            &needs,
            (&shares(&v, &me), held_in(&v, "a")),
            |_| false
        ),
        [("h".into(), 3)],
        "the idle slot goes at once, the running ones finish"
    );
    // b claims only up to its share of 2, even with a slot free.
    let v = farm(
        &["h"],
        &[("h", "a", 2), ("h", "b", 1)],
        &[("a", 4), ("b", 4)],
    );
    let d = published("b", 4);
    let me = Me {
        id: "b",
        demand: &d,
        queued: 3,
    };
    let needs = [need("h", 1.0, 1, 3)];
    assert_eq!(
        targets(
            &v,
            &me,
            &needs,
            (&shares(&v, &me), held_in(&v, "b")),
            |_| false
        ),
        [("h".into(), 2)]
    );
}

#[test]
fn nothing_is_claimed_past_the_team_slots_or_on_unknown_or_down_hosts() {
    let v = farm(&["h", "down"], &[("h", "b", 3)], &[("b", 3)]);
    let d = published("a", 9);
    let me = Me {
        id: "a",
        demand: &d,
        queued: 9,
    };
    let mut down = need("down", 9.0, 0, 9);
    down.usable = false;
    let needs = [need("h", 1.0, 0, 9), down, need("unknown", 5.0, 0, 9)];
    assert_eq!(
        targets(&v, &me, &needs, (&shares(&v, &me), |_| 0), |_| false),
        [("h".into(), 1)]
    );
}

#[test]
fn equal_brokers_have_equal_shares_across_the_farm() {
    let v = farm(&["h1", "h2", "h3"], &[], &[("a", 12), ("b", 12)]);
    let d = published("a", 12);
    let me = Me {
        id: "a",
        demand: &d,
        queued: 12,
    };
    let all = shares(&v, &me);
    assert_eq!((all.total("a"), all.total("b")), (6, 6));
}

#[test]
fn compiles_running_without_a_claim_are_covered_first() {
    // A new lease: the claims went with the old one, 3 compiles still run.
    let v = farm(&["h"], &[("h", "b", 1)], &[("a", 3), ("b", 1)]);
    let d = published("a", 3);
    let me = Me {
        id: "a",
        demand: &d,
        queued: 0,
    };
    let needs = [need("h", 1.0, 3, 0)];
    assert_eq!(
        targets(&v, &me, &needs, (&shares(&v, &me), |_| 0), |_| true),
        [("h".into(), 3)]
    );
}

#[test]
fn above_its_share_while_another_waits_a_broker_fills_only_its_share() {
    // a holds all 4 slots and runs 4 (and has been for a while: ahead by
    // more than the margin); b waits: a may refill only 2.
    let mut v = farm(&["h"], &[("h", "a", 4)], &[("a", 8), ("b", 4)]);
    v.service
        .insert("a".into(), super::super::share::MARGIN + 1.0);
    let d = published("a", 8);
    let me = Me {
        id: "a",
        demand: &d,
        queued: 4,
    };
    let needs = [need("h", 1.0, 4, 4)];
    assert_eq!(usable(&v, &me, &needs, &shares(&v, &me)), [("h".into(), 2)]);
    // Nobody waits: every claim may be filled.
    let v = farm(&["h"], &[("h", "a", 4)], &[("a", 8)]);
    assert!(usable(&v, &me, &needs, &shares(&v, &me)).is_empty());
}

#[test]
fn demand_is_written_only_when_it_moves_the_shares() {
    let ms = Duration::from_millis;
    let at = |want: u32| Published {
        want,
        ..published("a", 0)
    };
    // Holding 6 of a share of 6.
    let due = |last: &Published, ago: u64, now: &Published| {
        demand_due(Some((last, ms(ago))), now, (6, 6))
    };
    assert!(demand_due(None, &at(12), (0, 0)), "first");
    assert!(due(&at(0), 0, &at(12)), "demand begins");
    assert!(due(&at(12), 0, &at(0)), "demand ends");
    // 12 -> 10 moves nobody's share; 12 -> 5 does (and it no longer waits).
    assert!(!due(&at(12), 900, &at(10)));
    assert!(due(&at(12), 900, &at(5)));
    assert!(!due(&at(12), 100, &at(5)), "down: 500 ms apart");
    // 4 -> 9 does, after 100 ms.
    assert!(!due(&at(4), 50, &at(9)));
    assert!(due(&at(4), 100, &at(9)));
    // Share 3, holding 8: 12 -> 7 says it no longer waits.
    assert!(demand_due(Some((&at(12), ms(900))), &at(7), (8, 3)));
    assert!(!demand_due(Some((&at(12), ms(900))), &at(9), (8, 3)));
    // Only the builds count changed: every 5 s.
    let more = Published {
        builds: 2,
        ..at(12)
    };
    assert!(!due(&at(12), 900, &more));
    assert!(due(&at(12), 5000, &more));
}

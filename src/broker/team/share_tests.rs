use super::*;

fn d(user: &str, weight: f64, want: u32) -> Demand {
    Demand {
        user: user.into(),
        weight,
        want,
        service: 0.0,
        holds: Vec::new(),
    }
}

fn h(speed: f64, slots: u32) -> Slots {
    Slots { speed, slots }
}

/// Each demand's capacity (speed × slots) in `got`.
fn capacity(hosts: &[Slots], got: &[Vec<u32>]) -> Vec<f64> {
    let cap = |g: &Vec<u32>| {
        g.iter()
            .zip(hosts)
            .map(|(n, h)| f64::from(*n) * h.speed)
            .sum()
    };
    got.iter().map(cap).collect()
}

#[test]
fn equal_users_get_equal_capacity_on_a_mixed_farm() {
    // The benchmark's farm: 4x2, 2x2, 1x4; four users: 4 each.
    let farm = [h(4.0, 2), h(2.0, 2), h(1.0, 4)];
    let ds = [
        d("a", 1.0, 9),
        d("b", 1.0, 9),
        d("c", 1.0, 9),
        d("e", 1.0, 9),
    ];
    let got = split(&farm, &ds);
    assert_eq!(capacity(&farm, &got), [4.0, 4.0, 4.0, 4.0], "{got:?}");
}

#[test]
fn a_broker_behind_in_service_gets_the_fast_slot() {
    // Eight brokers, eight slots: two of them get the fast host's slots.
    let farm = [h(4.0, 2), h(2.0, 2), h(1.0, 4)];
    let mut ds: Vec<Demand> = (0..8).map(|i| d(&format!("u{i}"), 1.0, 8)).collect();
    let fast = |ds: &[Demand]| -> Vec<usize> {
        let got = split(&farm, ds);
        (0..8).filter(|i| got[*i][0] > 0).collect()
    };
    assert_eq!(fast(&ds), [0, 1], "equal service: the first in order");
    // 0 and 1 had the fast slots and are ahead: the last two are behind.
    for (i, x) in ds.iter_mut().enumerate() {
        x.service = 10.0 - i as f64;
    }
    assert_eq!(fast(&ds), [6, 7]);
}

#[test]
fn a_holder_keeps_its_slot_until_the_gap_passes_the_margin() {
    let farm = [h(4.0, 1), h(1.0, 1)];
    let mut a = d("a", 1.0, 1);
    a.holds = vec![1, 0];
    let mut b = d("b", 1.0, 1);
    b.holds = vec![0, 1];
    a.service = MARGIN - 0.5;
    let got = split(&farm, &[a.clone(), b.clone()]);
    assert_eq!(got, [[1, 0], [0, 1]], "within the margin: a keeps it");
    a.service = MARGIN + 0.5;
    let got = split(&farm, &[a, b]);
    assert_eq!(got, [[0, 1], [1, 0]], "past it: b's turn");
}

#[test]
fn demand_caps_a_share_and_the_rest_goes_to_others() {
    let farm = [h(1.0, 8)];
    assert_eq!(
        split(&farm, &[d("a", 1.0, 20), d("b", 1.0, 20)]),
        [[4], [4]]
    );
    assert_eq!(split(&farm, &[d("a", 1.0, 20), d("b", 1.0, 2)]), [[6], [2]]);
    assert_eq!(split(&farm, &[d("a", 1.0, 1), d("b", 1.0, 2)]), [[1], [2]]);
}

#[test]
fn weights_set_the_ratio_between_users_and_a_user_splits_between_brokers() {
    let farm = [h(1.0, 9)];
    assert_eq!(
        split(&farm, &[d("a", 2.0, 20), d("b", 1.0, 20)]),
        [[6], [3]]
    );
    let farm = [h(1.0, 8)];
    let got = split(&farm, &[d("a", 1.0, 10), d("a", 1.0, 10), d("b", 1.0, 10)]);
    assert_eq!(got, [[2], [2], [4]]);
}

#[test]
fn never_more_than_the_slots_or_the_demand() {
    let farm = [h(3.0, 2), h(1.0, 5), h(0.5, 3)];
    for want_a in 0..12 {
        for service in [0.0, 3.0, 50.0] {
            let mut ds = [
                d("a", 1.0, want_a),
                d("b", 3.0, 9),
                d("a", 1.0, 4),
                d("c", 0.5, 1),
            ];
            ds[1].service = service;
            ds[2].holds = vec![2, 1, 0];
            let got = split(&farm, &ds);
            for (hi, host) in farm.iter().enumerate() {
                assert!(got.iter().map(|g| g[hi]).sum::<u32>() <= host.slots);
            }
            let total: u32 = got.iter().flatten().sum();
            let wanted: u32 = ds.iter().map(|d| d.want).sum();
            assert_eq!(total, wanted.min(10));
            for (g, dm) in got.iter().zip(&ds) {
                assert!(g.iter().sum::<u32>() <= dm.want);
            }
        }
    }
}

/// The split as first written: every slot scans every broker. `split`
/// must give exactly what this gives.
fn reference(hosts: &[Slots], demands: &[Demand]) -> Vec<Vec<u32>> {
    let n = demands.len();
    let mut out = vec![vec![0u32; hosts.len()]; n];
    if n == 0 {
        return out;
    }
    let weights = per_broker_weights(demands);
    let floor = demands
        .iter()
        .map(|d| d.service)
        .fold(f64::INFINITY, f64::min);
    let mut order: Vec<usize> = (0..hosts.len()).collect();
    order.sort_by(|a, b| hosts[*b].speed.total_cmp(&hosts[*a].speed).then(a.cmp(b)));
    let (mut capacity, mut count) = (vec![0.0f64; n], vec![0u32; n]);
    for h in order {
        let speed = hosts[h].speed.max(1e-9);
        for _ in 0..hosts[h].slots {
            let level = |i: usize| {
                let d = &demands[i];
                let holder = d.holds.get(h).is_some_and(|held| out[i][h] < *held);
                let ahead = if holder { MARGIN } else { 0.0 };
                (d.service - floor - ahead + HORIZON * (capacity[i] + speed)) / weights[i]
            };
            let next = (0..n)
                .filter(|i| count[*i] < demands[*i].want)
                .reduce(|best, i| if level(i) < level(best) { i } else { best });
            let Some(i) = next else { return out };
            out[i][h] += 1;
            count[i] += 1;
            capacity[i] += speed;
        }
    }
    out
}

proptest::proptest! {
    #[test]
    fn the_heap_split_is_the_scanning_split(
        hosts in proptest::collection::vec((1u32..=8, 1u32..=6), 1..8),
        demands in proptest::collection::vec(
            (0u8..3, 1u32..=4, 0u32..=20, 0u32..=40, proptest::collection::vec(0u32..=4, 0..8)),
            1..7,
        ),
    ) {
        let hosts: Vec<Slots> = hosts.iter().map(|(s, n)| h(f64::from(*s) / 2.0, *n)).collect();
        let demands: Vec<Demand> = demands
            .iter()
            .map(|(user, weight, want, service, holds)| Demand {
                user: format!("u{user}"),
                weight: f64::from(*weight) / 2.0,
                want: *want,
                service: f64::from(*service),
                holds: holds.clone(),
            })
            .collect();
        proptest::prop_assert_eq!(split(&hosts, &demands), reference(&hosts, &demands));
    }
}

//! Fair shares of a farm's slots (team mode): water-filling by weight
//! between the users with demand, then between each user's workstations.
//! Pure and deterministic, so every broker that reads the same demands
//! (one revision of etcd's prefix) computes the same shares; the slots
//! left over when shares do not divide evenly go round by `turn`, so the
//! same broker does not always get them.

/// One broker's demand, as it publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// Whose broker it is: shares are fair between users first.
    pub user: String,
    /// The user's share weight (`[team] weight`), positive.
    pub weight: f64,
    /// Slots the broker could use now (its running and queued compiles).
    pub want: u32,
}

/// Slots each of `demands` may hold out of `total`, in the same order:
/// never more than it wants, never more than `total` in all, and as even as
/// the weights allow between users, then between one user's brokers.
/// `turn` rotates who gets the slots that do not divide evenly.
pub fn shares(total: u32, demands: &[Demand], turn: u64) -> Vec<u32> {
    let mut users: Vec<&str> = demands.iter().map(|d| d.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let per_user: Vec<(f64, u32)> = users
        .iter()
        .map(|u| {
            let mine = demands.iter().filter(|d| d.user == *u);
            let weight = mine.clone().map(|d| d.weight).fold(0.0, f64::max);
            let want = mine.map(|d| d.want).fold(0u32, u32::saturating_add);
            (weight, want)
        })
        .collect();
    let user_share = fill(total, &per_user, turn);
    let mut out = vec![0; demands.len()];
    for (u, share) in users.iter().zip(user_share) {
        let idx: Vec<usize> = (0..demands.len())
            .filter(|i| demands[*i].user == *u)
            .collect();
        let wants: Vec<(f64, u32)> = idx.iter().map(|i| (1.0, demands[*i].want)).collect();
        for (i, s) in idx.iter().zip(fill(share, &wants, turn)) {
            out[*i] = s;
        }
    }
    out
}

/// Water-filling: `total` slots, one at a time, each to the claimant with
/// the lowest slots per weight among those that want more; ties go round
/// from `turn`.
fn fill(total: u32, claimants: &[(f64, u32)], turn: u64) -> Vec<u32> {
    let n = claimants.len();
    let mut got = vec![0u32; n];
    if n == 0 {
        return got;
    }
    let start = (turn % n as u64) as usize;
    let wanted: u64 = claimants.iter().map(|c| u64::from(c.1)).sum();
    for _ in 0..u64::from(total).min(wanted) {
        let next = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| got[*i] < claimants[*i].1)
            .min_by(|a, b| {
                let level = |i: usize| f64::from(got[i] + 1) / claimants[i].0.max(1e-9);
                level(*a).total_cmp(&level(*b))
            });
        match next {
            Some(i) => got[i] += 1,
            None => break,
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(user: &str, weight: f64, want: u32) -> Demand {
        Demand {
            user: user.into(),
            weight,
            want,
        }
    }

    #[test]
    fn equal_users_split_evenly_and_demand_caps_a_share() {
        assert_eq!(shares(8, &[d("a", 1.0, 20), d("b", 1.0, 20)], 0), [4, 4]);
        // b wants only 2: a gets the rest.
        assert_eq!(shares(8, &[d("a", 1.0, 20), d("b", 1.0, 2)], 0), [6, 2]);
        // Nobody gets more than it wants, even with slots to spare.
        assert_eq!(shares(8, &[d("a", 1.0, 1), d("b", 1.0, 2)], 0), [1, 2]);
    }

    #[test]
    fn weights_set_the_ratio_between_users() {
        assert_eq!(shares(9, &[d("a", 2.0, 20), d("b", 1.0, 20)], 0), [6, 3]);
    }

    #[test]
    fn a_users_share_is_split_between_its_workstations() {
        // a has two brokers, b one: a's half is split between its two.
        let got = shares(8, &[d("a", 1.0, 10), d("a", 1.0, 10), d("b", 1.0, 10)], 0);
        assert_eq!(got, [2, 2, 4]);
    }

    #[test]
    fn leftover_slots_go_round() {
        let ds = [d("a", 1.0, 10), d("b", 1.0, 10), d("c", 1.0, 10)];
        let first = shares(7, &ds, 0);
        let second = shares(7, &ds, 1);
        assert_eq!(first.iter().sum::<u32>(), 7);
        assert_ne!(first, second, "the odd slot moves");
        assert!(first.iter().all(|s| (2..=3).contains(s)));
    }

    #[test]
    fn never_more_than_the_total_or_the_demand() {
        for total in 0..20 {
            for turn in 0..3 {
                let ds = [
                    d("a", 1.0, 3),
                    d("b", 3.0, 9),
                    d("a", 1.0, 4),
                    d("c", 0.5, 1),
                ];
                let got = shares(total, &ds, turn);
                assert!(got.iter().sum::<u32>() <= total);
                let wanted: u32 = ds.iter().map(|d| d.want).sum();
                assert_eq!(got.iter().sum::<u32>(), total.min(wanted));
                assert!(got.iter().zip(&ds).all(|(g, d)| *g <= d.want));
            }
        }
    }
}

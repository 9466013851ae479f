//! A broker's slot claims in etcd: one key `/tcpb/FARM/slots/HOST/N` per
//! slot it holds (N below the host's slots), made by a create-if-absent
//! transaction bound to its lease, so two brokers can never hold the same
//! slot and a dead broker's claims go with its lease. The claims are kept
//! between compiles; `claim` adds to them, `take_back` and `free_all`
//! return them. Its lock never leaves this module and is never held across a call
//! to etcd.

use super::etcd::{Batch, Etcd, EtcdError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// At most this many slots of one host are asked for in one transaction
/// (etcd takes at most 128 operations in one by default).
const BATCH: usize = 64;
/// Slots freed in one call at most (a transaction holds at most 128
/// operations by default).
const FREE_PER_CALL: usize = 100;
/// Rounds of calls one `claim` makes at most.
const TRIES: usize = 4;
/// Hosts asked for in one call at most (a transaction holds at most 128
/// operations by default).
pub(super) const HOSTS_PER_CALL: usize = 100;

/// A host to claim slots of.
#[derive(Debug, Clone)]
pub struct Want {
    /// Its name.
    pub host: String,
    /// Its slots for the team.
    pub slots: u32,
    /// How many of them this broker should hold.
    pub want: u32,
    /// Slots known to be held (by anyone).
    pub taken: BTreeSet<u32>,
}

/// The slots one broker holds, by host.
pub struct Claims {
    /// `/tcpb/FARM/slots/`.
    prefix: String,
    /// What the broker writes in its keys (who holds the slot).
    me: String,
    held: Mutex<HashMap<String, BTreeSet<u32>>>,
}

impl Claims {
    /// The claims of broker `me` in the team's farm `farm`.
    pub fn new(farm: &str, me: &str) -> Claims {
        Claims {
            prefix: format!("{}slots/", super::prefix(farm)),
            me: me.to_string(),
            held: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeSet<u32>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, host: &str, n: u32) -> String {
        format!("{}{host}/{n}", self.prefix)
    }

    /// Slots of `host` held now.
    pub fn held(&self, host: &str) -> u32 {
        self.lock().get(host).map_or(0, |s| s.len() as u32)
    }

    /// The hosts where slots are held now.
    pub fn hosts(&self) -> Vec<String> {
        let held = self.lock();
        held.iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Slots held now on all hosts.
    pub fn held_total(&self) -> u32 {
        self.lock().values().map(|s| s.len() as u32).sum()
    }

    /// The id this broker's claims carry.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Claims free slots of each host until this broker holds what it
    /// wants there, or no free slot is left. The slots that look free are
    /// asked for in one call for all hosts (one write); where another
    /// broker took one meanwhile, the answer says which are taken now and
    /// the rest are asked for again (at most `TRIES` rounds).
    pub async fn claim(
        &self,
        etcd: &Etcd,
        lease: i64,
        wants: &mut [Want],
    ) -> Result<(), EtcdError> {
        for _ in 0..TRIES {
            let asked: Vec<(usize, Vec<u32>)> = (wants.iter().enumerate())
                .map(|(i, w)| (i, self.free_for(w)))
                .filter(|(_, batch)| !batch.is_empty())
                .collect();
            if asked.is_empty() {
                break;
            }
            for chunk in asked.chunks(HOSTS_PER_CALL) {
                let batches: Vec<(Vec<String>, String)> = (chunk.iter())
                    .map(|(i, b)| {
                        let host = &wants[*i].host;
                        let keys = b.iter().map(|n| self.key(host, *n)).collect();
                        (keys, format!("{}{host}/", self.prefix))
                    })
                    .collect();
                let answers = etcd.create_each(&batches, (&self.me, lease)).await?;
                for ((i, asked), answer) in chunk.iter().zip(answers) {
                    let w = &mut wants[*i];
                    match answer {
                        Batch::Created => self.keep(&w.host, asked),
                        Batch::Taken(now) => w.taken = self.indexes(&w.host, &now),
                    }
                }
            }
        }
        Ok(())
    }

    /// The slots of `w.host` to ask for: free as far as is known, as many
    /// as this broker is short of what it wants there.
    fn free_for(&self, w: &Want) -> Vec<u32> {
        let mine: BTreeSet<u32> = self.lock().get(&w.host).cloned().unwrap_or_default();
        let short = w.want.min(w.slots).saturating_sub(mine.len() as u32) as usize;
        let free = (0..w.slots).filter(|n| !mine.contains(n) && !w.taken.contains(n));
        free.take(short.min(BATCH)).collect()
    }

    /// The slot indexes of `host` among `keys`.
    fn indexes(&self, host: &str, keys: &[String]) -> BTreeSet<u32> {
        let prefix = format!("{}{host}/", self.prefix);
        let index = |k: &String| k.strip_prefix(&prefix)?.parse().ok();
        keys.iter().filter_map(index).collect()
    }

    /// Stops counting up to `n` of `host`'s slots as held (the highest
    /// first) and returns them, to be freed in etcd (`free_all`) or kept after
    /// all (`keep`).
    pub fn take_back(&self, host: &str, n: u32) -> Vec<u32> {
        let mut held = self.lock();
        let Some(mine) = held.get_mut(host) else {
            return Vec::new();
        };
        let given: Vec<u32> = mine.iter().rev().take(n as usize).copied().collect();
        for g in &given {
            mine.remove(g);
        }
        given
    }

    /// Counts slots taken back as held again.
    pub fn keep(&self, host: &str, slots: &[u32]) {
        self.lock()
            .entry(host.to_string())
            .or_default()
            .extend(slots.iter().copied());
    }

    /// Frees slots taken back of several hosts in one transaction (one
    /// write; more only past `FREE_PER_CALL` slots).
    pub async fn free_all(
        &self,
        etcd: &Etcd,
        given: &[(String, Vec<u32>)],
    ) -> Result<(), EtcdError> {
        let keys: Vec<String> = (given.iter())
            .flat_map(|(host, slots)| slots.iter().map(move |n| self.key(host, *n)))
            .collect();
        for batch in keys.chunks(FREE_PER_CALL) {
            etcd.delete_all(batch).await?;
        }
        Ok(())
    }

    /// The lease ended (revoked or expired): every claim went with it.
    pub fn forget(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::team::etcd::tests::{client, first_lease, start_etcd};
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
    async fn give_back(c: &Claims, etcd: &Etcd, n: u32) {
        let given = c.take_back("h:3632", n);
        let given = [("h:3632".to_string(), given)];
        c.free_all(etcd, &given).await.unwrap();
    }

    #[tokio::test]
    async fn two_brokers_never_hold_more_than_a_hosts_slots() {
        let Some(e) = start_etcd() else { return };
        let c = client(&e);
        let (la, lb) = (first_lease(&c, 10).await, c.grant(10).await.unwrap());
        let (a, b) = (Claims::new("f", "a"), Claims::new("f", "b"));
        let in_etcd = || async { c.range("/tcpb/f/slots/h:3632/").await.unwrap().1.len() };
        assert_eq!(claim(&a, &c, la, 5).await, 3, "at most the slots");
        assert_eq!(claim(&b, &c, lb, 3).await, 0, "none left");
        give_back(&a, &c, 2).await;
        assert_eq!(a.held("h:3632"), 1, "two given back");
        assert_eq!(claim(&b, &c, lb, 3).await, 2);
        assert_eq!(a.held("h:3632") + b.held("h:3632"), 3);
        assert_eq!(in_etcd().await, 3);
        // a's workstation dies: its claim goes with its lease.
        c.revoke(la).await.unwrap();
        a.forget();
        assert_eq!(claim(&b, &c, lb, 3).await, 3);
        assert_eq!((a.held("h:3632"), in_etcd().await), (0, 3));
    }

    #[tokio::test]
    async fn slots_are_claimed_and_freed_in_one_write_each_way() {
        let Some(e) = start_etcd() else { return };
        let c = client(&e);
        let lease = first_lease(&c, 10).await;
        let (a, b) = (Claims::new("f", "a"), Claims::new("f", "b"));
        let writes = || c.counts().writes.load(Ordering::Relaxed);
        let revision = || async { c.range("/none").await.unwrap().0 };
        let (w0, r0) = (writes(), revision().await);
        assert_eq!(claim(&a, &c, lease, 3).await, 3);
        give_back(&a, &c, 3).await;
        assert_eq!((writes() - w0, revision().await - r0), (2, 2));
        // b believes slot 0 free, but a took it meanwhile: b's batch fails
        // as a whole, its answer says what is taken, and b gets the other
        // two in a second call.
        assert_eq!(claim(&a, &c, lease, 1).await, 1);
        let (w1, calls1) = (writes(), c.counts().calls.load(Ordering::Relaxed));
        assert_eq!(claim(&b, &c, lease, 3).await, 2);
        let calls = c.counts().calls.load(Ordering::Relaxed) - calls1;
        assert_eq!((writes() - w1, calls), (1, 2));
        assert_eq!(a.held("h:3632") + b.held("h:3632"), 3);
        assert_eq!(c.range("/tcpb/f/slots/h:3632/").await.unwrap().1.len(), 3);
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
        a.free_all(&c, &given).await.unwrap();
        assert_eq!((writes() - w2, revision().await - r2), (2, 2));
        assert!(c.range("/tcpb/f/slots/x/").await.unwrap().1.is_empty());
    }

    #[tokio::test]
    async fn a_slot_given_back_stops_counting_even_if_etcd_does_not_answer() {
        let Some(e) = start_etcd() else { return };
        let c = client(&e);
        let lease = first_lease(&c, 10).await;
        let a = Claims::new("f", "a");
        assert_eq!(claim(&a, &c, lease, 2).await, 2);
        e.stop();
        let quick = Etcd::new(std::slice::from_ref(&e.url), Duration::from_millis(300)).unwrap();
        let given = a.take_back("h:3632", 2);
        let r = a.free_all(&quick, &[("h:3632".to_string(), given)]).await;
        assert!(r.is_err(), "etcd is stopped");
        // Whether or not etcd freed them, this broker no longer uses them.
        assert_eq!(a.held("h:3632"), 0);
        e.resume();
    }
}

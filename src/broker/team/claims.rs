//! A broker's slot claims in etcd: one key `/tcpb/FARM/taken/HOST/N` per
//! slot it holds (N below the host's slots), made by a create-if-absent
//! transaction bound to its lease, so two brokers can never hold the same
//! slot and a dead broker's claims go with its lease; and, put in the
//! same transactions, its key `/tcpb/FARM/moves/ID` saying what each
//! changed (`held`), which is what the other brokers watch. The claims are kept
//! between compiles; `claim` adds to them, `take_back` and `free_all`
//! return them. Its lock never leaves this module and is never held across
//! a call to etcd.

use super::etcd::{Batch, Etcd, EtcdError};
use super::held::{self, Held, Moves};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// At most this many slots of one host are asked for in one round (a
/// transaction holds at most 128 operations by default).
const BATCH: usize = 64;
/// Slots asked for in one all-or-nothing transaction at most: each is a
/// comparison and a put.
const SLOTS_PER_CALL: usize = 120;
/// Hosts asked for in one call at most (each is one operation of the
/// call's transaction).
const HOSTS_PER_CALL: usize = 100;
/// Slots freed in one call at most (a transaction holds at most 128
/// operations by default).
const FREE_PER_CALL: usize = 100;
/// Rounds of calls one `claim` makes at most.
const TRIES: usize = 4;

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
    /// `/tcpb/FARM/taken/`.
    prefix: String,
    /// `/tcpb/FARM/moves/ID`.
    moves_key: String,
    /// What the broker writes in its keys (who holds the slot).
    me: String,
    /// Where among a host's slot indexes it looks first (from `me`).
    place: u32,
    mine: Mutex<Mine>,
}

/// What the lock guards.
#[derive(Default)]
struct Mine {
    /// The slots held, by host.
    held: Held,
    /// Slots whose keys may still exist in etcd though the broker no
    /// longer counts them: a release or a claim whose answer was lost.
    /// Deleted with the next release, if still bound to the broker's lease.
    unfreed: Held,
}

/// Slots asked for of one want (its index in the wants).
type Asked = (usize, Vec<u32>);

impl Claims {
    /// The claims of broker `me` in the team's farm `farm`.
    pub fn new(farm: &str, me: &str) -> Claims {
        let prefix = super::prefix(farm);
        Claims {
            moves_key: format!("{prefix}moves/{me}"),
            prefix: format!("{prefix}{}", super::TAKEN),
            me: me.to_string(),
            place: me.bytes().fold(2166136261u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(16777619)
            }),
            mine: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mine> {
        self.mine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, host: &str, n: u32) -> String {
        format!("{}{host}/{n}", self.prefix)
    }

    /// Slots of `host` held now.
    pub fn held(&self, host: &str) -> u32 {
        self.lock().held.get(host).map_or(0, |s| s.len() as u32)
    }

    /// The hosts where slots are held now.
    pub fn hosts(&self) -> Vec<String> {
        let mine = self.lock();
        (mine.held.iter())
            .filter(|(_, s)| !s.is_empty())
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Slots held now on all hosts.
    pub fn held_total(&self) -> u32 {
        self.lock().held.values().map(|s| s.len() as u32).sum()
    }

    /// The id this broker's claims carry.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether keys wait to be deleted (`free_all` deletes them).
    pub fn unfreed(&self) -> bool {
        !self.lock().unfreed.is_empty()
    }

    /// Claims free slots of each host until this broker holds what it
    /// wants there, or no free slot is left. The slots that look free are
    /// first asked for all at once (`claim_whole`: one write, nothing
    /// written if one was taken meanwhile); where one was, the answer
    /// says which are taken now and the rest are asked for host by host
    /// (`claim_each`, at most `TRIES` rounds in all), so that a slot other
    /// brokers contend for does not fail the others.
    pub async fn claim(
        &self,
        etcd: &Etcd,
        lease: i64,
        wants: &mut [Want],
    ) -> Result<(), EtcdError> {
        for round in 0..TRIES {
            let asked: Vec<Asked> = (wants.iter().enumerate())
                .map(|(i, w)| (i, self.free_for(w)))
                .filter(|(_, batch)| !batch.is_empty())
                .collect();
            if asked.is_empty() {
                break;
            }
            if round == 0 {
                for call in per_call(&asked) {
                    self.claim_whole(etcd, lease, wants, call).await?;
                }
            } else {
                for call in asked.chunks(HOSTS_PER_CALL) {
                    self.claim_each(etcd, lease, wants, call).await?;
                }
            }
        }
        Ok(())
    }

    /// The slots `call` asks for and this broker's `moves/` key saying so,
    /// in one transaction that writes all or nothing.
    async fn claim_whole(
        &self,
        etcd: &Etcd,
        lease: i64,
        wants: &mut [Want],
        call: &[Asked],
    ) -> Result<(), EtcdError> {
        let (batches, add, moves) = self.asking(wants, call);
        let mine = (self.me.as_str(), lease);
        let answers = etcd
            .create_all(&batches, mine, (&self.moves_key, &moves))
            .await;
        let answers = answers.inspect_err(|_| self.unfree(add))?;
        self.answered(wants, call, answers);
        Ok(())
    }

    /// The keys of the slots `call` asks for, one batch per host; the
    /// slots by host; and this broker's `moves/` value adding them.
    fn asking(&self, wants: &[Want], call: &[Asked]) -> (Vec<(Vec<String>, String)>, Held, String) {
        let batches = (call.iter())
            .map(|(i, b)| {
                let host = &wants[*i].host;
                let keys = b.iter().map(|n| self.key(host, *n)).collect();
                (keys, format!("{}{host}/", self.prefix))
            })
            .collect();
        let add: Held = (call.iter())
            .map(|(i, b)| (wants[*i].host.clone(), b.iter().copied().collect()))
            .collect();
        let moves = held::encode(&Moves {
            add: add.clone(),
            drop: Held::new(),
        });
        (batches, add, moves)
    }

    /// Keeps the slots of each host created and learns, of each host
    /// refused, what is taken there: the slots refused.
    fn answered(&self, wants: &mut [Want], call: &[Asked], answers: Vec<Batch>) -> Held {
        let mut refused = Held::new();
        for ((i, asked), answer) in call.iter().zip(answers) {
            let w = &mut wants[*i];
            match answer {
                Batch::Created => self.keep(&w.host, asked),
                Batch::Taken(now) => {
                    w.taken = self.indexes(&w.host, &now);
                    refused.insert(w.host.clone(), asked.iter().copied().collect());
                }
            }
        }
        refused
    }

    /// A call of `claim` after the first round: a create-if-absent
    /// transaction per host of `call`, each taking all its slots or none,
    /// and this broker's `moves/` key saying it took them all, in one
    /// transaction (one write). Where a host's were taken meanwhile, a
    /// second write says so (until then the others count those slots
    /// twice: they claim less, never more). What etcd does not confirm is
    /// deleted, if it was created after all, and said to be dropped with
    /// the next release.
    async fn claim_each(
        &self,
        etcd: &Etcd,
        lease: i64,
        wants: &mut [Want],
        call: &[Asked],
    ) -> Result<(), EtcdError> {
        let (batches, add, moves) = self.asking(wants, call);
        let also = Some((self.moves_key.as_str(), moves.as_str()));
        let answers = etcd.create_each(&batches, (&self.me, lease), also).await;
        let answers = answers.inspect_err(|_| self.unfree(add))?;
        let refused = self.answered(wants, call, answers);
        if refused.is_empty() {
            return Ok(());
        }
        let moves = held::encode(&Moves {
            add: Held::new(),
            drop: refused.clone(),
        });
        let said = etcd.put(&self.moves_key, &moves, lease).await;
        said.inspect_err(|_| self.unfree(refused))
    }

    /// Counts `slots` as possibly in etcd, or said to be held, though this
    /// broker does not hold them: the next release sets that right.
    fn unfree(&self, slots: Held) {
        let mut m = self.lock();
        for (host, slots) in slots {
            m.unfreed.entry(host).or_default().extend(slots);
        }
    }

    /// The slots of `w.host` to ask for: free as far as is known, as many
    /// as this broker is short of what it wants there. Each broker looks
    /// from its own place among the indexes, so two that claim at once
    /// rarely ask for the same slot.
    fn free_for(&self, w: &Want) -> Vec<u32> {
        let mine: BTreeSet<u32> = self.lock().held.get(&w.host).cloned().unwrap_or_default();
        let short = w.want.min(w.slots).saturating_sub(mine.len() as u32) as usize;
        let start = self.place % w.slots.max(1);
        let free = (0..w.slots)
            .map(|i| (start + i) % w.slots)
            .filter(|n| !mine.contains(n) && !w.taken.contains(n));
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
        let mut mine = self.lock();
        let Some(slots) = mine.held.get_mut(host) else {
            return Vec::new();
        };
        let given: Vec<u32> = slots.iter().rev().take(n as usize).copied().collect();
        for g in &given {
            slots.remove(g);
        }
        if slots.is_empty() {
            mine.held.remove(host);
        }
        given
    }

    /// Counts slots taken back as held again.
    pub fn keep(&self, host: &str, slots: &[u32]) {
        if slots.is_empty() {
            return;
        }
        let mut mine = self.lock();
        let held = mine.held.entry(host.to_string()).or_default();
        held.extend(slots.iter().copied());
    }

    /// Frees slots taken back of several hosts, and any earlier release
    /// left undone, with this broker's `moves/` key saying so: one
    /// transaction (one write; more only past `FREE_PER_CALL` slots). What
    /// etcd did not confirm is freed with the next call.
    pub async fn free_all(
        &self,
        etcd: &Etcd,
        lease: i64,
        given: &[(String, Vec<u32>)],
    ) -> Result<(), EtcdError> {
        let mut drop = {
            let mut m = self.lock();
            let mut unfreed = std::mem::take(&mut m.unfreed);
            // A slot held now was claimed again since: its key is this
            // broker's own, in use.
            for (host, slots) in unfreed.iter_mut() {
                if let Some(held) = m.held.get(host) {
                    slots.retain(|n| !held.contains(n));
                }
            }
            unfreed
        };
        for (host, slots) in given {
            drop.entry(host.clone()).or_default().extend(slots);
        }
        let slots: Vec<(&String, u32)> = (drop.iter())
            .flat_map(|(host, slots)| slots.iter().map(move |n| (host, *n)))
            .collect();
        for (i, chunk) in slots.chunks(FREE_PER_CALL).enumerate() {
            let keys: Vec<String> = chunk.iter().map(|(h, n)| self.key(h, *n)).collect();
            let mut moves = Moves::default();
            for (host, n) in chunk {
                moves.drop.entry(host.to_string()).or_default().insert(*n);
            }
            let also = (self.moves_key.as_str(), held::encode(&moves));
            if let Err(e) = etcd.delete_own(&keys, lease, (also.0, &also.1)).await {
                let mut m = self.lock();
                for (host, n) in &slots[i * FREE_PER_CALL..] {
                    m.unfreed.entry(host.to_string()).or_default().insert(*n);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The lease ended (revoked or expired): every claim went with it.
    pub fn forget(&self) {
        let mut mine = self.lock();
        mine.held.clear();
        mine.unfreed.clear();
    }
}

/// `asked` in groups of at most `SLOTS_PER_CALL` slots, one transaction
/// each.
fn per_call(asked: &[Asked]) -> Vec<&[Asked]> {
    let mut out = Vec::new();
    let (mut start, mut n) = (0, 0);
    for (i, (_, slots)) in asked.iter().enumerate() {
        if n + slots.len() > SLOTS_PER_CALL && i > start {
            out.push(&asked[start..i]);
            (start, n) = (i, 0);
        }
        n += slots.len();
    }
    if start < asked.len() {
        out.push(&asked[start..]);
    }
    out
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;

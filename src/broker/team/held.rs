//! What a broker's claims change, as it publishes it in `moves/ID`: the
//! slots one transaction added and dropped, by host, their indexes written
//! as ranges (`{"add": {"b1:3632": "0-5,9"}, "drop": {"b2:3632": "3"}}`).
//! The key is put in the same transaction as the slot keys it creates or
//! deletes (`taken/HOST/N`, which no broker watches): the other brokers
//! learn of a claim of many slots from one watched event, not one per
//! slot, and read the slot keys themselves only when they load the farm.
//! Adding a slot held or dropping one not held changes nothing, so a
//! change seen twice, or a release retried, is harmless.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Slot indexes by host.
pub type Held = BTreeMap<String, BTreeSet<u32>>;

/// One transaction's change to what a broker holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Moves {
    /// Slots claimed.
    pub add: Held,
    /// Slots given back.
    pub drop: Held,
}

/// `Moves` as published (fields another version adds are ignored).
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    add: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    drop: BTreeMap<String, String>,
}

/// `moves` as published.
pub fn encode(moves: &Moves) -> String {
    let wire = Wire {
        add: as_ranges(&moves.add),
        drop: as_ranges(&moves.drop),
    };
    serde_json::to_string(&wire).expect("serialises")
}

/// `value` as published, each index below `crate::limits::MAX_SLOTS`;
/// else why not.
pub fn decode(value: &str) -> Result<Moves, String> {
    let wire: Wire = serde_json::from_str(value).map_err(|e| e.to_string())?;
    Ok(Moves {
        add: from_ranges(wire.add)?,
        drop: from_ranges(wire.drop)?,
    })
}

fn as_ranges(held: &Held) -> BTreeMap<String, String> {
    (held.iter())
        .filter(|(_, slots)| !slots.is_empty())
        .map(|(host, slots)| (host.clone(), ranges(slots)))
        .collect()
}

fn from_ranges(ranges: BTreeMap<String, String>) -> Result<Held, String> {
    let mut held = Held::new();
    for (host, text) in ranges {
        let slots = indexes(&text).map_err(|e| format!("{host}: {e}"))?;
        if !slots.is_empty() {
            held.insert(host, slots);
        }
    }
    Ok(held)
}

/// `slots` as ranges: `0-5,9`.
fn ranges(slots: &BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for &n in slots {
        run = match run {
            Some((first, last)) if n == last + 1 => Some((first, n)),
            Some(done) => {
                out.push(range(done));
                Some((n, n))
            }
            None => Some((n, n)),
        };
    }
    out.extend(run.map(range));
    out.join(",")
}

fn range((first, last): (u32, u32)) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// The indexes `text` (as `ranges` writes them) names.
fn indexes(text: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let number = |s: &str| match s.trim().parse::<u32>() {
            Ok(n) if n < crate::limits::MAX_SLOTS => Ok(n),
            _ => Err(format!(
                "slot index {s:?} (at most {})",
                crate::limits::MAX_SLOTS - 1
            )),
        };
        let (first, last) = (number(first)?, number(last)?);
        if first > last {
            return Err(format!("slot range {part:?} runs backwards"));
        }
        out.extend(first..=last);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(pairs: &[(&str, &[u32])]) -> Held {
        (pairs.iter())
            .map(|(h, s)| (h.to_string(), s.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn moves_go_as_ranges_and_come_back() {
        let add = held(&[("a:3632", &[0, 1, 2, 3, 5, 9, 10]), ("b", &[7]), ("c", &[])]);
        let moves = Moves {
            add: add.clone(),
            drop: held(&[("d", &[1])]),
        };
        let text = encode(&moves);
        assert_eq!(
            text,
            r#"{"add":{"a:3632":"0-3,5,9-10","b":"7"},"drop":{"d":"1"}}"#
        );
        let mut back = moves.clone();
        back.add.remove("c");
        assert_eq!(decode(&text).unwrap(), back);
        assert_eq!(decode(r#"{"later":1}"#).unwrap(), Moves::default());
    }

    #[test]
    fn hostile_moves_are_refused_with_the_reason() {
        for (value, why) in [
            ("[1]", "invalid type"),
            (
                r#"{"add":{"a":"0-4000000000"}}"#,
                "a: slot index \"4000000000\"",
            ),
            (r#"{"drop":{"a":"5-2"}}"#, "runs backwards"),
            (r#"{"add":{"a":"x"}}"#, "slot index \"x\""),
            (r#"{"add":{"a":3}}"#, "invalid type"),
        ] {
            let e = decode(value).unwrap_err();
            assert!(e.contains(why), "{value}: {e}");
        }
    }
}

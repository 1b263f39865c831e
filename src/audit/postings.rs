//! The audit index's key layout: postings, chunks and counters in one
//! fjall keyspace, told apart by their first byte.
//!
//! A subject's posting is `S | pseudonym | id`, one per record. Partners,
//! pilots and purposes are few, so their postings go as one chunk per value
//! and indexer batch: `A|P|U | value | 0 | first id` → the batch's other ids
//! as LEB128 deltas. Counters and markers are `m | name`. Kept apart from
//! [`super::index`] so that the layout can be read (and tested) on its own.

use super::record::{Decision, Record, RecordKind};

/// The value of a posting: the key says it all.
pub(super) const EMPTY: &[u8] = &[];

/// Key of the "indexed up to" marker (after [`META`]).
pub(super) const UPTO: &[u8] = b"indexed_upto";

/// Key of the postings' format (after [`META`]): 2 since partners,
/// pilots and purposes are filed in chunks; an index without it is rebuilt.
pub(super) const FORMAT: &[u8] = b"postings_format";

/// The format this code writes.
pub(super) const POSTINGS_FORMAT: u64 = 2;

/// How statistics are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Per day.
    Day,
    /// Per pilot.
    Pilot,
    /// Per partner (as sender or recipient).
    Partner,
    /// Per purpose.
    Purpose,
}

impl Dim {
    pub(super) fn byte(self) -> u8 {
        match self {
            Self::Day => b'd',
            Self::Pilot => b'p',
            Self::Partner => b'a',
            Self::Purpose => b'u',
        }
    }
}

/// `s | dim | day (10) | value | 0 | decision`: a counter (after [`META`]).
pub(super) fn stat_key(dim: Dim, day: &str, value: &str, decision: u8) -> Vec<u8> {
    let mut k = vec![b's', dim.byte()];
    k.extend_from_slice(day.as_bytes());
    if decision != 0 {
        k.extend_from_slice(value.as_bytes());
        k.push(0);
        k.push(decision);
    }
    k
}

/// Which index a lookup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum By {
    /// Subject pseudonym (32 bytes).
    Subject,
    /// Partner id, as sender or recipient.
    Partner,
    /// Pilot id.
    Pilot,
    /// Purpose id.
    Purpose,
}

impl By {
    /// The first byte of this kind's keys.
    pub(super) fn tag(self) -> u8 {
        match self {
            Self::Subject => b'S',
            Self::Partner => b'A',
            Self::Pilot => b'P',
            Self::Purpose => b'U',
        }
    }
}

/// The first byte of the counters' and markers' keys.
pub(super) const META: u8 = b'm';

/// `META | k`: the key of a counter or marker.
pub(super) fn meta(k: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(k.len() + 1);
    m.push(META);
    m.extend_from_slice(k);
    m
}

/// How much each counter grows with `records` (exchanges only).
pub(super) fn increments<'a>(records: &[&'a Record]) -> std::collections::BTreeMap<Vec<u8>, u64> {
    const DAY_MICROS: i64 = 86_400_000_000;
    // Counted by borrowed parts first; a key is built once per distinct
    // counter, not per record, and a day's name once per day met.
    let mut days: Vec<(i64, String)> = Vec::new();
    let mut inc: std::collections::HashMap<(Dim, usize, &str, u8), u64> =
        std::collections::HashMap::new();
    for r in records
        .iter()
        .filter(|r| r.entry.kind == RecordKind::Exchange)
    {
        let e = &r.entry;
        let n = r.time_micros.div_euclid(DAY_MICROS);
        let day = match days.iter().position(|(d, _)| *d == n) {
            Some(i) => i,
            None => {
                let name = super::record::format_micros(r.time_micros)[..10].to_string();
                days.push((n, name));
                days.len() - 1
            }
        };
        let d = match e.decision {
            Decision::Disclosed => b'D',
            Decision::Refused => b'R',
        };
        let mut add = |dim: Dim, value: &'a str| *inc.entry((dim, day, value, d)).or_default() += 1;
        add(Dim::Day, "");
        add(Dim::Pilot, &e.pilot);
        add(Dim::Purpose, &e.purpose);
        add(Dim::Partner, &e.sender);
        if e.recipient != e.sender {
            add(Dim::Partner, &e.recipient);
        }
    }
    inc.into_iter()
        .map(|((dim, day, value, d), n)| (stat_key(dim, &days[day].1, value, d), n))
        .collect()
}

pub(super) fn key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The prefix of a text key: the text and a 0 byte, so `a` never matches `ab`.
/// A chunk's ids after the first (which its key holds), as LEB128 deltas:
/// ids in one batch are close, so most take a byte.
pub(super) fn encode_chunk(ids: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len());
    for w in ids.windows(2) {
        let mut d = w[1] - w[0];
        while d >= 0x80 {
            out.push((d as u8 & 0x7f) | 0x80);
            d >>= 7;
        }
        out.push(d as u8);
    }
    out
}

/// The ids of a chunk, newest first. A damaged tail is ignored: whatever
/// the index says is checked against the records themselves.
pub(super) fn decode_chunk(first: u64, bytes: &[u8]) -> Vec<u64> {
    let mut ids = vec![first];
    let (mut d, mut shift) = (0u64, 0u32);
    for &b in bytes {
        if shift >= 64 {
            break;
        }
        d |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            let Some(next) = ids.last().and_then(|l| l.checked_add(d)) else {
                break;
            };
            ids.push(next);
            (d, shift) = (0, 0);
        }
    }
    ids.reverse();
    ids
}

/// `tag | value`, and a 0 after a text value so that one value's keys
/// never run into a longer one's (`a` and `ab`).
pub(super) fn prefix(by: By, value: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(value.len() + 2);
    p.push(by.tag());
    p.extend_from_slice(value);
    if by != By::Subject {
        p.push(0);
    }
    p
}

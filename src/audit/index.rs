//! Secondary indexes in sled: by subject pseudonym, partner, pilot and purpose.
//!
//! Everything here can be rebuilt from the segments, so sled's own durability
//! (beta, `sync_file_range`) is not relied on: `indexed_upto` says how far the
//! index is known to reach, and the store catches up from there at start.

use super::record::{Decision, Record, RecordKind};

/// sled page cache of the index. sled counts a cached page at its size in
/// the log on disk, not at its size in memory: the resident memory this cache
/// ends up holding is several times this figure (~250 MiB for 32 MiB with
/// this index's small keys; see bench/README.md).
pub const INDEX_CACHE_BYTES: u64 = 32 << 20;

/// Key of the "indexed up to" marker in the meta tree.
const UPTO: &[u8] = b"indexed_upto";

/// How statistics are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    fn byte(self) -> u8 {
        match self {
            Self::Day => b'd',
            Self::Pilot => b'p',
            Self::Partner => b'a',
            Self::Purpose => b'u',
        }
    }
}

/// `s | dim | day (10) | value | 0 | decision`: a counter in the meta tree.
fn stat_key(dim: Dim, day: &str, value: &str, decision: u8) -> Vec<u8> {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The sled database of indexes.
pub struct Index {
    db: sled::Db,
    subject: sled::Tree,
    partner: sled::Tree,
    pilot: sled::Tree,
    purpose: sled::Tree,
    meta: sled::Tree,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

fn key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The prefix of a text key: the text and a 0 byte, so `a` never matches `ab`.
fn text_prefix(s: &str) -> Vec<u8> {
    let mut p = s.as_bytes().to_vec();
    p.push(0);
    p
}

impl Index {
    /// Opens (or creates) the index database. Fails when another process
    /// holds it: sled allows one process per database.
    pub fn open(path: &std::path::Path) -> sled::Result<Self> {
        let db = sled::Config::new()
            .path(path)
            // Without this sled keeps up to 1 GiB (its default) of tree
            // pages in memory: resident memory grew ~0.9 KiB per record.
            .cache_capacity(INDEX_CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()?;
        Ok(Self {
            subject: db.open_tree("subject")?,
            partner: db.open_tree("partner")?,
            pilot: db.open_tree("pilot")?,
            purpose: db.open_tree("purpose")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// How many records (from id 0) the index holds.
    pub fn indexed_upto(&self) -> sled::Result<u64> {
        Ok(self
            .meta
            .get(UPTO)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Adds records (consecutive ids, continuing from `indexed_upto`).
    pub fn add(&self, records: &[Record]) -> sled::Result<()> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let (mut s, mut pa, mut pi, mut pu) = (
            sled::Batch::default(),
            sled::Batch::default(),
            sled::Batch::default(),
            sled::Batch::default(),
        );
        for r in records {
            let e = &r.entry;
            if let Some(subj) = &e.subject {
                s.insert(key(subj, r.id), &[]);
            }
            pa.insert(key(&text_prefix(&e.sender), r.id), &[]);
            if e.recipient != e.sender {
                pa.insert(key(&text_prefix(&e.recipient), r.id), &[]);
            }
            if !e.pilot.is_empty() {
                pi.insert(key(&text_prefix(&e.pilot), r.id), &[]);
            }
            if !e.purpose.is_empty() {
                pu.insert(key(&text_prefix(&e.purpose), r.id), &[]);
            }
        }
        self.subject.apply_batch(s)?;
        self.partner.apply_batch(pa)?;
        self.pilot.apply_batch(pi)?;
        self.purpose.apply_batch(pu)?;
        // Counters and the marker go in one batch of one tree, which sled
        // applies atomically: a record is counted exactly once, even when a
        // crash makes the store add it again. Index keys above are the same
        // keys when added twice.
        let mut inc: std::collections::BTreeMap<Vec<u8>, u64> = std::collections::BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| r.entry.kind == RecordKind::Exchange)
        {
            let e = &r.entry;
            let day = super::record::format_micros(r.time_micros)[..10].to_string();
            let d = match e.decision {
                Decision::Disclosed => b'D',
                Decision::Refused => b'R',
            };
            let mut add =
                |dim: Dim, value: &str| *inc.entry(stat_key(dim, &day, value, d)).or_default() += 1;
            add(Dim::Day, "");
            add(Dim::Pilot, &e.pilot);
            add(Dim::Purpose, &e.purpose);
            add(Dim::Partner, &e.sender);
            if e.recipient != e.sender {
                add(Dim::Partner, &e.recipient);
            }
        }
        let mut meta = sled::Batch::default();
        for (k, n) in inc {
            let cur = self
                .meta
                .get(&k)?
                .and_then(|v| v.as_ref().try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            meta.insert(k, &(cur + n).to_be_bytes());
        }
        // The marker never claims entries that were lost: sled recovers a
        // prefix of operations, and it comes last.
        meta.insert(UPTO, &(last.id + 1).to_be_bytes());
        self.meta.apply_batch(meta)?;
        Ok(())
    }

    /// Counts of disclosures and refusals per day (`YYYY-MM-DD`, inclusive
    /// bounds) or per pilot, partner or purpose over those days.
    pub fn stats(
        &self,
        by: Dim,
        since_day: &str,
        until_day: &str,
    ) -> sled::Result<std::collections::BTreeMap<String, (u64, u64)>> {
        let mut out: std::collections::BTreeMap<String, (u64, u64)> =
            std::collections::BTreeMap::new();
        let lo = stat_key(by, since_day, "", 0);
        let mut hi = stat_key(by, until_day, "", 0);
        hi.truncate(2 + 10);
        hi.push(0xff);
        for kv in self.meta.range(lo..hi) {
            let (k, v) = kv?;
            let n = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            let day = String::from_utf8_lossy(&k[2..12]).into_owned();
            let rest = &k[12..];
            let (value, decision) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (
                    String::from_utf8_lossy(&rest[..i]).into_owned(),
                    rest.get(i + 1).copied(),
                ),
                None => continue,
            };
            let group = if by == Dim::Day { day } else { value };
            let slot = out.entry(group).or_default();
            match decision {
                Some(b'D') => slot.0 += n,
                Some(b'R') => slot.1 += n,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Drops every entry (the index is rebuilt from the segments).
    pub fn clear(&self) -> sled::Result<()> {
        for t in [
            &self.subject,
            &self.partner,
            &self.pilot,
            &self.purpose,
            &self.meta,
        ] {
            t.clear()?;
        }
        Ok(())
    }

    /// Ids in `[lo, hi)` filed under `value` in index `by`, newest first.
    pub fn ids(
        &self,
        by: By,
        value: &[u8],
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = sled::Result<u64>> + '_ {
        let (tree, prefix) = match by {
            By::Subject => (&self.subject, value.to_vec()),
            By::Partner => (&self.partner, text_prefix(&String::from_utf8_lossy(value))),
            By::Pilot => (&self.pilot, text_prefix(&String::from_utf8_lossy(value))),
            By::Purpose => (&self.purpose, text_prefix(&String::from_utf8_lossy(value))),
        };
        let plen = prefix.len();
        tree.range(key(&prefix, lo)..key(&prefix, hi))
            .rev()
            .map(move |kv| {
                kv.map(|(k, _)| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&k[plen..plen + 8]);
                    u64::from_be_bytes(b)
                })
            })
    }

    /// Writes what sled holds in memory to disk (at shutdown).
    pub fn flush(&self) -> sled::Result<()> {
        self.db.flush().map(|_| ())
    }
}

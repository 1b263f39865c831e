//! Secondary indexes in sled: by subject pseudonym, partner, pilot and purpose.
//!
//! Everything here can be rebuilt from the segments, so sled's own durability
//! (beta, `sync_file_range`) is not relied on: `indexed_upto` says how far the
//! index is known to reach, and the store catches up from there at start.

use super::record::Record;

/// Key of the "indexed up to" marker in the meta tree.
const UPTO: &[u8] = b"indexed_upto";

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
        // The marker goes last: sled recovers a prefix of operations, so the
        // marker never claims entries that were lost.
        self.meta.insert(UPTO, &(last.id + 1).to_be_bytes())?;
        Ok(())
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

//! Secondary indexes in fjall: by subject pseudonym, partner, pilot and purpose.
//!
//! Everything here can be rebuilt from the segments, so the store's own
//! durability is not relied on: a write goes to the operating system, never
//! to the disk with a sync of its own (the segments carry the fsync), and
//! `indexed_upto` says how far the index is known to reach; the store
//! catches up from there at start.
//!
//! fjall is a log-structured merge tree: a write is an append to its journal
//! and an insert into a memtable, flushed and merged by background threads.
//! That suits an index written once per record and read rarely, where sled
//! spent about half of the gateway's CPU rewriting tree pages and kept a
//! page cache that grew with the number of keys. Memory here is bounded by
//! the block cache and the memtables (constants below).
//!
//! A failed write (a full disk) poisons a fjall database: it refuses every
//! later write. The index then drops the database and opens it again from
//! disk on its next write, so that it catches up without a restart once
//! space is back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use super::error::IndexError;
use super::merkle::Hash;
use super::record::{Decision, Record, RecordKind};

/// Block cache of the index database (blocks read back from its tables).
/// Look-ups read a subject's few keys; the cache need not hold the index.
pub const INDEX_CACHE_BYTES: u64 = 8 << 20;

/// Memtable size of each of the five keyspaces: what is written before it
/// is flushed into a table. Five of these, plus one being flushed each, are
/// the most the index holds in memory besides the cache.
pub const INDEX_MEMTABLE_BYTES: u64 = 2 << 20;

/// The value of a posting: the key says it all.
const EMPTY: &[u8] = &[];

/// Key of the "indexed up to" marker in the meta keyspace.
const UPTO: &[u8] = b"indexed_upto";

/// Key of the postings' format in the meta keyspace: 2 since partners,
/// pilots and purposes are filed in chunks; an index without it is rebuilt.
const FORMAT: &[u8] = b"postings_format";

/// The format this code writes.
const POSTINGS_FORMAT: u64 = 2;

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

/// `s | dim | day (10) | value | 0 | decision`: a counter in the meta keyspace.
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

/// One open fjall database and its keyspaces.
struct Store {
    db: Database,
    subject: Keyspace,
    partner: Keyspace,
    pilot: Keyspace,
    purpose: Keyspace,
    meta: Keyspace,
}

/// The nice value of the index's threads: the indexer and fjall's flush and
/// compaction workers yield the processor to the threads that answer
/// partners (whose tail latency they would otherwise add to), and still
/// get their share when the machine is busy.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`] (on Linux a
/// nice value belongs to one thread; threads it starts inherit it).
pub fn run_in_background() {
    if let Err(e) = rustix::process::setpriority_process(None, BACKGROUND_NICE) {
        tracing::debug!(error = %e, "could not lower a background thread's priority");
    }
}

impl Store {
    /// Opens the database from a thread of background priority, so that
    /// the workers fjall starts for it inherit that priority.
    fn open_in_background(path: &Path) -> fjall::Result<Self> {
        std::thread::scope(|s| {
            s.spawn(|| {
                run_in_background();
                Self::open(path)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(fjall::Error::Io(std::io::Error::other(
                    "opening the index panicked",
                )))
            })
        })
    }

    fn open(path: &Path) -> fjall::Result<Self> {
        let db = Database::builder(path)
            .cache_size(INDEX_CACHE_BYTES)
            .open()?;
        // Postings are only ever range-scanned: bloom filters (built at
        // every flush and compaction, pinned in memory for the newest
        // tables) would buy nothing. The counters are point reads.
        let postings = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(INDEX_MEMTABLE_BYTES)
                    .filter_policy(fjall::config::FilterPolicy::disabled())
            })
        };
        Ok(Self {
            subject: postings("subject")?,
            partner: postings("partner")?,
            pilot: postings("pilot")?,
            purpose: postings("purpose")?,
            meta: db.keyspace("meta", || {
                KeyspaceCreateOptions::default().max_memtable_size(INDEX_MEMTABLE_BYTES)
            })?,
            db,
        })
    }

    /// Empties every keyspace, leaving only the postings' format.
    fn reset(&self) -> fjall::Result<()> {
        for t in [
            &self.subject,
            &self.partner,
            &self.pilot,
            &self.purpose,
            &self.meta,
        ] {
            t.clear()?;
        }
        self.meta.insert(FORMAT, POSTINGS_FORMAT.to_be_bytes())
    }

    fn counter(&self, k: &[u8]) -> fjall::Result<u64> {
        Ok(self
            .meta
            .get(k)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Postings, counters and the marker of `records` in one batch, which
    /// fjall applies atomically across keyspaces: a record is counted
    /// exactly once, even when a crash makes the store add it again.
    /// Records the index already holds (below the marker) are skipped, so
    /// adding the same records twice changes nothing.
    fn add<'a>(&self, records: &'a [Record]) -> fjall::Result<()> {
        let upto = self.counter(UPTO)?;
        let records: Vec<&Record> = records.iter().filter(|r| r.id >= upto).collect();
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut b = self.db.batch();
        // Partners, pilots and purposes are few: their postings go as one
        // chunk per value and batch (`value | first id` → the batch's ids),
        // so a record costs one posting (its subject), not five.
        let mut chunks: std::collections::BTreeMap<(By, &str), Vec<u64>> =
            std::collections::BTreeMap::new();
        for r in &records {
            let e = &r.entry;
            if let Some(subj) = &e.subject {
                b.insert(&self.subject, key(subj, r.id), EMPTY);
            }
            let mut file = |by: By, v: &'a str| {
                if !v.is_empty() {
                    chunks.entry((by, v)).or_default().push(r.id);
                }
            };
            file(By::Partner, &e.sender);
            if e.recipient != e.sender {
                file(By::Partner, &e.recipient);
            }
            file(By::Pilot, &e.pilot);
            file(By::Purpose, &e.purpose);
        }
        for ((by, v), ids) in chunks {
            let first = ids[0];
            b.insert(
                self.tree(by),
                key(&text_prefix(v), first),
                encode_chunk(&ids),
            );
        }
        for (k, n) in increments(&records) {
            let cur = self.counter(&k)?;
            b.insert(&self.meta, k, (cur + n).to_be_bytes().as_slice());
        }
        b.insert(&self.meta, UPTO, (last.id + 1).to_be_bytes().as_slice());
        // No durability of its own beyond the operating system's buffers
        // (fjall's default for a batch): the index is rebuilt from the
        // segments, which are synced.
        b.commit()
    }

    fn tree(&self, by: By) -> &Keyspace {
        match by {
            By::Subject => &self.subject,
            By::Partner => &self.partner,
            By::Pilot => &self.pilot,
            By::Purpose => &self.purpose,
        }
    }
}

/// How much each counter grows with `records` (exchanges only).
fn increments(records: &[&Record]) -> std::collections::BTreeMap<Vec<u8>, u64> {
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
    inc
}

/// Removes the sled index an earlier version kept at `path` (sled's `conf`
/// file, no fjall `version` marker): the index is rebuilt from the segments.
fn drop_sled_index(path: &Path) -> Result<(), IndexError> {
    if path.join("conf").is_file() && !path.join("version").exists() {
        tracing::info!("the audit index was kept in sled; rebuilding it in fjall");
        std::fs::remove_dir_all(path).map_err(fjall::Error::Io)?;
    }
    Ok(())
}

/// The fjall database of indexes, reopened after a failed write.
pub struct Index {
    /// Where the database lives, to open it again.
    path: PathBuf,
    /// The open database; `None` only while a reopen failed (and is retried
    /// with the next write).
    store: ArcSwapOption<Store>,
    /// A write failed: fjall has poisoned the database, which refuses every
    /// later write until it is opened again.
    poisoned: AtomicBool,
    /// One reopen at a time.
    reopening: Mutex<()>,
    /// The marker as last written or read: queries ask for it with every
    /// look-up, and only the indexer moves it.
    upto: AtomicU64,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 9);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The prefix of a text key: the text and a 0 byte, so `a` never matches `ab`.
/// A chunk's ids after the first (which its key holds), as LEB128 deltas:
/// ids in one batch are close, so most take a byte.
fn encode_chunk(ids: &[u64]) -> Vec<u8> {
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
fn decode_chunk(first: u64, bytes: &[u8]) -> Vec<u64> {
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

fn text_prefix(s: &str) -> Vec<u8> {
    let mut p = s.as_bytes().to_vec();
    p.push(0);
    p
}

impl Index {
    /// Opens (or creates) the index database. Fails when another process
    /// holds it: fjall allows one process per database.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        drop_sled_index(path)?;
        let store = Store::open_in_background(path)?;
        if store.counter(FORMAT)? != POSTINGS_FORMAT {
            if store.counter(UPTO)? > 0 {
                tracing::info!(
                    "the audit index holds a posting per record and dimension; rebuilding it with chunked postings"
                );
            }
            store.reset()?;
        }
        let upto = store.counter(UPTO)?;
        Ok(Self {
            store: ArcSwapOption::from_pointee(store),
            path: path.to_path_buf(),
            poisoned: AtomicBool::new(false),
            reopening: Mutex::new(()),
            upto: AtomicU64::new(upto),
        })
    }

    /// The open database, for a read.
    fn store(&self) -> Result<Arc<Store>, IndexError> {
        self.store.load_full().ok_or(IndexError::Reopening)
    }

    /// Drops the poisoned database and opens it again from disk: what it
    /// holds is what its journal and tables hold, and the marker says how
    /// far that reaches. Fails (and is tried again with the next write) while
    /// the disk is still full or a reader still holds the old database.
    fn reopen(&self) -> Result<(), IndexError> {
        let _one = self
            .reopening
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        // The old database must be gone (its lock file released) before the
        // new one opens; readers hold it for the length of one look-up.
        drop(self.store.swap(None));
        let store = Store::open_in_background(&self.path)?;
        self.upto.store(store.counter(UPTO)?, Ordering::Release);
        self.store.store(Some(Arc::new(store)));
        self.poisoned.store(false, Ordering::Release);
        tracing::info!("audit index reopened after a failed write");
        Ok(())
    }

    /// Runs a write, reopening the database first when an earlier write
    /// poisoned it, and once more when this one finds it poisoned.
    fn write(&self, op: impl Fn(&Store) -> fjall::Result<()>) -> Result<(), IndexError> {
        for attempt in 0..2 {
            if self.poisoned.load(Ordering::Acquire) {
                self.reopen()?;
            }
            let res = op(&*self.store()?);
            match res {
                Ok(()) => return Ok(()),
                Err(fjall::Error::Poisoned) if attempt == 0 => {
                    self.poisoned.store(true, Ordering::Release);
                }
                Err(e) => {
                    // fjall poisons the database on a failed write.
                    self.poisoned.store(true, Ordering::Release);
                    return Err(e.into());
                }
            }
        }
        Err(fjall::Error::Poisoned.into())
    }

    /// How many records (from id 0) the index holds.
    pub fn indexed_upto(&self) -> Result<u64, IndexError> {
        Ok(self.upto.load(Ordering::Acquire))
    }

    /// Adds records (consecutive ids, continuing from `indexed_upto`; those
    /// below it are already there and skipped).
    pub fn add(&self, records: &[Record]) -> Result<(), IndexError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        self.write(|s| s.add(records))?;
        self.upto.fetch_max(last.id + 1, Ordering::AcqRel);
        Ok(())
    }

    /// Counts of disclosures and refusals per day (`YYYY-MM-DD`, inclusive
    /// bounds) or per pilot, partner or purpose over those days.
    pub fn stats(
        &self,
        by: Dim,
        since_day: &str,
        until_day: &str,
    ) -> Result<std::collections::BTreeMap<String, (u64, u64)>, IndexError> {
        let mut out: std::collections::BTreeMap<String, (u64, u64)> =
            std::collections::BTreeMap::new();
        let lo = stat_key(by, since_day, "", 0);
        let mut hi = stat_key(by, until_day, "", 0);
        hi.truncate(2 + 10);
        hi.push(0xff);
        let iter = self.store()?.meta.range(lo..hi);
        for kv in iter {
            let (k, v) = kv.into_inner()?;
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
    pub fn clear(&self) -> Result<(), IndexError> {
        self.write(Store::reset)?;
        self.upto.store(0, Ordering::Release);
        Ok(())
    }

    /// Removes the subject postings of records whose subject key was
    /// destroyed (retention): a search by pseudonym no longer reaches them.
    /// The other postings stay; the records are still counted and found by
    /// partner, pilot and purpose.
    pub fn remove_subjects(&self, postings: &[(Hash, u64)]) -> Result<(), IndexError> {
        self.write(|s| {
            let mut b = s.db.batch();
            for (subj, id) in postings {
                b.remove(&s.subject, key(subj, *id));
            }
            b.commit()
        })
    }

    /// Ids in `[lo, hi)` filed under `value` in index `by`, newest first.
    /// The iterator reads a snapshot; it does not hold the database open.
    pub fn ids(
        &self,
        by: By,
        value: &[u8],
        lo: u64,
        hi: u64,
    ) -> Box<dyn Iterator<Item = Result<u64, IndexError>>> {
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        if by == By::Subject {
            let plen = value.len();
            let iter = store.tree(by).range(key(value, lo)..key(value, hi)).rev();
            return Box::new(iter.map(move |g| {
                let k = g.key()?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&k[plen..plen + 8]);
                Ok(u64::from_be_bytes(b))
            }));
        }
        // Chunks hold consecutive batches' ids and never overlap: reading
        // back from the last chunk that starts below `hi`, the first chunk
        // that starts below `lo` is the last that can hold any of `lo..hi`.
        let prefix = text_prefix(&String::from_utf8_lossy(value));
        let plen = prefix.len();
        let iter = store
            .tree(by)
            .range(key(&prefix, 0)..key(&prefix, hi))
            .rev();
        let chunks = iter.scan(false, move |done, g| {
            if *done {
                return None;
            }
            Some(g.into_inner().map_err(IndexError::from).map(|(k, v)| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&k[plen..plen + 8]);
                let first = u64::from_be_bytes(b);
                *done = first < lo;
                decode_chunk(first, &v)
            }))
        });
        Box::new(chunks.flat_map(move |c| {
            let (ids, err) = match c {
                Ok(ids) => (ids, None),
                Err(e) => (Vec::new(), Some(Err(e))),
            };
            err.into_iter().chain(
                ids.into_iter()
                    .filter(move |id| (lo..hi).contains(id))
                    .map(Ok),
            )
        }))
    }

    /// Writes the journal to disk (at shutdown; fjall also does when the
    /// database is dropped).
    pub fn flush(&self) -> Result<(), IndexError> {
        Ok(self.store()?.db.persist(fjall::PersistMode::SyncAll)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use crate::audit::record::Entry;

    fn rec(id: u64, pilot: &str, sender: &str) -> Record {
        let mut entry = Entry::exchange(pilot, sender, "dtv", "casusoverleg", "dtv/dossier");
        entry.decision = Decision::Disclosed;
        Record {
            version: 2,
            id,
            // 2026-01-02
            time_micros: 1_767_312_000_000_000,
            entry,
        }
    }

    fn ids(ix: &Index, by: By, v: &str, lo: u64, hi: u64) -> Vec<u64> {
        ix.ids(by, v.as_bytes(), lo, hi)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn newest_first_in_range_and_text_keys_do_not_run_into_each_other() {
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(d.path()).unwrap();
        let rs: Vec<Record> = (0..10)
            .map(|i| rec(i, if i % 2 == 0 { "a" } else { "ab" }, "x"))
            .collect();
        ix.add(&rs).unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 10);
        assert_eq!(ids(&ix, By::Pilot, "a", 0, 10), [8, 6, 4, 2, 0]);
        assert_eq!(ids(&ix, By::Pilot, "ab", 3, 8), [7, 5, 3]);
        assert_eq!(ids(&ix, By::Partner, "x", 8, 20), [9, 8]);
        assert!(ids(&ix, By::Purpose, "casus", 0, 10).is_empty());
    }

    /// A record is counted once, even when it is added again (a crash, or
    /// a write that failed after fjall had taken it).
    /// Postings filed in chunks, one per batch: a range that starts or ends
    /// inside a chunk gets exactly its ids, newest first, from every chunk
    /// it touches and no other.
    #[test]
    fn ranges_across_chunks() {
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(d.path()).unwrap();
        let rs: Vec<Record> = (0..300)
            .map(|i| rec(i, if i % 3 == 0 { "a" } else { "b" }, "x"))
            .collect();
        for batch in rs.chunks(7) {
            ix.add(batch).unwrap();
        }
        for (lo, hi) in [
            (0, 300),
            (5, 9),
            (6, 7),
            (13, 15),
            (0, 1),
            (150, 299),
            (299, 400),
        ] {
            let want: Vec<u64> = (lo..hi.min(300)).rev().filter(|i| i % 3 == 0).collect();
            assert_eq!(ids(&ix, By::Pilot, "a", lo, hi), want, "{lo}..{hi}");
            let want: Vec<u64> = (lo..hi.min(300)).rev().collect();
            assert_eq!(ids(&ix, By::Partner, "dtv", lo, hi), want, "{lo}..{hi}");
        }
        // Ids far apart in one chunk (deltas of several bytes).
        let far = [
            rec(1_000, "c", "x"),
            rec(1_000_000, "c", "x"),
            rec(u64::MAX - 1, "c", "x"),
        ];
        ix.add(&far).unwrap();
        assert_eq!(
            ids(&ix, By::Pilot, "c", 0, u64::MAX),
            [u64::MAX - 1, 1_000_000, 1_000]
        );
        assert_eq!(ids(&ix, By::Pilot, "c", 1_001, u64::MAX - 1), [1_000_000]);
        assert_eq!(
            encode_chunk(&[1, 2, 200, 70_000]),
            [1, 198, 1, 0xa8, 0xa1, 0x04]
        );
        assert_eq!(
            decode_chunk(1, &[1, 198, 1, 0xa8, 0xa1, 0x04]),
            [70_000, 200, 2, 1]
        );
    }

    /// An index written before chunked postings is emptied, to be rebuilt
    /// from the segments.
    #[test]
    fn an_index_of_the_old_format_is_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(d.path()).unwrap();
        ix.add(&[rec(0, "p", "x"), rec(1, "p", "x")]).unwrap();
        ix.store().unwrap().meta.remove(FORMAT).unwrap();
        drop(ix);
        let ix = Index::open(d.path()).unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 0);
        assert!(ids(&ix, By::Pilot, "p", 0, 10).is_empty());
        ix.add(&[rec(0, "p", "x")]).unwrap();
        drop(ix);
        let ix = Index::open(d.path()).unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 1, "kept once in the new format");
    }

    #[test]
    fn adding_again_counts_once() {
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(d.path()).unwrap();
        let rs: Vec<Record> = (0..4).map(|i| rec(i, "p", "x")).collect();
        ix.add(&rs[..3]).unwrap();
        ix.add(&rs).unwrap();
        ix.add(&rs[1..]).unwrap();
        let day = ix.stats(Dim::Day, "2026-01-01", "2026-01-03").unwrap();
        assert_eq!(day["2026-01-02"], (4, 0));
        let partners = ix.stats(Dim::Partner, "2026-01-02", "2026-01-02").unwrap();
        assert_eq!(partners["x"], (4, 0));
        assert_eq!(partners["dtv"], (4, 0));
        assert_eq!(ix.indexed_upto().unwrap(), 4);
    }

    /// An index left by sled (an earlier version) is dropped, to be rebuilt.
    #[test]
    fn a_sled_index_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("conf"), "segment_size: 524288").unwrap();
        std::fs::write(d.path().join("db"), [0u8; 64]).unwrap();
        let ix = Index::open(d.path()).unwrap();
        assert!(!d.path().join("conf").exists());
        assert_eq!(ix.indexed_upto().unwrap(), 0);
        ix.add(&[rec(0, "p", "x")]).unwrap();
        drop(ix);
        // fjall's own directory is kept.
        let ix = Index::open(d.path()).unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 1);
    }

    /// After a failed write the database is opened again from disk; what
    /// was written before is there, and writing goes on.
    #[test]
    fn reopens_after_a_failed_write() {
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(d.path()).unwrap();
        let rs: Vec<Record> = (0..6).map(|i| rec(i, "p", "x")).collect();
        ix.add(&rs[..3]).unwrap();
        ix.poisoned.store(true, Ordering::Release);
        ix.add(&rs[3..]).unwrap();
        assert!(!ix.poisoned.load(Ordering::Acquire));
        assert_eq!(ix.indexed_upto().unwrap(), 6);
        assert_eq!(ids(&ix, By::Pilot, "p", 0, 6), [5, 4, 3, 2, 1, 0]);
        // While a reader holds the old database it cannot be reopened; the
        // write fails, and the next one succeeds.
        ix.poisoned.store(true, Ordering::Release);
        let held = ix.store().unwrap();
        assert!(ix.add(&[rec(6, "p", "x")]).is_err());
        drop(held);
        ix.add(&[rec(6, "p", "x")]).unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 7);
        ix.clear().unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 0);
    }
}

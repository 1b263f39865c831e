//! Secondary indexes in fjall: by subject pseudonym, partner, pilot and purpose.
//!
//! Everything here can be rebuilt from the segments, so the store's own
//! durability is not relied on: a write goes to the operating system, never
//! to the disk with a sync of its own (the segments carry the fsync), and
//! `indexed_upto` says how far the index is known to reach; the store
//! catches up from there at start.
//!
//! fjall is a log-structured merge tree: a write is an append to its journal
//! and an insert into a memtable, flushed and merged by a background worker.
//! That suits an index written once per record and read rarely, where sled
//! spent about half of the gateway's CPU rewriting tree pages and kept a
//! page cache that grew with the number of keys. Memory here is bounded by
//! the block cache and the memtables (constants below).
//!
//! A failed write (a full disk) poisons a fjall database: it refuses every
//! later write. The index then drops the database and opens it again from
//! disk on its next write, so that it catches up without a restart once
//! space is back.
//!
//! The gateway does not wait for the index at its start: the indexer thread
//! opens it ([`Index::deferred`], [`Index::ensure_open`]), since after a
//! crash under load fjall replays seconds of journal first. Until then the
//! index reaches no record, queries scan, and statistics say to try again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;

use super::error::IndexError;
use super::merkle::Hash;
pub use super::postings::{By, Dim};
use super::postings::{FORMAT, POSTINGS_FORMAT, UPTO, decode_chunk, key, meta, prefix, stat_key};
use super::record::Record;

mod store;
pub use store::{INDEX_CACHE_BYTES, INDEX_MEMTABLE_BYTES};
use store::{Store, drop_sled_index};

/// The nice value of the index's threads: the indexer and fjall's flush and
/// compaction worker yield the processor to the threads that answer
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

/// Opens the index's database from a thread of background priority, so
/// that the worker fjall starts for it inherits that priority.
fn open_in_background(path: &Path) -> fjall::Result<Store> {
    std::thread::scope(|s| {
        s.spawn(|| {
            run_in_background();
            Store::open(path)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(fjall::Error::Io(std::io::Error::other(
                "opening the index panicked",
            )))
        })
    })
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
    /// Opened at least once: the first open checks the index against
    /// `start`, later ones (after a failed write) need not.
    opened: AtomicBool,
    /// The log's size when this index was made, before the gateway wrote
    /// anything: the first open (whoever makes it, however late) empties an
    /// index that claims more. Checked against the size at the open
    /// instead, records written meanwhile would hide the excess, and the
    /// index's postings of the old records would stand for the new ones.
    start: u64,
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

impl Index {
    /// Opens (or creates) the index database. Fails when another process
    /// holds it: fjall allows one process per database.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let ix = Self::deferred(path, u64::MAX);
        ix.ensure_open()?;
        Ok(ix)
    }

    /// The index of `path` for a log of `size` records, not opened yet:
    /// [`Self::ensure_open`] or the first write opens it (the indexer does,
    /// behind a gateway that already serves: opening replays fjall's
    /// journal, seconds after a crash under load), and empties it when it
    /// claims more than `size` records (a log restored from an older copy).
    /// Until then it reaches no record and answers look-ups with
    /// [`IndexError::Reopening`].
    pub fn deferred(path: &Path, size: u64) -> Self {
        Self {
            store: ArcSwapOption::empty(),
            path: path.to_path_buf(),
            poisoned: AtomicBool::new(true),
            opened: AtomicBool::new(false),
            start: size,
            reopening: Mutex::new(()),
            upto: AtomicU64::new(0),
        }
    }

    /// Opens the database if it is not open (or was poisoned). At the
    /// first open, an index that claims more records than the log had when
    /// it was made is emptied before anyone can read it, to be rebuilt.
    pub fn ensure_open(&self) -> Result<(), IndexError> {
        if self.poisoned.load(Ordering::Acquire) {
            self.reopen()?;
        }
        Ok(())
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
        let failed = self.store.swap(None).is_some();
        let size = if self.opened.load(Ordering::Acquire) {
            u64::MAX
        } else {
            self.start
        };
        drop_sled_index(&self.path)?;
        let store = open_in_background(&self.path)?;
        let upto = store.counter(UPTO)?;
        if store.counter(FORMAT)? != POSTINGS_FORMAT {
            if upto > 0 {
                tracing::info!("the audit index is of an earlier format; rebuilding it");
            }
            store.reset()?;
        } else if upto > size {
            tracing::warn!(
                indexed = upto,
                size,
                "the audit index is ahead of the log; rebuilding it"
            );
            store.reset()?;
        }
        self.upto.store(store.counter(UPTO)?, Ordering::Release);
        self.store.store(Some(Arc::new(store)));
        self.poisoned.store(false, Ordering::Release);
        self.opened.store(true, Ordering::Release);
        if failed {
            tracing::info!("audit index reopened after a failed write");
        }
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
        let iter = self.store()?.ix.range(meta(&lo)..meta(&hi));
        for kv in iter {
            let (k, v) = kv.into_inner()?;
            let k = &k[1..];
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
                b.remove(&s.ix, key(&prefix(By::Subject, subj), *id));
            }
            s.commit(b)
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
        let prefix = prefix(by, value);
        let plen = prefix.len();
        if by == By::Subject {
            let iter = store.ix.range(key(&prefix, lo)..key(&prefix, hi)).rev();
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
        let iter = store.ix.range(key(&prefix, 0)..key(&prefix, hi)).rev();
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
    use crate::audit::postings::encode_chunk;
    use crate::audit::record::{Decision, Entry};
    use fjall::{Database, KeyspaceCreateOptions};

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
        ix.store().unwrap().ix.remove(meta(FORMAT)).unwrap();
        drop(ix);
        let ix = Index::open(d.path()).unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 0);
        assert!(ids(&ix, By::Pilot, "p", 0, 10).is_empty());
        ix.add(&[rec(0, "p", "x")]).unwrap();
        drop(ix);
        let ix = Index::open(d.path()).unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 1, "kept once in the new format");
    }

    /// The keyspaces of the format with one keyspace per kind are removed:
    /// their journal would otherwise be replayed at every start.
    #[test]
    fn the_old_keyspaces_are_removed() {
        let d = tempfile::tempdir().unwrap();
        {
            let db = Database::builder(d.path()).open().unwrap();
            let old = db
                .keyspace("subject", KeyspaceCreateOptions::default)
                .unwrap();
            old.insert(b"k", b"v").unwrap();
        }
        let ix = Index::open(d.path()).unwrap();
        ix.add(&[rec(0, "p", "x")]).unwrap();
        drop(ix);
        let db = Database::builder(d.path()).open().unwrap();
        assert!(!db.keyspace_exists("subject"));
        assert!(db.keyspace_exists("index"));
    }

    /// A deferred index reaches no record before its first open, which
    /// checks it against the log: one that claims more records than the log
    /// has (a log restored from an older copy) starts afresh.
    #[test]
    fn the_first_open_checks_the_index_against_the_log() {
        let d = tempfile::tempdir().unwrap();
        let rs: Vec<Record> = (0..5).map(|i| rec(i, "p", "x")).collect();
        Index::open(d.path()).unwrap().add(&rs).unwrap();
        let ix = Index::deferred(d.path(), 5);
        assert_eq!(ix.indexed_upto().unwrap(), 0);
        assert!(matches!(
            ix.stats(Dim::Day, "2026-01-01", "2026-01-03"),
            Err(IndexError::Reopening)
        ));
        ix.ensure_open().unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 5, "a log of 5 keeps its index");
        drop(ix);
        let ix = Index::deferred(d.path(), 3);
        ix.ensure_open().unwrap();
        assert_eq!(
            ix.indexed_upto().unwrap(),
            0,
            "an index ahead of the log is emptied"
        );
        assert!(ids(&ix, By::Pilot, "p", 0, 10).is_empty());
    }

    /// Counters per day and value, across days in one batch (a day's name
    /// is made once, the counts by parts), refusals apart.
    #[test]
    fn counters_per_day_and_value() {
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(d.path()).unwrap();
        let mut rs: Vec<Record> = (0..6)
            .map(|i| rec(i, if i < 4 { "a" } else { "b" }, "x"))
            .collect();
        for r in &mut rs[3..] {
            r.time_micros += 86_400_000_000;
        }
        rs[5].entry.decision = Decision::Refused;
        ix.add(&rs).unwrap();
        let day = ix.stats(Dim::Day, "2026-01-01", "2026-01-31").unwrap();
        assert_eq!(day["2026-01-02"], (3, 0));
        assert_eq!(day["2026-01-03"], (2, 1));
        let pilots = ix.stats(Dim::Pilot, "2026-01-01", "2026-01-31").unwrap();
        assert_eq!((pilots["a"], pilots["b"]), ((4, 0), (1, 1)));
        let one_day = ix.stats(Dim::Pilot, "2026-01-03", "2026-01-03").unwrap();
        assert_eq!((one_day["a"], one_day["b"]), ((1, 0), (1, 1)));
    }

    /// Retention removes postings on its own thread, and may come before
    /// the indexer has opened the index (`ketenpoort audit retention` on a
    /// stopped gateway runs at once): the write opens the index itself,
    /// with the same check against the log as the indexer's open.
    #[test]
    fn a_write_before_the_first_open_opens_the_index_checked() {
        let d = tempfile::tempdir().unwrap();
        let rs: Vec<Record> = (0..5)
            .map(|i| {
                let mut r = rec(i, "p", "x");
                r.entry.subject = Some([b'7'; 32]);
                r
            })
            .collect();
        Index::open(d.path()).unwrap().add(&rs).unwrap();
        let ix = Index::deferred(d.path(), 5);
        ix.remove_subjects(&[([b'7'; 32], 1)]).unwrap();
        assert_eq!(ids(&ix, By::Subject, &"7".repeat(32), 0, 5), [4, 3, 2, 0]);
        drop(ix);
        let ix = Index::deferred(d.path(), 3);
        ix.remove_subjects(&[([b'7'; 32], 2)]).unwrap();
        assert_eq!(ix.indexed_upto().unwrap(), 0, "an index ahead is emptied");
        assert!(ids(&ix, By::Subject, &"7".repeat(32), 0, 5).is_empty());
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

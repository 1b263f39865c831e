//! The fjall database behind the index, and how it is driven (why fjall:
//! the index module). This module owns the choices that keep it bounded and
//! quiet on a small machine: one worker, memtables rotated by the index itself, bloom filters
//! off, and the batch that files a record's postings and counters at once.

use std::path::Path;

use fjall::{AbstractTree, Database, Keyspace, KeyspaceCreateOptions};

use super::super::error::IndexError;
use super::super::postings::{
    By, EMPTY, FORMAT, POSTINGS_FORMAT, UPTO, encode_chunk, increments, key, meta, prefix,
};
use super::super::record::Record;

/// Block cache of the index database (blocks read back from its tables).
/// Look-ups read a subject's few keys; the cache need not hold the index.
pub const INDEX_CACHE_BYTES: u64 = 8 << 20;

/// Memtable size of the index's keyspace: what is written before it is
/// rotated out to be flushed into a table. Besides the cache, the index
/// holds at most five of these in memory: the one being written and four
/// rotated ones waiting for the worker (fjall halts writes at four).
pub const INDEX_MEMTABLE_BYTES: u64 = 2 << 20;

/// The memtable size at which fjall would rotate on its own, out of reach
/// since the index rotates at [`INDEX_MEMTABLE_BYTES`] itself
/// ([`Store::commit`]).
const ROTATE_CEILING: u64 = 1 << 30;

/// One open fjall database and its one keyspace.
///
/// Postings of every kind and the counters share one keyspace, told apart
/// by their first byte ([`By::tag`], [`META`]). fjall deletes a journal only
/// once every keyspace written in it has flushed its memtable; a keyspace
/// of its own for the rarely written kinds (the counters, the chunks) would
/// keep journals alive up to fjall's limit (512 MiB), all replayed at the
/// next start.
pub(super) struct Store {
    pub(super) db: Database,
    pub(super) ix: Keyspace,
}

/// The keyspaces of the format before this one, removed when found.
const OLD_KEYSPACES: [&str; 5] = ["subject", "partner", "pilot", "purpose", "meta"];

impl Store {
    pub(super) fn open(path: &Path) -> fjall::Result<Self> {
        // One worker. With two, fjall 3.1's worker 0 hands every compaction
        // back to the queue while the other compacts, and takes it again at
        // once: it spins for as long as a compaction runs, which grows with
        // the index, and its preemptions on a small machine showed in the
        // partners' tail latency. A lone worker has a trap of its own: when
        // a memtable outgrows its size, every write asks the worker to
        // rotate it (a message on the worker's own bounded queue, 1,000);
        // after a long compaction the worker rotates and queues the flush
        // with a blocking send on that full queue, waiting on itself for
        // good. So fjall never rotates on its own here (its threshold,
        // [`ROTATE_CEILING`], is out of reach): [`Store::commit`] rotates
        // from the writing thread, which sends one flush per rotation and
        // is held back by fjall's halt at four unflushed memtables.
        let db = Database::builder(path)
            .cache_size(INDEX_CACHE_BYTES)
            .worker_threads(1)
            .open()?;
        for name in OLD_KEYSPACES {
            if db.keyspace_exists(name) {
                tracing::info!(
                    keyspace = name,
                    "removing a keyspace of the audit index's earlier format; the index is rebuilt from the segments"
                );
                let old = db.keyspace(name, KeyspaceCreateOptions::default)?;
                db.delete_keyspace(old)?;
            }
        }
        // Postings are only ever range-scanned: bloom filters (built at
        // every flush and compaction, pinned in memory for the newest
        // tables) would buy nothing. The counters' point reads are a few
        // per batch of the indexer.
        let ix = db.keyspace("index", || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(ROTATE_CEILING)
                .filter_policy(fjall::config::FilterPolicy::disabled())
        })?;
        Ok(Self { ix, db })
    }

    /// Commits a batch, then rotates the memtable once it holds
    /// [`INDEX_MEMTABLE_BYTES`] (see [`Store::open`]: fjall is not left to
    /// do it). The commit itself waits while four rotated memtables are
    /// still unflushed, which bounds the memory the index holds.
    ///
    /// `Keyspace::rotate_memtable` is public but hidden from fjall's docs
    /// (its own tests use it); Cargo.lock pins the version it is read
    /// against, and `a_fast_writer_does_not_stop_the_flushes` fails if a
    /// new version stops rotating here.
    pub(super) fn commit(&self, b: fjall::OwnedWriteBatch) -> fjall::Result<()> {
        b.commit()?;
        if self.ix.tree.active_memtable().size() >= INDEX_MEMTABLE_BYTES {
            self.ix.rotate_memtable()?;
        }
        Ok(())
    }

    /// Empties the index, leaving only the postings' format.
    pub(super) fn reset(&self) -> fjall::Result<()> {
        self.ix.clear()?;
        self.ix.insert(meta(FORMAT), POSTINGS_FORMAT.to_be_bytes())
    }

    pub(super) fn counter(&self, k: &[u8]) -> fjall::Result<u64> {
        Ok(self
            .ix
            .get(meta(k))?
            .and_then(|v| v.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Postings, counters and the marker of `records` in one batch, which
    /// fjall applies atomically: a record is counted
    /// exactly once, even when a crash makes the store add it again.
    /// Records the index already holds (below the marker) are skipped, so
    /// adding the same records twice changes nothing.
    pub(super) fn add<'a>(&self, records: &'a [Record]) -> fjall::Result<()> {
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
                b.insert(&self.ix, key(&prefix(By::Subject, subj), r.id), EMPTY);
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
                &self.ix,
                key(&prefix(by, v.as_bytes()), first),
                encode_chunk(&ids),
            );
        }
        for (k, n) in increments(&records) {
            let cur = self.counter(&k)?;
            b.insert(&self.ix, meta(&k), (cur + n).to_be_bytes().as_slice());
        }
        b.insert(&self.ix, meta(UPTO), (last.id + 1).to_be_bytes().as_slice());
        // No durability of its own beyond the operating system's buffers
        // (fjall's default for a batch): the index is rebuilt from the
        // segments, which are synced.
        self.commit(b)
    }
}

/// Removes the sled index an earlier version kept at `path` (sled's `conf`
/// file, no fjall `version` marker): the index is rebuilt from the segments.
pub(super) fn drop_sled_index(path: &Path) -> Result<(), IndexError> {
    if path.join("conf").is_file() && !path.join("version").exists() {
        tracing::info!("the audit index was kept in sled; rebuilding it in fjall");
        std::fs::remove_dir_all(path).map_err(fjall::Error::Io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    /// Many small batches, as the indexer writes under load or in a
    /// rebuild: fjall's memtables must keep being flushed, not pile up in
    /// memory (at most four rotated and unflushed, and the one being
    /// written), and its lone worker must not wait on itself (see
    /// [`Store::open`]; a writer left to fjall's own rotation stops here
    /// for good, reported after `HUNG`).
    #[test]
    fn a_fast_writer_does_not_stop_the_flushes() {
        const HUNG: std::time::Duration = std::time::Duration::from_secs(300);
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut most = 0;
            for n in 0..60_000u64 {
                let mut b = s.db.batch();
                for _ in 0..20 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b.insert(&s.ix, x.to_be_bytes(), n.to_be_bytes());
                }
                s.commit(b).unwrap();
                most = most.max(s.db.write_buffer_size());
            }
            done.send(most).unwrap();
        });
        let most = finished
            .recv_timeout(HUNG)
            .expect("the writer stopped: fjall's worker waits on itself");
        assert!(
            most <= 6 * INDEX_MEMTABLE_BYTES,
            "{most} bytes unflushed at most"
        );
    }
}

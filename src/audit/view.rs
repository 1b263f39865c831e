//! The read side of the store: records by id, tree nodes, the head, proofs,
//! queries and statistics.
//!
//! Reads must never wait for the writer, and the writer must never wait for a
//! reader, so the view reads the files the writer appends to (segments, the
//! offsets cache, the node cache per level) through handles of its own, and
//! only sees the log up to the head the writer publishes after each batch is
//! durable and cached. Tools beside a running gateway open a view read-only,
//! without the writer and without the index that the gateway holds.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::checkpoint::{self, Checkpoint, Verifier};
pub use super::common::{Filter, Head, Page};
use super::error::{AuditError, IndexError, LogDamage, OutOfRange, ReadError};
use super::index::{By, Dim, Index};
use super::merkle::{self, Hash, Nodes};
use super::options::{MAX_PAGE, MAX_UNINDEXED_SCAN, Options};
use super::pg::PgLog;
use super::record::Record;
use super::segment;

/// Which checkpoint partners are shown as the log's state.
#[derive(Debug, Clone, Default)]
pub(super) enum Published {
    /// No witnesses: the latest signed checkpoint.
    #[default]
    Latest,
    /// Witnesses are configured: the newest checkpoint that reached its
    /// quorum of cosignatures (size and note with the cosignature lines),
    /// none before the first did.
    Witnessed(Option<(u64, String)>),
}

/// Read access to the log: records by id, tree nodes, head, queries.
pub struct View {
    /// The store's folder; only to tell views apart in debug output.
    pub(super) dir: PathBuf,
    /// Read handles of the segments with the id of their first record, in
    /// order; the writer pushes one when it rolls to a new segment.
    pub(super) segments: RwLock<Vec<(u64, Arc<File>)>>,
    /// The offsets cache: where record `id` starts in its segment, 8 bytes
    /// per record, so a read by id is two reads and no scan (`None` on
    /// PostgreSQL).
    pub(super) offsets: Option<File>,
    /// The node cache, one file per tree level (32 bytes per node), so
    /// proofs and roots are reads, not rehashing; the writer pushes a level
    /// when the tree grows one.
    pub(super) levels: RwLock<Vec<File>>,
    /// How far readers may go: the writer publishes it once a batch is
    /// durable and its caches are written.
    pub(super) head: RwLock<Head>,
    /// The newest signed checkpoint, as the writer made or found it.
    pub(super) latest: RwLock<Option<Checkpoint>>,
    /// The newest signed checkpoint again, for those who wait for the next
    /// one (the witnessing tasks); holds only the newest, so a slow reader
    /// never makes anything queue up.
    pub(super) signed: watch::Sender<Option<Checkpoint>>,
    /// The checkpoint partners are shown.
    pub(super) published: RwLock<Published>,
    /// The fjall indexes for queries and statistics; `None` in a read-only
    /// view beside a running gateway, which holds the database's lock.
    pub(super) index: Option<Index>,
    /// The shared log in PostgreSQL, when `[storage]` names one: then every
    /// read goes there, and the files above stay empty. The one place the
    /// read side tells the backends apart.
    pub(super) pg: Option<Arc<PgLog>>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Nodes for View {
    type Error = AuditError;
    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        if let Some(pg) = &self.pg {
            return pg.node(level, index);
        }
        let levels = self.levels.read().unwrap_or_else(|e| e.into_inner());
        let f = levels
            .get(level as usize)
            .ok_or(ReadError::NoLevel(level))?;
        let mut h = [0u8; 32];
        f.read_exact_at(&mut h, index * 32)
            .map_err(AuditError::read)?;
        Ok(h)
    }
}

impl View {
    /// A read-only view for tools that run beside the gateway: segments and
    /// caches as they are on disk, no index. Its size is what the node cache
    /// covers; proofs are best asked at a checkpoint's size.
    pub fn open_readonly(opts: &Options) -> Result<Self, AuditError> {
        if let crate::config::Storage::Postgres(settings) = &opts.storage {
            let pg = PgLog::connect(settings, "")?;
            pg.follow_now(&PgLog::local_verifier(opts)?)?;
            return Ok(Self::for_pg(opts.dir.clone(), pg));
        }
        let segs = segment::list(&opts.segments()).map_err(AuditError::read)?;
        let mut seg_files = Vec::new();
        for s in &segs {
            let f = File::open(&s.path).map_err(AuditError::read)?;
            seg_files.push((s.first_id, Arc::new(f)));
        }
        let offsets = File::open(opts.offsets()).map_err(AuditError::read)?;
        let mut levels = Vec::new();
        for l in 0..64 {
            match File::open(opts.level(l)) {
                Ok(f) => levels.push(f),
                Err(_) => break,
            }
        }
        let len_of = |f: &File| f.metadata().map(|m| m.len()).unwrap_or(0);
        let size = (len_of(&offsets) / 8).min(levels.first().map_or(0, |f| len_of(f) / 32));
        let latest = match Verifier::parse(
            &std::fs::read_to_string(opts.dir.join("checkpoint.vkey")).unwrap_or_default(),
        ) {
            Ok(v) => checkpoint::read_all(&opts.checkpoints())
                .map_err(AuditError::read)?
                .iter()
                .rev()
                .find_map(|n| v.verify(n).ok()),
            Err(_) => None,
        };
        let view = Self {
            dir: opts.dir.clone(),
            segments: RwLock::new(seg_files),
            offsets: Some(offsets),
            levels: RwLock::new(levels),
            head: RwLock::new(Head {
                size,
                root: merkle::empty_root(),
            }),
            signed: watch::Sender::new(latest.clone()),
            latest: RwLock::new(latest),
            published: RwLock::new(Published::Latest),
            index: None,
            pg: None,
        };
        let root = merkle::root(&view, size)?;
        view.head.write().unwrap_or_else(|e| e.into_inner()).root = root;
        Ok(view)
    }

    /// A read-only view with the index, for a tool when no gateway runs.
    pub fn open_with_index(opts: &Options) -> Result<Self, AuditError> {
        if matches!(opts.storage, crate::config::Storage::Postgres(_)) {
            return Self::open_readonly(opts);
        }
        let mut v = Self::open_readonly(opts)?;
        v.index = Some(Index::open(&opts.dir.join("index"))?);
        Ok(v)
    }

    /// A view of the shared log in PostgreSQL.
    pub(super) fn for_pg(dir: PathBuf, pg: Arc<PgLog>) -> Self {
        Self {
            dir,
            segments: RwLock::new(Vec::new()),
            offsets: None,
            levels: RwLock::new(Vec::new()),
            head: RwLock::new(pg.head()),
            signed: watch::Sender::new(pg.latest()),
            latest: RwLock::new(pg.latest()),
            published: RwLock::new(Published::Latest),
            index: None,
            pg: Some(pg),
        }
    }

    /// The shared log, when the store is PostgreSQL (for the commands that
    /// work on it directly: status, verify, export).
    pub fn postgres(&self) -> Option<&Arc<PgLog>> {
        self.pg.as_ref()
    }

    /// Whether the store can take records now: on PostgreSQL, whether the
    /// database answers; the embedded store's disk is checked by writing.
    pub fn reachable(&self) -> Result<(), AuditError> {
        match &self.pg {
            Some(pg) => pg.ping(),
            None => Ok(()),
        }
    }

    /// The durable head (on PostgreSQL: as far as the tree is integrated).
    pub fn head(&self) -> Head {
        if let Some(pg) = &self.pg {
            return pg.head();
        }
        *self.head.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `cp` the latest signed checkpoint and tells those waiting.
    pub(super) fn set_latest(&self, cp: Checkpoint) {
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(cp.clone());
        self.signed.send_replace(Some(cp));
    }

    /// Follows the latest signed checkpoint: the receiver holds the newest
    /// one and is told when another is signed.
    pub fn subscribe_checkpoints(&self) -> watch::Receiver<Option<Checkpoint>> {
        self.signed.subscribe()
    }

    /// The checkpoint partners are shown: its size and the whole signed
    /// note. Without witnesses it is the latest signed checkpoint; with
    /// witnesses, the newest one that reached its quorum of cosignatures,
    /// with the log's signature and the cosignature lines.
    pub fn published_checkpoint(&self) -> Option<(u64, String)> {
        match &*self.published.read().unwrap_or_else(|e| e.into_inner()) {
            Published::Latest => self.latest_checkpoint().map(|c| (c.size, c.note)),
            Published::Witnessed(p) => p.clone(),
        }
    }

    /// Whether only cosigned checkpoints are published.
    pub fn witnessed(&self) -> bool {
        matches!(
            *self.published.read().unwrap_or_else(|e| e.into_inner()),
            Published::Witnessed(_)
        )
    }

    /// From now on only checkpoints with a quorum of cosignatures are
    /// published (witnesses are configured); `found` is the newest such
    /// checkpoint kept from before, if any.
    pub fn require_witnesses(&self, found: Option<(u64, String)>) {
        *self.published.write().unwrap_or_else(|e| e.into_inner()) = Published::Witnessed(found);
    }

    /// Publishes a checkpoint that reached its quorum (its size and the
    /// note with the cosignature lines). A smaller one never replaces the
    /// published one; the same size may (with more cosignatures). Gives
    /// whether it was published.
    pub fn publish_witnessed(&self, size: u64, note: String) -> bool {
        let mut p = self.published.write().unwrap_or_else(|e| e.into_inner());
        match &*p {
            Published::Witnessed(Some((s, _))) if *s > size => false,
            _ => {
                *p = Published::Witnessed(Some((size, note)));
                true
            }
        }
    }

    /// The record with this id.
    pub fn record(&self, id: u64) -> Result<Record, AuditError> {
        if let Some(pg) = &self.pg {
            return pg.record(id);
        }
        if id >= self.head().size {
            return Err(OutOfRange::NoRecord(id).into());
        }
        self.record_unchecked(id)
    }

    /// The record with this id, without checking it is below the published
    /// head (recovery reads records before it publishes one).
    pub(super) fn record_unchecked(&self, id: u64) -> Result<Record, AuditError> {
        if let Some(pg) = &self.pg {
            return pg.record(id);
        }
        let file = {
            let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
            let i = segs.partition_point(|(first, _)| *first <= id);
            segs.get(i.wrapping_sub(1))
                .map(|(_, f)| f.clone())
                .ok_or(ReadError::NoSegment)?
        };
        let mut off = [0u8; 8];
        self.offsets
            .as_ref()
            .ok_or(ReadError::NoSegment)?
            .read_exact_at(&mut off, id * 8)
            .map_err(AuditError::read)?;
        let bytes = segment::read_at(&file, u64::from_le_bytes(off)).map_err(AuditError::read)?;
        let r = Record::decode(&bytes).map_err(|source| LogDamage::Undecodable { id, source })?;
        if r.id != id {
            return Err(LogDamage::Misplaced { id, claims: r.id }.into());
        }
        Ok(r)
    }

    /// Root of the first `size` records.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.check_size(size)?;
        merkle::root(self, size)
    }

    fn check_size(&self, size: u64) -> Result<(), AuditError> {
        let head = self.head().size;
        if size > head {
            return Err(OutOfRange::BeyondHead { size, head }.into());
        }
        Ok(())
    }

    /// Inclusion proof of record `index` in the tree of `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size)?;
        if index >= size {
            return Err(OutOfRange::NotInTree { index, size }.into());
        }
        merkle::inclusion_proof(self, index, size)
    }

    /// Consistency proof between the trees of `size1` and `size2` records.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size2)?;
        if size1 == 0 || size1 > size2 {
            return Err(OutOfRange::NoConsistency { size1, size2 }.into());
        }
        merkle::consistency_proof(self, size1, size2)
    }

    /// The leaf hash of record `index` (from the node cache).
    pub fn leaf(&self, index: u64) -> Result<Hash, AuditError> {
        self.node(0, index)
    }

    fn index(&self) -> Result<&Index, IndexError> {
        self.index.as_ref().ok_or(IndexError::NotOpen)
    }

    /// Counts of disclosures and refusals, grouped by `by`, between two days.
    pub fn stats(
        &self,
        by: Dim,
        since_day: &str,
        until_day: &str,
    ) -> Result<BTreeMap<String, (u64, u64)>, AuditError> {
        if let Some(pg) = &self.pg {
            return pg.stats(by, since_day, until_day);
        }
        Ok(self.index()?.stats(by, since_day, until_day)?)
    }

    /// First id whose time is at least `t` (records are in time order).
    pub(super) fn first_at_or_after(&self, t: i64, size: u64) -> Result<u64, AuditError> {
        let (mut lo, mut hi) = (0u64, size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.record_unchecked(mid)?.time_micros < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Records the index has not reached yet (queries scan them themselves).
    pub fn unindexed(&self) -> Result<u64, AuditError> {
        if self.pg.is_some() {
            return Ok(0);
        }
        let upto = self.index()?.indexed_upto()?;
        Ok(self.head().size.saturating_sub(upto))
    }

    /// Records matching `f`, newest first, from the indexes.
    pub fn query(&self, f: &Filter) -> Result<Page, AuditError> {
        if let Some(pg) = &self.pg {
            return pg.query(f);
        }
        let index = self.index()?;
        let size = self.head().size;
        let limit = f.limit.clamp(1, MAX_PAGE);
        let mut hi = f.before.map_or(size, |b| b.min(size));
        if let Some(u) = f.until {
            hi = hi.min(self.first_at_or_after(u.saturating_add(1), size)?);
        }
        let lo = match f.since {
            Some(s) => self.first_at_or_after(s, size)?,
            None => 0,
        };
        // The index trails the head by the batches the indexer has not
        // added yet: those records are scanned here, newest first, before
        // the index answers for the rest.
        let indexed = index.indexed_upto()?.clamp(lo, hi.max(lo));
        if hi.saturating_sub(indexed) > MAX_UNINDEXED_SCAN {
            return Err(IndexError::Behind {
                missing: hi - indexed,
            }
            .into());
        }
        let tail = (indexed..hi).rev().map(Ok);
        let mut records = Vec::new();
        let mut next = None;
        for id in tail.chain(candidates(index, f, lo, indexed)) {
            let r = self.record_unchecked(id?)?;
            if f.matches(&r) {
                if records.len() == limit {
                    next = records.last().map(|r: &Record| r.id);
                    break;
                }
                records.push(r);
            }
        }
        Ok(Page { records, next })
    }
}

/// Ids in `lo..hi` that may match `f`, newest first: from the index of the
/// most selective filter given, or every id when none has an index.
fn candidates<'a>(
    index: &'a Index,
    f: &'a Filter,
    lo: u64,
    hi: u64,
) -> Box<dyn Iterator<Item = Result<u64, AuditError>> + 'a> {
    if !f.subjects.is_empty() && lo < hi {
        return Box::new(any_subject(index, f, lo, hi).into_iter());
    }
    let by: Option<(By, &[u8])> = if let Some(s) = &f.subject {
        Some((By::Subject, s.as_slice()))
    } else if let Some(p) = &f.partner {
        Some((By::Partner, p.as_bytes()))
    } else if let Some(p) = &f.pilot {
        Some((By::Pilot, p.as_bytes()))
    } else {
        f.purpose.as_ref().map(|p| (By::Purpose, p.as_bytes()))
    };
    if lo >= hi {
        Box::new(std::iter::empty())
    } else if let Some((by, key)) = by {
        Box::new(
            index
                .ids(by, key, lo, hi)
                .map(|r| r.map_err(AuditError::from)),
        )
    } else {
        Box::new((lo..hi).rev().map(Ok))
    }
}

/// Ids in `lo..hi` filed under any of the filter's subjects, newest first:
/// one person's records are few, so each pseudonym's postings are read and
/// merged.
fn any_subject(index: &Index, f: &Filter, lo: u64, hi: u64) -> Vec<Result<u64, AuditError>> {
    let mut ids = Vec::new();
    for s in f.subject.iter().chain(&f.subjects) {
        for id in index.ids(By::Subject, s, lo, hi) {
            match id {
                Ok(id) => ids.push(id),
                Err(e) => return vec![Err(e.into())],
            }
        }
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    ids.into_iter().map(Ok).collect()
}

//! The audit store: one writer thread with group commit, a read view for
//! queries and proofs, and recovery at start.
//!
//! `Audit::record` hands an entry to the writer and returns once the record is
//! in a segment file and `fdatasync` has returned. The writer takes every entry
//! waiting at that moment into one batch and one sync (group commit), off the
//! async threads. After the sync it extends the Merkle tree's node cache, the
//! offsets cache and the sled indexes, all of which can be rebuilt from the
//! segments and are rebuilt at start where they fall short.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ring::hmac;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::checkpoint::{self, Checkpoint, Signer, Verifier};
use super::index::{By, Index};
use super::merkle::{self, Frontier, Hash, Nodes};
use super::record::{self, Decision, Entry, Record};
use super::segment::{self, End, ScanError};

/// Most entries written in one batch (one write, one sync).
pub const MAX_BATCH: usize = 4096;
/// Entries that may wait for the writer; callers wait (backpressure) beyond.
pub const QUEUE: usize = 8192;
/// Most records a query page returns.
pub const MAX_PAGE: usize = 1000;

/// Why the audit store failed. Any error from `record` means nothing may be
/// delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Writing or syncing failed (disk full, I/O error).
    #[error("the audit log could not write: {0}")]
    Write(String),
    /// Reading failed.
    #[error("the audit log could not be read: {0}")]
    Read(String),
    /// The log is damaged; it will not be written to.
    #[error("the audit log is damaged: {0}")]
    Damaged(String),
    /// The writer has stopped.
    #[error("the audit log is closed")]
    Closed,
    /// No such record, or a size beyond the log.
    #[error("{0}")]
    OutOfRange(String),
    /// The index database failed or is held by another process.
    #[error("audit index: {0}")]
    Index(String),
    /// An entry too large to be a record.
    #[error("audit entry too large")]
    TooLarge,
}

fn werr(e: impl std::fmt::Display) -> AuditError {
    AuditError::Write(e.to_string())
}
fn rerr(e: impl std::fmt::Display) -> AuditError {
    AuditError::Read(e.to_string())
}

/// Where the audit store lives and how often it signs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `<data_dir>/audit`.
    pub dir: PathBuf,
    /// `<data_dir>/keys`.
    pub keys_dir: PathBuf,
    /// `ketenpoort/<deployment>`.
    pub origin: String,
    /// A checkpoint at least this often while records arrive.
    pub checkpoint_interval: Duration,
    /// A checkpoint after this many new records.
    pub checkpoint_records: u64,
    /// Where to count records and time syncs (the gateway's metrics).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Options {
    /// The usual layout under a data directory.
    pub fn new(data_dir: &Path, deployment: &str) -> Self {
        Self {
            dir: data_dir.join("audit"),
            keys_dir: crate::keys::dir(data_dir),
            origin: format!("ketenpoort/{deployment}"),
            checkpoint_interval: Duration::from_secs(10),
            checkpoint_records: 1000,
            metrics: None,
        }
    }
    fn segments(&self) -> PathBuf {
        self.dir.join("segments")
    }
    /// The checkpoints file.
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }
    /// The checkpoint signing key.
    pub fn signing_key(&self) -> PathBuf {
        self.keys_dir.join("checkpoint.ed25519")
    }
    /// The key of subject pseudonyms.
    pub fn subject_key(&self) -> PathBuf {
        self.keys_dir.join("audit-subject.key")
    }
}

/// The key that turns a V-nummer into the subject pseudonym of audit records.
#[derive(Clone)]
pub struct SubjectKey(hmac::Key);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

impl SubjectKey {
    /// Loads (or makes) the key. Blocking.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        Ok(Self(hmac::Key::new(
            hmac::HMAC_SHA256,
            &crate::keys::load_or_create(path)?,
        )))
    }
    /// The pseudonym of a V-nummer.
    pub fn pseudonym(&self, vnummer: &str) -> Hash {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, vnummer.as_bytes()).as_ref());
        out
    }
}

/// What `record` returns once the record is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The record's id (its index in the log).
    pub id: u64,
    /// Its leaf hash.
    pub leaf: Hash,
}

/// Size and root of the log as far as it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Records.
    pub size: u64,
    /// Merkle root.
    pub root: Hash,
}

/// Query filters; all given filters must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Subject pseudonym.
    pub subject: Option<Hash>,
    /// Partner id as sender or recipient.
    pub partner: Option<String>,
    /// Pilot id.
    pub pilot: Option<String>,
    /// Purpose id.
    pub purpose: Option<String>,
    /// From this time (epoch µs, inclusive).
    pub since: Option<i64>,
    /// Until this time (epoch µs, inclusive).
    pub until: Option<i64>,
    /// Disclosed or refused.
    pub decision: Option<Decision>,
    /// Only ids below this one (the paging cursor).
    pub before: Option<u64>,
    /// Page size (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

/// One page of a query, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// The records.
    pub records: Vec<Record>,
    /// Pass as `before` for the next page; `None` when this was the last.
    pub next: Option<u64>,
}

/// Read access to the log: records by id, tree nodes, head, queries.
pub struct View {
    dir: PathBuf,
    segments: RwLock<Vec<(u64, Arc<File>)>>,
    offsets: File,
    levels: RwLock<Vec<File>>,
    head: RwLock<Head>,
    latest: RwLock<Option<Checkpoint>>,
    index: Option<Index>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn level_path(dir: &Path, level: usize) -> PathBuf {
    dir.join("cache").join(format!("level-{level:02}"))
}

fn open_rw(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Nodes for View {
    type Error = AuditError;
    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        let levels = self.levels.read().unwrap_or_else(|e| e.into_inner());
        let f = levels
            .get(level as usize)
            .ok_or_else(|| AuditError::Read(format!("node cache has no level {level}")))?;
        let mut h = [0u8; 32];
        f.read_exact_at(&mut h, index * 32).map_err(rerr)?;
        Ok(h)
    }
}

impl View {
    /// A read-only view for tools that run beside the gateway: segments and
    /// caches as they are on disk, no index. Its size is what the node cache
    /// covers; proofs are best asked at a checkpoint's size.
    pub fn open_readonly(opts: &Options) -> Result<Self, AuditError> {
        let segs = segment::list(&opts.segments()).map_err(rerr)?;
        let mut seg_files = Vec::new();
        for s in &segs {
            seg_files.push((s.first_id, Arc::new(File::open(&s.path).map_err(rerr)?)));
        }
        let offsets = File::open(opts.dir.join("cache/offsets")).map_err(rerr)?;
        let mut levels = Vec::new();
        for l in 0..64 {
            match File::open(level_path(&opts.dir, l)) {
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
                .map_err(rerr)?
                .iter()
                .rev()
                .find_map(|n| v.verify(n).ok()),
            Err(_) => None,
        };
        let view = Self {
            dir: opts.dir.clone(),
            segments: RwLock::new(seg_files),
            offsets,
            levels: RwLock::new(levels),
            head: RwLock::new(Head {
                size,
                root: merkle::empty_root(),
            }),
            latest: RwLock::new(latest),
            index: None,
        };
        let root = merkle::root(&view, size)?;
        view.head.write().unwrap_or_else(|e| e.into_inner()).root = root;
        Ok(view)
    }

    /// A read-only view with the index, for a tool when no gateway runs.
    pub fn open_with_index(opts: &Options) -> Result<Self, AuditError> {
        let mut v = Self::open_readonly(opts)?;
        v.index = Some(
            Index::open(&opts.dir.join("index")).map_err(|e| AuditError::Index(e.to_string()))?,
        );
        Ok(v)
    }

    /// The durable head.
    pub fn head(&self) -> Head {
        *self.head.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The record with this id.
    pub fn record(&self, id: u64) -> Result<Record, AuditError> {
        if id >= self.head().size {
            return Err(AuditError::OutOfRange(format!("no record {id}")));
        }
        self.record_unchecked(id)
    }

    fn record_unchecked(&self, id: u64) -> Result<Record, AuditError> {
        let file = {
            let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
            let i = segs.partition_point(|(first, _)| *first <= id);
            segs.get(i.wrapping_sub(1))
                .map(|(_, f)| f.clone())
                .ok_or_else(|| rerr("no segment"))?
        };
        let mut off = [0u8; 8];
        self.offsets.read_exact_at(&mut off, id * 8).map_err(rerr)?;
        let bytes = segment::read_at(&file, u64::from_le_bytes(off)).map_err(rerr)?;
        let r =
            Record::decode(&bytes).map_err(|e| AuditError::Damaged(format!("record {id}: {e}")))?;
        if r.id != id {
            return Err(AuditError::Damaged(format!(
                "record at position {id} says it is {}",
                r.id
            )));
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
            return Err(AuditError::OutOfRange(format!(
                "the log has {head} records, not {size}"
            )));
        }
        Ok(())
    }

    /// Inclusion proof of record `index` in the tree of `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size)?;
        if index >= size {
            return Err(AuditError::OutOfRange(format!(
                "record {index} is not in a tree of {size}"
            )));
        }
        merkle::inclusion_proof(self, index, size)
    }

    /// Consistency proof between the trees of `size1` and `size2` records.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size2)?;
        if size1 == 0 || size1 > size2 {
            return Err(AuditError::OutOfRange(format!(
                "no consistency proof from {size1} to {size2}"
            )));
        }
        merkle::consistency_proof(self, size1, size2)
    }

    /// The leaf hash of record `index` (from the node cache).
    pub fn leaf(&self, index: u64) -> Result<Hash, AuditError> {
        self.node(0, index)
    }

    /// Counts of disclosures and refusals, grouped by `by`, between two days.
    pub fn stats(
        &self,
        by: super::index::Dim,
        since_day: &str,
        until_day: &str,
    ) -> Result<std::collections::BTreeMap<String, (u64, u64)>, AuditError> {
        let index = self
            .index
            .as_ref()
            .ok_or_else(|| AuditError::Index("no index in this view".into()))?;
        index
            .stats(by, since_day, until_day)
            .map_err(|e| AuditError::Index(e.to_string()))
    }

    /// First id whose time is at least `t` (records are in time order).
    fn first_at_or_after(&self, t: i64, size: u64) -> Result<u64, AuditError> {
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

    /// Records matching `f`, newest first, from the indexes.
    pub fn query(&self, f: &Filter) -> Result<Page, AuditError> {
        let index = self
            .index
            .as_ref()
            .ok_or_else(|| AuditError::Index("no index in this view".into()))?;
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
        let ids: Box<dyn Iterator<Item = Result<u64, AuditError>>> = if lo >= hi {
            Box::new(std::iter::empty())
        } else if let Some(s) = &f.subject {
            Box::new(
                index
                    .ids(By::Subject, s, lo, hi)
                    .map(|r| r.map_err(|e| AuditError::Index(e.to_string()))),
            )
        } else if let Some(p) = &f.partner {
            Box::new(
                index
                    .ids(By::Partner, p.as_bytes(), lo, hi)
                    .map(|r| r.map_err(|e| AuditError::Index(e.to_string()))),
            )
        } else if let Some(p) = &f.pilot {
            Box::new(
                index
                    .ids(By::Pilot, p.as_bytes(), lo, hi)
                    .map(|r| r.map_err(|e| AuditError::Index(e.to_string()))),
            )
        } else if let Some(p) = &f.purpose {
            Box::new(
                index
                    .ids(By::Purpose, p.as_bytes(), lo, hi)
                    .map(|r| r.map_err(|e| AuditError::Index(e.to_string()))),
            )
        } else {
            Box::new((lo..hi).rev().map(Ok))
        };
        let mut records = Vec::new();
        let mut next = None;
        for id in ids {
            let r = self.record_unchecked(id?)?;
            let e = &r.entry;
            let keep = f.subject.is_none_or(|s| e.subject == Some(s))
                && f.partner
                    .as_ref()
                    .is_none_or(|p| e.sender == *p || e.recipient == *p)
                && f.pilot.as_ref().is_none_or(|p| e.pilot == *p)
                && f.purpose.as_ref().is_none_or(|p| e.purpose == *p)
                && f.decision.is_none_or(|d| e.decision == d);
            if keep {
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

/// Where the writer answers one append.
type Reply = oneshot::Sender<Result<Receipt, AuditError>>;

enum Cmd {
    Append(Box<Entry>, Reply),
    Checkpoint(oneshot::Sender<Result<Checkpoint, AuditError>>),
    Tick,
    Shutdown,
}

/// The audit log, as the gateway uses it.
pub struct Audit {
    tx: mpsc::Sender<Cmd>,
    view: Arc<View>,
    subject_key: SubjectKey,
    vkey: String,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

struct Writer {
    opts: Options,
    view: Arc<View>,
    seg: File,
    seg_first: u64,
    seg_len: u64,
    offsets: File,
    levels: Vec<File>,
    frontier: Frontier,
    last_time: i64,
    signer: Signer,
    checkpoints: File,
    last_cp_size: u64,
    last_cp_at: Instant,
    /// Records the node cache and offsets cover. Behind the log only while
    /// cache writes fail (a full disk); readers see the log up to here.
    cached: u64,
    /// Cache bytes not yet written (offsets, then nodes per level), kept in
    /// order and written first when the disk has room again.
    pending_offsets: Vec<u8>,
    pending_nodes: Vec<Vec<u8>>,
    /// Records waiting for the index (their caches are written first).
    pending_index: Vec<Record>,
}

impl Audit {
    /// Opens the store: recovers a torn tail, catches the caches and indexes up,
    /// checks the latest checkpoint, and starts the writer thread. Blocking.
    pub fn open(opts: Options) -> Result<Self, AuditError> {
        let (writer, view) = Writer::open(opts.clone())?;
        let subject_key = SubjectKey::load_or_create(&opts.subject_key()).map_err(werr)?;
        let vkey = writer.signer.vkey();
        let _ = fs::write(opts.dir.join("checkpoint.vkey"), format!("{vkey}\n"));
        let (tx, rx) = mpsc::channel(QUEUE);
        let ticker = tx.downgrade();
        let interval = opts.checkpoint_interval;
        std::thread::Builder::new()
            .name("audit-ticker".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(tx) = ticker.upgrade() else { break };
                    if tx.blocking_send(Cmd::Tick).is_err() {
                        break;
                    }
                }
            })
            .map_err(werr)?;
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(werr)?;
        Ok(Self {
            tx,
            view,
            subject_key,
            vkey,
            writer: std::sync::Mutex::new(Some(handle)),
        })
    }

    /// Writes a record and returns once it is durable. An error means it is
    /// not, and nothing may be delivered.
    pub async fn record(&self, entry: Entry) -> Result<Receipt, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Append(Box::new(entry), tx))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Writes several records at once (one batch, one sync); all or nothing
    /// is reported durable per record, in order.
    pub async fn record_many(&self, entries: Vec<Entry>) -> Vec<Result<Receipt, AuditError>> {
        let mut waiting = Vec::with_capacity(entries.len());
        for e in entries {
            let (tx, rx) = oneshot::channel();
            match self.tx.send(Cmd::Append(Box::new(e), tx)).await {
                Ok(()) => waiting.push(Some(rx)),
                Err(_) => waiting.push(None),
            }
        }
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(match rx {
                Some(rx) => rx.await.unwrap_or(Err(AuditError::Closed)),
                None => Err(AuditError::Closed),
            });
        }
        out
    }

    /// `record` for threads outside the runtime (tools, generators).
    pub fn record_blocking(&self, entry: Entry) -> Result<Receipt, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .blocking_send(Cmd::Append(Box::new(entry), tx))
            .map_err(|_| AuditError::Closed)?;
        rx.blocking_recv().map_err(|_| AuditError::Closed)?
    }

    /// Signs a checkpoint of the log as it is now.
    pub async fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Checkpoint(tx))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Read access: records, proofs, queries. Its methods block on file
    /// reads: call them from blocking threads.
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// The subject pseudonym of a V-nummer.
    pub fn subject(&self, vnummer: &str) -> Hash {
        self.subject_key.pseudonym(vnummer)
    }

    /// The checkpoint verifier key (`name+hash+base64`).
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// Stops the writer after what is queued (a final checkpoint included) and
    /// flushes the index; later `record` calls fail. Blocking.
    pub fn shutdown(&self) {
        let _ = self.tx.blocking_send(Cmd::Shutdown);
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        if let Some(ix) = &self.view.index {
            let _ = ix.flush();
        }
    }
}

fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

impl Writer {
    fn open(opts: Options) -> Result<(Self, Arc<View>), AuditError> {
        let seg_dir = opts.segments();
        fs::create_dir_all(&seg_dir).map_err(werr)?;
        fs::create_dir_all(opts.dir.join("cache")).map_err(werr)?;
        let mut segs = segment::list(&seg_dir).map_err(rerr)?;
        if segs.is_empty() {
            let path = seg_dir.join(segment::file_name(0));
            File::create(&path)
                .map_err(werr)?
                .sync_all()
                .map_err(werr)?;
            sync_dir(&seg_dir).map_err(werr)?;
            segs.push(segment::Segment { first_id: 0, path });
        }

        // The last segment may end in a torn write: cut it back. Earlier
        // segments were synced whole before the next one began.
        let last = segs.last().cloned().ok_or_else(|| rerr("no segment"))?;
        let mut count = 0u64;
        let mut last_time = 0i64;
        // The records of the open segment are re-hashed against the leaves
        // written when they were appended: a change to them stops the start.
        let leaf_cache = File::open(level_path(&opts.dir, 0)).ok();
        let end = segment::scan(&last.path, |_, bytes| {
            let id = last.first_id + count;
            let r = Record::decode(bytes).map_err(|e| format!("record {id}: {e}"))?;
            if r.id != id {
                return Err(format!("record at position {id} says it is {}", r.id));
            }
            if let Some(f) = &leaf_cache {
                let mut cached = [0u8; 32];
                if f.read_exact_at(&mut cached, id * 32).is_ok()
                    && cached != merkle::leaf_hash(bytes)
                {
                    return Err(format!(
                        "record {id} differs from the leaf hash written when it was appended"
                    ));
                }
            }
            last_time = r.time_micros;
            count += 1;
            Ok(())
        })
        .map_err(|e| match e {
            ScanError::Io(e) => rerr(e),
            ScanError::Damage(d) => AuditError::Damaged(d.to_string()),
            ScanError::Visit(s) => AuditError::Damaged(s),
        })?;
        if let End::TornTail { valid_len } = end {
            warn!(segment = %last.path.display(), valid_len, "cutting a torn tail back to the last whole record");
            let f = OpenOptions::new()
                .write(true)
                .open(&last.path)
                .map_err(werr)?;
            f.set_len(valid_len).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        let size = last.first_id + count;
        let seg_len = fs::metadata(&last.path).map_err(rerr)?.len();

        let mut seg_files = Vec::new();
        for s in &segs {
            seg_files.push((s.first_id, Arc::new(File::open(&s.path).map_err(rerr)?)));
        }
        let offsets_path = opts.dir.join("cache/offsets");
        let offsets = open_rw(&offsets_path).map_err(werr)?;
        let mut levels = Vec::new();
        let mut level_reads = Vec::new();
        for l in 0..64 {
            let p = level_path(&opts.dir, l);
            if l > 0 && !p.exists() && (size >> l) == 0 {
                break;
            }
            levels.push(open_rw(&p).map_err(werr)?);
            level_reads.push(File::open(&p).map_err(rerr)?);
        }

        // How far do the caches reach? They are trusted only as far as every
        // level agrees; the rest is rebuilt from the records.
        let len_of = |f: &File| f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cached = (len_of(&offsets) / 8)
            .min(len_of(&levels[0]) / 32)
            .min(size);
        for (l, f) in levels.iter().enumerate().skip(1) {
            if len_of(f) / 32 < (cached >> l) {
                cached = 0;
            }
        }
        offsets.set_len(cached * 8).map_err(werr)?;
        for (l, f) in levels.iter().enumerate() {
            f.set_len((cached >> l) * 32).map_err(werr)?;
        }

        let view = Arc::new(View {
            dir: opts.dir.clone(),
            segments: RwLock::new(seg_files),
            offsets: File::open(&offsets_path).map_err(rerr)?,
            levels: RwLock::new(level_reads),
            head: RwLock::new(Head {
                size: 0,
                root: merkle::empty_root(),
            }),
            latest: RwLock::new(None),
            index: Some(
                Index::open(&opts.dir.join("index"))
                    .map_err(|e| AuditError::Index(e.to_string()))?,
            ),
        });

        // Rebuild the frontier at `cached` from the node cache.
        let mut frontier = Frontier::default();
        if cached > 0 {
            frontier = frontier_from_cache(&view, cached)?;
        }
        let signer = Signer::load_or_create(&opts.signing_key(), &opts.origin).map_err(werr)?;
        let checkpoints = OpenOptions::new()
            .append(true)
            .create(true)
            .open(opts.checkpoints())
            .map_err(werr)?;
        let seg = OpenOptions::new()
            .append(true)
            .open(&last.path)
            .map_err(werr)?;
        let mut w = Writer {
            opts,
            view: view.clone(),
            seg,
            seg_first: last.first_id,
            seg_len,
            offsets,
            levels,
            frontier,
            last_time,
            signer,
            checkpoints,
            last_cp_size: 0,
            last_cp_at: Instant::now(),
            cached: 0,
            pending_offsets: Vec::new(),
            pending_nodes: Vec::new(),
            pending_index: Vec::new(),
        };
        if cached < size {
            info!(
                from = cached,
                to = size,
                "rebuilding the audit node cache from the segments"
            );
            w.replay(&segs, cached, size)?;
        }
        w.cached = w.frontier.size();
        w.publish_head();
        w.catch_up_index(size)?;
        w.load_checkpoints(size)?;
        Ok((w, view))
    }

    /// Feeds records `from..to` from the segments into the caches.
    fn replay(&mut self, segs: &[segment::Segment], from: u64, to: u64) -> Result<(), AuditError> {
        for (i, s) in segs.iter().enumerate() {
            let next_first = segs.get(i + 1).map_or(u64::MAX, |n| n.first_id);
            if next_first <= from {
                continue;
            }
            let mut id = s.first_id;
            let mut offsets = Vec::new();
            let mut nodes: Vec<Vec<u8>> = Vec::new();
            let frontier = &mut self.frontier;
            segment::scan(&s.path, |off, bytes| {
                if id >= from && id < to {
                    offsets.extend_from_slice(&off.to_le_bytes());
                    frontier.push(merkle::leaf_hash(bytes), |level, _, h| {
                        if nodes.len() <= level as usize {
                            nodes.resize(level as usize + 1, Vec::new());
                        }
                        nodes[level as usize].extend_from_slice(h);
                    });
                }
                id += 1;
                Ok::<_, std::convert::Infallible>(())
            })
            .map_err(rerr)?;
            self.write_caches(&offsets, &nodes)?;
        }
        Ok(())
    }

    fn write_caches(&mut self, offsets: &[u8], nodes: &[Vec<u8>]) -> Result<(), AuditError> {
        self.offsets.write_all(offsets).map_err(werr)?;
        for (l, bytes) in nodes.iter().enumerate() {
            while self.levels.len() <= l {
                let p = level_path(&self.opts.dir, self.levels.len());
                self.levels.push(open_rw(&p).map_err(werr)?);
                self.view
                    .levels
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(File::open(&p).map_err(rerr)?);
            }
            self.levels[l].write_all(bytes).map_err(werr)?;
        }
        Ok(())
    }

    /// Publishes the log as far as readers can follow it: to the end, unless
    /// cache writes are behind.
    fn publish_head(&self) {
        let head = if self.cached == self.frontier.size() {
            Head {
                size: self.frontier.size(),
                root: self.frontier.root(),
            }
        } else {
            match merkle::root(self.view.as_ref(), self.cached) {
                Ok(root) => Head {
                    size: self.cached,
                    root,
                },
                Err(_) => return,
            }
        };
        *self.view.head.write().unwrap_or_else(|e| e.into_inner()) = head;
    }

    /// Writes the pending cache bytes; on failure cuts every cache file back
    /// to where it was, so a later attempt appends to whole files.
    fn flush_caches(&mut self) -> Result<(), AuditError> {
        if self.pending_offsets.is_empty() {
            return Ok(());
        }
        let len = |f: &File| f.metadata().map(|m| m.len()).unwrap_or(0);
        let before: (u64, Vec<u64>) = (len(&self.offsets), self.levels.iter().map(len).collect());
        let (offsets, nodes) = (
            std::mem::take(&mut self.pending_offsets),
            std::mem::take(&mut self.pending_nodes),
        );
        match self.write_caches(&offsets, &nodes) {
            Ok(()) => {
                self.cached = self.frontier.size();
                Ok(())
            }
            Err(e) => {
                let _ = self.offsets.set_len(before.0);
                for (f, l) in self.levels.iter().zip(&before.1) {
                    let _ = f.set_len(*l);
                }
                for f in self.levels.iter().skip(before.1.len()) {
                    let _ = f.set_len(0);
                }
                self.pending_offsets = offsets;
                self.pending_nodes = nodes;
                Err(e)
            }
        }
    }

    /// Catches caches and index up after a failure; called with every batch
    /// and every tick.
    fn catch_up(&mut self) {
        let was_behind = self.cached < self.frontier.size();
        if let Err(e) = self.flush_caches() {
            warn!(error = %e, behind = self.frontier.size() - self.cached, "audit caches still cannot be written; the newest records are durable but not yet readable");
        } else if was_behind {
            info!(records = self.cached, "audit caches caught up");
        }
        if let Some(ix) = &self.view.index {
            let ready: Vec<Record> = self
                .pending_index
                .iter()
                .filter(|r| r.id < self.cached)
                .cloned()
                .collect();
            if !ready.is_empty() {
                match ix.add(&ready) {
                    Ok(()) => self.pending_index.retain(|r| r.id >= self.cached),
                    Err(e) => {
                        warn!(error = %e, "audit index cannot be written yet; it catches up later")
                    }
                }
            }
        }
        self.publish_head();
    }

    fn catch_up_index(&self, size: u64) -> Result<(), AuditError> {
        let Some(index) = &self.view.index else {
            return Ok(());
        };
        let ierr = |e: sled::Error| AuditError::Index(e.to_string());
        let mut from = index.indexed_upto().map_err(ierr)?;
        if from > size {
            warn!(
                indexed = from,
                size, "index is ahead of the log; rebuilding it"
            );
            index.clear().map_err(ierr)?;
            from = 0;
        }
        if from < size {
            info!(from, to = size, "catching the audit index up");
        }
        let mut batch = Vec::with_capacity(10_000);
        for id in from..size {
            batch.push(self.view.record_unchecked(id)?);
            if batch.len() == 10_000 {
                index.add(&batch).map_err(ierr)?;
                batch.clear();
            }
        }
        index.add(&batch).map_err(ierr)?;
        Ok(())
    }

    /// Finds the latest checkpoint and checks it against the log: a signed
    /// checkpoint that covers records the log no longer has, or another root,
    /// means records were lost or changed.
    fn load_checkpoints(&mut self, size: u64) -> Result<(), AuditError> {
        let verifier = Verifier::parse(&self.signer.vkey()).map_err(rerr)?;
        let notes = checkpoint::read_all(&self.opts.checkpoints()).map_err(rerr)?;
        let Some(cp) = notes.iter().rev().find_map(|n| verifier.verify(n).ok()) else {
            return Ok(());
        };
        if cp.size > size {
            return Err(AuditError::Damaged(format!(
                "a signed checkpoint covers {} records but the log has {size}: records were lost",
                cp.size
            )));
        }
        if self.view.root_at(cp.size)? != cp.root {
            return Err(AuditError::Damaged(format!(
                "the log's root at {} records differs from the signed checkpoint: records were changed",
                cp.size
            )));
        }
        self.last_cp_size = cp.size;
        *self.view.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(cp);
        Ok(())
    }

    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while let Some(first) = rx.blocking_recv() {
            let mut appends = Vec::new();
            let mut checkpoint_waiters = Vec::new();
            let mut next = Some(first);
            let mut shutdown = false;
            while let Some(c) = next.take() {
                match c {
                    Cmd::Append(e, tx) => appends.push((e, tx)),
                    Cmd::Checkpoint(tx) => checkpoint_waiters.push(tx),
                    Cmd::Tick => self.catch_up(),
                    Cmd::Shutdown => shutdown = true,
                }
                if appends.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.append(appends);
            }
            let due = self.frontier.size() > self.last_cp_size
                && (self.frontier.size() - self.last_cp_size >= self.opts.checkpoint_records
                    || self.last_cp_at.elapsed() >= self.opts.checkpoint_interval);
            if due || !checkpoint_waiters.is_empty() {
                let r = self.checkpoint();
                for w in checkpoint_waiters {
                    let _ = w.send(r.clone());
                }
            }
            if shutdown {
                break;
            }
        }
        if self.frontier.size() > self.last_cp_size {
            let _ = self.checkpoint();
        }
    }

    fn checkpoint(&mut self) -> Result<Checkpoint, AuditError> {
        let size = self.frontier.size();
        let cp = self.signer.sign(size, &self.frontier.root());
        if size > self.last_cp_size || self.view.latest_checkpoint().is_none() {
            checkpoint::append(&mut self.checkpoints, &cp).map_err(werr)?;
            self.last_cp_size = size;
            *self.view.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(cp.clone());
        }
        self.last_cp_at = Instant::now();
        Ok(cp)
    }

    fn roll_segment(&mut self) -> Result<(), AuditError> {
        let first = self.frontier.size();
        let dir = self.opts.segments();
        let path = dir.join(segment::file_name(first));
        let f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(werr)?;
        f.sync_all().map_err(werr)?;
        sync_dir(&dir).map_err(werr)?;
        self.view
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((first, Arc::new(File::open(&path).map_err(rerr)?)));
        self.seg = f;
        self.seg_first = first;
        self.seg_len = 0;
        Ok(())
    }

    fn append(&mut self, batch: Vec<(Box<Entry>, Reply)>) {
        let mut buf = Vec::with_capacity(batch.len() * 600);
        let mut records = Vec::with_capacity(batch.len());
        let mut waiters = Vec::with_capacity(batch.len());
        let start = self.frontier.size();
        let mut time = now_micros().max(self.last_time);
        for (entry, tx) in batch {
            let rec = Record {
                version: record::FORMAT_VERSION,
                id: start + records.len() as u64,
                time_micros: time,
                entry: *entry,
            };
            let bytes = rec.encode();
            if bytes.len() > segment::MAX_RECORD {
                let _ = tx.send(Err(AuditError::TooLarge));
                continue;
            }
            time = rec.time_micros;
            segment::frame(&bytes, &mut buf);
            records.push((rec, merkle::leaf_hash(&bytes), bytes.len()));
            waiters.push(tx);
        }
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.write_durably(&buf) {
            error!(error = %e, "audit write failed; the records of this batch were not written");
            for tx in waiters {
                let _ = tx.send(Err(e.clone()));
            }
            return;
        }

        let mut offsets = Vec::with_capacity(records.len() * 8);
        let mut nodes: Vec<Vec<u8>> = Vec::new();
        let mut off = self.seg_len - buf.len() as u64;
        for (_, leaf, len) in &records {
            offsets.extend_from_slice(&off.to_le_bytes());
            off += (segment::HEADER + len) as u64;
            self.frontier.push(*leaf, |level, _, h| {
                if nodes.len() <= level as usize {
                    nodes.resize(level as usize + 1, Vec::new());
                }
                nodes[level as usize].extend_from_slice(h);
            });
        }
        self.last_time = time;
        self.pending_offsets.extend_from_slice(&offsets);
        if self.pending_nodes.len() < nodes.len() {
            self.pending_nodes.resize(nodes.len(), Vec::new());
        }
        for (l, bytes) in nodes.iter().enumerate() {
            self.pending_nodes[l].extend_from_slice(bytes);
        }
        self.pending_index
            .extend(records.iter().map(|(r, _, _)| r.clone()));
        // Caches and index before the callers are answered: once a partner
        // has its answer, a privacy officer can find the record.
        self.catch_up();
        if let Some(m) = &self.opts.metrics {
            m.audit_records.inc_by(records.len() as u64);
            m.audit_batch_records.observe(records.len() as f64);
        }
        for ((rec, leaf, _), tx) in records.into_iter().zip(waiters) {
            let _ = tx.send(Ok(Receipt { id: rec.id, leaf }));
        }
    }

    /// One write and one `fdatasync` for the whole batch. On failure the
    /// segment is cut back to where it was, so a later batch (after space is
    /// freed) continues a whole log.
    fn write_durably(&mut self, buf: &[u8]) -> Result<(), AuditError> {
        if self.seg_len > 0 && self.seg_len + buf.len() as u64 > segment::SEGMENT_MAX {
            self.roll_segment()?;
        }
        let started = Instant::now();
        let r = self.seg.write_all(buf).and_then(|_| self.seg.sync_data());
        if let Some(m) = &self.opts.metrics {
            m.audit_fsync_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        if let Err(e) = r {
            if let Err(t) = self
                .seg
                .set_len(self.seg_len)
                .and_then(|_| self.seg.sync_data())
            {
                error!(error = %t, "could not cut the failed write back");
            }
            return Err(werr(e));
        }
        self.seg_len += buf.len() as u64;
        Ok(())
    }
}

/// The frontier at `size` from the node cache: for every set bit `l` of
/// `size`, the perfect subtree of 2^l leaves that ends the compact range.
fn frontier_from_cache(view: &View, size: u64) -> Result<Frontier, AuditError> {
    // Replaying the frontier from its pending nodes: push perfect subtrees
    // largest first through a fresh frontier built level by level.
    let mut pending = Vec::new();
    for l in (0..64u32).rev() {
        if size >> l & 1 == 1 {
            let index = (size >> l) - 1;
            pending.push((l, view.node(l, index)?));
        }
    }
    Ok(Frontier::from_pending(size, &pending))
}

//! The writer: the one thread that appends to the log.
//!
//! A log that anyone can check must have one order, so one thread owns every
//! file the log grows by. Durability before delivery costs an `fdatasync` per
//! write; the writer pays it once per batch by taking every entry waiting at
//! that moment (group commit), off the async threads, and no more often
//! than [`Options::sync_interval`] once batches hold several entries: each
//! sync costs CPU, and at full load larger batches leave that CPU to the
//! exchanges. After the sync it
//! extends the Merkle frontier, the offsets and node caches and the
//! indexes, and only then answers the callers and moves the published head.
//! When a disk fills, the segment is cut back to its last whole batch and the
//! caches keep their pending bytes until they can be written: the log never
//! holds half a batch, and readers never see a record the caches do not cover.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::ahead::Ahead;
use super::checkpoint::{self, Checkpoint, Signer};
pub(super) use super::common::{Cmd, Reply};
use super::error::AuditError;
use super::indexer::IndexFeed;
use super::merkle::{self, Frontier};
use super::options::{MAX_BATCH, Options, Receipt};
use super::record::{self, Entry, Record};
use super::rotation::SharedKeys;
use super::segment;
use super::view::{Head, View};

/// The state of the one thread that writes the log.
pub(super) struct Writer {
    /// Where the files live and how often to sign.
    pub(super) opts: Options,
    /// The read side, to which the writer publishes segments, cache levels,
    /// the head and the latest checkpoint.
    pub(super) view: Arc<View>,
    /// The open (last) segment, appended to.
    pub(super) seg: File,
    /// Length of the open segment's frames: where the next batch starts,
    /// and where a failed write is cut back to. The file may be longer: the
    /// zeros of a segment made ahead, written over.
    pub(super) seg_len: u64,
    /// The next segment, being made ahead while this one fills.
    pub(super) ahead: Ahead,
    /// The offsets cache, appended to.
    pub(super) offsets: File,
    /// The node cache levels, appended to.
    pub(super) levels: Vec<File>,
    /// The right edge of the Merkle tree: enough to add leaves and to
    /// compute the root without reading the node cache.
    pub(super) frontier: Frontier,
    /// Time of the newest record: record times never go backwards, so that
    /// queries can search by time.
    pub(super) last_time: i64,
    /// Signs checkpoints: the last key of `keys`.
    pub(super) signer: Signer,
    /// Every key the log signed with, shared with the `Audit` handle, which
    /// serves it; changed only here, by a rotation.
    pub(super) keys: SharedKeys,
    /// The checkpoints file, appended to.
    pub(super) checkpoints: File,
    /// Size of the latest checkpoint, to tell when the next one is due.
    pub(super) last_cp_size: u64,
    /// When the latest checkpoint was signed, to tell when the next one is due.
    pub(super) last_cp_at: Instant,
    /// Records the node cache and offsets cover. Behind the log only while
    /// cache writes fail (a full disk); readers see the log up to here.
    pub(super) cached: u64,
    /// Offsets cache bytes not yet written, kept in order and written first
    /// when the disk has room again.
    pub(super) pending_offsets: Vec<u8>,
    /// Node cache bytes not yet written, per level, like `pending_offsets`.
    pub(super) pending_nodes: Vec<Vec<u8>>,
    /// Lengths of the offsets file and of each level file as last written,
    /// to cut back to on a failed write; `None` after a failure, when they
    /// are read from the files again (a stat per file and batch otherwise).
    pub(super) cache_lens: Option<(u64, Vec<u64>)>,
    /// Where answered records go to be indexed, off the path of the answer.
    pub(super) index_feed: Option<IndexFeed>,
    /// `<dir>/writer.lock`, held (`flock`) for the writer's life: one
    /// process writes a log.
    pub(super) _lock: File,
}

/// Takes the log's writer lock, or says who holds it.
pub(super) fn lock_log(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join("writer.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(AuditError::write)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        AuditError::write(std::io::Error::other(format!(
            "{} is held by another process: another gateway (or tool) writes this audit log",
            path.display()
        )))
    })?;
    Ok(f)
}

/// Opens a file to read and append, making it if missing.
pub(super) fn open_rw(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// Makes a new or removed file in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Adds the node a frontier push completed to the bytes of its level.
pub(super) fn push_node(nodes: &mut Vec<Vec<u8>>, level: u32, hash: &[u8]) {
    if nodes.len() <= level as usize {
        nodes.resize(level as usize + 1, Vec::new());
    }
    nodes[level as usize].extend_from_slice(hash);
}

/// What one turn of the writer takes from its queue.
#[derive(Default)]
struct Turn {
    appends: Vec<(Box<Entry>, Reply)>,
    checkpoint_waiters: Vec<tokio::sync::oneshot::Sender<Result<Checkpoint, AuditError>>>,
    rotations: Vec<tokio::sync::oneshot::Sender<Result<super::rotation::Rotated, AuditError>>>,
    shutdown: bool,
    tick: bool,
}

impl Turn {
    fn take(&mut self, c: Cmd) {
        match c {
            Cmd::Append(e, tx) => self.appends.push((e, tx)),
            Cmd::Checkpoint(tx) => self.checkpoint_waiters.push(tx),
            Cmd::Tick => self.tick = true,
            Cmd::Shutdown => self.shutdown = true,
            Cmd::Rotate(tx) => self.rotations.push(tx),
        }
    }

    /// Takes what waits in the queue, up to a full batch.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Cmd>) {
        while self.appends.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => self.take(c),
                Err(_) => break,
            }
        }
    }
}

impl Writer {
    /// Serves commands until shutdown or until every `Audit` handle is gone.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut last_batch = Instant::now();
        let mut last_size = 0;
        while let Some(first) = rx.blocking_recv() {
            let mut turn = Turn::default();
            turn.take(first);
            turn.drain(&mut rx);
            // A caller that writes one record at a time gains nothing from
            // a wait: only after a batch of several does the writer wait
            // for more.
            if last_size > 1
                && !turn.appends.is_empty()
                && !turn.shutdown
                && let Some(rest) = self.opts.sync_interval.checked_sub(last_batch.elapsed())
                && !rest.is_zero()
            {
                std::thread::sleep(rest);
                turn.drain(&mut rx);
            }
            let Turn {
                appends,
                checkpoint_waiters,
                rotations,
                shutdown,
                tick,
            } = turn;
            if tick {
                self.catch_up();
            }
            if !appends.is_empty() {
                last_batch = Instant::now();
                last_size = appends.len();
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
            // After this batch's checkpoint, so the old key signs every
            // record it saw; each rotation asked for is its own.
            for tx in rotations {
                let r = self.rotate();
                if let Err(e) = &r {
                    error!(error = %e, "the checkpoint key could not be rotated");
                }
                let _ = tx.send(r);
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
            checkpoint::append(&mut self.checkpoints, &cp).map_err(AuditError::write)?;
            self.last_cp_size = size;
            self.view.set_latest(cp.clone());
        }
        self.last_cp_at = Instant::now();
        Ok(cp)
    }

    /// Closes the open segment and begins the next, named by `first`: the
    /// id of the first record written to it.
    fn roll_segment(&mut self, first: u64) -> Result<(), AuditError> {
        // A closed segment ends at its last frame: only the open one may
        // end in zeros (or in what a failed write's cut-back left).
        let file_len = self.seg.metadata().map_err(AuditError::write)?.len();
        if file_len > self.seg_len {
            self.seg
                .set_len(self.seg_len)
                .and_then(|_| self.seg.sync_all())
                .map_err(AuditError::write)?;
        }
        let dir = self.opts.segments();
        let path = dir.join(segment::file_name(first));
        if let Some(made) = self.ahead.take_ready()
            && let Err(e) = std::fs::rename(&made, &path)
        {
            // Gone (an operator cleaning up `*.tmp` files): the new
            // segment grows by appends instead; no record waits on it.
            warn!(error = %e, "the segment made ahead could not be used");
            let _ = std::fs::remove_file(made);
        }
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(AuditError::write)?;
        f.sync_all().map_err(AuditError::write)?;
        sync_dir(&dir).map_err(AuditError::write)?;
        let read = File::open(&path).map_err(AuditError::read)?;
        self.view
            .segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((first, Arc::new(read)));
        self.seg = f;
        self.seg_len = 0;
        Ok(())
    }

    fn append(&mut self, batch: Vec<(Box<Entry>, Reply)>) {
        let mut buf = Vec::with_capacity(batch.len() * 600);
        let mut records = Vec::with_capacity(batch.len());
        let mut waiters = Vec::with_capacity(batch.len());
        let start = self.frontier.size();
        let mut time = record::now_micros().max(self.last_time);
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
        let (offsets, failed) = self.write_parts(&buf, &records);
        // The parts written before a failure are durable: they are records
        // of the log like any other, answered as such.
        let written = offsets.len() / 8;
        let rest_waiters = waiters.split_off(written);
        let rest = records.split_off(written);
        if let Some(e) = failed {
            error!(error = %e, records = rest.len(), "audit write failed; these records of the batch were not written");
            for tx in rest_waiters {
                let _ = tx.send(Err(e.clone()));
            }
        }
        if records.is_empty() {
            return;
        }
        let mut nodes: Vec<Vec<u8>> = Vec::new();
        for (_, leaf, _) in &records {
            self.frontier
                .push(*leaf, |level, _, h| push_node(&mut nodes, level, h));
        }
        self.last_time = records.last().map_or(self.last_time, |r| r.0.time_micros);
        self.pending_offsets.extend_from_slice(&offsets);
        if self.pending_nodes.len() < nodes.len() {
            self.pending_nodes.resize(nodes.len(), Vec::new());
        }
        for (l, bytes) in nodes.iter().enumerate() {
            self.pending_nodes[l].extend_from_slice(bytes);
        }
        // Caches before the callers are answered: once a partner has its
        // answer, the record can be read by id and found by a query (which
        // scans what the index has not reached yet).
        self.catch_up();
        if let Some(m) = &self.opts.metrics {
            m.audit_records.inc_by(records.len() as u64);
            m.audit_batch_records.observe(records.len() as f64);
        }
        let mut answered = Vec::with_capacity(records.len());
        for ((rec, leaf, _), tx) in records.into_iter().zip(waiters) {
            let _ = tx.send(Ok(Receipt { id: rec.id, leaf }));
            answered.push(rec);
        }
        if let Some(feed) = &self.index_feed {
            feed.offer(answered);
        }
    }

    /// Writes the frames in `buf` (of `records`, in order) in parts of at
    /// most [`segment::MAX_WRITE`] bytes (or one record), each synced
    /// before the next: a crash can tear only the part being written, and
    /// a scan tells it from damage by that reach. Returns the offsets of
    /// the records written, and the error that stopped the rest.
    fn write_parts(
        &mut self,
        buf: &[u8],
        records: &[(Record, merkle::Hash, usize)],
    ) -> (Vec<u8>, Option<AuditError>) {
        let mut offsets = Vec::with_capacity(records.len() * 8);
        let (mut from, mut i) = (0usize, 0usize);
        while i < records.len() {
            let (first, mut to) = (i, from);
            while i < records.len()
                && (i == first
                    || (to + segment::HEADER + records[i].2 - from) as u64 <= segment::MAX_WRITE)
            {
                to += segment::HEADER + records[i].2;
                i += 1;
            }
            let first_id = self.frontier.size() + first as u64;
            let mut off = match self.write_durably(&buf[from..to], first_id) {
                Ok(at) => at,
                Err(e) => return (offsets, Some(e)),
            };
            for (_, _, len) in &records[first..i] {
                offsets.extend_from_slice(&off.to_le_bytes());
                off += (segment::HEADER + len) as u64;
            }
            from = to;
        }
        (offsets, None)
    }

    /// One write and one `fdatasync` of frames whose first record is
    /// `first_id`; returns where the bytes begin in the open segment. On
    /// failure the segment is cut back to where it was, so a later batch
    /// (after space is freed) continues a whole log.
    fn write_durably(&mut self, buf: &[u8], first_id: u64) -> Result<u64, AuditError> {
        if self.seg_len > 0 && self.seg_len + buf.len() as u64 > self.opts.segment_max {
            self.roll_segment(first_id)?;
        }
        let started = Instant::now();
        let r = self
            .seg
            .write_all_at(buf, self.seg_len)
            .and_then(|_| self.seg.sync_data());
        if let Some(m) = &self.opts.metrics {
            m.audit_fsync_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        if let Err(e) = r {
            if let Some(m) = &self.opts.metrics {
                m.audit_write_errors.inc();
            }
            // The zeros made ahead go with the failed write (a torn frame
            // before zeros reads as torn, but the next batch could leave
            // half of it behind its own); the segment grows by appends
            // from here.
            if let Err(t) = self
                .seg
                .set_len(self.seg_len)
                .and_then(|_| self.seg.sync_data())
            {
                error!(error = %t, "could not cut the failed write back");
            }
            return Err(AuditError::write(e));
        }
        let at = self.seg_len;
        self.seg_len += buf.len() as u64;
        if self.seg_len >= self.opts.segment_max / 2 {
            self.ahead
                .begin(self.opts.segments(), self.opts.segment_max);
        }
        Ok(at)
    }

    /// Appends offsets and node bytes to the cache files, opening (and
    /// showing the view) a level the tree has newly grown.
    pub(super) fn write_caches(
        &mut self,
        offsets: &[u8],
        nodes: &[Vec<u8>],
    ) -> Result<(), AuditError> {
        self.offsets.write_all(offsets).map_err(AuditError::write)?;
        for (l, bytes) in nodes.iter().enumerate() {
            while self.levels.len() <= l {
                let p = self.opts.level(self.levels.len());
                self.levels.push(open_rw(&p).map_err(AuditError::write)?);
                let read = File::open(&p).map_err(AuditError::read)?;
                self.view
                    .levels
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(read);
            }
            self.levels[l].write_all(bytes).map_err(AuditError::write)?;
        }
        Ok(())
    }

    /// Publishes the log as far as readers can follow it: to the end, unless
    /// cache writes are behind.
    pub(super) fn publish_head(&self) {
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
        let before = match self.cache_lens.take() {
            Some(l) => l,
            None => {
                let len = |f: &File| f.metadata().map(|m| m.len()).unwrap_or(0);
                (len(&self.offsets), self.levels.iter().map(len).collect())
            }
        };
        let (offsets, nodes) = (
            std::mem::take(&mut self.pending_offsets),
            std::mem::take(&mut self.pending_nodes),
        );
        match self.write_caches(&offsets, &nodes) {
            Ok(()) => {
                self.cached = self.frontier.size();
                let mut lens = before.1;
                lens.resize(self.levels.len(), 0);
                for (l, bytes) in lens.iter_mut().zip(&nodes) {
                    *l += bytes.len() as u64;
                }
                self.cache_lens = Some((before.0 + offsets.len() as u64, lens));
                self.pending_nodes = nodes;
                self.pending_nodes.iter_mut().for_each(Vec::clear);
                self.pending_offsets = offsets;
                self.pending_offsets.clear();
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

    /// Catches the caches up after a failure and publishes the head; called
    /// with every batch and every tick.
    fn catch_up(&mut self) {
        let was_behind = self.cached < self.frontier.size();
        if let Err(e) = self.flush_caches() {
            warn!(error = %e, behind = self.frontier.size() - self.cached, "audit caches still cannot be written; the newest records are durable but not yet readable");
        } else if was_behind {
            info!(records = self.cached, "audit caches caught up");
        }
        self.publish_head();
    }
}

//! Recovery: opening the log for writing after a clean stop or a crash.
//!
//! Only the segments are the log; everything else (the offsets and node
//! caches, the fjall index) can be rebuilt from them and may be behind or cut
//! short by a crash or a full disk. So at start the writer trusts the segments
//! first and the rest only as far as it agrees with them:
//! - a torn last frame (a write cut off by a crash) is cut back; damage in the
//!   middle, or a record that no longer hashes to its cached leaf, stops the
//!   start instead;
//! - the caches are trusted as far as every level reaches, the rest is
//!   replayed from the segments;
//! - the index catches up from where it says it got to, or is rebuilt when it
//!   claims more than the log has;
//! - the latest signed checkpoint must still match the log: a log shorter
//!   than, or different from, what was signed was lost or changed.

use std::convert::Infallible;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tracing::{info, warn};

use super::checkpoint::{self, Verifier};
use super::error::{AuditError, LogDamage, ReadError};
use super::index::Index;
use super::merkle::{self, Frontier, Nodes};
use super::record::Record;
use super::segment::{self, End, ScanError, Segment};
use super::store::Options;
use super::view::{Head, Published, View};
use super::writer::{Writer, open_rw, push_node, sync_dir};

/// What the scan of the open segment found.
struct Tail {
    /// Whole records in the open segment.
    count: u64,
    /// Time of its last record (0 when it has none).
    last_time: i64,
    /// Where the zeros after its frames begin, when it ends in zeros.
    zeros_from: Option<u64>,
}

/// The cache files, cut back to what can be trusted.
struct Caches {
    /// The offsets cache, to append to.
    offsets: File,
    /// The node cache levels, to append to.
    levels: Vec<File>,
    /// The same levels, to read from (the view's handles).
    level_reads: Vec<File>,
    /// Records the caches cover.
    cached: u64,
}

impl Writer {
    /// Opens the log for writing: recovers a torn tail, trusts the caches as
    /// far as they agree, replays the rest, catches the index up and checks
    /// the latest checkpoint. Blocking.
    pub(super) fn open(opts: Options) -> Result<(Self, Arc<View>), AuditError> {
        fs::create_dir_all(&opts.dir).map_err(AuditError::write)?;
        let lock = super::writer::lock_log(&opts.dir)?;
        let segs = segments(&opts)?;
        // The last segment may end in a torn write: cut it back. Earlier
        // segments were synced whole before the next one began.
        let last = segs.last().cloned().ok_or(ReadError::NoSegment)?;
        let (signer, history) = super::rekey::open_keys(&opts)?;
        let tail = recover_tail(&opts, &last, signed_size(&opts, &signer)?)?;
        let size = last.first_id + tail.count;
        // Zeros after the frames: a segment made ahead, written over from
        // where its frames end.
        let seg_len = match tail.zeros_from {
            Some(valid_len) => valid_len,
            None => fs::metadata(&last.path).map_err(AuditError::read)?.len(),
        };

        let mut seg_files = Vec::new();
        for s in &segs {
            let f = File::open(&s.path).map_err(AuditError::read)?;
            seg_files.push((s.first_id, Arc::new(f)));
        }
        let caches = open_caches(&opts, size)?;
        let cached = caches.cached;
        let view = Arc::new(View {
            dir: opts.dir.clone(),
            segments: RwLock::new(seg_files),
            offsets: Some(File::open(opts.offsets()).map_err(AuditError::read)?),
            levels: RwLock::new(caches.level_reads),
            head: RwLock::new(Head {
                size: 0,
                root: merkle::empty_root(),
            }),
            latest: RwLock::new(None),
            signed: tokio::sync::watch::Sender::new(None),
            published: RwLock::new(Published::Latest),
            index: Some(Index::deferred(&opts.dir.join("index"), size)),
            pg: None,
        });

        let mut frontier = Frontier::default();
        if cached > 0 {
            frontier = frontier_from_cache(&view, cached)?;
        }
        let checkpoints = OpenOptions::new()
            .append(true)
            .create(true)
            .open(opts.checkpoints())
            .map_err(AuditError::write)?;
        let seg = OpenOptions::new()
            .write(true)
            .open(&last.path)
            .map_err(AuditError::write)?;
        let mut w = Writer {
            opts,
            view: view.clone(),
            seg,
            seg_len,
            ahead: Default::default(),
            offsets: caches.offsets,
            levels: caches.levels,
            frontier,
            last_time: tail.last_time,
            signer,
            keys: Arc::new(RwLock::new(history)),
            checkpoints,
            last_cp_size: 0,
            last_cp_at: Instant::now(),
            cached: 0,
            pending_offsets: Vec::new(),
            pending_nodes: Vec::new(),
            cache_lens: None,
            index_feed: None,
            _lock: lock,
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
        w.load_checkpoints(size)?;
        Ok((w, view))
    }

    /// Feeds records `from..to` from the segments into the caches.
    fn replay(&mut self, segs: &[Segment], from: u64, to: u64) -> Result<(), AuditError> {
        for (i, s) in segs.iter().enumerate() {
            let next_first = segs.get(i + 1).map_or(u64::MAX, |n| n.first_id);
            if next_first <= from {
                continue;
            }
            let mut id = s.first_id;
            let mut offsets = Vec::new();
            let mut nodes: Vec<Vec<u8>> = Vec::new();
            let frontier = &mut self.frontier;
            let end = segment::scan(&s.path, |off, bytes| {
                if id >= from && id < to {
                    offsets.extend_from_slice(&off.to_le_bytes());
                    frontier.push(merkle::leaf_hash(bytes), |level, _, h| {
                        push_node(&mut nodes, level, h)
                    });
                }
                id += 1;
                Ok::<_, Infallible>(())
            })
            .map_err(|e| match e {
                ScanError::Io(e) => AuditError::read(e),
                ScanError::Damage(d) => AuditError::read(d),
                ScanError::Visit(never) => match never {},
            })?;
            // A closed segment was synced whole and cut to its last frame
            // before the next began: a broken frame or zeros at its end (a
            // torn write can only be in the last) or a count that does not
            // reach the next segment's first id is damage, and replaying
            // past it would give the records after it other ids.
            if next_first != u64::MAX && (end != End::Clean || id != next_first) {
                return Err(LogDamage::Gap {
                    path: s.path.display().to_string(),
                    ends: id,
                    next: next_first,
                }
                .into());
            }
            self.write_caches(&offsets, &nodes)?;
        }
        Ok(())
    }

    /// Finds the latest checkpoint and checks it against the log: a signed
    /// checkpoint that covers records the log no longer has, or another root,
    /// means records were lost or changed.
    fn load_checkpoints(&mut self, size: u64) -> Result<(), AuditError> {
        let verifier = Verifier::parse(&self.signer.vkey()).map_err(AuditError::read)?;
        let notes = checkpoint::read_all(&self.opts.checkpoints()).map_err(AuditError::read)?;
        let Some(cp) = notes.iter().rev().find_map(|n| verifier.verify(n).ok()) else {
            return Ok(());
        };
        if cp.size > size {
            return Err(LogDamage::Lost {
                signed: cp.size,
                size,
            }
            .into());
        }
        if self.view.root_at(cp.size)? != cp.root {
            return Err(LogDamage::Changed { signed: cp.size }.into());
        }
        self.last_cp_size = cp.size;
        self.view.set_latest(cp);
        Ok(())
    }
}

/// The segments of the log, making the folders and the first segment of a
/// new log.
fn segments(opts: &Options) -> Result<Vec<Segment>, AuditError> {
    let seg_dir = opts.segments();
    fs::create_dir_all(&seg_dir).map_err(AuditError::write)?;
    fs::create_dir_all(opts.dir.join("cache")).map_err(AuditError::write)?;
    // A segment made ahead that a crash left unused: never part of the
    // log, and it holds a segment's worth of disk until the next making.
    // (No making is under way: a writer stops its making before it lets go
    // of the log's lock.)
    match fs::remove_file(seg_dir.join(super::ahead::NEXT)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            warn!(error = %e, "could not remove an unused segment made ahead");
        }
        _ => {}
    }
    let mut segs = segment::list(&seg_dir).map_err(AuditError::read)?;
    if segs.is_empty() {
        let path = seg_dir.join(segment::file_name(0));
        File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(AuditError::write)?;
        sync_dir(&seg_dir).map_err(AuditError::write)?;
        segs.push(Segment { first_id: 0, path });
    }
    Ok(segs)
}

/// Scans the open segment, checks every record, and cuts a torn tail back to
/// the last whole record.
fn recover_tail(opts: &Options, last: &Segment, signed: u64) -> Result<Tail, AuditError> {
    let mut tail = Tail {
        count: 0,
        last_time: 0,
        zeros_from: None,
    };
    // The records of the open segment are re-hashed against the leaves
    // written when they were appended: a change to them stops the start.
    let leaf_cache = File::open(opts.level(0)).ok();
    let end = segment::scan(&last.path, |_, bytes| {
        let id = last.first_id + tail.count;
        let r = Record::decode(bytes).map_err(|source| LogDamage::Undecodable { id, source })?;
        if r.id != id {
            return Err(LogDamage::Misplaced { id, claims: r.id });
        }
        if let Some(f) = &leaf_cache {
            let mut cached = [0u8; 32];
            if f.read_exact_at(&mut cached, id * 32).is_ok() && cached != merkle::leaf_hash(bytes) {
                return Err(LogDamage::LeafChanged { id });
            }
        }
        tail.last_time = r.time_micros;
        tail.count += 1;
        Ok(())
    })
    .map_err(|e| match e {
        ScanError::Io(e) => AuditError::read(e),
        ScanError::Damage(d) => LogDamage::Frame(d).into(),
        ScanError::Visit(d) => d.into(),
    })?;
    match end {
        End::Clean => {}
        // A torn write is cut off with the zeros after it: the next batch
        // could otherwise leave part of it behind its own frames.
        End::TornTail { valid_len } => {
            // The writer caches a record's leaf only after its write was
            // synced: a broken frame whose leaf is cached was written whole
            // and answered, and what broke it is damage, not a crash.
            let id = last.first_id + tail.count;
            if let Some(f) = &leaf_cache
                && f.metadata().is_ok_and(|m| m.len() >= (id + 1) * 32)
            {
                return Err(LogDamage::Frame(segment::Damage {
                    path: last.path.display().to_string(),
                    offset: valid_len,
                    position: tail.count,
                    reason: "a broken frame of a record that was written whole (its leaf is cached)",
                })
                .into());
            }
            // Nor is a record a signed checkpoint covers torn: stop before
            // cutting, so the bytes stay for whoever looks into it.
            if signed > id {
                return Err(LogDamage::Lost { signed, size: id }.into());
            }
            warn!(segment = %last.path.display(), valid_len, "cutting a torn tail back to the last whole record");
            cut_back(&last.path, valid_len).map_err(AuditError::write)?;
        }
        End::ZeroTail { valid_len } => tail.zeros_from = Some(valid_len),
    }
    Ok(tail)
}

/// The size of the latest checkpoint the log's current key signed (0 when
/// none): records up to there were durable when it was signed.
fn signed_size(opts: &Options, signer: &super::checkpoint::Signer) -> Result<u64, AuditError> {
    let verifier = Verifier::parse(&signer.vkey()).map_err(AuditError::read)?;
    let notes = checkpoint::read_all(&opts.checkpoints()).map_err(AuditError::read)?;
    Ok(notes
        .iter()
        .rev()
        .find_map(|n| verifier.verify(n).ok())
        .map_or(0, |cp| cp.size))
}

/// Cuts a file back to `len` bytes, durably.
fn cut_back(path: &Path, len: u64) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}

/// Opens the cache files and cuts them back to what can be trusted: as far
/// as every level agrees, and no further than the log's `size` records. The
/// rest is rebuilt from the records.
fn open_caches(opts: &Options, size: u64) -> Result<Caches, AuditError> {
    let offsets = open_rw(&opts.offsets()).map_err(AuditError::write)?;
    let mut levels = Vec::new();
    let mut level_reads = Vec::new();
    for l in 0..64 {
        let p = opts.level(l);
        if l > 0 && !p.exists() && (size >> l) == 0 {
            break;
        }
        levels.push(open_rw(&p).map_err(AuditError::write)?);
        level_reads.push(File::open(&p).map_err(AuditError::read)?);
    }

    let len_of = |f: &File| f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut cached = (len_of(&offsets) / 8)
        .min(len_of(&levels[0]) / 32)
        .min(size);
    for (l, f) in levels.iter().enumerate().skip(1) {
        if len_of(f) / 32 < (cached >> l) {
            cached = 0;
        }
    }
    offsets.set_len(cached * 8).map_err(AuditError::write)?;
    for (l, f) in levels.iter().enumerate() {
        f.set_len((cached >> l) * 32).map_err(AuditError::write)?;
    }
    Ok(Caches {
        offsets,
        levels,
        level_reads,
        cached,
    })
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

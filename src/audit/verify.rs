//! The full check of a log on disk: every record re-read and re-hashed, the
//! tree rebuilt, every signed checkpoint's signature and root compared.
//! After a key rotation each checkpoint must carry the signature of the key
//! in force at its size, and each announcement both keys' (see
//! [`super::rotation`]); announcements are checked against the tree too.
//!
//! It opens nothing that the running gateway holds (not the index): it reads the
//! segments, the checkpoints and the leaf cache, so it runs beside the gateway
//! or on a copy of the data directory on a privacy officer's own machine.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::checkpoint::{self, Checkpoint, Verifier};
use super::merkle::{self, Frontier, Hash};
use super::record::Record;
use super::rotation::{KeyHistory, KeyRing};
use super::segment::{self, End, ScanError};

/// What a successful check found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Records checked.
    pub records: u64,
    /// Checkpoints whose signature and root matched.
    pub checkpoints: usize,
    /// Root of the whole log.
    pub root: Hash,
    /// Bytes of a torn last write, which the gateway cuts at its next start.
    pub torn_tail: Option<u64>,
}

/// The first thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

/// Every checkpoint in the checkpoints file, each checked against the key
/// in force at its size, and the announcements of keys, smallest first.
fn signed_checkpoints(audit_dir: &Path, verifier: &KeyRing) -> Result<Vec<Checkpoint>, Failure> {
    let mut cps = Vec::new();
    for (i, note) in checkpoint::read_all(&audit_dir.join("checkpoints"))
        .map_err(|e| Failure(format!("checkpoints: {e}")))?
        .iter()
        .enumerate()
    {
        let cp = verifier.verify(note).map_err(|e| {
            Failure(format!(
                "checkpoint #{} ({}): {e}",
                i + 1,
                note.lines().nth(1).unwrap_or("?")
            ))
        })?;
        cps.push(cp);
    }
    for a in verifier.announcements() {
        if !cps.iter().any(|c| c.note == a.note) {
            cps.push(a.clone());
        }
    }
    cps.sort_by_key(|c| c.size);
    Ok(cps)
}

/// Checks the log in `audit_dir` against the checkpoints signed by
/// `verifier`, a log that has had one key. `progress(done)` is called now
/// and then.
pub fn verify(
    audit_dir: &Path,
    verifier: &Verifier,
    progress: impl FnMut(u64),
) -> Result<Report, Failure> {
    check_log(audit_dir, &KeyRing::single(verifier.clone()), progress)
}

/// Checks the log in `audit_dir` against the checkpoints signed by its keys
/// as `keys` lists them (which must follow each other).
pub fn verify_keys(
    audit_dir: &Path,
    keys: &KeyHistory,
    progress: impl FnMut(u64),
) -> Result<Report, Failure> {
    let ring = keys
        .check()
        .map_err(|e| Failure(format!("the log's key history: {e}")))?;
    check_log(audit_dir, &ring, progress)
}

/// How a segment's frames end: only the last segment may end in a torn
/// write (its bytes are returned, for the report) or in the unused zeros of
/// a segment made ahead; a closed segment ends at its last frame.
/// A broken frame whose record's leaf is cached is damage: the writer
/// caches a leaf only after the record's write was synced.
fn check_end(
    audit_dir: &Path,
    end: &End,
    path: &Path,
    last: bool,
    records: u64,
) -> Result<Option<u64>, Failure> {
    let what = match end {
        End::Clean => return Ok(None),
        End::ZeroTail { .. } if last => return Ok(None),
        End::TornTail { valid_len } if last && leaf_cached(audit_dir, records) => {
            // Read again: beside a running gateway the scan may have met
            // a write under way, whole by now.
            match File::open(path).and_then(|f| segment::read_at(&f, *valid_len)) {
                Ok(_) => return Ok(None),
                Err(_) => format!(
                    "a broken frame at byte {valid_len}, but its record was written whole (its leaf is cached): damage"
                ),
            }
        }
        End::TornTail { valid_len } if last => {
            let len = std::fs::metadata(path).map_or(*valid_len, |m| m.len());
            return Ok(Some(len - valid_len));
        }
        End::ZeroTail { valid_len } => format!("zeros after byte {valid_len}"),
        End::TornTail { .. } => "a broken frame".to_string(),
    };
    let not_last = if last {
        ""
    } else {
        " but is not the last segment"
    };
    Err(Failure(format!(
        "record {records}: {} ends in {what}{not_last}",
        path.display()
    )))
}

/// Whether the leaf cache holds the leaf of record `id`.
fn leaf_cached(audit_dir: &Path, id: u64) -> bool {
    std::fs::metadata(audit_dir.join("cache/level-00")).is_ok_and(|m| m.len() >= (id + 1) * 32)
}

/// Checks the log in `audit_dir` against the checkpoints signed by `keys`.
fn check_log(
    audit_dir: &Path,
    verifier: &KeyRing,
    mut progress: impl FnMut(u64),
) -> Result<Report, Failure> {
    let fail = |s: String| Failure(s);
    let cps = signed_checkpoints(audit_dir, verifier)?;
    // Read in order, a buffer at a time: a read per record was a third of
    // the time of a check.
    let mut leaves = File::open(audit_dir.join("cache/level-00"))
        .ok()
        .map(|f| BufReader::with_capacity(1 << 16, f));
    let segs =
        segment::list(&audit_dir.join("segments")).map_err(|e| fail(format!("segments: {e}")))?;

    let mut frontier = Frontier::default();
    let mut next_cp = 0usize;
    let mut first_changed: Option<u64> = None;
    let mut torn_tail = None;
    let mut check_cps = |frontier: &Frontier, first_changed: Option<u64>| -> Result<(), Failure> {
        while next_cp < cps.len() && cps[next_cp].size == frontier.size() {
            if cps[next_cp].root != frontier.root() {
                let at = first_changed.map_or(
                    "a record before it was altered, removed or inserted".to_string(),
                    |id| format!("record {id} was altered"),
                );
                return Err(Failure(format!(
                    "the signed checkpoint at {} records does not match the log: {at}",
                    cps[next_cp].size
                )));
            }
            next_cp += 1;
        }
        Ok(())
    };
    check_cps(&frontier, None)?;
    for (si, seg) in segs.iter().enumerate() {
        if seg.first_id != frontier.size() {
            return Err(fail(format!(
                "segment {} starts at record {} but {} records came before it: records were removed or inserted",
                seg.path.display(),
                seg.first_id,
                frontier.size()
            )));
        }
        let end = segment::scan(&seg.path, |_, bytes| {
            let expected = frontier.size();
            let id = Record::check(bytes).map_err(|e| format!("record {expected}: {e}"))?;
            if id != expected {
                return Err(format!(
                    "record {expected}: the record at this place says it is record {id}: records were removed, inserted or reordered"
                ));
            }
            let leaf = merkle::leaf_hash(bytes);
            if first_changed.is_none()
                && let Some(f) = &mut leaves
            {
                let mut cached = [0u8; 32];
                match f.read_exact(&mut cached) {
                    Ok(()) if cached != leaf => first_changed = Some(expected),
                    Ok(()) => {}
                    // The cache may end before the log (it is rebuilt at
                    // the gateway's next start): nothing to compare then.
                    Err(_) => leaves = None,
                }
            }
            frontier.push(leaf, |_, _, _| {});
            check_cps(&frontier, first_changed).map_err(|f| f.0)?;
            if frontier.size() % 65_536 == 0 {
                progress(frontier.size());
            }
            Ok(())
        })
        .map_err(|e| match e {
            ScanError::Io(e) => fail(format!("{}: {e}", seg.path.display())),
            ScanError::Damage(d) => fail(format!("record {}: {d}", seg.first_id + d.position)),
            ScanError::Visit(s) => fail(s),
        })?;
        if let Some(torn) = check_end(
            audit_dir,
            &end,
            &seg.path,
            si + 1 == segs.len(),
            frontier.size(),
        )? {
            torn_tail = Some(torn);
        }
    }
    if let Some(cp) = cps.get(next_cp) {
        return Err(fail(format!(
            "a signed checkpoint covers {} records but the log has {}: records were removed",
            cp.size,
            frontier.size()
        )));
    }
    if let Some(id) = first_changed {
        return Err(fail(format!(
            "record {id} differs from the leaf hash written when it was appended: it was altered"
        )));
    }
    progress(frontier.size());
    Ok(Report {
        records: frontier.size(),
        checkpoints: cps.len(),
        root: frontier.root(),
        torn_tail,
    })
}

//! The cosigned checkpoints, on disk: `<data_dir>/audit/cosigned`.
//!
//! An append-only file of signed notes, each the log's checkpoint with the
//! cosignature lines gathered for it so far, framed as the checkpoints file
//! is (`u32` little-endian length, then the note). A note is appended, and
//! synced, each time a witness's cosignature is verified, before that
//! cosignature can count towards publishing: what partners were shown
//! survives a crash. A torn last entry (a crash mid-append) is cut off when
//! the file is opened, so later entries stay readable. The file is 0600.
//! Past [`COMPACT_AFTER`] entries it is rewritten whole with only what still
//! counts (the published checkpoint and newer ones gathering cosignatures),
//! so it stays small and quick to check at start; every checkpoint the log
//! signed stays in the log's own checkpoints file.
//!
//! Reading it back gives the published checkpoint (the newest one with a
//! quorum of cosignatures that verify with the configured keys) and, per
//! witness, the largest size it cosigned: where the next consistency proof
//! starts from. Nothing in it is trusted without checking: the log's
//! signature and every cosignature are verified again, and the caller can
//! check each checkpoint's root against the tree.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::audit::checkpoint::Checkpoint;
use crate::audit::merkle::Hash;
use crate::audit::rotation::KeyRing;
use crate::witness::note::{Note, NoteSignature};

use super::target::Target;

/// Largest note accepted from the file (a checkpoint with 64 signatures is
/// far smaller).
const MAX_NOTE: usize = 64 * 1024;

/// The file under the audit folder.
pub fn path(audit_dir: &Path) -> PathBuf {
    audit_dir.join("cosigned")
}

/// One checkpoint read back with the cosignatures that verify.
#[derive(Debug, Clone)]
pub struct Cosigned {
    /// The checkpoint as the log signed it (its note without cosignatures).
    pub checkpoint: Checkpoint,
    /// Per configured witness (in order), its verified cosignature.
    pub cosignatures: Vec<Option<NoteSignature>>,
    /// The note as kept: log signature and cosignature lines.
    pub note: String,
}

impl Cosigned {
    /// How many configured witnesses cosigned it.
    pub fn count(&self) -> usize {
        self.cosignatures.iter().flatten().count()
    }
}

/// What the file holds, checked.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every entry that verifies, in file order.
    pub entries: Vec<Cosigned>,
    /// The newest entry with at least the quorum, by size and then by
    /// number of cosignatures: what partners are shown.
    pub published: Option<Cosigned>,
    /// Per configured witness, the largest size it is known to have cosigned.
    pub sizes: Vec<u64>,
}

/// The notes in the file and the length of its whole entries.
fn read_frames(bytes: &[u8]) -> (Vec<String>, u64) {
    let mut out = Vec::new();
    let mut i = 0usize;
    while let Some(len) = bytes.get(i..i + 4) {
        let n = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(note) = bytes.get(i + 4..i + 4 + n).filter(|_| n <= MAX_NOTE) else {
            break;
        };
        out.push(String::from_utf8_lossy(note).into_owned());
        i += 4 + n;
    }
    (out, i as u64)
}

/// The log's checkpoint inside a kept note, with the verified cosignature
/// of each witness.
fn check(note: &str, log: &KeyRing, targets: &[Target]) -> Option<Cosigned> {
    let mut checkpoint = log.verify(note).ok()?;
    let parsed = Note::parse(note).ok()?;
    let cosignatures: Vec<Option<NoteSignature>> = targets
        .iter()
        .map(|t| {
            parsed
                .signatures
                .iter()
                .find(|s| {
                    t.verifier.matches(s) && t.verifier.verify_signature(&parsed.text, s).is_ok()
                })
                .cloned()
        })
        .collect();
    // The checkpoint alone: the note without the witnesses' lines.
    let own: Vec<NoteSignature> = parsed
        .signatures
        .iter()
        .filter(|s| !targets.iter().any(|t| t.verifier.matches(s)))
        .cloned()
        .collect();
    checkpoint.note = Note {
        text: parsed.text.clone(),
        signatures: own,
    }
    .render();
    Some(Cosigned {
        checkpoint,
        cosignatures,
        note: note.to_string(),
    })
}

/// Reads and checks the file. `in_log` says whether a checkpoint's size and
/// root are those of the log as it is now (a copy of the file beside another
/// log proves nothing about this one). Blocking.
pub fn load(
    file: &Path,
    log: &KeyRing,
    targets: &[Target],
    quorum: usize,
    in_log: impl Fn(u64, &Hash) -> bool,
) -> std::io::Result<Loaded> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let (notes, _) = read_frames(&bytes);
    let mut loaded = Loaded {
        sizes: vec![0; targets.len()],
        ..Loaded::default()
    };
    for note in notes {
        let Some(c) = check(&note, log, targets) else {
            continue;
        };
        if !in_log(c.checkpoint.size, &c.checkpoint.root) {
            continue;
        }
        for (size, sig) in loaded.sizes.iter_mut().zip(&c.cosignatures) {
            if sig.is_some() {
                *size = (*size).max(c.checkpoint.size);
            }
        }
        let better = loaded
            .published
            .as_ref()
            .is_none_or(|p| (c.checkpoint.size, c.count()) > (p.checkpoint.size, p.count()));
        if quorum > 0 && c.count() >= quorum && better {
            loaded.published = Some(c.clone());
        }
        loaded.entries.push(c);
    }
    Ok(loaded)
}

/// Entries the file may hold before it is compacted to what still counts.
pub const COMPACT_AFTER: usize = 1024;

/// One frame: length, then the note.
fn frame(note: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    let len = u32::try_from(note.len())
        .ok()
        .filter(|n| *n as usize <= MAX_NOTE)
        .ok_or_else(|| std::io::Error::other("note too large"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(note.as_bytes());
    Ok(())
}

/// The file, open to append.
#[derive(Debug)]
pub struct CosignedFile {
    /// Where it is, to compact it.
    path: PathBuf,
    /// Open to append.
    file: File,
    /// Entries it holds.
    entries: usize,
}

impl CosignedFile {
    /// Opens (or makes, 0600) the file and cuts a torn last entry off.
    /// Blocking.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let bytes = std::fs::read(path)?;
        let (notes, whole) = read_frames(&bytes);
        if whole < bytes.len() as u64 {
            file.set_len(whole)?;
            file.sync_all()?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entries: notes.len(),
        })
    }

    /// Appends one note in one write and syncs it. When the file holds more
    /// than [`COMPACT_AFTER`] entries, it is then replaced whole (temporary
    /// file, sync, rename, sync of the folder) by `current`: the published
    /// checkpoint and those still gathering cosignatures, so it stays small
    /// and quick to read at start. Blocking.
    pub fn append(&mut self, note: &str, current: &[String]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(note.len() + 4);
        frame(note, &mut out)?;
        self.file.write_all(&out)?;
        self.file.sync_data()?;
        self.entries += 1;
        if self.entries > COMPACT_AFTER {
            self.compact(current)?;
        }
        Ok(())
    }

    fn compact(&mut self, current: &[String]) -> std::io::Result<()> {
        let mut out = Vec::new();
        for note in current {
            frame(note, &mut out)?;
        }
        crate::datadir::write_atomic(&self.path, &out, 0o600)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.entries = current.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_entry_is_cut_off_and_a_long_file_is_compacted() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path());
        let mut f = CosignedFile::open(&p).unwrap();
        f.append("one\n", &[]).unwrap();
        drop(f);
        let mut torn = std::fs::read(&p).unwrap();
        torn.extend_from_slice(&[200, 0, 0, 0, b'x']);
        std::fs::write(&p, &torn).unwrap();
        let mut f = CosignedFile::open(&p).unwrap();
        f.append("two\n", &[]).unwrap();
        let (notes, _) = read_frames(&std::fs::read(&p).unwrap());
        assert_eq!(notes, ["one\n", "two\n"]);
        // Past COMPACT_AFTER entries the file keeps only what still counts.
        // (2 entries, then the 1023rd of these makes 1025: compacted to 2.)
        for _ in 0..COMPACT_AFTER - 1 {
            f.append("old\n", &["kept\n".to_string(), "newest\n".to_string()])
                .unwrap();
        }
        f.append("newest\n", &[]).unwrap();
        let (notes, _) = read_frames(&std::fs::read(&p).unwrap());
        assert_eq!(notes, ["kept\n", "newest\n", "newest\n"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

//! Rotating the log's checkpoint signing key, and the history of its keys.
//!
//! Why: partners, their monitors and the witnesses trust the log by its
//! verifier key, given to them out of band. A key that has to be replaced
//! (an administrator left, a key is suspected, it is simply old) must not
//! make all of them start over with a key they have to take on the
//! gateway's word. So a new key is announced in a checkpoint that the old
//! and the new key both sign (a signed note may carry several signature
//! lines, `c2sp.org/signed-note`): whoever trusts the old key learns the
//! new one from the old key's own signature. Checkpoints signed before stay
//! valid under the old key, and so does evidence made with them.
//!
//! The history, `<data_dir>/audit/checkpoint.keys` (JSON; verifier keys
//! only, nothing secret), lists each key with the tree size it signs from,
//! and for every key after the first its announcing checkpoint. A key is in
//! force from its size up to and including the size at which the next one
//! was announced: a checkpoint of that size signed before the rotation is
//! the old key's. The file is written whole (temporary file, rename), and
//! the gateway serves it to partners (`GET /v1/audit/keys`).
//!
//! A rotation runs (in `rekey`) on the writer thread, between two batches, so one key
//! signs at a time and none signs while another is being announced:
//! 1. the new key is made as `keys/checkpoint.ed25519.new` (0600, synced);
//! 2. the announcing checkpoint (old and new key) is appended to the
//!    checkpoints file and synced;
//! 3. the history with the new key is written: from here the rotation has
//!    happened;
//! 4. the new key file replaces `keys/checkpoint.ed25519` (a rename, so
//!    the old secret key is gone: the history keeps its verifier key).
//!
//! A crash before step 3 leaves the old key in force (the `.new` file is
//! removed at the next start; an announcement nobody was told of is
//! harmless, it is still a checkpoint signed by the old key); a crash after
//! it is finished at the next start by step 4.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, CheckpointError, Verifier};

/// The history's file name, in the audit folder.
pub const FILE: &str = "checkpoint.keys";
/// Where a rotation makes the new key before it is announced (in the keys
/// folder).
pub const NEXT_KEY: &str = "checkpoint.ed25519.new";
/// Largest history file read (a key and an announcement take ~500 bytes).
const MAX_FILE: u64 = 4 << 20;

/// One key of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogKey {
    /// Its verifier key, `name+hash+base64`.
    pub vkey: String,
    /// The tree size from which it signs.
    pub from_size: u64,
    /// The checkpoint that announced it, signed by the key before it and by
    /// itself; none for the log's first key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<String>,
}

/// Every key the log has signed with, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHistory {
    /// The keys in the order they came into force.
    pub keys: Vec<LogKey>,
}

/// A history whose announcements verified: the keys parsed, each with the
/// sizes it was in force for.
#[derive(Debug, Clone)]
pub struct KeyRing {
    /// Each key and the size it signs from, oldest first.
    keys: Vec<(Verifier, u64)>,
    /// The announcing checkpoints, checked against the log like any other.
    announcements: Vec<Checkpoint>,
}

/// What a rotation did, as the command prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    /// The tree size of the announcing checkpoint.
    pub size: u64,
    /// The key in force until then.
    pub old_vkey: String,
    /// The key in force from then on.
    pub new_vkey: String,
    /// The announcing checkpoint, signed by both.
    pub announcement: String,
}

impl KeyHistory {
    /// The history of a log whose first key is `vkey`.
    pub fn first(vkey: &str) -> Self {
        Self {
            keys: vec![LogKey {
                vkey: vkey.trim().to_string(),
                from_size: 0,
                announcement: None,
            }],
        }
    }

    /// The file under an audit folder.
    pub fn path(audit_dir: &Path) -> PathBuf {
        audit_dir.join(FILE)
    }

    /// The history file, if there is one. Blocking.
    pub fn load(audit_dir: &Path) -> io::Result<Option<Self>> {
        let path = Self::path(audit_dir);
        let bytes = match fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: larger than {MAX_FILE} bytes", path.display()),
                ));
            }
            Ok(_) => fs::read(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// What tools check a log with: the history file, or for a log that was
    /// never rotated (and made before the file existed) its one key, in
    /// `checkpoint.vkey`. Blocking.
    pub fn read(audit_dir: &Path) -> io::Result<Self> {
        if let Some(h) = Self::load(audit_dir)? {
            return Ok(h);
        }
        let vkey = fs::read_to_string(audit_dir.join("checkpoint.vkey"))?;
        Ok(Self::first(&vkey))
    }

    /// Writes the file whole and makes it durable. Blocking.
    pub fn save(&self, audit_dir: &Path) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        crate::datadir::write_atomic(&Self::path(audit_dir), &text, 0o600)?;
        fs::File::open(audit_dir)?.sync_all()
    }

    /// The key in force now (empty for an empty history, which
    /// [`check`](Self::check) refuses).
    pub fn current_vkey(&self) -> &str {
        self.keys.last().map_or("", |k| k.vkey.as_str())
    }

    /// Checks that the keys follow each other: the first from size 0, each
    /// later one announced at its size by a checkpoint that the key before
    /// it and the key itself both signed.
    pub fn check(&self) -> Result<KeyRing, String> {
        let mut keys: Vec<(Verifier, u64)> = Vec::new();
        let mut announcements = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let v =
                Verifier::parse(&k.vkey).map_err(|e| format!("key {} ({}): {e}", i + 1, k.vkey))?;
            match (keys.last(), &k.announcement) {
                (None, None) if k.from_size == 0 => {}
                (None, _) => return Err("the first key must sign from size 0, unannounced".into()),
                (Some(_), None) => {
                    return Err(format!("key {} ({}) was never announced", i + 1, v.id()));
                }
                (Some((prev, from)), Some(note)) => {
                    let by_old = prev.verify(note).map_err(|e| {
                        format!(
                            "the announcement of key {} by the key before it: {e}",
                            v.id()
                        )
                    })?;
                    v.verify(note).map_err(|e| {
                        format!("the announcement of key {} by that key: {e}", v.id())
                    })?;
                    if by_old.size != k.from_size || k.from_size < *from {
                        return Err(format!(
                            "key {} is said to sign from size {}, announced at size {} (the key before it from {from})",
                            v.id(),
                            k.from_size,
                            by_old.size
                        ));
                    }
                    announcements.push(by_old);
                }
            }
            keys.push((v, k.from_size));
        }
        if keys.is_empty() {
            return Err("no key".into());
        }
        Ok(KeyRing {
            keys,
            announcements,
        })
    }
}

impl KeyRing {
    /// One key, in force from size 0: a log that was never rotated, or a
    /// checker given one key.
    pub fn single(v: Verifier) -> Self {
        Self {
            keys: vec![(v, 0)],
            announcements: Vec::new(),
        }
    }

    /// The key in force now.
    pub fn current(&self) -> &Verifier {
        // `check` and `single` never make an empty ring.
        &self.keys[self.keys.len() - 1].0
    }

    /// Every key, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Verifier> {
        self.keys.iter().map(|k| &k.0)
    }

    /// The announcing checkpoints, oldest first.
    pub fn announcements(&self) -> &[Checkpoint] {
        &self.announcements
    }

    /// Checks a checkpoint: signed by a key of the log that was in force at
    /// its size. A line by one of the keys that does not verify rejects it.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let mut misplaced = None;
        for (i, (v, from)) in self.keys.iter().enumerate() {
            let cp = match v.verify(note) {
                Ok(cp) => cp,
                Err(CheckpointError::NoSignature(_)) => continue,
                Err(e) => return Err(e),
            };
            let until = self.keys.get(i + 1).map(|k| k.1);
            if cp.size >= *from && until.is_none_or(|u| cp.size <= u) {
                return Ok(cp);
            }
            misplaced = Some(CheckpointError::NotInForce {
                key: v.id(),
                size: cp.size,
            });
        }
        Err(misplaced.unwrap_or_else(|| CheckpointError::NoSignature(self.current().id())))
    }
}

/// The history as the writer and the `Audit` handle share it.
pub(super) type SharedKeys = Arc<RwLock<KeyHistory>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::{self, Signer};

    #[test]
    fn a_key_is_followed_only_through_an_announcement_both_keys_signed() {
        let d = tempfile::tempdir().unwrap();
        let old = Signer::load_or_create(&d.path().join("a"), "o").unwrap();
        let new = Signer::load_or_create(&d.path().join("b"), "o").unwrap();
        let ann = checkpoint::sign_together(&[&old, &new], 5, &[1; 32]);
        let mut h = KeyHistory::first(&old.vkey());
        h.keys.push(LogKey {
            vkey: new.vkey(),
            from_size: 5,
            announcement: Some(ann.note.clone()),
        });
        let ring = h.check().unwrap();
        // The old key up to the rotation, the new one from it on.
        assert!(ring.verify(&old.sign(3, &[2; 32]).note).is_ok());
        assert!(ring.verify(&old.sign(5, &[1; 32]).note).is_ok());
        assert!(ring.verify(&new.sign(9, &[3; 32]).note).is_ok());
        assert!(matches!(
            ring.verify(&old.sign(6, &[4; 32]).note),
            Err(CheckpointError::NotInForce { size: 6, .. })
        ));
        assert!(matches!(
            ring.verify(&new.sign(4, &[4; 32]).note),
            Err(CheckpointError::NotInForce { size: 4, .. })
        ));
        // An "announcement" the new key alone signed is no rotation.
        let mut forged = h.clone();
        forged.keys[1].announcement = Some(new.sign(5, &[1; 32]).note);
        assert!(forged.check().unwrap_err().contains("key before it"));
        let mut unannounced = h.clone();
        unannounced.keys[1].announcement = None;
        assert!(unannounced.check().is_err());
        let mut moved = h;
        moved.keys[1].from_size = 2;
        assert!(moved.check().is_err());
    }
}

//! What a witness has cosigned: per log origin, the latest checkpoint (its
//! size and root hash), kept on disk so that a restart forgets nothing.
//!
//! One file per origin, `<hex SHA-256 of the origin>.checkpoint`, holding the
//! checkpoint note as the log sent it (it is evidence too: the log signed
//! it). Each file is written whole (temp file, fsync, rename, fsync of the
//! folder) before the cosignature leaves the witness. The folder is 0700,
//! the files 0600, and an exclusive `flock` on `<state>/lock` keeps a second
//! witness process off the same state.
//!
//! All checks and the update happen under one mutex ([`State::lock`]): two
//! requests for one log can never both pass the size check against the same
//! old state, so the witness never cosigns two roots for one size, nor rolls
//! its view of a log back (the race tlog-witness describes).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::audit::merkle::Hash;
use crate::datadir::{secure, write_atomic};
use crate::identity::sha256;

use super::note::{Note, parse_checkpoint};

/// The witness's view of one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Size of the latest checkpoint cosigned.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
}

/// Why the state cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file or the folder could not be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A state file does not hold a checkpoint of the origin its name says.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the state folder.
    #[error("{0}: another witness uses this state folder")]
    Locked(PathBuf),
    /// A thread panicked while holding the state; nothing more is cosigned.
    #[error("the witness state lock is poisoned")]
    Poisoned,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The state of every log this witness has cosigned.
#[derive(Debug)]
pub struct State {
    /// The state folder.
    dir: PathBuf,
    /// Held open for its `flock`: released when the witness stops.
    _lock: File,
    /// Origin → latest cosigned checkpoint; the one mutex of the witness.
    logs: Mutex<HashMap<String, Seen>>,
}

impl State {
    /// Opens (or makes) the state folder, locks it and reads what it holds.
    /// Blocking.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        secure(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| StateError::Locked(dir.to_path_buf()))?;
        let mut logs = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_some_and(|e| e == "checkpoint") {
                let (origin, seen) = read_one(&path)?;
                logs.insert(origin, seen);
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            logs: Mutex::new(logs),
        })
    }

    /// Takes the witness's one lock: checks and updates made through the
    /// guard are atomic with respect to every other request.
    pub fn lock(&self) -> Result<StateGuard<'_>, StateError> {
        let logs = self.logs.lock().map_err(|_| StateError::Poisoned)?;
        Ok(StateGuard {
            dir: &self.dir,
            logs,
        })
    }
}

/// The state, held: read a log's view, store a new one.
#[derive(Debug)]
pub struct StateGuard<'a> {
    dir: &'a Path,
    logs: MutexGuard<'a, HashMap<String, Seen>>,
}

impl StateGuard<'_> {
    /// The latest checkpoint cosigned for `origin`, if any.
    pub fn get(&self, origin: &str) -> Option<Seen> {
        self.logs.get(origin).copied()
    }

    /// Stores `note` (a checkpoint of `origin` with this size and root) as
    /// the latest, durably, before anything is cosigned. Blocking.
    ///
    /// Once the rename has happened the new view is kept in memory even if
    /// the folder's sync then fails: the disk may already hold it, and the
    /// witness must not cosign another root for that size after all.
    pub fn store(&mut self, origin: &str, seen: Seen, note: &str) -> Result<(), StateError> {
        let path = file_for(self.dir, origin);
        write_atomic(&path, note.as_bytes(), 0o600).map_err(io(&path))?;
        self.logs.insert(origin.to_string(), seen);
        File::open(self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(self.dir))
    }
}

fn file_for(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!(
        "{}.checkpoint",
        hex::encode(sha256(origin.as_bytes()))
    ))
}

fn read_one(path: &Path) -> Result<(String, Seen), StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let note = Note::parse(&text).map_err(|e| corrupt(e.to_string()))?;
    let cp = parse_checkpoint(&note.text).map_err(|e| corrupt(e.to_string()))?;
    if file_for(path.parent().unwrap_or(Path::new(".")), &cp.origin) != path {
        return Err(corrupt(format!(
            "holds a checkpoint of '{}', not of the origin its name says",
            cp.origin
        )));
    }
    let seen = Seen {
        size: cp.size,
        root: cp.root,
    };
    Ok((cp.origin, seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str =
        "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} o AAAAAAA=\n";

    #[test]
    fn the_state_survives_a_restart_and_is_private_and_exclusive() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let seen = Seen {
            size: 5,
            root: parse_checkpoint("o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
                .unwrap()
                .root,
        };
        {
            let s = State::open(&dir).unwrap();
            assert!(matches!(State::open(&dir), Err(StateError::Locked(_))));
            let mut g = s.lock().unwrap();
            assert_eq!(g.get("o"), None);
            g.store("o", seen, NOTE).unwrap();
        }
        let s = State::open(&dir).unwrap();
        assert_eq!(s.lock().unwrap().get("o"), Some(seen));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file_for(&dir, "o")), 0o600);
    }
}

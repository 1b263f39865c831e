//! The subject keys: how a V-nummer becomes the pseudonym in audit records,
//! and how the log forgets who a record was about once its time is up.
//!
//! Records must let a privacy officer find every disclosure about one person
//! without the log holding the V-nummer itself. A keyed HMAC does that: the
//! same V-nummer always gives the same pseudonym under one key, and without
//! the key (kept under `<data_dir>/keys`, outside the log) a pseudonym cannot
//! be tested against guessed V-nummers.
//!
//! There is one key per pilot and calendar month
//! (`keys/subject/<pilot>/<YYYY-MM>.key`; console and CLI look-ups, which
//! belong to no pilot, under `_lookup`), so that retention can end the link
//! month by month: destroying a month's key leaves its records byte for byte
//! in the log (every proof still holds) but no one can compute their
//! pseudonyms again. A search by V-nummer therefore tries every key that
//! still exists.
//!
//! Records written before keys were per month used the single
//! `keys/audit-subject.key`. It stays, as one legacy "month": the first
//! gateway with per-month keys writes `keys/subject/legacy` with the log's
//! size then (records below it are legacy), and retention destroys the key
//! when the month of the newest legacy record is past the longest retention
//! of any pilot (see `super::retention`).
//!
//! It lives apart from the store because tools that answer an access request
//! need it without opening the writer.
//!
//! Several gateways sharing one log (PostgreSQL) must use one key per pilot
//! and month, or a search through one node misses what another recorded: a
//! [`SharedKeys`] store makes the first node's new key the one every node
//! uses, and hands each node the keys others made.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ring::hmac;

use super::merkle::Hash;
use crate::policy::retention::{YearMonth, month_label, month_of, parse_month};

/// The scope of look-ups in the console and the CLI, which name no pilot.
pub const LOOKUP_SCOPE: &str = "_lookup";

/// Where the nodes of one deployment agree on their subject keys (the
/// shared database). Calls block.
pub trait SharedKeys: Send + Sync {
    /// The key of `scope` and `month` (`YYYY-MM`): the one already agreed,
    /// or `candidate`, which then becomes it.
    fn agree(&self, scope: &str, month: &str, candidate: &[u8; 32]) -> std::io::Result<[u8; 32]>;
    /// Every agreed key: scope, month, secret.
    fn all(&self) -> std::io::Result<Vec<(String, String, [u8; 32])>>;
    /// Forgets a key (retention destroyed it), on every node.
    fn forget(&self, scope: &str, month: &str) -> std::io::Result<()>;
    /// The keys destroyed by any node: scope, month.
    fn destroyed(&self) -> std::io::Result<Vec<(String, String)>>;
}

/// The subject keys of one data directory.
pub struct SubjectKeys {
    /// The deployment's shared keys, when several nodes share one log.
    shared: Option<Arc<dyn SharedKeys>>,
    /// `<data_dir>/keys`.
    dir: PathBuf,
    /// Keys in use by the writer's callers, so a record does not read a file;
    /// a destroyed key is dropped from here too.
    cache: Mutex<HashMap<String, HashMap<YearMonth, hmac::Key>>>,
}

impl std::fmt::Debug for SubjectKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKeys(..)")
    }
}

/// One existing key: its scope (pilot id or [`LOOKUP_SCOPE`]) and month, or
/// the legacy key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyId {
    /// The single key of records written before per-month keys.
    Legacy,
    /// A pilot's (or the look-ups') key of one month.
    Month(String, YearMonth),
}

fn key_of(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

fn sign(key: &hmac::Key, vnummer: &str) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(key, vnummer.as_bytes()).as_ref());
    out
}

/// Writes a key another node made (or agreed) into this node's folder.
fn write_key(path: &Path, secret: &[u8; 32]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    crate::datadir::write_atomic(path, secret, 0o600)
}

/// Overwrites a secret before unlinking it, and syncs the folder, so the
/// key is gone from the file system, not only from its listing.
fn shred(path: &Path) -> std::io::Result<()> {
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            f.write_all(&[0u8; 32])?;
            f.sync_all()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    fs::remove_file(path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl SubjectKeys {
    /// The keys under `keys_dir` (`<data_dir>/keys`). Nothing is read yet.
    pub fn new(keys_dir: &Path) -> Self {
        Self {
            dir: keys_dir.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// The same, agreeing keys with the other nodes through `shared`.
    pub fn shared(keys_dir: &Path, shared: Arc<dyn SharedKeys>) -> Self {
        Self {
            shared: Some(shared),
            ..Self::new(keys_dir)
        }
    }

    /// The month's key: the local file, else (shared) the agreed one,
    /// written to the local file, else a new one.
    fn month_key(&self, scope: &str, month: YearMonth) -> std::io::Result<[u8; 32]> {
        let path = self.month_path(scope, month);
        let Some(shared) = &self.shared else {
            return crate::keys::load_or_create(&path);
        };
        if let Ok(b) = fs::read(&path)
            && let Ok(k) = <[u8; 32]>::try_from(b.as_slice())
        {
            return Ok(k);
        }
        let mut candidate = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut candidate)
            .map_err(|_| std::io::Error::other("no randomness for a subject key"))?;
        let agreed = shared.agree(scope, &month_label(month), &candidate)?;
        write_key(&path, &agreed)?;
        Ok(agreed)
    }

    /// Shreds this node's copies of the keys any node destroyed, and
    /// writes the keys other nodes agreed that this node lacks. Blocking;
    /// nothing to do on one node.
    pub fn sync(&self) -> std::io::Result<()> {
        self.pull()
    }

    /// Writes the keys other nodes agreed that this node lacks.
    fn pull(&self) -> std::io::Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        // Keys another node destroyed go here too, before anything links.
        for (scope, month) in shared.destroyed()? {
            let Some(m) = parse_month(&month) else {
                continue;
            };
            if !crate::config::valid_id(&scope) && scope != LOOKUP_SCOPE {
                continue;
            }
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&scope)
                .map(|months| months.remove(&m));
            let path = self.month_path(&scope, m);
            if path.exists() {
                shred(&path)?;
            }
        }
        for (scope, month, secret) in shared.all()? {
            let Some(m) = parse_month(&month) else {
                continue;
            };
            if !crate::config::valid_id(&scope) && scope != LOOKUP_SCOPE {
                continue;
            }
            let path = self.month_path(&scope, m);
            if !path.exists() {
                write_key(&path, &secret)?;
            }
        }
        Ok(())
    }

    fn legacy_path(&self) -> PathBuf {
        self.dir.join("audit-subject.key")
    }

    fn legacy_marker(&self) -> PathBuf {
        self.dir.join("subject").join("legacy")
    }

    fn month_path(&self, scope: &str, m: YearMonth) -> PathBuf {
        self.dir
            .join("subject")
            .join(scope)
            .join(format!("{}.key", month_label(m)))
    }

    /// Marks where legacy records end, once: `size` is the log's size when
    /// the first gateway with per-month keys opens it. Blocking.
    pub fn mark_legacy(&self, size: u64) -> std::io::Result<()> {
        if !self.legacy_path().exists() || self.legacy_marker().exists() {
            return Ok(());
        }
        fs::create_dir_all(self.dir.join("subject"))?;
        let tmp = self.legacy_marker().with_extension("tmp");
        fs::write(&tmp, format!("{size}\n"))?;
        fs::rename(tmp, self.legacy_marker())
    }

    /// Records below this id used the legacy key, while it exists.
    pub fn legacy_until(&self) -> Option<u64> {
        if !self.legacy_path().exists() {
            return None;
        }
        match fs::read_to_string(self.legacy_marker()) {
            Ok(s) => s.trim().parse().ok(),
            // No marker yet: every record so far is legacy.
            Err(_) => Some(u64::MAX),
        }
    }

    /// The pseudonym of a V-nummer in a record of `scope` (a pilot id, or
    /// [`LOOKUP_SCOPE`]) written now. Makes the month's key on first use.
    /// Blocking (a file, once per scope and month).
    pub fn pseudonym_now(&self, scope: &str, vnummer: &str) -> std::io::Result<Hash> {
        let month = month_of(time::OffsetDateTime::now_utc().date());
        let scope = if crate::config::valid_id(scope) {
            scope
        } else {
            LOOKUP_SCOPE
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // By scope, then month: a look-up copies no string.
        if let Some(key) = cache.get(scope).and_then(|months| months.get(&month)) {
            return Ok(sign(key, vnummer));
        }
        let secret = self.month_key(scope, month)?;
        let key = key_of(&secret);
        let p = sign(&key, vnummer);
        cache
            .entry(scope.to_string())
            .or_default()
            .insert(month, key);
        Ok(p)
    }

    /// Every key that still exists, oldest month first, legacy first.
    /// Read from disk, so a key another process destroyed is not listed.
    pub fn existing(&self) -> Vec<KeyId> {
        let mut out = Vec::new();
        if self.legacy_path().exists() {
            out.push(KeyId::Legacy);
        }
        let Ok(scopes) = fs::read_dir(self.dir.join("subject")) else {
            return out;
        };
        let mut months = Vec::new();
        for s in scopes.flatten().filter(|s| s.path().is_dir()) {
            let scope = s.file_name().to_string_lossy().into_owned();
            for f in fs::read_dir(s.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if let Some(m) = name.strip_suffix(".key").and_then(parse_month) {
                    months.push(KeyId::Month(scope.clone(), m));
                }
            }
        }
        months.sort_by(|a, b| match (a, b) {
            (KeyId::Month(sa, ma), KeyId::Month(sb, mb)) => (ma, sa).cmp(&(mb, sb)),
            _ => a.cmp(b),
        });
        out.extend(months);
        out
    }

    /// The pseudonyms of a V-nummer under every key that still exists: what
    /// a search by subject looks for. Blocking.
    pub fn pseudonyms(&self, vnummer: &str) -> std::io::Result<Vec<Hash>> {
        self.pull()?;
        let mut out = Vec::new();
        for id in self.existing() {
            let path = match &id {
                KeyId::Legacy => self.legacy_path(),
                KeyId::Month(s, m) => self.month_path(s, *m),
            };
            match fs::read(&path) {
                Ok(b) if b.len() == 32 => out.push(sign(&key_of(&b), vnummer)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Destroys a key for good. Blocking.
    pub fn destroy(&self, id: &KeyId) -> std::io::Result<()> {
        match id {
            KeyId::Legacy => shred(&self.legacy_path()),
            KeyId::Month(scope, m) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(scope)
                    .map(|months| months.remove(m));
                if let Some(shared) = &self.shared {
                    shared.forget(scope, &month_label(*m))?;
                }
                shred(&self.month_path(scope, *m))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;

    #[test]
    fn a_destroyed_key_no_longer_yields_its_pseudonym() {
        let d = tempfile::tempdir().unwrap();
        let keys = SubjectKeys::new(d.path());
        let p = keys.pseudonym_now("utrecht", "5550001234").unwrap();
        assert_eq!(p, keys.pseudonym_now("utrecht", "5550001234").unwrap());
        assert_ne!(p, keys.pseudonym_now("amsterdam", "5550001234").unwrap());
        assert!(keys.pseudonyms("5550001234").unwrap().contains(&p));
        let id = keys
            .existing()
            .into_iter()
            .find(|k| matches!(k, KeyId::Month(s, _) if s == "utrecht"))
            .unwrap();
        keys.destroy(&id).unwrap();
        assert!(!keys.pseudonyms("5550001234").unwrap().contains(&p));
        assert_eq!(keys.existing().len(), 1);
    }
}

//! The LVV registry: who has an open stay in which LVV, kept under a keyed
//! pseudonym so that a national list of undocumented people never exists in
//! clear, not even on the gateway's disk.
//!
//! A stay is stored under `HMAC(registry key, V-nummer)`, with the pilot's id
//! and dates only: no V-nummer, no name. The key is the deployment's own
//! (`keys/registry.key`), apart from the audit log's subject key and the
//! pilots' pseudonym keys, so that linking the registry to anything else
//! needs this key too. Ended stays are kept (pilot, dates, reason) for the
//! programme's figures, never for a list of people.
//!
//! It shares the embedded database of the mailboxes; every change is flushed
//! before the caller is answered. With `[storage] backend = "postgres"` the
//! same keys and values live in the shared database's `kv` table instead,
//! so every node answers from one registry.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::hmac;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::audit::pg::PgLog;
use crate::audit::pg::kv::KvPut;

/// The trees' names, also the `space` of their rows in the shared database.
const OPEN: &str = "registry-open";
const ENDED: &str = "registry-ended";

/// A database failure, in the error type the registry's callers handle.
fn pg_err(e: crate::audit::AuditError) -> sled::Error {
    sled::Error::Unsupported(e.to_string())
}

/// How a stay ended, as kept for the figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// First day of the stay (`YYYY-MM-DD`).
    pub since: String,
    /// Its last day.
    pub until: String,
    /// One of the pilot's end reasons.
    pub reason: String,
}

/// One stay of one person, as their art. 15 report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stay {
    /// The pilot's id.
    pub pilot: String,
    /// First day.
    pub since: String,
    /// How it ended, if it did.
    pub ended: Option<Ended>,
}

/// The registry of stays.
pub struct Registry {
    db: sled::Db,
    /// Open stays: `pseudonym (32) | pilot` → since.
    open: sled::Tree,
    /// Ended stays: `pilot | 0 | until (10) | pseudonym (32)` → [`Ended`].
    ended: sled::Tree,
    key: hmac::Key,
    /// The shared database, when the registry lives there.
    pg: Option<Arc<PgLog>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn open_key(p: &[u8; 32], pilot: &str) -> Vec<u8> {
    let mut k = p.to_vec();
    k.extend_from_slice(pilot.as_bytes());
    k
}

fn ended_key(pilot: &str, until: &str, p: &[u8; 32]) -> Vec<u8> {
    let mut k = pilot.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(until.as_bytes());
    k.extend_from_slice(p);
    k
}

fn abort(e: impl std::fmt::Display) -> sled::transaction::ConflictableTransactionError<String> {
    sled::transaction::ConflictableTransactionError::Abort(e.to_string())
}

fn flatten(e: sled::transaction::TransactionError<String>) -> sled::Error {
    match e {
        sled::transaction::TransactionError::Abort(s) => sled::Error::Unsupported(s),
        sled::transaction::TransactionError::Storage(e) => e,
    }
}

impl Registry {
    /// Opens the registry's trees in `db` with the registry key.
    pub fn open(db: &sled::Db, secret: &[u8; 32]) -> sled::Result<Self> {
        Ok(Self {
            db: db.clone(),
            open: db.open_tree(OPEN)?,
            ended: db.open_tree(ENDED)?,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            pg: None,
        })
    }

    /// Keeps the registry in the shared database from now on.
    pub fn shared(mut self, pg: Arc<PgLog>) -> Self {
        self.pg = Some(pg);
        self
    }

    /// Every entry of a tree under a prefix, from wherever the registry lives.
    fn scan(&self, tree: &sled::Tree, prefix: &[u8]) -> sled::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if let Some(pg) = &self.pg {
            let space = if tree.name() == OPEN.as_bytes() {
                OPEN
            } else {
                ENDED
            };
            return pg.kv_scan(space, prefix).map_err(pg_err);
        }
        tree.scan_prefix(prefix)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect()
    }

    /// Ends the stay under `k` (in `pilot`) in the shared database, adding
    /// `more` writes to the same transaction.
    fn end_shared(
        pg: &PgLog,
        k: &[u8],
        ended: impl FnOnce(String) -> (Vec<u8>, Ended),
        more: Vec<KvPut>,
    ) -> sled::Result<bool> {
        let mut made = Ok(());
        let done = pg
            .kv_take(OPEN, k, |since| {
                let (key, e) = ended(String::from_utf8_lossy(&since).into_owned());
                let mut puts = more;
                match serde_json::to_vec(&e) {
                    Ok(value) => puts.insert(
                        0,
                        KvPut {
                            space: ENDED,
                            key,
                            value,
                            only_if_absent: false,
                        },
                    ),
                    Err(e) => made = Err(sled::Error::Unsupported(e.to_string())),
                }
                puts
            })
            .map_err(pg_err)?;
        made?;
        Ok(done)
    }

    /// The registry's pseudonym of a V-nummer.
    pub fn pseudonym(&self, vnummer: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.key, vnummer.as_bytes()).as_ref());
        out
    }

    /// Opens a stay in `pilot` from `since`; `false` when one was open
    /// already (nothing changes then). Blocking; flushed when it returns.
    pub fn admit(&self, p: &[u8; 32], pilot: &str, since: &str) -> sled::Result<bool> {
        if let Some(pg) = &self.pg {
            return pg
                .kv_insert_new(OPEN, &open_key(p, pilot), since.as_bytes())
                .map_err(pg_err);
        }
        let fresh = self
            .open
            .compare_and_swap(
                open_key(p, pilot),
                None as Option<&[u8]>,
                Some(since.as_bytes()),
            )?
            .is_ok();
        self.db.flush()?;
        Ok(fresh)
    }

    /// Ends the open stay in `pilot` on `until` for `reason`; `false` when
    /// there was none. Blocking; flushed when it returns.
    pub fn end(&self, p: &[u8; 32], pilot: &str, until: &str, reason: &str) -> sled::Result<bool> {
        let k = open_key(p, pilot);
        if let Some(pg) = &self.pg {
            let ended = |since| {
                let e = Ended {
                    since,
                    until: until.to_string(),
                    reason: reason.to_string(),
                };
                (ended_key(pilot, until, p), e)
            };
            return Self::end_shared(pg, &k, ended, Vec::new());
        }
        let done = (&self.open, &self.ended)
            .transaction(|(open, ended)| {
                let Some(since) = open.remove(k.as_slice())? else {
                    return Ok(false);
                };
                let e = Ended {
                    since: String::from_utf8_lossy(&since).into_owned(),
                    until: until.to_string(),
                    reason: reason.to_string(),
                };
                let v = serde_json::to_vec(&e).map_err(abort)?;
                ended.insert(ended_key(pilot, until, p), v)?;
                Ok(true)
            })
            .map_err(flatten)?;
        self.db.flush()?;
        Ok(done)
    }

    /// Moves the person's open stay from `from` to `to` in one transaction:
    /// the stay in `from` ends on `on` for `reason`, one in `to` opens on
    /// `on` (an open stay there is kept as it is). `false`, and nothing
    /// changes, when there was no open stay in `from`. Blocking; flushed
    /// when it returns.
    pub fn transfer(
        &self,
        p: &[u8; 32],
        from: &str,
        to: &str,
        on: &str,
        reason: &str,
    ) -> sled::Result<bool> {
        let k = open_key(p, from);
        let dest = open_key(p, to);
        if let Some(pg) = &self.pg {
            let ended = |since| {
                let e = Ended {
                    since,
                    until: on.to_string(),
                    reason: reason.to_string(),
                };
                (ended_key(from, on, p), e)
            };
            let open_there = KvPut {
                space: OPEN,
                key: dest,
                value: on.as_bytes().to_vec(),
                only_if_absent: true,
            };
            return Self::end_shared(pg, &k, ended, vec![open_there]);
        }
        let done = (&self.open, &self.ended)
            .transaction(|(open, ended)| {
                let Some(since) = open.remove(k.as_slice())? else {
                    return Ok(false);
                };
                let e = Ended {
                    since: String::from_utf8_lossy(&since).into_owned(),
                    until: on.to_string(),
                    reason: reason.to_string(),
                };
                let v = serde_json::to_vec(&e).map_err(abort)?;
                ended.insert(ended_key(from, on, p), v)?;
                if open.get(dest.as_slice())?.is_none() {
                    open.insert(dest.as_slice(), on.as_bytes())?;
                }
                Ok(true)
            })
            .map_err(flatten)?;
        self.db.flush()?;
        Ok(done)
    }

    /// Every stay of one person, open and ended, for their art. 15 report:
    /// `(pilot, since, until and reason when ended)`. The ended stays are
    /// found by a scan (they are keyed for the figures, per pilot and day).
    /// Blocking.
    pub fn history(&self, p: &[u8; 32]) -> sled::Result<Vec<Stay>> {
        let mut out = Vec::new();
        for (k, v) in self.scan(&self.open, p)? {
            out.push(Stay {
                pilot: String::from_utf8_lossy(&k[32..]).into_owned(),
                since: String::from_utf8_lossy(&v).into_owned(),
                ended: None,
            });
        }
        for (k, v) in self.scan(&self.ended, &[])? {
            if k.len() < 32 + 12 || k[k.len() - 32..] != p[..] {
                continue;
            }
            let Some(nul) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let e: Ended =
                serde_json::from_slice(&v).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            out.push(Stay {
                pilot: String::from_utf8_lossy(&k[..nul]).into_owned(),
                since: e.since.clone(),
                ended: Some(e),
            });
        }
        out.sort_by(|a, b| a.since.cmp(&b.since));
        Ok(out)
    }

    /// The pilots where this person has an open stay. Blocking.
    pub fn stays(&self, p: &[u8; 32]) -> sled::Result<Vec<String>> {
        Ok(self
            .scan(&self.open, p)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[32..]).into_owned())
            .collect())
    }

    /// Open stays per pilot, and their first days (for the figures).
    /// Blocking.
    pub fn open_stays(&self) -> sled::Result<Vec<(String, String)>> {
        Ok(self
            .scan(&self.open, &[])?
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k[32..]).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect())
    }

    /// Ended stays of a pilot. Blocking.
    pub fn ended_stays(&self, pilot: &str) -> sled::Result<Vec<Ended>> {
        let mut prefix = pilot.as_bytes().to_vec();
        prefix.push(0);
        self.scan(&self.ended, &prefix)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|e| sled::Error::Unsupported(e.to_string()))
            })
            .collect()
    }
}

/// Checks per partner over a sliding minute: walking through V-nummers must
/// be slow, and show. Memory is bounded by the partners and the limit.
#[derive(Debug, Default)]
pub struct CheckLimiter {
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The window of [`CheckLimiter`].
pub const CHECK_WINDOW: Duration = Duration::from_secs(60);

impl CheckLimiter {
    /// Counts a check by `partner` if it is within `per_minute` of the last
    /// minute; `false` (and not counted) when over.
    pub fn allow(&self, partner: &str, per_minute: u32, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let q = seen.entry(partner.to_string()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= CHECK_WINDOW)
        {
            q.pop_front();
        }
        if q.len() >= per_minute as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;

    #[test]
    fn stays_open_end_and_keep_no_vnummer() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(d.path()).open().unwrap();
        let r = Registry::open(&db, &[7u8; 32]).unwrap();
        let p = r.pseudonym("5550001234");
        assert_ne!(p, r.pseudonym("5550001235"));
        assert!(r.admit(&p, "utrecht", "2026-01-02").unwrap());
        assert!(!r.admit(&p, "utrecht", "2026-02-02").unwrap());
        assert!(r.admit(&p, "amsterdam", "2026-03-01").unwrap());
        assert_eq!(r.stays(&p).unwrap(), vec!["amsterdam", "utrecht"]);
        assert!(r.end(&p, "utrecht", "2026-04-01", "overdracht").unwrap());
        assert!(!r.end(&p, "utrecht", "2026-04-01", "overdracht").unwrap());
        assert_eq!(r.stays(&p).unwrap(), vec!["amsterdam"]);
        let ended = r.ended_stays("utrecht").unwrap();
        assert_eq!(ended[0].since, "2026-01-02");
        // A transfer ends one stay and opens the other in one step.
        assert!(
            r.transfer(&p, "amsterdam", "rotterdam", "2026-05-01", "overdracht")
                .unwrap()
        );
        assert!(
            !r.transfer(&p, "amsterdam", "rotterdam", "2026-05-01", "overdracht")
                .unwrap()
        );
        assert_eq!(r.stays(&p).unwrap(), vec!["rotterdam"]);
        let h = r.history(&p).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[2].pilot, "rotterdam");
        assert!(h.iter().all(|s| s.pilot != "utrecht" || s.ended.is_some()));
        assert!(r.history(&r.pseudonym("5550001235")).unwrap().is_empty());
        drop((r, db));
        for f in walk(d.path()) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.windows(10).any(|w| w == b"5550001234"),
                "{} holds a V-nummer",
                f.display()
            );
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn checks_are_limited_per_partner_over_a_sliding_minute() {
        let l = CheckLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.allow("a", 3, t0));
        }
        assert!(!l.allow("a", 3, t0 + Duration::from_secs(59)));
        assert!(l.allow("b", 3, t0));
        assert!(l.allow("a", 3, t0 + Duration::from_secs(60)));
    }
}

//! The consent register: per person, pilot and rule, the history of consents
//! given and withdrawn, kept under a keyed pseudonym so the gateway's disk
//! never holds a list of who consented to what by V-nummer.
//!
//! A history is stored under `HMAC(consent key, V-nummer) | pilot | 0 |
//! rule`, as JSON [`ConsentEvent`]s: dates, the recording partner, the audit
//! record of each step and the evidence reference. The key is the
//! deployment's own (`keys/consent.key`), apart from the audit subject keys,
//! so that the audit log's retention (which destroys those) leaves consents
//! alone: a consent is in force, or withdrawn, for as long as the person's
//! case runs. It shares the embedded database of the mailboxes and the
//! registry; every change is flushed before the caller is answered. With
//! `[storage] backend = "postgres"` the histories live in the shared
//! database's `kv` table, so every node sees a consent recorded through any.

use std::sync::Arc;

use ring::hmac;

use crate::audit::pg::PgLog;

use crate::policy::consent::ConsentEvent;

/// The consent register.
pub struct ConsentRegister {
    db: sled::Db,
    /// `pseudonym (32) | pilot | 0 | rule` → JSON list of [`ConsentEvent`].
    tree: sled::Tree,
    key: hmac::Key,
    /// The shared database, when the register lives there.
    pg: Option<Arc<PgLog>>,
}

/// The tree's name, also the `space` of its rows in the shared database.
const SPACE: &str = "consent";

/// A database failure, in the error type the register's callers handle.
fn pg_err(e: crate::audit::AuditError) -> sled::Error {
    sled::Error::Unsupported(e.to_string())
}

impl std::fmt::Debug for ConsentRegister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentRegister").finish_non_exhaustive()
    }
}

fn key_of(p: &[u8; 32], pilot: &str, rule: &str) -> Vec<u8> {
    let mut k = p.to_vec();
    k.extend_from_slice(pilot.as_bytes());
    k.push(0);
    k.extend_from_slice(rule.as_bytes());
    k
}

fn decode(v: &[u8]) -> sled::Result<Vec<ConsentEvent>> {
    serde_json::from_slice(v).map_err(|e| sled::Error::Unsupported(e.to_string()))
}

/// One person's consent histories: `(pilot, rule, history)`.
pub type Histories = Vec<(String, String, Vec<ConsentEvent>)>;

impl ConsentRegister {
    /// Opens the register's tree in `db` with the consent key.
    pub fn open(db: &sled::Db, secret: &[u8; 32]) -> sled::Result<Self> {
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree(SPACE)?,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            pg: None,
        })
    }

    /// Keeps the register in the shared database from now on.
    pub fn shared(mut self, pg: Arc<PgLog>) -> Self {
        self.pg = Some(pg);
        self
    }

    /// The register's pseudonym of a V-nummer.
    pub fn pseudonym(&self, vnummer: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.key, vnummer.as_bytes()).as_ref());
        out
    }

    /// The history of one person's consent for one rule, oldest first
    /// (empty when there is none). Blocking.
    pub fn history(
        &self,
        p: &[u8; 32],
        pilot: &str,
        rule: &str,
    ) -> sled::Result<Vec<ConsentEvent>> {
        let found = match &self.pg {
            Some(pg) => pg.kv_get(SPACE, &key_of(p, pilot, rule)).map_err(pg_err)?,
            None => self.tree.get(key_of(p, pilot, rule))?.map(|v| v.to_vec()),
        };
        match found {
            Some(v) => decode(&v),
            None => Ok(Vec::new()),
        }
    }

    /// Appends a step to a history. Blocking; flushed when it returns.
    pub fn append(
        &self,
        p: &[u8; 32],
        pilot: &str,
        rule: &str,
        event: ConsentEvent,
    ) -> sled::Result<()> {
        let k = key_of(p, pilot, rule);
        if let Some(pg) = &self.pg {
            let one = serde_json::to_vec(&[&event])
                .map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            return pg.kv_append_json(SPACE, &k, &one).map_err(pg_err);
        }
        self.tree.fetch_and_update(&k, |old| {
            let mut h: Vec<ConsentEvent> = old.and_then(|v| decode(v).ok()).unwrap_or_default();
            h.push(event.clone());
            serde_json::to_vec(&h).ok()
        })?;
        self.db.flush()?;
        Ok(())
    }

    /// Every history of one person, in every pilot (for the art. 15 report).
    /// Blocking.
    pub fn of_person(&self, p: &[u8; 32]) -> sled::Result<Histories> {
        let mut out = Vec::new();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = match &self.pg {
            Some(pg) => pg.kv_scan(SPACE, p).map_err(pg_err)?,
            None => self
                .tree
                .scan_prefix(p)
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<sled::Result<_>>()?,
        };
        for (k, v) in entries {
            let rest = &k[32..];
            let Some(zero) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            out.push((
                String::from_utf8_lossy(&rest[..zero]).into_owned(),
                String::from_utf8_lossy(&rest[zero + 1..]).into_owned(),
                decode(&v)?,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;
    use crate::policy::consent::ConsentAct;

    #[test]
    fn histories_grow_per_person_pilot_and_rule() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(d.path()).open().unwrap();
        let r = ConsentRegister::open(&db, &[3u8; 32]).unwrap();
        let p = r.pseudonym("5550001234");
        let e = ConsentEvent {
            act: ConsentAct::Given,
            recorded_at: "2026-01-01T00:00:00Z".into(),
            by: "ngo".into(),
            record: 4,
            given_at: Some("2026-01-01".into()),
            expires: None,
            evidence: Some("map 12".into()),
            reason: None,
        };
        r.append(&p, "utrecht", "rule-a", e.clone()).unwrap();
        r.append(&p, "utrecht", "rule-a", e.clone()).unwrap();
        r.append(&p, "amsterdam", "rule-b", e).unwrap();
        assert_eq!(r.history(&p, "utrecht", "rule-a").unwrap().len(), 2);
        assert!(
            r.history(&r.pseudonym("5550001235"), "utrecht", "rule-a")
                .unwrap()
                .is_empty()
        );
        let all = r.of_person(&p).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, "amsterdam");
        assert_eq!(all[1].1, "rule-a");
    }
}

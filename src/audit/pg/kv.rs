//! A small key-value table for the stores that were sled trees (the LVV
//! registry, the consent register), so that every node sees one registry
//! and one register. Keys and values are the stores' own bytes; `space`
//! names the tree. Each call is one statement or one transaction, committed
//! before it returns (as the embedded stores flush).

use super::{PgLog, db};
use crate::audit::error::AuditError;

/// Key and value, as a scan gives them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One write of a [`PgLog::kv_take`] transaction.
#[derive(Debug, Clone)]
pub struct KvPut {
    /// The tree.
    pub space: &'static str,
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Leave an existing value as it is.
    pub only_if_absent: bool,
}

/// The first key after every key that starts with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl PgLog {
    /// The value under a key.
    pub fn kv_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let r = c
                .query_opt(
                    "SELECT value FROM kv WHERE space = $1 AND key = $2",
                    &[&space, &key],
                )
                .await
                .map_err(db)?;
            Ok(r.map(|r| r.get(0)))
        })
    }

    /// Sets a value where there was none; whether it did.
    pub fn kv_insert_new(&self, space: &str, key: &[u8], value: &[u8]) -> Result<bool, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let n = c
                .execute(
                    "INSERT INTO kv (space, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (space, key) DO NOTHING",
                    &[&space, &key, &value],
                )
                .await
                .map_err(db)?;
            Ok(n == 1)
        })
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn kv_scan(&self, space: &str, prefix: &[u8]) -> Result<Vec<Entry>, AuditError> {
        let end = prefix_end(prefix);
        self.block_on(async {
            let c = self.client().await?;
            let rows = match &end {
                Some(end) => {
                    c.query(
                        "SELECT key, value FROM kv WHERE space = $1 AND key >= $2 AND key < $3
                         ORDER BY key",
                        &[&space, &prefix, end],
                    )
                    .await
                }
                None => {
                    c.query(
                        "SELECT key, value FROM kv WHERE space = $1 AND key >= $2 ORDER BY key",
                        &[&space, &prefix],
                    )
                    .await
                }
            }
            .map_err(db)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// In one transaction: removes `key` from `space` and, if it was there,
    /// makes the writes `then` derives from its old value. `false` (and
    /// nothing changes) when the key was absent.
    pub fn kv_take(
        &self,
        space: &str,
        key: &[u8],
        then: impl FnOnce(Vec<u8>) -> Vec<KvPut>,
    ) -> Result<bool, AuditError> {
        self.block_on(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            let Some(old) = tx
                .query_opt(
                    "DELETE FROM kv WHERE space = $1 AND key = $2 RETURNING value",
                    &[&space, &key],
                )
                .await
                .map_err(db)?
            else {
                return Ok(false);
            };
            for p in then(old.get(0)) {
                let sql = if p.only_if_absent {
                    "INSERT INTO kv (space, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (space, key) DO NOTHING"
                } else {
                    "INSERT INTO kv (space, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value"
                };
                tx.execute(sql, &[&p.space, &p.key, &p.value])
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok(true)
        })
    }

    /// Appends the elements of a JSON array to the JSON array under `key`
    /// (made if absent), in one statement: concurrent appends from several
    /// nodes all land.
    pub fn kv_append_json(&self, space: &str, key: &[u8], items: &[u8]) -> Result<(), AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            c.execute(
                "INSERT INTO kv (space, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (space, key) DO UPDATE SET value = convert_to(
                     (convert_from(kv.value, 'UTF8')::jsonb
                      || convert_from(EXCLUDED.value, 'UTF8')::jsonb)::text, 'UTF8')",
                &[&space, &key, &items],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }
}

/// A deployment-wide lock: a session-level advisory lock on a pooled
/// connection, held until dropped (then released on that connection before
/// it goes back to the pool). A node that dies while holding it loses its
/// connection, and with it the lock.
pub struct KvLock {
    client: Option<deadpool_postgres::Object>,
    key: i64,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for KvLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvLock").field("key", &self.key).finish()
    }
}

impl Drop for KvLock {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let key = self.key;
            self.handle.spawn(async move {
                if c.execute("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
                    .is_err()
                {
                    // A connection that may still hold the lock must not
                    // serve anyone else.
                    let _ = deadpool_postgres::Object::take(c);
                }
            });
        }
    }
}

impl PgLog {
    /// Sets the value under a key, replacing any.
    pub fn kv_put(&self, space: &str, key: &[u8], value: &[u8]) -> Result<(), AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            c.execute(
                "INSERT INTO kv (space, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value",
                &[&space, &key, &value],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    /// A digest of every value in a tree: changes when any value does
    /// (how a node notices another node's change without reading it all).
    pub fn kv_digest(&self, space: &str) -> Result<Vec<u8>, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let r = c
                .query_one(
                    "SELECT convert_to(coalesce(string_agg(md5(key) || md5(value), ',' ORDER BY key), ''), 'UTF8')
                     FROM kv WHERE space = $1",
                    &[&space],
                )
                .await
                .map_err(db)?;
            Ok(r.get(0))
        })
    }

    /// Waits (at most 10 s) for the deployment-wide lock `key`.
    pub fn kv_lock(&self, key: i64) -> Result<KvLock, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            c.batch_execute("SET lock_timeout = '10s'")
                .await
                .map_err(db)?;
            let got = c.execute("SELECT pg_advisory_lock($1)", &[&key]).await;
            let _ = c.batch_execute("RESET lock_timeout").await;
            got.map_err(db)?;
            Ok(KvLock {
                client: Some(c),
                key,
                handle: self.handle.clone(),
            })
        })
    }
}

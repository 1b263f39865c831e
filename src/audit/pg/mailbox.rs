//! The mailbox table: documents waiting for partners without a server, so
//! that a document deposited through one node is fetched through any other.
//!
//! Rows are opaque here (the storage module's serialised items): this
//! module only keys them by recipient and id, and finds the expired. A
//! row is committed before `put` returns, as the embedded store flushes.

use super::{PgLog, db};
use crate::audit::error::AuditError;

/// Most expired documents handed out per sweep.
const EXPIRED_BATCH: i64 = 1000;

impl PgLog {
    /// Bytes held per recipient (to start the quota accounting).
    pub fn mailbox_usage(&self) -> Result<Vec<(String, u64)>, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT recipient, sum(length(item))::int8 FROM mailbox GROUP BY recipient",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
                .collect())
        })
    }

    /// Stores a document: `item(id)` makes its row once the id is known.
    pub fn mailbox_put(
        &self,
        recipient: &str,
        expires_micros: i64,
        item: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<(u64, u64), AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let id: i64 = c
                .query_one("SELECT nextval('mailbox_ids')", &[])
                .await
                .map_err(db)?
                .get(0);
            let bytes = item(id as u64);
            c.execute(
                "INSERT INTO mailbox (recipient, id, expires_micros, item) VALUES ($1, $2, $3, $4)",
                &[&recipient, &id, &expires_micros, &bytes],
            )
            .await
            .map_err(db)?;
            Ok((id as u64, bytes.len() as u64))
        })
    }

    /// A recipient's rows below `before`, newest first, `limit` at most.
    pub fn mailbox_list(
        &self,
        recipient: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT id, item FROM mailbox WHERE recipient = $1 AND id < $2
                     ORDER BY id DESC LIMIT $3",
                    &[&recipient, &before, &(limit as i64)],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
                .collect())
        })
    }

    /// One row of a recipient.
    pub fn mailbox_get(&self, recipient: &str, id: u64) -> Result<Option<Vec<u8>>, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let r = c
                .query_opt(
                    "SELECT item FROM mailbox WHERE recipient = $1 AND id = $2",
                    &[&recipient, &(id as i64)],
                )
                .await
                .map_err(db)?;
            Ok(r.map(|r| r.get(0)))
        })
    }

    /// Deletes a row; gives its size, `None` when there was none.
    pub fn mailbox_delete(&self, recipient: &str, id: u64) -> Result<Option<u64>, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let r = c
                .query_opt(
                    "DELETE FROM mailbox WHERE recipient = $1 AND id = $2
                     RETURNING length(item)::int8",
                    &[&recipient, &(id as i64)],
                )
                .await
                .map_err(db)?;
            Ok(r.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    /// Rows whose retention ended before `now_micros`.
    pub fn mailbox_expired(&self, now_micros: i64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT item FROM mailbox WHERE expires_micros < $1 ORDER BY id LIMIT $2",
                    &[&now_micros, &EXPIRED_BATCH],
                )
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}

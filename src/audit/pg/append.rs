//! Appending records: one transaction per batch, ids from the counter row.
//!
//! The writer takes every entry waiting (group commit, as the embedded
//! writer does) and writes them in one transaction that first locks the
//! counter row. The lock is held until commit, so batches of all nodes
//! commit one after another in id order: ids stay dense (a rollback
//! returns its ids), and a reader that sees record `n` sees every record
//! below it. Times come from the same row and never go backwards, so
//! queries can search by time. Callers are answered after the commit
//! returned, and with an error when it did not (or took longer than
//! [`WRITE_TIMEOUT`]): nothing is delivered that is not durable.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::error;

use super::{PgLog, WRITE_TIMEOUT, db};
use crate::audit::common::{Cmd, Reply};
use crate::audit::error::AuditError;
use crate::audit::merkle;
use crate::audit::options::{MAX_BATCH, Receipt};
use crate::audit::record::{self, Entry, Record};
use crate::audit::segment;

/// One record made ready for its row.
pub(super) struct Row {
    /// The record (its columns).
    pub(super) rec: Record,
    /// Its leaf hash.
    pub(super) leaf: merkle::Hash,
    /// Its canonical bytes.
    pub(super) bytes: Vec<u8>,
}

impl PgLog {
    /// Serves the `Audit` handle's commands until shutdown or until every
    /// handle is gone. Runs on a thread of its own, blocking on the runtime.
    pub(in crate::audit) fn run_writer(self: Arc<Self>, mut rx: mpsc::Receiver<Cmd>) {
        let me = self.clone();
        self.block_on(async move {
            while let Some(first) = rx.recv().await {
                let mut appends = Vec::new();
                let mut next = Some(first);
                let mut shutdown = false;
                while let Some(c) = next.take() {
                    match c {
                        Cmd::Append(e, tx) => appends.push((e, tx)),
                        // Waits for the leader: not on the writer's loop.
                        Cmd::Checkpoint(tx) => {
                            let me = me.clone();
                            me.clone().spawn(async move {
                                let _ = tx.send(me.fresh_checkpoint().await);
                            });
                        }
                        Cmd::Tick => {}
                        Cmd::Shutdown => shutdown = true,
                        // The deployment's key lives in the database and
                        // every node's keys directory: rotating it is a
                        // step of its own, not built for PostgreSQL yet.
                        Cmd::Rotate(tx) => {
                            let _ = tx.send(Err(AuditError::Key(
                                "rotate-key is not available with backend = \"postgres\" yet"
                                    .into(),
                            )));
                        }
                    }
                    if appends.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !appends.is_empty() {
                    me.append(appends).await;
                }
                if shutdown {
                    break;
                }
            }
            me.close().await;
        });
    }

    /// Stops the tree task, letting a leader sign a last checkpoint first
    /// (bounded: a dead database must not hold up the stop).
    async fn close(&self) {
        let mut closed = self.closed.subscribe();
        self.closing.send_replace(true);
        let _ = tokio::time::timeout(WRITE_TIMEOUT, closed.wait_for(|c| *c)).await;
    }

    async fn append(&self, batch: Vec<(Box<Entry>, Reply)>) {
        let (entries, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let entries = entries.into_iter().map(|e| *e).collect();
        let r = tokio::time::timeout(WRITE_TIMEOUT, self.insert(entries)).await;
        let r = r.unwrap_or_else(|_| {
            Err(AuditError::Database(format!(
                "no commit within {}s",
                WRITE_TIMEOUT.as_secs()
            )))
        });
        match r {
            Ok(receipts) => {
                for (tx, rc) in waiters.into_iter().zip(receipts) {
                    let _ = tx.send(rc);
                }
            }
            Err(e) => {
                error!(error = %e, "audit write failed; the records of this batch were not written");
                for tx in waiters {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }

    /// Writes the entries in one transaction; per entry its receipt (or why
    /// that entry could not be a record).
    async fn insert(
        &self,
        entries: Vec<Entry>,
    ) -> Result<Vec<Result<Receipt, AuditError>>, AuditError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let row = tx
            .query_one("SELECT next, last_time FROM log_counter FOR UPDATE", &[])
            .await
            .map_err(db)?;
        let start = row.get::<_, i64>(0) as u64;
        let time = record::now_micros().max(row.get::<_, i64>(1));
        let mut rows = Vec::with_capacity(entries.len());
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let rec = Record {
                version: record::FORMAT_VERSION,
                id: start + rows.len() as u64,
                time_micros: time,
                entry,
            };
            let bytes = rec.encode();
            if bytes.len() > segment::MAX_RECORD {
                out.push(Err(AuditError::TooLarge));
                continue;
            }
            let leaf = merkle::leaf_hash(&bytes);
            out.push(Ok(Receipt { id: rec.id, leaf }));
            rows.push(Row { rec, leaf, bytes });
        }
        if rows.is_empty() {
            return Ok(out);
        }
        insert_rows(&tx, &rows).await?;
        let next = (start + rows.len() as u64) as i64;
        tx.execute(
            "UPDATE log_counter SET next = $1, last_time = $2",
            &[&next, &time],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }
}

/// Inserts records with their query columns, all in one statement.
pub(super) async fn insert_rows(
    tx: &tokio_postgres::Transaction<'_>,
    rows: &[Row],
) -> Result<(), AuditError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.rec.id as i64).collect();
    let times: Vec<i64> = rows.iter().map(|r| r.rec.time_micros).collect();
    let text = |f: &dyn Fn(&Record) -> &str| -> Vec<String> {
        rows.iter().map(|r| f(&r.rec).to_string()).collect()
    };
    let kinds = text(&|r| r.entry.kind.as_str());
    let pilots = text(&|r| &r.entry.pilot);
    let senders = text(&|r| &r.entry.sender);
    let recipients = text(&|r| &r.entry.recipient);
    let purposes = text(&|r| &r.entry.purpose);
    let decisions = text(&|r| r.entry.decision.as_str());
    let subjects: Vec<Option<Vec<u8>>> = rows
        .iter()
        .map(|r| r.rec.entry.subject.map(|s| s.to_vec()))
        .collect();
    let leaves: Vec<Vec<u8>> = rows.iter().map(|r| r.leaf.to_vec()).collect();
    let bytes: Vec<&[u8]> = rows.iter().map(|r| r.bytes.as_slice()).collect();
    tx.execute(
        "INSERT INTO records
            (id, time_micros, kind, pilot, sender, recipient, purpose, decision, subject, leaf, bytes)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::bytea[], $10::bytea[], $11::bytea[])",
        &[
            &ids,
            &times,
            &kinds,
            &pilots,
            &senders,
            &recipients,
            &purposes,
            &decisions,
            &subjects,
            &leaves,
            &bytes,
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

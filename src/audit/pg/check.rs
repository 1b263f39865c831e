//! The full check of the shared log (`audit verify` on PostgreSQL), and the
//! import of an embedded log (`storage copy`).
//!
//! The check trusts nothing the database derived: it re-reads every
//! record's canonical bytes in id order, hashes them again, rebuilds the
//! tree and compares it with every signed checkpoint (signatures checked
//! with this node's key) and with the stored leaf hashes and head. The
//! import keeps ids and bytes, so every checkpoint and proof made before
//! still holds; it is resumable, since each batch continues the counter.

use super::append::{Row, insert_rows};
use super::{PgLog, db, dbm};
use crate::audit::checkpoint::{Checkpoint, Verifier};
use crate::audit::error::AuditError;
use crate::audit::merkle::{self, Frontier, Hash};
use crate::audit::record::Record;

/// What a successful check found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Records checked.
    pub records: u64,
    /// Checkpoints whose signature and root matched.
    pub checkpoints: usize,
    /// Root of the whole log.
    pub root: Hash,
    /// Records committed but not yet in the tree (the leader is behind).
    pub unintegrated: u64,
}

impl PgLog {
    /// Checks the whole log; `Err` names the first thing wrong.
    pub fn verify(
        &self,
        verifier: &Verifier,
        mut progress: impl FnMut(u64),
    ) -> Result<Checked, String> {
        let e = |x: AuditError| x.to_string();
        let mut cps: Vec<Checkpoint> = Vec::new();
        for note in self.checkpoint_notes().map_err(e)? {
            let cp = verifier.verify(&note).map_err(|x| {
                format!("checkpoint at {}: {x}", note.lines().nth(1).unwrap_or("?"))
            })?;
            cps.push(cp);
        }
        let mut frontier = Frontier::default();
        let mut next_cp = 0usize;
        let mut check = |f: &Frontier| -> Result<(), String> {
            while next_cp < cps.len() && cps[next_cp].size == f.size() {
                if cps[next_cp].root != f.root() {
                    return Err(format!(
                        "the signed checkpoint at {} records does not match the log: a record before it was altered, removed or inserted",
                        cps[next_cp].size
                    ));
                }
                next_cp += 1;
            }
            Ok(())
        };
        check(&frontier)?;
        loop {
            let batch = self.walk(frontier.size()).map_err(e)?;
            if batch.is_empty() {
                break;
            }
            for (id, bytes, leaf) in batch {
                if id != frontier.size() {
                    return Err(format!(
                        "record {} is missing: records were removed",
                        frontier.size()
                    ));
                }
                let r = Record::decode(&bytes).map_err(|x| format!("record {id}: {x}"))?;
                if r.id != id {
                    return Err(format!(
                        "record {id}: the record says it is record {}",
                        r.id
                    ));
                }
                let h = merkle::leaf_hash(&bytes);
                if h.as_slice() != leaf.as_slice() {
                    return Err(format!("record {id} was altered after it was written"));
                }
                frontier.push(h, |_, _, _| {});
                check(&frontier)?;
            }
            progress(frontier.size());
        }
        if next_cp < cps.len() {
            return Err(format!(
                "a signed checkpoint covers {} records but the log has {}: records were lost",
                cps[next_cp].size,
                frontier.size()
            ));
        }
        let head = self.head_now().map_err(e)?;
        if head.0 > frontier.size() {
            return Err(format!(
                "the tree holds {} records but the log has {}",
                head.0,
                frontier.size()
            ));
        }
        Ok(Checked {
            records: frontier.size(),
            checkpoints: cps.len(),
            root: frontier.root(),
            unintegrated: frontier.size() - head.0,
        })
    }

    /// Size and root of the stored tree, read now.
    fn head_now(&self) -> Result<(u64, Vec<u8>), AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let r = c
                .query_one("SELECT size, root FROM tree_head", &[])
                .await
                .map_err(db)?;
            Ok((r.get::<_, i64>(0) as u64, r.get(1)))
        })
    }

    /// Appends records that already have their ids (from an embedded log),
    /// in one transaction; the first must be the next id of the log.
    pub fn import(&self, records: Vec<(Record, Vec<u8>)>) -> Result<(), AuditError> {
        let Some(first) = records.first().map(|r| r.0.id) else {
            return Ok(());
        };
        let last_time = records.iter().map(|r| r.0.time_micros).max().unwrap_or(0);
        let next = first + records.len() as u64;
        let rows: Vec<Row> = records
            .into_iter()
            .map(|(rec, bytes)| Row {
                leaf: merkle::leaf_hash(&bytes),
                rec,
                bytes,
            })
            .collect();
        self.block_on(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            let have: i64 = tx
                .query_one("SELECT next FROM log_counter FOR UPDATE", &[])
                .await
                .map_err(db)?
                .get(0);
            if have as u64 != first {
                return Err(dbm(format!(
                    "the database's log has {have} records; the next to copy is {first}"
                )));
            }
            insert_rows(&tx, &rows).await?;
            tx.execute(
                "UPDATE log_counter SET next = $1, last_time = greatest(last_time, $2)",
                &[&(next as i64), &last_time],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }

    /// Stores signed checkpoints as they are (sizes already present are
    /// left alone); gives how many were new.
    pub fn import_checkpoints(&self, cps: &[Checkpoint]) -> Result<u64, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let mut n = 0;
            for cp in cps {
                n += c
                    .execute(
                        "INSERT INTO checkpoints (size, note) VALUES ($1, $2)
                         ON CONFLICT (size) DO NOTHING",
                        &[&(cp.size as i64), &cp.note],
                    )
                    .await
                    .map_err(db)?;
            }
            Ok(n)
        })
    }
}

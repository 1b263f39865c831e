//! Reads from any node: records by id, tree nodes, queries through SQL
//! indexes, statistics, the whole log in order (export, verify).
//!
//! These are blocking calls, like the embedded view's file reads.

use std::collections::BTreeMap;

use super::{PgLog, db};
use crate::audit::common::{Filter, Page};
use crate::audit::error::{AuditError, LogDamage, OutOfRange};
use crate::audit::index::Dim;
use crate::audit::merkle::Hash;
use crate::audit::options::MAX_PAGE;
use crate::audit::record::{Decision, Record, RecordKind};

/// One record as the whole log is walked: id, canonical bytes, stored leaf.
pub type Walked = (u64, Vec<u8>, Vec<u8>);

/// Records read per round trip when the whole log is walked.
pub const WALK_BATCH: i64 = 2000;

fn decode(id: u64, bytes: &[u8]) -> Result<Record, AuditError> {
    let r = Record::decode(bytes).map_err(|source| LogDamage::Undecodable { id, source })?;
    if r.id != id {
        return Err(LogDamage::Misplaced { id, claims: r.id }.into());
    }
    Ok(r)
}

/// Microseconds at the start of a `YYYY-MM-DD` day (UTC).
fn day_start(day: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(day, &fmt).ok()?;
    Some((d.midnight().assume_utc().unix_timestamp_nanos() / 1000) as i64)
}

impl PgLog {
    /// A committed record (integrated into the tree or not yet).
    pub fn record(&self, id: u64) -> Result<Record, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let row = c
                .query_opt("SELECT bytes FROM records WHERE id = $1", &[&(id as i64)])
                .await
                .map_err(db)?
                .ok_or(OutOfRange::NoRecord(id))?;
            decode(id, row.get(0))
        })
    }

    /// A node of the integrated tree: a leaf hash at level 0, a
    /// perfect-subtree hash above.
    pub fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let row = if level == 0 {
                c.query_opt("SELECT leaf FROM records WHERE id = $1", &[&(index as i64)])
                    .await
            } else {
                c.query_opt(
                    "SELECT hash FROM tree_nodes WHERE level = $1 AND idx = $2",
                    &[&(level as i32), &(index as i64)],
                )
                .await
            }
            .map_err(db)?
            .ok_or_else(|| AuditError::Database(format!("no tree node {level}/{index}")))?;
            let v: &[u8] = row.get(0);
            v.try_into()
                .map_err(|_| AuditError::Database("a stored hash is not 32 bytes".into()))
        })
    }

    /// Records matching `f`, newest first, through the SQL indexes.
    pub fn query(&self, f: &Filter) -> Result<Page, AuditError> {
        let limit = f.limit.clamp(1, MAX_PAGE);
        let mut sql = String::from("SELECT id, bytes FROM records WHERE true");
        let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
        let mut add = |cond: &str, v: Box<dyn tokio_postgres::types::ToSql + Sync + Send>| {
            params.push(v);
            sql.push_str(&cond.replace('$', &format!("${}", params.len())));
        };
        let subjects: Vec<Vec<u8>> = f
            .subject
            .iter()
            .chain(&f.subjects)
            .map(|s| s.to_vec())
            .collect();
        if !subjects.is_empty() {
            add(" AND subject = ANY($::bytea[])", Box::new(subjects));
        }
        if let Some(p) = &f.partner {
            add(" AND (sender = $", Box::new(p.clone()));
            add(" OR recipient = $)", Box::new(p.clone()));
        }
        if let Some(p) = &f.pilot {
            add(" AND pilot = $", Box::new(p.clone()));
        }
        if let Some(p) = &f.purpose {
            add(" AND purpose = $", Box::new(p.clone()));
        }
        if let Some(t) = f.since {
            add(" AND time_micros >= $", Box::new(t));
        }
        if let Some(t) = f.until {
            add(" AND time_micros <= $", Box::new(t));
        }
        if let Some(d) = f.decision {
            add(" AND decision = $", Box::new(d.as_str().to_string()));
        }
        if let Some(b) = f.before {
            add(" AND id < $", Box::new(b as i64));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
        self.block_on(async {
            let c = self.client().await?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            let rows = c.query(&sql, &refs).await.map_err(db)?;
            let mut records = Vec::with_capacity(rows.len().min(limit));
            let mut next = None;
            for row in &rows {
                if records.len() == limit {
                    next = records.last().map(|r: &Record| r.id);
                    break;
                }
                let id: i64 = row.get(0);
                records.push(decode(id as u64, row.get(1))?);
            }
            Ok(Page { records, next })
        })
    }

    /// Counts of disclosures and refusals of exchanges, grouped by `by`,
    /// between two days (inclusive, UTC).
    pub fn stats(
        &self,
        by: Dim,
        since_day: &str,
        until_day: &str,
    ) -> Result<BTreeMap<String, (u64, u64)>, AuditError> {
        let lo = day_start(since_day).unwrap_or(0);
        let hi = day_start(until_day).map_or(i64::MAX, |t| t + 86_400_000_000);
        let group = match by {
            Dim::Day => {
                "to_char(to_timestamp(time_micros / 1000000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            Dim::Pilot => "pilot",
            Dim::Purpose => "purpose",
            Dim::Partner => "p",
        };
        let from = if by == Dim::Partner {
            "(SELECT time_micros, decision, kind, sender AS p FROM records
                WHERE time_micros >= $1 AND time_micros < $2
              UNION ALL
              SELECT time_micros, decision, kind, recipient FROM records
                WHERE time_micros >= $1 AND time_micros < $2 AND recipient <> sender) r"
        } else {
            "records"
        };
        let sql = format!(
            "SELECT {group}, decision, count(*) FROM {from}
             WHERE kind = $3 AND time_micros >= $1 AND time_micros < $2
             GROUP BY 1, 2"
        );
        let kind = RecordKind::Exchange.as_str();
        self.block_on(async {
            let c = self.client().await?;
            let rows = c.query(&sql, &[&lo, &hi, &kind]).await.map_err(db)?;
            let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for r in rows {
                let slot = out.entry(r.get(0)).or_default();
                let n = r.get::<_, i64>(2) as u64;
                match Decision::parse(r.get(1)) {
                    Some(Decision::Disclosed) => slot.0 += n,
                    Some(Decision::Refused) => slot.1 += n,
                    None => {}
                }
            }
            Ok(out)
        })
    }

    /// Whether the database answers now (for the health endpoint).
    pub fn ping(&self) -> Result<(), AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            c.simple_query("SELECT 1").await.map_err(db)?;
            Ok(())
        })
    }

    /// Records committed (integrated or not).
    pub fn committed(&self) -> Result<u64, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let n: i64 = c
                .query_one("SELECT next FROM log_counter", &[])
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u64)
        })
    }

    /// Records `from..` in id order, at most [`WALK_BATCH`], as their
    /// canonical bytes with the stored leaf hash.
    pub fn walk(&self, from: u64) -> Result<Vec<Walked>, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT id, bytes, leaf FROM records WHERE id >= $1 ORDER BY id LIMIT $2",
                    &[&(from as i64), &WALK_BATCH],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get(1), r.get(2)))
                .collect())
        })
    }

    /// Every checkpoint note, by size.
    pub fn checkpoint_notes(&self) -> Result<Vec<String>, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query("SELECT note FROM checkpoints ORDER BY size", &[])
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}

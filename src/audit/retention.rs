//! Retention: the log forgets who, not what happened.
//!
//! An append-only Merkle log cannot delete a record without breaking every
//! proof over it. What it can end is the link to the person: each record's
//! subject is an HMAC under the key of its pilot and calendar month
//! ([`super::subject`]). When a month's last day is older than the pilot's
//! `[retention] audit`, its key is destroyed and the month's subject postings
//! leave the index. The records stay byte for byte, so the tree, every
//! checkpoint and every proof still verify; but no search by V-nummer finds
//! them and no access report shows them. Each destruction is itself a
//! record (pilot, month, how many records were made unlinkable), made
//! durable before the key goes.
//!
//! Keys that belong to no one pilot (the look-ups' and the legacy key of
//! records written before per-month keys) follow the longest retention of
//! any pilot, and never go while a pilot states none.
//!
//! Records are assigned to a month by their time; a record whose pseudonym
//! was computed a few milliseconds before midnight on a month's last day may
//! carry the previous month's pseudonym and be counted with the next month.
//! Its key is destroyed with its own month either way.

use std::collections::BTreeMap;

use time::{Date, Month};

use super::merkle::Hash;
use super::store::{Audit, AuditError, View};
use super::subject::{KeyId, LOOKUP_SCOPE};
use super::{Entry, RecordKind};
use crate::policy::retention::{Retention, YearMonth, month_label};

/// The retention of each pilot of the running policy (`None`: it states none).
pub type Retentions = BTreeMap<String, Option<Retention>>;

/// One key whose month is past retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The key.
    pub key: KeyId,
    /// Its pilot, [`LOOKUP_SCOPE`], or empty for the legacy key.
    pub scope: String,
    /// `YYYY-MM`, or `legacy`.
    pub month: String,
    /// The first day it was past retention.
    pub due_since: Date,
    /// Records it makes unlinkable.
    pub records: u64,
}

/// Where one pilot stands: what it still links, and when that ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Pilot id.
    pub pilot: String,
    /// Its audit retention as written, if stated.
    pub retention: Option<String>,
    /// The oldest month whose key still exists (`YYYY-MM`).
    pub oldest_linkable: Option<String>,
    /// The day that month's key is due to be destroyed.
    pub next_destruction: Option<Date>,
}

/// The longest of the pilots' retentions; `None` when any pilot states
/// none (then keys shared between pilots are kept).
fn longest(r: &Retentions) -> Option<Retention> {
    let probe = Date::from_calendar_date(2000, Month::January, 31).ok()?;
    let mut best: Option<Retention> = None;
    for x in r.values() {
        let x = (*x)?;
        if best.is_none_or(|b| x.after(probe) > b.after(probe)) {
            best = Some(x);
        }
    }
    best
}

/// The retention that governs a key's scope.
fn governing(scope: &str, r: &Retentions) -> Option<Retention> {
    match r.get(scope) {
        Some(x) => *x,
        None => longest(r),
    }
}

/// `[first, end)` ids of the records whose time falls in month `m`.
fn month_ids(view: &View, m: YearMonth, size: u64) -> Result<(u64, u64), AuditError> {
    let start = Date::from_calendar_date(m.0, m.1, 1).unwrap_or(Date::MIN);
    let next = crate::policy::retention::last_day(m)
        .next_day()
        .unwrap_or(Date::MAX);
    let micros = |d: Date| {
        i64::try_from(d.midnight().assume_utc().unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
    };
    Ok((
        view.first_at_or_after(micros(start), size)?,
        view.first_at_or_after(micros(next), size)?,
    ))
}

/// The subject postings a key's destruction makes unreachable.
fn postings(
    view: &View,
    key: &KeyId,
    r: &Retentions,
    legacy_until: Option<u64>,
) -> Result<Vec<(Hash, u64)>, AuditError> {
    let size = view.head().size;
    let (lo, hi, scope) = match key {
        KeyId::Legacy => (0, legacy_until.unwrap_or(u64::MAX).min(size), None),
        KeyId::Month(s, m) => {
            let (lo, hi) = month_ids(view, *m, size)?;
            // Legacy records in the range used the legacy key, not this one.
            (
                lo.max(legacy_until.unwrap_or(0).min(size)),
                hi,
                Some(s.as_str()),
            )
        }
    };
    let mut out = Vec::new();
    for id in lo..hi {
        let rec = view.record(id)?;
        let Some(subject) = rec.entry.subject else {
            continue;
        };
        let belongs = match scope {
            None => true,
            Some(s) => {
                let pilot = rec.entry.pilot.as_str();
                let own = if rec.entry.kind != RecordKind::Lookup && r.contains_key(pilot) {
                    pilot
                } else {
                    LOOKUP_SCOPE
                };
                own == s
            }
        };
        if belongs {
            out.push((subject, id));
        }
    }
    Ok(out)
}

/// The month of the newest legacy record, if there is one.
fn legacy_month(view: &View, until: u64) -> Result<Option<YearMonth>, AuditError> {
    let size = view.head().size;
    let last = until.min(size);
    if last == 0 {
        return Ok(None);
    }
    let rec = view.record(last - 1)?;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(rec.time_micros) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Ok(Some((t.year(), t.month())))
}

/// The advisory lock retention holds on a shared database.
const RETENTION_LOCK: i64 = 0x6b70_7265_7465;

impl Audit {
    /// The keys past retention on `as_of`, with what each makes unlinkable.
    /// Blocking: reads the month's records.
    pub fn retention_due(&self, r: &Retentions, as_of: Date) -> Result<Vec<Due>, AuditError> {
        let keys = self.subject_keys();
        let legacy_until = keys.legacy_until();
        let mut out = Vec::new();
        for key in keys.existing() {
            let (scope, month, ym) = match &key {
                KeyId::Legacy => {
                    // No legacy record at all: nothing links, the key can go.
                    let m = legacy_month(self.view(), legacy_until.unwrap_or(0))?;
                    let m = m.unwrap_or((1970, Month::January));
                    (String::new(), "legacy".to_string(), m)
                }
                KeyId::Month(s, m) => (s.clone(), month_label(*m), *m),
            };
            let governs = if scope.is_empty() {
                longest(r)
            } else {
                governing(&scope, r)
            };
            let Some(ret) = governs else { continue };
            if !ret.past(ym, as_of) {
                continue;
            }
            let records = postings(self.view(), &key, r, legacy_until)?.len() as u64;
            out.push(Due {
                key,
                scope,
                month,
                due_since: ret.destruction_day(ym),
                records,
            });
        }
        Ok(out)
    }

    /// Destroys the keys past retention on `as_of`: for each, records the
    /// destruction (durable first), destroys the key, and removes the
    /// month's subject postings from the index. Blocking; call it from a
    /// blocking thread (it waits for the writer).
    pub fn retention_run(&self, r: &Retentions, as_of: Date) -> Result<Vec<Due>, AuditError> {
        // On a shared database: one node at a time (so each destruction is
        // recorded once), after taking what the others destroyed already;
        // a key destroyed here is marked for every node to shred its copy
        // (`SharedKeys::forget`).
        let _one = match self.view().postgres() {
            Some(pg) => Some(pg.kv_lock(RETENTION_LOCK)?),
            None => None,
        };
        self.subject_keys().sync().map_err(AuditError::write)?;
        let due = self.retention_due(r, as_of)?;
        let legacy_until = self.subject_keys().legacy_until();
        for d in &due {
            let posts = postings(self.view(), &d.key, r, legacy_until)?;
            let pilot = if d.scope == LOOKUP_SCOPE {
                ""
            } else {
                &d.scope
            };
            self.record_blocking(Entry::retention(pilot, &d.month, posts.len() as u64))?;
            self.subject_keys()
                .destroy(&d.key)
                .map_err(AuditError::write)?;
            if let Some(ix) = &self.view().index {
                ix.remove_subjects(&posts)?;
            }
        }
        Ok(due)
    }

    /// Per pilot: its oldest month still linkable, and when that ends.
    pub fn retention_status(&self, r: &Retentions) -> Vec<Status> {
        let existing = self.subject_keys().existing();
        r.iter()
            .map(|(pilot, ret)| {
                let oldest = existing.iter().find_map(|k| match k {
                    KeyId::Month(s, m) if s == pilot => Some(*m),
                    _ => None,
                });
                Status {
                    pilot: pilot.clone(),
                    retention: ret.map(|x| x.to_string()),
                    oldest_linkable: oldest.map(month_label),
                    next_destruction: oldest.zip(*ret).map(|(m, x)| x.destruction_day(m)),
                }
            })
            .collect()
    }
}

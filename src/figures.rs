//! Figures for the programme, never people: per pilot and month, the open
//! stays, intakes, endings by reason and length of stay in bands, from the
//! LVV registry, with small numbers suppressed.
//!
//! Every cell under [`THRESHOLD`] is shown as `"<10"` (primary
//! suppression). A suppressed cell must not be computable from the others
//! (secondary suppression). The table has three kinds of exact sums:
//! - per month, the endings by reason add up to the endings' total;
//! - per month, the length-of-stay bands add up to the endings' total;
//! - from one month to the next, `open(m) = open(m-1) + intakes(m) -
//!   endings(m)`.
//!
//! The rule: whenever one of these sums has exactly one suppressed cell, the
//! smallest shown cell of that sum is suppressed too, and this repeats until
//! no sum has exactly one. So no single sum gives a suppressed cell back.
//! The pattern is computed over the pilot's whole history (its first month
//! in the registry to the current month), never over the range asked for,
//! so that asking for two ranges cannot give different patterns to combine.
//! What this does not promise: safety against every combination of several
//! sums, or against a stay registered later with an earlier start, which
//! changes past months.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::Serializer;

use crate::storage::registry::{Ended, Registry};

/// Cells under this are suppressed.
pub const THRESHOLD: u64 = 10;

/// At most this many months in one request.
pub const MAX_MONTHS: i32 = 36;

/// A stay shorter than this many days is in the first band.
const SHORT_DAYS: i64 = 91;
/// A stay longer than this many days is in the last band.
const LONG_DAYS: i64 = 365;

/// The length-of-stay bands, in order.
pub const BANDS: [&str; 3] = ["lt_3_months", "3_to_12_months", "gt_12_months"];

/// One cell: a count, or suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Shown.
    Shown(u64),
    /// Under the threshold, or would give one back.
    Suppressed,
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Shown(n) => s.serialize_u64(*n),
            Self::Suppressed => s.serialize_str("<10"),
        }
    }
}

/// A month as `year * 12 + month - 1`.
pub type Month = i32;

/// `YYYY-MM` (or the month of `YYYY-MM-DD`) as a [`Month`].
pub fn month(s: &str) -> Option<Month> {
    let (y, m) = (s.get(0..4)?, s.get(5..7)?);
    if s.as_bytes().get(4) != Some(&b'-') || !(s.len() == 7 || s.len() == 10) {
        return None;
    }
    let (y, m): (i32, i32) = (y.parse().ok()?, m.parse().ok()?);
    (1900..=9999)
        .contains(&y)
        .then_some(())
        .filter(|_| (1..=12).contains(&m))
        .map(|_| y * 12 + m - 1)
}

fn label(m: Month) -> String {
    format!("{:04}-{:02}", m / 12, m % 12 + 1)
}

fn days(since: &str, until: &str) -> Option<i64> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    let a = time::Date::parse(since, f).ok()?;
    let b = time::Date::parse(until, f).ok()?;
    Some((b - a).whole_days())
}

/// One month of one pilot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    /// `YYYY-MM`.
    pub month: String,
    /// Stays open at the end of the month.
    pub open: Cell,
    /// Stays that began in the month.
    pub intakes: Cell,
    /// Stays that ended in the month.
    pub endings: Cell,
    /// Those endings by reason (every reason of the pilot's list).
    pub endings_by_reason: BTreeMap<String, Cell>,
    /// Those endings by length of stay ([`BANDS`]).
    pub length_of_stay: BTreeMap<String, Cell>,
}

/// A pilot's figures over a range of months.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Figures {
    /// The pilot.
    pub pilot: String,
    /// First month asked for.
    pub from: String,
    /// Last month asked for.
    pub to: String,
    /// Cells under this are shown as `"<10"`.
    pub suppressed_below: u64,
    /// One row per month.
    pub months: Vec<Row>,
}

/// Raw counts of one month, before suppression.
#[derive(Default, Clone)]
struct Counts {
    open: u64,
    intakes: u64,
    endings: u64,
    reasons: Vec<u64>,
    bands: [u64; 3],
}

/// The figures of `pilot` for months `from..=to`, from its stays (`opens`:
/// the first days of its open stays; `ended`: its ended stays), with its end
/// reasons, in a registry whose present month is `now`.
pub fn compute(
    pilot: &str,
    reasons: &[String],
    opens: &[String],
    ended: &[Ended],
    (from, to): (Month, Month),
    now: Month,
) -> Figures {
    let first = opens
        .iter()
        .map(String::as_str)
        .chain(ended.iter().map(|e| e.since.as_str()))
        .filter_map(month)
        .min()
        .unwrap_or(now)
        .min(now);
    let span = first..=now.max(first);
    let mut counts: Vec<Counts> = span
        .clone()
        .map(|_| Counts {
            reasons: vec![0; reasons.len()],
            ..Default::default()
        })
        .collect();
    let at = |m: Month| usize::try_from(m - first).ok();
    let mut stay = |since: Month, until: Option<Month>| {
        if let Some(c) = at(since).and_then(|i| counts.get_mut(i)) {
            c.intakes += 1;
        }
        for m in since..until.unwrap_or(now + 1).min(now + 1) {
            if let Some(c) = at(m).and_then(|i| counts.get_mut(i)) {
                c.open += 1;
            }
        }
    };
    for s in opens.iter().filter_map(|s| month(s)) {
        stay(s, None);
    }
    for e in ended {
        if let (Some(s), Some(u)) = (month(&e.since), month(&e.until)) {
            stay(s, Some(u));
        }
    }
    for e in ended {
        let Some(c) = month(&e.until).and_then(at).and_then(|i| counts.get_mut(i)) else {
            continue;
        };
        c.endings += 1;
        if let Some(r) = reasons.iter().position(|r| *r == e.reason) {
            c.reasons[r] += 1;
        }
        let band = match days(&e.since, &e.until) {
            Some(d) if d < SHORT_DAYS => 0,
            Some(d) if d <= LONG_DAYS => 1,
            _ => 2,
        };
        c.bands[band] += 1;
    }
    let cells = suppress(&counts);
    let months = (from..=to)
        .map(|m| row(m, reasons, at(m).and_then(|i| cells.get(i))))
        .collect();
    Figures {
        pilot: pilot.to_string(),
        from: label(from),
        to: label(to),
        suppressed_below: THRESHOLD,
        months,
    }
}

/// What a figures request asks for: a pilot and a range of months.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The pilot's id.
    pub pilot: String,
    /// First month.
    pub from: Month,
    /// Last month.
    pub to: Month,
}

/// Reads `pilot=P&from=YYYY-MM&to=YYYY-MM` (any order, nothing else);
/// `from` not after `to`, at most [`MAX_MONTHS`] months.
pub fn ask(query: Option<&str>) -> Result<Ask, String> {
    let (mut pilot, mut from, mut to) = (None, None, None);
    for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("pilot", v)) if crate::config::valid_id(v) => pilot = Some(v.to_string()),
            Some(("from", v)) if v.len() == 7 => from = month(v),
            Some(("to", v)) if v.len() == 7 => to = month(v),
            _ => return Err("the query takes pilot, from and to only".into()),
        }
    }
    match (pilot, from, to) {
        (Some(pilot), Some(from), Some(to)) if from <= to && to - from < MAX_MONTHS => {
            Ok(Ask { pilot, from, to })
        }
        _ => Err(format!(
            "send pilot=<id>&from=YYYY-MM&to=YYYY-MM, from not after to, at most {MAX_MONTHS} months"
        )),
    }
}

/// The figures of one pilot from the registry, now. Blocking.
pub fn of_registry(registry: &Registry, a: &Ask, reasons: &[String]) -> sled::Result<Figures> {
    let opens: Vec<String> = registry
        .open_stays()?
        .into_iter()
        .filter(|(p, _)| *p == a.pilot)
        .map(|(_, since)| since)
        .collect();
    let ended = registry.ended_stays(&a.pilot)?;
    let today = time::OffsetDateTime::now_utc().date();
    let now = today.year() * 12 + i32::from(u8::from(today.month())) - 1;
    Ok(compute(
        &a.pilot,
        reasons,
        &opens,
        &ended,
        (a.from, a.to),
        now,
    ))
}

/// Cells of one month, in order: open, intakes, endings, reasons, bands.
type Grid = Vec<Vec<Cell>>;

fn row(m: Month, reasons: &[String], cells: Option<&Vec<Cell>>) -> Row {
    let get = |i: usize| {
        cells
            .and_then(|c| c.get(i).copied())
            .unwrap_or(Cell::Suppressed)
    };
    Row {
        month: label(m),
        open: get(0),
        intakes: get(1),
        endings: get(2),
        endings_by_reason: reasons
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), get(3 + i)))
            .collect(),
        length_of_stay: BANDS
            .iter()
            .enumerate()
            .map(|(i, b)| (b.to_string(), get(3 + reasons.len() + i)))
            .collect(),
    }
}

/// Primary and secondary suppression over the whole history.
fn suppress(counts: &[Counts]) -> Grid {
    let values: Vec<Vec<u64>> = counts
        .iter()
        .map(|c| {
            let mut v = vec![c.open, c.intakes, c.endings];
            v.extend(&c.reasons);
            v.extend(c.bands);
            v
        })
        .collect();
    let mut hidden: Vec<Vec<bool>> = values
        .iter()
        .map(|v| v.iter().map(|n| *n < THRESHOLD).collect())
        .collect();
    let nr = counts.first().map_or(0, |c| c.reasons.len());
    // Each sum as the cells (month, index) it ties together.
    let mut sums: Vec<Vec<(usize, usize)>> = Vec::new();
    for m in 0..values.len() {
        sums.push([2].into_iter().chain(3..3 + nr).map(|i| (m, i)).collect());
        sums.push(
            [2].into_iter()
                .chain(3 + nr..6 + nr)
                .map(|i| (m, i))
                .collect(),
        );
        if m > 0 {
            sums.push(vec![(m, 0), (m - 1, 0), (m, 1), (m, 2)]);
        }
    }
    loop {
        let mut changed = false;
        for sum in &sums {
            if sum.iter().filter(|(m, i)| hidden[*m][*i]).count() != 1 {
                continue;
            }
            if let Some(&(m, i)) = sum
                .iter()
                .filter(|(m, i)| !hidden[*m][*i])
                .min_by_key(|(m, i)| values[*m][*i])
            {
                hidden[m][i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    values
        .iter()
        .zip(&hidden)
        .map(|(v, h)| {
            v.iter()
                .zip(h)
                .map(|(n, h)| {
                    if *h {
                        Cell::Suppressed
                    } else {
                        Cell::Shown(*n)
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;

    fn ended(since: &str, until: &str, reason: &str) -> Ended {
        Ended {
            since: since.into(),
            until: until.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn small_cells_and_the_cells_that_give_them_back_are_suppressed() {
        let reasons = vec!["terugkeer".to_string(), "overdracht".to_string()];
        let opens: Vec<String> = (0..30).map(|_| "2026-01-10".to_string()).collect();
        let mut gone: Vec<Ended> = (0..12)
            .map(|_| ended("2025-01-01", "2026-02-03", "terugkeer"))
            .collect();
        gone.extend((0..3).map(|_| ended("2026-01-05", "2026-02-04", "overdracht")));
        let now = month("2026-03").unwrap();
        let f = compute(
            "utrecht",
            &reasons,
            &opens,
            &gone,
            (month("2026-01").unwrap(), now),
            now,
        );
        let feb = &f.months[1];
        assert_eq!(feb.month, "2026-02");
        assert_eq!(feb.open, Cell::Shown(30));
        assert_eq!(feb.endings_by_reason["overdracht"], Cell::Suppressed);
        // 15 endings: 12 for terugkeer would give the 3 back, so it goes too.
        assert_eq!(feb.endings_by_reason["terugkeer"], Cell::Suppressed);
        assert_eq!(feb.endings, Cell::Suppressed);
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["months"][1]["open"], 30);
        assert_eq!(json["months"][1]["intakes"], "<10");
        // January: 33 intakes (30 open, 3 ended), 45 open.
        assert_eq!(f.months[0].intakes, Cell::Shown(33));
        assert_eq!(f.months[0].open, Cell::Shown(45));
    }

    #[test]
    fn months_parse_strictly() {
        assert_eq!(month("2026-01"), Some(2026 * 12));
        assert_eq!(month("2026-12-31"), Some(2026 * 12 + 11));
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            assert_eq!(month(bad), None, "{bad}");
        }
    }
}

//! How long the audit log may link a record to a person: the pilot's
//! `[retention] audit = "P5Y"`, an ISO 8601 duration.
//!
//! The log itself keeps every record (a Merkle log cannot delete without
//! breaking its proofs); what retention ends is the link: the subject
//! pseudonym key of a calendar month is destroyed once the month's last day
//! is older than the retention, see `crate::audit::months`. Mailbox
//! documents keep their own retention, per purpose (`retention_days`).

use time::{Date, Month};

/// A pilot's audit retention: a whole number of years, months and days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P")?;
        if self.years > 0 {
            write!(f, "{}Y", self.years)?;
        }
        if self.months > 0 {
            write!(f, "{}M", self.months)?;
        }
        if self.days > 0 || (self.years == 0 && self.months == 0) {
            write!(f, "{}D", self.days)?;
        }
        Ok(())
    }
}

/// A calendar month, `(year, month)`.
pub type YearMonth = (i32, Month);

/// The last day of a month.
pub fn last_day(m: YearMonth) -> Date {
    let len = m.1.length(m.0);
    Date::from_calendar_date(m.0, m.1, len).unwrap_or(Date::MAX)
}

/// The month a day is in.
pub fn month_of(d: Date) -> YearMonth {
    (d.year(), d.month())
}

/// `YYYY-MM`.
pub fn month_label(m: YearMonth) -> String {
    format!("{:04}-{:02}", m.0, m.1 as u8)
}

/// Reads `YYYY-MM`.
pub fn parse_month(s: &str) -> Option<YearMonth> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: i32 = y.parse().ok()?;
    let m = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Some((y, m))
}

impl Retention {
    /// Reads `PnYnMnD` (any part may be left out, at least one present; no
    /// time part: retention is counted in days). `None` when it does not read.
    pub fn parse(s: &str) -> Option<Self> {
        let mut rest = s.strip_prefix('P')?;
        if rest.is_empty() {
            return None;
        }
        let mut r = Self {
            years: 0,
            months: 0,
            days: 0,
        };
        let mut seen = 0u8;
        for (unit, rank) in [('Y', 1u8), ('M', 2), ('D', 3)] {
            if let Some(at) = rest.find(unit) {
                let n: u32 = rest[..at].parse().ok()?;
                if rest[..at].is_empty() || rank <= seen {
                    return None;
                }
                match unit {
                    'Y' => r.years = n,
                    'M' => r.months = n,
                    _ => r.days = n,
                }
                seen = rank;
                rest = &rest[at + 1..];
            }
        }
        rest.is_empty().then_some(r)
    }

    /// `d` plus this duration (a month added to the 31st lands on the
    /// month's last day).
    pub fn after(&self, d: Date) -> Date {
        let total =
            i64::from(d.month() as u8 - 1) + i64::from(self.months) + 12 * i64::from(self.years);
        let year = d.year() + i32::try_from(total.div_euclid(12)).unwrap_or(i32::MAX / 2);
        let month = Month::try_from(u8::try_from(total.rem_euclid(12) + 1).unwrap_or(1))
            .unwrap_or(Month::January);
        let day = d.day().min(month.length(year));
        let moved = Date::from_calendar_date(year, month, day).unwrap_or(Date::MAX);
        moved
            .checked_add(time::Duration::days(i64::from(self.days)))
            .unwrap_or(Date::MAX)
    }

    /// The first day on which month `m` is past retention: its last day is
    /// then older than the retention.
    pub fn destruction_day(&self, m: YearMonth) -> Date {
        self.after(last_day(m)).next_day().unwrap_or(Date::MAX)
    }

    /// Whether month `m` is past retention on `today`.
    pub fn past(&self, m: YearMonth, today: Date) -> bool {
        today >= self.destruction_day(m)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;
    use time::macros::date;

    #[test]
    fn durations_read_and_months_pass_after_their_last_day_plus_retention() {
        let r = Retention::parse("P5Y").unwrap();
        assert_eq!(r.to_string(), "P5Y");
        assert_eq!(Retention::parse("P1Y6M10D").unwrap().days, 10);
        for bad in ["", "P", "5Y", "P5", "PY", "P1M2Y", "P1YT2H", "P-1Y"] {
            assert!(Retention::parse(bad).is_none(), "{bad}");
        }
        let jan = (2020, Month::January);
        assert_eq!(r.destruction_day(jan), date!(2025 - 02 - 01));
        assert!(!r.past(jan, date!(2025 - 01 - 31)));
        assert!(r.past(jan, date!(2025 - 02 - 01)));
        let feb = (2020, Month::February);
        assert_eq!(
            Retention::parse("P1M").unwrap().destruction_day(feb),
            date!(2020 - 03 - 30)
        );
        assert_eq!(parse_month("2020-02"), Some(feb));
        assert_eq!(month_label(feb), "2020-02");
    }
}

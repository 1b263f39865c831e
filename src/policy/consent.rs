//! Consent as the policy sees it: what a recorded consent is, and when it
//! holds.
//!
//! Some flows rest on the person's explicit consent (GDPR art. 6(1)(a),
//! 9(2)(a)) instead of a legal duty: their rule says `consent = "required"`.
//! The register that keeps consents lives in storage, under a keyed
//! pseudonym; what counts as a valid consent on a given day is a policy
//! question, so it is answered here, and [`super::Grant::consent`] is where
//! an exchange is decided on it.

use serde::{Deserialize, Serialize};
use time::Date;

/// What happened to a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentAct {
    /// The person gave (or renewed) consent.
    Given,
    /// The person withdrew it.
    Withdrawn,
}

/// One step in the history of a person's consent for one rule, as kept.
/// Holds no V-nummer and no name: the register keys it by pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    /// Given or withdrawn.
    pub act: ConsentAct,
    /// When the gateway recorded it (RFC 3339, UTC).
    pub recorded_at: String,
    /// The partner that recorded it (a consent recorder of the pilot).
    pub by: String,
    /// The audit record of this step: what exchange records cite as the
    /// consent they rest on.
    pub record: u64,
    /// For a consent: the day it was given (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_at: Option<String>,
    /// For a consent: its last valid day (`YYYY-MM-DD`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// For a consent: where the signed form is kept (a reference, not the form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// For a withdrawal: the reason, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The consent in force on `today`, if any: the latest step is a consent,
/// given on or before `today`, and `today` is not after its last valid day.
/// A withdrawal ends it from the moment it is recorded; so does expiry.
pub fn in_force(history: &[ConsentEvent], today: Date) -> Option<&ConsentEvent> {
    let last = history.last()?;
    let given = last.given_at.as_deref().and_then(parse_day);
    // An expiry that does not read as a date holds nothing: fail closed.
    let expires_ok = match &last.expires {
        None => true,
        Some(e) => parse_day(e).is_some_and(|e| today <= e),
    };
    let holds = last.act == ConsentAct::Given && given.is_some_and(|g| g <= today) && expires_ok;
    holds.then_some(last)
}

/// A day written `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Option<Date> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// The state a history is in on `today`, as the partner API names it.
pub fn state(history: &[ConsentEvent], today: Date) -> &'static str {
    match history.last() {
        None => "none",
        Some(_) if in_force(history, today).is_some() => "given",
        Some(e) if e.act == ConsentAct::Withdrawn => "withdrawn",
        Some(e)
            if e.expires
                .as_deref()
                .is_some_and(|x| parse_day(x).is_none_or(|x| x < today)) =>
        {
            "expired"
        }
        Some(_) => "not-yet-valid",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;
    use time::macros::date;

    fn given(g: &str, e: Option<&str>) -> ConsentEvent {
        ConsentEvent {
            act: ConsentAct::Given,
            recorded_at: String::new(),
            by: "ngo".into(),
            record: 7,
            given_at: Some(g.into()),
            expires: e.map(Into::into),
            evidence: Some("dossier 1".into()),
            reason: None,
        }
    }

    #[test]
    fn consent_holds_from_given_to_expiry_and_not_after_withdrawal() {
        let h = vec![given("2026-01-01", Some("2026-06-30"))];
        assert!(in_force(&h, date!(2025 - 12 - 31)).is_none());
        assert_eq!(in_force(&h, date!(2026 - 06 - 30)).unwrap().record, 7);
        assert!(in_force(&h, date!(2026 - 07 - 01)).is_none());
        assert_eq!(state(&h, date!(2026 - 07 - 01)), "expired");
        let mut w = h.clone();
        w.push(ConsentEvent {
            act: ConsentAct::Withdrawn,
            given_at: None,
            expires: None,
            evidence: None,
            reason: None,
            record: 9,
            ..h[0].clone()
        });
        assert!(in_force(&w, date!(2026 - 02 - 01)).is_none());
        assert_eq!(state(&w, date!(2026 - 02 - 01)), "withdrawn");
        assert_eq!(state(&[], date!(2026 - 02 - 01)), "none");
    }
}

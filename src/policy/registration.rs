//! A pilot's `[registration]` table: who admits people to the LVV and ends
//! their stay, who may ask whether someone is already in an LVV, under which
//! purpose, and how often.
//!
//! The programme wants one registration of who is in which LVV, to prevent
//! "shopping" between LVVs. That crosses pilots, so no single rule covers it:
//! each pilot's covenant says here who takes part in it, and the gateway
//! answers a check with yes or no, never with the other pilot's name.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, Source};

/// How a stay ends, when a pilot names no list of its own.
pub const DEFAULT_END_REASONS: &[&str] = &[
    "terugkeer",
    "doormigratie",
    "verblijfsvergunning",
    "vertrokken-onbekend",
    "overdracht",
];

/// Checks per partner per sliding minute, when the pilot names no number.
pub const DEFAULT_CHECKS_PER_MINUTE: u32 = 60;

/// The table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistration {
    registrars: Vec<Spanned<String>>,
    #[serde(default)]
    checkers: Vec<Spanned<String>>,
    purpose: Spanned<String>,
    #[serde(default)]
    checks_per_minute: Option<Spanned<i64>>,
    #[serde(default)]
    end_reasons: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    figures_readers: Vec<Spanned<String>>,
}

/// A pilot's registration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Partners that admit people and end their stays.
    pub registrars: Vec<String>,
    /// Partners that may ask whether someone is in an LVV.
    pub checkers: Vec<String>,
    /// The purpose under which registering and asking happen.
    pub purpose: String,
    /// Checks per partner over a sliding minute.
    pub checks_per_minute: u32,
    /// The reasons a stay may end with.
    pub end_reasons: Vec<String>,
    /// Partners that may read the figures (never people).
    pub figures_readers: Vec<String>,
}

impl Registration {
    /// Validates the table against the pilot's partners and purposes.
    pub(super) fn compile(
        src: &Source,
        raw: &RawRegistration,
        partners: &[String],
        declared_purpose: impl Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
        let members = |list: &[Spanned<String>], what: &str| {
            let mut out: Vec<String> = Vec::new();
            for p in list {
                if !partners.contains(p.get_ref()) {
                    return Err(src.error(
                        p,
                        format!(
                            "registration {what} '{}' is not a partner of this pilot",
                            p.get_ref()
                        ),
                    ));
                }
                if !out.contains(p.get_ref()) {
                    out.push(p.get_ref().clone());
                }
            }
            Ok(out)
        };
        let registrars = members(&raw.registrars, "registrar")?;
        if registrars.is_empty() {
            return Err(src.error(&raw.purpose, "registration needs at least one registrar"));
        }
        let purpose = raw.purpose.get_ref().clone();
        if !declared_purpose(&purpose) {
            return Err(src.error(
                &raw.purpose,
                format!("registration purpose '{purpose}' is not declared under [purposes]"),
            ));
        }
        let checks_per_minute = match &raw.checks_per_minute {
            None => DEFAULT_CHECKS_PER_MINUTE,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if (1..=10_000).contains(&v) => v,
                _ => {
                    return Err(src.error(n, "checks_per_minute must be between 1 and 10000"));
                }
            },
        };
        let end_reasons = match &raw.end_reasons {
            None => DEFAULT_END_REASONS.iter().map(|s| s.to_string()).collect(),
            Some(list) => {
                let mut out = Vec::new();
                for r in list {
                    if !crate::config::valid_id(r.get_ref()) {
                        return Err(
                            src.error(r, "an end reason must be lowercase letters, digits and '-'")
                        );
                    }
                    out.push(r.get_ref().clone());
                }
                if out.is_empty() {
                    return Err(src.error(&raw.purpose, "end_reasons must not be empty"));
                }
                out
            }
        };
        Ok(Self {
            registrars,
            checkers: members(&raw.checkers, "checker")?,
            purpose,
            checks_per_minute,
            end_reasons,
            figures_readers: members(&raw.figures_readers, "figures reader")?,
        })
    }
}

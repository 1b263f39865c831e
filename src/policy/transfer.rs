//! A pilot's `[[transfer]]` tables: moving a case from one LVV to another.
//!
//! The LVVs get a regional function, so a person may be better served by
//! another pilot. No single covenant covers that: the sending pilot says
//! what it gives (`to = "amsterdam"`), the receiving pilot what it accepts
//! (`from = "utrecht"`), both name the receiving municipality's service and
//! the purpose, and only the fields both allow are delivered. This module
//! reads one file's side; [`super::agreement`] checks that the two sides
//! meet, where all pilots are known.

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::fields::FieldPath;
use super::partners::Partners;
use super::service::Service;
use crate::config::{ConfigError, Source, valid_id};

/// One `[[transfer]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransfer {
    #[serde(default)]
    to: Option<Spanned<String>>,
    #[serde(default)]
    from: Option<Spanned<String>>,
    service: Spanned<String>,
    purpose: Spanned<String>,
    request: Vec<Spanned<String>>,
}

/// Which side of a transfer a pilot's table is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// This pilot sends cases to the named pilot.
    To(String),
    /// This pilot accepts cases from the named pilot.
    From(String),
}

/// One side of a transfer, validated within its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Sending to, or accepting from, which pilot.
    pub side: Side,
    /// The receiving municipality's service, where the dossier goes.
    pub service: Arc<Service>,
    /// The purpose (declared in this file, with its legal basis).
    pub purpose: String,
    /// What this side gives (sending) or accepts (receiving).
    pub request: Vec<FieldPath>,
    /// Line and column of the table, for errors that name both files.
    pub at: Option<(usize, usize)>,
}

impl Transfer {
    /// The other pilot's id.
    pub fn other(&self) -> &str {
        match &self.side {
            Side::To(p) | Side::From(p) => p,
        }
    }

    /// Validates one table: exactly one of `to` and `from`, another pilot,
    /// a declared service and purpose, and fields the service declares, of
    /// special categories only where the purpose's legal basis allows
    /// (`fields` is the rules' own check).
    pub(super) fn compile(
        src: &Source,
        own: &str,
        partners: &Partners,
        raw: &RawTransfer,
        declared_purpose: impl Fn(&str) -> bool,
        fields: impl Fn(&Service, &str, &[Spanned<String>]) -> Result<Vec<FieldPath>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let (side, named) = match (&raw.to, &raw.from) {
            (Some(t), None) => (Side::To(t.get_ref().clone()), t),
            (None, Some(f)) => (Side::From(f.get_ref().clone()), f),
            _ => {
                return Err(src.error(
                    &raw.service,
                    "a transfer names exactly one of to (this pilot sends) and from (this pilot receives)",
                ));
            }
        };
        if !valid_id(named.get_ref()) || named.get_ref() == own {
            return Err(src.error(named, "a transfer names another pilot's id"));
        }
        let (prov, sname) =
            raw.service.get_ref().split_once('/').ok_or_else(|| {
                src.error(&raw.service, "service must be written provider/service")
            })?;
        let service = partners
            .get(prov)
            .and_then(|p| p.service(sname))
            .cloned()
            .ok_or_else(|| {
                src.error(
                    &raw.service,
                    format!("unknown service '{}'", raw.service.get_ref()),
                )
            })?;
        let vars = service.path.as_ref().is_some_and(|p| {
            p.parts
                .iter()
                .any(|x| matches!(x, super::service::Part::Var(_)))
        });
        if !service.methods.iter().any(|m| m == "POST") || vars {
            return Err(src.error(
                &raw.service,
                "a transfer service takes POST of a dossier, at a path without values (or into a mailbox)",
            ));
        }
        let purpose = raw.purpose.get_ref().clone();
        if !declared_purpose(&purpose) {
            return Err(src.error(
                &raw.purpose,
                format!("transfer purpose '{purpose}' is not declared under [purposes]"),
            ));
        }
        let request = fields(&service, &purpose, &raw.request)?;
        if request.is_empty() {
            return Err(src.error(&raw.service, "a transfer allows at least one field"));
        }
        let at = Some(crate::config::line_col(&src.text, raw.service.span().start));
        Ok(Self {
            side,
            service,
            purpose,
            request,
            at,
        })
    }
}

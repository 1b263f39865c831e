//! What the partners of a pilot sign: the covenant text and its version.
//!
//! A covenant version is `sha256:` + the hex SHA-256 of one canonical text:
//! the pilot file as written, followed by the declared fields (subject and
//! every field with its category) of the services its rules name. Those
//! fields are part of the agreement, because an allowed parent path lets
//! every declared field below it through: declaring a new field under it
//! widens the flow as surely as a new line in the pilot file. Back-end
//! addresses, paths, methods and certificate pins are operations and stay out,
//! so moving a back-end or renewing a key needs nobody's signature.
//!
//! The gateway keeps the parts of every version it has seen ([`Terms`]), so it
//! can go on enforcing an accepted version while the file on disk holds a
//! newer proposal; [`Pilot::from_terms`] builds that older version again, with
//! the declared fields it was signed with.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::fields::{Category, FieldPath};
use super::model::Pilot;
use super::partners::{Partner, Partners};
use super::service::Service;
use crate::config::{ConfigError, Source};
use crate::identity::sha256;

/// The declared fields of one service, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declared {
    /// `provider/service`.
    pub service: String,
    /// The field naming the data subject.
    pub subject: String,
    /// Every declared field with its category, in file order.
    pub fields: Vec<(String, String)>,
}

impl Declared {
    fn of(svc: &Service) -> Self {
        Self {
            service: svc.qualified().to_string(),
            subject: svc.subject.to_string(),
            fields: svc
                .fields
                .iter()
                .map(|(f, c)| (f.to_string(), c.as_str().to_string()))
                .collect(),
        }
    }
}

/// One covenant version's parts, from which its canonical text follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// The pilot file, byte for byte.
    pub pilot_text: String,
    /// The declared fields of the services the rules name, by service.
    pub declared: Vec<Declared>,
}

/// The line that separates the pilot file from the declared fields.
const SEPARATOR: &str = "# ---- ketenpoort covenant text v1: the declared fields of the services named above (from partners.toml) ----\n";

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Terms {
    /// The terms of a compiled pilot.
    pub fn of(pilot: &Pilot) -> Self {
        let mut declared: Vec<Declared> = pilot
            .rules
            .iter()
            .map(|r| Declared::of(&r.service))
            .collect();
        declared.sort_by(|a, b| a.service.cmp(&b.service));
        declared.dedup_by(|a, b| a.service == b.service);
        Self {
            pilot_text: pilot.text.clone(),
            declared,
        }
    }

    /// The canonical text: what a partner reads and signs the hash of. It is
    /// itself valid TOML (the declared fields are an array of tables appended
    /// to the pilot file), so any TOML tool reads it.
    pub fn text(&self) -> String {
        let mut out = self.pilot_text.clone();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
        out.push_str(SEPARATOR);
        for d in &self.declared {
            out.push_str(&format!(
                "\n[[declared]]\nservice = {}\nsubject = {}\nfields = [\n",
                quoted(&d.service),
                quoted(&d.subject)
            ));
            for (f, c) in &d.fields {
                out.push_str(&format!("    [{}, {}],\n", quoted(f), quoted(c)));
            }
            out.push_str("]\n");
        }
        out
    }

    /// `sha256:<hex>` of the canonical text.
    pub fn version(&self) -> String {
        format!("sha256:{}", hex::encode(sha256(self.text().as_bytes())))
    }
}

/// `sha256:<hex>` from the hex alone (as URL paths carry it), when it is 64
/// lowercase hex digits.
pub fn version_from_hex(hex: &str) -> Option<String> {
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| format!("sha256:{hex}"))
}

/// The hex digest of a version, as URL paths carry it.
pub fn version_hex(version: &str) -> &str {
    version.strip_prefix("sha256:").unwrap_or(version)
}

/// The partners with the declared fields of `terms` in place of their
/// current ones, for the services the terms name. Errors name a service the
/// partners no longer offer, or a field that no longer parses.
fn with_declared(partners: &Partners, terms: &Terms) -> Result<Partners, String> {
    let mut out = partners.clone();
    for d in &terms.declared {
        let (prov, name) = d
            .service
            .split_once('/')
            .ok_or_else(|| format!("bad service name '{}'", d.service))?;
        let Some(pos) = out.list.iter().position(|p| p.id == prov) else {
            return Err(format!("partner '{prov}' is gone from partners.toml"));
        };
        let partner: &Partner = &out.list[pos];
        let Some(current) = partner.service(name) else {
            return Err(format!(
                "service '{}' is gone from partners.toml",
                d.service
            ));
        };
        let mut svc: Service = (**current).clone();
        svc.subject = FieldPath::parse(&d.subject)?;
        svc.fields = d
            .fields
            .iter()
            .map(|(f, c)| {
                let cat = Category::parse(c).ok_or_else(|| format!("unknown category '{c}'"))?;
                Ok((FieldPath::parse(f)?, cat))
            })
            .collect::<Result<_, String>>()?;
        let mut p = partner.clone();
        p.services = p
            .services
            .iter()
            .map(|s| {
                if s.name == name {
                    Arc::new(svc.clone())
                } else {
                    s.clone()
                }
            })
            .collect();
        out.list[pos] = Arc::new(p);
    }
    Ok(out)
}

impl Pilot {
    /// Builds a version the partners signed from its stored terms, with the
    /// declared fields it was signed with and today's operations (back-ends,
    /// paths, methods). Fails when partners.toml no longer has a service it
    /// names, or the result would not be the version signed.
    pub fn from_terms(
        file: PathBuf,
        terms: &Terms,
        partners: &Partners,
        partners_bytes: &[u8],
    ) -> Result<Self, ConfigError> {
        let fail = |reason: String| ConfigError {
            file: file.clone(),
            at: None,
            reason,
        };
        let signed = with_declared(partners, terms).map_err(&fail)?;
        let src = Source {
            file: file.clone(),
            text: terms.pilot_text.clone(),
        };
        let pilot = Pilot::from_source(&src, &signed, partners_bytes)?;
        if pilot.covenant_version != terms.version() {
            return Err(fail(
                "the stored covenant text does not rebuild to its own version".into(),
            ));
        }
        Ok(pilot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_toml_and_version_follows_the_text() {
        let t = Terms {
            pilot_text: "[pilot]\nid = \"x\"".into(),
            declared: vec![Declared {
                service: "dtv/d".into(),
                subject: "vnummer".into(),
                fields: vec![("vnummer".into(), "identity".into())],
            }],
        };
        let text = t.text();
        let v: toml::Value = text.parse().unwrap();
        assert_eq!(v["declared"][0]["service"].as_str(), Some("dtv/d"));
        let mut u = t.clone();
        u.declared[0].fields[0].1 = "health".into();
        assert_ne!(t.version(), u.version());
        assert_eq!(
            version_from_hex(version_hex(&t.version())),
            Some(t.version())
        );
        assert_eq!(version_from_hex("ABC"), None);
    }
}

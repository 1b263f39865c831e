//! Transfers between pilots, where all pilots are known: a `[[transfer]]`
//! table counts only when the other pilot's file has its mirror image, and
//! the fields that go are those both sides allow.
//!
//! One side alone is refused at load, naming both files: a pilot cannot
//! decide on its own that another LVV receives its cases (or that it takes
//! another's). At run time [`PolicySet::transfer`] compiles the agreed
//! fields into a rule of the ordinary kind, so the dossier goes through the
//! same minimiser and request path as any exchange.

use super::fields::FieldPath;
use super::minimise::Tree;
use super::model::{Pilot, PolicySet, Purpose, Rule};
use super::transfer::{Side, Transfer};
use crate::config::ConfigError;

/// A transfer both pilots agree on.
#[derive(Debug, Clone)]
pub struct Agreed<'p> {
    /// The sending pilot.
    pub from: &'p Pilot,
    /// The receiving pilot.
    pub to: &'p Pilot,
    /// The purpose, as the sending pilot declares it (its legal basis goes
    /// into the record).
    pub purpose: &'p Purpose,
    /// The agreed fields as a rule of the sending pilot: the receiving
    /// service, the sending pilot's registrars as consumers, the
    /// intersection of both sides' fields as the request.
    pub rule: Rule,
}

/// The rule id a transfer's records carry: it names both pilots.
pub fn rule_id(from: &str, to: &str) -> String {
    format!("transfer:{from}->{to}")
}

/// The paths both lists allow: where one covers the other, the narrower.
pub fn intersect(a: &[FieldPath], b: &[FieldPath]) -> Vec<FieldPath> {
    let mut out: Vec<FieldPath> = Vec::new();
    for x in a {
        for y in b {
            let narrower = if x.covers(y) {
                y
            } else if y.covers(x) {
                x
            } else {
                continue;
            };
            if !out.contains(narrower) {
                out.push(narrower.clone());
            }
        }
    }
    out
}

fn sends<'p>(p: &'p Pilot, to: &str) -> Option<&'p Transfer> {
    p.transfers.iter().find(|t| t.side == Side::To(to.into()))
}

fn accepts<'p>(p: &'p Pilot, from: &str) -> Option<&'p Transfer> {
    p.transfers
        .iter()
        .find(|t| t.side == Side::From(from.into()))
}

fn error(p: &Pilot, t: &Transfer, reason: String) -> ConfigError {
    ConfigError {
        file: p.file.clone(),
        at: t.at,
        reason,
    }
}

impl PolicySet {
    /// Every transfer table has its mirror in the other pilot's file, with
    /// the same service and purpose, and the receiving service's provider
    /// signed the receiving pilot's covenant.
    pub fn check_transfers(&self) -> Result<(), ConfigError> {
        for p in self.pilots.values() {
            for t in &p.transfers {
                let other = t.other();
                let Some(o) = self.pilots.get(other) else {
                    return Err(error(
                        p,
                        t,
                        format!("transfer with pilot '{other}', which has no file"),
                    ));
                };
                let (mirror, wanted) = match &t.side {
                    Side::To(_) => (accepts(o, &p.id), format!("from = \"{}\"", p.id)),
                    Side::From(_) => (sends(o, &p.id), format!("to = \"{}\"", p.id)),
                };
                let Some(m) = mirror else {
                    return Err(error(
                        p,
                        t,
                        format!(
                            "transfer with '{other}' has no counterpart: {} needs a [[transfer]] with {wanted}",
                            o.file.display()
                        ),
                    ));
                };
                if m.service.qualified() != t.service.qualified() || m.purpose != t.purpose {
                    return Err(error(
                        p,
                        t,
                        format!(
                            "transfer with '{other}': {} names service {} and purpose '{}', {} names {} and '{}'",
                            p.file.display(),
                            t.service.qualified(),
                            t.purpose,
                            o.file.display(),
                            m.service.qualified(),
                            m.purpose
                        ),
                    ));
                }
                let Some(reg) = &p.registration else {
                    return Err(error(
                        p,
                        t,
                        "a transfer moves a stay: this pilot needs a [registration] table".into(),
                    ));
                };
                if matches!(t.side, Side::To(_))
                    && !reg.end_reasons.iter().any(|r| r == "overdracht")
                {
                    return Err(error(
                        p,
                        t,
                        "a sending pilot ends the stay for reason 'overdracht': add it to end_reasons".into(),
                    ));
                }
                let receiver = if matches!(t.side, Side::From(_)) {
                    p
                } else {
                    o
                };
                if !receiver.partners.contains(&t.service.provider) {
                    return Err(error(
                        p,
                        t,
                        format!(
                            "transfer service {} is not offered by a partner of pilot '{}'",
                            t.service.qualified(),
                            receiver.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The transfer from `from` to `to`, when both files agree on it and
    /// the sending pilot keeps a registration (its registrars send).
    pub fn transfer(&self, from: &str, to: &str) -> Option<Agreed<'_>> {
        let f = self.pilots.get(from)?;
        let t = self.pilots.get(to)?;
        let give = sends(f, to)?;
        let take = accepts(t, from)?;
        if give.service.qualified() != take.service.qualified() || give.purpose != take.purpose {
            return None;
        }
        let purpose = f.purposes.get(&give.purpose)?;
        let registrars = f.registration.as_ref()?.registrars.clone();
        let request = intersect(&give.request, &take.request);
        let declared: Vec<FieldPath> = give.service.fields.iter().map(|(p, _)| p.clone()).collect();
        let rule = Rule {
            id: rule_id(from, to).into(),
            purpose: give.purpose.as_str().into(),
            service: give.service.clone(),
            consumers: registrars,
            response: Vec::new(),
            request_tree: Tree::new(&declared, &request, &[]),
            response_tree: Tree::new(&declared, &[], &[]),
            request,
            transforms: Vec::new(),
            // A transfer rests on the two covenants' agreement, not on
            // the person's consent.
            consent: false,
        };
        Some(Agreed {
            from: f,
            to: t,
            purpose,
            rule,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;

    fn paths(xs: &[&str]) -> Vec<FieldPath> {
        xs.iter().map(|s| FieldPath::parse(s).unwrap()).collect()
    }

    #[test]
    fn the_intersection_keeps_the_narrower_path() {
        let a = paths(&["vnummer", "naam", "casus"]);
        let b = paths(&["vnummer", "casus.doelgroep", "contact.telefoon"]);
        assert_eq!(intersect(&a, &b), paths(&["vnummer", "casus.doelgroep"]));
        assert_eq!(intersect(&b, &a), paths(&["vnummer", "casus.doelgroep"]));
    }
}

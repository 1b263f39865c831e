//! The one place that decides whether an exchange may happen, and what of it.
//!
//! [`PolicySet::authorise`] answers before any document is seen: the pilot,
//! provider and service exist, the purpose is in the covenant, both parties
//! signed it, it is in force, a rule lets this consumer use this service for
//! this purpose, the method is one the service offers, the path carries the
//! values its template needs, and a subject in the path is a V-nummer. The
//! [`Grant`] it returns then decides about documents: which subject a request
//! or an answer element is about, and what of it may go ([`Grant::minimise`]).
//! The exchange pipeline only carries these decisions out; every reason it can
//! refuse for maps to one problem type.

use serde_json::Value;
use time::Date;

use super::minimise::{self, Minimised};
use super::model::{Direction, Pilot, PolicySet, PseudonymKeys, Purpose, Rule};
use super::service::{Part, Service};
use super::stream;
use crate::problem::{self, Kind};
use crate::text::Text;

/// Why an exchange is refused by the policy. Each reason is one stable
/// problem type; its slug is also the reason in the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// No pilot with that id.
    UnknownPilot,
    /// No partner with that id offers services.
    UnknownProvider,
    /// The provider has no service with that name.
    UnknownService,
    /// No pilot knows this purpose.
    UnknownPurpose,
    /// Other pilots know this purpose, this pilot's covenant does not.
    PurposeNotInCovenant,
    /// The consumer or the provider did not sign this pilot's covenant.
    PartnerNotInPilot,
    /// No version of the covenant is accepted by every partner it concerns,
    /// or a party to this exchange revoked its acceptance of the one in force.
    CovenantNotSigned,
    /// The covenant's end date has passed.
    CovenantExpired,
    /// The covenant's start date has not come.
    CovenantNotYetValid,
    /// No rule lets this consumer use this service for this purpose.
    NoRule,
    /// The service does not offer this method.
    MethodNotAllowed,
    /// The path does not carry the values the service's template needs.
    NotFound,
    /// A subject that is not a V-nummer, or two that disagree.
    InvalidSubject,
    /// A request document that does not name its subject.
    SubjectMissing,
    /// An answer element that names its subject with something that is not
    /// a V-nummer: recording it would name the wrong person.
    BadAnswerSubject,
    /// The rule rests on consent, and the person has none in force for it.
    ConsentMissing,
}

impl RefusalReason {
    /// The problem type partners see.
    pub fn kind(self) -> Kind {
        match self {
            Self::UnknownPilot => problem::UNKNOWN_PILOT,
            Self::UnknownProvider => problem::UNKNOWN_PROVIDER,
            Self::UnknownService => problem::UNKNOWN_SERVICE,
            Self::UnknownPurpose => problem::UNKNOWN_PURPOSE,
            Self::PurposeNotInCovenant => problem::PURPOSE_NOT_IN_COVENANT,
            Self::PartnerNotInPilot => problem::PARTNER_NOT_IN_PILOT,
            Self::CovenantNotSigned => problem::COVENANT_NOT_SIGNED,
            Self::CovenantExpired => problem::COVENANT_EXPIRED,
            Self::CovenantNotYetValid => problem::COVENANT_NOT_YET_VALID,
            Self::NoRule => problem::NO_RULE,
            Self::MethodNotAllowed => problem::METHOD_NOT_ALLOWED,
            Self::NotFound => problem::NOT_FOUND,
            Self::InvalidSubject => problem::INVALID_SUBJECT,
            Self::SubjectMissing => problem::SUBJECT_MISSING,
            Self::BadAnswerSubject => problem::BACKEND_BAD_ANSWER,
            Self::ConsentMissing => problem::CONSENT_MISSING,
        }
    }

    /// The stable code: the problem type's slug.
    pub fn code(self) -> &'static str {
        self.kind().slug
    }
}

/// A refusal with its explanation (ids only, no personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: RefusalReason,
    /// In words, for the problem detail and `policy explain`.
    pub detail: String,
}

fn refuse<T>(reason: RefusalReason, detail: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        reason,
        detail: detail.into(),
    })
}

/// What may be asked of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// Pilot id.
    pub pilot: &'a str,
    /// The partner that calls (and receives the response).
    pub consumer: &'a str,
    /// The partner whose service is called.
    pub provider: &'a str,
    /// The service's name at the provider.
    pub service: &'a str,
    /// The purpose the consumer states.
    pub purpose: &'a str,
    /// The day the exchange happens (covenant validity).
    pub today: Date,
    /// The HTTP method and the path values after the service, when an
    /// exchange is asked for (`None` when only the covenant is explained).
    pub call: Option<(&'a str, &'a [&'a str])>,
}

/// A V-nummer: exactly ten digits.
pub fn valid_vnummer(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Permission for one exchange: the rule and everything it rests on.
#[derive(Debug, Clone)]
pub struct Grant<'p> {
    /// The pilot.
    pub pilot: &'p Pilot,
    /// The purpose.
    pub purpose: &'p Purpose,
    /// The rule.
    pub rule: &'p Rule,
    /// The subject named in the path, already checked to be a V-nummer.
    pub path_subject: Option<String>,
}

impl Grant<'_> {
    /// The service the rule is for.
    pub fn service(&self) -> &Service {
        &self.rule.service
    }

    /// Minimises a document going in direction `d`. An array is minimised
    /// element by element.
    pub fn minimise(&self, d: Direction, doc: &Value, keys: &PseudonymKeys) -> Minimised {
        let key = keys.key(&self.pilot.id, &self.purpose.id);
        minimise::minimise(doc, self.rule.tree(d), &key)
    }

    /// Minimises a document's bytes going in direction `d` while parsing
    /// them strictly: the result of [`Grant::minimise`] per element (at most
    /// `max_elements`), serialised, with each element's subject field as
    /// received.
    pub fn minimise_bytes(
        &self,
        d: Direction,
        bytes: &[u8],
        keys: &PseudonymKeys,
        max_elements: usize,
    ) -> Result<stream::Doc, stream::Malformed> {
        let key = keys.key(&self.pilot.id, &self.purpose.id);
        stream::minimise_bytes(
            bytes,
            self.rule.tree(d),
            &key,
            &self.service().subject,
            max_elements,
        )
    }

    /// The subject of a request document: its own subject field, which must
    /// be a V-nummer and agree with the path's, or the path's.
    pub fn request_subject(&self, doc: &Value) -> Result<String, Refusal> {
        self.request_subject_found(self.service().subject_in(doc))
    }

    /// [`Grant::request_subject`] from what `Service::subject_in` found.
    pub fn request_subject_found(&self, found: Option<Option<String>>) -> Result<String, Refusal> {
        let svc = self.service();
        match (found, &self.path_subject) {
            (Some(Some(s)), _) if !valid_vnummer(&s) => {
                refuse(RefusalReason::InvalidSubject, "a V-nummer has ten digits")
            }
            (Some(None), _) => refuse(RefusalReason::InvalidSubject, "a V-nummer has ten digits"),
            (Some(Some(s)), Some(p)) if s != *p => refuse(
                RefusalReason::InvalidSubject,
                "the document names another subject than the path",
            ),
            (Some(Some(s)), _) => Ok(s),
            (None, Some(p)) => Ok(p.clone()),
            (None, None) => refuse(
                RefusalReason::SubjectMissing,
                format!("the document needs its '{}'", svc.subject),
            ),
        }
    }

    /// Whether the flow may happen for a person with this consent history
    /// for the rule, on `today`: a rule that does not rest on consent needs
    /// none (`Ok(None)`); one that does needs a consent in force, and the
    /// answer is the audit record of that consent, which the exchange's
    /// records cite. `history` is `None` when the subject is not known.
    pub fn consent(
        &self,
        history: Option<&[super::consent::ConsentEvent]>,
        today: Date,
    ) -> Result<Option<u64>, Refusal> {
        if !self.rule.consent {
            return Ok(None);
        }
        let Some(history) = history else {
            return refuse(
                RefusalReason::ConsentMissing,
                "this flow rests on the person's consent: name the person in the path or the document",
            );
        };
        match super::consent::in_force(history, today) {
            Some(c) => Ok(Some(c.record)),
            None => refuse(
                RefusalReason::ConsentMissing,
                format!(
                    "rule '{}' rests on the person's consent, and there is none in force ({})",
                    self.rule.id,
                    super::consent::state(history, today)
                ),
            ),
        }
    }

    /// The subject of one answer element: `None` when it names none (it is
    /// then about the path's subject), refused when it names one with
    /// anything but a V-nummer.
    pub fn answer_subject(&self, element: &Value) -> Result<Option<String>, Refusal> {
        self.answer_subject_found(self.service().subject_in(element))
    }

    /// [`Grant::answer_subject`] from what `Service::subject_in` found.
    pub fn answer_subject_found(
        &self,
        found: Option<Option<String>>,
    ) -> Result<Option<String>, Refusal> {
        match found {
            None => Ok(None),
            Some(Some(s)) if valid_vnummer(&s) => Ok(Some(s)),
            Some(_) => refuse(
                RefusalReason::BadAnswerSubject,
                format!(
                    "an element names its subject '{}' with something that is not a V-nummer",
                    self.service().subject
                ),
            ),
        }
    }
}

/// The subject from the path, when the template places the subject field there.
fn subject_in_path(svc: &Service, values: &[&str]) -> Option<String> {
    let name = match svc.subject.0.as_slice() {
        [one] => one.name.as_str(),
        _ => return None,
    };
    let pos = svc
        .path
        .as_ref()?
        .parts
        .iter()
        .filter(|p| matches!(p, Part::Var(_)))
        .position(|p| matches!(p, Part::Var(v) if v == name))?;
    values.get(pos).map(|v| (*v).to_string())
}

/// The decision on one document: the single answer of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Allowed, or why not.
    pub outcome: Result<(), Refusal>,
    /// The document as it may be delivered (allowed only).
    pub minimised: Option<Value>,
    /// Field paths delivered.
    pub disclosed: Vec<Text>,
    /// Declared field paths removed.
    pub withheld: Vec<Text>,
    /// How many undeclared keys were removed (never named: key names are data).
    pub withheld_undeclared: u32,
    /// The rule that allowed it.
    pub rule_id: Option<String>,
    /// The pilot's policy version.
    pub policy_version: Option<String>,
    /// The purpose's legal basis.
    pub legal_basis: Option<String>,
}

impl PolicySet {
    /// Checks whether the query may happen at all, before any document is
    /// seen. The order is the order a partner can act on: what does not
    /// exist (404), then the covenant (403), then the call itself.
    pub fn authorise(&self, q: &Query<'_>) -> Result<Grant<'_>, Refusal> {
        let (pilot, svc) = self.locate(q)?;
        let purpose = self.covenant(q, pilot)?;
        let Some(rule) = pilot.rule_for(q.consumer, (q.provider, q.service), q.purpose) else {
            return refuse(
                RefusalReason::NoRule,
                format!(
                    "no rule of pilot '{}' lets '{}' use {}/{} for '{}'",
                    pilot.id, q.consumer, q.provider, q.service, q.purpose
                ),
            );
        };
        let path_subject = match q.call {
            Some((method, values)) => call(svc, method, values)?,
            None => None,
        };
        Ok(Grant {
            pilot,
            purpose,
            rule,
            path_subject,
        })
    }

    /// The pilot and the service, or which of them does not exist.
    fn locate(&self, q: &Query<'_>) -> Result<(&Pilot, &Service), Refusal> {
        let Some(pilot) = self.pilots.get(q.pilot) else {
            return refuse(
                RefusalReason::UnknownPilot,
                format!("no pilot '{}'", q.pilot),
            );
        };
        let Some(provider) = self
            .partners
            .get(q.provider)
            .filter(|p| !p.services.is_empty())
        else {
            return refuse(
                RefusalReason::UnknownProvider,
                format!("'{}' offers no services", q.provider),
            );
        };
        match provider.service(q.service) {
            Some(svc) => Ok((pilot, svc)),
            None => refuse(
                RefusalReason::UnknownService,
                format!("'{}' has no service '{}'", q.provider, q.service),
            ),
        }
    }

    /// The purpose, when the pilot's covenant names it, both parties signed
    /// it, and it is in force today.
    fn covenant<'p>(&self, q: &Query<'_>, pilot: &'p Pilot) -> Result<&'p Purpose, Refusal> {
        let Some(purpose) = pilot.purposes.get(q.purpose) else {
            if self
                .pilots
                .values()
                .any(|p| p.purposes.contains_key(q.purpose))
            {
                return refuse(
                    RefusalReason::PurposeNotInCovenant,
                    format!(
                        "purpose '{}' is not in the covenant of pilot '{}'",
                        q.purpose, pilot.id
                    ),
                );
            }
            return refuse(
                RefusalReason::UnknownPurpose,
                "no covenant knows this purpose",
            );
        };
        for who in [q.consumer, q.provider] {
            if !pilot.partners.iter().any(|p| p == who) {
                return refuse(
                    RefusalReason::PartnerNotInPilot,
                    format!("'{who}' did not sign the covenant of pilot '{}'", pilot.id),
                );
            }
        }
        signed(q, pilot)?;
        let c = &pilot.covenant;
        if q.today > c.valid_until {
            return refuse(
                RefusalReason::CovenantExpired,
                format!("covenant {} ended on {}", c.id, c.valid_until),
            );
        }
        if q.today < c.valid_from {
            return refuse(
                RefusalReason::CovenantNotYetValid,
                format!("covenant {} starts on {}", c.id, c.valid_from),
            );
        }
        Ok(purpose)
    }

    /// The decision for one document in one direction: allowed or refused,
    /// the minimised document, what was disclosed and withheld, and the rule
    /// and policy version it rests on.
    pub fn decide(
        &self,
        q: &Query<'_>,
        d: Direction,
        doc: &Value,
        keys: &PseudonymKeys,
    ) -> Verdict {
        match self.authorise(q) {
            Err(refusal) => Verdict {
                outcome: Err(refusal),
                minimised: None,
                disclosed: Vec::new(),
                withheld: Vec::new(),
                withheld_undeclared: 0,
                rule_id: None,
                policy_version: self.pilots.get(q.pilot).map(|p| p.version.to_string()),
                legal_basis: None,
            },
            Ok(grant) => {
                let m = grant.minimise(d, doc, keys);
                Verdict {
                    outcome: Ok(()),
                    minimised: Some(m.value),
                    disclosed: m.disclosed,
                    withheld: m.withheld,
                    withheld_undeclared: m.undeclared,
                    rule_id: Some(grant.rule.id.to_string()),
                    policy_version: Some(grant.pilot.version.to_string()),
                    legal_basis: Some(grant.purpose.legal_basis.to_string()),
                }
            }
        }
    }
}

/// Refuses when no version of the pilot's covenant is signed, or when a
/// party to the exchange revoked its acceptance of the version in force.
fn signed(q: &Query<'_>, pilot: &Pilot) -> Result<(), Refusal> {
    if pilot.standing.unsigned {
        return refuse(
            RefusalReason::CovenantNotSigned,
            format!(
                "no version of the covenant of pilot '{}' is accepted by every partner it concerns",
                pilot.id
            ),
        );
    }
    for who in [q.consumer, q.provider] {
        if pilot.standing.revoked.contains(who) {
            return refuse(
                RefusalReason::CovenantNotSigned,
                format!(
                    "'{who}' revoked its acceptance of the covenant of pilot '{}' ({})",
                    pilot.id, pilot.covenant_version
                ),
            );
        }
    }
    Ok(())
}

/// The call itself: a method the service offers, the values its path needs,
/// and a subject in the path that is a V-nummer (returned).
fn call(svc: &Service, method: &str, values: &[&str]) -> Result<Option<String>, Refusal> {
    if !svc.methods.iter().any(|m| m == method) {
        return refuse(
            RefusalReason::MethodNotAllowed,
            format!("{} takes {}", svc.qualified(), svc.methods.join(", ")),
        );
    }
    let arity = svc.path.as_ref().map_or(0, |p| p.arity());
    if values.len() != arity {
        return refuse(
            RefusalReason::NotFound,
            format!("{} takes {arity} path value(s)", svc.qualified()),
        );
    }
    match subject_in_path(svc, values) {
        Some(s) if !valid_vnummer(&s) => {
            refuse(RefusalReason::InvalidSubject, "a V-nummer has ten digits")
        }
        s => Ok(s),
    }
}

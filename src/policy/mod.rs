//! The covenant as code: per pilot, per purpose rules that decide which fields
//! go from whom to whom. Default deny.
//!
//! - [`fields`]: field paths and GDPR categories;
//! - [`service`]: what a provider's document looks like (from partners.toml);
//! - [`load`]: reading and validating `config/pilots/<pilot>.toml`;
//! - [`minimise`]: keeping only allowed fields, with transforms;
//! - [`diff`]: the flows a policy set allows, and how two sets differ;
//! - this module: the compiled policy and [`PolicySet::decide`], the one place
//!   that decides.

pub mod diff;
pub mod explain;
pub mod fields;
pub mod graph;
pub mod load;
pub mod minimise;
pub mod service;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use ring::hmac;
use serde_json::Value;
use time::Date;

use crate::config::Partners;
use fields::{Category, FieldPath};
use minimise::{Minimised, Transform, Tree};
use service::Service;

/// Which way a document goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Consumer → provider: the body of the consumer's request.
    Request,
    /// Provider → consumer: the provider's answer.
    Response,
}

impl Direction {
    /// `request` or `response`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

/// The covenant a pilot's rules rest on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covenant {
    /// The covenant's id (`LVV-UTR-IUC`).
    pub id: String,
    /// Its version.
    pub version: String,
    /// First day the rules apply.
    pub valid_from: Date,
    /// Last day the rules apply.
    pub valid_until: Date,
}

/// A purpose the covenant names, with its legal basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    /// Its id (`casusoverleg`), sent by partners in `Ketenpoort-Purpose`.
    pub id: String,
    /// What it is for, in words.
    pub description: String,
    /// The legal basis, as the covenant cites it.
    pub legal_basis: String,
    /// How long a recipient may keep what it received.
    pub retention_days: u32,
    /// Special categories (health, criminal) this purpose may carry.
    pub special_categories: BTreeSet<Category>,
}

/// One rule: a provider's service, to these consumers, for this purpose, these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, written into audit records.
    pub id: String,
    /// The purpose id.
    pub purpose: String,
    /// The provider's service.
    pub service: Arc<Service>,
    /// Who may call it.
    pub consumers: Vec<String>,
    /// Fields the provider may return (provider → consumer).
    pub response: Vec<FieldPath>,
    /// Fields the consumer may send (consumer → provider).
    pub request: Vec<FieldPath>,
    /// Transforms on allowed fields.
    pub transforms: Vec<(FieldPath, Transform)>,
    /// `response` and `transforms`, compiled.
    pub response_tree: Tree,
    /// `request` and `transforms`, compiled.
    pub request_tree: Tree,
}

impl Rule {
    /// The allowed paths of one direction.
    pub fn allowed(&self, d: Direction) -> &[FieldPath] {
        match d {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    fn tree(&self, d: Direction) -> &Tree {
        match d {
            Direction::Request => &self.request_tree,
            Direction::Response => &self.response_tree,
        }
    }

    /// A field as listings show it: `path`, or `path (transform)`.
    pub fn field_label(&self, path: &FieldPath) -> String {
        match self.transform_of(path) {
            Some(t) => format!("{path} ({t})"),
            None => path.to_string(),
        }
    }

    /// The transform on a field, if any.
    pub fn transform_of(&self, path: &FieldPath) -> Option<Transform> {
        self.transforms
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| *t)
    }
}

/// One pilot's compiled policy.
#[derive(Debug, Clone)]
pub struct Pilot {
    /// Pilot id (`utrecht`), equal to the file's name.
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// The file's text, as validated (for the console and history).
    pub text: String,
    /// Partners that signed the covenant.
    pub partners: Vec<String>,
    /// The covenant.
    pub covenant: Covenant,
    /// Purposes by id.
    pub purposes: BTreeMap<String, Purpose>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// `sha256:<hex>` of partners.toml and this file: the policy version in
    /// every audit record.
    pub version: String,
    index: HashMap<(String, String, String), usize>,
}

impl Pilot {
    /// Every directed flow of the rules: for each rule, each consumer and
    /// each direction that carries fields, `(rule, direction, from, to)`.
    /// Diffs, pictures and the DPIA annex all read the policy through this.
    pub fn flows(&self) -> impl Iterator<Item = (&Rule, Direction, &str, &str)> {
        self.rules.iter().flat_map(|rule| {
            rule.consumers.iter().flat_map(move |consumer| {
                [Direction::Request, Direction::Response]
                    .into_iter()
                    .filter(move |d| !rule.allowed(*d).is_empty())
                    .map(move |d| {
                        let provider = rule.service.provider.as_str();
                        match d {
                            Direction::Request => (rule, d, consumer.as_str(), provider),
                            Direction::Response => (rule, d, provider, consumer.as_str()),
                        }
                    })
            })
        })
    }

    /// The rule for (consumer, provider/service, purpose), if any.
    pub fn rule_for(&self, consumer: &str, service: &str, purpose: &str) -> Option<&Rule> {
        self.index
            .get(&(
                consumer.to_string(),
                service.to_string(),
                purpose.to_string(),
            ))
            .map(|&i| &self.rules[i])
    }
}

/// Why an exchange is refused by the policy. Codes are stable: they appear in
/// audit records and problem types.
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
    /// The covenant's end date has passed.
    CovenantExpired,
    /// The covenant's start date has not come.
    CovenantNotYetValid,
    /// No rule lets this consumer use this service for this purpose.
    NoRule,
}

impl RefusalReason {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownPilot => "unknown-pilot",
            Self::UnknownProvider => "unknown-provider",
            Self::UnknownService => "unknown-service",
            Self::UnknownPurpose => "unknown-purpose",
            Self::PurposeNotInCovenant => "purpose-not-in-covenant",
            Self::PartnerNotInPilot => "partner-not-in-pilot",
            Self::CovenantExpired => "covenant-expired",
            Self::CovenantNotYetValid => "covenant-not-yet-valid",
            Self::NoRule => "no-rule",
        }
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
}

/// Permission for one exchange: the rule and everything it rests on.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'p> {
    /// The pilot.
    pub pilot: &'p Pilot,
    /// The purpose.
    pub purpose: &'p Purpose,
    /// The rule.
    pub rule: &'p Rule,
}

impl Grant<'_> {
    /// Minimises a document going in direction `d`. An array is minimised
    /// element by element.
    pub fn minimise(&self, d: Direction, doc: &Value, keys: &PseudonymKeys) -> Minimised {
        let key = keys.key(&self.pilot.id, &self.purpose.id);
        minimise::minimise(doc, self.rule.tree(d), &key)
    }
}

/// The decision on one document: the single answer of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Allowed, or why not.
    pub outcome: Result<(), Refusal>,
    /// The document as it may be delivered (allowed only).
    pub minimised: Option<Value>,
    /// Field paths delivered.
    pub disclosed: Vec<String>,
    /// Declared field paths removed.
    pub withheld: Vec<String>,
    /// How many undeclared keys were removed (never named: key names are data).
    pub withheld_undeclared: u32,
    /// The rule that allowed it.
    pub rule_id: Option<String>,
    /// The pilot's policy version.
    pub policy_version: Option<String>,
    /// The purpose's legal basis.
    pub legal_basis: Option<String>,
}

/// Secrets for pseudonyms, one per pilot; a key per (pilot, purpose) is derived
/// from it, so researchers can link records inside one study, never across.
#[derive(Clone, Default)]
pub struct PseudonymKeys {
    secrets: HashMap<String, [u8; 32]>,
}

impl std::fmt::Debug for PseudonymKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKeys")
            .field("pilots", &self.secrets.len())
            .finish()
    }
}

impl PseudonymKeys {
    /// Keys from pilot secrets.
    pub fn new(secrets: HashMap<String, [u8; 32]>) -> Self {
        Self { secrets }
    }

    /// The HMAC key for one pilot and purpose. A pilot without a secret gets
    /// one derived from nothing secret only in tests; production loads every
    /// pilot's secret at start (see `keys`).
    pub fn key(&self, pilot: &str, purpose: &str) -> hmac::Key {
        let secret = self.secrets.get(pilot).copied().unwrap_or([0u8; 32]);
        let base = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let derived = hmac::sign(
            &base,
            format!("ketenpoort/pseudonym/v1/{pilot}/{purpose}").as_bytes(),
        );
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }
}

/// All pilots' policies with the partners and services they refer to.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Partners and their services.
    pub partners: Arc<Partners>,
    /// Pilots by id.
    pub pilots: BTreeMap<String, Pilot>,
}

impl PolicySet {
    /// Checks whether the query may happen at all, before any document is seen.
    pub fn authorise(&self, q: &Query<'_>) -> Result<Grant<'_>, Refusal> {
        let refuse = |reason, detail: String| Err(Refusal { reason, detail });
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
        if provider.service(q.service).is_none() {
            return refuse(
                RefusalReason::UnknownService,
                format!("'{}' has no service '{}'", q.provider, q.service),
            );
        }
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
                "no covenant knows this purpose".into(),
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
        if q.today > pilot.covenant.valid_until {
            return refuse(
                RefusalReason::CovenantExpired,
                format!(
                    "covenant {} ended on {}",
                    pilot.covenant.id, pilot.covenant.valid_until
                ),
            );
        }
        if q.today < pilot.covenant.valid_from {
            return refuse(
                RefusalReason::CovenantNotYetValid,
                format!(
                    "covenant {} starts on {}",
                    pilot.covenant.id, pilot.covenant.valid_from
                ),
            );
        }
        let qualified = format!("{}/{}", q.provider, q.service);
        match pilot.rule_for(q.consumer, &qualified, q.purpose) {
            Some(rule) => Ok(Grant {
                pilot,
                purpose,
                rule,
            }),
            None => refuse(
                RefusalReason::NoRule,
                format!(
                    "no rule of pilot '{}' lets '{}' use {qualified} for '{}'",
                    pilot.id, q.consumer, q.purpose
                ),
            ),
        }
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
    ) -> Decision {
        match self.authorise(q) {
            Err(refusal) => Decision {
                outcome: Err(refusal),
                minimised: None,
                disclosed: Vec::new(),
                withheld: Vec::new(),
                withheld_undeclared: 0,
                rule_id: None,
                policy_version: self.pilots.get(q.pilot).map(|p| p.version.clone()),
                legal_basis: None,
            },
            Ok(grant) => {
                let m = grant.minimise(d, doc, keys);
                Decision {
                    outcome: Ok(()),
                    minimised: Some(m.value),
                    disclosed: m.disclosed,
                    withheld: m.withheld,
                    withheld_undeclared: m.undeclared,
                    rule_id: Some(grant.rule.id.clone()),
                    policy_version: Some(grant.pilot.version.clone()),
                    legal_basis: Some(grant.purpose.legal_basis.clone()),
                }
            }
        }
    }
}

//! The compiled policy: pilots with their covenant, purposes and rules, each
//! rule's field trees compiled once at load, and the pseudonym keys. What
//! [`super::load`] builds from the files and [`super::decide`] decides with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use ring::hmac;
use time::Date;

use super::fields::{Category, FieldPath};
use super::minimise::{Transform, Tree};
use super::partners::Partners;
use super::service::Service;
use crate::text::Text;

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

/// The URI prefix of a processing activity in the register (`crate::register`).
pub const ACTIVITY_PREFIX: &str = "urn:ketenpoort:processing-activity:";

/// The register's URI of the activity of a pilot, purpose and direction:
/// the register lists it, and every record of such a disclosure names it,
/// so the two can be joined without this code.
pub fn activity_id(pilot: &str, purpose: &str, d: Direction) -> String {
    format!("{ACTIVITY_PREFIX}{pilot}:{purpose}:{}", d.as_str())
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
    pub legal_basis: Text,
    /// How long a recipient may keep what it received.
    pub retention_days: u32,
    /// Special categories (health, criminal) this purpose may carry.
    pub special_categories: BTreeSet<Category>,
    /// The register's URIs of its processing activities: made once, named
    /// by every record.
    pub activities: Activities,
}

/// The register's URIs of a purpose's two processing activities
/// ([`activity_id`]), one per direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activities([Text; 2]);

impl Activities {
    /// The activities of `purpose` in `pilot`.
    pub fn of(pilot: &str, purpose: &str) -> Self {
        Self(
            [Direction::Request, Direction::Response]
                .map(|d| activity_id(pilot, purpose, d).into()),
        )
    }

    /// The activity of data going `d`.
    pub fn get(&self, d: Direction) -> &Text {
        match d {
            Direction::Request => &self.0[0],
            Direction::Response => &self.0[1],
        }
    }
}

/// One rule: a provider's service, to these consumers, for this purpose, these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, written into audit records.
    pub id: Text,
    /// The purpose id.
    pub purpose: Text,
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
    /// The flow rests on the person's consent (`consent = "required"`): it
    /// passes only for a person with a consent in force for this rule.
    pub consent: bool,
}

impl Rule {
    /// The allowed paths of one direction.
    pub fn allowed(&self, d: Direction) -> &[FieldPath] {
        match d {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    pub(super) fn tree(&self, d: Direction) -> &Tree {
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

/// Where the partners stand on the covenant version a pilot runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// No version has been accepted by every partner it concerns: every
    /// flow of the pilot is refused.
    pub unsigned: bool,
    /// Partners that revoked their acceptance of the version in force: every
    /// flow where they give or receive is refused.
    pub revoked: BTreeSet<String>,
}

/// One pilot's compiled policy.
#[derive(Debug, Clone)]
pub struct Pilot {
    /// Pilot id (`utrecht`), equal to the file's name.
    pub id: Text,
    /// The id as the `Ketenpoort-Pilot` header a call to a back-end carries:
    /// made once at load (`Pilot::from_source`) rather than copied per
    /// request.
    pub id_header: hyper::header::HeaderValue,
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
    /// Who registers stays in this LVV and who may check, if anyone.
    pub registration: Option<super::registration::Registration>,
    /// Its sides of transfers to and from other pilots (each one counts only
    /// with its mirror in the other pilot's file, see [`super::agreement`]).
    pub transfers: Vec<super::transfer::Transfer>,
    /// Partners that record and withdraw consents (`consent_recorders`).
    pub consent_recorders: Vec<String>,
    /// How long audit records stay linkable to a person (`[retention]
    /// audit`); `None`: the file states none, and nothing is unlinked.
    pub retention: Option<super::retention::Retention>,
    /// `sha256:<hex>` of partners.toml and this file: the policy version in
    /// every audit record.
    pub version: Text,
    /// `sha256:<hex>` of the covenant text the partners sign (the file and
    /// the declared fields of its services, see [`super::terms`]).
    pub covenant_version: String,
    /// Where the partners stand on the version in force; set by the covenant
    /// registry, empty for a file read on its own.
    pub standing: Standing,
    /// Rules by the hash of (consumer, provider, service, purpose)
    /// ([`rule_key`]): one look-up per exchange that copies no string; a
    /// hit is checked against the rule itself.
    pub(super) index: HashMap<u64, Vec<usize>>,
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

    /// The rule for (consumer, provider's service, purpose), if any.
    pub fn rule_for(
        &self,
        consumer: &str,
        (provider, service): (&str, &str),
        purpose: &str,
    ) -> Option<&Rule> {
        find_rule(
            &self.index,
            &self.rules,
            consumer,
            (provider, service),
            purpose,
        )
        .map(|i| &self.rules[i])
    }
}

/// The position in `rules` of the rule for (consumer, provider's service,
/// purpose), looked up in `index` ([`rule_key`]) and checked against the
/// rule itself; also how loading finds a second rule for the same.
pub(super) fn find_rule(
    index: &HashMap<u64, Vec<usize>>,
    rules: &[Rule],
    consumer: &str,
    (provider, service): (&str, &str),
    purpose: &str,
) -> Option<usize> {
    index
        .get(&rule_key(consumer, provider, service, purpose))?
        .iter()
        .copied()
        .find(|&i| {
            let r = &rules[i];
            r.purpose == purpose
                && r.service.provider == provider
                && r.service.name == service
                && r.consumers.iter().any(|c| c == consumer)
        })
}

/// The key of [`Pilot::rule_for`]'s index: a hash of the four names, each
/// ended by a separator no name contains.
pub(super) fn rule_key(consumer: &str, provider: &str, service: &str, purpose: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for part in [consumer, provider, service, purpose] {
        part.hash(&mut h);
    }
    h.finish()
}

/// Secrets for pseudonyms, one per pilot; a key per (pilot, purpose) is derived
/// from it, so researchers can link records inside one study, never across.
#[derive(Clone, Default)]
pub struct PseudonymKeys {
    secrets: HashMap<String, [u8; 32]>,
    /// The keys of the purposes the policies name, by pilot, then purpose:
    /// derived once, where deriving per exchange cost two HMAC key set-ups
    /// and a signature.
    derived: HashMap<String, HashMap<String, hmac::Key>>,
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
        Self {
            secrets,
            derived: HashMap::new(),
        }
    }

    /// The same keys, with those of every purpose in `policy` derived ahead.
    pub fn derived_for(mut self, policy: &PolicySet) -> Self {
        for pilot in policy.pilots.values() {
            for purpose in pilot.purposes.keys() {
                let key = self.derive(&pilot.id, purpose);
                self.derived
                    .entry(pilot.id.to_string())
                    .or_default()
                    .insert(purpose.clone(), key);
            }
        }
        self
    }

    /// The HMAC key for one pilot and purpose. A pilot without a secret gets
    /// one derived from nothing secret only in tests; production loads every
    /// pilot's secret at start (see `keys`).
    pub fn key(&self, pilot: &str, purpose: &str) -> std::borrow::Cow<'_, hmac::Key> {
        match self.derived.get(pilot).and_then(|p| p.get(purpose)) {
            Some(k) => std::borrow::Cow::Borrowed(k),
            None => std::borrow::Cow::Owned(self.derive(pilot, purpose)),
        }
    }

    fn derive(&self, pilot: &str, purpose: &str) -> hmac::Key {
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

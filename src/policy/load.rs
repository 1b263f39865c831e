//! Reading and validating the policy files, `config/pilots/<pilot>.toml`.
//!
//! A file that does not validate is refused whole, naming file, line and reason;
//! nothing of it is used. The checks are the covenant's own rules: only partners
//! that signed, only declared services and fields, only known purposes, special
//! categories only where the purpose's legal basis allows them, one rule per
//! (purpose, service, consumer), sensible dates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use super::fields::{Category, FieldPath};
use super::minimise::{Granularity, Transform, Tree};
use super::model::{Activities, Covenant, Pilot, PolicySet, Purpose, Rule, find_rule, rule_key};
use super::partners::Partners;
use super::registration::Registration;
use super::retention::Retention;
use super::service::Service;
use super::transfer::Transfer;
use crate::config::{ConfigError, Source, valid_id};
use crate::identity::sha256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    pilot: RawPilot,
    #[serde(default)]
    purposes: BTreeMap<String, Spanned<RawPurpose>>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    registration: Option<super::registration::RawRegistration>,
    #[serde(default)]
    transfer: Vec<super::transfer::RawTransfer>,
    retention: Option<RawRetention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    audit: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPilot {
    id: Spanned<String>,
    name: String,
    partners: Vec<Spanned<String>>,
    #[serde(default)]
    consent_recorders: Vec<Spanned<String>>,
    covenant: RawCovenant,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCovenant {
    id: Spanned<String>,
    version: String,
    valid_from: Spanned<Datetime>,
    valid_until: Spanned<Datetime>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    description: String,
    legal_basis: Spanned<String>,
    retention_days: Spanned<i64>,
    #[serde(default)]
    special_categories: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    purpose: Spanned<String>,
    service: Spanned<String>,
    consumers: Vec<Spanned<String>>,
    #[serde(default)]
    response: Vec<Spanned<String>>,
    #[serde(default)]
    request: Vec<Spanned<String>>,
    #[serde(default)]
    transforms: Vec<RawTransform>,
    #[serde(default)]
    consent: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    field: Spanned<String>,
    #[serde(default)]
    generalise: Option<Spanned<String>>,
    #[serde(default)]
    pseudonymise: Option<Spanned<bool>>,
}

fn date(src: &Source, v: &Spanned<Datetime>, what: &str) -> Result<time::Date, ConfigError> {
    let dt = v.get_ref();
    let bad = || src.error(v, format!("{what} must be a date like 2019-03-01"));
    let d = match (dt.date, dt.time, dt.offset) {
        (Some(d), None, None) => d,
        _ => return Err(bad()),
    };
    let month = time::Month::try_from(d.month).map_err(|_| bad())?;
    time::Date::from_calendar_date(d.year as i32, month, d.day).map_err(|_| bad())
}

/// Does a legal basis, as written, allow this special category? Health data
/// needs GDPR art. 9(2) (with the UAVG); criminal data GDPR art. 10 (UAVG
/// art. 33) or the Police Data Act.
pub fn basis_allows(category: Category, legal_basis: &str) -> bool {
    let b = legal_basis.to_lowercase();
    let any = |xs: &[&str]| xs.iter().any(|x| b.contains(x));
    match category {
        Category::Health => any(&["art. 9", "artikel 9", "art.9", "9(2)", "9 lid 2"]),
        Category::Criminal => any(&[
            "art. 10",
            "artikel 10",
            "art.10",
            "uavg art. 33",
            "artikel 33 uavg",
            "wet politiegegevens",
            "wpg",
            "wjsg",
        ]),
        _ => true,
    }
}

impl Pilot {
    /// Validates one pilot file against the partners; `partners_bytes` enters
    /// the version hash, so a change of a service's fields is a new version too.
    pub fn from_source(
        src: &Source,
        partners: &Partners,
        partners_bytes: &[u8],
    ) -> Result<Self, ConfigError> {
        let raw: RawPolicy = src.parse()?;
        let id = pilot_id(src, &raw.pilot.id)?;
        let signed = signed_partners(src, partners, &raw.pilot.partners)?;
        let covenant = covenant(src, &raw.pilot.covenant)?;
        let purposes = compile_purposes(src, &id, &raw.purposes)?;
        let (rules, index) = compile_rules(src, partners, &signed, &purposes, &raw.rules)?;
        let registration = raw
            .registration
            .as_ref()
            .map(|r| Registration::compile(src, r, &signed, |p| purposes.contains_key(p)))
            .transpose()?;
        let transfers = compile_transfers(src, &id, partners, &purposes, &raw.transfer)?;
        let consent_recorders = recorders(src, &signed, &raw.pilot.consent_recorders)?;
        let retention = raw
            .retention
            .as_ref()
            .map(|r| {
                Retention::parse(r.audit.get_ref()).ok_or_else(|| {
                    src.error(
                        &r.audit,
                        "audit retention must be an ISO 8601 duration like \"P5Y\" or \"P2Y6M\"",
                    )
                })
            })
            .transpose()?;
        let id_header = hyper::header::HeaderValue::from_str(&id).map_err(|_| {
            src.error(
                &raw.pilot.id,
                format!("pilot id '{id}' cannot be a header value"),
            )
        })?;
        let mut pilot = Pilot {
            id: id.into(),
            id_header,
            name: raw.pilot.name,
            file: src.file.clone(),
            text: src.text.clone(),
            partners: signed,
            covenant,
            purposes,
            rules,
            registration,
            transfers,
            consent_recorders,
            retention,
            version: version(partners_bytes, src).into(),
            covenant_version: String::new(),
            standing: Default::default(),
            index,
        };
        pilot.covenant_version = super::terms::Terms::of(&pilot).version();
        Ok(pilot)
    }
}

/// The file's sides of transfers, one per other pilot and direction; their
/// fields are checked as a rule's request fields are.
fn compile_transfers(
    src: &Source,
    own: &str,
    partners: &Partners,
    purposes: &BTreeMap<String, Purpose>,
    raw: &[super::transfer::RawTransfer],
) -> Result<Vec<Transfer>, ConfigError> {
    let mut out: Vec<Transfer> = Vec::new();
    for rt in raw {
        let t = Transfer::compile(
            src,
            own,
            partners,
            rt,
            |p| purposes.contains_key(p),
            |svc, pid, list| match purposes.get(pid) {
                Some(purpose) => allowed_fields(src, svc, purpose, list),
                None => Ok(Vec::new()),
            },
        )?;
        if out.iter().any(|o| o.side == t.side) {
            return Err(ConfigError {
                file: src.file.clone(),
                at: t.at,
                reason: format!("two transfers with pilot '{}' in one direction", t.other()),
            });
        }
        out.push(t);
    }
    Ok(out)
}

/// The pilot's id, which must also be the file's name so a pilot is found
/// where people look for it.
fn pilot_id(src: &Source, raw: &Spanned<String>) -> Result<String, ConfigError> {
    let id = raw.get_ref().clone();
    if !valid_id(&id) {
        return Err(src.error(raw, "pilot id must be lowercase letters, digits and '-'"));
    }
    if let Some(stem) = src.file.file_stem().and_then(|s| s.to_str())
        && stem != id
    {
        return Err(src.error(
            raw,
            format!("pilot id '{id}' must match the file name '{stem}.toml'"),
        ));
    }
    Ok(id)
}

/// The partners that record consent: signed the covenant, each once.
fn recorders(
    src: &Source,
    signed: &[String],
    raw: &[Spanned<String>],
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for p in raw {
        if !signed.contains(p.get_ref()) {
            return Err(src.error(
                p,
                format!(
                    "consent recorder '{}' did not sign this pilot's covenant",
                    p.get_ref()
                ),
            ));
        }
        if out.contains(p.get_ref()) {
            return Err(src.error(p, format!("partner '{}' listed twice", p.get_ref())));
        }
        out.push(p.get_ref().clone());
    }
    Ok(out)
}

fn signed_partners(
    src: &Source,
    partners: &Partners,
    raw: &[Spanned<String>],
) -> Result<Vec<String>, ConfigError> {
    let mut signed: Vec<String> = Vec::new();
    for p in raw {
        if partners.get(p.get_ref()).is_none() {
            return Err(src.error(p, format!("unknown partner '{}'", p.get_ref())));
        }
        if signed.contains(p.get_ref()) {
            return Err(src.error(p, format!("partner '{}' listed twice", p.get_ref())));
        }
        signed.push(p.get_ref().clone());
    }
    Ok(signed)
}

fn covenant(src: &Source, c: &RawCovenant) -> Result<Covenant, ConfigError> {
    if c.id.get_ref().trim().is_empty() {
        return Err(src.error(&c.id, "covenant id is empty"));
    }
    let valid_from = date(src, &c.valid_from, "valid_from")?;
    let valid_until = date(src, &c.valid_until, "valid_until")?;
    if valid_until < valid_from {
        return Err(src.error(
            &c.valid_until,
            format!("valid_until {valid_until} is before valid_from {valid_from}"),
        ));
    }
    Ok(Covenant {
        id: c.id.get_ref().clone(),
        version: c.version.clone(),
        valid_from,
        valid_until,
    })
}

fn compile_purposes(
    src: &Source,
    pilot: &str,
    raw: &BTreeMap<String, Spanned<RawPurpose>>,
) -> Result<BTreeMap<String, Purpose>, ConfigError> {
    let mut purposes = BTreeMap::new();
    for (pid, rp) in raw {
        purposes.insert(pid.clone(), compile_purpose(src, pilot, pid, rp)?);
    }
    Ok(purposes)
}

fn compile_purpose(
    src: &Source,
    pilot: &str,
    pid: &str,
    rp: &Spanned<RawPurpose>,
) -> Result<Purpose, ConfigError> {
    let r = rp.get_ref();
    if !valid_id(pid) {
        return Err(src.error(
            rp,
            format!("purpose id '{pid}' must be lowercase letters, digits and '-'"),
        ));
    }
    if r.legal_basis.get_ref().trim().is_empty() {
        return Err(src.error(
            &r.legal_basis,
            format!("purpose '{pid}' has no legal basis"),
        ));
    }
    let days = *r.retention_days.get_ref();
    if !(1..=36500).contains(&days) {
        return Err(src.error(
            &r.retention_days,
            "retention_days must be between 1 and 36500",
        ));
    }
    Ok(Purpose {
        id: pid.to_string(),
        description: r.description.clone(),
        legal_basis: r.legal_basis.get_ref().as_str().into(),
        retention_days: days as u32,
        special_categories: special_categories(src, pid, r)?,
        activities: Activities::of(pilot, pid),
    })
}

/// The purpose's special categories, each one allowed by its legal basis.
fn special_categories(
    src: &Source,
    pid: &str,
    r: &RawPurpose,
) -> Result<BTreeSet<Category>, ConfigError> {
    let mut special = BTreeSet::new();
    for s in &r.special_categories {
        let cat = Category::parse(s.get_ref())
            .filter(|c| c.is_special())
            .ok_or_else(|| {
                src.error(
                    s,
                    format!(
                        "'{}' is not a special category (health, criminal)",
                        s.get_ref()
                    ),
                )
            })?;
        if !basis_allows(cat, r.legal_basis.get_ref()) {
            return Err(src.error(
                s,
                format!(
                    "purpose '{pid}' carries {cat} data, but its legal basis does not cite {}",
                    if cat == Category::Health {
                        "GDPR art. 9(2)"
                    } else {
                        "GDPR art. 10 / UAVG art. 33 or the Wet politiegegevens"
                    }
                ),
            ));
        }
        special.insert(cat);
    }
    Ok(special)
}

/// Rules by the key of [`Pilot::rule_for`] ([`super::model::rule_key`]).
type RuleIndex = HashMap<u64, Vec<usize>>;

/// The rules in file order and their index; two rules for one (consumer,
/// service, purpose) would make the decision depend on the order.
fn compile_rules(
    src: &Source,
    partners: &Partners,
    signed: &[String],
    purposes: &BTreeMap<String, Purpose>,
    raw: &[RawRule],
) -> Result<(Vec<Rule>, RuleIndex), ConfigError> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut index: RuleIndex = HashMap::new();
    let mut ids = BTreeSet::new();
    for rr in raw {
        let rule = compile_rule(src, partners, signed, purposes, rr)?;
        if !ids.insert(rule.id.clone()) {
            return Err(src.error(&rr.id, format!("rule id '{}' is used twice", rule.id)));
        }
        for (consumer, at) in rule.consumers.iter().zip(&rr.consumers) {
            let names = (rule.service.provider.as_str(), rule.service.name.as_str());
            if let Some(other) = find_rule(&index, &rules, consumer, names, &rule.purpose) {
                let other: &Rule = &rules[other];
                return Err(src.error(
                    at,
                    format!(
                        "rule '{}' and rule '{}' both cover ({}, {}, {consumer}): one rule per purpose, service and consumer",
                        rule.id,
                        other.id,
                        rule.purpose,
                        rule.service.qualified()
                    ),
                ));
            }
            index
                .entry(rule_key(
                    consumer,
                    &rule.service.provider,
                    &rule.service.name,
                    &rule.purpose,
                ))
                .or_default()
                .push(rules.len());
        }
        rules.push(rule);
    }
    Ok((rules, index))
}

/// `sha256:<hex>` over partners.toml and the pilot file, with a separator so
/// moving bytes from one to the other changes the version.
fn version(partners_bytes: &[u8], src: &Source) -> String {
    let mut h = Vec::with_capacity(partners_bytes.len() + src.text.len() + 1);
    h.extend_from_slice(partners_bytes);
    h.push(0);
    h.extend_from_slice(src.text.as_bytes());
    format!("sha256:{}", hex::encode(sha256(&h)))
}

fn compile_rule(
    src: &Source,
    partners: &Partners,
    signed: &[String],
    purposes: &BTreeMap<String, Purpose>,
    rr: &RawRule,
) -> Result<Rule, ConfigError> {
    let id = rr.id.get_ref();
    if id.trim().is_empty() || id.contains(char::is_whitespace) {
        return Err(src.error(&rr.id, "rule id must be one word"));
    }
    let purpose = rule_purpose(src, purposes, rr)?;
    let (prov, service) = rule_service(src, partners, signed, rr)?;
    let consumers = rule_consumers(src, partners, signed, prov, rr)?;
    let response = allowed_fields(src, &service, purpose, &rr.response)?;
    let request = allowed_fields(src, &service, purpose, &rr.request)?;
    if response.is_empty() && request.is_empty() {
        return Err(src.error(
            &rr.id,
            format!("rule '{id}' allows no field in either direction"),
        ));
    }
    if service.path.is_none() && !response.is_empty() {
        return Err(src.error(
            &rr.id,
            "a mailbox service answers nothing: leave response empty",
        ));
    }
    let transforms = rule_transforms(src, &service, &response, &request, &rr.transforms)?;
    let consent = match &rr.consent {
        None => false,
        Some(c) if c.get_ref() == "required" => true,
        Some(c) => {
            return Err(src.error(
                c,
                "consent = \"required\" is the one value; leave it out when the flow does not rest on consent",
            ));
        }
    };
    let declared: Vec<FieldPath> = service.fields.iter().map(|(f, _)| f.clone()).collect();
    Ok(Rule {
        id: id.as_str().into(),
        purpose: purpose.id.as_str().into(),
        response_tree: Tree::new(&declared, &response, &transforms),
        request_tree: Tree::new(&declared, &request, &transforms),
        service,
        consumers,
        response,
        request,
        transforms,
        consent,
    })
}

fn rule_purpose<'p>(
    src: &Source,
    purposes: &'p BTreeMap<String, Purpose>,
    rr: &RawRule,
) -> Result<&'p Purpose, ConfigError> {
    purposes.get(rr.purpose.get_ref()).ok_or_else(|| {
        src.error(
            &rr.purpose,
            format!(
                "unknown purpose '{}' (not in [purposes])",
                rr.purpose.get_ref()
            ),
        )
    })
}

/// The rule's provider id and service, offered by a partner that signed.
fn rule_service<'r>(
    src: &Source,
    partners: &Partners,
    signed: &[String],
    rr: &'r RawRule,
) -> Result<(&'r str, Arc<Service>), ConfigError> {
    let (prov, sname) = rr
        .service
        .get_ref()
        .split_once('/')
        .ok_or_else(|| src.error(&rr.service, "service must be written provider/service"))?;
    let provider = partners
        .get(prov)
        .ok_or_else(|| src.error(&rr.service, format!("unknown partner '{prov}'")))?;
    let service = provider
        .service(sname)
        .ok_or_else(|| {
            src.error(
                &rr.service,
                format!("unknown service '{sname}' of partner '{prov}'"),
            )
        })?
        .clone();
    if !signed.iter().any(|s| s == prov) {
        return Err(src.error(
            &rr.service,
            format!("provider '{prov}' did not sign this pilot's covenant"),
        ));
    }
    Ok((prov, service))
}

fn rule_consumers(
    src: &Source,
    partners: &Partners,
    signed: &[String],
    prov: &str,
    rr: &RawRule,
) -> Result<Vec<String>, ConfigError> {
    let mut consumers = Vec::new();
    for c in &rr.consumers {
        let cid = c.get_ref();
        if partners.get(cid).is_none() {
            return Err(src.error(c, format!("unknown partner '{cid}'")));
        }
        if !signed.iter().any(|s| s == cid) {
            return Err(src.error(
                c,
                format!("consumer '{cid}' did not sign this pilot's covenant"),
            ));
        }
        if cid == prov {
            return Err(src.error(c, format!("'{cid}' is the provider itself")));
        }
        if consumers.contains(cid) {
            return Err(src.error(c, format!("consumer '{cid}' listed twice")));
        }
        consumers.push(cid.clone());
    }
    if consumers.is_empty() {
        return Err(src.error(
            &rr.id,
            format!("rule '{}' has no consumers", rr.id.get_ref()),
        ));
    }
    Ok(consumers)
}

/// The fields a rule allows in one direction: declared by the service, and
/// special categories only where the purpose carries them.
fn allowed_fields(
    src: &Source,
    service: &Service,
    purpose: &Purpose,
    list: &[Spanned<String>],
) -> Result<Vec<FieldPath>, ConfigError> {
    let mut out = Vec::new();
    for f in list {
        let p = FieldPath::parse(f.get_ref()).map_err(|e| src.error(f, e))?;
        if !service.knows(&p) {
            return Err(src.error(
                f,
                format!("unknown field '{p}' of service {}", service.qualified()),
            ));
        }
        for cat in service.categories_of(&p) {
            if cat.is_special() && !purpose.special_categories.contains(&cat) {
                return Err(src.error(
                    f,
                    format!(
                        "field '{p}' holds {cat} data, which purpose '{}' does not carry (add it to special_categories, with a legal basis that allows it)",
                        purpose.id
                    ),
                ));
            }
        }
        out.push(p);
    }
    Ok(out)
}

/// Transforms only on declared fields the rule allows, at most one per field.
fn rule_transforms(
    src: &Source,
    service: &Service,
    response: &[FieldPath],
    request: &[FieldPath],
    raw: &[RawTransform],
) -> Result<Vec<(FieldPath, Transform)>, ConfigError> {
    let mut transforms: Vec<(FieldPath, Transform)> = Vec::new();
    for t in raw {
        let p = FieldPath::parse(t.field.get_ref()).map_err(|e| src.error(&t.field, e))?;
        if !service.fields.iter().any(|(f, _)| *f == p) {
            return Err(src.error(
                &t.field,
                format!(
                    "transform on '{p}', which is not a field of {}",
                    service.qualified()
                ),
            ));
        }
        if !response.iter().chain(request).any(|a| a.covers(&p)) {
            return Err(src.error(
                &t.field,
                format!("transform on '{p}', which the rule does not allow"),
            ));
        }
        let tr = transform(src, t)?;
        if transforms.iter().any(|(q, _)| *q == p) {
            return Err(src.error(&t.field, format!("two transforms on '{p}'")));
        }
        transforms.push((p, tr));
    }
    Ok(transforms)
}

fn transform(src: &Source, t: &RawTransform) -> Result<Transform, ConfigError> {
    match (&t.generalise, &t.pseudonymise) {
        (Some(g), None) => match g.get_ref().as_str() {
            "month" => Ok(Transform::Generalise(Granularity::Month)),
            "year" => Ok(Transform::Generalise(Granularity::Year)),
            other => Err(src.error(
                g,
                format!("generalise to '{other}'? use \"month\" or \"year\""),
            )),
        },
        (None, Some(ps)) if *ps.get_ref() => Ok(Transform::Pseudonymise),
        (None, Some(ps)) => Err(src.error(
            ps,
            "pseudonymise = false does nothing; remove the transform",
        )),
        _ => Err(src.error(
            &t.field,
            "a transform has exactly one of generalise or pseudonymise",
        )),
    }
}

impl PolicySet {
    /// Reads partners.toml and every `*.toml` in the pilots folder.
    pub fn load(partners_file: &Path, pilots_dir: &Path) -> Result<Self, ConfigError> {
        let partners_src = Source::read(partners_file)?;
        let partners = Partners::from_source(&partners_src)?;
        Self::load_pilots(Arc::new(partners), partners_src.text.as_bytes(), pilots_dir)
    }

    /// Reads every `*.toml` in a pilots folder against partners already read.
    pub fn load_pilots(
        partners: Arc<Partners>,
        partners_bytes: &[u8],
        pilots_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let dir_err = |reason: String| ConfigError {
            file: pilots_dir.to_path_buf(),
            at: None,
            reason,
        };
        let mut files: Vec<_> = std::fs::read_dir(pilots_dir)
            .map_err(|e| dir_err(format!("cannot read the pilots folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut pilots = BTreeMap::new();
        for f in files {
            let src = Source::read(&f)?;
            let pilot = Pilot::from_source(&src, &partners, partners_bytes)?;
            pilots.insert(pilot.id.to_string(), pilot);
        }
        let set = Self { partners, pilots };
        set.check_transfers()?;
        Ok(set)
    }
}

//! The register of processing activities (GDPR art. 30), machine-readable,
//! from the policy that runs.
//!
//! One activity per pilot, purpose and direction (the caller's request, or
//! the provider's answer), each with a stable URI
//! `urn:ketenpoort:processing-activity:<pilot>:<purpose>:<request|response>`
//! that a record's processing activity can point at, and the policy version
//! beside it, so an activity read from a record names the rules that were in
//! force. Data subjects are named in DPV terms ("immigrant", "non-citizen"),
//! as the Logius draft register API does. The DPIA annex (`crate::dpia`)
//! is the same content for people; this is for the partners' own registers.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::audit::RecordKind;
use crate::audit::export::OWN_ACTIVITY_PREFIX;
use crate::policy::fields::FieldPath;
use crate::policy::service::Service;
use crate::policy::transfer::Side;
use crate::policy::{Direction, Pilot, PolicySet};

pub use crate::policy::{ACTIVITY_PREFIX, activity_id};

/// A category of data an activity processes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DataCategory {
    /// The category's name (`identity`, `health`, …).
    pub category: &'static str,
    /// A special category (GDPR art. 9) or criminal data (art. 10).
    pub special: bool,
}

/// One processing activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// `urn:ketenpoort:processing-activity:<pilot>:<purpose>:<direction>`.
    pub id: String,
    /// Pilot id.
    pub pilot: String,
    /// The covenant's id and version label.
    pub covenant: String,
    /// `sha256:` version of the policy these rules come from.
    pub policy_version: String,
    /// Purpose id.
    pub purpose: String,
    /// The purpose in words.
    pub description: String,
    /// `request` (caller → provider) or `response` (provider → caller).
    pub direction: &'static str,
    /// The legal basis, as the covenant states it.
    pub legal_basis: String,
    /// Categories of data, special ones marked.
    pub data_categories: Vec<DataCategory>,
    /// Whom the data is about, in DPV terms.
    pub data_subjects: Vec<&'static str>,
    /// The fields that may go, with transforms.
    pub fields: Vec<String>,
    /// Who gives the data.
    pub senders: Vec<String>,
    /// Who receives it.
    pub recipients: Vec<String>,
    /// How long records of it are kept, in days.
    pub retention_days: u32,
}

/// The gateway itself, as sender or recipient of what the pilots' partners
/// give to or ask of its own registers.
const GATEWAY: &str = "ketenpoort";

/// Every processing activity of the policy set, ordered by id: the rules'
/// flows, and the gateway's own registers (the LVV registry, consents,
/// transfers between LVVs), so that every record's processing activity is
/// one the register lists; then the gateway's own accountability records
/// (`urn:ketenpoort:processing-activity:ketenpoort:<kind>`).
pub fn activities(set: &PolicySet) -> Vec<Activity> {
    let mut b = Builder::default();
    for pilot in set.pilots.values() {
        for (rule, d, from, to) in pilot.flows() {
            let fields = rule.allowed(d).iter().map(|f| (f, rule.field_label(f)));
            b.add(pilot, &rule.purpose, d, from, to, &rule.service, fields);
        }
        if let Some(reg) = &pilot.registration {
            for r in &reg.registrars {
                b.add_bare(pilot, &reg.purpose, Direction::Request, r, GATEWAY);
            }
            for c in reg.checkers.iter().chain(&reg.figures_readers) {
                b.add_bare(pilot, &reg.purpose, Direction::Response, GATEWAY, c);
            }
        }
        for t in &pilot.transfers {
            if matches!(t.side, Side::To(_)) {
                let senders = pilot.registration.iter().flat_map(|r| &r.registrars);
                for s in senders {
                    let fields = t.request.iter().map(|f| (f, f.to_string()));
                    let to = t.service.provider.as_str();
                    b.add(
                        pilot,
                        &t.purpose,
                        Direction::Request,
                        s,
                        to,
                        &t.service,
                        fields,
                    );
                }
            }
        }
        for rule in pilot.rules.iter().filter(|r| r.consent) {
            for r in &pilot.consent_recorders {
                b.add_bare(pilot, &rule.purpose, Direction::Request, r, GATEWAY);
                b.add_bare(pilot, &rule.purpose, Direction::Response, GATEWAY, r);
            }
        }
    }
    let mut v = b.finish();
    v.extend(own_activities());
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// Activities keyed by id while they are gathered.
#[derive(Default)]
struct Builder(BTreeMap<String, Activity>);

impl Builder {
    /// The activity of (pilot, purpose, direction), made on first use; none
    /// when the pilot does not declare the purpose (load refuses that).
    fn get(&mut self, pilot: &Pilot, purpose: &str, d: Direction) -> Option<&mut Activity> {
        let p = pilot.purposes.get(purpose)?;
        let id = activity_id(&pilot.id, purpose, d);
        Some(self.0.entry(id.clone()).or_insert_with(|| Activity {
            id,
            pilot: pilot.id.to_string(),
            covenant: format!("{} {}", pilot.covenant.id, pilot.covenant.version),
            policy_version: pilot.version.to_string(),
            purpose: purpose.to_string(),
            description: p.description.clone(),
            direction: d.as_str(),
            legal_basis: p.legal_basis.to_string(),
            data_categories: Vec::new(),
            data_subjects: vec!["immigrant", "non-citizen"],
            fields: Vec::new(),
            senders: Vec::new(),
            recipients: Vec::new(),
            retention_days: p.retention_days,
        }))
    }

    /// A flow of declared fields of `service` from `from` to `to`.
    #[allow(clippy::too_many_arguments)] // one flow, named whole
    fn add<'f>(
        &mut self,
        pilot: &Pilot,
        purpose: &str,
        d: Direction,
        from: &str,
        to: &str,
        service: &Service,
        fields: impl Iterator<Item = (&'f FieldPath, String)>,
    ) {
        let Some(a) = self.get(pilot, purpose, d) else {
            return;
        };
        for (f, label) in fields {
            for c in service.categories_of(f) {
                let dc = DataCategory {
                    category: c.as_str(),
                    special: c.is_special(),
                };
                if !a.data_categories.contains(&dc) {
                    a.data_categories.push(dc);
                }
            }
            let label = format!("{}: {label}", service.qualified());
            if !a.fields.contains(&label) {
                a.fields.push(label);
            }
        }
        party(a, from, to);
    }

    /// A flow to or from one of the gateway's own registers: keyed
    /// pseudonyms, pilots and dates, no declared fields.
    fn add_bare(&mut self, pilot: &Pilot, purpose: &str, d: Direction, from: &str, to: &str) {
        if let Some(a) = self.get(pilot, purpose, d) {
            party(a, from, to);
        }
    }

    fn finish(self) -> Vec<Activity> {
        let mut v: Vec<Activity> = self.0.into_values().collect();
        for a in &mut v {
            a.data_categories.sort();
            a.fields.sort();
            a.senders.sort();
            a.recipients.sort();
        }
        v
    }
}

fn party(a: &mut Activity, from: &str, to: &str) {
    for (list, who) in [(&mut a.senders, from), (&mut a.recipients, to)] {
        if !list.iter().any(|x| x == who) {
            list.push(who.to_string());
        }
    }
}

/// The gateway's own processing: the records it keeps to account for what
/// it did (refusals before any rule applied, look-ups, covenant and policy
/// steps, expiries, retention). Their legal basis is the controllers'
/// accountability (GDPR art. 5(2) and 30); records of a look-up or a
/// refusal may concern a person, the covenant's steps concern none.
fn own_activities() -> Vec<Activity> {
    RecordKind::ALL
        .iter()
        .map(|k| {
            let (description, about_people) = match k {
                RecordKind::Exchange => (
                    "requests refused before any rule applied, and the partners' own reads of the log",
                    true,
                ),
                RecordKind::Lookup => ("privacy officers' look-ups and art. 15 reports", true),
                RecordKind::PolicyChange => ("changes to a pilot's rules", false),
                RecordKind::MailboxExpiry => ("mailbox documents deleted unread", true),
                RecordKind::CovenantProposal => ("covenant versions proposed or withdrawn", false),
                RecordKind::CovenantSignature => ("covenant versions signed or revoked", false),
                RecordKind::CovenantInForce => ("covenant versions taking effect", false),
                RecordKind::Retention => ("subject keys destroyed after retention", false),
            };
            Activity {
                id: format!("{OWN_ACTIVITY_PREFIX}{}", k.as_str()),
                pilot: GATEWAY.into(),
                covenant: String::new(),
                policy_version: String::new(),
                purpose: k.as_str().into(),
                description: description.into(),
                direction: "record",
                legal_basis: "GDPR art. 5(2) and 30: the controllers' accountability".into(),
                data_categories: Vec::new(),
                data_subjects: if about_people {
                    vec!["immigrant", "non-citizen"]
                } else {
                    Vec::new()
                },
                fields: Vec::new(),
                senders: Vec::new(),
                recipients: vec![GATEWAY.into()],
                retention_days: 0,
            }
        })
        .collect()
}

/// The register as Markdown, for people.
pub fn markdown(activities: &[Activity]) -> String {
    let mut s = String::from("# Register of processing activities (GDPR art. 30)\n\n");
    for a in activities {
        let cats: Vec<String> = a
            .data_categories
            .iter()
            .map(|c| {
                if c.special {
                    format!("**{}** (special)", c.category)
                } else {
                    c.category.to_string()
                }
            })
            .collect();
        let _ = write!(
            s,
            "## `{}`\n\n- pilot: {} (covenant {}, policy {})\n- purpose: {}: {}\n- direction: {}\n- legal basis: {}\n- data categories: {}\n- data subjects: {}\n- from: {}\n- to: {}\n- retention: {} days\n\n",
            a.id,
            a.pilot,
            a.covenant,
            a.policy_version,
            a.purpose,
            a.description,
            a.direction,
            a.legal_basis,
            cats.join(", "),
            a.data_subjects.join(", "),
            a.senders.join(", "),
            a.recipients.join(", "),
            a.retention_days
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_shipped_policy_gives_one_activity_per_pilot_purpose_and_direction() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let set = PolicySet::load(
            &root.join("config/partners.toml"),
            &root.join("config/pilots"),
        )
        .unwrap();
        let acts = activities(&set);
        let mut expected = BTreeSet::new();
        for p in set.pilots.values() {
            for (rule, d, _, _) in p.flows() {
                expected.insert(activity_id(&p.id, &rule.purpose, d));
            }
        }
        for p in set.pilots.values() {
            if let Some(reg) = &p.registration {
                for d in [Direction::Request, Direction::Response] {
                    expected.insert(activity_id(&p.id, &reg.purpose, d));
                }
            }
            for t in p.transfers.iter().filter(|t| matches!(t.side, Side::To(_))) {
                expected.insert(activity_id(&p.id, &t.purpose, Direction::Request));
            }
        }
        for k in RecordKind::ALL {
            expected.insert(format!("{OWN_ACTIVITY_PREFIX}{}", k.as_str()));
        }
        let ids: BTreeSet<String> = acts.iter().map(|a| a.id.clone()).collect();
        assert_eq!(ids, expected);
        assert_eq!(ids.len(), acts.len(), "one activity per id");
        let med = acts
            .iter()
            .find(|a| a.id == "urn:ketenpoort:processing-activity:utrecht:medisch:response")
            .unwrap();
        assert!(
            med.data_categories
                .iter()
                .any(|c| c.special && c.category == "health")
        );
        assert!(med.legal_basis.contains("9(2)"));
        assert!(!med.recipients.is_empty() && !med.senders.is_empty());
        assert_eq!(med.policy_version, set.pilots["utrecht"].version);
    }
}

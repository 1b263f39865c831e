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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use crate::policy::PolicySet;
use crate::policy::fields::Category;

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

/// Every processing activity of the policy set, ordered by id.
pub fn activities(set: &PolicySet) -> Vec<Activity> {
    let mut out: BTreeMap<String, Activity> = BTreeMap::new();
    for pilot in set.pilots.values() {
        for (rule, d, from, to) in pilot.flows() {
            let id = activity_id(&pilot.id, &rule.purpose, d);
            let Some(purpose) = pilot.purposes.get(&rule.purpose) else {
                continue;
            };
            let a = out.entry(id.clone()).or_insert_with(|| Activity {
                id,
                pilot: pilot.id.clone(),
                covenant: format!("{} {}", pilot.covenant.id, pilot.covenant.version),
                policy_version: pilot.version.clone(),
                purpose: rule.purpose.clone(),
                description: purpose.description.clone(),
                direction: d.as_str(),
                legal_basis: purpose.legal_basis.clone(),
                data_categories: Vec::new(),
                data_subjects: vec!["immigrant", "non-citizen"],
                fields: Vec::new(),
                senders: Vec::new(),
                recipients: Vec::new(),
                retention_days: purpose.retention_days,
            });
            let cats: BTreeSet<Category> = rule
                .allowed(d)
                .iter()
                .flat_map(|p| rule.service.categories_of(p))
                .collect();
            for c in cats {
                let dc = DataCategory {
                    category: c.as_str(),
                    special: c.is_special(),
                };
                if !a.data_categories.contains(&dc) {
                    a.data_categories.push(dc);
                }
            }
            for f in rule.allowed(d) {
                let label = format!("{}: {}", rule.service.qualified(), rule.field_label(f));
                if !a.fields.contains(&label) {
                    a.fields.push(label);
                }
            }
            for (list, who) in [(&mut a.senders, from), (&mut a.recipients, to)] {
                if !list.iter().any(|x| x == who) {
                    list.push(who.to_string());
                }
            }
        }
    }
    let mut v: Vec<Activity> = out.into_values().collect();
    for a in &mut v {
        a.data_categories.sort();
        a.fields.sort();
        a.senders.sort();
        a.recipients.sort();
    }
    v
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
        let ids: BTreeSet<String> = acts.iter().map(|a| a.id.clone()).collect();
        assert_eq!(ids, expected);
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

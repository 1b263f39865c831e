//! Does a new covenant version narrow or widen the one in force, and whose
//! signatures does it need?
//!
//! Less data needs nobody's consent; more data needs the consent of both ends
//! of every flow that gains. The comparison is on flows ([`super::diff`]) with
//! each allowed path expanded to the declared fields it lets through, labelled
//! with their category and transform: a field declared anew under an allowed
//! parent, a field moved to another category, or a transform taken away all
//! count as a gain. Beside the flows, a purpose whose legal basis or
//! description changed, that keeps data longer or carries a new special
//! category, and a validity that starts earlier or ends later widen every
//! flow of that purpose (or of the pilot). Changes that touch no flow (a
//! comment, a name, a partner listed without a rule) neither narrow nor widen.

use std::collections::{BTreeMap, BTreeSet};

use super::diff::Flow;
use super::model::Pilot;

/// One flow that a new version opens or widens, and what it gains, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widened {
    /// The flow.
    pub flow: Flow,
    /// What it gains (fields, or what changed of its purpose or validity).
    pub gained: Vec<String>,
}

/// How a new version compares to the one in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessment {
    /// Flows that appear or carry more.
    pub widened: Vec<Widened>,
    /// Whether anything is taken away (a flow, a field, a purpose, days of validity).
    pub narrows: bool,
}

impl Assessment {
    /// The partners whose acceptance the new version needs: both ends of
    /// every widened flow (with several consumers on a rule, each of them and
    /// the provider).
    pub fn required(&self) -> BTreeSet<String> {
        self.widened
            .iter()
            .flat_map(|w| [w.flow.from.clone(), w.flow.to.clone()])
            .collect()
    }

    /// The widened flows that need this partner, in words.
    pub fn flows_of(&self, partner: &str) -> Vec<String> {
        self.widened
            .iter()
            .filter(|w| w.flow.from == partner || w.flow.to == partner)
            .map(|w| format!("{}: {}", w.flow, w.gained.join(", ")))
            .collect()
    }
}

/// Every flow of one pilot with the declared fields it lets through, each
/// `path [category]` or `path [category] (transform)`.
pub fn expanded_flows(pilot: &Pilot) -> BTreeMap<Flow, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (rule, d, from, to) in pilot.flows() {
        let mut fields = BTreeSet::new();
        for allowed in rule.allowed(d) {
            for (f, cat) in rule.service.fields_under(allowed) {
                fields.insert(match rule.transform_of(f) {
                    Some(t) => format!("{f} [{}] ({t})", cat.as_str()),
                    None => format!("{f} [{}]", cat.as_str()),
                });
            }
        }
        out.insert(
            Flow {
                pilot: pilot.id.to_string(),
                purpose: rule.purpose.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                service: rule.service.qualified().to_string(),
                direction: d,
            },
            fields,
        );
    }
    out
}

/// The partners that give or receive in some flow of the pilot.
pub fn partners_in_flows(pilot: &Pilot) -> BTreeSet<String> {
    pilot
        .flows()
        .flat_map(|(_, _, from, to)| [from.to_string(), to.to_string()])
        .collect()
}

/// What changed about a purpose, split in what widens and whether it narrows.
fn purpose_changes(old: &Pilot, new: &Pilot, narrows: &mut bool) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, o) in &old.purposes {
        let Some(n) = new.purposes.get(id) else {
            *narrows = true;
            continue;
        };
        let mut gains = Vec::new();
        if n.legal_basis != o.legal_basis {
            gains.push(format!("legal basis of '{id}' changed"));
        }
        if n.description != o.description {
            gains.push(format!("description of '{id}' changed"));
        }
        if n.retention_days > o.retention_days {
            gains.push(format!(
                "'{id}' kept {} days instead of {}",
                n.retention_days, o.retention_days
            ));
        } else if n.retention_days < o.retention_days {
            *narrows = true;
        }
        for c in n.special_categories.difference(&o.special_categories) {
            gains.push(format!("'{id}' carries {c} data"));
        }
        if o.special_categories
            .difference(&n.special_categories)
            .count()
            > 0
        {
            *narrows = true;
        }
        if !gains.is_empty() {
            out.insert(id.clone(), gains);
        }
    }
    out
}

/// Compares a new version with the one in force (`None`: nothing is, so
/// every flow is new).
pub fn assess(old: Option<&Pilot>, new: &Pilot) -> Assessment {
    let new_flows = expanded_flows(new);
    let Some(old) = old else {
        return Assessment {
            widened: new_flows
                .into_iter()
                .map(|(flow, fields)| Widened {
                    flow,
                    gained: fields.into_iter().collect(),
                })
                .collect(),
            narrows: false,
        };
    };
    let old_flows = expanded_flows(old);
    let mut narrows = old_flows.iter().any(|(f, fields)| {
        new_flows
            .get(f)
            .is_none_or(|n| fields.difference(n).next().is_some())
    });
    let purposes = purpose_changes(old, new, &mut narrows);
    let (oc, nc) = (&old.covenant, &new.covenant);
    let mut validity = Vec::new();
    if nc.valid_from < oc.valid_from {
        validity.push(format!(
            "valid from {} instead of {}",
            nc.valid_from, oc.valid_from
        ));
    }
    if nc.valid_until > oc.valid_until {
        validity.push(format!(
            "valid until {} instead of {}",
            nc.valid_until, oc.valid_until
        ));
    }
    if nc.valid_from > oc.valid_from || nc.valid_until < oc.valid_until {
        narrows = true;
    }
    let mut widened = Vec::new();
    for (flow, fields) in new_flows {
        let mut gained: Vec<String> = match old_flows.get(&flow) {
            None => fields.into_iter().collect(),
            Some(o) => fields.difference(o).cloned().collect(),
        };
        gained.extend(purposes.get(&flow.purpose).into_iter().flatten().cloned());
        gained.extend(validity.iter().cloned());
        if !gained.is_empty() {
            widened.push(Widened { flow, gained });
        }
    }
    Assessment { widened, narrows }
}

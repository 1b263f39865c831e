//! The flows a policy set allows (who gives what to whom, for which purpose),
//! and the difference between two sets: what an administrator must see before
//! a covenant change goes live.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::model::{Direction, PolicySet};

/// One flow: from one partner to another, through one service, for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    /// Pilot id.
    pub pilot: String,
    /// Purpose id.
    pub purpose: String,
    /// Who gives the data.
    pub from: String,
    /// Who receives it.
    pub to: String,
    /// `provider/service`.
    pub service: String,
    /// Request (consumer → provider) or response (provider → consumer).
    pub direction: Direction,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {} → {} via {} ({})",
            self.pilot,
            self.purpose,
            self.from,
            self.to,
            self.service,
            self.direction.as_str()
        )
    }
}

/// Every flow of a policy set with the fields it carries (`path` or
/// `path (transform)`).
pub fn flows(set: &PolicySet) -> BTreeMap<Flow, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for pilot in set.pilots.values() {
        for (rule, d, from, to) in pilot.flows() {
            let fields = rule
                .allowed(d)
                .iter()
                .map(|p| rule.field_label(p))
                .collect();
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
    }
    out
}

/// How one flow differs between two sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Only in the new set, with its fields.
    Added(Flow, BTreeSet<String>),
    /// Only in the old set, with its fields.
    Removed(Flow, BTreeSet<String>),
    /// In both, with fields gained and lost.
    Changed {
        /// The flow.
        flow: Flow,
        /// Fields only the new set lets through.
        gained: BTreeSet<String>,
        /// Fields only the old set let through.
        lost: BTreeSet<String>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        match self {
            Change::Added(flow, fields) => write!(f, "+ {flow}: {}", join(fields)),
            Change::Removed(flow, fields) => write!(f, "- {flow}: {}", join(fields)),
            Change::Changed { flow, gained, lost } => {
                write!(f, "~ {flow}:")?;
                for g in gained {
                    write!(f, " +{g}")?;
                }
                for l in lost {
                    write!(f, " -{l}")?;
                }
                Ok(())
            }
        }
    }
}

/// The flows that appear, disappear or change from `old` to `new`.
pub fn diff(old: &PolicySet, new: &PolicySet) -> Vec<Change> {
    diff_flows(&flows(old), &flows(new))
}

/// The same, on flow maps already computed.
pub fn diff_flows(
    a: &BTreeMap<Flow, BTreeSet<String>>,
    b: &BTreeMap<Flow, BTreeSet<String>>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (flow, fa) in a {
        match b.get(flow) {
            None => out.push(Change::Removed(flow.clone(), fa.clone())),
            Some(fb) if fa != fb => out.push(Change::Changed {
                flow: flow.clone(),
                gained: fb.difference(fa).cloned().collect(),
                lost: fa.difference(fb).cloned().collect(),
            }),
            Some(_) => {}
        }
    }
    for (flow, fb) in b {
        if !a.contains_key(flow) {
            out.push(Change::Added(flow.clone(), fb.clone()));
        }
    }
    out
}

//! What partners, officers and tools are shown of a covenant: the version in
//! force and its signers, the pending versions with who signed and who must
//! still sign (and for which flows), and one version's text with its flows in
//! words. Read from the [`Store`] alone, so the CLI and the DPIA annex show
//! the same as the running gateway without one.

use serde_json::{Value, json};

use super::state::{PilotState, Status};
use super::store::Store;
use crate::policy::diff;
use crate::policy::terms::{Terms, version_hex};
use crate::policy::widen::{self, Assessment};
use crate::policy::{Pilot, PolicySet};

/// The policy a pilot had at one version: the file on disk when it is that
/// version, or the version rebuilt from its kept terms.
pub fn build(
    store: &dyn Store,
    on_disk: &PolicySet,
    partners_bytes: &[u8],
    pilot: &str,
    version: &str,
) -> Result<Pilot, String> {
    let disk = on_disk.pilots.get(pilot);
    if let Some(p) = disk.filter(|p| p.covenant_version == version) {
        return Ok(p.clone());
    }
    let terms = store
        .terms(pilot, version)
        .map_err(|e| format!("covenant terms: {e}"))?
        .ok_or_else(|| format!("the text of {version} is not kept"))?;
    let file = disk.map_or_else(|| format!("{pilot}.toml").into(), |p| p.file.clone());
    Pilot::from_terms(file, &terms, &on_disk.partners, partners_bytes).map_err(|e| e.to_string())
}

/// How a pending version compares with the version in force.
pub fn assess_against_in_force(
    store: &dyn Store,
    on_disk: &PolicySet,
    partners_bytes: &[u8],
    pilot: &str,
    state: &PilotState,
    version: &str,
) -> Result<Assessment, String> {
    let current = match &state.in_force {
        Some(v) => Some(build(store, on_disk, partners_bytes, pilot, v)?),
        None => None,
    };
    let new = build(store, on_disk, partners_bytes, pilot, version)?;
    Ok(widen::assess(current.as_ref(), &new))
}

fn signers(state: &PilotState, version: &str) -> Vec<Value> {
    state
        .accepted(version)
        .into_iter()
        .map(|(p, t)| json!({"partner": p, "time": t}))
        .collect()
}

/// `GET /v1/pilots/{pilot}/covenant`, `covenant status` and the console.
pub fn status(
    store: &dyn Store,
    on_disk: &PolicySet,
    partners_bytes: &[u8],
    pilot: &str,
) -> Result<Value, String> {
    let state = store
        .load(pilot)
        .map_err(|e| format!("covenant state: {e}"))?
        .unwrap_or_default();
    let in_force = state.in_force.as_ref().map(|v| {
        let e = state.entry(v);
        json!({
            "version": v,
            "since": e.and_then(|e| e.took_effect.clone()),
            "basis": e.and_then(|e| e.basis.clone()),
            "signers": signers(&state, v),
            "revoked": state.revoked.iter().map(|(p, t)| json!({"partner": p, "time": t})).collect::<Vec<_>>(),
        })
    });
    let mut pending = Vec::new();
    for v in state.pending_newest_first() {
        let signed = signers(&state, &v);
        let accepted = state.accepted(&v);
        let entry = match assess_against_in_force(store, on_disk, partners_bytes, pilot, &state, &v)
        {
            Ok(a) => {
                let waiting: Vec<String> = a
                    .required()
                    .into_iter()
                    .filter(|p| !accepted.contains_key(p))
                    .collect();
                let flows: serde_json::Map<String, Value> = waiting
                    .iter()
                    .map(|p| (p.clone(), json!(a.flows_of(p))))
                    .collect();
                json!({"version": v, "signed": signed, "waiting_for": waiting,
                       "flows": flows, "narrows": a.narrows})
            }
            Err(e) => json!({"version": v, "signed": signed, "error": e}),
        };
        pending.push(entry);
    }
    let versions: Vec<Value> = state
        .versions
        .iter()
        .rev()
        .map(|v| {
            json!({"version": v.version, "status": status_word(v.status), "proposed": v.proposed,
                   "took_effect": v.took_effect, "basis": v.basis})
        })
        .collect();
    let signatures: Vec<Value> = state
        .signatures
        .iter()
        .rev()
        .map(|s| {
            json!({"version": s.version, "partner": s.partner, "decision": s.decision.as_str(),
                   "time": s.time, "record": s.record})
        })
        .collect();
    Ok(json!({
        "pilot": pilot,
        "in_force": in_force,
        "file_version": on_disk.pilots.get(pilot).map(|p| p.covenant_version.clone()),
        "pending": pending,
        "versions": versions,
        "signatures": signatures,
    }))
}

/// The word for a status, as the API shows it.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::InForce => "in-force",
        Status::Superseded => "superseded",
        Status::Withdrawn => "withdrawn",
    }
}

/// `GET /v1/pilots/{pilot}/covenant/versions/{version}`: the text a partner
/// is asked to sign, and its flows in words. `None` when the version is not
/// known.
pub fn version(
    store: &dyn Store,
    on_disk: &PolicySet,
    partners_bytes: &[u8],
    pilot: &str,
    version: &str,
) -> Result<Option<Value>, String> {
    let state = store
        .load(pilot)
        .map_err(|e| format!("covenant state: {e}"))?
        .unwrap_or_default();
    let on_disk_now = on_disk
        .pilots
        .get(pilot)
        .filter(|p| p.covenant_version == version);
    let terms = match on_disk_now {
        Some(p) => Terms::of(p),
        None => match store.terms(pilot, version).map_err(|e| e.to_string())? {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    let built = build(store, on_disk, partners_bytes, pilot, version);
    let flows: Vec<String> = match &built {
        Ok(p) => {
            let one = PolicySet {
                partners: on_disk.partners.clone(),
                pilots: [(p.id.to_string(), p.clone())].into(),
            };
            diff::flows(&one)
                .into_iter()
                .map(|(f, fields)| {
                    format!("{f}: {}", fields.into_iter().collect::<Vec<_>>().join(", "))
                })
                .collect()
        }
        Err(_) => Vec::new(),
    };
    Ok(Some(json!({
        "pilot": pilot,
        "version": version,
        "hex": version_hex(version),
        "status": state.entry(version).map(|e| status_word(e.status)),
        "signers": signers(&state, version),
        "text": terms.text(),
        "flows": flows,
    })))
}

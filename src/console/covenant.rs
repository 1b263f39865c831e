//! The covenant in the console: an administrator's change that widens waits
//! for the partners' signatures ("waiting for: dtv, ind", with the flows that
//! need them); a pending version can be withdrawn, which puts the file back
//! to the version in force; officers and administrators see who signed what.

use std::sync::Arc;

use hyper::Response;
use serde_json::{Value, json};

use super::reply::{forbidden, json_ok};
use super::users::User;
use crate::covenant::view;
use crate::gateway::{Body, Gateway};
use crate::policy::terms::version_from_hex;
use crate::problem;

/// The covenant status of a pilot, as the partner API shows it, or `None`
/// when it cannot be read.
pub fn status_of(gw: &Gateway, pilot: &str) -> Option<Value> {
    let snap = gw.policy.current();
    view::status(
        gw.covenants.store(),
        &snap.on_disk,
        &snap.partners_bytes,
        pilot,
    )
    .ok()
}

/// What an applied change means for the covenant: in force now, or waiting
/// for whose signatures on which flows.
pub fn after_change(gw: &Gateway, pilot: &str, version: &str) -> Value {
    let running = gw
        .policy
        .current()
        .policy
        .pilots
        .get(pilot)
        .map(|p| p.covenant_version.clone());
    if running.as_deref() == Some(version) {
        return json!({"version": version, "in_force": true});
    }
    let pending = status_of(gw, pilot).and_then(|s| {
        s["pending"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["version"] == version)
            .cloned()
    });
    let waiting: Vec<String> = pending
        .as_ref()
        .and_then(|p| p["waiting_for"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    json!({
        "version": version,
        "in_force": false,
        "waiting_for": waiting,
        "message": format!("waiting for: {}", waiting.join(", ")),
        "flows": pending.map_or(Value::Null, |p| p["flows"].clone()),
    })
}

/// `GET /api/v1/pilots/{pilot}/covenant`.
pub async fn status(gw: &Arc<Gateway>, pilot: &str) -> Response<Body> {
    if !crate::config::valid_id(pilot) {
        return problem::respond(problem::UNKNOWN_PILOT, "no such pilot");
    }
    let gw2 = gw.clone();
    let pilot = pilot.to_string();
    match tokio::task::spawn_blocking(move || status_of(&gw2, &pilot)).await {
        Ok(Some(v)) => json_ok(&v),
        _ => problem::respond(problem::INTERNAL, "the covenant state cannot be read"),
    }
}

/// `DELETE /api/v1/pilots/{pilot}/covenant/versions/{version}`: withdraws a
/// pending version; when the file holds it, the file goes back to the text
/// of the version in force.
pub async fn withdraw(gw: &Arc<Gateway>, user: &User, pilot: &str, hex: &str) -> Response<Body> {
    if let Err(why) = user.may_edit(pilot) {
        return forbidden(why).response();
    }
    let Some(version) = version_from_hex(hex) else {
        return problem::respond(problem::UNKNOWN_VERSION, "a version is 64 hex digits");
    };
    let gw2 = gw.clone();
    let by = format!("console:{}", user.name);
    let (p, v) = (pilot.to_string(), version.clone());
    let done = tokio::task::spawn_blocking(move || -> Result<u64, (problem::Kind, String)> {
        let record = gw2
            .covenants
            .withdraw(&p, &v, &by)
            .map_err(|e| (e.kind(), e.to_string()))?;
        restore_file(&gw2, &p, &v).map_err(|e| (problem::INTERNAL, e))?;
        Ok(record)
    })
    .await;
    match done {
        Ok(Ok(record)) => {
            gw.reload_policy().await;
            json_ok(
                &json!({"pilot": pilot, "version": version, "withdrawn": true, "record": record}),
            )
        }
        Ok(Err((kind, detail))) => problem::respond(kind, detail),
        Err(_) => problem::respond(problem::INTERNAL, "the withdrawal was not handled"),
    }
}

/// Puts the pilot file back to the text of the version in force when it
/// holds the withdrawn one. Blocking.
fn restore_file(gw: &Gateway, pilot: &str, withdrawn: &str) -> Result<(), String> {
    let snap = gw.policy.current();
    let on_disk = snap.on_disk.pilots.get(pilot);
    if on_disk.is_none_or(|p| p.covenant_version != withdrawn) {
        return Ok(());
    }
    let Some(running) = snap
        .policy
        .pilots
        .get(pilot)
        .filter(|p| !p.standing.unsigned)
    else {
        return Ok(());
    };
    let file = gw.config.pilots_dir.join(format!("{pilot}.toml"));
    crate::datadir::write_atomic(&file, running.text.as_bytes(), 0o644)
        .map_err(|e| format!("the policy file could not be restored: {e}"))
}

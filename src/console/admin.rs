//! Policy administration in the console: read a pilot's covenant, try a rule
//! on a sample document, change the file safely, and see its history.
//!
//! A new file is validated exactly as at load; a dry run shows the flows that
//! would appear or disappear; applying writes the file atomically, keeps the
//! previous version, swaps the running policy, and records the change (who,
//! when, old and new version) in the audit log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::info;

use super::reply::{forbidden, json_ok, respond};
use super::users::User;
use crate::audit::{Decision, Entry, RecordKind};
use crate::config::Source;
use crate::policy::diff::{self, Change};
use crate::policy::{Pilot, PolicySet};
use crate::problem::{self, Problem};

use crate::gateway::{Body, Gateway};
use hyper::{Response, StatusCode};

/// One stored version of a pilot's policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Version {
    time: String,
    by: String,
    version: String,
    text: String,
}

fn history_dir(gw: &Gateway, pilot: &str) -> PathBuf {
    gw.config.data_dir.join("policy-history").join(pilot)
}

fn read_history(dir: &Path) -> Vec<Version> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| {
            std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        })
        .collect()
}

fn now() -> (i64, String) {
    let m = crate::audit::record::now_micros();
    (m, crate::audit::record::format_micros(m))
}

fn save_version(dir: &Path, v: &Version, micros: i64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?;
    crate::datadir::write_atomic(&dir.join(format!("{micros:020}.json")), &bytes, 0o600)
        .map_err(std::io::Error::other)
}

/// The flows of one pilot alone, for diffs.
fn only(set: &PolicySet, pilot: &Pilot) -> PolicySet {
    PolicySet {
        partners: set.partners.clone(),
        pilots: [(pilot.id.to_string(), pilot.clone())].into(),
    }
}

fn changes_text(changes: &[Change]) -> Vec<String> {
    changes.iter().map(|c| c.to_string()).collect()
}

fn may_edit(user: &User, pilot: &str) -> Result<(), Problem> {
    user.may_edit(pilot).map_err(forbidden)
}

/// `GET /api/v1/pilots`.
pub fn pilots(gw: &Gateway, user: &User) -> Response<Body> {
    let snap = gw.policy.current();
    // Where each pilot's audit retention stands: the oldest month the log
    // still links to people, and the day that month's key goes.
    let status = gw
        .audit
        .retention_status(&crate::admin::retentions(&snap.policy));
    let list: Vec<Value> = snap
        .policy
        .pilots
        .values()
        .map(|p| {
            let st = status.iter().find(|s| s.pilot == p.id);
            json!({
                "id": p.id, "name": p.name, "version": p.version, "rules": p.rules.len(),
                "covenant": {"id": p.covenant.id, "version": p.covenant.version,
                             "valid_from": p.covenant.valid_from.to_string(), "valid_until": p.covenant.valid_until.to_string()},
                "editable": may_edit(user, &p.id).is_ok(),
                "consent_rules": p.rules.iter().filter(|r| r.consent).map(|r| r.id.clone()).collect::<Vec<_>>(),
                "retention": {
                    "audit": p.retention.map(|r| r.to_string()),
                    "oldest_linkable": st.and_then(|s| s.oldest_linkable.clone()),
                    "next_destruction": st.and_then(|s| s.next_destruction).map(|d| d.to_string()),
                },
            })
        })
        .collect();
    json_ok(&json!({"pilots": list}))
}

/// `GET /api/v1/pilots/{pilot}/policy`.
pub async fn policy(gw: &Gateway, pilot: &str) -> Response<Body> {
    let snap = gw.policy.current();
    let Some(p) = snap.policy.pilots.get(pilot) else {
        return problem::respond(problem::UNKNOWN_PILOT, "no such pilot");
    };
    let dir = history_dir(gw, pilot);
    let history = tokio::task::spawn_blocking(move || read_history(&dir))
        .await
        .unwrap_or_default();
    let last = history.last().map(|v| json!({"time": v.time, "by": v.by}));
    let rules: Vec<Value> = p
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "purpose": r.purpose, "service": r.service.qualified(), "consumers": r.consumers,
                "response": r.response.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                "request": r.request.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                "transforms": r.transforms.iter().map(|(f, t)| format!("{f}: {t}")).collect::<Vec<_>>(),
                "consent": r.consent,
            })
        })
        .collect();
    let purposes: Vec<Value> = p
        .purposes
        .values()
        .map(|u| {
            json!({"id": u.id, "description": u.description, "legal_basis": u.legal_basis, "retention_days": u.retention_days,
                   "special_categories": u.special_categories.iter().map(|c| c.as_str()).collect::<Vec<_>>()})
        })
        .collect();
    // The file as it is on disk: it may hold a proposal that waits for
    // signatures while an older version runs (the rules below).
    let file = snap
        .on_disk
        .pilots
        .get(pilot)
        .map_or(p.text.as_str(), |d| d.text.as_str());
    json_ok(&json!({
        "id": p.id, "name": p.name, "version": p.version, "file": file,
        "covenant_version": p.covenant_version,
        "partners": p.partners, "purposes": purposes, "rules": rules,
        "last_changed": last,
    }))
}

/// Body of an explain request.
#[derive(Debug, Deserialize)]
struct ExplainRequest {
    from: String,
    to: String,
    service: String,
    purpose: String,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    document: Option<Value>,
}

/// `POST /api/v1/pilots/{pilot}/policy/explain`.
pub fn explain(gw: &Gateway, pilot: &str, body: &[u8]) -> Response<Body> {
    let req: ExplainRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return problem::respond(
                problem::MALFORMED_JSON,
                format!("expected {{from, to, service, purpose, document?}}: {e}"),
            );
        }
    };
    let today = match &req.date {
        Some(d) => match time::Date::parse(
            d,
            &time::macros::format_description!("[year]-[month]-[day]"),
        ) {
            Ok(d) => d,
            Err(_) => return problem::respond(problem::BAD_QUERY, "date is YYYY-MM-DD"),
        },
        None => time::OffsetDateTime::now_utc().date(),
    };
    let snap = gw.policy.current();
    match crate::policy::explain::explain(
        &snap,
        pilot,
        &req.from,
        &req.to,
        &req.service,
        &req.purpose,
        today,
        req.document.as_ref(),
    ) {
        Ok(text) => json_ok(&json!({"explanation": text})),
        Err(e) => problem::respond(problem::BAD_QUERY, e.to_string()),
    }
}

/// What validating a new file gave.
enum Checked {
    Invalid(crate::config::ConfigError),
    Valid {
        new: Box<Pilot>,
        changes: Vec<Change>,
    },
}

fn check(gw: &Gateway, pilot: &str, text: &str) -> Result<Checked, String> {
    let snap = gw.policy.current();
    let partners_src = Source::read(&gw.config.partners_file).map_err(|e| e.to_string())?;
    let src = Source {
        file: gw.config.pilots_dir.join(format!("{pilot}.toml")),
        text: text.to_string(),
    };
    let new = match Pilot::from_source(&src, &snap.policy.partners, partners_src.text.as_bytes()) {
        Ok(p) => p,
        Err(e) => return Ok(Checked::Invalid(e)),
    };
    // A transfer needs its mirror in the other pilot's file: checked with
    // the new file among all the running ones.
    let mut all = snap.policy.clone();
    all.pilots.insert(pilot.to_string(), new.clone());
    if let Err(e) = all.check_transfers() {
        return Ok(Checked::Invalid(e));
    }
    let old = snap.policy.pilots.get(pilot).map(|p| only(&snap.policy, p));
    let new_set = only(&snap.policy, &new);
    let changes = match &old {
        Some(o) => diff::diff(o, &new_set),
        None => diff::diff(
            &PolicySet {
                partners: snap.policy.partners.clone(),
                pilots: Default::default(),
            },
            &new_set,
        ),
    };
    Ok(Checked::Valid {
        new: Box::new(new),
        changes,
    })
}

/// `PUT /api/v1/pilots/{pilot}/policy[?dry_run=true]`.
pub async fn put_policy(
    gw: &std::sync::Arc<Gateway>,
    user: &User,
    pilot: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Response<Body> {
    if let Err(p) = may_edit(user, pilot) {
        return p.response();
    }
    if !crate::config::valid_id(pilot) {
        return problem::respond(problem::UNKNOWN_PILOT, "no such pilot");
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return problem::respond(problem::INVALID_POLICY, "the file is not UTF-8");
    };
    let (new, changes) = match check(gw, pilot, text) {
        Err(e) => return problem::respond(problem::INTERNAL, e),
        Ok(Checked::Invalid(e)) => {
            // Problem details with the place of the mistake, as `policy check` names it.
            let body = json!({
                "type": format!("{}{}", problem::TYPE_PREFIX, problem::INVALID_POLICY.slug),
                "title": problem::INVALID_POLICY.title,
                "status": 422,
                "detail": e.to_string(),
                "line": e.at.map(|a| a.0),
                "column": e.at.map(|a| a.1),
            });
            return respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                "application/problem+json",
                body.to_string(),
            );
        }
        Ok(Checked::Valid { new, changes }) => (new, changes),
    };
    let lines = changes_text(&changes);
    if q.get("dry_run").map(String::as_str) == Some("true") {
        return json_ok(
            &json!({"valid": true, "applied": false, "version": new.version, "changes": lines}),
        );
    }
    let snap = gw.policy.current();
    let old = snap.policy.pilots.get(pilot).cloned();
    // The history first (it changes nothing that runs), then the record,
    // and only then the file that takes effect: a change the log cannot hold
    // does not happen, and no record claims a change that did not.
    let (micros, time) = now();
    let dir = history_dir(gw, pilot);
    let version = Version {
        time,
        by: user.name.clone(),
        version: new.version.to_string(),
        text: text.to_string(),
    };
    let before = old.clone();
    let kept =
        tokio::task::spawn_blocking(move || keep_history(&dir, before.as_ref(), &version, micros))
            .await;
    if !matches!(kept, Ok(Ok(()))) {
        return problem::respond(problem::INTERNAL, "the policy history could not be written");
    }
    let record = match record_change(gw, user, pilot, &new.version, old.as_ref()).await {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let file = gw.config.pilots_dir.join(format!("{pilot}.toml"));
    let text_owned = text.to_string();
    let wrote = tokio::task::spawn_blocking(move || {
        crate::datadir::write_atomic(&file, text_owned.as_bytes(), 0o644)
    })
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return problem::respond(problem::INTERNAL, "the policy file could not be written");
    }
    gw.reload_policy().await;
    let loaded = gw
        .policy
        .current()
        .on_disk
        .pilots
        .get(pilot)
        .map(|p| p.version.clone());
    if loaded.as_deref() != Some(new.version.as_str()) {
        return problem::respond(
            problem::INTERNAL,
            "the new policy was written but did not load; see the gateway log",
        );
    }
    // Written and loaded; whether it runs is the partners' to say when it
    // widens anything (it then waits for their signatures).
    let covenant = super::covenant::after_change(gw, pilot, &new.covenant_version);
    info!(pilot, user = %user.name, version = %new.version, "policy changed from the console");
    json_ok(&json!({
        "valid": true, "applied": true, "version": new.version,
        "previous": old.map(|o| o.version), "changes": lines, "record": record,
        "covenant": covenant,
    }))
}

/// Keeps the new version in the pilot's history, and the version that ran
/// before the first console change too.
fn keep_history(
    dir: &std::path::Path,
    old: Option<&Pilot>,
    new: &Version,
    micros: i64,
) -> std::io::Result<()> {
    if read_history(dir).is_empty()
        && let Some(o) = old
    {
        save_version(
            dir,
            &Version {
                time: "before the first console change".into(),
                by: "(file)".into(),
                version: o.version.to_string(),
                text: o.text.clone(),
            },
            micros - 1,
        )?;
    }
    save_version(dir, new, micros)
}

/// The audit record of a policy change, made before the change takes effect.
async fn record_change(
    gw: &Gateway,
    user: &User,
    pilot: &str,
    version: &str,
    old: Option<&Pilot>,
) -> Result<u64, Response<Body>> {
    let mut e = Entry::exchange(
        pilot,
        format!("console:{}", user.name),
        "ketenpoort",
        "policy-change",
        format!("policy/{pilot}"),
    );
    e.kind = RecordKind::PolicyChange;
    e.decision = Decision::Disclosed;
    e.policy_version = version.into();
    e.reason = format!("replaces {}", old.map_or("nothing", |o| o.version.as_str()));
    gw.audit.record(e).await.map(|r| r.id).map_err(|err| {
        tracing::error!(error = %err, "policy change not recorded, so not applied");
        problem::respond(
            problem::AUDIT_UNAVAILABLE,
            "the audit log cannot record the change, so it was not applied",
        )
    })
}

/// `GET /api/v1/pilots/{pilot}/history`: versions newest first, each with the
/// flows it changed.
pub async fn history(gw: &Gateway, pilot: &str) -> Response<Body> {
    // The name becomes a folder name: only ids, never `..` or a path.
    if !crate::config::valid_id(pilot) {
        return problem::respond(problem::NOT_FOUND, "no such pilot");
    }
    let snap = gw.policy.current();
    let dir = history_dir(gw, pilot);
    let versions = tokio::task::spawn_blocking(move || read_history(&dir))
        .await
        .unwrap_or_default();
    let partners_src = match Source::read(&gw.config.partners_file) {
        Ok(s) => s,
        Err(e) => return problem::respond(problem::INTERNAL, e.to_string()),
    };
    let parse = |v: &Version| {
        Pilot::from_source(
            &Source {
                file: gw.config.pilots_dir.join(format!("{pilot}.toml")),
                text: v.text.clone(),
            },
            &snap.policy.partners,
            partners_src.text.as_bytes(),
        )
        .ok()
    };
    let covenant = super::covenant::status_of(gw, pilot);
    let mut out = Vec::new();
    let mut prev: Option<Pilot> = None;
    for v in &versions {
        let cur = parse(v);
        let changes = match (&prev, &cur) {
            (Some(a), Some(b)) => {
                changes_text(&diff::diff(&only(&snap.policy, a), &only(&snap.policy, b)))
            }
            _ => Vec::new(),
        };
        let covenant_version = cur.as_ref().map(|p| p.covenant_version.clone());
        let signed: Vec<Value> = covenant
            .as_ref()
            .and_then(|c| c["signatures"].as_array())
            .into_iter()
            .flatten()
            .filter(|s| covenant_version.as_deref() == s["version"].as_str())
            .cloned()
            .collect();
        out.push(
            json!({"time": v.time, "by": v.by, "version": v.version, "changes": changes,
                        "covenant_version": covenant_version, "signatures": signed}),
        );
        if cur.is_some() {
            prev = cur;
        }
    }
    out.reverse();
    json_ok(&json!({"pilot": pilot, "versions": out, "covenant": covenant}))
}

/// `GET /api/v1/pilots/{pilot}/flows.svg`.
pub fn flows_svg(gw: &Gateway, pilot: &str) -> Response<Body> {
    let snap = gw.policy.current();
    match snap.policy.pilots.get(pilot) {
        Some(p) => respond(
            StatusCode::OK,
            "image/svg+xml",
            crate::policy::graph::svg(&snap.policy, p),
        ),
        None => problem::respond(problem::UNKNOWN_PILOT, "no such pilot"),
    }
}

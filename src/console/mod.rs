//! The console for privacy officers and policy administrators: a web page and
//! the JSON API behind it, on its own listener.
//!
//! Users log in with a personal certificate, a bearer token, a one-time link
//! or their organisation's identity provider, into a server-side session
//! (see [`login`], [`session`], [`oidc`], [`users`]). A privacy officer bound
//! to a partner sees only records where that partner sent or received; a
//! policy admin sees no personal records. Looking up a data subject is itself
//! processing, so every look-up is written to the audit log before the answer
//! leaves.

pub mod admin;
pub mod covenant;
pub mod figures;
pub mod health;
pub mod idp;
pub mod jwt;
pub mod last_use;
pub mod login;
pub mod oidc;
mod reply;
pub mod report;
pub mod routes;
pub mod rules;
pub mod search;
pub mod session;
pub mod state;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tracing::warn;

use crate::audit::index::Dim;
use crate::audit::record::parse_time;
use crate::audit::store::LOOKUP_SCOPE;
use crate::audit::{Decision, Entry, Filter, Record};
use crate::gateway::{Body, Gateway};
use crate::policy::valid_vnummer;
use crate::problem::{self, Kind as ProblemKind, Problem};
use reply::{forbidden, json_ok, respond};
use routes::{Found, Op, STATIC};
pub use state::ConsoleState;
use users::{Role, User};

/// Records per page of the disclosure list by default.
const DEFAULT_LIMIT: usize = 50;
/// Largest request body on the console (a policy file, an explain sample).
const MAX_BODY: usize = 256 * 1024;
/// Most records an access report gathers.
const REPORT_MAX: usize = 10_000;

/// Percent-decodes a query value (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// The page's Content-Security-Policy: its own script and stylesheet files
/// only (no inline script or style, nothing from anywhere else), no framing.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Routes one console request and adds the security headers every console
/// answer carries: nothing is framed, sniffed, cached (answers hold personal
/// data) or sent on as a referrer; no script runs but the page's own.
pub async fn handle(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    let page = STATIC.iter().any(|(p, _, _)| *p == req.uri().path());
    let mut resp = route(gw, req).await;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        if page {
            HeaderValue::from_static(PAGE_CSP)
        } else {
            // Reports and pictures: their own inline styles, never a script.
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            )
        },
    );
    for (name, value) in [
        (hyper::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (hyper::header::REFERRER_POLICY, "no-referrer"),
        (hyper::header::X_FRAME_OPTIONS, "DENY"),
        (hyper::header::CACHE_CONTROL, "no-store"),
        (hyper::header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    // API Design Rules (`/core/version-header`): on every answer, refusals too.
    h.insert(
        crate::exchange::wire::API_VERSION,
        HeaderValue::from_static(routes::API_VERSION_VALUE),
    );
    resp
}

/// Routes one request through [`routes::ROUTES`]: the page's files and the
/// routes that need no token first; under `/api/v1/` nothing else, not even
/// whether a route exists, without a token.
async fn route(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let found = routes::find(&method, &path);
    if let Found::Op(op, v) = &found
        && !op.needs_token()
    {
        return match op {
            Op::Login => login::login_page(gw, &req),
            Op::LoginProviders => oidc::providers(gw),
            Op::OidcCallback => oidc::callback(gw, &req).await,
            Op::OidcStart => oidc::start(gw, &req, v.first().copied().unwrap_or_default()).await,
            Op::Session => login::session(gw, req).await,
            Op::Health => health::check(gw).await.response(),
            Op::Metrics => respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                gw.metrics.render(),
            ),
            _ => respond(StatusCode::OK, "application/json", routes::OPENAPI_JSON),
        };
    }
    if method == Method::GET
        && let Some((_, ty, body)) = STATIC.iter().find(|(s, _, _)| *s == path)
    {
        return respond(StatusCode::OK, ty, *body);
    }
    if !path.starts_with("/api/v1/") {
        return problem::respond(problem::NOT_FOUND, "no such page");
    }
    let user = match login::authenticate(gw, &req) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (op, v) = match found {
        Found::Op(op, v) => (op, v),
        Found::Method(allowed) => {
            let mut r = problem::respond(problem::METHOD_NOT_ALLOWED, "see the Allow header");
            if let Ok(a) = HeaderValue::from_str(&allowed.join(", ")) {
                r.headers_mut().insert(hyper::header::ALLOW, a);
            }
            return r;
        }
        Found::None => return problem::respond(problem::NOT_FOUND, "no such API call"),
    };
    let q = query_map(req.uri().query());
    let body = if method == Method::PUT || method == Method::POST {
        match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return problem::respond(problem::BODY_TOO_LARGE, "at most 256 KiB"),
        }
    } else {
        Bytes::new()
    };
    // The table gives each operation the values its template names.
    let at = |i: usize| v.get(i).copied().unwrap_or_default();
    match op {
        // Answered above, before the token is asked for.
        Op::Health
        | Op::Metrics
        | Op::OpenApi
        | Op::Login
        | Op::LoginProviders
        | Op::OidcCallback
        | Op::OidcStart
        | Op::Session => problem::respond(problem::INTERNAL, "unrouted"),
        Op::Pilots => admin::pilots(gw, &user),
        Op::Policy => admin::policy(gw, at(0)).await,
        Op::PutPolicy => admin::put_policy(gw, &user, at(0), &q, &body).await,
        Op::Explain => admin::explain(gw, at(0), &body),
        Op::History => admin::history(gw, at(0)).await,
        Op::RulesEditor => rules::editor(gw, &user, at(0)),
        Op::RulesEdit => rules::edit(gw, &user, at(0), &body),
        Op::FlowsSvg => admin::flows_svg(gw, at(0)),
        Op::Covenant => covenant::status(gw, at(0)).await,
        Op::WithdrawVersion => covenant::withdraw(gw, &user, at(0), at(1)).await,
        Op::Users => login::users(gw, &user),
        Op::Whoami => json_ok(
            &json!({"name": user.name, "role": user.role.as_str(), "partner": user.partner, "pilot": user.pilot}),
        ),
        Op::Disclosures => {
            let r = disclosures(gw, &user, &q).await;
            if q.contains_key("subject") {
                search::deprecated(r, "/api/v1/disclosures/search")
            } else {
                r
            }
        }
        Op::Search => match search::search_body(&body) {
            Ok(q) => disclosures(gw, &user, &q).await,
            Err(p) => p.response(),
        },
        Op::Evidence => evidence(gw, &user, at(0)).await,
        Op::ReportByPath => search::deprecated(
            subject_report(gw, &user, at(0), &q).await,
            "/api/v1/subjects/report",
        ),
        Op::Report => match search::report_body(&body) {
            Ok((v, q)) => subject_report(gw, &user, &v, &q).await,
            Err(p) => p.response(),
        },
        Op::RegistrationChecks => figures::checks(gw, &user, &q).await,
        Op::AuditHead => head(gw),
        Op::Verify => verify(gw).await,
        Op::VerifyStatus => verify_status(gw),
        Op::Proof => proof(gw, &user, &q).await,
        Op::Stats => stats(gw, &user, &q).await,
        Op::Figures => figures::get(gw, &user, &q).await,
        Op::Register => json_ok(&json!(crate::register::activities(
            &gw.policy.current().policy
        ))),
    }
}

/// The display names of partners and pilots among these ids, so the page
/// shows "Gemeente Utrecht" where a record says `gemeente-utrecht`.
fn names<'a>(
    policy: &crate::policy::PolicySet,
    ids: impl Iterator<Item = &'a str>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for id in ids {
        let name = policy
            .partners
            .get(id)
            .map(|p| p.name.clone())
            .or_else(|| policy.pilots.get(id).map(|p| p.name.clone()));
        if let Some(n) = name {
            out.insert(id.to_string(), n.into());
        }
    }
    out
}

fn bad(kind: ProblemKind, detail: &str) -> Problem {
    Problem::new(kind, detail)
}

/// Only privacy officers see personal records.
fn officer(user: &User) -> Result<(), Problem> {
    if user.role == Role::PrivacyOfficer {
        Ok(())
    } else {
        Err(forbidden("a policy admin sees no personal records"))
    }
}

/// Writes "this user looked up this pseudonym" and returns once it is durable.
async fn record_lookup(
    gw: &Gateway,
    user: &User,
    subject: [u8; 32],
    what: &str,
) -> Result<(), Response<Body>> {
    let e = Entry::lookup(
        &format!("console:{}", user.name),
        &format!("console/{what}"),
        subject,
    );
    gw.audit.record(e).await.map(|_| ()).map_err(|err| {
        warn!(user = %user.name, error = %err, "console look-up could not be recorded; not answered");
        problem::respond(problem::AUDIT_UNAVAILABLE, "the look-up cannot be recorded, so it is not answered")
    })
}

/// The filter of a disclosures query, with the officer's scope applied.
fn filter_of(gw: &Gateway, user: &User, q: &HashMap<String, String>) -> Result<Filter, Problem> {
    let mut f = Filter {
        limit: q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(DEFAULT_LIMIT),
        before: q.get("cursor").and_then(|c| c.parse().ok()),
        pilot: q.get("pilot").cloned(),
        purpose: q.get("purpose").cloned(),
        partner: q.get("partner").cloned(),
        ..Default::default()
    };
    if let Some(v) = q.get("subject") {
        if !valid_vnummer(v) {
            return Err(bad(problem::INVALID_SUBJECT, "a V-nummer has ten digits"));
        }
        // The look-up's own pseudonym, and the person's under every month
        // key that still exists; a month past retention is not among them.
        let unavailable = |_| {
            bad(
                problem::AUDIT_UNAVAILABLE,
                "the subject keys cannot be read",
            )
        };
        f.subject = Some(gw.audit.subject(LOOKUP_SCOPE, v).map_err(unavailable)?);
        f.subjects = gw.audit.subjects(v).map_err(unavailable)?;
    }
    for (key, slot) in [("since", &mut f.since), ("until", &mut f.until)] {
        if let Some(t) = q.get(key) {
            *slot = Some(
                parse_time(t)
                    .ok_or_else(|| bad(problem::BAD_QUERY, "times are YYYY-MM-DD or RFC 3339"))?,
            );
        }
    }
    if let Some(until) = q.get("until")
        && until.len() == 10
        && let Some(u) = f.until.as_mut()
    {
        // A day given as `until` includes that whole day.
        *u += 86_400_000_000 - 1;
    }
    if let Some(d) = q.get("decision") {
        f.decision = Some(
            Decision::parse(d)
                .ok_or_else(|| bad(problem::BAD_QUERY, "decision is disclosed or refused"))?,
        );
    }
    if let Some(own) = &user.partner {
        match &f.partner {
            Some(p) if p != own => {
                return Err(forbidden("you see only your own organisation's records"));
            }
            _ => f.partner = Some(own.clone()),
        }
    }
    Ok(f)
}

async fn disclosures(gw: &Gateway, user: &User, q: &HashMap<String, String>) -> Response<Body> {
    if let Err(p) = officer(user) {
        return p.response();
    }
    let f = match filter_of(gw, user, q) {
        Ok(f) => f,
        Err(p) => return p.response(),
    };
    if let Some(s) = f.subject
        && let Err(r) = record_lookup(gw, user, s, "disclosures").await
    {
        return r;
    }
    let view = gw.audit.view().clone();
    let page = match tokio::task::spawn_blocking(move || view.query(&f)).await {
        Ok(Ok(p)) => p,
        _ => return problem::respond(problem::INTERNAL, "the audit log could not be read"),
    };
    if q.get("format").map(String::as_str) == Some("csv") {
        let mut out = crate::audit::export::CSV_COLUMNS.join(",");
        out.push('\n');
        for r in &page.records {
            out.push_str(&crate::audit::export::csv_row(r));
            out.push('\n');
        }
        return respond(StatusCode::OK, "text/csv; charset=utf-8", out);
    }
    let snap = gw.policy.current();
    let ids = page
        .records
        .iter()
        .flat_map(|r| [&*r.entry.sender, &*r.entry.recipient, &*r.entry.pilot]);
    json_ok(&json!({
        "records": page.records.iter().map(Record::to_json).collect::<Vec<_>>(),
        "next_cursor": page.next,
        "names": names(&snap.policy, ids),
    }))
}

async fn subject_report(
    gw: &Gateway,
    user: &User,
    vnummer: &str,
    q: &HashMap<String, String>,
) -> Response<Body> {
    if let Err(p) = officer(user) {
        return p.response();
    }
    if !valid_vnummer(vnummer) {
        return bad(problem::INVALID_SUBJECT, "a V-nummer has ten digits").response();
    }
    let (subject, subjects) = match (
        gw.audit.subject(LOOKUP_SCOPE, vnummer),
        gw.audit.subjects(vnummer),
    ) {
        (Ok(s), Ok(all)) => (s, all),
        _ => {
            return problem::respond(
                problem::AUDIT_UNAVAILABLE,
                "the subject keys cannot be read",
            );
        }
    };
    if let Err(r) = record_lookup(gw, user, subject, "report").await {
        return r;
    }
    let view = gw.audit.view().clone();
    let scope = user.partner.clone();
    let gathered = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        let mut f = Filter {
            subject: Some(subject),
            subjects,
            partner: scope,
            limit: crate::audit::store::MAX_PAGE,
            ..Default::default()
        };
        loop {
            let page = view.query(&f)?;
            all.extend(page.records);
            match page.next {
                Some(n) if all.len() < REPORT_MAX => f.before = Some(n),
                _ => break,
            }
        }
        Ok::<_, crate::audit::AuditError>(all)
    })
    .await;
    let records = match gathered {
        Ok(Ok(r)) => r,
        _ => return problem::respond(problem::INTERNAL, "the audit log could not be read"),
    };
    // The registry keeps stays under its own pseudonym, not the log's.
    let registry = gw.registry.clone();
    let p = registry.pseudonym(vnummer);
    let stays = match tokio::task::spawn_blocking(move || registry.history(&p)).await {
        Ok(Ok(s)) => s,
        _ => return problem::respond(problem::INTERNAL, "the registry could not be read"),
    };
    let consents = {
        let reg = gw.consents.clone();
        let p = reg.pseudonym(vnummer);
        match tokio::task::spawn_blocking(move || reg.of_person(&p)).await {
            Ok(Ok(c)) => c,
            _ => {
                return problem::respond(
                    problem::INTERNAL,
                    "the consent register could not be read",
                );
            }
        }
    };
    let snap = gw.policy.current();
    let rep = report::json_report(
        vnummer,
        &records,
        &stays,
        &consents,
        &snap.policy,
        user.partner.as_deref(),
    );
    match q.get("format").map(String::as_str) {
        Some("csv") => respond(
            StatusCode::OK,
            "text/csv; charset=utf-8",
            report::csv_report(&rep),
        ),
        Some("html") => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            report::html_report(&rep, report::Lang::of(q.get("lang").map(String::as_str))),
        ),
        _ => json_ok(&rep),
    }
}

fn head(gw: &Gateway) -> Response<Body> {
    let view = gw.audit.view();
    let h = view.head();
    let cp = view.latest_checkpoint();
    let published = view.published_checkpoint();
    json_ok(&json!({
        "size": h.size,
        "root": hex::encode(h.root),
        "checkpoint": cp.as_ref().map(|c| c.note.clone()),
        "checkpoint_size": cp.as_ref().map(|c| c.size),
        // What partners are shown: with witnesses, the newest checkpoint
        // with its quorum of cosignature lines.
        "published": published.as_ref().map(|p| p.1.clone()),
        "published_size": published.as_ref().map(|p| p.0),
        "witnessed": view.witnessed(),
        "vkey": gw.audit.vkey(),
    }))
}

async fn verify(gw: &Gateway) -> Response<Body> {
    let state = &gw.console;
    if state.verify_running.swap(true, Ordering::SeqCst) {
        return verify_status(gw);
    }
    state.verify_progress.store(0, Ordering::Relaxed);
    // A fresh checkpoint first, so the check covers everything written so far.
    let _ = gw.audit.checkpoint().await;
    let dir = gw.config.data_dir.join("audit");
    let keys = gw.audit.key_history();
    let progress = std::sync::Arc::new(AtomicU64::new(0));
    let p2 = progress.clone();
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        crate::audit::verify::verify_keys(&dir, &keys, |n| p2.store(n, Ordering::Relaxed))
            .map_err(|e| e.0)
    })
    .await;
    state
        .verify_progress
        .store(progress.load(Ordering::Relaxed), Ordering::Relaxed);
    let v = match result {
        Ok(Ok(rep)) => json!({
            "ok": true, "records": rep.records, "checkpoints": rep.checkpoints,
            "root": hex::encode(rep.root), "seconds": started.elapsed().as_secs_f64(),
            "finished": crate::audit::record::format_micros(crate::audit::record::now_micros()),
        }),
        Ok(Err(e)) => json!({"ok": false, "error": e, "seconds": started.elapsed().as_secs_f64()}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    *state.verify_last.lock().unwrap_or_else(|e| e.into_inner()) = Some(v.clone());
    state.verify_running.store(false, Ordering::SeqCst);
    json_ok(&v)
}

fn verify_status(gw: &Gateway) -> Response<Body> {
    let s = &gw.console;
    json_ok(&json!({
        "running": s.verify_running.load(Ordering::SeqCst),
        "progress": s.verify_progress.load(Ordering::Relaxed),
        "last": s.verify_last.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }))
}

async fn proof(gw: &Gateway, user: &User, q: &HashMap<String, String>) -> Response<Body> {
    if let Err(p) = officer(user) {
        return p.response();
    }
    let Some(index) = q.get("index").and_then(|i| i.parse::<u64>().ok()) else {
        return bad(problem::BAD_QUERY, "give ?index=N").response();
    };
    let cp = match gw.audit.view().latest_checkpoint() {
        Some(cp) if cp.size > index => cp,
        _ => match gw.audit.checkpoint().await {
            Ok(cp) if cp.size > index => cp,
            _ => return problem::respond(problem::NOT_FOUND, "no such record"),
        },
    };
    let view = gw.audit.view().clone();
    let own = user.partner.clone();
    let snap = gw.policy.current();
    let r = tokio::task::spawn_blocking(move || {
        let rec = view.record(index)?;
        if let Some(p) = &own
            && rec.entry.sender != *p
            && rec.entry.recipient != *p
        {
            return Ok(None);
        }
        let path = view.inclusion_proof(index, cp.size)?;
        let bytes = rec.encode();
        let leaf = crate::audit::merkle::leaf_hash(&bytes);
        use base64::Engine;
        Ok::<_, crate::audit::AuditError>(Some(json!({
            "record": rec.to_json(),
            // The bytes the leaf hash is taken of, so that the page (or
            // anyone) hashes them itself instead of trusting `leafHash`.
            "record_bytes": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "proof": crate::audit::proof::inclusion_json(index, cp.size, &cp.root, &leaf, &path),
            "checkpoint": cp.note,
            "names": names(&snap.policy, [&*rec.entry.sender, &*rec.entry.recipient, &*rec.entry.pilot].into_iter()),
        })))
    })
    .await;
    match r {
        Ok(Ok(Some(v))) => json_ok(&v),
        Ok(Ok(None)) => forbidden("you see only your own organisation's records").response(),
        _ => problem::respond(problem::NOT_FOUND, "no such record"),
    }
}

/// The evidence of one disclosure (a tlog-proof file), scoped as the
/// records are: officers only, and one bound to a partner only for records
/// that partner sent or received.
async fn evidence(gw: &Gateway, user: &User, id: &str) -> Response<Body> {
    if let Err(p) = officer(user) {
        return p.response();
    }
    let Ok(id) = id.parse::<u64>() else {
        return problem::respond(problem::NOT_FOUND, "no such record");
    };
    let view = gw.audit.view().clone();
    let own = user.partner.clone();
    let made =
        tokio::task::spawn_blocking(move || crate::evidence::make(&view, id, own.as_deref())).await;
    match made {
        Ok(r) => crate::exchange::evidence::answer(id, r),
        Err(_) => problem::respond(problem::INTERNAL, "the evidence could not be made"),
    }
}

/// The figures an officer bound to a partner may see: counted from that
/// partner's own records (the shared counters cover every partner), up to
/// [`SCOPED_STATS_MAX`] records.
fn scoped_stats(
    view: &crate::audit::store::View,
    partner: String,
    by: Dim,
    since: &str,
    until: &str,
) -> Result<std::collections::BTreeMap<String, (u64, u64)>, crate::audit::AuditError> {
    let mut rows: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut f = Filter {
        partner: Some(partner),
        since: parse_time(since),
        until: parse_time(until).map(|u| u + 86_400_000_000 - 1),
        limit: crate::audit::store::MAX_PAGE,
        ..Filter::default()
    };
    let mut seen = 0usize;
    loop {
        let page = view.query(&f)?;
        for r in &page.records {
            let e = &r.entry;
            if e.kind != crate::audit::RecordKind::Exchange {
                continue;
            }
            let keys: Vec<String> = match by {
                Dim::Day => vec![r.time_rfc3339()[..10].to_string()],
                Dim::Pilot => vec![e.pilot.to_string()],
                Dim::Purpose => vec![e.purpose.to_string()],
                Dim::Partner if e.sender == e.recipient => vec![e.sender.to_string()],
                Dim::Partner => vec![e.sender.to_string(), e.recipient.to_string()],
            };
            for k in keys {
                let row = rows.entry(k).or_default();
                match e.decision {
                    Decision::Disclosed => row.0 += 1,
                    Decision::Refused => row.1 += 1,
                }
            }
        }
        seen += page.records.len();
        match page.next {
            Some(n) if seen < SCOPED_STATS_MAX => f.before = Some(n),
            _ => break,
        }
    }
    Ok(rows)
}

/// Most records counted for one scoped statistics request.
const SCOPED_STATS_MAX: usize = 200_000;

async fn stats(gw: &Gateway, user: &User, q: &HashMap<String, String>) -> Response<Body> {
    let by = match q.get("by").map(String::as_str).unwrap_or("day") {
        "day" => Dim::Day,
        "pilot" => Dim::Pilot,
        "partner" => Dim::Partner,
        "purpose" => Dim::Purpose,
        _ => return bad(problem::BAD_QUERY, "by is day, pilot, partner or purpose").response(),
    };
    let day = |k: &str, default: &str| -> Result<String, Problem> {
        match q.get(k) {
            None => Ok(default.to_string()),
            Some(t) => parse_time(t)
                .map(|m| crate::audit::record::format_micros(m)[..10].to_string())
                .ok_or_else(|| bad(problem::BAD_QUERY, "times are YYYY-MM-DD or RFC 3339")),
        }
    };
    let (since, until) = match (day("since", "0000-01-01"), day("until", "9999-12-31")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(p), _) | (_, Err(p)) => return p.response(),
    };
    let view = gw.audit.view().clone();
    let scope = user.partner.clone();
    let rows = match tokio::task::spawn_blocking(move || match scope {
        Some(p) => scoped_stats(&view, p, by, &since, &until),
        None => view.stats(by, &since, &until),
    })
    .await
    {
        Ok(Ok(r)) => r,
        _ => return problem::respond(problem::INTERNAL, "the statistics could not be read"),
    };
    let snap = gw.policy.current();
    if q.get("format").map(String::as_str) == Some("csv") {
        let mut out = String::from("key,disclosed,refused\n");
        for (k, (d, r)) in &rows {
            out.push_str(&format!("{},{d},{r}\n", crate::audit::export::csv_field(k)));
        }
        return respond(StatusCode::OK, "text/csv; charset=utf-8", out);
    }
    json_ok(&json!({
        "by": q.get("by").cloned().unwrap_or_else(|| "day".into()),
        "rows": rows.iter().map(|(k, (d, r))| {
            let name = names(&snap.policy, std::iter::once(k.as_str())).remove(k.as_str());
            json!({"key": k, "name": name, "disclosed": d, "refused": r})
        }).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let q = query_map(Some(
            "since=2026-01-01T00%3A00%3A00%2B01%3A00&pilot=utrecht&x=&a+b=c%20d&bad=%zz",
        ));
        assert_eq!(q["since"], "2026-01-01T00:00:00+01:00");
        assert_eq!(q["pilot"], "utrecht");
        assert_eq!(q["a b"], "c d");
        assert_eq!(q["bad"], "%zz");
        assert!(!q.contains_key("x"));
    }
}

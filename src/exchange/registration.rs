//! The LVV registry on the partner API: registrars open and end stays,
//! checkers ask whether someone is already in an LVV, here or elsewhere,
//! and are never told where.
//!
//! `PUT|DELETE|GET /v1/pilots/{pilot}/registrations/{vnummer}`, under the
//! purpose the pilot's `[registration]` table names. Each call is one audit
//! record about its data subject, made durable before the answer (and, for a
//! change, before the registry changes: a change that cannot be recorded does
//! not happen). Checks are limited per partner per sliding minute; a check
//! over the limit is refused and recorded, so walking through V-nummers shows
//! in the log.

use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::refusal::{Exchange, Refusal, Target, path_subject};
use super::request;
use super::trace::Trace;
use super::wire::{DISCLOSURE, TRACEPARENT, json_response};
use crate::audit::Decision;
use crate::gateway::{Body, Gateway};
use crate::identity::Peer;
use crate::policy::Direction;
use crate::policy::partners::Partner;
use crate::policy::registration::Registration;
use crate::problem;

/// The service name registry records carry (`ketenpoort/registratie`).
pub const SERVICE: &str = "registratie";

/// Largest body of a registration or an ending.
const MAX_BODY: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Admit {
    since: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    reason: String,
}

/// Serves one registry call.
pub async fn handle(
    gw: &Gateway,
    peer: &Peer,
    partner: &Partner,
    req: Request<Incoming>,
    pilot: &str,
    vnummer: &str,
) -> Response<Body> {
    let snap = gw.policy.current();
    let target = Target::own(pilot, SERVICE);
    let trace = Trace::from_headers(req.headers());
    let mut x = Exchange::new(gw, &snap, partner, peer, &target, trace);
    match stages(&mut x, req, vnummer).await {
        Ok(resp) => resp,
        Err(r) => x.refuse(r).await,
    }
}

fn bad(detail: impl Into<String>) -> Refusal {
    Refusal::new(problem::INVALID_REGISTRATION, detail)
}

async fn stages(
    x: &mut Exchange<'_>,
    req: Request<Incoming>,
    vnummer: &str,
) -> Result<Response<Body>, Refusal> {
    path_subject(x, vnummer)?;
    request::purpose(x, req.headers())?;
    request::no_query(req.uri())?;
    let method = req.method().clone();
    let reg = authorise(x, &method)?;
    let p = x.gw.registry.pseudonym(vnummer);
    match method {
        Method::GET => check(x, &reg, p).await,
        Method::PUT => {
            let body: Admit = read(x, req).await?;
            let since = time::Date::parse(
                &body.since,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|_| bad("since must be a date like 2026-01-31"))?;
            change(x, Change::Admit(since.to_string()), p).await
        }
        _ => {
            let body: End = read(x, req).await?;
            if !reg.end_reasons.contains(&body.reason) {
                return Err(bad(format!(
                    "reason must be one of: {}",
                    reg.end_reasons.join(", ")
                )));
            }
            if !open_in(x, p).await? {
                return Err(Refusal::new(
                    problem::NO_OPEN_STAY,
                    "there is no open stay to end",
                ));
            }
            change(x, Change::End(body.reason), p).await
        }
    }
}

/// The pilot's registration, if this partner may do this under this
/// purpose: registrars change, checkers ask.
fn authorise(x: &mut Exchange<'_>, method: &Method) -> Result<Registration, Refusal> {
    let pilot = x.snap.policy.pilots.get(x.target.pilot).ok_or_else(|| {
        Refusal::new(
            problem::UNKNOWN_PILOT,
            format!("no pilot '{}'", x.target.pilot),
        )
    })?;
    let reg = pilot.registration.clone().ok_or_else(|| {
        Refusal::new(
            problem::NO_RULE,
            "this pilot keeps no registration of stays",
        )
    })?;
    let today = time::OffsetDateTime::now_utc().date();
    if today < pilot.covenant.valid_from {
        return Err(Refusal::new(
            problem::COVENANT_NOT_YET_VALID,
            "the covenant has not started",
        ));
    }
    if today > pilot.covenant.valid_until {
        return Err(Refusal::new(
            problem::COVENANT_EXPIRED,
            "the covenant has ended",
        ));
    }
    if x.purpose != reg.purpose {
        return Err(Refusal::new(
            problem::NO_RULE,
            format!("registration happens under purpose '{}'", reg.purpose),
        ));
    }
    let allowed = match *method {
        Method::GET => x.consumer.named_in(&reg.checkers),
        Method::PUT | Method::DELETE => x.consumer.named_in(&reg.registrars),
        _ => {
            let mut r = Refusal::new(
                problem::METHOD_NOT_ALLOWED,
                format!("{method} is not offered here"),
            );
            r.allow = Some("GET, PUT, DELETE".into());
            return Err(r);
        }
    };
    if !allowed {
        let role = if *method == Method::GET {
            "checker"
        } else {
            "registrar"
        };
        return Err(Refusal::new(
            problem::NO_RULE,
            format!(
                "{} is no {role} of this pilot's registration",
                x.consumer.id
            ),
        ));
    }
    let basis = pilot
        .purposes
        .get(&reg.purpose)
        .map(|p| p.legal_basis.clone())
        .unwrap_or_default();
    x.grant_by("registration", &basis, &pilot.version);
    Ok(reg)
}

async fn read<T: serde::de::DeserializeOwned>(
    x: &mut Exchange<'_>,
    req: Request<Incoming>,
) -> Result<T, Refusal> {
    x.direction = Direction::Request;
    let (bytes, _budget) = request::read_body(x.gw, req, MAX_BODY).await?;
    let v = super::json::parse(&bytes).map_err(|e| Refusal::new(problem::MALFORMED_JSON, e.0))?;
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

/// "Already in an LVV?": here, and anywhere else, without saying where.
async fn check(
    x: &mut Exchange<'_>,
    reg: &Registration,
    p: [u8; 32],
) -> Result<Response<Body>, Refusal> {
    if !x
        .gw
        .checks
        .allow(&x.consumer.id, reg.checks_per_minute, Instant::now())
    {
        return Err(Refusal::new(
            problem::TOO_MANY_CHECKS,
            format!("at most {} checks per minute", reg.checks_per_minute),
        ));
    }
    let stays = stays(x, p).await?;
    let here = stays.iter().any(|s| s == x.target.pilot);
    let elsewhere = stays.iter().any(|s| *s != x.target.pilot);
    // Only where the person's pilot and this one agree on a transfer to
    // this one does the answer say so (and so narrow "elsewhere" down).
    let transfer_possible = stays
        .iter()
        .any(|s| *s != x.target.pilot && x.snap.policy.transfer(s, x.target.pilot).is_some());
    let mut e = x.entry(Direction::Response);
    e.decision = Decision::Disclosed;
    e.disclosed = vec!["here".into(), "elsewhere".into()];
    let mut answer = json!({"here": here, "elsewhere": elsewhere});
    if transfer_possible {
        e.disclosed.push("transfer_possible".into());
        answer["transfer_possible"] = json!(true);
    }
    let rec = x.record(e, "answered").await?;
    let mut resp = json_response(StatusCode::OK, &answer);
    stamp(x, &mut resp, rec.id);
    Ok(resp)
}

/// The pilots where the person has an open stay.
async fn stays(x: &Exchange<'_>, p: [u8; 32]) -> Result<Vec<String>, Refusal> {
    let registry = x.gw.registry.clone();
    tokio::task::spawn_blocking(move || registry.stays(&p))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| Refusal::new(problem::REGISTRY_UNAVAILABLE, "the registry cannot be read"))
}

/// Whether the person has an open stay in this pilot.
async fn open_in(x: &Exchange<'_>, p: [u8; 32]) -> Result<bool, Refusal> {
    Ok(stays(x, p).await?.iter().any(|s| s == x.target.pilot))
}

enum Change {
    Admit(String),
    End(String),
}

/// Records the change, then makes it: a change that cannot be recorded
/// does not happen.
async fn change(x: &mut Exchange<'_>, c: Change, p: [u8; 32]) -> Result<Response<Body>, Refusal> {
    x.direction = Direction::Request;
    let mut e = x.entry(Direction::Request);
    e.decision = Decision::Disclosed;
    e.disclosed = vec![match &c {
        Change::Admit(_) => "since".into(),
        Change::End(_) => "reason".into(),
    }];
    let rec = x.record(e, "registered").await?;
    let registry = x.gw.registry.clone();
    let pilot = x.target.pilot.to_string();
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let is_admit = matches!(c, Change::Admit(_));
    let done = tokio::task::spawn_blocking(move || match c {
        Change::Admit(since) => registry.admit(&p, &pilot, &since),
        Change::End(reason) => registry.end(&p, &pilot, &today, &reason),
    })
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| {
        Refusal::new(
            problem::REGISTRY_UNAVAILABLE,
            "the registry cannot be written",
        )
    })?;
    let mut resp = match (is_admit, done) {
        (true, true) => json_response(StatusCode::CREATED, &json!({"registered": true})),
        (true, false) => json_response(StatusCode::OK, &json!({"registered": true})),
        (false, true) => {
            let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        (false, false) => {
            return Err(Refusal::new(
                problem::NO_OPEN_STAY,
                "there was no open stay to end",
            ));
        }
    };
    stamp(x, &mut resp, rec.id);
    Ok(resp)
}

fn stamp(x: &Exchange<'_>, resp: &mut Response<Body>, id: u64) {
    resp.headers_mut()
        .insert(DISCLOSURE, hyper::header::HeaderValue::from(id));
    resp.headers_mut().insert(TRACEPARENT, x.trace.header());
    x.gw.metrics.exchange(true, "");
}

//! Consent on the partner API: recorders register and withdraw a person's
//! consent for a rule that rests on it, and the pipeline lets such a flow
//! pass only for a person with a consent in force.
//!
//! `PUT|DELETE|GET /v1/pilots/{pilot}/consents/{vnummer}/{rule}`, under the
//! purpose of the rule. Each call is one audit record about its data
//! subject, durable before the register changes (a change that cannot be
//! recorded does not happen) and before the answer. The record of a consent
//! is what later disclosures cite (`reason` = `consent <id>`), so a privacy
//! officer can follow a disclosure back to the consent it rested on.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::consent_check::{history, today};
use super::refusal::{Exchange, Refusal, Target, path_subject};
use super::request;
use super::trace::Trace;
use super::wire::{DISCLOSURE, TRACEPARENT, json_response};
use crate::audit::Decision;
use crate::gateway::{Body, Gateway};
use crate::identity::Peer;
use crate::policy::consent::{ConsentAct, ConsentEvent, in_force, parse_day, state};
use crate::policy::partners::Partner;
use crate::policy::{Direction, Pilot, Rule};
use crate::problem;
use crate::text::Text;

/// The service name consent records carry (`ketenpoort/toestemming`).
pub const SERVICE: &str = "toestemming";

/// Largest body of a consent or a withdrawal.
const MAX_BODY: usize = 4096;

/// Longest evidence reference or reason kept.
const MAX_TEXT: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Give {
    given_at: String,
    #[serde(default)]
    expires: Option<String>,
    evidence: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Withdraw {
    #[serde(default)]
    reason: Option<String>,
}

/// Serves one consent call.
pub async fn handle(
    gw: &Gateway,
    peer: &Peer,
    partner: &Partner,
    req: Request<Incoming>,
    target: (&str, &str, &str),
) -> Response<Body> {
    let (pilot, vnummer, rule) = target;
    let snap = gw.policy.current();
    let target = Target::own(pilot, SERVICE);
    let trace = Trace::from_headers(req.headers());
    let mut x = Exchange::new(gw, &snap, partner, peer, &target, trace);
    match stages(&mut x, req, vnummer, rule).await {
        Ok(resp) => resp,
        Err(r) => x.refuse(r).await,
    }
}

fn bad(detail: impl Into<String>) -> Refusal {
    Refusal::new(problem::INVALID_CONSENT, detail)
}

async fn stages(
    x: &mut Exchange<'_>,
    req: Request<Incoming>,
    vnummer: &str,
    rule_id: &str,
) -> Result<Response<Body>, Refusal> {
    path_subject(x, vnummer)?;
    request::purpose(x, req.headers())?;
    request::no_query(req.uri())?;
    let method = req.method().clone();
    authorise(x, &method, rule_id)?;
    let rule_id = rule_id.to_string();
    match method {
        Method::GET => show(x, vnummer, &rule_id).await,
        Method::PUT => {
            let body: Give = read(x, req).await?;
            let event = give(x, body)?;
            change(x, vnummer, &rule_id, event).await
        }
        _ => {
            let body: Withdraw = read(x, req).await?;
            let h = history(x, vnummer, &rule_id).await?;
            if in_force(&h, today()).is_none() {
                return Err(Refusal::new(
                    problem::NO_CONSENT,
                    "there is no consent in force to withdraw",
                ));
            }
            let reason = body.reason.map(|r| r.chars().take(MAX_TEXT).collect());
            let event = step(x, ConsentAct::Withdrawn, None, None, None, reason);
            change(x, vnummer, &rule_id, event).await
        }
    }
}

/// The pilot and rule, if this partner may do this under this purpose:
/// recorders give and withdraw; recorders and the rule's consumers ask.
fn authorise(x: &mut Exchange<'_>, method: &Method, rule_id: &str) -> Result<(), Refusal> {
    let pilot: &Pilot = x.snap.policy.pilots.get(x.target.pilot).ok_or_else(|| {
        Refusal::new(
            problem::UNKNOWN_PILOT,
            format!("no pilot '{}'", x.target.pilot),
        )
    })?;
    let rule: &Rule = pilot
        .rules
        .iter()
        .find(|r| r.id == rule_id && r.consent)
        .ok_or_else(|| {
            Refusal::new(
                problem::NO_RULE,
                format!("no rule '{rule_id}' of this pilot rests on consent"),
            )
        })?;
    if x.purpose != rule.purpose {
        return Err(Refusal::new(
            problem::NO_RULE,
            format!(
                "consent for rule '{rule_id}' is recorded under purpose '{}'",
                rule.purpose
            ),
        ));
    }
    let recorder = x.consumer.named_in(&pilot.consent_recorders);
    let allowed = match *method {
        Method::GET => recorder || x.consumer.named_in(&rule.consumers),
        Method::PUT | Method::DELETE => recorder,
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
        return Err(Refusal::new(
            problem::NO_RULE,
            format!("{} records no consent in this pilot", x.consumer.id),
        ));
    }
    let basis = pilot
        .purposes
        .get(rule.purpose.as_str())
        .map(|p| p.legal_basis.clone())
        .unwrap_or_default();
    x.grant_by(rule_id, &basis, &pilot.version);
    Ok(())
}

async fn read<T: serde::de::DeserializeOwned>(
    x: &mut Exchange<'_>,
    req: Request<Incoming>,
) -> Result<T, Refusal> {
    x.direction = Direction::Request;
    let (bytes, _budget) = request::read_body(x.gw, req, MAX_BODY).await?;
    let v = if bytes.is_empty() {
        json!({})
    } else {
        super::json::parse(&bytes).map_err(|e| Refusal::new(problem::MALFORMED_JSON, e.0))?
    };
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

/// A consent as given: dates that read, given no later than today, an
/// expiry not in the past and not before it was given, and evidence.
fn give(x: &Exchange<'_>, body: Give) -> Result<ConsentEvent, Refusal> {
    let given =
        parse_day(&body.given_at).ok_or_else(|| bad("given_at must be a date like 2026-01-31"))?;
    let today = today();
    if given > today {
        return Err(bad("given_at lies in the future"));
    }
    if let Some(e) = &body.expires {
        let e = parse_day(e).ok_or_else(|| bad("expires must be a date like 2026-12-31"))?;
        if e < today {
            return Err(bad(
                "expires lies in the past: this consent would hold no day",
            ));
        }
        if e < given {
            return Err(bad("expires lies before given_at"));
        }
    }
    let evidence = body.evidence.trim();
    if evidence.is_empty() || evidence.len() > MAX_TEXT {
        return Err(bad(format!(
            "evidence must name where the signed form is kept, in at most {MAX_TEXT} bytes"
        )));
    }
    Ok(step(
        x,
        ConsentAct::Given,
        Some(given.to_string()),
        body.expires,
        Some(evidence.to_string()),
        None,
    ))
}

fn step(
    x: &Exchange<'_>,
    act: ConsentAct,
    given_at: Option<String>,
    expires: Option<String>,
    evidence: Option<String>,
    reason: Option<String>,
) -> ConsentEvent {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    ConsentEvent {
        act,
        recorded_at: now,
        by: x.consumer.id.to_string(),
        record: 0,
        given_at,
        expires,
        evidence,
        reason,
    }
}

/// Records the step, then keeps it: a step that cannot be recorded does not
/// happen.
async fn change(
    x: &mut Exchange<'_>,
    vnummer: &str,
    rule: &str,
    mut event: ConsentEvent,
) -> Result<Response<Body>, Refusal> {
    x.direction = Direction::Request;
    let mut e = x.entry(Direction::Request);
    e.decision = Decision::Disclosed;
    e.disclosed = match event.act {
        ConsentAct::Given => {
            let mut d = vec![Text::from("given_at")];
            if event.expires.is_some() {
                d.push("expires".into());
            }
            d.push("evidence".into());
            d
        }
        ConsentAct::Withdrawn if event.reason.is_some() => {
            vec!["withdrawn".into(), "reason".into()]
        }
        ConsentAct::Withdrawn => vec!["withdrawn".into()],
    };
    let rec = x.record(e, "recorded").await?;
    event.record = rec.id;
    let reg = x.gw.consents.clone();
    let p = reg.pseudonym(vnummer);
    let (pilot, rule) = (x.target.pilot.to_string(), rule.to_string());
    let act = event.act;
    tokio::task::spawn_blocking(move || reg.append(&p, &pilot, &rule, event))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(super::consent_check::unavailable)?;
    let mut resp = match act {
        ConsentAct::Given => json_response(
            StatusCode::CREATED,
            &json!({"state": "given", "record": rec.id}),
        ),
        ConsentAct::Withdrawn => {
            let mut r = Response::new(http_body_util::Full::new(bytes::Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
    };
    stamp(x, &mut resp, rec.id);
    Ok(resp)
}

/// The state and history, recorded as a disclosure to the caller.
async fn show(x: &mut Exchange<'_>, vnummer: &str, rule: &str) -> Result<Response<Body>, Refusal> {
    let h = history(x, vnummer, rule).await?;
    let mut e = x.entry(Direction::Response);
    e.decision = Decision::Disclosed;
    e.disclosed = vec!["state".into(), "history".into()];
    let rec = x.record(e, "answered").await?;
    let body = json!({
        "rule": rule,
        "state": state(&h, today()),
        "history": h,
    });
    let mut resp = json_response(StatusCode::OK, &body);
    stamp(x, &mut resp, rec.id);
    Ok(resp)
}

fn stamp(x: &Exchange<'_>, resp: &mut Response<Body>, id: u64) {
    resp.headers_mut()
        .insert(DISCLOSURE, hyper::header::HeaderValue::from(id));
    resp.headers_mut().insert(TRACEPARENT, x.trace.header());
    x.gw.metrics.exchange(true, "");
}

//! Moving a case from one LVV to another: `POST
//! /v1/pilots/{from}/transfers/{to}` by a registrar of the sending pilot,
//! under the purpose both pilots' `[[transfer]]` tables name, with the
//! dossier as the body.
//!
//! The dossier goes the ordinary way ([`request::take_document`]): minimised
//! to the fields both pilots allow ([`crate::policy::agreement`]), recorded
//! once before a byte goes out, then to the receiving service's back-end or,
//! when it has none, its mailbox. The record is the sending pilot's
//! (`pilot`), names the receiving service (`recipient`, `service`) and both
//! pilots in its rule (`transfer:{from}->{to}`). Only after the receiving
//! side has taken the dossier does the stay move, in one transaction
//! ([`crate::storage::registry::Registry::transfer`]): a refused or failed
//! delivery moves nothing. The back-end's answer is not passed on: a
//! transfer discloses nothing to the sender.

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tracing::info;

use super::refusal::{Exchange, Refusal, Target};
use super::request::{self, Sent};
use super::trace::Trace;
use super::wire::{DISCLOSURE, TRACEPARENT, json_response};
use super::{answer, inbox};
use crate::gateway::{Body, Gateway};
use crate::identity::Peer;
use crate::policy::agreement::Agreed;
use crate::policy::partners::Partner;
use crate::policy::{Direction, Grant, Pilot};
use crate::problem;

/// The end reason of the sending pilot's stay.
pub const REASON: &str = "overdracht";

/// Serves one transfer.
pub async fn handle(
    gw: &Gateway,
    peer: &Peer,
    partner: &Partner,
    req: Request<Incoming>,
    from: &str,
    to: &str,
) -> Response<Body> {
    let snap = gw.policy.current();
    let agreed = snap.policy.transfer(from, to);
    let (provider, service) = match &agreed {
        Some(a) => (
            a.rule.service.provider.as_str(),
            a.rule.service.name.as_str(),
        ),
        None => ("ketenpoort", "overdracht"),
    };
    let target = Target {
        pilot: from,
        provider,
        service,
        rest: Vec::new(),
    };
    let trace = Trace::from_headers(req.headers());
    let mut x = Exchange::new(gw, &snap, partner, peer, &target, trace);
    match stages(&mut x, agreed.as_ref(), to, req).await {
        Ok(resp) => resp,
        Err(r) => x.refuse(r).await,
    }
}

fn pilot<'p>(x: &Exchange<'p>, id: &str) -> Result<&'p Pilot, Refusal> {
    x.snap
        .policy
        .pilots
        .get(id)
        .ok_or_else(|| Refusal::new(problem::UNKNOWN_PILOT, format!("no pilot '{id}'")))
}

/// Both covenants in force, signed and not revoked by the two parties.
fn in_force(p: &Pilot, party: &str) -> Result<(), Refusal> {
    let today = time::OffsetDateTime::now_utc().date();
    if today < p.covenant.valid_from {
        return Err(Refusal::new(
            problem::COVENANT_NOT_YET_VALID,
            format!("the covenant of '{}' has not started", p.id),
        ));
    }
    if today > p.covenant.valid_until {
        return Err(Refusal::new(
            problem::COVENANT_EXPIRED,
            format!("the covenant of '{}' has ended", p.id),
        ));
    }
    if p.standing.unsigned || p.standing.revoked.contains(party) {
        return Err(Refusal::new(
            problem::COVENANT_NOT_SIGNED,
            format!("the covenant of '{}' is not accepted in force", p.id),
        ));
    }
    Ok(())
}

/// Whether this partner may move a case from `from` to `to` now.
fn authorise<'p>(
    x: &mut Exchange<'p>,
    agreed: Option<&'p Agreed<'p>>,
    to: &str,
) -> Result<&'p Agreed<'p>, Refusal> {
    let from = pilot(x, x.target.pilot)?;
    pilot(x, to)?;
    let a = agreed.ok_or_else(|| {
        Refusal::new(
            problem::NO_TRANSFER,
            format!("'{}' and '{to}' do not both allow this transfer", from.id),
        )
    })?;
    in_force(a.from, &x.consumer.id)?;
    in_force(a.to, &a.rule.service.provider)?;
    if x.purpose != a.rule.purpose {
        return Err(Refusal::new(
            problem::NO_RULE,
            format!("a transfer happens under purpose '{}'", a.rule.purpose),
        ));
    }
    if !x.consumer.named_in(&a.rule.consumers) {
        return Err(Refusal::new(
            problem::NO_RULE,
            format!("{} is no registrar of pilot '{}'", x.consumer.id, from.id),
        ));
    }
    x.grant_by(&a.rule.id, &a.purpose.legal_basis, &a.from.version);
    Ok(a)
}

async fn stages<'p>(
    x: &mut Exchange<'p>,
    agreed: Option<&'p Agreed<'p>>,
    to: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    request::purpose(x, req.headers())?;
    if x.gw.witnessing.refuses() {
        return Err(Refusal::new(
            problem::LOG_NOT_WITNESSED,
            "the audit log has gone unwitnessed for too long; try again later",
        ));
    }
    request::no_query(req.uri())?;
    if req.method() != Method::POST {
        let mut r = Refusal::new(
            problem::METHOD_NOT_ALLOWED,
            format!("{} is not offered here", req.method()),
        );
        r.allow = Some("POST".into());
        return Err(r);
    }
    let a = authorise(x, agreed, to)?;
    let grant = Grant {
        pilot: a.from,
        purpose: a.purpose,
        rule: &a.rule,
        path_subject: None,
    };
    x.direction = Direction::Request;
    let headers = req.headers().clone();
    let (body, budget) = request::read_body(x.gw, req, x.gw.config.limits.max_body_bytes).await?;
    let doc = request::document(&headers, &body)?;
    let vnummer = grant.request_subject(&doc)?;
    x.subject = Some(super::refusal::subject_of(x, &vnummer)?);
    let p = x.gw.registry.pseudonym(&vnummer);
    drop(vnummer);
    if !stays(x, p).await?.iter().any(|s| *s == *a.from.id) {
        return Err(Refusal::new(
            problem::NO_OPEN_STAY,
            format!("the person has no open stay in '{}' to move", a.from.id),
        ));
    }
    let sent = request::take_document(x, &grant, &body, Sent::empty(budget)).await?;
    let record = sent.record.as_ref().map(|r| r.id).unwrap_or_default();
    let mut withheld = None;
    let delivered = if grant.service().path.is_none() {
        Some(inbox::deliver(x, &grant, sent).await?)
    } else {
        answer::fetch(x, &grant, Method::POST, &sent).await?;
        withheld = Some(sent.withheld);
        None
    };
    move_stay(x, p, &a.from.id, &a.to.id).await?;
    info!(partner = %x.consumer.id, from = %a.from.id, to = %a.to.id, record, "case transferred");
    let mut resp = match delivered {
        Some(r) => r,
        None => {
            let mut r = json_response(
                StatusCode::CREATED,
                &json!({"transferred": true, "disclosure": record}),
            );
            r.headers_mut()
                .insert(DISCLOSURE, HeaderValue::from(record));
            r.headers_mut().insert(TRACEPARENT, x.trace.header());
            if let Some(w) = withheld {
                w.set_headers(r.headers_mut());
            }
            x.gw.metrics.exchange(true, "");
            r
        }
    };
    resp.headers_mut()
        .insert(DISCLOSURE, HeaderValue::from(record));
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

/// Ends the stay in `from` and opens it in `to`, in one transaction.
async fn move_stay(x: &Exchange<'_>, p: [u8; 32], from: &str, to: &str) -> Result<(), Refusal> {
    let registry = x.gw.registry.clone();
    let (from, to) = (from.to_string(), to.to_string());
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let moved =
        tokio::task::spawn_blocking(move || registry.transfer(&p, &from, &to, &today, REASON))
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                Refusal::new(
                    problem::REGISTRY_UNAVAILABLE,
                    "the dossier was delivered, the registry cannot be written",
                )
            })?;
    if moved {
        Ok(())
    } else {
        Err(Refusal::new(
            problem::NO_OPEN_STAY,
            "the stay ended while the dossier was delivered",
        ))
    }
}

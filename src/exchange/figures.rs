//! `GET /v1/figures?pilot=P&from=YYYY-MM&to=YYYY-MM`: the programme's
//! figures from the LVV registry ([`crate::figures`]), for the partners the
//! pilot's `[registration]` table names as `figures_readers`, never people.
//!
//! Each request is an audit record (service `ketenpoort/figures`, no
//! subject, the hash of the figures delivered), made durable before the
//! answer leaves, as any disclosure; a refused request is recorded too.

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use super::refusal::{Exchange, Refusal, Target};
use super::trace::Trace;
use super::wire::{DISCLOSURE, TRACEPARENT, json_response};
use crate::audit::Decision;
use crate::figures::{self, Ask};
use crate::gateway::{Body, Gateway};
use crate::identity::{Peer, sha256};
use crate::policy::Direction;
use crate::policy::partners::Partner;
use crate::problem;

/// The service name figures records carry (`ketenpoort/figures`).
pub const SERVICE: &str = "figures";

/// Serves one figures request.
pub async fn handle(
    gw: &Gateway,
    peer: &Peer,
    partner: &Partner,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != hyper::Method::GET {
        return problem::respond(
            problem::METHOD_NOT_ALLOWED,
            format!("{} is not offered here", req.method()),
        );
    }
    let snap = gw.policy.current();
    let asked = figures::ask(req.uri().query());
    let target = Target::own(asked.as_ref().map_or("", |a| a.pilot.as_str()), SERVICE);
    let trace = Trace::from_headers(req.headers());
    let mut x = Exchange::new(gw, &snap, partner, peer, &target, trace);
    let result = match &asked {
        Ok(a) => answer(&mut x, a).await,
        Err(e) => Err(Refusal::new(problem::INVALID_FIGURES_QUERY, e.clone())),
    };
    match result {
        Ok(resp) => resp,
        Err(r) => x.refuse(r).await,
    }
}

async fn answer(x: &mut Exchange<'_>, a: &Ask) -> Result<Response<Body>, Refusal> {
    let pilot =
        x.snap.policy.pilots.get(&a.pilot).ok_or_else(|| {
            Refusal::new(problem::UNKNOWN_PILOT, format!("no pilot '{}'", a.pilot))
        })?;
    let reg = pilot.registration.clone().ok_or_else(|| {
        Refusal::new(
            problem::NOT_A_FIGURES_READER,
            "this pilot keeps no registration of stays",
        )
    })?;
    x.purpose.clone_from(&reg.purpose);
    if !x.consumer.named_in(&reg.figures_readers) {
        return Err(Refusal::new(
            problem::NOT_A_FIGURES_READER,
            format!("{} reads no figures of this pilot", x.consumer.id),
        ));
    }
    let basis = pilot
        .purposes
        .get(&reg.purpose)
        .map(|p| p.legal_basis.clone())
        .unwrap_or_default();
    x.grant_by("figures", &basis, &pilot.version);
    let registry = x.gw.registry.clone();
    let ask = a.clone();
    let reasons = reg.end_reasons.clone();
    let figures =
        tokio::task::spawn_blocking(move || figures::of_registry(&registry, &ask, &reasons))
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                Refusal::new(problem::REGISTRY_UNAVAILABLE, "the registry cannot be read")
            })?;
    let value = serde_json::to_value(&figures).unwrap_or_default();
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let mut e = x.entry(Direction::Response);
    e.decision = Decision::Disclosed;
    e.disclosed = vec!["figures".into()];
    e.payload_sha256 = Some(sha256(&body));
    let rec = x.record(e, "delivered").await?;
    let mut resp = json_response(StatusCode::OK, &value);
    resp.headers_mut()
        .insert(DISCLOSURE, HeaderValue::from(rec.id));
    resp.headers_mut().insert(TRACEPARENT, x.trace.header());
    x.gw.metrics.exchange(true, "");
    Ok(resp)
}

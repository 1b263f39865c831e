//! The disclosure pipeline: the partner API, in the order data flows.
//!
//! 1. identity: the connection's partner ([`crate::identity`]), or 403;
//!    refusals before the pipeline are recorded, folded ([`stranger`]);
//! 2. route: pilot, provider, service and path values ([`route`]);
//! 3. purpose: the `Ketenpoort-Purpose` header ([`request::purpose`]); and
//!    when the log has gone unwitnessed for too long (`fail_closed_after`),
//!    a refusal ([`crate::witnessing::Witnessing::refuses`]);
//! 4. policy: [`crate::policy::PolicySet::authorise`], the one place that
//!    decides: the rule, the method, the path, the subject; and, for a rule
//!    that rests on consent, [`crate::policy::Grant::consent`] once the
//!    subject is known ([`consent_check::require`]);
//! 5. request: bounded, strict JSON ([`mod@json`]), minimised caller → provider,
//!    recorded before a byte goes out ([`request::take`]);
//! 6. forward: to the provider's back-end over mutual TLS ([`answer::fetch`],
//!    [`forward`]), or into its mailbox ([`inbox::deliver`]);
//! 7. answer: strict JSON, minimised provider → caller, one record per data
//!    subject, durable before the answer leaves ([`answer::deliver`]).
//!
//! The LVV registry has routes of its own: stays and checks
//! ([`registration`]), moving a case between pilots through the same
//! request path ([`transfer`]), and figures, never people ([`figures`]).
//!
//! Partners read the log's lines they are party to as Logboek
//! Dataverwerkingen, through the standard's read extension ([`logboek`]).
//!
//! Beside the pipeline, [`public`] serves the log's public state (the
//! published checkpoint, consistency proofs, hash tiles) to any partner, and
//! partners read and sign their pilots' covenants ([`covenant`]).
//!
//! Each stage passes its result on or returns a [`Refusal`]; `run` is that
//! chain, and [`refusal::Exchange::refuse`] the one place that records and
//! answers every refusal (RFC 9457 problem+json). When the audit log cannot
//! write, the answer is 503 and nothing is delivered. One exchange uses one
//! policy snapshot from start to end.

pub mod answer;
pub mod consent;
pub mod consent_check;
pub mod covenant;
pub mod evidence;
pub mod figures;
pub mod forward;
pub mod inbox;
pub mod json;
pub mod logboek;
pub mod public;
pub mod refusal;
pub mod registration;
pub mod request;
pub mod route;
pub mod stranger;
pub mod trace;
pub mod transfer;
pub mod wire;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

pub use refusal::{Refusal, Target};
pub use trace::Trace;
pub use wire::{
    BODY_TIMEOUT, CONSUMER, DISCLOSURE, PILOT, PURPOSE, TRACEPARENT, WITHHELD, WITHHELD_UNDECLARED,
    Withheld,
};

use crate::conn::ConnState;
use crate::gateway::{Body, Gateway};
use crate::identity::{IdentityError, Peer};
use crate::policy::partners::Partner;
use crate::problem::{self, Kind};
use refusal::Exchange;
use route::Route;
use wire::json_response;

/// Answers a refusal before the pipeline, recorded (folded per source and
/// minute, see [`stranger`]).
async fn refuse_stranger(
    gw: &Gateway,
    peer: &Peer,
    state: &ConnState,
    kind: Kind,
    detail: String,
) -> Response<Body> {
    let who = stranger::Stranger {
        sender: peer
            .partner
            .as_ref()
            .map_or_else(|_| "unknown".to_string(), |p| p.id.to_string()),
        cert_sha256: Some(peer.cert_sha256),
    };
    gw.metrics.exchange(false, kind.slug);
    let id = stranger::record(gw, state.addr.ip(), kind.slug, who).await;
    let mut resp = problem::respond(kind, detail);
    if let Some(id) = id {
        resp.headers_mut().insert(DISCLOSURE, HeaderValue::from(id));
    }
    resp
}

/// `GET /v1/whoami`: the calling partner as the gateway knows it.
fn whoami(partner: &Partner, peer: &Peer) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "id": partner.id,
            "name": partner.name,
            "kind": partner.kind.as_str(),
            "certificate_sha256": hex::encode(peer.cert_sha256),
        }),
    )
}

/// Answers one request on the partner API, with its FSC transaction id:
/// the caller's, or one made here; a malformed one is refused (recorded,
/// folded like every refusal before the pipeline) before anything else.
pub async fn handle(
    gw: &Gateway,
    peer: &Peer,
    state: &ConnState,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let Ok(id) = trace::take_transaction_id(req.headers_mut()) else {
        return refuse_stranger(
            gw,
            peer,
            state,
            problem::INVALID_TRANSACTION_ID,
            "Fsc-Transaction-Id must be one UUIDv7 in its hyphenated form, or absent".into(),
        )
        .await;
    };
    let mut resp = dispatch(gw, peer, state, req).await;
    resp.headers_mut().insert(wire::FSC_TRANSACTION_ID, id);
    resp
}

/// Routes one request on the partner API.
async fn dispatch(
    gw: &Gateway,
    peer: &Peer,
    state: &ConnState,
    req: Request<Incoming>,
) -> Response<Body> {
    if !state.still_trusted(&gw.tls) {
        return refuse_stranger(
            gw,
            peer,
            state,
            problem::CERTIFICATE_REVOKED,
            "this connection's certificate was revoked or has expired".into(),
        )
        .await;
    }
    let partner = match &peer.partner {
        Ok(p) => p.clone(),
        Err(e) => {
            // Nothing more is served to a certificate of no partner.
            state.close();
            let (kind, detail) = match e {
                IdentityError::Ambiguous(ids) => (
                    problem::AMBIGUOUS_PARTNER,
                    format!("the certificate matches partners {}", ids.join(", ")),
                ),
                e => (problem::UNKNOWN_PARTNER, e.to_string()),
            };
            return refuse_stranger(gw, peer, state, kind, detail).await;
        }
    };
    // The URI's bytes are shared with the request's: a clone copies none.
    let uri = req.uri().clone();
    let route = match route::parse(uri.path()) {
        Ok(r) => r,
        Err(route::RouteError::BadSegment) => {
            return refuse_stranger(
                gw,
                peer,
                state,
                problem::BAD_ROUTE,
                "use plain segments: letters, digits, '-', '.', '_', '~'".into(),
            )
            .await;
        }
        Err(route::RouteError::NotFound) => {
            return refuse_stranger(gw, peer, state, problem::NOT_FOUND, "no such route".into())
                .await;
        }
    };
    let method = req.method().clone();
    match route {
        Route::Whoami if method == Method::GET => whoami(&partner, peer),
        Route::OpenApi if method == Method::GET => openapi(),
        Route::Inbox if method == Method::GET => inbox::list(gw, &partner, req.uri().query()).await,
        Route::InboxItem(id) if method == Method::GET || method == Method::DELETE => {
            inbox::item(gw, &partner, id, method == Method::DELETE).await
        }
        Route::AuditCheckpoint if method == Method::GET => public::checkpoint(gw).await,
        Route::AuditKeys if method == Method::GET => public::keys(gw),
        Route::AuditConsistency if method == Method::GET => {
            public::consistency(gw, req.uri().query()).await
        }
        Route::AuditTile(segs) if method == Method::GET => public::tile(gw, &segs).await,
        Route::Covenant(pilot) if method == Method::GET => {
            covenant::status(gw, &partner, pilot).await
        }
        Route::CovenantVersion(pilot, v) if method == Method::GET => {
            covenant::version(gw, &partner, pilot, v).await
        }
        Route::CovenantSignatures(pilot, v) if method == Method::POST => {
            covenant::sign(gw, &partner, pilot, v, req).await
        }
        r @ (Route::Registration { .. } | Route::Transfer { .. } | Route::Figures) => {
            lvv(gw, peer, &partner, req, r).await
        }
        Route::Consent {
            pilot,
            vnummer,
            rule,
        } => consent::handle(gw, peer, &partner, req, (pilot, vnummer, rule)).await,
        Route::Evidence(id) if method == Method::GET => evidence::partner(gw, &partner, id).await,
        Route::Logboek => logboek::handle(gw, peer, &partner, req).await,
        Route::Whoami
        | Route::OpenApi
        | Route::Inbox
        | Route::InboxItem(_)
        | Route::Evidence(_)
        | Route::AuditCheckpoint
        | Route::AuditKeys
        | Route::AuditConsistency
        | Route::AuditTile(_)
        | Route::Covenant(_)
        | Route::CovenantVersion(..)
        | Route::CovenantSignatures(..) => problem::respond(
            problem::METHOD_NOT_ALLOWED,
            format!("{method} is not offered here"),
        ),
        Route::Service {
            pilot,
            provider,
            service,
            rest,
        } => {
            let target = Target {
                pilot,
                provider,
                service,
                rest,
            };
            run(gw, peer, &partner, req, target).await
        }
    }
}

/// `GET /v1/openapi.json`: the partner API's OpenAPI document.
fn openapi() -> Response<Body> {
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
        wire::OPENAPI_JSON.as_bytes(),
    )));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The LVV registry's routes: stays and checks, transfers, figures (each
/// checks its own method).
async fn lvv(
    gw: &Gateway,
    peer: &Peer,
    partner: &Partner,
    req: Request<Incoming>,
    route: Route<'_>,
) -> Response<Body> {
    match route {
        Route::Registration { pilot, vnummer } => {
            registration::handle(gw, peer, partner, req, pilot, vnummer).await
        }
        Route::Transfer { from, to } => transfer::handle(gw, peer, partner, req, from, to).await,
        _ => figures::handle(gw, peer, partner, req).await,
    }
}

/// One exchange: the stages in order, and the refusal of whichever stops it.
async fn run(
    gw: &Gateway,
    peer: &Peer,
    consumer: &Partner,
    req: Request<Incoming>,
    target: Target<'_>,
) -> Response<Body> {
    let snap = gw.policy.current();
    let trace = Trace::from_headers(req.headers());
    let mut x = Exchange::new(gw, &snap, consumer, peer, &target, trace);
    match stages(&mut x, req).await {
        Ok(resp) => resp,
        Err(refusal) => x.refuse(refusal).await,
    }
}

async fn stages(x: &mut Exchange<'_>, req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
    request::purpose(x, req.headers())?;
    if x.gw.witnessing.refuses() {
        return Err(Refusal::new(
            problem::LOG_NOT_WITNESSED,
            "no checkpoint of the audit log has reached its quorum of witness cosignatures for longer than the gateway allows; try again later",
        ));
    }
    request::no_query(req.uri())?;
    let method = req.method().clone();
    let grant = x.authorise(&method)?;
    let sent = request::take(x, &grant, req).await?;
    if grant.service().path.is_none() {
        return inbox::deliver(x, &grant, sent).await;
    }
    let answer = answer::fetch(x, &grant, method, &sent).await?;
    answer::deliver(x, &grant, answer, sent).await
}

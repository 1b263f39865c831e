//! The disclosure pipeline: the partner API, in the order data flows.
//!
//! 1. identity: the connection's partner ([`crate::identity`]), or 403;
//! 2. route: pilot, provider, service and path values ([`route`]);
//! 3. purpose: the `Ketenpoort-Purpose` header;
//! 4. policy: the rule for (pilot, caller, service, purpose), or a refusal;
//! 5. request: bounded, strict JSON ([`json`]), minimised caller → provider,
//!    recorded in the audit log before a byte goes out;
//! 6. forward: to the provider's back-end over mutual TLS ([`forward`]), or
//!    into its mailbox ([`mailbox`]);
//! 7. response: strict JSON, minimised provider → caller, one record per data
//!    subject, durable before the answer leaves.
//!
//! Every refusal is recorded like a disclosure, with its reason, and answered
//! as RFC 9457 problem+json. When the audit log cannot write, the answer is
//! 503 and nothing is delivered.

pub mod forward;
pub mod json;
pub mod mailbox;
pub mod route;
pub mod stranger;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::audit::{Decision, Entry, Receipt};
use crate::config::Partner;
use crate::conn::ConnState;
use crate::identity::{IdentityError, Peer, sha256};
use crate::policy::service::{Part, Service};
use crate::policy::{Direction, Grant, Query, RefusalReason};
use crate::problem::{self, Kind};
use crate::server::{Body, Gateway};
use route::Route;

/// The header that states the purpose of an exchange.
pub const PURPOSE: HeaderName = HeaderName::from_static("ketenpoort-purpose");
/// The audit record id(s) of what was delivered.
pub const DISCLOSURE: HeaderName = HeaderName::from_static("ketenpoort-disclosure");
/// The declared field paths removed on the way.
pub const WITHHELD: HeaderName = HeaderName::from_static("ketenpoort-withheld");
/// How many undeclared keys were removed: a count, since key names are data.
pub const WITHHELD_UNDECLARED: HeaderName =
    HeaderName::from_static("ketenpoort-withheld-undeclared");
/// Tells the provider who asks.
pub const CONSUMER: HeaderName = HeaderName::from_static("ketenpoort-consumer");
/// Tells the provider for which pilot.
pub const PILOT: HeaderName = HeaderName::from_static("ketenpoort-pilot");
/// W3C trace context.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Time a caller has to send its whole request body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Most mailbox documents listed per page.
const INBOX_PAGE: usize = 100;

/// W3C trace context of one exchange: the caller's trace (or a new one), and
/// the span of the gateway's hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The gateway's span.
    pub span_id: [u8; 8],
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The system RNG does not fail on Linux; a zero id would still be unique
    // enough for tracing, never for security.
    let _ = SystemRandom::new().fill(&mut b);
    b
}

fn hex_field<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if s.len() != N * 2 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode_to_slice(s, &mut out).ok()?;
    (out != [0u8; N]).then_some(out)
}

impl Trace {
    /// The caller's `traceparent` if it is valid, else a new trace. A garbage
    /// header is ignored, not an error: tracing must never block an exchange.
    pub fn from_headers(h: &HeaderMap) -> Self {
        let parsed = h
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| {
                let mut parts = s.trim().split('-');
                let (v, t, p, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                if v != "00"
                    || f.len() != 2
                    || !f.bytes().all(|b| b.is_ascii_hexdigit())
                    || parts.next().is_some()
                {
                    return None;
                }
                hex_field::<8>(p)?;
                hex_field::<16>(t)
            });
        Self {
            trace_id: parsed.unwrap_or_else(random),
            span_id: random(),
        }
    }

    /// The `traceparent` for the next hop.
    pub fn header(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "00-{}-{}-01",
            hex::encode(self.trace_id),
            hex::encode(self.span_id)
        ))
        .unwrap_or_else(|_| {
            HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
        })
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(value).unwrap_or_default(),
    )));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

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
            .map_or_else(|_| "unknown".to_string(), |p| p.id.clone()),
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

/// Routes one request on the partner API.
pub async fn handle(
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
    let path = req.uri().path().to_string();
    let route = match route::parse(&path) {
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
        Route::Whoami if method == Method::GET => json_response(
            StatusCode::OK,
            &json!({
                "id": partner.id,
                "name": partner.name,
                "kind": partner.kind.as_str(),
                "certificate_sha256": hex::encode(peer.cert_sha256),
            }),
        ),
        Route::Inbox if method == Method::GET => inbox_list(gw, &partner, req.uri().query()).await,
        Route::InboxItem(id) if method == Method::GET || method == Method::DELETE => {
            inbox_item(gw, &partner, id, method == Method::DELETE).await
        }
        Route::Whoami | Route::Inbox | Route::InboxItem(_) => problem::respond(
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
                pilot: pilot.to_string(),
                provider: provider.to_string(),
                service: service.to_string(),
                rest: rest.iter().map(|s| s.to_string()).collect(),
            };
            exchange(gw, peer, &partner, req, target).await
        }
    }
}

/// What stayed behind in one exchange: declared paths by name, the rest as
/// a count.
#[derive(Debug, Default)]
struct Withheld {
    declared: Vec<String>,
    undeclared: u32,
}

impl Withheld {
    fn set_headers(mut self, h: &mut HeaderMap) {
        self.declared.sort();
        self.declared.dedup();
        if !self.declared.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.declared.join(","))
        {
            h.insert(WITHHELD, v);
        }
        if self.undeclared > 0 {
            h.insert(WITHHELD_UNDECLARED, HeaderValue::from(self.undeclared));
        }
    }
}

/// `Ketenpoort-Disclosure`: the request's record, then the answer's records,
/// runs of consecutive ids written `first-last` (one batch makes them
/// consecutive), so an answer about many subjects keeps a small header.
fn disclosure_header(request: Option<u64>, ids: &[u64]) -> String {
    let mut parts: Vec<String> = request.map(|r| r.to_string()).into_iter().collect();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j].checked_add(1) == Some(ids[j + 1]) {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Where an exchange goes, from the route.
struct Target {
    pilot: String,
    provider: String,
    service: String,
    rest: Vec<String>,
}

/// Everything the audit records of one exchange share.
struct Ctx<'a> {
    gw: &'a Gateway,
    consumer: &'a Partner,
    peer: &'a Peer,
    target: &'a Target,
    purpose: String,
    trace: Trace,
    subject: Option<[u8; 32]>,
}

impl Ctx<'_> {
    /// An entry for data going `d`.
    fn entry(&self, d: Direction) -> Entry {
        let (sender, recipient) = match d {
            Direction::Request => (self.consumer.id.as_str(), self.target.provider.as_str()),
            Direction::Response => (self.target.provider.as_str(), self.consumer.id.as_str()),
        };
        let mut e = Entry::exchange(
            &self.target.pilot,
            sender,
            recipient,
            &self.purpose,
            &format!("{}/{}", self.target.provider, self.target.service),
        );
        e.subject = self.subject;
        e.trace_id = Some(self.trace.trace_id);
        e.span_id = Some(self.trace.span_id);
        match d {
            Direction::Request => e.sender_cert_sha256 = Some(self.peer.cert_sha256),
            Direction::Response => e.recipient_cert_sha256 = Some(self.peer.cert_sha256),
        }
        e
    }

    fn with_grant(&self, d: Direction, g: &Grant<'_>) -> Entry {
        let mut e = self.entry(d);
        e.legal_basis = g.purpose.legal_basis.clone();
        e.rule_id = g.rule.id.clone();
        e.policy_version = g.pilot.version.clone();
        e
    }

    /// Records the refusal and answers it; 503 if even that cannot be recorded.
    async fn refuse(
        &self,
        mut entry: Entry,
        kind: Kind,
        reason: &str,
        detail: impl Into<String>,
    ) -> Response<Body> {
        entry.decision = Decision::Refused;
        entry.reason = reason.to_string();
        let detail = detail.into();
        self.gw.metrics.exchange(false, reason);
        match self.gw.audit.record(entry).await {
            Ok(r) => {
                info!(partner = %self.consumer.id, pilot = %self.target.pilot, service = %self.target.service, reason, record = r.id, "exchange refused");
                let mut resp = problem::respond(kind, detail);
                resp.headers_mut()
                    .insert(DISCLOSURE, HeaderValue::from(r.id));
                resp.headers_mut().insert(TRACEPARENT, self.trace.header());
                resp
            }
            Err(e) => {
                warn!(partner = %self.consumer.id, error = %e, "refusal could not be recorded");
                problem::respond(
                    problem::AUDIT_UNAVAILABLE,
                    "the audit log cannot write; try again later",
                )
            }
        }
    }
}

fn refusal_kind(r: RefusalReason) -> Kind {
    match r {
        RefusalReason::UnknownPilot => problem::UNKNOWN_PILOT,
        RefusalReason::UnknownProvider => problem::UNKNOWN_PROVIDER,
        RefusalReason::UnknownService => problem::UNKNOWN_SERVICE,
        RefusalReason::UnknownPurpose => problem::UNKNOWN_PURPOSE,
        RefusalReason::PurposeNotInCovenant => problem::PURPOSE_NOT_IN_COVENANT,
        RefusalReason::PartnerNotInPilot => problem::PARTNER_NOT_IN_PILOT,
        RefusalReason::CovenantExpired => problem::COVENANT_EXPIRED,
        RefusalReason::CovenantNotYetValid => problem::COVENANT_NOT_YET_VALID,
        RefusalReason::NoRule => problem::NO_RULE,
    }
}

/// A V-nummer: exactly ten digits.
pub fn valid_vnummer(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A purpose id as the header must carry it.
fn purpose_of(h: &HeaderMap) -> Result<String, (Kind, &'static str)> {
    let mut values = h.get_all(&PURPOSE).iter();
    let Some(v) = values.next() else {
        return Err((problem::MISSING_PURPOSE, "missing-purpose"));
    };
    if values.next().is_some() {
        return Err((problem::INVALID_PURPOSE, "invalid-purpose"));
    }
    let s = v
        .to_str()
        .map_err(|_| (problem::INVALID_PURPOSE, "invalid-purpose"))?;
    if crate::config::valid_id(s) {
        Ok(s.to_string())
    } else {
        Err((problem::INVALID_PURPOSE, "invalid-purpose"))
    }
}

/// The subject from the path, when the template places the subject field there.
fn subject_in_path(svc: &Service, rest: &[String]) -> Option<String> {
    let name = match svc.subject.0.as_slice() {
        [one] => one.name.as_str(),
        _ => return None,
    };
    let path = svc.path.as_ref()?;
    let pos = path
        .parts
        .iter()
        .filter(|p| matches!(p, Part::Var(_)))
        .position(|p| matches!(p, Part::Var(v) if v == name))?;
    rest.get(pos).cloned()
}

fn method_has_body(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

/// How long a request waits for room in the body budget before 503.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a request body within the size and time limits, after taking its
/// room in the gateway-wide budget of buffered body bytes (held until the
/// returned permit is dropped, at the end of the exchange).
async fn read_body(
    gw: &Gateway,
    req: Request<Incoming>,
    max: usize,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), (Kind, &'static str, String)> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(len) = declared
        && len > max as u64
    {
        return Err((
            problem::BODY_TOO_LARGE,
            "body-too-large",
            format!("at most {max} bytes"),
        ));
    }
    let need = match declared {
        Some(0) => 0,
        Some(len) => len as usize,
        // Without a length (HTTP/2 without content-length, chunked), room
        // for the largest body allowed; a GET without body has end-of-stream.
        None if hyper::body::Body::is_end_stream(req.body()) => 0,
        None => max,
    };
    let permit = if need == 0 {
        None
    } else {
        let kib = u32::try_from(need.div_ceil(1024)).unwrap_or(u32::MAX);
        match tokio::time::timeout(BUDGET_WAIT, gw.body_budget.clone().acquire_many_owned(kib))
            .await
        {
            Ok(Ok(p)) => Some(p),
            _ => {
                return Err((
                    problem::BUSY,
                    "busy",
                    "too many request bodies are being received; try again shortly".into(),
                ));
            }
        }
    };
    // A body dribbled in slowly must not hold a connection slot for long.
    let collected =
        tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), max).collect()).await;
    let Ok(collected) = collected else {
        return Err((
            problem::BODY_TIMEOUT,
            "body-timeout",
            format!("the body must arrive within {} s", BODY_TIMEOUT.as_secs()),
        ));
    };
    match collected {
        Ok(b) => Ok((b.to_bytes(), permit)),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err((
                problem::BODY_TOO_LARGE,
                "body-too-large",
                format!("at most {max} bytes"),
            ))
        }
        Err(_) => Err((
            problem::MALFORMED_JSON,
            "malformed-json",
            "the body could not be read".into(),
        )),
    }
}

fn is_json(h: &HeaderMap) -> bool {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

/// One exchange, from purpose to delivered answer.
async fn exchange(
    gw: &Gateway,
    peer: &Peer,
    consumer: &Partner,
    req: Request<Incoming>,
    target: Target,
) -> Response<Body> {
    let snap = gw.policy.current();
    let mut ctx = Ctx {
        gw,
        consumer,
        peer,
        target: &target,
        purpose: String::new(),
        trace: Trace::from_headers(req.headers()),
        subject: None,
    };
    let method = req.method().clone();

    // 3. purpose
    match purpose_of(req.headers()) {
        Ok(p) => ctx.purpose = p,
        Err((kind, code)) => {
            return ctx
                .refuse(
                    ctx.entry(Direction::Response),
                    kind,
                    code,
                    "send one Ketenpoort-Purpose header with a purpose id",
                )
                .await;
        }
    }
    if req.uri().query().is_some() {
        return ctx
            .refuse(
                ctx.entry(Direction::Response),
                problem::QUERY_NOT_ALLOWED,
                "query-not-allowed",
                "the query string would bypass minimisation",
            )
            .await;
    }

    // 4. policy: 404s, then the method, then the covenant.
    let q = Query {
        pilot: &target.pilot,
        consumer: &consumer.id,
        provider: &target.provider,
        service: &target.service,
        purpose: &ctx.purpose,
        today: time::OffsetDateTime::now_utc().date(),
    };
    let granted = snap.policy.authorise(&q);
    if let Err(r) = &granted
        && matches!(
            r.reason,
            RefusalReason::UnknownPilot
                | RefusalReason::UnknownProvider
                | RefusalReason::UnknownService
        )
    {
        return ctx
            .refuse(
                ctx.entry(Direction::Response),
                refusal_kind(r.reason),
                r.reason.code(),
                r.detail.clone(),
            )
            .await;
    }
    let Some(svc) = snap
        .policy
        .partners
        .get(&target.provider)
        .and_then(|p| p.service(&target.service))
        .cloned()
    else {
        return problem::respond(problem::UNKNOWN_SERVICE, "no such service");
    };
    if !svc.methods.iter().any(|m| m == method.as_str()) {
        let mut resp = ctx
            .refuse(
                ctx.entry(Direction::Response),
                problem::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!("{} takes {}", svc.qualified(), svc.methods.join(", ")),
            )
            .await;
        if let Ok(v) = HeaderValue::from_str(&svc.methods.join(", ")) {
            resp.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return resp;
    }
    let arity = svc.path.as_ref().map_or(0, |p| p.arity());
    if target.rest.len() != arity {
        return ctx
            .refuse(
                ctx.entry(Direction::Response),
                problem::NOT_FOUND,
                "not-found",
                format!("{} takes {arity} path value(s)", svc.qualified()),
            )
            .await;
    }
    let path_subject = subject_in_path(&svc, &target.rest);
    if let Some(s) = &path_subject {
        if !valid_vnummer(s) {
            return ctx
                .refuse(
                    ctx.entry(Direction::Response),
                    problem::INVALID_SUBJECT,
                    "invalid-subject",
                    "a V-nummer has ten digits",
                )
                .await;
        }
        ctx.subject = Some(gw.audit.subject(s));
    }
    let grant = match granted {
        Ok(g) => g,
        Err(r) => {
            return ctx
                .refuse(
                    ctx.entry(Direction::Response),
                    refusal_kind(r.reason),
                    r.reason.code(),
                    r.detail,
                )
                .await;
        }
    };

    // 5. request body: bounded, strict, minimised, recorded.
    let headers = req.headers().clone();
    let (body, _budget) = match read_body(gw, req, gw.config.limits.max_body_bytes).await {
        Ok(b) => b,
        Err((kind, code, detail)) => {
            return ctx
                .refuse(
                    ctx.with_grant(Direction::Request, &grant),
                    kind,
                    code,
                    detail,
                )
                .await;
        }
    };
    let mut request_record: Option<Receipt> = None;
    let mut withheld = Withheld::default();
    let mut room: Option<mailbox::Reservation> = None;
    let forward_body = if method_has_body(&method) {
        if !is_json(&headers) {
            return ctx
                .refuse(
                    ctx.with_grant(Direction::Request, &grant),
                    problem::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "send Content-Type: application/json",
                )
                .await;
        }
        let doc = match json::parse(&body) {
            Ok(d) if d.is_object() => d,
            Ok(_) => {
                return ctx
                    .refuse(
                        ctx.with_grant(Direction::Request, &grant),
                        problem::MALFORMED_JSON,
                        "malformed-json",
                        "the document must be a JSON object",
                    )
                    .await;
            }
            Err(e) => {
                return ctx
                    .refuse(
                        ctx.with_grant(Direction::Request, &grant),
                        problem::MALFORMED_JSON,
                        "malformed-json",
                        e.0,
                    )
                    .await;
            }
        };
        match (svc.subject_of(&doc), &path_subject) {
            (Some(s), _) if !valid_vnummer(&s) => {
                return ctx
                    .refuse(
                        ctx.with_grant(Direction::Request, &grant),
                        problem::INVALID_SUBJECT,
                        "invalid-subject",
                        "a V-nummer has ten digits",
                    )
                    .await;
            }
            (Some(s), Some(p)) if s != *p => {
                return ctx
                    .refuse(
                        ctx.with_grant(Direction::Request, &grant),
                        problem::INVALID_SUBJECT,
                        "invalid-subject",
                        "the document names another subject than the path",
                    )
                    .await;
            }
            (Some(s), _) => ctx.subject = Some(gw.audit.subject(&s)),
            (None, Some(_)) => {}
            (None, None) => {
                return ctx
                    .refuse(
                        ctx.with_grant(Direction::Request, &grant),
                        problem::SUBJECT_MISSING,
                        "subject-missing",
                        format!("the document needs its '{}'", svc.subject),
                    )
                    .await;
            }
        }
        let m = grant.minimise(Direction::Request, &doc, &snap.keys);
        gw.metrics
            .shape_violations(&grant.rule.service.qualified(), m.shape_violations);
        let bytes = Bytes::from(serde_json::to_vec(&m.value).unwrap_or_default());
        if svc.path.is_none() {
            match gw.mailbox.reserve(&target.provider, bytes.len()) {
                Ok(r) => room = Some(r),
                Err(full) => {
                    return ctx
                        .refuse(
                            ctx.with_grant(Direction::Request, &grant),
                            problem::MAILBOX_FULL,
                            "mailbox-full",
                            full.to_string(),
                        )
                        .await;
                }
            }
        }
        let mut e = ctx.with_grant(Direction::Request, &grant);
        e.decision = Decision::Disclosed;
        e.disclosed = m.disclosed;
        e.withheld = m.withheld.clone();
        e.withheld_undeclared = m.undeclared;
        e.payload_sha256 = Some(sha256(&bytes));
        match gw.audit.record(e).await {
            Ok(r) => request_record = Some(r),
            Err(err) => {
                warn!(partner = %consumer.id, error = %err, "request disclosure could not be recorded; nothing forwarded");
                return problem::respond(
                    problem::AUDIT_UNAVAILABLE,
                    "the audit log cannot write; nothing was forwarded",
                );
            }
        }
        withheld = Withheld {
            declared: m.withheld,
            undeclared: m.undeclared,
        };
        Some((bytes, m.value))
    } else {
        if !body.is_empty() {
            return ctx
                .refuse(
                    ctx.with_grant(Direction::Request, &grant),
                    problem::UNEXPECTED_BODY,
                    "unexpected-body",
                    format!("{method} carries no body"),
                )
                .await;
        }
        if method == Method::DELETE {
            // Asking a provider to delete tells it about the subject: recorded.
            let mut e = ctx.with_grant(Direction::Request, &grant);
            e.decision = Decision::Disclosed;
            match gw.audit.record(e).await {
                Ok(r) => request_record = Some(r),
                Err(_) => {
                    return problem::respond(
                        problem::AUDIT_UNAVAILABLE,
                        "the audit log cannot write; nothing was forwarded",
                    );
                }
            }
        }
        None
    };

    // 6. forward, or keep in the mailbox.
    let Some(template) = &svc.path else {
        return deliver_to_mailbox(&ctx, &grant, forward_body, request_record, withheld, room)
            .await;
    };
    let Some(backend) = snap
        .policy
        .partners
        .get(&target.provider)
        .and_then(|p| p.backend.clone())
    else {
        return ctx
            .refuse(
                ctx.with_grant(Direction::Response, &grant),
                problem::BACKEND_UNREACHABLE,
                "backend-unreachable",
                "the provider has no back-end",
            )
            .await;
    };
    let values: Vec<&str> = target.rest.iter().map(String::as_str).collect();
    let url = format!("{backend}{}", template.fill(&values).unwrap_or_default());
    let mut out_headers = HeaderMap::new();
    out_headers.insert(TRACEPARENT, ctx.trace.header());
    if let Ok(v) = HeaderValue::from_str(&ctx.purpose) {
        out_headers.insert(PURPOSE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&consumer.id) {
        out_headers.insert(CONSUMER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&target.pilot) {
        out_headers.insert(PILOT, v);
    }
    let client = gw.tls.current().backends.clone();
    let answer = forward::call(
        &client,
        method.clone(),
        &url,
        out_headers,
        forward_body.map(|(b, _)| b).unwrap_or_default(),
        gw.config.limits.backend_timeout,
        gw.config.limits.max_response_bytes,
    )
    .await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let (kind, code) = match e {
                forward::ForwardError::Timeout => (problem::BACKEND_TIMEOUT, "backend-timeout"),
                forward::ForwardError::BadCertificate => {
                    (problem::BACKEND_CERTIFICATE, "backend-certificate")
                }
                forward::ForwardError::TooLarge => {
                    (problem::BACKEND_BAD_ANSWER, "backend-too-large")
                }
                _ => (problem::BACKEND_UNREACHABLE, "backend-unreachable"),
            };
            return ctx
                .refuse(
                    ctx.with_grant(Direction::Response, &grant),
                    kind,
                    code,
                    e.to_string(),
                )
                .await;
        }
    };

    // 7. the answer: strict, minimised, one record per subject, then delivered.
    if answer.status == StatusCode::NOT_FOUND {
        return ctx
            .refuse(
                ctx.with_grant(Direction::Response, &grant),
                problem::NOT_FOUND_AT_PROVIDER,
                "not-found-at-provider",
                "the provider has no such document",
            )
            .await;
    }
    if !answer.status.is_success() {
        return ctx
            .refuse(
                ctx.with_grant(Direction::Response, &grant),
                problem::BACKEND_BAD_ANSWER,
                "backend-status",
                format!("the back-end answered {}", answer.status.as_u16()),
            )
            .await;
    }
    if answer.body.is_empty() {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = answer.status;
        if let Some(r) = request_record {
            resp.headers_mut()
                .insert(DISCLOSURE, HeaderValue::from(r.id));
        }
        resp.headers_mut().insert(TRACEPARENT, ctx.trace.header());
        return resp;
    }
    let doc = match json::parse(&answer.body) {
        Ok(d) if d.is_object() || d.is_array() => d,
        Ok(_) => {
            return ctx
                .refuse(
                    ctx.with_grant(Direction::Response, &grant),
                    problem::BACKEND_BAD_ANSWER,
                    "backend-bad-answer",
                    "not a JSON document",
                )
                .await;
        }
        Err(e) => {
            return ctx
                .refuse(
                    ctx.with_grant(Direction::Response, &grant),
                    problem::BACKEND_BAD_ANSWER,
                    "backend-bad-answer",
                    e.0,
                )
                .await;
        }
    };
    respond_minimised(
        &ctx,
        &grant,
        &svc,
        (answer.status, answer.cert_sha256),
        doc,
        request_record,
        withheld,
    )
    .await
}

/// Minimises the provider's answer, records one disclosure per data subject
/// (per element of an array), and only then delivers it.
async fn respond_minimised(
    ctx: &Ctx<'_>,
    grant: &Grant<'_>,
    svc: &Arc<Service>,
    (status, backend_cert): (StatusCode, Option<[u8; 32]>),
    doc: Value,
    request_record: Option<Receipt>,
    mut withheld: Withheld,
) -> Response<Body> {
    let keys = &ctx.gw.policy.current().keys;
    let elements: Vec<&Value> = match &doc {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let max = ctx.gw.config.limits.max_subjects_per_answer;
    if elements.len() > max {
        return ctx
            .refuse(
                ctx.with_grant(Direction::Response, grant),
                problem::TOO_MANY_SUBJECTS,
                "too-many-subjects",
                format!("the answer holds more than {max} elements"),
            )
            .await;
    }
    // An element that names its subject with anything but a V-nummer would
    // be recorded under the wrong person (the path's): refuse the answer.
    if elements.iter().any(|el| {
        svc.subject_in(el)
            .is_some_and(|s| s.as_deref().is_none_or(|s| !valid_vnummer(s)))
    }) {
        return ctx
            .refuse(
                ctx.with_grant(Direction::Response, grant),
                problem::BACKEND_BAD_ANSWER,
                "backend-bad-subject",
                format!(
                    "an element names its subject '{}' with something that is not a V-nummer",
                    svc.subject
                ),
            )
            .await;
    }
    let mut entries = Vec::with_capacity(elements.len());
    // Each element serialised once: its bytes are hashed for its record, and
    // they are the bytes that go out.
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(elements.len());
    let service = svc.qualified();
    for el in elements {
        let m = grant.minimise(Direction::Response, el, keys);
        ctx.gw
            .metrics
            .shape_violations(&service, m.shape_violations);
        let mut e = ctx.with_grant(Direction::Response, grant);
        e.decision = Decision::Disclosed;
        if let Some(s) = svc.subject_of(el).filter(|s| valid_vnummer(s)) {
            e.subject = Some(ctx.gw.audit.subject(&s));
        }
        let bytes = serde_json::to_vec(&m.value).unwrap_or_default();
        e.payload_sha256 = Some(sha256(&bytes));
        e.sender_cert_sha256 = backend_cert;
        e.disclosed = m.disclosed;
        e.withheld = m.withheld.clone();
        e.withheld_undeclared = m.undeclared;
        withheld.declared.extend(m.withheld);
        withheld.undeclared = withheld.undeclared.saturating_add(m.undeclared);
        entries.push(e);
        parts.push(bytes);
    }
    let body: Vec<u8> = if doc.is_array() {
        let mut b = Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + parts.len() + 2);
        b.push(b'[');
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            b.extend_from_slice(p);
        }
        b.push(b']');
        b
    } else {
        parts.pop().unwrap_or_default()
    };
    let mut ids = Vec::with_capacity(entries.len());
    for r in ctx.gw.audit.record_many(entries).await {
        match r {
            Ok(r) => ids.push(r.id),
            Err(e) => {
                warn!(partner = %ctx.consumer.id, error = %e, "response disclosure could not be recorded; nothing delivered");
                return problem::respond(
                    problem::AUDIT_UNAVAILABLE,
                    "the audit log cannot write; nothing was delivered",
                );
            }
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&disclosure_header(request_record.map(|r| r.id), &ids)) {
        h.insert(DISCLOSURE, v);
    }
    withheld.set_headers(h);
    h.insert(TRACEPARENT, ctx.trace.header());
    ctx.gw.metrics.exchange(true, "");
    info!(partner = %ctx.consumer.id, pilot = %ctx.target.pilot, service = %ctx.target.service, purpose = %ctx.purpose, records = ids.len(), "exchange delivered");
    resp
}

/// Keeps a minimised document in the provider's mailbox.
async fn deliver_to_mailbox(
    ctx: &Ctx<'_>,
    grant: &Grant<'_>,
    body: Option<(Bytes, Value)>,
    request_record: Option<Receipt>,
    withheld: Withheld,
    room: Option<mailbox::Reservation>,
) -> Response<Body> {
    let (Some((_, document)), Some(record), Some(room)) = (body, request_record, room) else {
        return problem::respond(
            problem::METHOD_NOT_ALLOWED,
            "a mailbox takes POST and PUT with a document",
        );
    };
    let now = time::OffsetDateTime::now_utc();
    let item = mailbox::Item {
        id: 0,
        recipient: ctx.target.provider.clone(),
        sender: ctx.consumer.id.clone(),
        pilot: ctx.target.pilot.clone(),
        purpose: ctx.purpose.clone(),
        service: format!("{}/{}", ctx.target.provider, ctx.target.service),
        received: crate::audit::record::format_micros((now.unix_timestamp_nanos() / 1000) as i64),
        expires_micros: ((now + time::Duration::days(grant.purpose.retention_days as i64))
            .unix_timestamp_nanos()
            / 1000) as i64,
        disclosure: record.id,
        subject: ctx.subject.map(hex::encode),
        document,
    };
    let mb = ctx.gw.mailbox.clone();
    match tokio::task::spawn_blocking(move || mb.put(item, room)).await {
        Ok(Ok(id)) => {
            let mut resp = json_response(
                StatusCode::CREATED,
                &json!({"inbox_id": id, "disclosure": record.id}),
            );
            resp.headers_mut()
                .insert(DISCLOSURE, HeaderValue::from(record.id));
            withheld.set_headers(resp.headers_mut());
            resp.headers_mut().insert(TRACEPARENT, ctx.trace.header());
            ctx.gw.metrics.exchange(true, "");
            info!(partner = %ctx.consumer.id, mailbox = %ctx.target.provider, record = record.id, "document kept in mailbox");
            resp
        }
        _ => problem::respond(
            problem::INTERNAL,
            "the mailbox could not store the document",
        ),
    }
}

async fn inbox_list(gw: &Gateway, partner: &Partner, query: Option<&str>) -> Response<Body> {
    let mut before = None;
    let mut limit = INBOX_PAGE;
    for (k, v) in query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
    {
        match k {
            "cursor" => before = v.parse().ok(),
            "limit" => limit = v.parse().unwrap_or(INBOX_PAGE).clamp(1, INBOX_PAGE),
            _ => {}
        }
    }
    let (mb, who) = (gw.mailbox.clone(), partner.id.clone());
    match tokio::task::spawn_blocking(move || mb.list(&who, before, limit)).await {
        Ok(Ok((items, next))) => json_response(
            StatusCode::OK,
            &json!({"items": items.iter().map(mailbox::Item::summary).collect::<Vec<_>>(), "next_cursor": next}),
        ),
        _ => problem::respond(problem::INTERNAL, "the mailbox could not be read"),
    }
}

async fn inbox_item(gw: &Gateway, partner: &Partner, id: u64, delete: bool) -> Response<Body> {
    let (mb, who) = (gw.mailbox.clone(), partner.id.clone());
    let r = tokio::task::spawn_blocking(move || {
        if delete {
            mb.delete(&who, id).map(|gone| gone.then_some(None))
        } else {
            mb.get(&who, id).map(|item| item.map(Some))
        }
    })
    .await;
    match r {
        Ok(Ok(Some(Some(item)))) => {
            let mut v = item.summary();
            v["document"] = item.document;
            json_response(StatusCode::OK, &v)
        }
        Ok(Ok(Some(None))) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        Ok(Ok(None)) => problem::respond(problem::NOT_FOUND, "no such document in your mailbox"),
        _ => problem::respond(problem::INTERNAL, "the mailbox could not be read"),
    }
}

/// Deletes mailbox documents whose retention ended, recording each expiry
/// first (a document stays if its expiry cannot be recorded). Returns how many
/// were deleted.
pub async fn sweep_mailboxes(gw: &Gateway, now_micros: i64) -> usize {
    let mb = gw.mailbox.clone();
    let expired = match tokio::task::spawn_blocking(move || mb.expired(now_micros)).await {
        Ok(Ok(v)) => v,
        _ => return 0,
    };
    let mut n = 0;
    for item in expired {
        let mut e = Entry::exchange(
            &item.pilot,
            "ketenpoort",
            &item.recipient,
            &item.purpose,
            &item.service,
        );
        e.kind = crate::audit::Kind::MailboxExpiry;
        e.decision = Decision::Refused;
        e.reason = "retention-ended".into();
        e.subject = item.subject.as_deref().and_then(|h| {
            let mut b = [0u8; 32];
            hex::decode_to_slice(h, &mut b).ok().map(|_| b)
        });
        if gw.audit.record(e).await.is_err() {
            continue;
        }
        let (mb, who, id) = (gw.mailbox.clone(), item.recipient.clone(), item.id);
        if matches!(
            tokio::task::spawn_blocking(move || mb.delete(&who, id)).await,
            Ok(Ok(true))
        ) {
            n += 1;
            info!(mailbox = %item.recipient, id = item.id, "mailbox document expired unread and was deleted");
        }
    }
    n
}

//! Stages 3 and 5 of the pipeline: the stated purpose, and the caller's
//! request body, bounded in size, time and buffered bytes, strict JSON,
//! minimised caller → provider, and recorded before a byte goes out.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use hyper::{Method, Request, Uri};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::json;
use super::refusal::{Exchange, Refusal};
use super::wire::{BODY_TIMEOUT, PURPOSE, Withheld};
use crate::audit::{Decision, Receipt};
use crate::gateway::Gateway;
use crate::identity::sha256;
use crate::policy::stream::Root;
use crate::policy::{Direction, Grant};
use crate::problem;
use crate::storage::mailbox::Reservation;

/// The purpose from the one `Ketenpoort-Purpose` header, into `x`: the id,
/// and the header itself, which goes on to the provider as it came.
pub fn purpose(x: &mut Exchange<'_>, h: &HeaderMap) -> Result<(), Refusal> {
    let mut values = h.get_all(&PURPOSE).iter();
    let missing = || {
        Refusal::new(
            problem::MISSING_PURPOSE,
            "send one Ketenpoort-Purpose header with a purpose id",
        )
    };
    let invalid = || {
        Refusal::new(
            problem::INVALID_PURPOSE,
            "send one Ketenpoort-Purpose header with a purpose id",
        )
    };
    let v = values.next().ok_or_else(missing)?;
    if values.next().is_some() {
        return Err(invalid());
    }
    match v.to_str() {
        Ok(s) if crate::config::valid_id(s) => {
            x.purpose = s.to_string();
            x.purpose_header = Some(v.clone());
            Ok(())
        }
        _ => Err(invalid()),
    }
}

/// A query string would reach the provider unminimised: refused.
pub fn no_query(uri: &Uri) -> Result<(), Refusal> {
    match uri.query() {
        Some(_) => Err(Refusal::new(
            problem::QUERY_NOT_ALLOWED,
            "the query string would bypass minimisation",
        )),
        None => Ok(()),
    }
}

/// What the caller sent, as it may go to the provider.
pub struct Sent {
    /// The minimised body's bytes (what is forwarded and hashed).
    pub bytes: Bytes,
    /// The minimised document, for a mailbox.
    pub document: Option<Value>,
    /// The request disclosure's record (a body, or a DELETE).
    pub record: Option<Receipt>,
    /// What stayed behind.
    pub withheld: Withheld,
    /// Room in the recipient's mailbox, for a mailbox service.
    pub room: Option<Reservation>,
    /// The body's share of the buffered-body budget, held to the end.
    pub budget: Option<OwnedSemaphorePermit>,
}

impl Sent {
    /// Nothing sent yet; the body's budget held.
    pub fn empty(budget: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            bytes: Bytes::new(),
            document: None,
            record: None,
            withheld: Withheld::default(),
            room: None,
            budget,
        }
    }
}

fn method_has_body(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

/// Stage 5: reads, checks, minimises and records the caller's body (or
/// records a DELETE, which tells the provider about the subject).
pub async fn take(
    x: &mut Exchange<'_>,
    grant: &Grant<'_>,
    req: Request<Incoming>,
) -> Result<Sent, Refusal> {
    x.direction = Direction::Request;
    let method = req.method().clone();
    // Only whether it is JSON: the refusal is made when a body needs it.
    let json = is_json(req.headers());
    let (body, budget) = read_body(x.gw, req, x.gw.config.limits.max_body_bytes).await?;
    let mut sent = Sent::empty(budget);
    if !method_has_body(&method) {
        if !body.is_empty() {
            return Err(Refusal::new(
                problem::UNEXPECTED_BODY,
                format!("{method} carries no body"),
            ));
        }
        super::consent_check::require(x, grant, grant.path_subject.as_deref()).await?;
        if method == Method::DELETE {
            let mut e = x.entry(Direction::Request);
            e.decision = Decision::Disclosed;
            sent.record = Some(x.record(e, "forwarded").await?);
        }
        x.direction = Direction::Response;
        return Ok(sent);
    }
    if !json {
        return Err(unsupported_media_type());
    }
    take_document(x, grant, &body, sent).await
}

/// Refuses a body that is not declared JSON.
fn require_json(headers: &HeaderMap) -> Result<(), Refusal> {
    if !is_json(headers) {
        return Err(unsupported_media_type());
    }
    Ok(())
}

fn unsupported_media_type() -> Refusal {
    Refusal::new(
        problem::UNSUPPORTED_MEDIA_TYPE,
        "send Content-Type: application/json",
    )
}

/// The caller's body as a JSON object (a transfer reads it before it is
/// minimised: the person must have a stay to move).
pub fn document(headers: &HeaderMap, body: &[u8]) -> Result<Value, Refusal> {
    require_json(headers)?;
    match json::parse(body) {
        Ok(d) if d.is_object() => Ok(d),
        Ok(_) => Err(Refusal::new(
            problem::MALFORMED_JSON,
            "the document must be a JSON object",
        )),
        Err(e) => Err(Refusal::new(problem::MALFORMED_JSON, e.0)),
    }
}

/// Minimises a caller's document caller → provider (parsed strictly and
/// minimised in one pass), takes room in a mailbox, and records the
/// disclosure before a byte goes out.
pub async fn take_document(
    x: &mut Exchange<'_>,
    grant: &Grant<'_>,
    body: &[u8],
    mut sent: Sent,
) -> Result<Sent, Refusal> {
    let doc = grant
        .minimise_bytes(Direction::Request, body, &x.snap.keys, 1)
        .map_err(|e| Refusal::new(problem::MALFORMED_JSON, e.0))?;
    let m = match (doc.root, doc.elements.into_iter().next()) {
        (Root::Object, Some(m)) => m,
        _ => {
            return Err(Refusal::new(
                problem::MALFORMED_JSON,
                "the document must be a JSON object",
            ));
        }
    };
    let subject = grant.request_subject_found(m.subject.clone())?;
    x.subject = Some(super::refusal::subject_of(x, &subject)?);
    super::consent_check::require(x, grant, Some(&subject)).await?;
    x.gw.metrics
        .shape_violations(grant.service().qualified(), m.shape_violations);
    sent.bytes = Bytes::from(m.bytes);
    if grant.service().path.is_none() {
        let room =
            x.gw.mailbox
                .reserve(x.target.provider, sent.bytes.len())
                .map_err(|full| Refusal::new(problem::MAILBOX_FULL, full.to_string()))?;
        sent.room = Some(room);
    }
    let mut e = x.entry(Direction::Request);
    e.decision = Decision::Disclosed;
    e.disclosed = m.disclosed;
    e.withheld = m.withheld.clone();
    e.withheld_undeclared = m.undeclared;
    e.payload_sha256 = Some(sha256(&sent.bytes));
    sent.record = Some(x.record(e, "forwarded").await?);
    sent.withheld = Withheld {
        declared: m.withheld,
        undeclared: m.undeclared,
    };
    if sent.room.is_some() {
        // A mailbox keeps a document, not bytes: our own output, read back.
        sent.document = serde_json::from_slice(&sent.bytes).ok();
    }
    x.direction = Direction::Response;
    Ok(sent)
}

/// How long a request waits for room in the body budget before 503.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a request body within the size and time limits, after taking its
/// room in the gateway-wide budget of buffered body bytes (held until the
/// returned permit is dropped, at the end of the exchange).
pub(super) async fn read_body(
    gw: &Gateway,
    req: Request<Incoming>,
    max: usize,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Refusal> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(len) = declared
        && len > max as u64
    {
        return Err(Refusal::new(
            problem::BODY_TOO_LARGE,
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
                return Err(Refusal::new(
                    problem::BUSY,
                    "too many request bodies are being received; try again shortly",
                ));
            }
        }
    };
    // A body dribbled in slowly must not hold a connection slot for long.
    let collected =
        tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), max).collect()).await;
    let Ok(collected) = collected else {
        return Err(Refusal::new(
            problem::BODY_TIMEOUT,
            format!("the body must arrive within {} s", BODY_TIMEOUT.as_secs()),
        ));
    };
    match collected {
        Ok(b) => Ok((b.to_bytes(), permit)),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Refusal::new(
                problem::BODY_TOO_LARGE,
                format!("at most {max} bytes"),
            ))
        }
        Err(_) => Err(Refusal::new(
            problem::MALFORMED_JSON,
            "the body could not be read",
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

//! Stages 6 and 7 of the pipeline: the call to the provider's back-end over
//! mutual TLS, and its answer: strict JSON, minimised provider → caller, at
//! most `max_subjects_per_answer` elements, one record per data subject
//! (naming the certificate that really answered), all durable before a byte
//! leaves.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use tracing::{info, warn};

use super::forward::{self, Answer, ForwardError};
use super::refusal::{Exchange, Refusal};
use super::request::Sent;
use super::wire::{
    CONSUMER, DISCLOSURE, FSC_TRANSACTION_ID, PILOT, PURPOSE, TRACEPARENT, Withheld,
};
use crate::audit::Decision;
use crate::audit::Entry;
use crate::gateway::Body;
use crate::identity::sha256;
use crate::policy::stream::{Part, Root};
use crate::policy::{Direction, Grant};
use crate::problem;

/// `Ketenpoort-Disclosure`: the request's record, then the answer's records,
/// runs of consecutive ids written `first-last` (one batch makes them
/// consecutive), so an answer about many subjects keeps a small header.
fn disclosure_header(request: Option<u64>, ids: &[u64]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(24);
    let mut put = |text: std::fmt::Arguments<'_>| {
        if !out.is_empty() {
            out.push(',');
        }
        // Writing into a String cannot fail.
        let _ = out.write_fmt(text);
    };
    if let Some(r) = request {
        put(format_args!("{r}"));
    }
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j].checked_add(1) == Some(ids[j + 1]) {
            j += 1;
        }
        if i == j {
            put(format_args!("{}", ids[i]));
        } else {
            put(format_args!("{}-{}", ids[i], ids[j]));
        }
        i = j + 1;
    }
    out
}

/// Stage 6: sends the minimised request to the provider's back-end.
pub async fn fetch(
    x: &Exchange<'_>,
    grant: &Grant<'_>,
    method: hyper::Method,
    sent: &Sent,
) -> Result<Answer, Refusal> {
    let t = x.target;
    let backend = x
        .snap
        .policy
        .partners
        .get(t.provider)
        .and_then(|p| p.backend.as_ref())
        .ok_or_else(|| {
            Refusal::new(problem::BACKEND_UNREACHABLE, "the provider has no back-end")
        })?;
    let url = grant
        .service()
        .path
        .as_ref()
        .and_then(|p| p.fill_after(&backend.url, &t.rest))
        .unwrap_or_else(|| backend.url.clone());
    // Host, traceparent, the FSC transaction id, purpose, consumer, pilot
    // and a content type: room for all, so the map never grows.
    let mut headers = HeaderMap::with_capacity(7);
    headers.insert(HOST, backend.host.clone());
    headers.insert(TRACEPARENT, x.trace.header());
    headers.insert(
        FSC_TRANSACTION_ID,
        super::trace::transaction_header(x.trace.fsc_transaction_id),
    );
    // Made once (the partner's and pilot's at load, the purpose as the
    // caller sent it, already checked to be an id): no copy per request.
    // The caller's header only while it is still the purpose this
    // exchange runs under: a flow that sets another sends its own.
    let purpose = match &x.purpose_header {
        Some(v) if v.as_bytes() == x.purpose.as_bytes() => Some(v.clone()),
        _ => HeaderValue::from_str(&x.purpose).ok(),
    };
    if let Some(v) = purpose {
        headers.insert(PURPOSE, v);
    }
    headers.insert(CONSUMER, x.consumer.id_header.clone());
    headers.insert(PILOT, grant.pilot.id_header.clone());
    let limits = &x.gw.config.limits;
    let tls = x.gw.tls.current();
    let answer = forward::call(
        &tls.backends,
        method,
        url,
        headers,
        sent.bytes.clone(),
        limits.backend_timeout,
        limits.max_response_bytes,
    )
    .await
    .map_err(|e| {
        let kind = match e {
            ForwardError::Timeout => problem::BACKEND_TIMEOUT,
            ForwardError::BadCertificate => problem::BACKEND_CERTIFICATE,
            ForwardError::TooLarge => problem::BACKEND_BAD_ANSWER,
            _ => problem::BACKEND_UNREACHABLE,
        };
        Refusal::new(kind, e.to_string())
    })?;
    if answer.status == StatusCode::NOT_FOUND {
        return Err(Refusal::new(
            problem::NOT_FOUND_AT_PROVIDER,
            "the provider has no such document",
        ));
    }
    if !answer.status.is_success() {
        return Err(Refusal::new(
            problem::BACKEND_BAD_ANSWER,
            format!("the back-end answered {}", answer.status.as_u16()),
        ));
    }
    Ok(answer)
}

/// Stage 7: minimises the provider's answer, records one disclosure per
/// data subject (per element of a list), and only then delivers it.
pub async fn deliver(
    x: &Exchange<'_>,
    grant: &Grant<'_>,
    answer: Answer,
    sent: Sent,
) -> Result<Response<Body>, Refusal> {
    if answer.body.is_empty() {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = answer.status;
        if let Some(r) = sent.record {
            resp.headers_mut()
                .insert(DISCLOSURE, HeaderValue::from(r.id));
        }
        resp.headers_mut().insert(TRACEPARENT, x.trace.header());
        return Ok(resp);
    }
    // Parsed, checked and minimised in one pass; withheld parts are never
    // built (policy::stream).
    let max = x.gw.config.limits.max_subjects_per_answer;
    let doc = grant
        .minimise_bytes(Direction::Response, &answer.body, &x.snap.keys, max)
        .map_err(|e| Refusal::new(problem::BACKEND_BAD_ANSWER, e.0))?;
    if doc.root == Root::Scalar {
        return Err(Refusal::new(
            problem::BACKEND_BAD_ANSWER,
            "not a JSON document",
        ));
    }
    if doc.count > max {
        return Err(Refusal::new(
            problem::TOO_MANY_SUBJECTS,
            format!("the answer holds more than {max} elements"),
        ));
    }
    let mut withheld = sent.withheld;
    let request = sent.record.map(|r| r.id);
    let (body, disclosure, records) = if doc.root == Root::Object {
        // One document about one subject, the usual answer: no lists built.
        let Some(mut m) = doc.elements.into_iter().next() else {
            return Err(Refusal::new(
                problem::BACKEND_BAD_ANSWER,
                "not a JSON document",
            ));
        };
        let subject = grant.answer_subject_found(m.subject.take())?;
        let consent = consent_of(x, grant, subject.as_deref()).await?;
        let (e, body) = element_entry(x, grant, &answer, m, subject, consent, &mut withheld)?;
        let id = x.record(e, "delivered").await?.id;
        (body, disclosure_header(request, &[id]), 1)
    } else {
        let mut elements = doc.elements;
        // Every element's subject is decided before anything is recorded.
        let subjects = elements
            .iter_mut()
            .map(|el| grant.answer_subject_found(el.subject.take()))
            .collect::<Result<Vec<_>, _>>()?;
        // Under a rule that rests on consent, every person an element is
        // about needs a consent in force, or nothing of the answer goes.
        let mut consents = Vec::with_capacity(subjects.len());
        for s in &subjects {
            consents.push(consent_of(x, grant, s.as_deref()).await?);
        }
        let mut entries = Vec::with_capacity(elements.len());
        // Each element's bytes are hashed for its record, and they are the
        // bytes that go out.
        let mut parts: Vec<Vec<u8>> = Vec::with_capacity(elements.len());
        for ((m, subject), consent) in elements.into_iter().zip(subjects).zip(consents) {
            let (e, bytes) = element_entry(x, grant, &answer, m, subject, consent, &mut withheld)?;
            entries.push(e);
            parts.push(bytes);
        }
        let mut ids = Vec::with_capacity(entries.len());
        for r in x.gw.audit.record_many(entries).await {
            match r {
                Ok(r) => ids.push(r.id),
                Err(e) => {
                    warn!(partner = %x.consumer.id, error = %e, "response disclosure could not be recorded; nothing delivered");
                    return Err(Refusal::audit_unavailable("delivered"));
                }
            }
        }
        (
            join_list(&parts),
            disclosure_header(request, &ids),
            ids.len(),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = answer.status;
    let h = resp.headers_mut();
    // The five set here, then the FSC transaction id and the API version
    // on the way out: sized once, where growing the map cost two more
    // allocations per exchange.
    *h = HeaderMap::with_capacity(7);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(disclosure)) {
        h.insert(DISCLOSURE, v);
    }
    withheld.set_headers(h);
    h.insert(TRACEPARENT, x.trace.header());
    x.gw.metrics.exchange(true, "");
    info!(partner = %x.consumer.id, pilot = %x.target.pilot, service = %x.target.service, purpose = %x.purpose, records, "exchange delivered");
    Ok(resp)
}

/// The consent an element's subject needs under a rule that rests on
/// consent (none needed when the element names nobody: the exchange's own).
async fn consent_of(
    x: &Exchange<'_>,
    grant: &Grant<'_>,
    subject: Option<&str>,
) -> Result<Option<u64>, Refusal> {
    match subject {
        Some(v) => super::consent_check::of_element(x, grant, v).await,
        None => Ok(x.consent),
    }
}

/// One element's record, and the bytes that go out for it (hashed into the
/// record); what it withheld is added to the answer's headers.
fn element_entry(
    x: &Exchange<'_>,
    grant: &Grant<'_>,
    answer: &Answer,
    m: Part,
    subject: Option<String>,
    consent: Option<u64>,
    withheld: &mut Withheld,
) -> Result<(Entry, Vec<u8>), Refusal> {
    if m.shape_violations > 0 {
        x.gw.metrics
            .shape_violations(grant.service().qualified(), m.shape_violations);
    }
    let mut e = x.entry(Direction::Response);
    e.decision = Decision::Disclosed;
    if let Some(s) = subject {
        e.subject = Some(super::refusal::subject_of(x, &s)?);
    }
    if let Some(c) = consent {
        e.reason = super::refusal::consent_reason(c);
    }
    e.payload_sha256 = Some(sha256(&m.bytes));
    e.sender_cert_sha256 = answer.cert_sha256;
    e.disclosed = m.disclosed;
    withheld.declared.extend(m.withheld.iter().cloned());
    withheld.undeclared = withheld.undeclared.saturating_add(m.undeclared);
    e.withheld = m.withheld;
    e.withheld_undeclared = m.undeclared;
    Ok((e, m.bytes))
}

/// `[a,b,…]` from elements already serialised.
fn join_list(parts: &[Vec<u8>]) -> Vec<u8> {
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
}

#[cfg(test)]
mod tests {
    use super::disclosure_header;

    #[test]
    fn the_header_writes_runs_of_ids() {
        assert_eq!(disclosure_header(Some(7), &[9, 10, 11, 13]), "7,9-11,13");
        assert_eq!(disclosure_header(None, &[5]), "5");
        assert_eq!(disclosure_header(Some(3), &[]), "3");
        assert_eq!(
            disclosure_header(None, &[u64::MAX - 1, u64::MAX]),
            format!("{}-{}", u64::MAX - 1, u64::MAX)
        );
    }
}

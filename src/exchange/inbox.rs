//! The mailboxes of partners without a server, as the pipeline sees them:
//! stage 6 for a mailbox service (keep the minimised document, in the room
//! reserved before its record), the inbox routes (list, fetch, acknowledge),
//! and the sweep that deletes what retention ended, recording each expiry.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::json;
use tracing::info;

use super::refusal::{Exchange, Refusal};
use super::request::Sent;
use super::wire::{DISCLOSURE, TRACEPARENT, json_response};
use crate::audit::{Decision, Entry};
use crate::gateway::{Body, Gateway};
use crate::policy::Grant;
use crate::policy::partners::Partner;
use crate::problem;
use crate::storage::mailbox;

/// Most mailbox documents listed per page.
const INBOX_PAGE: usize = 100;

/// Stage 6 for a mailbox service: keeps the minimised document.
pub async fn deliver(
    x: &Exchange<'_>,
    grant: &Grant<'_>,
    sent: Sent,
) -> Result<Response<Body>, Refusal> {
    let (Some(document), Some(record), Some(room)) = (sent.document, sent.record, sent.room) else {
        return Err(Refusal::new(
            problem::METHOD_NOT_ALLOWED,
            "a mailbox takes POST and PUT with a document",
        ));
    };
    let now = time::OffsetDateTime::now_utc();
    let t = x.target;
    let item = mailbox::Item {
        id: 0,
        recipient: t.provider.to_string(),
        sender: x.consumer.id.to_string(),
        pilot: t.pilot.to_string(),
        purpose: x.purpose.clone(),
        service: format!("{}/{}", t.provider, t.service),
        received: crate::audit::record::format_micros((now.unix_timestamp_nanos() / 1000) as i64),
        expires_micros: ((now + time::Duration::days(grant.purpose.retention_days as i64))
            .unix_timestamp_nanos()
            / 1000) as i64,
        disclosure: record.id,
        subject: x.subject.map(hex::encode),
        document,
    };
    let mb = x.gw.mailbox.clone();
    let Ok(Ok(id)) = tokio::task::spawn_blocking(move || mb.put(item, room)).await else {
        return Err(Refusal::new(
            problem::INTERNAL,
            "the mailbox could not store the document",
        ));
    };
    let mut resp = json_response(
        StatusCode::CREATED,
        &json!({"inbox_id": id, "disclosure": record.id}),
    );
    resp.headers_mut()
        .insert(DISCLOSURE, HeaderValue::from(record.id));
    sent.withheld.set_headers(resp.headers_mut());
    resp.headers_mut().insert(TRACEPARENT, x.trace.header());
    x.gw.metrics.exchange(true, "");
    info!(partner = %x.consumer.id, mailbox = %t.provider, record = record.id, "document kept in mailbox");
    Ok(resp)
}

/// `GET /v1/inbox`: a page of the caller's documents, newest first.
pub async fn list(gw: &Gateway, partner: &Partner, query: Option<&str>) -> Response<Body> {
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

/// `GET` or `DELETE /v1/inbox/{id}`.
pub async fn item(gw: &Gateway, partner: &Partner, id: u64, delete: bool) -> Response<Body> {
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
        e.kind = crate::audit::RecordKind::MailboxExpiry;
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

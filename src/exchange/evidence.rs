//! `GET /v1/audit/records/{id}/evidence`: the evidence of one disclosure for
//! a partner that sent or received it, as a C2SP tlog-proof file (see
//! [`crate::evidence`]). The console's `/api/v1/disclosures/{id}/evidence`
//! answers with the same [`answer`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use tracing::warn;

use crate::evidence::{self, MakeError};
use crate::gateway::{Body, Gateway};
use crate::policy::partners::Partner;
use crate::problem;

/// Seconds a caller waits before asking again for a record that no published
/// checkpoint covers yet.
const RETRY_SECONDS: u32 = 10;

/// The evidence of record `id`, for `partner` only if it is a party to it.
pub async fn partner(gw: &Gateway, partner: &Partner, id: u64) -> Response<Body> {
    let view = gw.audit.view().clone();
    let who = partner.id.clone();
    let made = tokio::task::spawn_blocking(move || evidence::make(&view, id, Some(&who))).await;
    match made {
        Ok(r) => answer(id, r),
        Err(_) => problem::respond(problem::INTERNAL, "the evidence could not be made"),
    }
}

/// The proof file, or the problem that says why there is none: 404 no such
/// record, 403 not a party to it, 503 with `Retry-After` not yet published.
pub fn answer(id: u64, made: Result<String, MakeError>) -> Response<Body> {
    match made {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            *r.status_mut() = StatusCode::OK;
            let h = r.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(evidence::CONTENT_TYPE),
            );
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename=\"record-{id}.{}\"",
                evidence::EXTENSION
            )) {
                h.insert(CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e @ MakeError::NoRecord(_)) => problem::respond(problem::NOT_FOUND, e.to_string()),
        Err(e @ MakeError::NotParty(_)) => problem::respond(problem::FORBIDDEN_ROLE, e.to_string()),
        Err(e @ MakeError::NotYetPublished(_)) => {
            let mut r = problem::respond(problem::NOT_YET_PUBLISHED, e.to_string());
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_SECONDS));
            r
        }
        Err(e) => {
            warn!(record = id, error = %e, "evidence could not be made");
            problem::respond(problem::INTERNAL, "the evidence could not be made")
        }
    }
}

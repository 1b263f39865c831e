//! The console's answers: plain bodies, JSON, and the problem for a role or
//! scope that does not allow a call. Shared by the officers' and the
//! administrators' routes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;

use crate::gateway::Body;
use crate::problem::{self, Problem};

/// A body with this status and content type.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `200 OK` with a JSON body.
pub fn json_ok(v: &Value) -> Response<Body> {
    respond(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// 403 for a role or scope that does not allow this call.
pub fn forbidden(detail: &str) -> Problem {
    Problem::new(problem::FORBIDDEN_ROLE, detail)
}

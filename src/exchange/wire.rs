//! The partner API's own headers, and the plain JSON answer: shared by
//! every stage of the pipeline, so they live apart from it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;

use crate::gateway::Body;

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
/// FSC's transaction id (FSC Logging): taken over or made, passed to the
/// provider, returned and recorded.
pub const FSC_TRANSACTION_ID: HeaderName = HeaderName::from_static("fsc-transaction-id");

/// Time a caller has to send its whole request body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A JSON answer with this status.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(value).unwrap_or_default(),
    )));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// What stayed behind in one exchange: declared paths by name, the rest as
/// a count.
#[derive(Debug, Default)]
pub struct Withheld {
    /// Declared paths, by name.
    pub declared: Vec<crate::text::Text>,
    /// Undeclared keys, counted.
    pub undeclared: u32,
}

impl Withheld {
    /// Sets `Ketenpoort-Withheld` and `Ketenpoort-Withheld-Undeclared`.
    pub fn set_headers(mut self, h: &mut HeaderMap) {
        self.declared.sort();
        self.declared.dedup();
        // `join` sizes its String exactly, so the header takes its bytes
        // without another copy.
        if !self.declared.is_empty()
            && let Ok(v) =
                HeaderValue::from_maybe_shared(bytes::Bytes::from(self.declared.join(",")))
        {
            h.insert(WITHHELD, v);
        }
        if self.undeclared > 0 {
            // `HeaderValue::from(u32)` allocates twice; this copies once.
            let mut digits = itoa::Buffer::new();
            if let Ok(v) = HeaderValue::from_str(digits.format(self.undeclared)) {
                h.insert(WITHHELD_UNDECLARED, v);
            }
        }
    }
}

/// The partner API's OpenAPI document, as served at `/v1/openapi.json`
/// (generated from docs/openapi.yaml by scripts/openapi-json.py).
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// `API-Version` (API Design Rules, API-57): the full version of the partner
/// API, the OpenAPI document's `info.version`, on every answer.
pub const API_VERSION: HeaderName = HeaderName::from_static("api-version");

/// The version [`API_VERSION`] carries; a test keeps it equal to the
/// document's.
pub const API_VERSION_VALUE: &str = "0.1.0";

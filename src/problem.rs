//! RFC 9457 problem details: the one shape of every error a partner or console
//! user receives.
//!
//! Each kind of refusal has a stable `type` URI (`urn:ketenpoort:problem:<slug>`)
//! that partners may match on in their code; the `title` is fixed per type and the
//! `detail` explains this occurrence. No detail ever carries personal data.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Prefix of every problem type URI.
pub const TYPE_PREFIX: &str = "urn:ketenpoort:problem:";

/// Media type of problem details.
pub const CONTENT_TYPE_PROBLEM: &str = "application/problem+json";

/// A kind of problem: its slug (the stable part of the type), status and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The stable slug, `urn:ketenpoort:problem:<slug>`.
    pub slug: &'static str,
    /// HTTP status.
    pub status: StatusCode,
    /// Short, fixed summary.
    pub title: &'static str,
}

macro_rules! kinds {
    ($($name:ident = ($slug:literal, $status:ident, $title:literal);)*) => {
        $(
            #[doc = $title]
            pub const $name: Kind = Kind { slug: $slug, status: StatusCode::$status, title: $title };
        )*
        /// Every problem kind, for documentation and tests.
        pub const ALL: &[Kind] = &[$($name),*];
        /// Every problem kind with the name of its constant, so that a test
        /// can find the kinds a module's source names.
        pub const NAMED: &[(&str, Kind)] = &[$((stringify!($name), $name)),*];
    };
}

kinds! {
    UNKNOWN_PARTNER = ("unknown-partner", FORBIDDEN, "The client certificate belongs to no known partner");
    AMBIGUOUS_PARTNER = ("ambiguous-partner", FORBIDDEN, "The client certificate matches more than one partner");
    NOT_FOUND = ("not-found", NOT_FOUND, "No such resource");
    BAD_ROUTE = ("bad-route", BAD_REQUEST, "The path holds characters or segments that are not allowed");
    QUERY_NOT_ALLOWED = ("query-not-allowed", BAD_REQUEST, "Query parameters are not forwarded; send data in a JSON body");
    METHOD_NOT_ALLOWED = ("method-not-allowed", METHOD_NOT_ALLOWED, "Method not allowed here");
    MISSING_PURPOSE = ("missing-purpose", BAD_REQUEST, "The Ketenpoort-Purpose header is missing");
    INVALID_PURPOSE = ("invalid-purpose", BAD_REQUEST, "The Ketenpoort-Purpose header is repeated or malformed");
    UNKNOWN_PURPOSE = ("unknown-purpose", BAD_REQUEST, "No covenant knows this purpose");
    PURPOSE_NOT_IN_COVENANT = ("purpose-not-in-covenant", FORBIDDEN, "This pilot's covenant does not name this purpose");
    PARTNER_NOT_IN_PILOT = ("partner-not-in-pilot", FORBIDDEN, "A party to this exchange did not sign the pilot's covenant");
    COVENANT_NOT_SIGNED = ("covenant-not-signed", FORBIDDEN, "A party to this exchange has not accepted the pilot's covenant in force, or revoked its acceptance");
    INVALID_SIGNATURE = ("invalid-signature", BAD_REQUEST, "The covenant signature is not a valid JWS over this pilot and version");
    SIGNATURE_NOT_ACCEPTED = ("signature-not-accepted", FORBIDDEN, "The covenant signature's certificate is not trusted or not of a partner that may sign here");
    VERSION_CLOSED = ("version-closed", CONFLICT, "This covenant version is no longer open: superseded or withdrawn");
    UNKNOWN_VERSION = ("unknown-version", NOT_FOUND, "No such covenant version of this pilot");
    COVENANT_EXPIRED = ("covenant-expired", FORBIDDEN, "The pilot's covenant has ended");
    COVENANT_NOT_YET_VALID = ("covenant-not-yet-valid", FORBIDDEN, "The pilot's covenant has not started");
    NO_RULE = ("no-rule", FORBIDDEN, "No rule of the covenant allows this exchange");
    UNKNOWN_PILOT = ("unknown-pilot", NOT_FOUND, "No such pilot");
    UNKNOWN_PROVIDER = ("unknown-provider", NOT_FOUND, "No such provider");
    UNKNOWN_SERVICE = ("unknown-service", NOT_FOUND, "The provider offers no such service");
    BODY_TOO_LARGE = ("body-too-large", PAYLOAD_TOO_LARGE, "The request body is larger than allowed");
    BODY_TIMEOUT = ("body-timeout", REQUEST_TIMEOUT, "The request body did not arrive in time");
    UNSUPPORTED_MEDIA_TYPE = ("unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, "The request body must be application/json");
    MALFORMED_JSON = ("malformed-json", BAD_REQUEST, "The body is not an acceptable JSON document");
    UNEXPECTED_BODY = ("unexpected-body", BAD_REQUEST, "This method carries no body");
    SUBJECT_MISSING = ("subject-missing", BAD_REQUEST, "The document does not name its data subject");
    INVALID_SUBJECT = ("invalid-subject", BAD_REQUEST, "The data subject is not a V-nummer of ten digits");
    NOT_FOUND_AT_PROVIDER = ("not-found-at-provider", NOT_FOUND, "The provider has no such document");
    BACKEND_UNREACHABLE = ("backend-unreachable", BAD_GATEWAY, "The provider's back-end could not be reached");
    BACKEND_CERTIFICATE = ("backend-certificate", BAD_GATEWAY, "The provider's back-end presented a certificate that is not trusted");
    BACKEND_BAD_ANSWER = ("backend-bad-answer", BAD_GATEWAY, "The provider's back-end answered something that is not an acceptable document");
    BACKEND_TIMEOUT = ("backend-timeout", GATEWAY_TIMEOUT, "The provider's back-end did not answer in time");
    AUDIT_UNAVAILABLE = ("audit-unavailable", SERVICE_UNAVAILABLE, "The audit log cannot record this exchange, so nothing is delivered");
    UNAUTHORIZED = ("unauthorized", UNAUTHORIZED, "A valid console token is needed");
    FORBIDDEN_ROLE = ("forbidden", FORBIDDEN, "Your role or scope does not allow this");
    SESSION_ENDED = ("session-ended", UNAUTHORIZED, "The console session has ended (idle too long, logged out or unknown); log in again");
    ACCOUNT_EXPIRED = ("account-expired", UNAUTHORIZED, "The console account has passed its end date");
    LOGIN_FAILED = ("login-failed", UNAUTHORIZED, "No console user holds this token or certificate");
    LOGIN_LINK_INVALID = ("login-link-invalid", UNAUTHORIZED, "The one-time login link was used already, has expired or was never made");
    OIDC_LOGIN_FAILED = ("oidc-login-failed", UNAUTHORIZED, "The login through the identity provider was refused");
    OIDC_PROVIDER_UNAVAILABLE = ("oidc-provider-unavailable", BAD_GATEWAY, "The identity provider could not be reached or answered something unusable");
    CSRF_TOKEN_INVALID = ("csrf-token-invalid", FORBIDDEN, "A state-changing request of a console session needs the session's token in X-CSRF-Token");
    BAD_QUERY = ("bad-query", BAD_REQUEST, "A query parameter is malformed");
    INVALID_POLICY = ("invalid-policy", UNPROCESSABLE_ENTITY, "The policy file does not validate");
    TOO_MANY_SUBJECTS = ("too-many-subjects", BAD_GATEWAY, "The provider's answer names more data subjects than one answer may carry");
    MAILBOX_FULL = ("mailbox-full", INSUFFICIENT_STORAGE, "The recipient's mailbox (or all mailboxes together) is full");
    CERTIFICATE_REVOKED = ("certificate-revoked", FORBIDDEN, "The client certificate was revoked or has expired");
    LOG_NOT_WITNESSED = ("log-not-witnessed", SERVICE_UNAVAILABLE, "No checkpoint of the audit log has reached its quorum of witness cosignatures for too long, so nothing is exchanged");
    TOO_MANY_CHECKS = ("too-many-checks", TOO_MANY_REQUESTS, "More registration checks than this pilot allows per minute");
    INVALID_REGISTRATION = ("invalid-registration", BAD_REQUEST, "The registration is not acceptable");
    NO_OPEN_STAY = ("no-open-stay", NOT_FOUND, "The person has no open stay in this pilot");
    NO_TRANSFER = ("no-transfer", FORBIDDEN, "The two pilots' files do not both allow a transfer between them in this direction");
    INVALID_FIGURES_QUERY = ("invalid-figures-query", BAD_REQUEST, "The figures query needs pilot, from and to (YYYY-MM, from not after to, at most 36 months)");
    NOT_A_FIGURES_READER = ("not-a-figures-reader", FORBIDDEN, "This partner is not among the pilot's figures readers");
    CONSENT_MISSING = ("consent-missing", FORBIDDEN, "The flow rests on the person's consent, and none is in force");
    INVALID_CONSENT = ("invalid-consent", BAD_REQUEST, "The consent is not acceptable");
    NO_CONSENT = ("no-consent", NOT_FOUND, "The person has no consent in force for this rule to withdraw");
    CONSENT_UNAVAILABLE = ("consent-unavailable", SERVICE_UNAVAILABLE, "The consent register cannot be read or written; nothing changed");
    REGISTRY_UNAVAILABLE = ("registry-unavailable", SERVICE_UNAVAILABLE, "The registry cannot be read or written; nothing changed");
    NOT_YET_PUBLISHED = ("not-yet-published", SERVICE_UNAVAILABLE, "The record is not yet in a published checkpoint; try again shortly");
    BUSY = ("busy", SERVICE_UNAVAILABLE, "The gateway is at its limit for buffered requests; try again shortly");
    INVALID_TRANSACTION_ID = ("invalid-transaction-id", BAD_REQUEST, "The Fsc-Transaction-Id header is not one UUIDv7");
    INTERNAL = ("internal", INTERNAL_SERVER_ERROR, "Internal error");
}

/// FSC's error header (FSC Core, "Error Handling"): set beside the problem
/// where FSC defines a code for the same failure, so that an FSC-speaking
/// partner's outway reads our refusals the way it reads an inway's.
pub const FSC_ERROR_CODE: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("fsc-error-code");

/// The FSC error code of a kind, where FSC Core (inway and outway codes) or
/// FSC Logging defines one for the same failure; `docs/fsc.md` lists them.
pub fn fsc_error_code(kind: Kind) -> Option<&'static str> {
    Some(match kind.slug {
        "invalid-transaction-id" => "INVALID_LOG_RECORD_ID",
        "audit-unavailable" => "TRANSACTION_LOG_WRITE_ERROR",
        "backend-unreachable" | "backend-certificate" => "ERROR_CODE_SERVICE_UNREACHABLE",
        "unknown-provider" | "unknown-service" => "ERROR_CODE_SERVICE_NOT_FOUND",
        "method-not-allowed" => "ERROR_CODE_METHOD_UNSUPPORTED",
        _ => return None,
    })
}

/// One problem occurrence, as sent.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `urn:ketenpoort:problem:<slug>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The kind's fixed title.
    pub title: &'static str,
    /// HTTP status, repeated in the body as RFC 9457 suggests.
    pub status: u16,
    /// What happened this time, without personal data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The FSC error code sent as `Fsc-Error-Code`, where FSC has one.
    #[serde(skip)]
    pub fsc_error_code: Option<&'static str>,
}

impl Problem {
    /// A problem of this kind with a detail.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("{TYPE_PREFIX}{}", kind.slug),
            title: kind.title,
            status: kind.status.as_u16(),
            detail: Some(detail.into()),
            fsc_error_code: fsc_error_code(kind),
        }
    }

    /// The HTTP response carrying this problem.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_PROBLEM));
        if let Some(code) = self.fsc_error_code {
            resp.headers_mut()
                .insert(FSC_ERROR_CODE, HeaderValue::from_static(code));
        }
        resp
    }
}

/// Shorthand: the response for a problem of this kind.
pub fn respond(kind: Kind, detail: impl Into<String>) -> Response<Full<Bytes>> {
    Problem::new(kind, detail).response()
}

//! The covenant on the partner API: any partner of a pilot reads which
//! version is in force, who signed it, what waits for whose signature, and
//! the text of a version; a partner submits its own signatures (JWS,
//! `application/jose`) over the same mutual-TLS connection its exchanges use.
//!
//! A signature is checked by the covenant registry ([`crate::covenant`]),
//! recorded in the audit log, and the running policy is enforced again at
//! once: a revocation stops that partner's flows before the answer leaves.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::wire::json_response;
use crate::covenant::view;
use crate::gateway::{Body, Gateway};
use crate::policy::partners::Partner;
use crate::policy::terms::version_from_hex;
use crate::problem::{self, Problem};

/// Largest JWS accepted: a few certificates and a short payload.
const MAX_JWS_BYTES: usize = 64 * 1024;

/// The pilot, when it exists and the partner is a party to it (in the
/// version that runs or in the file).
fn party(gw: &Gateway, partner: &Partner, pilot: &str) -> Result<(), Problem> {
    let snap = gw.policy.current();
    let listed = [
        snap.policy.pilots.get(pilot),
        snap.on_disk.pilots.get(pilot),
    ];
    if listed.iter().all(Option::is_none) {
        return Err(Problem::new(problem::UNKNOWN_PILOT, "no such pilot"));
    }
    if !listed
        .iter()
        .flatten()
        .any(|p| partner.named_in(&p.partners))
    {
        return Err(Problem::new(
            problem::PARTNER_NOT_IN_PILOT,
            format!("'{}' is not a party to pilot '{pilot}'", partner.id),
        ));
    }
    Ok(())
}

/// `GET /v1/pilots/{pilot}/covenant`.
pub async fn status(gw: &Gateway, partner: &Partner, pilot: &str) -> Response<Body> {
    if let Err(p) = party(gw, partner, pilot) {
        return p.response();
    }
    let snap = gw.policy.current();
    let reg = gw.covenants.clone();
    let pilot = pilot.to_string();
    let out = tokio::task::spawn_blocking(move || {
        view::status(reg.store(), &snap.on_disk, &snap.partners_bytes, &pilot)
    })
    .await;
    match out {
        Ok(Ok(v)) => json_response(StatusCode::OK, &v),
        _ => problem::respond(problem::INTERNAL, "the covenant state cannot be read"),
    }
}

/// `GET /v1/pilots/{pilot}/covenant/versions/{version}`.
pub async fn version(gw: &Gateway, partner: &Partner, pilot: &str, hex: &str) -> Response<Body> {
    if let Err(p) = party(gw, partner, pilot) {
        return p.response();
    }
    let Some(version) = version_from_hex(hex) else {
        return problem::respond(
            problem::UNKNOWN_VERSION,
            "a version is 64 lowercase hex digits",
        );
    };
    let snap = gw.policy.current();
    let reg = gw.covenants.clone();
    let pilot = pilot.to_string();
    let out = tokio::task::spawn_blocking(move || {
        view::version(
            reg.store(),
            &snap.on_disk,
            &snap.partners_bytes,
            &pilot,
            &version,
        )
    })
    .await;
    match out {
        Ok(Ok(Some(v))) => json_response(StatusCode::OK, &v),
        Ok(Ok(None)) => problem::respond(problem::UNKNOWN_VERSION, "no such covenant version"),
        _ => problem::respond(problem::INTERNAL, "the covenant state cannot be read"),
    }
}

/// `POST /v1/pilots/{pilot}/covenant/versions/{version}/signatures`.
pub async fn sign(
    gw: &Gateway,
    partner: &Partner,
    pilot: &str,
    hex: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(p) = party(gw, partner, pilot) {
        return p.response();
    }
    let Some(version) = version_from_hex(hex) else {
        return problem::respond(
            problem::UNKNOWN_VERSION,
            "a version is 64 lowercase hex digits",
        );
    };
    let jose = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().map(str::trim) == Some("application/jose"));
    if !jose {
        return problem::respond(
            problem::UNSUPPORTED_MEDIA_TYPE,
            "a signature is sent as application/jose (JWS compact serialisation)",
        );
    }
    let body = match tokio::time::timeout(
        super::wire::BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_JWS_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return problem::respond(problem::BODY_TOO_LARGE, "a JWS of at most 64 KiB"),
        Err(_) => return problem::respond(problem::BODY_TIMEOUT, "the JWS did not arrive in time"),
    };
    let Ok(jws) = String::from_utf8(body.to_vec()) else {
        return problem::respond(problem::INVALID_SIGNATURE, "a JWS is ASCII text");
    };
    submit(gw, partner, pilot, version, jws).await
}

async fn submit(
    gw: &Gateway,
    partner: &Partner,
    pilot: &str,
    version: String,
    jws: String,
) -> Response<Body> {
    let reg = gw.covenants.clone();
    let verifier = gw.tls.current().partner_verifier.clone();
    let snap = gw.policy.current();
    let caller = partner.id.clone();
    let pilot_owned = pilot.to_string();
    let v = version.clone();
    let taken = tokio::task::spawn_blocking(move || {
        reg.submit(
            &jws,
            &pilot_owned,
            &v,
            Some(&caller),
            verifier.as_ref(),
            &snap.identities,
        )
    })
    .await;
    let submitted = match taken {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return problem::respond(e.kind(), e.to_string()),
        Err(_) => return problem::respond(problem::INTERNAL, "the signature was not handled"),
    };
    // Enforce again now: a revocation stops flows before this answer leaves,
    // a last signature opens them.
    let refreshed = refresh(gw).await;
    let in_force = gw
        .policy
        .current()
        .policy
        .pilots
        .get(pilot)
        .filter(|p| !p.standing.unsigned)
        .map(|p| p.covenant_version.clone());
    let mut resp = json_response(
        StatusCode::CREATED,
        &json!({
            "pilot": pilot, "version": version, "partner": submitted.partner,
            "decision": submitted.decision.as_str(), "record": submitted.record,
            "in_force": in_force, "enforced": refreshed,
        }),
    );
    if let Ok(loc) = HeaderValue::from_str(&format!(
        "/v1/pilots/{pilot}/covenant/versions/{}",
        crate::policy::terms::version_hex(&version)
    )) {
        resp.headers_mut().insert(LOCATION, loc);
    }
    resp
}

/// Enforces the covenant again; `false` if that failed. It blocks this
/// thread for a few file reads and at most one audit record per version
/// taking effect: signatures are rare, and the answer must not leave before
/// the policy that follows from them runs.
async fn refresh(gw: &Gateway) -> bool {
    gw.policy.refresh().is_ok()
}

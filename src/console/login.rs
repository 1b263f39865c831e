//! Who is calling the console, and the ways in: a personal certificate in
//! the TLS handshake, a bearer token, a one-time link. A browser gets a
//! server-side session in a cookie; scripts send their token on every call.
//!
//! A cookie (like a client certificate) is sent by the browser on its own,
//! also when another site makes it call the console. So a session's cookie
//! is `SameSite=Strict`, and every request of a session that changes
//! something must also carry the session's CSRF token in `X-CSRF-Token`,
//! which only the console's own page can read (`GET /api/v1/session`). A
//! bearer token is never sent on its own and needs no such token. The
//! certificate alone never authorises an API call: it opens a session, and a
//! session opened with a certificate is only good on connections that
//! present that certificate again, so the card must stay in the reader.
//!
//! Every login and every refused credential is logged (user name and
//! method, never a token) and counted in metrics.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use rustls_pki_types::CertificateDer;
use serde_json::json;
use tracing::{info, warn};

use super::reply::{forbidden, json_ok, respond};
use super::session::{self, Method as How, Session};
use super::users::{Refused, Role, User};
use crate::gateway::{Body, Gateway};
use crate::identity::sha256;
use crate::problem::{self, Kind};

/// The session cookie. `__Host-`: the browser keeps it only if it was set
/// over HTTPS, for the whole site, without a Domain, so no other host or
/// plain-HTTP page can plant or read it.
pub const COOKIE: &str = "__Host-kp-session";
/// The header a session's state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest login request body (`{"token": "..."}`).
const MAX_LOGIN_BODY: usize = 4096;

/// The personal certificate chain (leaf first, never empty) of the
/// connection a request came on, verified in the handshake (put in the
/// request's extensions by the listener).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificate {
    fn leaf(&self) -> &[u8] {
        self.0.first().map_or(&[], |c| c.as_ref())
    }
}

fn peer(req: &Request<Incoming>) -> Option<&PeerCertificate> {
    req.extensions().get::<PeerCertificate>()
}

/// The value of our cookie in the request's `Cookie` headers.
fn cookie(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Sets the session cookie on an answer.
pub(super) fn set_cookie(resp: &mut Response<Body>, id: &str) {
    let v = format!("{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&v) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn clear_cookie(resp: &mut Response<Body>) {
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-kp-session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
}

/// Logs and counts a refused credential; the problem to answer with.
fn refused(gw: &Gateway, how: How, why: Refused) -> Response<Body> {
    warn!(
        method = how.as_str(),
        reason = why.as_str(),
        "console login refused"
    );
    gw.metrics.console_login(how.as_str(), Some(why.as_str()));
    let (kind, detail) = match why {
        Refused::Unknown => (
            problem::LOGIN_FAILED,
            "log in with your token or certificate",
        ),
        Refused::Expired => (problem::ACCOUNT_EXPIRED, "ask an administrator"),
    };
    let mut r = problem::respond(kind, detail);
    if how == How::Token {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn unauthorized(kind: Kind, detail: &str) -> Response<Body> {
    let mut r = problem::respond(kind, detail);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Opens a session for a user who just proved who they are (`external`:
/// one from an identity provider, kept whole in the session); logs and
/// counts the login.
pub(super) fn open_session(
    gw: &Gateway,
    user: &User,
    how: How,
    cert: Option<&PeerCertificate>,
    external: bool,
) -> Option<(String, Session)> {
    let bound = cert.map(|c| sha256(c.leaf()));
    let opened = gw.console.sessions.open(user, how, bound, external)?;
    info!(user = %user.name, method = how.as_str(), "console login");
    gw.metrics.console_login(how.as_str(), None);
    gw.console.last_use.touch(&user.name);
    Some(opened)
}

/// The session's description for the page: who, what it may do, and the
/// CSRF token to send with changes.
fn describe(gw: &Gateway, user: &User, s: &Session) -> serde_json::Value {
    json!({
        "name": user.name, "role": user.role.as_str(), "partner": user.partner,
        "pilot": user.pilot, "method": s.method.as_str(), "csrf": s.csrf,
        "idle_secs": gw.console.sessions.idle().as_secs(),
    })
}

/// The user of a request to `/api/v1/...`, or the answer that refuses it:
/// a bearer token, else a session cookie (with its CSRF token for anything
/// but reading). A client certificate alone is no answer here: it logs in
/// at `/login` or `POST /api/v1/session`.
pub fn authenticate(gw: &Gateway, req: &Request<Incoming>) -> Result<User, Box<Response<Body>>> {
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        let token = h
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        return match gw.console.users.by_token(token) {
            Ok(u) => {
                gw.console.last_use.touch(&u.name);
                Ok(u)
            }
            Err(why) => Err(Box::new(refused(gw, How::Token, why))),
        };
    }
    let (user, s) = session_of(gw, req)?;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        // Hashes compared, so the time taken says nothing about the token.
        if sha256(sent) != sha256(s.csrf.as_bytes()) {
            warn!(user = %user.name, "console request without its session's CSRF token refused");
            return Err(Box::new(problem::respond(
                problem::CSRF_TOKEN_INVALID,
                "send the csrf value of GET /api/v1/session in X-CSRF-Token",
            )));
        }
    }
    Ok(user)
}

/// The live session of the request's cookie and its user, re-read from the
/// users file: a revoked or expired user's session ends at once.
fn session_of(
    gw: &Gateway,
    req: &Request<Incoming>,
) -> Result<(User, Session), Box<Response<Body>>> {
    let Some(id) = cookie(req) else {
        return Err(Box::new(unauthorized(
            problem::UNAUTHORIZED,
            "log in, or send Authorization: Bearer <token>",
        )));
    };
    let ended = |detail: &str| {
        let mut r = unauthorized(problem::SESSION_ENDED, detail);
        clear_cookie(&mut r);
        Box::new(r)
    };
    let s = match gw.console.sessions.get(&id) {
        Ok(s) => s,
        Err(session::Ended::Expired) => return Err(ended("the session was idle too long")),
        Err(session::Ended::Unknown) => return Err(ended("no such session")),
    };
    // A session opened with a certificate needs it on every request, and
    // it must still verify now: a card revoked (CRL reloaded) or expired
    // ends the session, also on a connection opened before.
    if let Some(bound) = s.certificate
        && !peer(req).is_some_and(|c| {
            sha256(c.leaf()) == bound && gw.tls.console_still_valid(c.0.as_slice())
        })
    {
        return Err(Box::new(unauthorized(
            problem::SESSION_ENDED,
            "this session needs the certificate it was opened with",
        )));
    }
    if let Some(u) = s.external.clone() {
        return Ok((u, s));
    }
    match gw.console.users.by_name(&s.user) {
        Ok(u) => {
            gw.console.last_use.touch(&u.name);
            Ok((u, s))
        }
        Err(_) => {
            gw.console.sessions.close(&id);
            Err(ended("the user was removed or has expired"))
        }
    }
}

/// `GET /login`: with `?once=<token>` a one-time link, else the personal
/// certificate of the connection, opens a session and sends the browser to
/// the page. Without either the page itself offers the ways in.
pub fn login_page(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let once = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("once="))
            .map(str::to_string)
    });
    let user = if let Some(token) = once {
        let found = gw
            .console
            .sessions
            .redeem_link(&token)
            .ok_or(Refused::Unknown)
            .and_then(|name| gw.console.users.by_name(&name));
        match found {
            Ok(u) => Some((u, How::Link)),
            Err(why) => {
                warn!(
                    method = "link",
                    reason = why.as_str(),
                    "console login refused"
                );
                gw.metrics.console_login("link", Some(why.as_str()));
                return problem::respond(
                    problem::LOGIN_LINK_INVALID,
                    "ask for a new link, or log in with your certificate or token",
                );
            }
        }
    } else if let Some(c) = peer(req) {
        match gw.console.users.by_certificate(c.leaf()) {
            Ok(u) => Some((u, How::Certificate)),
            Err(why) => {
                warn!(
                    method = "certificate",
                    reason = why.as_str(),
                    "console login refused"
                );
                gw.metrics.console_login("certificate", Some(why.as_str()));
                None
            }
        }
    } else {
        None
    };
    let mut resp = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Some((u, how)) = user {
        match open_session(
            gw,
            &u,
            how,
            peer(req).filter(|_| how == How::Certificate),
            false,
        ) {
            Some((id, _)) => set_cookie(&mut resp, &id),
            None => return problem::respond(problem::INTERNAL, "no session could be made"),
        }
    }
    resp
}

/// `/api/v1/session`: `POST` logs in (with `{"token": ...}` as JSON, or an
/// empty body and a personal certificate), `GET` describes the session (and
/// hands the page its CSRF token), `DELETE` logs out.
pub async fn session(gw: &Gateway, req: Request<Incoming>) -> Response<Body> {
    match *req.method() {
        Method::GET => match session_of(gw, &req) {
            Ok((u, s)) => json_ok(&describe(gw, &u, &s)),
            Err(r) => *r,
        },
        Method::DELETE => {
            if let Err(r) = authenticate(gw, &req) {
                return *r;
            }
            if let Some(id) = cookie(&req) {
                gw.console.sessions.close(&id);
            }
            let mut r = respond(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", "");
            clear_cookie(&mut r);
            r
        }
        Method::POST => login(gw, req).await,
        _ => problem::respond(problem::METHOD_NOT_ALLOWED, "GET, POST or DELETE"),
    }
}

async fn login(gw: &Gateway, req: Request<Incoming>) -> Response<Body> {
    use http_body_util::{BodyExt, Limited};
    let json_sent = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let cert = peer(&req).cloned();
    let body = match Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return problem::respond(problem::BODY_TOO_LARGE, "at most 4 KiB"),
    };
    let (found, how) = if body.is_empty() {
        match &cert {
            Some(c) => (gw.console.users.by_certificate(c.leaf()), How::Certificate),
            // The page asks this on opening: no credential offered is no
            // failed login.
            None => return unauthorized(problem::UNAUTHORIZED, "no certificate was presented"),
        }
    } else {
        // JSON only: a form on another site cannot send it without the
        // browser asking the console first (CORS), so it cannot log a
        // browser in as someone else.
        if !json_sent {
            return problem::respond(problem::UNSUPPORTED_MEDIA_TYPE, "send application/json");
        }
        let token = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default();
        (gw.console.users.by_token(&token), How::Token)
    };
    let user = match found {
        Ok(u) => u,
        Err(why) => return refused(gw, how, why),
    };
    let bound = cert.as_ref().filter(|_| how == How::Certificate);
    let Some((id, s)) = open_session(gw, &user, how, bound, false) else {
        return problem::respond(problem::INTERNAL, "no session could be made");
    };
    let mut r = json_ok(&describe(gw, &user, &s));
    *r.status_mut() = StatusCode::CREATED;
    set_cookie(&mut r, &id);
    r
}

/// `GET /api/v1/users`: every user with role, binding, end date and last
/// use, for the yearly access review; for policy admins of every pilot only.
/// Never a token hash.
pub fn users(gw: &Gateway, user: &User) -> Response<Body> {
    if user.role != Role::PolicyAdmin || user.pilot.is_some() {
        return forbidden("only a policy admin of every pilot reviews the users").response();
    }
    let seen = gw.console.last_use.snapshot();
    let now = crate::audit::record::now_micros();
    let list: Vec<_> = gw
        .console
        .users
        .all()
        .iter()
        .map(|u| {
            json!({
                "name": u.name, "role": u.role.as_str(), "partner": u.partner, "pilot": u.pilot,
                "login": {
                    "token": u.token_sha256.is_some(),
                    "certificate_subject": u.certificate.as_ref().map(|c| c.subject.clone()),
                },
                "created": u.created, "expires": u.expires, "expired": u.expired_at(now),
                "last_used": seen.get(&u.name).map(|t| crate::audit::record::format_micros(*t)),
            })
        })
        .collect();
    json_ok(&json!({ "users": list }))
}

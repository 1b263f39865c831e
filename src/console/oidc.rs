//! Logging in through an organisation's identity provider: OpenID Connect,
//! authorization code flow with PKCE (`[[console.oidc]]`).
//!
//! `GET /login/oidc/<name>` sends the browser to the provider;
//! the provider sends it back to `GET /login/oidc/callback` with a code,
//! which the gateway exchanges (with its client secret and the PKCE
//! verifier) for an ID token at the provider's token endpoint. The ID
//! token's signature is checked against the provider's published keys, and
//! its issuer, audience, expiry and nonce against this login. Its claims say
//! the role and the partner or pilot (claim names from the config); the
//! session's user is made from them, not from the users file.
//!
//! State, nonce and PKCE verifier stay on the server, keyed by the `state`
//! the provider hands back: the way back is a cross-site navigation, on which
//! a `SameSite=Strict` cookie is not sent, so a cookie could not carry them.
//! The table is bounded and its entries expire; each is used once
//! ([`super::idp`], which also keeps each provider's client and keys).

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value, json};
use tracing::warn;

use super::idp::{Discovery, Failed, Pending, Provider, fetch_json};
use super::jwt;
use super::login::{open_session, set_cookie};
use super::reply::{json_ok, respond};
use super::session::Method as How;
use super::users::{Role, User};
use crate::config::console::OidcProvider;
use crate::gateway::{Body, Gateway};
use crate::identity::sha256;
use crate::problem;

/// Clock difference allowed with the provider.
const LEEWAY_SECS: i64 = 60;

/// Percent-encoding for a query or form value: all but the unreserved.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query parameter, percent-decoded.
fn param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    let raw = q
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?;
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn random() -> Option<String> {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw).ok()?;
    Some(B64URL.encode(raw))
}

/// `GET /login/providers`: the identity providers the login page offers.
pub fn providers(gw: &Gateway) -> Response<Body> {
    let list: Vec<Value> = gw
        .console
        .oidc
        .providers
        .iter()
        .map(|p| json!({"name": p.cfg.name, "title": p.cfg.title, "url": format!("/login/oidc/{}", p.cfg.name)}))
        .collect();
    json_ok(&json!({ "oidc": list }))
}

/// Where the provider is to send the browser back: the configured
/// `redirect_uri`, or the console as the browser reached it.
fn redirect_uri(cfg: &OidcProvider, req: &Request<Incoming>) -> Option<String> {
    if let Some(r) = &cfg.redirect_uri {
        return Some(r.clone());
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)?
                .to_str()
                .ok()
                .map(str::to_string)
        })?;
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        .then(|| format!("https://{host}/login/oidc/callback"))
}

fn failed(gw: &Gateway, provider: &str, f: Failed) -> Response<Body> {
    warn!(provider, reason = f.0, detail = %f.1, "console login through an identity provider refused");
    gw.metrics.console_login("oidc", Some(f.0));
    let kind = match f.0 {
        "provider-unreachable" | "provider-bad-answer" => problem::OIDC_PROVIDER_UNAVAILABLE,
        _ => problem::OIDC_LOGIN_FAILED,
    };
    problem::respond(kind, f.1)
}

/// `GET /login/oidc/<name>`: a new login, sent to the provider.
pub async fn start(gw: &Gateway, req: &Request<Incoming>, name: &str) -> Response<Body> {
    let oidc = &gw.console.oidc;
    let Some((index, p)) = oidc
        .providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.cfg.name == name)
    else {
        return problem::respond(problem::NOT_FOUND, "no such identity provider");
    };
    let Some(redirect) = redirect_uri(&p.cfg, req) else {
        return problem::respond(problem::BAD_QUERY, "no usable Host to return to");
    };
    let d = match p.discovery().await {
        Ok(d) => d,
        Err(f) => return failed(gw, name, f),
    };
    let (Some(state), Some(nonce), Some(verifier)) = (random(), random(), random()) else {
        return problem::respond(problem::INTERNAL, "no random numbers");
    };
    let challenge = B64URL.encode(sha256(verifier.as_bytes()));
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
        d.authorization_endpoint,
        enc(&p.cfg.client_id),
        enc(&redirect),
        enc(&p.cfg.scopes.join(" ")),
        enc(&state),
        enc(&nonce),
        enc(&challenge),
    );
    oidc.remember(
        state,
        Pending {
            provider: index,
            verifier,
            nonce,
            redirect_uri: redirect,
            made: Instant::now(),
        },
    );
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    match HeaderValue::from_str(&url) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => problem::respond(problem::INTERNAL, "the provider's address is not usable"),
    }
}

/// `GET /login/oidc/callback`: the provider's answer; on success a session
/// and the page.
pub async fn callback(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let Some(pending) = param(req, "state").and_then(|s| gw.console.oidc.take(&s)) else {
        return failed(
            gw,
            "-",
            Failed(
                "unknown-state",
                "this login is unknown, used or expired; start again".into(),
            ),
        );
    };
    let Some(p) = gw.console.oidc.providers.get(pending.provider) else {
        return problem::respond(problem::INTERNAL, "the provider is gone");
    };
    let name = p.cfg.name.as_str();
    if let Some(e) = param(req, "error") {
        let e: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return failed(
            gw,
            name,
            Failed("provider-error", format!("the provider answered {e}")),
        );
    }
    let Some(code) = param(req, "code") else {
        return failed(
            gw,
            name,
            Failed("no-code", "the provider sent no code".into()),
        );
    };
    let user = match finish(gw, p, &pending, &code).await {
        Ok(u) => u,
        Err(f) => return failed(gw, name, f),
    };
    let Some((id, _)) = open_session(gw, &user, How::Oidc, None, true) else {
        return problem::respond(problem::INTERNAL, "no session could be made");
    };
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    set_cookie(&mut r, &id);
    r
}

/// The code for an ID token, the token checked, its claims made a user.
async fn finish(gw: &Gateway, p: &Provider, pending: &Pending, code: &str) -> Result<User, Failed> {
    let d = p.discovery().await?;
    let secret = tokio::fs::read_to_string(&p.cfg.client_secret_file)
        .await
        .map_err(|e| Failed("no-client-secret", format!("the client secret file: {e}")))?;
    let basic = B64.encode(format!("{}:{}", enc(&p.cfg.client_id), enc(secret.trim())));
    let form = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
        enc(code),
        enc(&pending.redirect_uri),
        enc(&pending.verifier)
    );
    let req = Request::builder()
        .method(Method::POST)
        .uri(&d.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Full::new(Bytes::from(form)))
        .map_err(|_| Failed("provider-bad-answer", "token endpoint is not a URL".into()))?;
    let answer = fetch_json(&p.http, req).await?;
    let token = answer
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or_else(|| Failed("no-id-token", "the provider sent no ID token".into()))?;
    let keys = p.keys(&d, jwt::key_id(token).as_deref()).await?;
    let claims = jwt::verify(token, &keys).map_err(|e| Failed("bad-id-token", e.to_string()))?;
    check_claims(&claims, &d, &p.cfg, &pending.nonce)?;
    user_of(gw, &p.cfg, &claims)
}

/// Issuer, audience, authorised party, expiry, issue time and nonce.
fn check_claims(
    c: &Map<String, Value>,
    d: &Discovery,
    cfg: &OidcProvider,
    nonce: &str,
) -> Result<(), Failed> {
    let bad = |why: &str| Err(Failed("bad-id-token", format!("the ID token {why}")));
    if c.get("iss").and_then(Value::as_str) != Some(d.issuer.as_str()) {
        return bad("is from another issuer");
    }
    let aud: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud.contains(&cfg.client_id.as_str()) {
        return bad("is for another client");
    }
    if aud.len() > 1 && c.get("azp").and_then(Value::as_str) != Some(cfg.client_id.as_str()) {
        return bad("was issued to another party");
    }
    let now = crate::audit::record::now_micros() / 1_000_000;
    match c.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp + LEEWAY_SECS > now => {}
        _ => return bad("has expired"),
    }
    if c.get("iat")
        .and_then(Value::as_i64)
        .is_some_and(|iat| iat > now + LEEWAY_SECS)
    {
        return bad("is issued in the future");
    }
    // The nonce ties the token to this login: a token taken from another
    // login (or another site's) does not fit.
    if c.get("nonce")
        .and_then(Value::as_str)
        .map(|n| sha256(n.as_bytes()))
        != Some(sha256(nonce.as_bytes()))
    {
        return bad("belongs to another login");
    }
    Ok(())
}

/// The string values of a claim (a string, or a list of them).
fn values<'a>(c: &'a Map<String, Value>, claim: &str) -> Vec<&'a str> {
    match c.get(claim) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The console user the claims describe: role, and partner or pilot where
/// the config names their claims; what they name must exist.
fn user_of(gw: &Gateway, cfg: &OidcProvider, c: &Map<String, Value>) -> Result<User, Failed> {
    let no = |why: String| Err(Failed("claims-refused", why));
    let role = values(c, &cfg.role_claim)
        .into_iter()
        .find_map(|v| match v {
            "privacy-officer" => Some(Role::PrivacyOfficer),
            "policy-admin" => Some(Role::PolicyAdmin),
            _ => None,
        });
    let Some(role) = role else {
        return no(format!("claim {} names no console role", cfg.role_claim));
    };
    let who = values(c, &cfg.name_claim).first().map(|s| s.to_string());
    let Some(who) =
        who.filter(|w| !w.is_empty() && w.len() <= 128 && !w.chars().any(char::is_control))
    else {
        return no(format!("claim {} names nobody", cfg.name_claim));
    };
    let snap = gw.policy.current();
    let (claim, vouched) = match role {
        Role::PrivacyOfficer => (&cfg.partner_claim, &cfg.partners),
        Role::PolicyAdmin => (&cfg.pilot_claim, &cfg.pilots),
    };
    let known = |v: &str| match role {
        Role::PrivacyOfficer => snap.policy.partners.get(v).is_some(),
        Role::PolicyAdmin => snap.policy.pilots.contains_key(v),
    };
    // The provider speaks only for the partners or pilots its table lists:
    // a provider taken over (or simply wrong) must not make someone another
    // organisation's officer, nor anyone unbound.
    let binding = match claim {
        Some(claim) => match values(c, claim).first() {
            Some(v) if known(v) && vouched.iter().any(|x| x == v) => v.to_string(),
            Some(_) => {
                return no(format!(
                    "claim {claim} names nothing this provider may vouch for"
                ));
            }
            // Configured but absent: refused, never unbound.
            None => return no(format!("claim {claim} is missing")),
        },
        None => match vouched.as_slice() {
            [only] if known(only) => only.clone(),
            _ => {
                return no(format!(
                    "this provider vouches for no single {} (name its claim, or one in its table)",
                    if role == Role::PrivacyOfficer {
                        "partner"
                    } else {
                        "pilot"
                    }
                ));
            }
        },
    };
    let binding = Some(binding);
    let (partner, pilot) = match role {
        Role::PrivacyOfficer => (binding, None),
        Role::PolicyAdmin => (None, binding),
    };
    Ok(User {
        name: format!("{}:{who}", cfg.name),
        role,
        partner,
        pilot,
        token_sha256: None,
        certificate: None,
        created: crate::audit::record::format_micros(crate::audit::record::now_micros()),
        expires: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OidcProvider {
        OidcProvider {
            name: "idp".into(),
            title: "idp".into(),
            issuer: "https://idp.example".into(),
            client_id: "ketenpoort".into(),
            client_secret_file: PathBuf::from("secret"),
            redirect_uri: None,
            ca: None,
            scopes: vec!["openid".into()],
            role_claim: "role".into(),
            partner_claim: None,
            pilot_claim: None,
            name_claim: "sub".into(),
            partners: Vec::new(),
            pilots: Vec::new(),
        }
    }

    fn discovery() -> Discovery {
        Discovery {
            issuer: "https://idp.example".into(),
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            jwks_uri: String::new(),
        }
    }

    use std::path::PathBuf;

    #[test]
    fn an_id_token_must_be_for_this_client_this_login_and_now() {
        let now = crate::audit::record::now_micros() / 1_000_000;
        let good = json!({"iss": "https://idp.example", "aud": "ketenpoort", "exp": now + 300,
                          "iat": now, "nonce": "n1", "sub": "x"});
        let check = |v: Value| {
            let Value::Object(m) = v else { unreachable!() };
            check_claims(&m, &discovery(), &cfg(), "n1")
        };
        assert!(check(good.clone()).is_ok());
        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        for (bad, why) in [
            (with("iss", json!("https://other.example")), "issuer"),
            (with("aud", json!("someone-else")), "audience"),
            (with("aud", json!(["ketenpoort", "other"])), "azp missing"),
            (with("exp", json!(now - 3600)), "expired"),
            (with("iat", json!(now + 3600)), "future"),
            (with("nonce", json!("n2")), "nonce"),
        ] {
            assert!(check(bad).is_err(), "{why}");
        }
        let mut c = with("aud", json!(["ketenpoort", "other"]));
        c["azp"] = json!("ketenpoort");
        assert!(check(c).is_ok());
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("nonce");
        assert!(check(c).is_err(), "no nonce");
    }

    #[test]
    fn values_are_encoded_and_decoded() {
        assert_eq!(enc("a b/c~"), "a%20b%2Fc~");
    }
}

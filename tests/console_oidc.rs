//! Logging in to the console through an organisation's identity provider:
//! a real OpenID Connect provider (the OpenID-certified `oidc-provider` from
//! npm, `tests/oidc/provider.mjs`) started over HTTPS with a certificate
//! minted here, and a browser played by the test that follows the
//! redirects and keeps the provider's cookies.
//!
//! Needs node and npm (`scripts/test.sh` installs them, and the package in
//! `tests/oidc/`); without node it is skipped, except under CI.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::fixture::*;
use common::oidc::*;
use common::*;
use http_body_util::Full;

/// A browser: follows what it is told, keeps each host's cookies.
struct Browser {
    ca: String,
    jar: HashMap<u16, HashMap<String, String>>,
}

fn split(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("https://localhost:").unwrap();
    let (port, path) = rest.split_once('/').unwrap();
    (port.parse().unwrap(), format!("/{path}"))
}

impl Browser {
    async fn get(&mut self, url: &str) -> Reply {
        let (port, path) = split(url);
        // Origin-form, as a browser sends it (hyper would send an absolute
        // URI as given).
        let mut req = hyper::Request::get(path).header("host", format!("localhost:{port}"));
        let jar = self.jar.entry(port).or_default();
        if !jar.is_empty() {
            let c: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", c.join("; "));
        }
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let r = request(
            addr,
            client_config(&self.ca, None, &[b"http/1.1"]),
            req.body(Full::new(Bytes::new())).unwrap(),
        )
        .await
        .unwrap();
        for v in r.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (k, val) = v.split(';').next().unwrap().split_once('=').unwrap();
            jar.insert(k.trim().to_string(), val.to_string());
        }
        r
    }

    /// Where a redirect goes, as an absolute URL.
    fn location(r: &Reply, from: &str) -> String {
        assert!(
            r.status.is_redirection(),
            "{} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let loc = r.headers["location"].to_str().unwrap();
        if loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("https://localhost:{}{loc}", split(from).0)
        }
    }

    /// Starts a login at the console and goes through the provider as
    /// `account`; the callback URL the provider sends the browser to.
    async fn through_provider(&mut self, console: u16, provider: &str, account: &str) -> String {
        // Each login as at another desk: no provider session of the last
        // person (the provider would first ask to end it).
        self.jar.retain(|p, _| *p == console);
        let start = format!("https://localhost:{console}/login/oidc/{provider}");
        let r = self.get(&start).await;
        let mut url = format!("{}&login_hint={account}", Self::location(&r, &start));
        assert!(url.contains("code_challenge_method=S256"), "{url}");
        for _ in 0..10 {
            let r = self.get(&url).await;
            let next = Self::location(&r, &url);
            if next.contains("/login/oidc/callback") {
                return next;
            }
            url = next;
        }
        panic!("the provider never sent the browser back");
    }
}

fn session_cookie(r: &Reply) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("__Host-kp-session="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .find(|v| !v.is_empty())
}

/// A console call with a session cookie (and CSRF token).
async fn console(
    f: &Fixture,
    method: hyper::Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: &str,
) -> Reply {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("cookie", format!("__Host-kp-session={cookie}"));
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    request(
        f.gw.console,
        client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        req,
    )
    .await
    .unwrap()
}

fn param<'a>(url: &'a str, name: &str) -> &'a str {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_and_administrators_log_in_through_their_identity_provider() {
    if !node_ready() {
        return;
    }
    let mut idp = None;
    let f = fixture_with(|pki| idp = Some(start_idp(pki, None))).await;
    let mut idp = idp.unwrap();
    let port = f.gw.console.port();
    idp.register(&[format!("https://localhost:{port}/login/oidc/callback")]);
    let mut b = Browser {
        ca: f.pki.ca.cert_pem.clone(),
        jar: HashMap::new(),
    };

    // The login page learns of the providers.
    let r = b
        .get(&format!("https://localhost:{port}/login/providers"))
        .await;
    assert_eq!(r.json()["oidc"][0]["url"], "/login/oidc/idp-rs");

    // An officer of DT&V, ID token signed with RS256.
    let back = b.through_provider(port, "idp-rs", "fg-idp").await;
    let r = b.get(&back).await;
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["location"], "/");
    let cookie = session_cookie(&r).unwrap();
    let s = console(&f, hyper::Method::GET, "/api/v1/session", &cookie, None, "").await;
    assert_eq!(s.json()["name"], "idp-rs:fg-idp");
    assert_eq!(s.json()["role"], "privacy-officer");
    assert_eq!(s.json()["partner"], "dtv");
    assert_eq!(s.json()["method"], "oidc");
    let r = console(
        &f,
        hyper::Method::GET,
        "/api/v1/disclosures",
        &cookie,
        None,
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    // The way back cannot be taken twice.
    let again = b.get(&back).await;
    assert_eq!(again.status, 401);
    assert!(session_cookie(&again).is_none());

    // An administrator of the pilot, ID token signed with ES256: may change
    // the pilot's policy, sees no records.
    let back = b.through_provider(port, "idp-es", "beheer-idp").await;
    let r = b.get(&back).await;
    let cookie = session_cookie(&r).unwrap();
    let s = console(&f, hyper::Method::GET, "/api/v1/session", &cookie, None, "").await;
    assert_eq!(s.json()["role"], "policy-admin");
    assert_eq!(s.json()["pilot"], "proef");
    let csrf = s.json()["csrf"].as_str().unwrap().to_string();
    let policy = std::fs::read_to_string(f.pki.pilots_dir().join("proef.toml")).unwrap();
    let r = console(
        &f,
        hyper::Method::PUT,
        "/api/v1/pilots/proef/policy?dry_run=true",
        &cookie,
        Some(&csrf),
        &policy,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = console(
        &f,
        hyper::Method::GET,
        "/api/v1/disclosures",
        &cookie,
        None,
        "",
    )
    .await;
    assert_eq!(r.status, 403);

    // People the provider knows but whose claims give no console role, an
    // officer's role without the partner the config asks for, or an
    // officer of a partner this provider may not vouch for (a provider
    // taken over must not make anyone another organisation's officer):
    // refused.
    for who in ["geen-rol", "fg-zonder-partner", "fg-van-gemeente"] {
        let back = b.through_provider(port, "idp-rs", who).await;
        let r = b.get(&back).await;
        assert_eq!(r.status, 401, "{who}");
        assert!(session_cookie(&r).is_none(), "{who}");
    }

    // A code from one login brought back with another login's state (code
    // injection): the PKCE verifier of that other login does not fit it,
    // and the provider refuses the code.
    let a = b.through_provider(port, "idp-rs", "fg-idp").await;
    let start = format!("https://localhost:{port}/login/oidc/idp-rs");
    let other = Browser::location(&b.get(&start).await, &start);
    let forged = format!(
        "https://localhost:{port}/login/oidc/callback?code={}&state={}",
        param(&a, "code"),
        param(&other, "state")
    );
    let r = b.get(&forged).await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert!(session_cookie(&r).is_none());
    // A state the gateway never made.
    let r = b
        .get(&format!(
            "https://localhost:{port}/login/oidc/callback?code={}&state=verzonnen",
            param(&a, "code")
        ))
        .await;
    assert_eq!(r.status, 401);

    let m = b.get(&format!("https://localhost:{port}/metrics")).await;
    let m = String::from_utf8_lossy(&m.body);
    assert!(
        m.contains("ketenpoort_console_logins_total{method=\"oidc\"} 2"),
        "{m}"
    );
    drop(idp);
    f.gw.stop().await;
}

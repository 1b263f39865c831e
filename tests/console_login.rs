//! Logging in to the console as officers and administrators do, over real
//! TLS: a personal certificate minted here and bound with `ketenpoort user
//! add --certificate`, bearer tokens with an end date, sessions in cookies
//! with their CSRF token, idle timeout and logout, one-time links (also the
//! ones `ketenpoort demo` prints).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::fixture::*;
use common::*;
use http_body_util::Full;
use hyper::Method;
use ketenpoort::pki::{Ca, Issued, LeafSpec};

/// One console request as a browser or script makes it.
#[derive(Default, Clone, Copy)]
struct Call<'a> {
    cert: Option<&'a Issued>,
    token: Option<&'a str>,
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
    json: Option<&'a str>,
    body: Option<&'a str>,
}

async fn call(f: &Fixture, method: Method, path: &str, c: Call<'_>) -> Result<Reply, String> {
    call_at(f.gw.console, &f.pki.ca.cert_pem, method, path, c).await
}

async fn call_at(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    method: Method,
    path: &str,
    c: Call<'_>,
) -> Result<Reply, String> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("host", "localhost");
    if let Some(t) = c.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(k) = c.cookie {
        req = req.header("cookie", format!("__Host-kp-session={k}"));
    }
    if let Some(t) = c.csrf {
        req = req.header("x-csrf-token", t);
    }
    let body = match (c.json, c.body) {
        (Some(j), _) => {
            req = req.header("content-type", "application/json");
            j.to_string()
        }
        (None, Some(b)) => b.to_string(),
        _ => String::new(),
    };
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    request(addr, client_config(ca_pem, c.cert, &[b"http/1.1"]), req).await
}

/// The session id a reply's Set-Cookie sets, if any.
fn session_cookie(r: &Reply) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("__Host-kp-session="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .find(|v| !v.is_empty())
}

fn problem_type(r: &Reply) -> String {
    r.json()["type"].as_str().unwrap_or("").to_string()
}

fn cli(f: &Fixture, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(args)
        .arg("--config")
        .arg(f.pki.config_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A personal certificate for a person, from the deployment's CA.
fn personal(ca: &Ca, name: &str) -> Issued {
    ca.issue(&LeafSpec {
        organization: Some("Gemeente Proefstad".into()),
        ..LeafSpec::client(name)
    })
    .unwrap()
}

/// Binds a certificate to a new user through the command line.
fn bind(f: &Fixture, name: &str, cert: &Issued, args: &[&str]) {
    let file = f.pki.dir.path().join(format!("{name}.crt"));
    std::fs::write(&file, &cert.cert_pem).unwrap();
    let mut all = vec!["user", "add", name, "--certificate", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = cli(f, &all);
    assert!(out.contains("logs in with the certificate"), "{out}");
}

/// Waits until the running gateway has reloaded the users file and knows
/// this user.
async fn known(f: &Fixture, name: &str) {
    for _ in 0..100 {
        if f.gw.gateway.console.users.by_name(name).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never learnt of user {name}");
}

async fn metrics(f: &Fixture) -> String {
    let r = call(f, Method::GET, "/metrics", Call::default())
        .await
        .unwrap();
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_certificate_logs_in_with_its_users_rights_and_no_other_does() {
    let f = fixture().await;
    let officer = personal(&f.pki.ca, "A. de Vries");
    let admin = personal(&f.pki.ca, "B. Jansen");
    bind(&f, "fg-vries", &officer, &["--role", "privacy-officer"]);
    bind(
        &f,
        "beheer-jansen",
        &admin,
        &["--role", "policy-admin", "--pilot", "proef"],
    );
    known(&f, "beheer-jansen").await;

    // The officer logs in with the certificate alone.
    let c = Call {
        cert: Some(&officer),
        ..Call::default()
    };
    let r = call(&f, Method::POST, "/api/v1/session", c).await.unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.json()["name"], "fg-vries");
    assert_eq!(r.json()["method"], "certificate");
    let (cookie, csrf) = (
        session_cookie(&r).unwrap(),
        r.json()["csrf"].as_str().unwrap().to_string(),
    );
    let session = Call {
        cert: Some(&officer),
        cookie: Some(&cookie),
        csrf: Some(&csrf),
        ..Call::default()
    };
    let me = call(&f, Method::GET, "/api/v1/whoami", session)
        .await
        .unwrap();
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["name"], "fg-vries");
    assert_eq!(me.json()["role"], "privacy-officer");
    // Its rights: records yes, policies no.
    let r = call(&f, Method::GET, "/api/v1/disclosures", session)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let policy = std::fs::read_to_string(f.pki.pilots_dir().join("proef.toml")).unwrap();
    let r = call(
        &f,
        Method::PUT,
        "/api/v1/pilots/proef/policy?dry_run=true",
        Call {
            body: Some(&policy),
            ..session
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert!(problem_type(&r).ends_with(":forbidden"), "{:?}", r.body);
    // The cookie without the card in the reader is not enough.
    let r = call(
        &f,
        Method::GET,
        "/api/v1/whoami",
        Call {
            cert: None,
            ..session
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);

    // The administrator logs in at /login, as a browser does, and has an
    // administrator's rights for its pilot.
    let r = call(
        &f,
        Method::GET,
        "/login",
        Call {
            cert: Some(&admin),
            ..Call::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/");
    let admin_cookie = session_cookie(&r).unwrap();
    let admin_session = Call {
        cert: Some(&admin),
        cookie: Some(&admin_cookie),
        ..Call::default()
    };
    let s = call(&f, Method::GET, "/api/v1/session", admin_session)
        .await
        .unwrap();
    assert_eq!(s.json()["name"], "beheer-jansen");
    assert_eq!(s.json()["pilot"], "proef");
    let admin_csrf = s.json()["csrf"].as_str().unwrap().to_string();
    let r = call(
        &f,
        Method::PUT,
        "/api/v1/pilots/proef/policy?dry_run=true",
        Call {
            body: Some(&policy),
            csrf: Some(&admin_csrf),
            ..admin_session
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = call(&f, Method::GET, "/api/v1/disclosures", admin_session)
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    // A certificate of the same CA bound to nobody, one with the officer's
    // name but another key, and one of another CA: none logs in.
    let stranger = personal(&f.pki.ca, "C. Onbekend");
    let lookalike = personal(&f.pki.ca, "A. de Vries");
    let other_ca = Ca::generate("other CA").unwrap();
    let foreign = personal(&other_ca, "A. de Vries");
    for cert in [&stranger, &lookalike] {
        let c = Call {
            cert: Some(cert),
            ..Call::default()
        };
        let r = call(&f, Method::POST, "/api/v1/session", c).await.unwrap();
        assert_eq!(r.status, 401);
        assert!(problem_type(&r).ends_with(":login-failed"));
        assert!(session_cookie(&r).is_none());
        let r = call(&f, Method::GET, "/login", c).await.unwrap();
        assert!(
            session_cookie(&r).is_none(),
            "an unbound certificate got a session"
        );
    }
    let c = Call {
        cert: Some(&foreign),
        ..Call::default()
    };
    match call(&f, Method::POST, "/api/v1/session", c).await {
        Err(e) => assert!(e.contains("handshake") || e.contains("request"), "{e}"),
        Ok(r) => {
            assert_ne!(r.status, 201);
            assert!(session_cookie(&r).is_none());
        }
    }
    // A browser without any certificate still reaches the page.
    let r = call(&f, Method::GET, "/", Call::default()).await.unwrap();
    assert_eq!(r.status, 200);

    let m = metrics(&f).await;
    assert!(
        m.contains("ketenpoort_console_logins_total{method=\"certificate\"} 2"),
        "{m}"
    );
    assert!(
        m.contains(
            "ketenpoort_console_login_failures_total{method=\"certificate\",reason=\"unknown\"} 4"
        ),
        "{m}"
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_end_on_their_date_and_the_access_review_lists_every_user() {
    let f = fixture().await;
    let auto = cli(
        &f,
        &[
            "user",
            "add",
            "script",
            "--role",
            "privacy-officer",
            "--expires-days",
            "30",
        ],
    );
    let review = cli(&f, &["user", "add", "review", "--role", "policy-admin"]);
    let pilot_admin = cli(
        &f,
        &[
            "user",
            "add",
            "proefbeheer",
            "--role",
            "policy-admin",
            "--pilot",
            "proef",
        ],
    );
    let tok = |t| Call {
        token: Some(t),
        ..Call::default()
    };
    let mut ok = false;
    for _ in 0..100 {
        if call(&f, Method::GET, "/api/v1/whoami", tok(&auto))
            .await
            .unwrap()
            .status
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the new token never worked");

    // The access review: for an administrator of every pilot only.
    let r = call(&f, Method::GET, "/api/v1/users", tok(&review))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let users = r.json()["users"].as_array().unwrap().clone();
    let script = users.iter().find(|u| u["name"] == "script").unwrap();
    assert_eq!(script["role"], "privacy-officer");
    assert!(script["expires"].as_str().unwrap().len() >= 20);
    assert!(script["last_used"].is_string(), "{script}");
    let pb = users.iter().find(|u| u["name"] == "proefbeheer").unwrap();
    assert_eq!(pb["pilot"], "proef");
    assert!(pb["last_used"].is_null());
    let stored = std::fs::read_to_string(f.pki.data_dir().join("console-users.json")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    for u in stored["users"].as_array().unwrap() {
        let h = u["token_sha256"].as_str().unwrap();
        assert!(!text.contains(h), "a token hash in the review");
    }
    for who in [&pilot_admin, &auto] {
        let r = call(&f, Method::GET, "/api/v1/users", tok(who))
            .await
            .unwrap();
        assert_eq!(r.status, 403);
    }

    // Time passes: the end date is reached (written as an administrator
    // would find it a month later).
    let file = f.pki.data_dir().join("console-users.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for u in v["users"].as_array_mut().unwrap() {
        if u["name"] == "script" {
            u["expires"] = "2020-01-01T00:00:00Z".into();
        }
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let mut refused = None;
    for _ in 0..100 {
        let r = call(&f, Method::GET, "/api/v1/whoami", tok(&auto))
            .await
            .unwrap();
        if r.status == 401 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = refused.expect("an expired token still works");
    assert!(problem_type(&r).ends_with(":account-expired"));
    // Nor does it open a session.
    let r = call(
        &f,
        Method::POST,
        "/api/v1/session",
        Call {
            json: Some(&format!("{{\"token\":\"{auto}\"}}")),
            ..Call::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    assert!(session_cookie(&r).is_none());
    let m = metrics(&f).await;
    assert!(
        m.contains(
            "ketenpoort_console_login_failures_total{method=\"token\",reason=\"expired\"} 2"
        ),
        "{m}"
    );
    // The command line shows end dates and last use too.
    let list = cli(&f, &["user", "list"]);
    let line = list.lines().find(|l| l.starts_with("script\t")).unwrap();
    assert!(line.contains("2020-01-01"), "{line}");
    assert!(!line.ends_with("never"), "{line}");
    f.gw.stop().await;
}

/// The fixture with `[console] session_idle_secs` set.
async fn fixture_idle(secs: u64) -> Fixture {
    fixture_with(move |pki| {
        let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
        pki.write_config(
            "ketenpoort.toml",
            &format!("{cfg}\n[console]\nsession_idle_secs = {secs}\n"),
        );
    })
    .await
}

/// Opens a session with a token; the cookie and the CSRF token.
async fn token_login(f: &Fixture, token: &str) -> (Reply, String, String) {
    let c = Call {
        json: Some(&format!("{{\"token\":\"{token}\"}}")),
        ..Call::default()
    };
    for _ in 0..100 {
        let r = call(f, Method::POST, "/api/v1/session", c).await.unwrap();
        if r.status == 201 {
            let cookie = session_cookie(&r).unwrap();
            let csrf = r.json()["csrf"].as_str().unwrap().to_string();
            return (r, cookie, csrf);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no session for the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_need_their_csrf_token_end_when_idle_and_on_logout() {
    let f = fixture_idle(2).await;
    let token = cli(&f, &["user", "add", "beheer", "--role", "policy-admin"]);
    let (r, cookie, csrf) = token_login(&f, &token).await;
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    for attr in ["__Host-", "Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains(&token), "the token in the cookie");

    // A cross-site page can make the browser send the cookie, but not the
    // CSRF token: a change without it, or with a wrong one, is refused.
    let policy = std::fs::read_to_string(f.pki.pilots_dir().join("proef.toml")).unwrap();
    let put = |csrf| Call {
        cookie: Some(&cookie),
        csrf,
        body: Some(&policy),
        ..Call::default()
    };
    let path = "/api/v1/pilots/proef/policy?dry_run=true";
    for bad in [None, Some("forged"), Some("")] {
        let r = call(&f, Method::PUT, path, put(bad)).await.unwrap();
        assert_eq!(r.status, 403);
        assert!(problem_type(&r).ends_with(":csrf-token-invalid"));
    }
    let r = call(&f, Method::PUT, path, put(Some(&csrf))).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Nor can a cross-site form log a browser in with someone's token.
    let r = call(
        &f,
        Method::POST,
        "/api/v1/session",
        Call {
            body: Some(&format!("{{\"token\":\"{token}\"}}")),
            ..Call::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, 415);

    // Logout: needs the CSRF token too, then the cookie is worth nothing.
    let session = Call {
        cookie: Some(&cookie),
        ..Call::default()
    };
    let r = call(&f, Method::DELETE, "/api/v1/session", session)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let r = call(
        &f,
        Method::DELETE,
        "/api/v1/session",
        Call {
            csrf: Some(&csrf),
            ..session
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = call(&f, Method::GET, "/api/v1/whoami", session)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(problem_type(&r).ends_with(":session-ended"));

    // Idle: used within the timeout it lives on; left alone it ends.
    let (_, cookie, _) = token_login(&f, &token).await;
    let session = Call {
        cookie: Some(&cookie),
        ..Call::default()
    };
    let r = call(&f, Method::GET, "/api/v1/whoami", session)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let r = call(&f, Method::GET, "/api/v1/whoami", session)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(problem_type(&r).ends_with(":session-ended"));

    let m = metrics(&f).await;
    assert!(
        m.contains("ketenpoort_console_logins_total{method=\"token\"} 2"),
        "{m}"
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_link_logs_in_once() {
    let f = fixture().await;
    cli(&f, &["user", "add", "fg", "--role", "privacy-officer"]);
    known(&f, "fg").await;
    let link = f.gw.gateway.console.sessions.issue_link("fg").unwrap();
    let path = format!("/login?once={link}");
    let r = call(&f, Method::GET, &path, Call::default()).await.unwrap();
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/");
    let cookie = session_cookie(&r).unwrap();
    let me = call(
        &f,
        Method::GET,
        "/api/v1/whoami",
        Call {
            cookie: Some(&cookie),
            ..Call::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(me.json()["name"], "fg");
    let again = call(&f, Method::GET, &path, Call::default()).await.unwrap();
    assert_eq!(again.status, 401);
    assert!(problem_type(&again).ends_with(":login-link-invalid"));
    assert!(again.headers.get("set-cookie").is_none());
    f.gw.stop().await;
}

/// Kills the demo process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_a_link_for_an_officer_and_an_administrator_that_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .args(["demo", "--dir"])
            .arg(dir.path().join("demo"))
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let links = tokio::task::spawn_blocking(move || {
        let mut links = Vec::new();
        for line in BufReader::new(out).lines() {
            let line = line.unwrap();
            if let Some((_, url)) = line.split_once("https://127.0.0.1:")
                && url.contains("/login?once=")
            {
                links.push(url.to_string());
            }
            if links.len() == 2 {
                break;
            }
        }
        links
    })
    .await
    .unwrap();
    assert_eq!(links.len(), 2, "the demo printed no links");
    let ca = std::fs::read_to_string(dir.path().join("demo/certs/ca.crt")).unwrap();
    let mut names = Vec::new();
    for link in &links {
        let (port, path) = link.split_once('/').unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let path = format!("/{path}");
        let r = call_at(addr, &ca, Method::GET, &path, Call::default())
            .await
            .unwrap();
        assert_eq!(r.status, 303);
        let cookie = session_cookie(&r).unwrap();
        let s = call_at(
            addr,
            &ca,
            Method::GET,
            "/api/v1/session",
            Call {
                cookie: Some(&cookie),
                ..Call::default()
            },
        )
        .await
        .unwrap();
        names.push(s.json()["role"].as_str().unwrap().to_string());
        let again = call_at(addr, &ca, Method::GET, &path, Call::default())
            .await
            .unwrap();
        assert_eq!(again.status, 401);
        assert!(session_cookie(&again).is_none());
    }
    names.sort();
    assert_eq!(names, ["policy-admin", "privacy-officer"]);
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_personal_certificate_logs_in_no_more_and_its_session_is_useless() {
    let f = fixture().await;
    let officer = personal(&f.pki.ca, "D. Bakker");
    bind(&f, "fg-bakker", &officer, &["--role", "privacy-officer"]);
    known(&f, "fg-bakker").await;
    let c = Call {
        cert: Some(&officer),
        ..Call::default()
    };
    let r = call(&f, Method::POST, "/api/v1/session", c).await.unwrap();
    assert_eq!(r.status, 201);
    let cookie = session_cookie(&r).unwrap();
    // A browser keeps its connection open.
    let tcp = tokio::net::TcpStream::connect(f.gw.console).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(
        &f.pki.ca.cert_pem,
        Some(&officer),
        &[b"http/1.1"],
    ))
    .connect(
        rustls_pki_types::ServerName::try_from("localhost").unwrap(),
        tcp,
    )
    .await
    .unwrap();
    let (mut open, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let whoami = || {
        hyper::Request::get("/api/v1/whoami")
            .header("host", "localhost")
            .header("cookie", format!("__Host-kp-session={cookie}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(open.send_request(whoami()).await.unwrap().status(), 200);

    // The card is reported stolen: its certificate goes on the CRL.
    ketenpoort::datadir::write_atomic(
        &f.pki.crl_file(),
        f.pki
            .ca
            .crl(std::slice::from_ref(&officer.serial))
            .unwrap()
            .as_bytes(),
        0o644,
    )
    .unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if call(&f, Method::POST, "/api/v1/session", c).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "a revoked certificate still logs in");
    // The connection opened before the revocation carries on, but the
    // session no longer answers on it.
    assert_eq!(open.send_request(whoami()).await.unwrap().status(), 401);
    // The session opened with it needs it on every request: without it the
    // cookie is refused, with it the handshake is.
    let session = Call {
        cookie: Some(&cookie),
        ..Call::default()
    };
    let r = call(&f, Method::GET, "/api/v1/whoami", session)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let with_card = Call {
        cert: Some(&officer),
        ..session
    };
    assert!(
        call(&f, Method::GET, "/api/v1/whoami", with_card)
            .await
            .is_err()
    );
    f.gw.stop().await;
}

/// `[console] client_ca` names the CA of the personal certificates (say, a
/// PKIoverheid personal-certificate CA): its certificates log in, the
/// partners' CA's do not even reach the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_console_ca_of_its_own_only_its_certificates_log_in() {
    let personal_ca = Ca::generate("personal certificates CA").unwrap();
    let ca_pem = personal_ca.cert_pem.clone();
    let f = fixture_with(move |pki| {
        std::fs::write(pki.dir.path().join("certs/personal-ca.crt"), &ca_pem).unwrap();
        let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
        pki.write_config(
            "ketenpoort.toml",
            &format!("{cfg}\n[console]\nclient_ca = \"../certs/personal-ca.crt\"\n"),
        );
    })
    .await;
    let card = personal(&personal_ca, "E. Smit");
    bind(&f, "fg-smit", &card, &["--role", "privacy-officer"]);
    let partner_ca_card = personal(&f.pki.ca, "E. Smit");
    bind(
        &f,
        "fg-smit-2",
        &partner_ca_card,
        &["--role", "privacy-officer"],
    );
    known(&f, "fg-smit-2").await;
    let with = |cert| Call {
        cert: Some(cert),
        ..Call::default()
    };
    let r = call(&f, Method::POST, "/api/v1/session", with(&card))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["name"], "fg-smit");
    // Bound, but from the other CA: refused in the handshake.
    let r = call(&f, Method::POST, "/api/v1/session", with(&partner_ca_card)).await;
    assert!(r.is_err(), "{r:?}");
    f.gw.stop().await;
}

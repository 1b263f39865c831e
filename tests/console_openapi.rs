//! The console API documents itself as the NL API Design Rules ask: its
//! OpenAPI document (docs/console-openapi.yaml, served as JSON at the base of
//! the API without a token) lists exactly the routes the console serves, and
//! every console answer names the API version.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use common::fixture::*;
use common::*;
use http_body_util::Full;
use hyper::Method;
use ketenpoort::console::routes::{API_VERSION_VALUE, BASE, ROUTES};
use serde_json::Value;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

fn document() -> (String, Value) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console-openapi.json"),
    )
    .unwrap();
    let doc = serde_json::from_str(&text).unwrap();
    (text, doc)
}

/// The URL path of a server entry: `https://host:port/api/v1` → `/api/v1`.
fn server_path(server: &Value) -> String {
    let url = server["url"].as_str().unwrap();
    let rest = url.split_once("://").unwrap().1;
    rest.find('/')
        .map_or(String::new(), |i| rest[i..].to_string())
}

/// `METHOD /full/path` of every operation of the document: a path is
/// relative to the document's server (ending in `/api/v1`, API Design Rules
/// `/core/uri-version`), or to its own `servers` where it has them
/// (`/healthz` and `/metrics` live at the listener's root).
fn documented(doc: &Value) -> BTreeSet<String> {
    let servers = doc["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    let base = server_path(&servers[0]);
    assert_eq!(base, BASE);
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let prefix = match item.get("servers") {
            Some(s) => server_path(&s[0]),
            None => base.clone(),
        };
        for m in item.as_object().unwrap().keys() {
            if METHODS.contains(&m.as_str()) {
                out.insert(format!("{} {prefix}{path}", m.to_uppercase()));
            }
        }
    }
    out
}

fn served() -> BTreeSet<String> {
    ROUTES.iter().map(|(m, p, _)| format!("{m} {p}")).collect()
}

/// Every problem kind the console's source names (and the kinds of the
/// calls it hands answers to: evidence, covenant withdrawal).
fn console_problems() -> BTreeSet<&'static str> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console");
    let mut names = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, _) in text.match_indices("problem::") {
            let name: String = text[i + "problem::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    // Compared with a record's reason in figures.rs, never answered.
    names.remove("TOO_MANY_CHECKS");
    // crate::exchange::evidence::answer and the covenant registry's errors.
    names.extend(["NOT_YET_PUBLISHED", "VERSION_CLOSED", "UNKNOWN_VERSION"].map(String::from));
    ketenpoort::problem::NAMED
        .iter()
        .filter(|(n, _)| names.contains(*n))
        .map(|(_, k)| k.slug)
        .collect()
}

#[test]
fn console_openapi_lists_exactly_the_routes_served() {
    let (_, doc) = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], API_VERSION_VALUE);
    assert_eq!(documented(&doc), served());

    // Every problem type the console sends is documented, and the document
    // names none that does not exist.
    let documented_types: BTreeSet<String> = doc["components"]["schemas"]["Problem"]["properties"]
        ["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let sent: BTreeSet<String> = console_problems()
        .iter()
        .map(|s| format!("{}{s}", ketenpoort::problem::TYPE_PREFIX))
        .collect();
    assert!(sent.len() > 10, "{sent:?}");
    let missing: Vec<_> = sent.difference(&documented_types).collect();
    assert!(
        missing.is_empty(),
        "undocumented problem types: {missing:?}"
    );
    let known: BTreeSet<String> = ketenpoort::problem::ALL
        .iter()
        .map(|k| format!("{}{}", ketenpoort::problem::TYPE_PREFIX, k.slug))
        .collect();
    let invented: Vec<_> = documented_types.difference(&known).collect();
    assert!(invented.is_empty(), "no such problem types: {invented:?}");

    // The GET forms with a V-nummer in the URL are marked deprecated.
    assert_eq!(
        doc["paths"]["/subjects/{vnummer}/report"]["get"]["deprecated"],
        true
    );
    assert_eq!(
        doc["components"]["parameters"]["subjectQuery"]["deprecated"],
        true
    );
}

async fn call(f: &Fixture, method: &str, path: &str, token: Option<&str>) -> Reply {
    let mut b = hyper::Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = if method == "POST" || method == "PUT" {
        Bytes::from_static(b"{}")
    } else {
        Bytes::new()
    };
    request(
        f.gw.console,
        client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        b.body(Full::new(body)).unwrap(),
    )
    .await
    .unwrap()
}

fn api_version(r: &Reply) -> Option<&str> {
    r.headers.get("api-version").and_then(|v| v.to_str().ok())
}

/// The router's own refusals, as opposed to a handler's.
fn unrouted(r: &Reply) -> bool {
    r.status == 405
        || (r.status == 404
            && serde_json::from_slice::<Value>(&r.body)
                .is_ok_and(|v| v["detail"] == "no such API call" || v["detail"] == "no such page"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_openapi_is_served_without_a_token_and_names_every_route() {
    let f = fixture().await;
    let (text, doc) = document();

    // At the base of the API, without a token: the committed file, byte for byte.
    let r = call(&f, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.body, text.as_bytes());
    assert_eq!(api_version(&r), Some(API_VERSION_VALUE));

    let token = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        "fg-openapi",
        ketenpoort::console::users::Role::PrivacyOfficer,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();

    // Every documented operation reaches a handler (whatever it then says
    // of the made-up values), and names the version.
    for op in documented(&doc) {
        let (method, template) = op.split_once(' ').unwrap();
        let path = template
            .replace("{pilot}", "proef")
            .replace("{id}", "0")
            .replace("{vnummer}", "5550001234")
            .replace("{version}", &"0".repeat(64));
        let r = call(&f, method, &path, Some(&token)).await;
        assert!(!unrouted(&r), "{op}: {} {:?}", r.status, r.body);
        assert_eq!(api_version(&r), Some(API_VERSION_VALUE), "{op}");
    }

    // What is not documented is not served, and refusals name the version too.
    let r = call(&f, "GET", "/api/v1/nowhere", Some(&token)).await;
    assert!(unrouted(&r), "{}", r.status);
    assert_eq!(api_version(&r), Some(API_VERSION_VALUE));
    let r = call(&f, "PATCH", "/api/v1/pilots", Some(&token)).await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.json()["type"],
        "urn:ketenpoort:problem:method-not-allowed"
    );
    assert_eq!(r.headers.get("allow").unwrap(), "GET");
    // Without a token nothing under /api/v1/ but the document says whether
    // a route exists.
    for path in ["/api/v1/nowhere", "/api/v1/pilots", "/api/v1/register"] {
        let r = call(&f, "GET", path, None).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(api_version(&r), Some(API_VERSION_VALUE));
    }
    for path in ["/healthz", "/"] {
        let r = call(&f, "GET", path, None).await;
        assert_eq!(api_version(&r), Some(API_VERSION_VALUE), "{path}");
    }
    f.gw.stop().await;
}

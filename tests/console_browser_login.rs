//! Logging in to the console page in a real browser (headless Chromium):
//! a one-time link opens the page logged in; the log-out button and an idle
//! session both bring back the login form; an officer logs in through the
//! organisation's identity provider (a real OpenID Connect provider) and
//! reaches the officer's view. (A headless browser cannot present a personal
//! certificate easily; tests/console_login.rs logs in with one at the API.)

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::browser::Driver;
use common::fixture::*;
use common::oidc::{node_ready, start_idp};

/// The page shows the application, for this user.
const LOGGED_IN: &str = "return !document.getElementById('nav').classList.contains('hidden') && document.getElementById('who').textContent";
/// The page shows the login form.
const LOGIN_FORM: &str = "return !document.getElementById('login').classList.contains('hidden') && document.getElementById('nav').classList.contains('hidden')";

fn add_user(f: &Fixture, name: &str, role: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["user", "add", name, "--role", role, "--config"])
        .arg(f.pki.config_file())
        .output()
        .unwrap();
    assert!(out.status.success());
}

async fn known(f: &Fixture, name: &str) {
    for _ in 0..100 {
        if f.gw.gateway.console.users.by_name(name).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never learnt of user {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_logs_in_and_logging_out_or_idling_shows_the_login_form() {
    let Some(driver) = Driver::start("nl").await else {
        return;
    };
    let f = fixture_with(|pki| {
        let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
        pki.write_config(
            "ketenpoort.toml",
            &format!("{cfg}\n[console]\nsession_idle_secs = 3\n"),
        );
    })
    .await;
    add_user(&f, "fg", "privacy-officer");
    known(&f, "fg").await;
    let base = format!("https://127.0.0.1:{}", f.gw.console.port());
    let link = |f: &Fixture| f.gw.gateway.console.sessions.issue_link("fg").unwrap();

    driver.go(&format!("{base}/login?once={}", link(&f))).await;
    let who = driver.until(LOGGED_IN, "the page, logged in").await;
    assert!(who.as_str().unwrap().contains("fg"), "{who}");
    // The session is in an HttpOnly cookie: the page's script cannot read it.
    let cookies = driver.script("return document.cookie").await;
    assert_eq!(cookies, "");

    driver.click("#logout-btn").await;
    driver
        .until(LOGIN_FORM, "the login form after logging out")
        .await;
    driver.go(&format!("{base}/")).await;
    driver
        .until(LOGIN_FORM, "the login form after reopening")
        .await;

    // Idle past the timeout: the page opens at the login form again.
    driver.go(&format!("{base}/login?once={}", link(&f))).await;
    driver.until(LOGGED_IN, "the page, logged in again").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    driver.go(&format!("{base}/")).await;
    driver
        .until(LOGIN_FORM, "the login form after idling")
        .await;
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_logs_in_through_the_identity_provider_and_sees_the_officers_view() {
    if !node_ready() {
        return;
    }
    let Some(driver) = Driver::start("nl").await else {
        return;
    };
    let mut idp = None;
    let f = fixture_with(|pki| idp = Some(start_idp(pki, Some("fg-idp")))).await;
    let mut idp = idp.unwrap();
    let port = f.gw.console.port();
    idp.register(&[format!("https://127.0.0.1:{port}/login/oidc/callback")]);

    driver.go(&format!("https://127.0.0.1:{port}/")).await;
    driver
        .until(
            "return document.querySelector('#oidc-links a')",
            "the identity provider's link",
        )
        .await;
    driver.click("#oidc-links a").await;
    // To the provider (another site) and back: the session cookie is
    // SameSite=Strict, so the page must find its session with its own
    // request, not the navigation's.
    let who = driver.until(LOGGED_IN, "the page, logged in").await;
    assert!(who.as_str().unwrap().contains("idp-rs:fg-idp"), "{who}");
    assert!(who.as_str().unwrap().contains("dtv"), "{who}");
    let view = driver
        .script(
            "return [document.querySelector('#nav li.officer').classList.contains('hidden'), document.getElementById('editor').classList.contains('hidden')]",
        )
        .await;
    assert_eq!(view, serde_json::json!([false, true]), "officer's view");
    drop(idp);
    f.gw.stop().await;
}

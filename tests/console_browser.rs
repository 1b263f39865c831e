//! The console page in a real browser: headless Chromium driven over the
//! WebDriver protocol (chromedriver), as a privacy officer would use it: log
//! in with a token, search a V-nummer that an exchange in this test made, see
//! its records, open the access report, save a screenshot.
//!
//! Needs `chromium` and `chromedriver` (Debian: chromium, chromium-driver);
//! scripts/test.sh installs them. Outside CI, a machine without them skips
//! this test with a message; in CI (CI=true) it fails instead.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fixture::*;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const V: &str = "5550001234";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    port: u16,
    child: Child,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wd(port: u16, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("{status}: {v}"));
    }
    Ok(v["value"].clone())
}

fn which(name: &str) -> Option<String> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).is_file())
}

impl Driver {
    async fn start() -> Option<Self> {
        let driver = std::env::var("CHROMEDRIVER")
            .ok()
            .or_else(|| which("chromedriver"));
        let browser = std::env::var("CHROMIUM").ok().or_else(|| which("chromium"));
        let (Some(driver), Some(browser)) = (driver, browser) else {
            assert!(
                std::env::var("CI").is_err(),
                "chromium and chromedriver are needed in CI (scripts/test.sh installs them)"
            );
            eprintln!(
                "skipped: chromium or chromedriver not found (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": browser,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1400,1100",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let started = Instant::now();
        let session = loop {
            match wd(port, Method::POST, "/session", Some(caps.clone())).await {
                Ok(v) => break v["sessionId"].as_str().unwrap().to_string(),
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    panic!("no WebDriver session: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Some(Self {
            port,
            child,
            session,
            _profile: profile,
        })
    }

    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        wd(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.cmd(
            Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.cmd(
            Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn script(&self, js: &str) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Opens the console page and logs in with a token, as a user would.
    async fn log_in(&self, console: std::net::SocketAddr, token: &str) {
        self.cmd(
            Method::POST,
            "/url",
            Some(json!({"url": format!("https://127.0.0.1:{}/", console.port())})),
        )
        .await;
        self.type_into("#token", token).await;
        self.click("#login-btn").await;
        self.until(
            "return !document.getElementById('app').classList.contains('hidden') && document.getElementById('who').textContent",
            "login",
        )
        .await;
    }

    /// Polls a script until it returns something truthy (10 s at most).
    async fn until(&self, js: &str, what: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.script(js).await;
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officer_logs_in_searches_reads_the_report_and_takes_a_screenshot() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let f = fixture().await;
    for (client, path) in [
        (
            &f.gemeente,
            format!("/v1/pilots/proef/services/dtv/dossier/{V}"),
        ),
        (
            &f.ngo_pinned,
            format!("/v1/pilots/proef/services/dtv/dossier/{V}"),
        ),
        (
            &f.ngo_pinned,
            "/v1/pilots/proef/services/dtv/lijst/a".to_string(),
        ),
    ] {
        let r = client
            .send(
                Method::GET,
                &path,
                &[("ketenpoort-purpose", "casusoverleg")],
                None,
            )
            .await
            .unwrap();
        assert!(r.status.is_success() || r.status == 403);
    }
    let token = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        "fg-test",
        ketenpoort::console::users::Role::PrivacyOfficer,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();

    driver.log_in(f.gw.console, &token).await;

    driver.type_into("#q-subject", V).await;
    driver.click("#search-btn").await;
    let rows = driver
        .until(
            "const r = document.querySelectorAll('#rows tr'); return r.length >= 3 ? r.length : 0",
            "search results",
        )
        .await;
    assert!(
        rows.as_u64().unwrap() >= 3,
        "two exchanges and the look-up itself"
    );
    let text = driver
        .script("return document.getElementById('rows').innerText")
        .await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("gemeente") && text.contains("ngo-pinned") && text.contains("proef-casus"),
        "{text}"
    );
    assert!(!text.contains(V), "the page shows no V-nummer in records");

    // A record's inclusion proof.
    driver
        .script("document.querySelector('#rows tr.rec:last-child').click(); return true")
        .await;
    let proof = driver
        .until(
            "return document.getElementById('proof').textContent",
            "the proof",
        )
        .await;
    assert!(proof.as_str().unwrap().contains("leafIdx"));

    // The access report.
    driver.click("#report-btn").await;
    let report = driver
        .until("const t = document.getElementById('report').innerText; return t.includes('Verstrekt') ? t : ''", "the report")
        .await;
    assert!(
        report.as_str().unwrap().contains("Gemeente Proef"),
        "{report}"
    );

    let png = driver.cmd(Method::GET, "/screenshot", None).await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-report.png");
    std::fs::write(&out, bytes).unwrap();
    eprintln!("screenshot: {}", out.display());
    driver.cmd(Method::DELETE, "", None).await;
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_edits_a_rule_sees_the_diff_applies_it_and_finds_it_in_the_history() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let f = fixture().await;
    let token = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        "beheer",
        ketenpoort::console::users::Role::PolicyAdmin,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();
    driver.log_in(f.gw.console, &token).await;
    driver
        .until("const s = document.getElementById('pilot-select'); return s.options.length >= 2 && document.getElementById('policy-text').value.includes('[pilot]')", "the pilots")
        .await;
    driver
        .script("const s = document.getElementById('pilot-select'); s.value = 'proef'; s.dispatchEvent(new Event('change')); return true")
        .await;
    driver
        .until("return document.getElementById('policy-text').value.includes('id = \"proef\"') && document.querySelector('#flows svg') !== null", "the proef policy and its picture")
        .await;
    // Edit: one more rule, typed at the end of the file.
    let e = driver.element("#policy-text").await;
    driver
        .script("const t = document.getElementById('policy-text'); t.focus(); t.setSelectionRange(t.value.length, t.value.length); return true")
        .await;
    driver
        .cmd(
            Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": "\n[[rules]]\nid = \"proef-lijst-ngo\"\npurpose = \"casusoverleg\"\nservice = \"dtv/lijst\"\nconsumers = [\"ngo-pinned\"]\nresponse = [\"vnummer\"]\n"})),
        )
        .await;
    driver.click("#dry-run-btn").await;
    let diff = driver
        .until("const t = document.getElementById('policy-result').textContent; return (t.startsWith('Valid:') || t.startsWith('Not valid')) ? t : ''", "the dry-run diff")
        .await;
    assert!(
        diff.as_str()
            .unwrap()
            .contains("+ proef [casusoverleg] dtv → ngo-pinned via dtv/lijst"),
        "{diff}"
    );
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"]
            .rules
            .len(),
        12,
        "a dry run applies nothing"
    );
    driver.click("#apply-btn").await;
    // It opens a flow: applied, but waiting for both its ends to sign.
    let result = driver
        .until("const t = document.getElementById('policy-result').textContent; return t.includes('in force') ? t : ''", "the applied change")
        .await;
    assert!(
        result
            .as_str()
            .unwrap()
            .contains("not in force yet: waiting for: dtv, ngo-pinned"),
        "{result}"
    );
    let pending = driver
        .until("const t = document.getElementById('covenant').innerText; return t.includes('waiting for') ? t : ''", "the pending version")
        .await;
    assert!(
        pending.as_str().unwrap().contains("dtv → ngo-pinned"),
        "{pending}"
    );
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"]
            .rules
            .len(),
        12,
        "not in force before the partners signed"
    );
    f.pki.sign_all();
    f.gw.gateway.reload_policy().await;
    let history = driver
        .until("const t = document.getElementById('history').innerText; return t.includes('beheer') ? t : ''", "the history")
        .await;
    assert!(
        history.as_str().unwrap().contains("ngo-pinned"),
        "{history}"
    );
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"]
            .rules
            .len(),
        13,
        "in force once both ends signed"
    );
    let png = driver.cmd(Method::GET, "/screenshot", None).await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-admin.png"),
        bytes,
    )
    .unwrap();
    driver.cmd(Method::DELETE, "", None).await;
    f.gw.stop().await;
}

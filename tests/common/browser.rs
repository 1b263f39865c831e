//! A real browser for tests: headless Chromium driven over the WebDriver
//! protocol (chromedriver), with axe-core at hand for the accessibility
//! checks and the browser's network log kept. Needs `chromium`,
//! `chromedriver` and `npm` (axe-core is fetched once into the target dir);
//! scripts/test.sh installs them. Outside CI a machine without them skips
//! with a message; in CI (CI=true) it fails.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session with axe-core at hand.
pub struct Driver {
    port: u16,
    axe: String,
    child: Child,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: killing chromedriver alone left its Chromium
        // processes running after the tests, on the machine the bench runs on.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
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

/// axe-core's script: from `AXE_CORE`, or fetched once with npm into the
/// target dir.
fn axe_source() -> Option<String> {
    if let Ok(p) = std::env::var("AXE_CORE") {
        return std::fs::read_to_string(p).ok();
    }
    // The tests of one binary start browsers in parallel: one of them
    // installs, the others wait for it. npm writes package.json in place,
    // so a second npm beside it read it empty (EJSONPARSE in CI); the
    // install goes into a scratch directory that is renamed into place
    // whole, so a reader in another test binary never sees half of it.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("axe");
    let file = dir.join("node_modules/axe-core/axe.min.js");
    if !file.is_file() {
        let npm = which("npm")?;
        let scratch = dir.with_extension(format!("installing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let ok = Command::new(npm)
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&scratch)
            .arg(AXE_CORE_VERSION)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir_all(&scratch);
            return None;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&scratch, &dir).ok()?;
    }
    std::fs::read_to_string(file).ok()
}

/// Pinned, so that a new axe release cannot change the rules a green run
/// was checked against.
const AXE_CORE_VERSION: &str = "axe-core@4.14.1";

impl Driver {
    /// A browser whose languages are `langs` (Accept-Language and
    /// `navigator.languages`), with its network log kept.
    pub async fn start(langs: &str) -> Option<Self> {
        let driver = std::env::var("CHROMEDRIVER")
            .ok()
            .or_else(|| which("chromedriver"));
        let browser = std::env::var("CHROMIUM").ok().or_else(|| which("chromium"));
        let (Some(driver), Some(browser), Some(axe)) = (driver, browser, axe_source()) else {
            assert!(
                std::env::var("CI").is_err(),
                "chromium, chromedriver and npm (axe-core) are needed in CI (scripts/test.sh installs them)"
            );
            eprintln!(
                "skipped: chromium, chromedriver or axe-core not found (apt-get install chromium chromium-driver npm)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"performance": "ALL"},
            "goog:chromeOptions": {
                "binary": browser,
                "prefs": {"intl.accept_languages": langs},
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1400,1100",
                         format!("--lang={}", langs.split(',').next().unwrap_or("nl")),
                         format!("--accept-lang={langs}"),
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
            axe,
            child,
            session,
            _profile: profile,
        })
    }

    pub async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        wd(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    pub async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
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

    pub async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.cmd(
            Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn script(&self, js: &str) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Opens the console page and logs in with a token, as a user would.
    pub async fn log_in(&self, console: std::net::SocketAddr, token: &str) {
        self.cmd(
            Method::POST,
            "/url",
            Some(json!({"url": format!("https://127.0.0.1:{}/", console.port())})),
        )
        .await;
        self.until(
            "return document.getElementById('token').offsetParent !== null",
            "the login form",
        )
        .await;
        self.type_into("#token", token).await;
        self.click("#login-btn").await;
        self.until("return document.getElementById('who').textContent", "login")
            .await;
    }

    /// Runs axe-core on the page as it is: its WCAG 2.1 A/AA violations,
    /// each as rule, help and elements.
    pub async fn axe_violations(&self) -> Vec<Value> {
        let loaded = self.script("return typeof axe !== 'undefined'").await;
        if loaded != json!(true) {
            self.script(&format!("{}\n;return true;", self.axe)).await;
        }
        let v = self
            .cmd(
                Method::POST,
                "/execute/async",
                Some(json!({"script": "const done = arguments[arguments.length - 1];
                    axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                      .then((r) => done(r.violations.map((x) => x.id + ': ' + x.help + ' @ ' + x.nodes.map((n) => n.target.join(' ')).join(', '))))
                      .catch((e) => done(['axe failed: ' + e]));", "args": []})),
            )
            .await;
        v.as_array().cloned().expect("axe answers with a list")
    }

    /// Fails on any WCAG 2.1 A/AA violation axe-core finds.
    pub async fn axe(&self, view: &str) {
        let found = self.axe_violations().await;
        assert!(found.is_empty(), "axe on the {view} view: {found:#?}");
    }

    /// Clicks a link of the page's navigation.
    pub async fn nav(&self, view: &str) {
        self.click(&format!("#nav a[data-view='{view}']")).await;
        self.until(
            &format!("return !document.getElementById('view-{view}').classList.contains('hidden')"),
            view,
        )
        .await;
    }

    /// Presses one key (WebDriver key codes: Tab \u{E004}, Enter \u{E007}).
    pub async fn key(&self, k: &str) {
        let actions: Vec<Value> = k
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.cmd(
            Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    /// Presses Tab until the focus is on `css` (at most 60 times), checking
    /// on the way that every focused element shows its focus (the body is
    /// where the focus rests when it leaves the page at its end).
    pub async fn tab_to(&self, css: &str) {
        for _ in 0..60 {
            self.key("\u{E004}").await;
            let at = self
                .script(&format!(
                    "const a = document.activeElement; const s = getComputedStyle(a);
                     return [a.matches({css:?}), a === document.body || s.outlineStyle !== 'none' || s.boxShadow !== 'none', a.outerHTML.slice(0, 80)]"
                ))
                .await;
            assert_eq!(at[1], json!(true), "focus not visible on {}", at[2]);
            if at[0] == json!(true) {
                return;
            }
        }
        panic!("Tab never reached {css}");
    }

    /// Every URL the browser asked for or went to, from its network log.
    pub async fn urls(&self) -> Vec<String> {
        let log = self
            .cmd(
                Method::POST,
                "/se/log",
                Some(json!({"type": "performance"})),
            )
            .await;
        let mut out = Vec::new();
        for m in log.as_array().into_iter().flatten() {
            let v: Value = serde_json::from_str(m["message"].as_str().unwrap_or("{}")).unwrap();
            let p = &v["message"]["params"];
            for u in [&p["request"]["url"], &p["frame"]["url"], &p["url"]] {
                if let Some(u) = u.as_str() {
                    out.push(u.to_string());
                }
            }
        }
        out
    }

    /// Polls a script until it returns something truthy (10 s at most).
    pub async fn until(&self, js: &str, what: &str) -> Value {
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

    /// Goes to a URL, as typing it in the address bar.
    pub async fn go(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }
}

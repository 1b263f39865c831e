//! A real OpenID Connect provider for the console's login tests: the
//! OpenID-certified `oidc-provider` from npm (`tests/oidc/provider.mjs`),
//! over HTTPS with a certificate of the test's CA, which the gateway trusts.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use ketenpoort::pki::LeafSpec;

use super::TestPki;

/// The provider process; killed when the test ends, however it ends.
pub struct Idp {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Its HTTPS port on 127.0.0.1 (issuer `https://localhost:<port>`).
    pub port: u16,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    /// The next line the provider printed.
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        l.trim().to_string()
    }
}

/// Installs the provider package when missing; false when node is absent
/// (and this is not CI, where that is a failure).
pub fn node_ready() -> bool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    if Command::new("node").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "node is missing (scripts/test.sh installs it)"
        );
        eprintln!("note: node missing, the OIDC test skips");
        return false;
    }
    if !dir.join("node_modules/oidc-provider").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "npm ci in tests/oidc failed");
    }
    true
}

/// Starts the provider with a certificate of the deployment's CA (which the
/// gateway trusts), and configures the gateway for it: one client signing
/// ID tokens with RS256, one with ES256. `default_account` logs in when
/// the login carries no `login_hint` (a browser's).
pub fn start_idp(pki: &TestPki, default_account: Option<&str>) -> Idp {
    let cert = pki
        .ca
        .issue(&LeafSpec::server("idp", &["localhost", "127.0.0.1"]))
        .unwrap();
    let d = pki.dir.path();
    std::fs::write(d.join("idp.crt"), &cert.cert_pem).unwrap();
    std::fs::write(d.join("idp.key"), &cert.key_pem).unwrap();
    std::fs::write(d.join("config/oidc-secret"), "geheim-van-de-test\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(d.join("idp.crt"))
        .arg(d.join("idp.key"))
        .args(default_account)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut idp = Idp {
        stdin: child.stdin.take(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        child,
        port: 0,
    };
    let l = idp.line();
    idp.port = l.strip_prefix("port ").unwrap().parse().unwrap();
    let provider = |name: &str, client: &str| {
        format!(
            r#"
[[console.oidc]]
name = "{name}"
title = "Gemeente Proefstad"
issuer = "https://localhost:{port}"
client_id = "{client}"
client_secret_file = "oidc-secret"
scopes = ["openid", "ketenpoort"]
role_claim = "ketenpoort_role"
partner_claim = "ketenpoort_partner"
pilot_claim = "ketenpoort_pilot"
partners = ["dtv"]
pilots = ["proef"]
"#,
            port = idp.port
        )
    };
    let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
    pki.write_config(
        "ketenpoort.toml",
        &format!(
            "{cfg}\n[console]\nsession_idle_secs = 900\n{}{}",
            provider("idp-rs", "ketenpoort-rs"),
            provider("idp-es", "ketenpoort-es")
        ),
    );
    idp
}

impl Idp {
    /// Registers the console's callback URLs with the provider, which only
    /// then starts answering.
    pub fn register(&mut self, redirects: &[String]) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "redirect {}", redirects.join(" ")).unwrap();
        assert_eq!(self.line(), "ready");
    }
}

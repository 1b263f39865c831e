//! The command line as an operator uses it: bad config stops the start with
//! file:line:reason, and `pki init` makes a PKI the gateway can serve with.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ketenpoort");

fn copy_config(to: &std::path::Path) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let dst = to.join("config");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn bad_partners_file_names_file_line_and_reason_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let partners = dir.path().join("config/partners.toml");
    let text = std::fs::read_to_string(&partners).unwrap();
    let bad = text.replacen("oin = \"00000099000000201000\"", "oin = \"12345\"", 1);
    assert_ne!(text, bad);
    std::fs::write(&partners, &bad).unwrap();
    let line = bad.lines().position(|l| l.contains("\"12345\"")).unwrap() + 1;
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.path().join("config/ketenpoort.toml"))
        .args([
            "--partners-addr",
            "127.0.0.1:0",
            "--console-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("partners.toml:{line}:")), "{err}");
    assert!(err.contains("20 digits"), "{err}");
}

#[test]
fn bad_listen_address_is_located() {
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let cfg = dir.path().join("config/ketenpoort.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("\"127.0.0.1:8443\"", "\"localhost-8443\""),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ketenpoort.toml:") && err.contains("localhost-8443"),
        "{err}"
    );
}

#[test]
fn pki_init_makes_every_certificate_with_private_keys_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let cfg = dir.path().join("config/ketenpoort.toml");
    let out = Command::new(BIN)
        .args(["pki", "init", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = dir.path().join("certs/dev");
    let partners =
        ketenpoort::policy::partners::Partners::load(&dir.path().join("config/partners.toml"))
            .unwrap();
    let mut names = vec!["ca".to_string(), "gateway".into(), "gateway-client".into()];
    names.extend(partners.list.iter().map(|p| p.id.to_string()));
    for n in &names {
        assert!(dev.join(format!("{n}.crt")).is_file(), "{n}.crt");
        let mode = std::fs::metadata(dev.join(format!("{n}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{n}.key");
    }
    assert!(dev.join("crl.pem").is_file());
    // Every partner certificate maps to its own partner, pinned ones included.
    let index = ketenpoort::identity::PartnerIndex::new(&partners);
    for p in &partners.list {
        let pem = std::fs::read(dev.join(format!("{}.crt", p.id))).unwrap();
        let (_, der) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let peer = index.identify(&der.contents);
        assert_eq!(peer.partner.unwrap().id, p.id);
    }
    // Revoking writes a CRL that lists the partner's certificate.
    let out = Command::new(BIN)
        .args(["pki", "revoke", "dtv", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["pki", "revoke", "nobody", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn policy_check_passes_on_the_shipped_config_and_fails_with_file_line() {
    let dir = tempfile::tempdir().unwrap();
    copy_config(dir.path());
    let pilots = dir.path().join("config/pilots");
    std::fs::create_dir_all(&pilots).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pilots");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), pilots.join(e.file_name())).unwrap();
    }
    let cfg = dir.path().join("config/ketenpoort.toml");
    let out = Command::new(BIN)
        .args(["policy", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Keep a copy of the good pilots to compare against.
    let old = dir.path().join("old-pilots");
    std::fs::create_dir_all(&old).unwrap();
    for e in std::fs::read_dir(&pilots).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), old.join(e.file_name())).unwrap();
    }

    let utrecht = pilots.join("utrecht.toml");
    let text = std::fs::read_to_string(&utrecht).unwrap();
    let bad = text.replacen(
        "\"medisch.bijzonderheden\"",
        "\"medisch.bijzonderhedenx\"",
        1,
    );
    std::fs::write(&utrecht, &bad).unwrap();
    let line = bad
        .lines()
        .position(|l| l.contains("bijzonderhedenx"))
        .unwrap()
        + 1;
    let out = Command::new(BIN)
        .args(["policy", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("utrecht.toml:{line}:")) && err.contains("unknown field"),
        "{err}"
    );

    // policy diff names the flow that a changed rule takes away.
    let less = text.replacen("    \"terugkeer.land\",\n", "", 1);
    assert!(less != text, "the test's edit did not apply");
    std::fs::write(&utrecht, &less).unwrap();
    let out = Command::new(BIN)
        .args(["policy", "diff", "--config"])
        .arg(&cfg)
        .arg(&old)
        .arg(&pilots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-terugkeer.land") && text.contains("dtv/vertrekdossier"),
        "{text}"
    );
}

/// An installed binary works from any folder: without `./config/` the
/// default is the system install's `/etc/ketenpoort/ketenpoort.toml`, and the
/// demo plays the shipped configuration it carries inside the binary.
#[test]
fn from_a_folder_without_config_the_system_file_is_the_default_and_the_demo_plays() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    // Installed (CI installs the package before the tests) it checks the
    // system files; not installed, it says which file it could not read.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("/etc/ketenpoort/"), "{all}");

    let out = Command::new(BIN)
        .args(["demo", "--once"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("steps did what the script expects"), "{text}");
    // The shipped pilots, from the binary.
    let pilots = dir.path().join("demo-data/config/pilots");
    assert_eq!(std::fs::read_dir(pilots).unwrap().count(), 5);
    every_record_points_at_an_activity_the_register_lists(&dir.path().join("demo-data"));
}

/// The demo's log (exchanges, refusals, registrations and checks, a
/// transfer, covenant steps) exported as Logboek Dataverwerkingen: every
/// line's processing activity is one `dpia register` lists for the same
/// configuration, so a partner's register lookup never dangles.
fn every_record_points_at_an_activity_the_register_lists(demo: &Path) {
    let cfg = demo.join("config/ketenpoort.toml");
    let cfg = cfg.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(demo)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let register: serde_json::Value = serde_json::from_str(&run(&[
        "dpia", "register", "--format", "json", "--config", cfg,
    ]))
    .unwrap();
    let listed: std::collections::BTreeSet<&str> = register
        .as_array()
        .or_else(|| register["activities"].as_array())
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let export = run(&["audit", "export", "--format", "logboek", "--config", cfg]);
    let mut seen = std::collections::BTreeSet::new();
    for line in export.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["attributes"]["dpl.core.processing_activity_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(listed.contains(id.as_str()), "{id} is not in the register");
        seen.insert(id);
    }
    // The demo reaches the registry (register, check) and a transfer, not
    // only the rules' flows.
    for part in [
        ":aanmelding:request",
        ":aanmelding:response",
        ":overdracht:request",
        ":ketenpoort:",
    ] {
        assert!(
            seen.iter().any(|s| s.contains(part)),
            "no record under {part}: {seen:?}"
        );
    }
}

//! The covenant is signed by its parties (issue 17), over real mutual TLS with
//! real keys: a widening change waits for the last signature it needs, a
//! narrowing one takes effect at once, signatures that do not fit are refused,
//! a revocation stops that partner's flows in that pilot at once and only
//! there, everything is in the audit log and the log verifies, and a signature
//! made by another JWS implementation (Python `cryptography`) is accepted.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::fixture::*;
use common::*;
use hyper::Method;
use ketenpoort::audit::{Record, RecordKind};
use ketenpoort::client::{PartnerClient, Reply};
use ketenpoort::covenant::jws::{self, Decision, Payload};
use ketenpoort::pki::{Ca, Issued, LeafSpec};
use ketenpoort::policy::terms::version_hex;

const PURPOSE: [(&str, &str); 1] = [("ketenpoort-purpose", "casusoverleg")];
const LIJST: &str = "/v1/pilots/proef/services/dtv/lijst/a";
const DOSSIER: &str = "/v1/pilots/proef/services/dtv/dossier/5550001234";
const TWEEDE_DOSSIER: &str = "/v1/pilots/tweede/services/dtv/dossier/5550001234";

/// A new flow: dtv's list to ngo-pinned. Needs dtv and ngo-pinned.
const NEW_RULE: &str = r#"
[[rules]]
id = "proef-lijst-ngo"
purpose = "casusoverleg"
service = "dtv/lijst"
consumers = ["ngo-pinned"]
response = ["vnummer", "naam"]
"#;

/// A second pilot where ngo-pinned reads dtv's dossiers.
const TWEEDE: &str = r#"[pilot]
id = "tweede"
name = "LVV Tweede"
partners = ["dtv", "ngo-pinned"]
[pilot.covenant]
id = "LVV-TWEEDE"
version = "1.0"
valid_from = 2019-01-01
valid_until = 2099-12-31
[purposes.casusoverleg]
description = "Casusoverleg"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730
[[rules]]
id = "tweede-casus"
purpose = "casusoverleg"
service = "dtv/dossier"
consumers = ["ngo-pinned"]
response = ["vnummer"]
"#;

/// The covenant version a pilot runs with.
fn running(f: &Fixture, pilot: &str) -> String {
    let snap = f.gw.gateway.policy.current();
    let p = &snap.policy.pilots[pilot];
    assert!(!p.standing.unsigned, "{pilot} has a version in force");
    p.covenant_version.clone()
}

fn proef_text(f: &Fixture) -> String {
    std::fs::read_to_string(f.pki.pilots_dir().join("proef.toml")).unwrap()
}

/// Writes the proef pilot file and reloads; the file's covenant version.
async fn change(f: &Fixture, text: &str) -> String {
    f.pki.write_config("pilots/proef.toml", text);
    f.gw.gateway.reload_policy().await;
    let snap = f.gw.gateway.policy.current();
    let v = snap.on_disk.pilots["proef"].covenant_version.clone();
    assert_eq!(
        ketenpoort::policy::PolicySet::load(
            &f.pki.dir.path().join("config/partners.toml"),
            &f.pki.pilots_dir()
        )
        .unwrap()
        .pilots["proef"]
            .covenant_version,
        v,
        "the reload read the file just written"
    );
    v
}

fn signed(cert: &Issued, pilot: &str, version: &str, decision: Decision) -> String {
    let payload = Payload {
        pilot: pilot.into(),
        version: version.into(),
        decision,
        iat: None,
    };
    jws::sign_pem(&payload, &cert.cert_pem, &cert.key_pem).unwrap()
}

async fn submit(client: &PartnerClient, pilot: &str, version: &str, jws: &str) -> Reply {
    client
        .send_bytes(
            Method::POST,
            &format!(
                "/v1/pilots/{pilot}/covenant/versions/{}/signatures",
                version_hex(version)
            ),
            "application/jose",
            jws.to_string().into(),
        )
        .await
        .unwrap()
}

async fn status(client: &PartnerClient, pilot: &str) -> serde_json::Value {
    let r = client
        .send(
            Method::GET,
            &format!("/v1/pilots/{pilot}/covenant"),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()
}

async fn call(client: &PartnerClient, path: &str) -> Reply {
    client
        .send(Method::GET, path, &PURPOSE, None)
        .await
        .unwrap()
}

fn problem_type(r: &Reply) -> String {
    r.json()["type"].as_str().unwrap_or("").to_string()
}

async fn records(f: &Fixture) -> Vec<Record> {
    let view = f.gw.gateway.audit.view().clone();
    tokio::task::spawn_blocking(move || {
        (0..view.head().size)
            .map(|i| view.record(i).unwrap())
            .collect()
    })
    .await
    .unwrap()
}

fn of_kind(records: &[Record], kind: RecordKind, version: &str) -> Vec<Record> {
    records
        .iter()
        .filter(|r| r.entry.kind == kind && r.entry.policy_version == version)
        .cloned()
        .collect()
}

fn audit_verifies(pki: &TestPki) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["audit", "verify", "--config"])
        .arg(pki.config_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_widening_waits_for_the_last_signature_then_takes_effect() {
    let f = fixture().await;
    let v1 = running(&f, "proef");
    let dtv = f.pki.oin_cert(DTV_OIN);
    let dtv_client = f.pki.client(f.gw.addr, &dtv);
    assert_eq!(call(&f.ngo_pinned, LIJST).await.status, 403);

    let v2 = change(&f, &format!("{}{NEW_RULE}", proef_text(&f))).await;
    assert_ne!(v1, v2);
    assert_eq!(
        running(&f, "proef"),
        v1,
        "the previous version stays in force"
    );
    assert_eq!(call(&f.ngo_pinned, LIJST).await.status, 403);

    // Any partner of the pilot sees what waits for whom, and the text.
    let st = status(&f.gemeente, "proef").await;
    assert_eq!(st["in_force"]["version"], v1.as_str());
    assert_eq!(st["pending"][0]["version"], v2.as_str());
    assert_eq!(
        st["pending"][0]["waiting_for"],
        serde_json::json!(["dtv", "ngo-pinned"])
    );
    assert!(
        st["pending"][0]["flows"]["dtv"][0]
            .as_str()
            .unwrap()
            .contains("dtv → ngo-pinned via dtv/lijst"),
        "{st}"
    );
    let r = f
        .ngo_pinned
        .send(
            Method::GET,
            &format!("/v1/pilots/proef/covenant/versions/{}", version_hex(&v2)),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let text = r.json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("proef-lijst-ngo") && text.contains("[[declared]]"));
    assert_eq!(
        hex::encode(ketenpoort::identity::sha256(text.as_bytes())),
        version_hex(&v2),
        "the version is the SHA-256 of the text shown"
    );
    assert!(r.json()["flows"].to_string().contains("dtv → ngo-pinned"));

    // One of two signatures: nothing changes.
    let r = submit(
        &dtv_client,
        "proef",
        &v2,
        &signed(&dtv, "proef", &v2, Decision::Accept),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(running(&f, "proef"), v1);
    assert_eq!(call(&f.ngo_pinned, LIJST).await.status, 403);
    let st = status(&f.gemeente, "proef").await;
    assert_eq!(
        st["pending"][0]["waiting_for"],
        serde_json::json!(["ngo-pinned"])
    );

    // The last one: in force, the flow opens.
    let ngo = &f.pki.ngo_pinned;
    let r = submit(
        &f.ngo_pinned,
        "proef",
        &v2,
        &signed(ngo, "proef", &v2, Decision::Accept),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["in_force"], v2.as_str());
    assert_eq!(running(&f, "proef"), v2);
    assert_eq!(call(&f.ngo_pinned, LIJST).await.status, 200);

    // Proposal, both signatures and the moment it took effect are records.
    let all = records(&f).await;
    assert_eq!(of_kind(&all, RecordKind::CovenantProposal, &v2).len(), 1);
    let sigs = of_kind(&all, RecordKind::CovenantSignature, &v2);
    let signers: Vec<&str> = sigs.iter().map(|r| r.entry.sender.as_str()).collect();
    assert_eq!(signers, ["dtv", "ngo-pinned"]);
    assert!(sigs.iter().all(|r| r.entry.reason == "accept"));
    let took = of_kind(&all, RecordKind::CovenantInForce, &v2);
    assert_eq!(took.len(), 1);
    assert!(
        took[0]
            .entry
            .reason
            .starts_with("signed by dtv, ngo-pinned; replaces"),
        "{}",
        took[0].entry.reason
    );
    assert!(took[0].id > sigs[1].id);
    f.gw.stop().await;
    audit_verifies(&f.pki);
}

#[tokio::test]
async fn a_narrowing_takes_effect_at_once_and_a_mixed_change_waits_whole() {
    let f = fixture().await;
    let v1 = running(&f, "proef");
    assert_eq!(call(&f.ngo_pinned, DOSSIER).await.status, 200);
    let text = proef_text(&f);
    let narrowed = text.replace(
        "consumers = [\"gemeente\", \"ngo-pinned\"]",
        "consumers = [\"gemeente\"]",
    );
    assert_ne!(text, narrowed);

    // Narrowing and widening at once: none of it before it is signed.
    let mixed = change(&f, &format!("{narrowed}{NEW_RULE}")).await;
    assert_eq!(running(&f, "proef"), v1);
    assert_eq!(call(&f.ngo_pinned, DOSSIER).await.status, 200);

    // Only narrowing: at once, without a signature.
    let v2 = change(&f, &narrowed).await;
    assert_eq!(running(&f, "proef"), v2);
    let r = call(&f.ngo_pinned, DOSSIER).await;
    assert_eq!(r.status, 403);
    assert_eq!(problem_type(&r), "urn:ketenpoort:problem:no-rule");
    assert_eq!(call(&f.gemeente, DOSSIER).await.status, 200);
    let st = status(&f.gemeente, "proef").await;
    assert_eq!(st["in_force"]["basis"], format!("narrows {v1}"));
    assert!(
        st["pending"].as_array().unwrap().is_empty(),
        "the mixed proposal was proposed before and is superseded: {st}"
    );
    let all = records(&f).await;
    assert_eq!(of_kind(&all, RecordKind::CovenantProposal, &mixed).len(), 1);
    assert_eq!(of_kind(&all, RecordKind::CovenantInForce, &mixed).len(), 0);
    assert_eq!(of_kind(&all, RecordKind::CovenantInForce, &v2).len(), 1);
    f.gw.stop().await;
    audit_verifies(&f.pki);
}

#[tokio::test]
async fn signatures_that_do_not_fit_are_refused() {
    let f = fixture().await;
    let v1 = running(&f, "proef");
    let v2 = change(&f, &format!("{}{NEW_RULE}", proef_text(&f))).await;
    let dtv = f.pki.oin_cert(DTV_OIN);
    let dtv_client = f.pki.client(f.gw.addr, &dtv);
    let expect = |r: &Reply, status: u16, slug: &str| {
        assert_eq!(r.status, status, "{:?}", r.json());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(problem_type(r), format!("urn:ketenpoort:problem:{slug}"));
    };

    // Over another version than the one it is sent to.
    let r = submit(
        &dtv_client,
        "proef",
        &v2,
        &signed(&dtv, "proef", &v1, Decision::Accept),
    )
    .await;
    expect(&r, 400, "invalid-signature");
    // With a payload for another pilot.
    let r = submit(
        &dtv_client,
        "proef",
        &v2,
        &signed(&dtv, "oud", &v2, Decision::Accept),
    )
    .await;
    expect(&r, 400, "invalid-signature");
    // Over a text nobody proposed.
    let fake = format!("sha256:{}", "ab".repeat(32));
    let r = submit(
        &dtv_client,
        "proef",
        &fake,
        &signed(&dtv, "proef", &fake, Decision::Accept),
    )
    .await;
    expect(&r, 404, "unknown-version");
    // Tampered: the payload of one, the signature of another.
    let a = signed(&dtv, "proef", &v2, Decision::Accept);
    let b = signed(&dtv, "proef", &v2, Decision::Revoke);
    let (a_parts, b_parts): (Vec<&str>, Vec<&str>) =
        (a.split('.').collect(), b.split('.').collect());
    let forged = format!("{}.{}.{}", a_parts[0], b_parts[1], a_parts[2]);
    expect(
        &submit(&dtv_client, "proef", &v2, &forged).await,
        400,
        "invalid-signature",
    );
    // From a partner outside the pilot, itself or through a partner of it.
    let buiten = f.pki.oin_cert(BUITEN_OIN);
    let theirs = signed(&buiten, "proef", &v2, Decision::Accept);
    expect(
        &submit(&f.buiten, "proef", &v2, &theirs).await,
        403,
        "partner-not-in-pilot",
    );
    expect(
        &submit(&dtv_client, "proef", &v2, &theirs).await,
        403,
        "signature-not-accepted",
    );
    // Someone else's signature, handed in by another partner.
    let dtvs = signed(&dtv, "proef", &v2, Decision::Accept);
    expect(
        &submit(&f.gemeente, "proef", &v2, &dtvs).await,
        403,
        "signature-not-accepted",
    );
    // A certificate of another CA with dtv's OIN.
    let other = Ca::generate("another CA")
        .unwrap()
        .issue(&LeafSpec {
            serial_number: Some(DTV_OIN.into()),
            ..LeafSpec::client("not dtv")
        })
        .unwrap();
    let r = submit(
        &dtv_client,
        "proef",
        &v2,
        &signed(&other, "proef", &v2, Decision::Accept),
    )
    .await;
    expect(&r, 403, "signature-not-accepted");
    // A revoked certificate of dtv.
    let old = f.pki.oin_cert(DTV_OIN);
    std::fs::write(
        f.pki.crl_file(),
        f.pki.ca.crl(std::slice::from_ref(&old.serial)).unwrap(),
    )
    .unwrap();
    f.gw.gateway.reload_tls().await;
    let r = submit(
        &dtv_client,
        "proef",
        &v2,
        &signed(&old, "proef", &v2, Decision::Accept),
    )
    .await;
    expect(&r, 403, "signature-not-accepted");
    assert!(r.json()["detail"].as_str().unwrap().contains("not trusted"));
    // Not a JWS at all, or not sent as one.
    expect(
        &submit(&dtv_client, "proef", &v2, "not.a.jws").await,
        400,
        "invalid-signature",
    );
    let r = dtv_client
        .send(
            Method::POST,
            &format!(
                "/v1/pilots/proef/covenant/versions/{}/signatures",
                version_hex(&v2)
            ),
            &[],
            Some(&serde_json::json!({"jws": dtvs})),
        )
        .await
        .unwrap();
    expect(&r, 415, "unsupported-media-type");

    // None of them counted.
    let st = status(&f.gemeente, "proef").await;
    assert_eq!(st["pending"][0]["signed"], serde_json::json!([]));
    assert_eq!(running(&f, "proef"), v1);
    let all = records(&f).await;
    assert!(of_kind(&all, RecordKind::CovenantSignature, &v2).is_empty());
    f.gw.stop().await;
}

#[tokio::test]
async fn a_revocation_stops_that_partners_flows_at_once_and_only_there() {
    let f = fixture_with(|pki| pki.write_config("pilots/tweede.toml", TWEEDE)).await;
    let v = running(&f, "proef");
    let ngo = &f.pki.ngo_pinned;
    assert_eq!(call(&f.ngo_pinned, DOSSIER).await.status, 200);
    assert_eq!(call(&f.ngo_pinned, TWEEDE_DOSSIER).await.status, 200);

    let r = submit(
        &f.ngo_pinned,
        "proef",
        &v,
        &signed(ngo, "proef", &v, Decision::Revoke),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = call(&f.ngo_pinned, DOSSIER).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        problem_type(&r),
        "urn:ketenpoort:problem:covenant-not-signed"
    );
    // Recorded like every refusal.
    let id = *ids(&r).first().expect("the refusal names its record");
    let rec = record(&f, id).await;
    assert_eq!(rec.entry.kind, RecordKind::Exchange);
    assert_eq!(rec.entry.reason, "covenant-not-signed");
    assert_eq!(rec.entry.decision, ketenpoort::audit::Decision::Refused);
    // Only that partner, only that pilot.
    assert_eq!(call(&f.gemeente, DOSSIER).await.status, 200);
    assert_eq!(call(&f.ngo_pinned, TWEEDE_DOSSIER).await.status, 200);
    let st = status(&f.gemeente, "proef").await;
    assert_eq!(st["in_force"]["revoked"][0]["partner"], "ngo-pinned");

    // The provider's side too: dtv revokes, nobody receives from it here.
    let dtv = f.pki.oin_cert(DTV_OIN);
    let dtv_client = f.pki.client(f.gw.addr, &dtv);
    let r = submit(
        &dtv_client,
        "proef",
        &v,
        &signed(&dtv, "proef", &v, Decision::Revoke),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = call(&f.gemeente, DOSSIER).await;
    assert_eq!(
        problem_type(&r),
        "urn:ketenpoort:problem:covenant-not-signed"
    );

    // Accepting again opens them again.
    for (cert, client) in [(&dtv, &dtv_client), (ngo, &f.ngo_pinned)] {
        let r = submit(
            client,
            "proef",
            &v,
            &signed(cert, "proef", &v, Decision::Accept),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    assert_eq!(call(&f.gemeente, DOSSIER).await.status, 200);
    assert_eq!(call(&f.ngo_pinned, DOSSIER).await.status, 200);
    let sigs = of_kind(&records(&f).await, RecordKind::CovenantSignature, &v);
    let words: Vec<(&str, &str)> = sigs
        .iter()
        .rev()
        .take(4)
        .map(|r| (r.entry.sender.as_str(), r.entry.reason.as_str()))
        .collect();
    assert_eq!(
        words,
        [
            ("ngo-pinned", "accept"),
            ("dtv", "accept"),
            ("dtv", "revoke"),
            ("ngo-pinned", "revoke")
        ]
    );
    f.gw.stop().await;
    audit_verifies(&f.pki);
}

/// Signs as `argv[1]`'s certificate with `argv[2]`'s key (PEM), ES256, the
/// way any JOSE library would: base64url parts, r||s signature.
const PYTHON_JWS: &str = r#"
import base64, json, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
cert_pem, key_pem, pilot, version = sys.argv[1:5]
cert = x509.load_pem_x509_certificate(open(cert_pem, "rb").read())
key = serialization.load_pem_private_key(open(key_pem, "rb").read(), password=None)
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
der = cert.public_bytes(serialization.Encoding.DER)
header = {"alg": "ES256", "typ": "JOSE", "x5c": [base64.b64encode(der).decode()]}
payload = {"pilot": pilot, "version": version, "decision": "accept", "iat": 1700000000}
signing_input = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(payload).encode())
r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
print(signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big")))
"#;

#[tokio::test]
async fn a_signature_made_by_python_cryptography_is_accepted() {
    let f = fixture().await;
    let v2 = change(&f, &format!("{}{NEW_RULE}", proef_text(&f))).await;
    let dtv = f.pki.oin_cert(DTV_OIN);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("dtv.crt"), dir.path().join("dtv.key"));
    std::fs::write(&cert, &dtv.cert_pem).unwrap();
    std::fs::write(&key, &dtv.key_pem).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(PYTHON_JWS)
        .arg(&cert)
        .arg(&key)
        .args(["proef", &v2])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 with the cryptography package is needed (scripts/test.sh installs python3-cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jws = String::from_utf8(out.stdout).unwrap();
    let r = submit(&f.pki.client(f.gw.addr, &dtv), "proef", &v2, jws.trim()).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let st = status(&f.gemeente, "proef").await;
    assert_eq!(st["pending"][0]["signed"][0]["partner"], "dtv");
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_on_the_partners_side_and_submits() {
    let f = fixture().await;
    let v2 = change(&f, &format!("{}{NEW_RULE}", proef_text(&f))).await;
    let dir = tempfile::tempdir().unwrap();
    let ngo = &f.pki.ngo_pinned;
    let put = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, key, ca) = (
        put("ngo.crt", &ngo.cert_pem),
        put("ngo.key", &ngo.key_pem),
        put("ca.crt", &f.pki.ca.cert_pem),
    );
    let jws_file = dir.path().join("ngo.jws");
    let gateway = format!("https://127.0.0.1:{}", f.gw.addr.port());
    let run = move |args: Vec<std::ffi::OsString>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let os = |v: &[&dyn AsRef<std::ffi::OsStr>]| -> Vec<std::ffi::OsString> {
        v.iter().map(|s| s.as_ref().to_os_string()).collect()
    };
    let hex = version_hex(&v2).to_string();
    let sign = os(&[
        &"covenant",
        &"sign",
        &"--pilot",
        &"proef",
        &"--version",
        &hex,
        &"--cert",
        &cert,
        &"--key",
        &key,
        &"--out",
        &jws_file,
    ]);
    let submit = os(&[
        &"covenant",
        &"submit",
        &jws_file,
        &"--gateway",
        &gateway,
        &"--cert",
        &cert,
        &"--key",
        &key,
        &"--cacert",
        &ca,
    ]);
    let status = os(&[
        &"covenant",
        &"status",
        &"--pilot",
        &"proef",
        &"--config",
        &f.pki.config_file(),
    ]);
    let (r1, r2, r3) = tokio::task::spawn_blocking(move || (run(sign), run(submit), run(status)))
        .await
        .unwrap();
    assert!(r1.0, "{}", r1.1);
    assert!(r2.0 && r2.1.contains("\"decision\":\"accept\""), "{}", r2.1);
    assert!(r3.0, "{}", r3.1);
    assert!(
        r3.1.contains(&format!("pending: {v2}")) && r3.1.contains("waiting for: dtv"),
        "{}",
        r3.1
    );
    f.gw.stop().await;
}

#[tokio::test]
async fn a_pending_version_can_be_withdrawn_in_the_console() {
    let f = fixture().await;
    let v1 = running(&f, "proef");
    let original = proef_text(&f);
    let v2 = change(&f, &format!("{original}{NEW_RULE}")).await;
    let token = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        "beheer",
        ketenpoort::console::users::Role::PolicyAdmin,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();
    let req = hyper::Request::delete(format!(
        "https://localhost/api/v1/pilots/proef/covenant/versions/{}",
        version_hex(&v2)
    ))
    .header("authorization", format!("Bearer {token}"))
    .body(http_body_util::Full::new(bytes::Bytes::new()))
    .unwrap();
    let cfg = client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]);
    let r = request(f.gw.console, cfg, req).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // The file is back to the version in force, nothing waits, and a late
    // signature finds the version closed.
    assert_eq!(proef_text(&f), original);
    assert_eq!(running(&f, "proef"), v1);
    let st = status(&f.gemeente, "proef").await;
    assert_eq!(st["pending"], serde_json::json!([]), "{st}");
    assert_eq!(st["file_version"], v1.as_str());
    let ngo = &f.pki.ngo_pinned;
    let r = submit(
        &f.ngo_pinned,
        "proef",
        &v2,
        &signed(ngo, "proef", &v2, Decision::Accept),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(problem_type(&r), "urn:ketenpoort:problem:version-closed");
    let withdrawn = of_kind(&records(&f).await, RecordKind::CovenantProposal, &v2);
    assert_eq!(withdrawn.len(), 2, "proposed, then withdrawn");
    assert_eq!(withdrawn[1].entry.sender, "console:beheer");
    assert_eq!(withdrawn[1].entry.reason, "withdrawn");
    f.gw.stop().await;
}

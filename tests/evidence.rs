//! The partner's tools of issue 16, as a partner meets them.
//!
//! - `audit monitor` against a gateway played by the test (mutual TLS, a
//!   server that serves whatever checkpoints and proofs the test crafts), so
//!   it can be hostile: it rolls back, forks, serves a bad proof, a forged
//!   checkpoint, too few cosignatures. Witness cosignatures are made here
//!   with the crate's `Cosigner`, as a real witness makes them.
//! - evidence of one disclosure from a real gateway run (partner API over
//!   mutual TLS, console, CLI), checked by `audit check-evidence` and by an
//!   RFC 6962 inclusion check and an Ed25519 note check written here with
//!   ring alone; a partner that is not party to the record is refused; a
//!   tampered file (a record byte, the index, a cosignature below the
//!   quorum) is refused.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use common::fixture::*;
use common::*;
use http_body_util::Full;
use hyper::{Method, StatusCode};
use ketenpoort::audit::checkpoint::Signer;
use ketenpoort::audit::merkle::{self, Hash};
use ketenpoort::demo::backend::{self, Canned, Handler};
use ketenpoort::pki::LeafSpec;
use ketenpoort::witness::{Cosigner, Note, add_cosignatures};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_ketenpoort");
const ORIGIN: &str = "ketenpoort/test";

/// Runs the binary; exit code, stdout, stderr.
async fn run(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN).args(&args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------
// The monitor against a gateway the test plays.

/// A log history: its leaves (`fork` changes them, so the same sizes get other
/// roots) and the gateway's checkpoint key.
struct History {
    leaves: Vec<Hash>,
}

impl History {
    fn new(n: u32, fork: u32) -> Self {
        Self {
            leaves: (0..n)
                .map(|i| merkle::leaf_hash(format!("record {i} of history {fork}").as_bytes()))
                .collect(),
        }
    }
    fn root(&self, size: u64) -> Hash {
        merkle::root(self.leaves.as_slice(), size).unwrap()
    }
}

/// What the played gateway serves now.
#[derive(Default)]
struct Served {
    /// The checkpoint note at `/v1/audit/checkpoint`.
    checkpoint: String,
    /// The leaves consistency proofs are made from.
    leaves: Vec<Hash>,
    /// Serve this instead of a real consistency proof.
    proof_override: Option<String>,
}

/// The played gateway: mutual TLS with a certificate of the test CA.
async fn played_gateway(pki: &TestPki, served: Arc<Mutex<Served>>) -> u16 {
    let cert = pki
        .ca
        .issue(&LeafSpec::server("gateway", &["localhost", "127.0.0.1"]))
        .unwrap();
    let tls = backend::tls_config(
        pki.ca.cert_pem.as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    let handler: Handler = Arc::new(move |req| {
        let s = served.lock().unwrap();
        let text = |status, body: String| Canned {
            status,
            body: Bytes::from(body),
            delay: None,
        };
        if req.path == "/v1/audit/checkpoint" {
            return text(StatusCode::OK, s.checkpoint.clone());
        }
        if let Some(q) = req.path.strip_prefix("/v1/audit/proof/consistency?") {
            if let Some(p) = &s.proof_override {
                return text(StatusCode::OK, p.clone());
            }
            let num = |k: &str| -> u64 {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(k))
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let proof =
                merkle::consistency_proof(s.leaves.as_slice(), num("from="), num("to=")).unwrap();
            let body: String = proof.iter().map(|h| B64.encode(h) + "\n").collect();
            return text(StatusCode::OK, body);
        }
        text(StatusCode::NOT_FOUND, String::new())
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(backend::serve(l, tls, handler, std::future::pending()));
    port
}

/// The partner's side: its certificate files, the keys it trusts, its state.
struct Partner {
    dir: tempfile::TempDir,
    url: String,
    vkey: String,
    witness_vkeys: Vec<String>,
}

impl Partner {
    fn state(&self) -> PathBuf {
        self.dir.path().join("monitor.state")
    }

    async fn monitor(&self, quorum: usize) -> (i32, String, String) {
        let d = self.dir.path();
        let mut args: Vec<String> = ["audit", "monitor", "--url", &self.url]
            .iter()
            .map(|a| a.to_string())
            .collect();
        for (flag, file) in [
            ("--cert", "p.crt"),
            ("--key", "p.key"),
            ("--cacert", "ca.crt"),
        ] {
            args.push(flag.into());
            args.push(s(&d.join(file)));
        }
        args.extend(["--vkey".into(), self.vkey.clone()]);
        for w in &self.witness_vkeys {
            args.extend(["--witness-vkey".into(), w.clone()]);
        }
        args.extend(["--quorum".into(), quorum.to_string()]);
        args.extend(["--state".into(), s(&self.state())]);
        run(args).await
    }
}

/// A checkpoint of `h` at `size`, signed by `log`, cosigned by `witnesses`.
fn cosigned(log: &Signer, h: &History, size: u64, witnesses: &[&Cosigner]) -> String {
    let note = log.sign(size, &h.root(size)).note;
    cosign(&note, witnesses)
}

fn cosign(note: &str, witnesses: &[&Cosigner]) -> String {
    let text = Note::parse(note).unwrap().text;
    let sigs: Vec<_> = witnesses
        .iter()
        .map(|w| w.cosign(&text, 1_780_000_000))
        .collect();
    add_cosignatures(note, &sigs).unwrap()
}

fn witnesses(dir: &Path) -> Vec<Cosigner> {
    (1..=3)
        .map(|i| {
            let name = format!("witness{i}.example");
            Cosigner::generate(&name, &dir.join(format!("w{i}.key"))).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_catches_rollbacks_forks_forgeries_and_missing_quorums() {
    let pki = TestPki::new();
    let keys = tempfile::tempdir().unwrap();
    let log = Signer::load_or_create(&keys.path().join("log.key"), ORIGIN).unwrap();
    let w = witnesses(keys.path());
    let (a, b) = (History::new(16, 0), History::new(16, 1));
    let served = Arc::new(Mutex::new(Served {
        leaves: a.leaves.clone(),
        ..Served::default()
    }));
    let port = played_gateway(&pki, served.clone()).await;
    let partner = Partner {
        dir: tempfile::tempdir().unwrap(),
        url: format!("https://localhost:{port}"),
        vkey: log.vkey(),
        witness_vkeys: w.iter().map(Cosigner::vkey).collect(),
    };
    let cert = pki.oin_cert(DTV_OIN);
    let d = partner.dir.path();
    std::fs::write(d.join("p.crt"), &cert.cert_pem).unwrap();
    std::fs::write(d.join("p.key"), &cert.key_pem).unwrap();
    std::fs::write(d.join("ca.crt"), &pki.ca.cert_pem).unwrap();
    // The log's key may also be given as a file.
    std::fs::write(d.join("log.vkey"), format!("{}\n", log.vkey())).unwrap();
    let serve = |note: String| served.lock().unwrap().checkpoint = note;
    let state = || std::fs::read_to_string(partner.state()).unwrap();

    // First run: kept. Growth: proved consistent.
    let five = cosigned(&log, &a, 5, &[&w[0], &w[1]]);
    serve(five.clone());
    let (code, out, err) = partner.monitor(2).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("size 5 (first checkpoint seen"), "{out}");
    assert_eq!(state(), five);
    let nine = cosigned(&log, &a, 9, &[&w[0], &w[2]]);
    serve(nine.clone());
    let (code, out, err) = partner.monitor(2).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("grew from 5, consistent"), "{out}");
    assert!(out.contains("witness1.example, witness3.example"), "{out}");
    assert_eq!(state(), nine);
    let (code, _, _) = partner.monitor(2).await;
    assert_eq!(code, 0);

    // Rollback: exit 3, both checkpoints printed, the state kept. Checked
    // before the quorum: this one carries no cosignature at all.
    let seven = log.sign(7, &a.root(7)).note;
    serve(seven.clone());
    let (code, out, _) = partner.monitor(2).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("rollback"), "{out}");
    assert!(out.contains(&nine) && out.contains(&seven), "{out}");
    assert_eq!(state(), nine);

    // Fork at the same size; fork at a larger size (the proof fails); a
    // proof that is garbage.
    serve(cosigned(&log, &b, 9, &[&w[0], &w[1]]));
    let (code, out, _) = partner.monitor(2).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("fork") && out.contains(&nine), "{out}");
    served.lock().unwrap().leaves = b.leaves.clone();
    serve(cosigned(&log, &b, 12, &[&w[0], &w[1]]));
    let (code, out, _) = partner.monitor(2).await;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("no valid consistency proof from size 9 to 12"),
        "{out}"
    );
    served.lock().unwrap().leaves = a.leaves.clone();
    served.lock().unwrap().proof_override = Some("not a proof\n".into());
    serve(cosigned(&log, &a, 12, &[&w[0], &w[1]]));
    let (code, out, _) = partner.monitor(2).await;
    assert_eq!(code, 3, "{out}");
    served.lock().unwrap().proof_override = None;
    assert_eq!(state(), nine);

    // A checkpoint signed by another key, or altered after signing: exit 2.
    let other = Signer::load_or_create(&keys.path().join("other.key"), ORIGIN).unwrap();
    serve(cosign(&other.sign(12, &a.root(12)).note, &[&w[0], &w[1]]));
    let (code, _, err) = partner.monitor(2).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused"), "{err}");
    let twelve = cosigned(&log, &a, 12, &[&w[0], &w[1]]);
    serve(twelve.replacen("\n12\n", "\n13\n", 1));
    let (code, _, err) = partner.monitor(2).await;
    assert_eq!(code, 2, "{err}");

    // Quorum not met: one good cosignature, one that does not verify, one
    // missing. Exit 2, the state kept.
    let mut forged = Note::parse(&cosigned(&log, &a, 12, &[&w[0], &w[1]])).unwrap();
    let last = forged.signatures.len() - 1;
    forged.signatures[last].signature[20] ^= 1;
    serve(forged.render());
    let (code, _, err) = partner.monitor(2).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("1 valid cosignature(s), 2 needed"), "{err}");
    assert_eq!(state(), nine);

    // Honest again: accepted, with the key read from a file. A gateway that
    // cannot be reached is a failure, not an inconsistency.
    serve(twelve.clone());
    let mut by_file = Partner {
        vkey: s(&d.join("log.vkey")),
        ..partner
    };
    let (code, out, err) = by_file.monitor(2).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(by_file.state()).unwrap(), twelve);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    by_file.url = format!("https://localhost:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let (code, _, err) = by_file.monitor(2).await;
    assert_eq!(code, 2, "{err}");
    // A quorum above the witnesses given is a usage error: exit 2.
    let (code, _, _) = by_file.monitor(4).await;
    assert_eq!(code, 2);
}

// ---------------------------------------------------------------------------
// Evidence of one disclosure from a real gateway.

const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];

/// RFC 6962 / RFC 9162 §2.1.3.2 inclusion check, with ring's SHA-256 only.
fn rfc6962_included(index: u64, size: u64, leaf: &[u8], proof: &[Vec<u8>], root: &[u8]) -> bool {
    let h = |parts: &[&[u8]]| {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for p in parts {
            ctx.update(p);
        }
        ctx.finish().as_ref().to_vec()
    };
    if index >= size {
        return false;
    }
    let (mut fnum, mut snum) = (index, size - 1);
    let mut r = h(&[&[0u8][..], leaf]);
    for p in proof {
        if snum == 0 {
            return false;
        }
        if fnum & 1 == 1 || fnum == snum {
            r = h(&[&[1u8][..], p.as_slice(), r.as_slice()]);
            if fnum & 1 == 0 {
                while fnum & 1 == 0 && fnum != 0 {
                    fnum >>= 1;
                    snum >>= 1;
                }
            }
        } else {
            r = h(&[&[1u8][..], r.as_slice(), p.as_slice()]);
        }
        fnum >>= 1;
        snum >>= 1;
    }
    snum == 0 && r == root
}

/// The file's parts read by hand: record bytes, index, proof, note text,
/// the log's signature line, checked with ring against the vkey.
fn independent_check(file: &str, vkey: &str) {
    let (head, note) = file.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
    let record = B64
        .decode(lines.next().unwrap().strip_prefix("extra ").unwrap())
        .unwrap();
    let index: u64 = lines
        .next()
        .unwrap()
        .strip_prefix("index ")
        .unwrap()
        .parse()
        .unwrap();
    let proof: Vec<Vec<u8>> = lines.map(|l| B64.decode(l).unwrap()).collect();
    let (text, sigs) = note.trim_end().rsplit_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let mut t = text.lines();
    assert_eq!(t.next(), Some(ORIGIN));
    let size: u64 = t.next().unwrap().parse().unwrap();
    let root = B64.decode(t.next().unwrap()).unwrap();
    assert!(rfc6962_included(index, size, &record, &proof, &root));
    assert!(!rfc6962_included(
        index,
        size,
        b"another record",
        &proof,
        &root
    ));
    // The log's Ed25519 signature: `— name base64(keyid || sig)`, keyid
    // and key from `name+keyid+base64(0x01 || key)`.
    let mut k = vkey.trim().splitn(3, '+');
    let (name, id, key) = (k.next().unwrap(), k.next().unwrap(), k.next().unwrap());
    let key = B64.decode(key).unwrap();
    let line = sigs
        .lines()
        .find(|l| l.starts_with(&format!("\u{2014} {name} ")))
        .unwrap();
    let blob = B64.decode(line.rsplit(' ').next().unwrap()).unwrap();
    assert_eq!(hex::encode(&blob[..4]), id);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key[1..])
        .verify(text.as_bytes(), &blob[4..])
        .unwrap();
}

/// The file with its record bytes, index or checkpoint changed.
fn tampered(file: &str) -> Vec<(&'static str, String)> {
    let (head, note) = file.split_once("\n\n").unwrap();
    let mut lines: Vec<String> = head.lines().map(str::to_string).collect();
    let mut bytes = B64
        .decode(lines[1].strip_prefix("extra ").unwrap())
        .unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let mut byte = lines.clone();
    byte[1] = format!("extra {}", B64.encode(&bytes));
    let index: u64 = lines[2].strip_prefix("index ").unwrap().parse().unwrap();
    lines[2] = format!("index {}", index ^ 1);
    let join = |l: &[String]| format!("{}\n\n{note}", l.join("\n"));
    vec![("a record byte", join(&byte)), ("the index", join(&lines))]
}

async fn check_evidence(
    file: &Path,
    vkey: &Path,
    w: &[String],
    quorum: usize,
) -> (i32, String, String) {
    let mut args = vec![
        "audit".to_string(),
        "check-evidence".into(),
        s(file),
        "--vkey".into(),
        s(vkey),
        "--quorum".into(),
        quorum.to_string(),
    ];
    for k in w {
        args.extend(["--witness-vkey".into(), k.clone()]);
    }
    run(args).await
}

/// A console call with a bearer token.
async fn console(f: &Fixture, path: &str, token: &str) -> Reply {
    let req = hyper::Request::builder()
        .uri(format!("https://localhost{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(
        f.gw.console,
        client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        req,
    )
    .await
    .unwrap()
}

async fn console_user(f: &Fixture, name: &str, args: &[&str]) -> String {
    let mut a: Vec<String> = ["user", "add", name]
        .iter()
        .map(|x| x.to_string())
        .collect();
    a.extend(args.iter().map(|x| x.to_string()));
    a.extend(["--config".into(), s(&f.pki.config_file())]);
    let (code, out, err) = run(a).await;
    assert_eq!(code, 0, "{err}");
    let token = out.trim().to_string();
    for _ in 0..100 {
        if console(f, "/api/v1/whoami", &token).await.status == 200 {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the console never accepted the new user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_of_a_disclosure_proves_offline_and_only_to_its_parties() {
    let f = fixture().await;
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001234",
            CASUS,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    let id = ids(&r)[0];
    let cp = f.gw.gateway.audit.checkpoint().await.unwrap();
    assert!(cp.size > id);
    let path = format!("/v1/audit/records/{id}/evidence");

    // The recipient gets the file; a partner that is no party, and a
    // record that does not exist, do not.
    let got = f
        .gemeente
        .send(Method::GET, &path, &[], None)
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert!(
        got.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let file = String::from_utf8(got.body.to_vec()).unwrap();
    assert!(file.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{file}");
    let refused = f.ngo_kvk.send(Method::GET, &path, &[], None).await.unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["type"], "urn:ketenpoort:problem:forbidden");
    let none = f
        .gemeente
        .send(Method::GET, "/v1/audit/records/999999/evidence", &[], None)
        .await
        .unwrap();
    assert_eq!(none.status, 404);

    // Checked with code written here, not the crate's.
    let vkey_file = f.pki.data_dir().join("audit/checkpoint.vkey");
    let vkey = std::fs::read_to_string(&vkey_file).unwrap();
    independent_check(&file, &vkey);

    // check-evidence: valid, prints the record; no gateway config needed.
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("record.tlog-proof");
    std::fs::write(&ev, &file).unwrap();
    let (code, out, err) = check_evidence(&ev, &vkey_file, &[], 0).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.starts_with(&format!("valid: record {id} ")), "{err}");
    assert!(
        out.contains("dtv") && out.contains("gemeente") && out.contains("1 record(s)"),
        "{out}"
    );

    // With witnesses: the checkpoint cosigned by two of three.
    let w = witnesses(dir.path());
    let wk: Vec<String> = w.iter().map(Cosigner::vkey).collect();
    let (head, note) = file.split_once("\n\n").unwrap();
    let two = format!("{head}\n\n{}", cosign(note, &[&w[0], &w[2]]));
    let one = format!("{head}\n\n{}", cosign(note, &[&w[0]]));
    std::fs::write(&ev, &two).unwrap();
    let (code, _, err) = check_evidence(&ev, &vkey_file, &wk, 2).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cosigned by witness1.example, witness3.example"),
        "{err}"
    );
    independent_check(&two, &vkey);

    // Tampered: refused, each with its reason.
    std::fs::write(&ev, &one).unwrap();
    let (code, _, err) = check_evidence(&ev, &vkey_file, &wk, 2).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1 valid cosignature(s), 2 needed"), "{err}");
    for (what, bad) in tampered(&two) {
        std::fs::write(&ev, &bad).unwrap();
        let (code, out, err) = check_evidence(&ev, &vkey_file, &wk, 2).await;
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(err.starts_with("invalid: "), "{what}: {err}");
    }
    let other = Signer::load_or_create(&dir.path().join("other.key"), ORIGIN).unwrap();
    std::fs::write(&ev, &file).unwrap();
    let (code, _, err) = run(vec![
        "audit".into(),
        "check-evidence".into(),
        s(&ev),
        "--vkey".into(),
        other.vkey(),
    ])
    .await;
    assert_eq!(code, 1, "{err}");

    // The CLI beside the running gateway, and the console, scoped.
    let out_file = dir.path().join("cli.tlog-proof");
    let (code, _, err) = run(vec![
        "audit".into(),
        "evidence".into(),
        "--id".into(),
        id.to_string(),
        "--out".into(),
        s(&out_file),
        "--config".into(),
        s(&f.pki.config_file()),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = check_evidence(&out_file, &vkey_file, &[], 0).await;
    assert_eq!(code, 0, "{err}");
    let officer = console_user(
        &f,
        "fg-gemeente",
        &["--role", "privacy-officer", "--partner", "gemeente"],
    )
    .await;
    let stranger = console_user(
        &f,
        "fg-ngo",
        &["--role", "privacy-officer", "--partner", "ngo-kvk"],
    )
    .await;
    let admin = console_user(&f, "beheer", &["--role", "policy-admin"]).await;
    let cpath = format!("/api/v1/disclosures/{id}/evidence");
    let c = console(&f, &cpath, &officer).await;
    assert_eq!(c.status, 200);
    independent_check(std::str::from_utf8(&c.body).unwrap(), &vkey);
    assert_eq!(console(&f, &cpath, &stranger).await.status, 403);
    assert_eq!(console(&f, &cpath, &admin).await.status, 403);
    f.gw.stop().await;
}

/// Straight on the log, with no checkpoint due: a record newer than the
/// published checkpoint has no evidence yet (503, `Retry-After`); once a
/// checkpoint covers it, its file checks. Scoping and unknown ids too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_waits_for_a_published_checkpoint() {
    use ketenpoort::audit::{Audit, Entry, Options};
    use ketenpoort::evidence::{self, MakeError, Trust};
    let d = tempfile::tempdir().unwrap();
    let mut o = Options::new(d.path(), "test");
    o.checkpoint_records = 1_000_000;
    o.checkpoint_interval = Duration::from_secs(3600);
    let audit = tokio::task::spawn_blocking(move || Audit::open(o))
        .await
        .unwrap()
        .unwrap();
    let entry = || Entry::exchange("proef", "dtv", "gemeente", "casusoverleg", "dtv/dossier");
    audit.record(entry()).await.unwrap();
    audit.checkpoint().await.unwrap();
    let id = audit.record(entry()).await.unwrap().id;
    let view = audit.view().clone();
    let made = evidence::make(&view, id, Some("gemeente"));
    assert!(
        matches!(made, Err(MakeError::NotYetPublished(i)) if i == id),
        "{made:?}"
    );
    let resp = ketenpoort::exchange::evidence::answer(id, made);
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "10");
    audit.checkpoint().await.unwrap();
    let file = evidence::make(&view, id, Some("gemeente")).unwrap();
    let trust = Trust::new(&audit.vkey(), &[], None).unwrap();
    assert_eq!(evidence::check(&file, &trust).unwrap().record.id, id);
    assert!(matches!(
        evidence::make(&view, id, Some("ngo-kvk")),
        Err(MakeError::NotParty(_))
    ));
    assert!(matches!(
        evidence::make(&view, id + 1, None),
        Err(MakeError::NoRecord(_))
    ));
    let ok = ketenpoort::exchange::evidence::answer(id, Ok(file));
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".tlog-proof")
    );
    tokio::task::spawn_blocking(move || audit.shutdown())
        .await
        .unwrap();
}

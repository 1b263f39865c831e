//! The witness as a log (and an attacker) meets it: the real HTTP server on
//! port 0, checkpoints signed by the gateway's own checkpoint signer, real
//! consistency proofs from the audit log's Merkle code, and cosignatures
//! checked by an implementation of cosignature/v1 written here with ring
//! alone, not by the crate's verifier.
//!
//! The promises, each written as the attack that would break it: a forged
//! or unknown log is refused, a rollback or fork is refused, and the witness
//! never cosigns two roots for one size, neither after a restart nor when
//! sixteen conflicting checkpoints arrive at once.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use ketenpoort::audit::checkpoint::{Checkpoint, Signer, Verifier};
use ketenpoort::audit::merkle::{self, Hash};
use ketenpoort::witness::server;
use ketenpoort::witness::{Cosigner, State, Witness};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const ORIGIN: &str = "ketenpoort/test";
const WITNESS: &str = "witness.dtv.example";

/// A log: its leaves and the gateway's checkpoint signer.
struct Log {
    leaves: Vec<Hash>,
    signer: Signer,
}

impl Log {
    /// `n` leaves; `fork` changes their content, so the same sizes get
    /// other roots (a split view).
    fn new(dir: &Path, key: &str, n: u32, fork: u32) -> Self {
        let leaves = (0..n)
            .map(|i| merkle::leaf_hash(format!("record {i} of history {fork}").as_bytes()))
            .collect();
        Self {
            leaves,
            signer: Signer::load_or_create(&dir.join(key), ORIGIN).unwrap(),
        }
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        self.signer
            .sign(size, &merkle::root(self.leaves.as_slice(), size).unwrap())
    }

    fn proof(&self, from: u64, to: u64) -> Vec<Hash> {
        merkle::consistency_proof(self.leaves.as_slice(), from, to).unwrap()
    }

    /// An add-checkpoint body from `old` to `size` with a real proof.
    fn body(&self, old: u64, size: u64) -> String {
        let proof = if old == 0 {
            vec![]
        } else {
            self.proof(old, size)
        };
        body(old, &proof, &self.checkpoint(size).note)
    }
}

fn body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut b = format!("old {old}\n");
    for h in proof {
        b.push_str(&B64.encode(h));
        b.push('\n');
    }
    format!("{b}\n{note}")
}

/// The note text a cosignature covers: the checkpoint without signatures.
fn text_of(note: &str) -> &str {
    &note[..note.rfind("\n\n").unwrap() + 1]
}

/// A witness server running in this process.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    witness: Weak<Witness>,
}

/// Starts a witness for `log_vkeys` (origin → vkey) with the key and state
/// kept in `dir`, so a second start is a restart.
async fn start(dir: &Path, log_vkeys: &[(&str, String)]) -> Running {
    start_with(dir, log_vkeys, None).await
}

async fn start_with(
    dir: &Path,
    log_vkeys: &[(&str, String)],
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Running {
    let key = dir.join("witness.key");
    let cosigner = if key.exists() {
        Cosigner::load(&key).unwrap()
    } else {
        Cosigner::generate(WITNESS, &key).unwrap()
    };
    let mut logs: BTreeMap<String, Vec<Verifier>> = BTreeMap::new();
    for (origin, vkey) in log_vkeys {
        logs.entry(origin.to_string())
            .or_default()
            .push(Verifier::parse(vkey).unwrap());
    }
    let state = State::open(&dir.join("state")).unwrap();
    let witness = Arc::new(Witness::new(cosigner, logs, state));
    let weak = Arc::downgrade(&witness);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel();
    let done = tokio::spawn(server::run(listener, witness, tls, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop,
        done,
        witness: weak,
    }
}

impl Running {
    /// Stops the server and waits until the witness (and its state lock)
    /// is gone, as when the process exits.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.done.await.unwrap();
        for _ in 0..200 {
            if self.witness.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the witness is still held after shutdown");
    }
}

/// The answer to one request: status, content type, body.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

async fn request(addr: SocketAddr, method: Method, path: &str, body: String) -> Answer {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "witness")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn add(addr: SocketAddr, body: String) -> Answer {
    request(addr, Method::POST, "/add-checkpoint", body).await
}

/// cosignature/v1 checked from the specification, with ring and nothing of
/// the crate: the vkey's type byte and key ID, the line's name and key ID,
/// the timestamp, the signed message. Gives the timestamp.
fn independent_verify(vkey: &str, checkpoint_text: &str, response: &str) -> u64 {
    use ring::digest::{SHA256, digest};
    use ring::signature::{ED25519, UnparsedPublicKey};
    let mut parts = vkey.splitn(3, '+');
    let (name, id, key) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let key = B64.decode(key).unwrap();
    assert_eq!(key.len(), 33);
    assert_eq!(key[0], 0x04, "a cosignature/v1 vkey has type 0x04");
    let public = &key[1..];
    let mut id_input = name.as_bytes().to_vec();
    id_input.push(b'\n');
    id_input.push(0x04);
    id_input.extend_from_slice(public);
    let id_hash = digest(&SHA256, &id_input);
    let key_id = &id_hash.as_ref()[..4];
    assert_eq!(hex::encode(key_id), id);

    assert!(response.ends_with('\n'));
    let lines: Vec<&str> = response.lines().collect();
    assert_eq!(lines.len(), 1, "{response}");
    let rest = lines[0].strip_prefix("\u{2014} ").unwrap();
    let (line_name, sig) = rest.split_once(' ').unwrap();
    assert_eq!(line_name, name);
    let sig = B64.decode(sig).unwrap();
    assert_eq!(sig.len(), 4 + 8 + 64);
    assert_eq!(&sig[..4], key_id);
    let timestamp = u64::from_be_bytes(sig[4..12].try_into().unwrap());
    let message = format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}");
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message.as_bytes(), &sig[12..])
        .expect("the cosignature verifies");
    timestamp
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_growing_log_is_cosigned_and_the_cosignatures_verify_independently() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(dir.path(), "log.key", 40, 0);
    let w = start(dir.path(), &[(ORIGIN, log.signer.vkey())]).await;
    let vkey = Cosigner::load(&dir.path().join("witness.key"))
        .unwrap()
        .vkey();
    let mut old = 0;
    for size in [3, 7, 8, 21, 40, 40] {
        let a = add(w.addr, log.body(old, size)).await;
        assert_eq!(a.status, StatusCode::OK, "{old} → {size}: {}", a.body);
        let note = log.checkpoint(size).note;
        let t = independent_verify(&vkey, text_of(&note), &a.body);
        assert!(t.abs_diff(now()) < 60, "timestamp {t}");
        // What a log does with the answer: append it to its checkpoint.
        let cosigned = ketenpoort::witness::add_cosignatures(
            &note,
            &[ketenpoort::witness::NoteSignature::parse_line(a.body.trim_end()).unwrap()],
        )
        .unwrap();
        assert_eq!(cosigned, format!("{note}{}", a.body));
        old = size;
    }
    w.stop().await;
}

#[tokio::test]
async fn refusals_are_the_ones_the_spec_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(dir.path(), "log.key", 20, 0);
    let w = start(dir.path(), &[(ORIGIN, log.signer.vkey())]).await;
    assert_eq!(add(w.addr, log.body(0, 5)).await.status, StatusCode::OK);

    // 404: a log this witness does not know.
    let other = Signer::load_or_create(&dir.path().join("other.key"), "ketenpoort/other").unwrap();
    let a = add(w.addr, body(0, &[], &other.sign(3, &[1; 32]).note)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);

    // 403: the right origin signed by another key, and a signed checkpoint
    // whose root was changed afterwards.
    let impostor = Log::new(dir.path(), "impostor.key", 20, 0);
    let a = add(w.addr, impostor.body(5, 9)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let good = log.checkpoint(9).note;
    let root = B64.encode(merkle::root(log.leaves.as_slice(), 9).unwrap());
    let tampered = good.replace(&root, &B64.encode([7u8; 32]));
    assert_ne!(tampered, good);
    let a = add(w.addr, body(5, &log.proof(5, 9), &tampered)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);

    // 400: not the request format, an old size beyond the checkpoint, a
    // leading zero, a proof from size 0.
    for bad in [
        "hello".to_string(),
        log.body(5, 9).replacen("old 5", "old 10", 1),
        log.body(5, 9).replacen("old 5", "old 05", 1),
        body(0, &log.proof(5, 9), &good),
        log.body(5, 9).replacen("\n\n", "\n", 1),
    ] {
        let a = add(w.addr, bad.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", a.body);
    }

    // 409: an old size that is not the one cosigned, with the size the
    // witness holds as text/x.tlog.size.
    for (old, proof) in [(0, vec![]), (3, log.proof(3, 9)), (7, log.proof(7, 9))] {
        let a = add(w.addr, body(old, &proof, &good)).await;
        assert_eq!(a.status, StatusCode::CONFLICT, "old {old}: {}", a.body);
        assert_eq!(a.content_type, "text/x.tlog.size");
        assert_eq!(a.body, "5\n");
    }

    // 422: a proof that does not lead from the cosigned root.
    let mut proof = log.proof(5, 9);
    proof[0][0] ^= 1;
    let a = add(w.addr, body(5, &proof, &good)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    // Nothing of the refused request was kept: the right proof still works.
    assert_eq!(add(w.addr, log.body(5, 9)).await.status, StatusCode::OK);

    // HTTP around it: only POST, only /add-checkpoint, bodies are capped.
    let a = request(w.addr, Method::GET, "/add-checkpoint", String::new()).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let a = request(w.addr, Method::POST, "/other", log.body(9, 9)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = add(w.addr, "x".repeat(server::MAX_BODY_BYTES + 1)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    w.stop().await;
}

#[tokio::test]
async fn a_fork_is_refused_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(dir.path(), "log.key", 20, 0);
    // The same key signing another history: the split view of a log operator.
    let fork = Log::new(dir.path(), "log.key", 20, 1);
    let logs = [(ORIGIN, log.signer.vkey())];
    let w = start(dir.path(), &logs).await;
    assert_eq!(add(w.addr, log.body(0, 5)).await.status, StatusCode::OK);
    w.stop().await;

    let w = start(dir.path(), &logs).await;
    // The other root for size 5, from the size the witness holds and from 0.
    for old in [5, 0] {
        let a = add(w.addr, body(old, &[], &fork.checkpoint(5).note)).await;
        assert_eq!(a.status, StatusCode::CONFLICT, "old {old}: {}", a.body);
        assert_eq!(a.body, "5\n");
    }
    // The fork grown further, with a proof that is valid within the fork.
    let a = add(w.addr, fork.body(5, 12)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    // The history the witness saw goes on after the restart.
    assert_eq!(add(w.addr, log.body(5, 12)).await.status, StatusCode::OK);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_conflicting_checkpoints_at_once_get_one_cosignature() {
    let dir = tempfile::tempdir().unwrap();
    let forks: Vec<Log> = (0..16)
        .map(|i| Log::new(dir.path(), "log.key", 8, i))
        .collect();
    let logs = [(ORIGIN, forks[0].signer.vkey())];
    let w = start(dir.path(), &logs).await;
    let bodies: Vec<String> = forks.iter().map(|f| f.body(0, 8)).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(bodies.len()));
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let (addr, barrier) = (w.addr, barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                add(addr, b).await
            })
        })
        .collect();
    let mut cosigned = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let a = t.await.unwrap();
        match a.status {
            StatusCode::OK => cosigned.push(i),
            StatusCode::CONFLICT => assert_eq!(a.body, "8\n"),
            s => panic!("fork {i}: {s} {}", a.body),
        }
    }
    assert_eq!(
        cosigned.len(),
        1,
        "forks cosigned for one size: {cosigned:?}"
    );
    w.stop().await;

    // What the witness kept is the root it cosigned, and only that one.
    let w = start(dir.path(), &logs).await;
    for (i, f) in forks.iter().enumerate() {
        let a = add(w.addr, f.body(8, 8)).await;
        let want = if i == cosigned[0] {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(a.status, want, "fork {i}: {}", a.body);
    }
    w.stop().await;
}

#[tokio::test]
async fn tls_is_served_when_configured() {
    use ketenpoort::pki::{Ca, LeafSpec};
    use ketenpoort::witness::config::WitnessTls;
    use rustls_pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("witness test CA").unwrap();
    let leaf = ca
        .issue(&LeafSpec::server("witness", &["localhost"]))
        .unwrap();
    let files = WitnessTls {
        cert: dir.path().join("w.crt"),
        key: dir.path().join("w.pem"),
    };
    std::fs::write(&files.cert, &leaf.cert_pem).unwrap();
    std::fs::write(&files.key, &leaf.key_pem).unwrap();
    let log = Log::new(dir.path(), "log.key", 4, 0);
    let tls = server::tls_config(&files).unwrap();
    let w = start_with(dir.path(), &[(ORIGIN, log.signer.vkey())], Some(tls)).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(ketenpoort::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(w.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/add-checkpoint")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(log.body(0, 4))))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Plain HTTP to a TLS witness gets nothing.
    let tcp = TcpStream::connect(w.addr).await.unwrap();
    let plain = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await;
    if let Ok((mut send, conn)) = plain {
        tokio::spawn(conn);
        let req = Request::post("/add-checkpoint")
            .body(Full::new(Bytes::from(log.body(4, 4))))
            .unwrap();
        assert!(send.send_request(req).await.is_err());
    }
    w.stop().await;
}

#[test]
fn keygen_writes_a_private_key_and_prints_a_type_4_vkey() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("w.key");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "witness",
        "keygen",
        "--name",
        WITNESS,
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap();
    assert!(vkey.starts_with(&format!("{WITNESS}+")), "{vkey}");
    assert_eq!(
        B64.decode(vkey.trim().splitn(3, '+').nth(2).unwrap())
            .unwrap()[0],
        0x04
    );
    assert_eq!(Cosigner::load(&key).unwrap().vkey(), vkey.trim());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Never over an existing key.
    let again = run(&[
        "witness",
        "keygen",
        "--name",
        WITNESS,
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    // A config mistake names the file and the line.
    let config = dir.path().join("witness.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nkey = \"w.key\"\nstate = \"state\"\n[[log]]\norigin = \"o\"\nvkey = \"o+00000000+AQ==\"\n",
    )
    .unwrap();
    let out = run(&["witness", "serve", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("witness.toml:6:"), "{err}");
}

//! One policy for several gateways on one PostgreSQL database: a policy
//! applied through one node's console is in force on another within 5 s,
//! a pilot file edited on a node's disk reaches the others once that node
//! has validated it, and a broken edit never leaves its disk. One covenant
//! state: a widening proposed through one node and signed through another
//! is in force on both, recorded once, and a node with a stale pilot file
//! does not bring back the superseded version. Retention run through one
//! node unlinks on every node, and `audit head --now` through a node that
//! does not lead gets a checkpoint signed then.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fixture::*;
use common::node::{Node, wait_serving};
use common::pg::Pg;
use hyper::Method;
use ketenpoort::client::PartnerClient;

/// The promise: in force on every node within this long.
const WITHIN: Duration = Duration::from_secs(5);

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// A node's own config folder (its own partners.toml and pilot files, as
/// on separate machines) and data folder.
fn node_config(base: &Path, pg: &Pg, i: usize) -> PathBuf {
    let dir = base.join(format!("config{i}"));
    copy_dir(&base.join("config"), &dir);
    let text = std::fs::read_to_string(dir.join("ketenpoort.toml")).unwrap();
    assert!(text.contains("data_dir = \"../data\""));
    let text = text.replace(
        "data_dir = \"../data\"",
        &format!("data_dir = \"../data{i}\""),
    ) + &pg.storage_toml("ketenpoort");
    let f = dir.join("ketenpoort.toml");
    std::fs::write(&f, text).unwrap();
    copy_dir(&base.join("data"), &base.join(format!("data{i}")));
    f
}

async fn dossier(client: &PartnerClient) -> ketenpoort::client::Reply {
    client
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5560001234",
            &[("ketenpoort-purpose", "casusoverleg")],
            None,
        )
        .await
        .unwrap()
}

/// Waits until `ok` holds for what the node answers, at most [`WITHIN`]
/// after `since`.
async fn within(
    since: Instant,
    client: &PartnerClient,
    what: &str,
    ok: impl Fn(&ketenpoort::client::Reply) -> bool,
) {
    loop {
        let r = dossier(client).await;
        if ok(&r) {
            return;
        }
        assert!(
            since.elapsed() < WITHIN,
            "{what}: not in force within {WITHIN:?}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn has_naam(r: &ketenpoort::client::Reply) -> bool {
    String::from_utf8_lossy(&r.body).contains("\"naam\"")
}

/// Applies a pilot file through a node's console (the user just added is
/// waited for: the node reloads its users file).
async fn put_policy(pki: &common::TestPki, node: &Node, token: &str, text: &str) {
    let started = Instant::now();
    loop {
        let status = try_put(pki, node, token, text).await;
        if status != 401 {
            assert_eq!(status, 200);
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn try_put(pki: &common::TestPki, node: &Node, token: &str, text: &str) -> u16 {
    let req = hyper::Request::builder()
        .method(Method::PUT)
        .uri("https://localhost/api/v1/pilots/proef/policy")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(Bytes::from(text.to_string())))
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], node.console));
    let tls = common::client_config(&pki.ca.cert_pem, None, &[b"http/1.1"]);
    let r = common::request(addr, tls, req).await.unwrap();
    if r.status != 401 {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    r.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_changed_on_one_node_is_in_force_on_the_other() {
    let (pki, _seen) = prepare().await;
    pki.sign_all();
    let pg = Pg::start();
    let base = pki.dir.path();
    let mut a = Node::new(node_config(base, &pg, 0), base.join("node0.log"));
    let mut b = Node::new(node_config(base, &pg, 1), base.join("node1.log"));
    let cert = pki.oin_cert(GEMEENTE_OIN);
    let (ca, cb) = (pki.client(a.addr(), &cert), pki.client(b.addr(), &cert));
    a.spawn();
    wait_serving(&ca, &a).await;
    copy_dir(&base.join("data0/keys"), &base.join("data1/keys"));
    b.spawn();
    wait_serving(&cb, &b).await;
    let before = dossier(&cb).await;
    assert_eq!(before.status, 200);
    assert!(
        has_naam(&before),
        "{}",
        String::from_utf8_lossy(&before.body)
    );

    // Through A's console: DT&V's dossier no longer tells the name.
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args([
            "user",
            "add",
            "beheer",
            "--role",
            "policy-admin",
            "--pilot",
            "proef",
        ])
        .arg("--config")
        .arg(&a.cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let file = |i: usize| base.join(format!("config{i}/pilots/proef.toml"));
    let old = std::fs::read_to_string(file(0)).unwrap();
    let full = "response = [\"vnummer\", \"naam\", \"adres.woonplaats\", \"procedures[].status\"]";
    assert!(old.contains(full));
    let no_name = old.replace(full, "response = [\"vnummer\", \"adres.woonplaats\"]");
    put_policy(&pki, &a, &token, &no_name).await;
    let applied = Instant::now();
    assert!(!has_naam(&dossier(&ca).await));
    within(applied, &cb, "A's console change on B", |r| {
        r.status == 200 && !has_naam(r)
    })
    .await;
    assert_eq!(std::fs::read_to_string(file(1)).unwrap(), no_name);

    // A broken edit on B's disk stays there: A keeps the last good file.
    std::fs::write(file(1), "[pilot\nid = ").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(std::fs::read_to_string(file(0)).unwrap(), no_name);
    assert_eq!(dossier(&ca).await.status, 200);
    assert!(b.log().contains("not shared"), "{}", b.log());

    // A valid edit on B's disk (the municipality loses the dossier) is
    // validated there, then in force on A.
    let consumers = "consumers = [\"gemeente\", \"ngo-pinned\"]";
    assert!(no_name.contains(consumers));
    let without = no_name.replace(consumers, "consumers = [\"ngo-pinned\"]");
    let edited = Instant::now();
    std::fs::write(file(1), &without).unwrap();
    within(edited, &ca, "B's disk edit on A", |r| r.status == 403).await;
    // (The covenant state may bring it into force on A a moment before A's
    // mirror writes the file.)
    while std::fs::read_to_string(file(0)).unwrap() != without {
        assert!(edited.elapsed() < WITHIN, "B's file not on A's disk");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dossier(&cb).await.status, 403);
    // The console's history is shared too: B shows A's change.
    let hist = base.join("data1/policy-history/proef");
    let kept = std::fs::read_dir(&hist).map(|d| d.count()).unwrap_or(0);
    assert!(kept >= 2, "history on B: {kept} versions");
    drop(pg);
}

/// A new flow (dtv's list to ngo-pinned): a widening, needs dtv and
/// ngo-pinned to sign.
const NEW_RULE: &str = r#"
[[rules]]
id = "proef-lijst-ngo"
purpose = "casusoverleg"
service = "dtv/lijst"
consumers = ["ngo-pinned"]
response = ["vnummer", "naam"]
"#;

async fn covenant(client: &PartnerClient) -> serde_json::Value {
    let r = client
        .send(Method::GET, "/v1/pilots/proef/covenant", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    r.json()
}

async fn sign(client: &PartnerClient, cert: &ketenpoort::pki::Issued, version: &str) -> u16 {
    use ketenpoort::covenant::jws::{self, Decision, Payload};
    let payload = Payload {
        pilot: "proef".into(),
        version: version.into(),
        decision: Decision::Accept,
        iat: None,
    };
    let jws = jws::sign_pem(&payload, &cert.cert_pem, &cert.key_pem).unwrap();
    let path = format!(
        "/v1/pilots/proef/covenant/versions/{}/signatures",
        ketenpoort::policy::terms::version_hex(version)
    );
    let r = client
        .send_bytes(Method::POST, &path, "application/jose", jws.into())
        .await
        .unwrap();
    r.status.as_u16()
}

async fn lijst(client: &PartnerClient) -> u16 {
    client
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/lijst/a",
            &[("ketenpoort-purpose", "casusoverleg")],
            None,
        )
        .await
        .unwrap()
        .status
        .as_u16()
}

/// The records of one kind for one covenant version, read through a node.
fn covenant_records(cfg: &Path, kind: &str, version: &str) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["audit", "export", "--format", "jsonl", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("\"{kind}\"")) && l.contains(version))
        .count()
}

async fn until(what: &str, node: &Node, mut ok: impl AsyncFnMut() -> bool) {
    let since = Instant::now();
    while !ok().await {
        assert!(since.elapsed() < WITHIN, "{what}: {}", node.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_covenant_for_every_node() {
    let (pki, _seen) = prepare().await;
    pki.sign_all();
    let pg = Pg::start();
    let base = pki.dir.path();
    let mut a = Node::new(node_config(base, &pg, 0), base.join("node0.log"));
    let mut b = Node::new(node_config(base, &pg, 1), base.join("node1.log"));
    let dtv = pki.oin_cert(common::DTV_OIN);
    let ngo = &pki.ngo_pinned;
    let gemeente = pki.oin_cert(GEMEENTE_OIN);
    let (ga, gb) = (
        pki.client(a.addr(), &gemeente),
        pki.client(b.addr(), &gemeente),
    );
    a.spawn();
    wait_serving(&ga, &a).await;
    copy_dir(&base.join("data0/keys"), &base.join("data1/keys"));
    b.spawn();
    wait_serving(&gb, &b).await;
    let v1 = covenant(&gb).await["in_force"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(covenant(&ga).await["in_force"]["version"], v1.as_str());

    // A widening, edited on A's disk: proposed once, pending on both.
    let file = |i: usize| base.join(format!("config{i}/pilots/proef.toml"));
    let old = std::fs::read_to_string(file(0)).unwrap();
    std::fs::write(file(0), format!("{old}{NEW_RULE}")).unwrap();
    until("proposed on A", &a, async || {
        !covenant(&ga).await["pending"][0]["version"].is_null()
    })
    .await;
    let v2 = covenant(&ga).await["pending"][0]["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(v1, v2);
    until("pending on B", &b, async || {
        covenant(&gb).await["pending"][0]["version"] == v2.as_str()
    })
    .await;

    // Both partners sign through B only: in force on B and on A.
    let (nb, na) = (pki.client(b.addr(), ngo), pki.client(a.addr(), ngo));
    assert_eq!(sign(&pki.client(b.addr(), &dtv), &dtv, &v2).await, 201);
    assert_eq!(covenant(&ga).await["in_force"]["version"], v1.as_str());
    assert_eq!(lijst(&na).await, 403);
    assert_eq!(sign(&nb, ngo, &v2).await, 201);
    let signed = Instant::now();
    assert_eq!(covenant(&gb).await["in_force"]["version"], v2.as_str());
    assert_eq!(lijst(&nb).await, 200);
    while lijst(&na).await != 200 {
        assert!(signed.elapsed() < WITHIN, "not in force on A: {}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(covenant(&ga).await["in_force"]["version"], v2.as_str());

    // A third node with the old pilot file on its disk (older than the
    // database's) does not bring back the superseded version.
    let mut c = Node::new(node_config(base, &pg, 2), base.join("node2.log"));
    copy_dir(&base.join("data0/keys"), &base.join("data2/keys"));
    assert_eq!(std::fs::read_to_string(file(2)).unwrap(), old);
    let nc = pki.client(c.addr(), ngo);
    c.spawn();
    wait_serving(&nc, &c).await;
    until("the new file on C", &c, async || lijst(&nc).await == 200).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lijst(&nc).await, 200);
    assert_eq!(lijst(&na).await, 200);
    assert_eq!(covenant(&gb).await["in_force"]["version"], v2.as_str());

    // One proposal per version and one version taking effect in the one log.
    assert_eq!(covenant_records(&a.cfg, "covenant-proposal", &v2), 1);
    assert_eq!(covenant_records(&b.cfg, "covenant-proposal", &v1), 1);
    assert_eq!(covenant_records(&c.cfg, "covenant-in-force", &v2), 1);
    assert_eq!(covenant_records(&a.cfg, "covenant-signature", &v2), 2);
    drop(pg);
}

/// The day this month is past a retention of one year.
fn past_one_year() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    let (y, m) = if d.month() == time::Month::December {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() as u8 + 1)
    };
    format!("{:04}-{m:02}-01", y + 1)
}

fn cli_out(cfg: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The person's exchange records in proef, found through a node.
fn found(cfg: &Path) -> usize {
    cli_out(
        cfg,
        &[
            "audit",
            "query",
            "--subject",
            "5560001234",
            "--format",
            "jsonl",
        ],
    )
    .lines()
    .filter(|l| l.contains("\"pilot\":\"proef\"") && l.contains("\"kind\":\"exchange\""))
    .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_head_now_from_any_node() {
    let (pki, _seen) = prepare().await;
    let proef = pki.pilots_dir().join("proef.toml");
    let text = std::fs::read_to_string(&proef).unwrap();
    std::fs::write(&proef, text + "\n[retention]\naudit = \"P1Y\"\n").unwrap();
    pki.sign_all();
    let pg = Pg::start();
    let base = pki.dir.path();
    let mut a = Node::new(node_config(base, &pg, 0), base.join("node0.log"));
    let mut b = Node::new(node_config(base, &pg, 1), base.join("node1.log"));
    let cert = pki.oin_cert(GEMEENTE_OIN);
    let (ca, cb) = (pki.client(a.addr(), &cert), pki.client(b.addr(), &cert));
    a.spawn();
    wait_serving(&ca, &a).await;
    copy_dir(&base.join("data0/keys"), &base.join("data1/keys"));
    b.spawn();
    wait_serving(&cb, &b).await;

    // The person's records through both nodes: each holds the month's key.
    assert_eq!(dossier(&ca).await.status, 200);
    let r = dossier(&cb).await;
    assert_eq!(r.status, 200);

    // `audit head --now` through B (A leads): a checkpoint signed now,
    // covering the record just written, not the newest one stored.
    let id: u64 = r.header("ketenpoort-disclosure").unwrap().parse().unwrap();
    let note = cli_out(&b.cfg, &["audit", "head", "--now"]);
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    assert!(
        size > id,
        "checkpoint of {size} records, record {id}: {note}"
    );
    let d = time::OffsetDateTime::now_utc().date();
    let month = format!("{:04}-{:02}", d.year(), d.month() as u8);
    let key = |i: usize| base.join(format!("data{i}/keys/subject/proef/{month}.key"));
    assert!(key(0).exists() && key(1).exists());
    assert_eq!(found(&b.cfg), 2);

    // Retention through A: the key goes from the database and from B's
    // disk too, and no node links the records any more.
    let day = past_one_year();
    let out = cli_out(&a.cfg, &["audit", "retention", "--as-of", &day]);
    assert!(out.contains(&format!("unlinked proef {month}")), "{out}");
    let since = Instant::now();
    while key(1).exists() {
        assert!(since.elapsed() < WITHIN, "B kept its copy: {}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!key(0).exists());
    assert_eq!(
        pg.sql(
            "ketenpoort",
            &format!(
                "SELECT count(*) FROM subject_keys WHERE scope = 'proef' AND month = '{month}'"
            )
        )
        .trim(),
        "0"
    );
    assert_eq!(found(&b.cfg), 0);
    assert_eq!(found(&a.cfg), 0);

    // Through B again: nothing left to destroy, recorded once.
    let again = cli_out(&b.cfg, &["audit", "retention", "--as-of", &day]);
    assert!(!again.contains("unlinked proef"), "{again}");
    let records = cli_out(&b.cfg, &["audit", "export", "--format", "jsonl"]);
    let kept = records
        .lines()
        .filter(|l| l.contains("\"kind\":\"retention\"") && l.contains("\"pilot\":\"proef\""))
        .count();
    assert_eq!(kept, 1, "{records}");
    drop(pg);
}

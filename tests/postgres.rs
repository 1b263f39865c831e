//! Several gateways, one log: three gateway processes on one PostgreSQL
//! database (a throw-away cluster made with initdb), load spread over all
//! three, one killed with SIGKILL in the middle, the database itself stopped
//! and started under load. Afterwards every disclosure id any client
//! received is in the log, ids are unique across nodes, and `audit verify`
//! passes from every node, and one node's subject keys find the records of
//! all (the nodes agree on each month's key). Also: a node with other keys
//! refuses to start,
//! and an embedded log moves into PostgreSQL with its ids and checkpoints.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixture::*;
use common::node::{Node, wait_serving};
use common::pg::Pg;
use hyper::Method;
use ketenpoort::audit::store::{Options, SubjectKeys, View};
use ketenpoort::client::PartnerClient;
use ketenpoort::config::GatewayConfig;

/// The test pilot's registry of stays (as tests/registry.rs adds it).
const REGISTRATION: &str = r#"
[purposes.aanmelding]
description = "Aanmelding bij de LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[registration]
registrars = ["gemeente"]
checkers = ["gemeente", "ngo-kvk"]
purpose = "aanmelding"
end_reasons = ["terugkeer", "overdracht"]
"#;

/// Disclosure id → (subject V-nummer, SHA-256 of the body received, node).
type Received = BTreeMap<u64, (String, [u8; 32], usize)>;
const CLIENTS: usize = 6;

async fn dossier(client: &PartnerClient, v: &str) -> ketenpoort::client::Reply {
    client
        .send(
            Method::GET,
            &format!("/v1/pilots/proef/services/dtv/dossier/{v}"),
            &[("ketenpoort-purpose", "casusoverleg")],
            None,
        )
        .await
        .unwrap()
}

/// The status of the console's `whoami` with a bearer token.
async fn console_whoami(pki: &common::TestPki, port: u16, token: &str) -> u16 {
    let req = hyper::Request::builder()
        .uri("https://localhost/api/v1/whoami")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let tls = common::client_config(&pki.ca.cert_pem, None, &[b"http/1.1"]);
    match common::request(addr, tls, req).await {
        Ok(r) => r.status.as_u16(),
        Err(_) => 0,
    }
}

fn cli(args: &[&str], cfg: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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

/// A config per node: the test's ketenpoort.toml with its own data_dir
/// and the shared database.
fn node_configs(base_dir: &Path, pg: &Pg, db: &str, n: usize) -> Vec<PathBuf> {
    let cfg_dir = base_dir.join("config");
    let base = std::fs::read_to_string(cfg_dir.join("ketenpoort.toml")).unwrap();
    assert!(base.contains("data_dir = \"../data\""));
    (0..n)
        .map(|i| {
            let t = base.replace(
                "data_dir = \"../data\"",
                &format!("data_dir = \"../data{i}\""),
            ) + &pg.storage_toml(db);
            let f = cfg_dir.join(format!("node{i}.toml"));
            std::fs::write(&f, t).unwrap();
            // The covenant signatures the test dropped in, for each node.
            copy_dir(&base_dir.join("data"), &base_dir.join(format!("data{i}")));
            f
        })
        .collect()
}

fn load(
    clients: Vec<(usize, PartnerClient)>,
    received: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    clients
        .into_iter()
        .enumerate()
        .map(|(c, (node, client))| {
            let (received, stop) = (received.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let v = format!("556{:03}{:04}", c, n % 10_000);
                    match client
                        .send(
                            Method::GET,
                            &format!("/v1/pilots/proef/services/dtv/dossier/{v}"),
                            &[("ketenpoort-purpose", "casusoverleg")],
                            None,
                        )
                        .await
                    {
                        Ok(r) if r.status == 200 => {
                            let id: u64 =
                                r.header("ketenpoort-disclosure").unwrap().parse().unwrap();
                            let body = ketenpoort::identity::sha256(&r.body);
                            let before = received.lock().unwrap().insert(id, (v, body, node));
                            assert!(before.is_none(), "id {id} was given out twice");
                        }
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_log_through_a_kill_and_a_database_restart() {
    let (pki, _seen) = prepare().await;
    let proef = pki.pilots_dir().join("proef.toml");
    let pilot = std::fs::read_to_string(&proef).unwrap();
    pki.write_config("pilots/proef.toml", &(pilot + REGISTRATION));
    pki.sign_all();
    let pg = Pg::start();
    let base = pki.dir.path();
    let cfgs = node_configs(base, &pg, "ketenpoort", 3);
    let mut nodes: Vec<Node> = cfgs
        .iter()
        .enumerate()
        .map(|(i, cfg)| Node::new(cfg.clone(), base.join(format!("node{i}.log"))))
        .collect();
    let cert = pki.oin_cert(GEMEENTE_OIN);
    let clients: Vec<PartnerClient> = nodes.iter().map(|n| pki.client(n.addr(), &cert)).collect();

    // The first node makes the deployment's keys and records them in the
    // database; a node with keys of its own is refused, and says why.
    nodes[0].spawn();
    wait_serving(&clients[0], &nodes[0]).await;
    nodes[1].spawn();
    let started = Instant::now();
    let refused = loop {
        if let Some(s) = nodes[1].exited() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a node with other keys kept running: {}",
            nodes[1].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!refused.success());
    assert!(
        nodes[1].log().contains("copy the keys directory"),
        "{}",
        nodes[1].log()
    );
    for (i, node) in nodes.iter_mut().enumerate().skip(1) {
        copy_dir(
            &base.join("data0/keys"),
            &base.join(format!("data{i}/keys")),
        );
        node.spawn();
    }
    for (n, c) in nodes.iter().zip(&clients) {
        wait_serving(c, n).await;
    }

    // Load over all three; one node killed; the database stopped and started.
    let received: Arc<Mutex<Received>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let spread = (0..CLIENTS)
        .map(|c| (c % 3, clients[c % 3].clone()))
        .collect();
    let tasks = load(spread, received.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The first node leads (integrates the tree, signs): it is the one
    // killed, so another must take over.
    assert!(
        nodes[0].log().contains("integrates the audit tree"),
        "{}",
        nodes[0].log()
    );
    nodes[0].kill9();
    let after_kill = received.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.down();
    // Fail closed and promptly: answered 503 while the database is gone,
    // not held until it returns.
    let asked = Instant::now();
    let r = dossier(&clients[1], "5569999999").await;
    let refused_in = asked.elapsed();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.up();
    let back = Instant::now();
    loop {
        if dossier(&clients[2], "5569999998").await.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the gateway did not recover without a restart: {}",
            nodes[2].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_in = back.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    // A document deposited through one node is fetched through another,
    // and gone from both once picked up.
    let ngo_kvk = |n: usize| pki.client(nodes[n].addr(), &pki.kvk_cert(common::NGO_KVK));
    let doc = serde_json::json!({"vnummer": "5560001234", "onderwerp": "over node 1"});
    let r = clients[1]
        .send(
            Method::POST,
            "/v1/pilots/proef/services/ngo-kvk/bericht",
            &[("ketenpoort-purpose", "begeleiding")],
            Some(&doc),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = ngo_kvk(2)
        .send(Method::GET, "/v1/inbox", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{:?}", r.json());
    let id = items[0]["id"].as_u64().unwrap();
    let r = ngo_kvk(2)
        .send(Method::GET, &format!("/v1/inbox/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(r.json()["document"], doc);
    let r = ngo_kvk(1)
        .send(Method::DELETE, &format!("/v1/inbox/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = ngo_kvk(2)
        .send(Method::GET, &format!("/v1/inbox/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    // A stay registered through one node is known to the others.
    let reg = |n: usize, m: Method, body: Option<serde_json::Value>| {
        let c = clients[n].clone();
        async move {
            c.send(
                m,
                "/v1/pilots/proef/registrations/5560007001",
                &[("ketenpoort-purpose", "aanmelding")],
                body.as_ref(),
            )
            .await
            .unwrap()
        }
    };
    let since = serde_json::json!({"since": "2026-01-05"});
    let r = reg(1, Method::PUT, Some(since.clone())).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = reg(2, Method::GET, None).await;
    assert_eq!(
        r.json(),
        serde_json::json!({"here": true, "elsewhere": false})
    );
    let r = reg(2, Method::PUT, Some(since)).await;
    assert_eq!(r.status, 200, "already open, through another node");

    // A console user added once, on one node, signs in on another.
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["user", "add", "fg-gemeente", "--role", "privacy-officer"])
        .args(["--partner", "gemeente", "--config"])
        .arg(&cfgs[1])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let started = Instant::now();
    while console_whoami(&pki, nodes[2].console, &token).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the user added on node 1 cannot sign in on node 2: {}",
            nodes[2].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The tree reaches the end of the log under the new leader.
    let started = Instant::now();
    loop {
        let n = pg.sql("ketenpoort", "SELECT next FROM log_counter");
        let t = pg.sql("ketenpoort", "SELECT size FROM tree_head");
        if n == t {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no node took over the tree: {n} records, tree {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leaders = nodes[1].log().contains("integrates the audit tree") as u8
        + nodes[2].log().contains("integrates the audit tree") as u8;
    assert!(leaders >= 1);
    nodes[1].stop();
    nodes[2].stop();

    // Every node's tools see one log that verifies.
    for cfg in &cfgs {
        let out = cli(&["audit", "verify"], cfg);
        assert!(out.status.success(), "{}: {}", cfg.display(), text(&out));
        assert!(!text(&out).contains(" 0 signed"), "{}", text(&out));
    }
    let received = received.lock().unwrap().clone();
    let per_node: Vec<usize> = (0..3)
        .map(|n| received.values().filter(|r| r.2 == n).count())
        .collect();
    assert!(
        per_node.iter().all(|&n| n > 10),
        "load was not spread: {per_node:?}"
    );
    assert!(after_kill > 0);
    // Each node made the month's subject key on its first exchange, at the
    // same time: they must have agreed on one, or a search through one node
    // would miss what the others recorded. Node 2's keys find every record.
    let config = GatewayConfig::load(&cfgs[2]).unwrap();
    let (found, size) = tokio::task::spawn_blocking(move || {
        let opts = Options::of(&config);
        let view = View::open_readonly(&opts).unwrap();
        let keys = SubjectKeys::new(&opts.keys_dir);
        for (id, (v, body, node)) in &received {
            let r = view.record(*id).unwrap_or_else(|e| {
                panic!("record {id}, received by a client of node {node}, is missing: {e}")
            });
            assert!(
                keys.pseudonyms(v)
                    .unwrap()
                    .contains(&r.entry.subject.unwrap()),
                "record {id}"
            );
            assert_eq!(r.entry.payload_sha256, Some(*body), "record {id}");
        }
        (received.len(), view.head().size)
    })
    .await
    .unwrap();
    let status = cli(&["storage", "status"], &cfgs[0]);
    assert!(status.status.success(), "{}", text(&status));
    // The leader that stopped last signed the whole log on its way out.
    let logged = pg.sql("ketenpoort", "SELECT next FROM log_counter");
    assert!(
        text(&status).contains(&format!("latest checkpoint: {} records", logged.trim())),
        "{}",
        text(&status)
    );
    assert!(
        text(&status).contains(&format!(
            "schema version: {}",
            ketenpoort::audit::pg::schema::latest()
        )),
        "{}",
        text(&status)
    );
    eprintln!(
        "postgres test: {found} disclosures received over 3 nodes {per_node:?}, all found; \
         tree {size} records; 503 after {refused_in:?} with the database down; \
         serving again {recovered_in:?} after it came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_log_moves_into_postgres_with_its_ids_and_proofs() {
    let (pki, _seen) = prepare().await;
    let base = pki.dir.path();
    let embedded_cfg = pki.config_file();
    let cert = pki.oin_cert(GEMEENTE_OIN);
    let mut emb = Node::new(embedded_cfg.clone(), base.join("embedded.log"));
    let client = pki.client(emb.addr(), &cert);
    emb.spawn();
    wait_serving(&client, &emb).await;
    for i in 0..30 {
        assert_eq!(dossier(&client, &format!("55700{i:05}")).await.status, 200);
    }
    emb.stop();
    let proof_before = cli(&["audit", "prove", "--index", "3"], &embedded_cfg);
    assert!(proof_before.status.success(), "{}", text(&proof_before));
    let proof_before = String::from_utf8_lossy(&proof_before.stdout).into_owned();
    let size = serde_json::from_str::<serde_json::Value>(&proof_before).unwrap()["treeSize"]
        .as_u64()
        .unwrap();

    let pg = Pg::start();
    let dst = node_configs(base, &pg, "ketenpoort", 1).remove(0);
    copy_dir(&base.join("data/keys"), &base.join("data0/keys"));
    let m1 = cli(&["storage", "migrate"], &dst);
    assert!(m1.status.success(), "{}", text(&m1));
    let m2 = cli(&["storage", "migrate"], &dst);
    assert!(text(&m2).contains("nothing to do"), "{}", text(&m2));

    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["storage", "copy", "--config"])
        .arg(&embedded_cfg)
        .arg("--to-config")
        .arg(&dst)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let verified = cli(&["audit", "verify"], &dst);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        !text(&verified).contains(" 0 signed checkpoints"),
        "the copied checkpoints were not checked: {}",
        text(&verified)
    );

    // The copied log goes on: the next id follows, and the old proof holds.
    let copied: u64 = pg
        .sql("ketenpoort", "SELECT next FROM log_counter")
        .trim()
        .parse()
        .unwrap();
    let mut node = Node::new(dst.clone(), base.join("pgnode.log"));
    let client = pki.client(node.addr(), &cert);
    node.spawn();
    wait_serving(&client, &node).await;
    let r = dossier(&client, "5570099999").await;
    assert_eq!(r.status, 200);
    let id: u64 = r.header("ketenpoort-disclosure").unwrap().parse().unwrap();
    assert_eq!(id, copied, "ids go on where the embedded log ended");
    let started = Instant::now();
    while pg.sql("ketenpoort", "SELECT size FROM tree_head").trim() != (copied + 1).to_string() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop();
    let proof_after = cli(
        &[
            "audit",
            "prove",
            "--index",
            "3",
            "--size",
            &size.to_string(),
        ],
        &dst,
    );
    assert!(proof_after.status.success(), "{}", text(&proof_after));
    assert_eq!(String::from_utf8_lossy(&proof_after.stdout), proof_before);

    // Someone with write access to the database changes a record: the
    // check from any node finds it.
    pg.sql(
        "ketenpoort",
        "UPDATE records SET bytes = set_byte(bytes, 40, get_byte(bytes, 40) # 1) WHERE id = 2",
    );
    let tampered = cli(&["audit", "verify"], &dst);
    assert!(!tampered.status.success(), "{}", text(&tampered));
    assert!(text(&tampered).contains("record 2"), "{}", text(&tampered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_reached_over_tls_with_its_ca_checked() {
    let pki = common::TestPki::new();
    let pg = Pg::start_tls(&pki.ca);
    let base = pki.dir.path();
    let cfg_dir = base.join("config");
    let other = ketenpoort::pki::Ca::generate("another CA").unwrap();
    std::fs::write(base.join("db-ca.pem"), &pki.ca.cert_pem).unwrap();
    std::fs::write(base.join("other-ca.pem"), &other.cert_pem).unwrap();
    let main = std::fs::read_to_string(cfg_dir.join("ketenpoort.toml")).unwrap();
    let with = |ca: &str| {
        let f = cfg_dir.join(format!("tls-{ca}.toml"));
        let t = format!(
            "{main}\n[storage]\nbackend = \"postgres\"\nurl = \"host=127.0.0.1 port={} user=ketenpoort dbname=ketenpoort\"\nca = \"../{ca}\"\n",
            pg.port
        );
        std::fs::write(&f, t).unwrap();
        f
    };
    let good = cli(&["storage", "migrate"], &with("db-ca.pem"));
    assert!(good.status.success(), "{}\n{}", text(&good), pg.log());
    let status = cli(&["storage", "status"], &with("db-ca.pem"));
    assert!(
        text(&status).contains("backend: postgres"),
        "{}",
        text(&status)
    );
    // A server whose certificate does not chain to the configured CA is
    // not talked to.
    let bad = cli(&["storage", "status"], &with("other-ca.pem"));
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(
        text(&bad).to_lowercase().contains("certificate"),
        "{}",
        text(&bad)
    );
}

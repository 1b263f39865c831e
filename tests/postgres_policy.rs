//! One policy for several gateways on one PostgreSQL database: a policy
//! applied through one node's console is in force on another within 5 s,
//! a pilot file edited on a node's disk reaches the others once that node
//! has validated it, and a broken edit never leaves its disk.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fixture::*;
use common::pg::Pg;
use hyper::Method;
use ketenpoort::client::PartnerClient;

/// The promise: in force on every node within this long.
const WITHIN: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One gateway process; killed on drop.
struct Node {
    cfg: PathBuf,
    port: u16,
    console: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn new(cfg: PathBuf, log: PathBuf) -> Self {
        Self {
            cfg,
            port: free_port(),
            console: free_port(),
            log,
            child: None,
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
                .args(["serve", "--config"])
                .arg(&self.cfg)
                .args(["--partners-addr", &format!("127.0.0.1:{}", self.port)])
                .args(["--console-addr", &format!("127.0.0.1:{}", self.console)])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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

async fn wait_serving(client: &PartnerClient, node: &Node) {
    let started = Instant::now();
    while !matches!(client.send(Method::GET, "/v1/whoami", &[], None).await, Ok(ref r) if r.status == 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "node did not start: {}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    assert_eq!(std::fs::read_to_string(file(0)).unwrap(), without);
    assert_eq!(dossier(&cb).await.status, 403);
    // The console's history is shared too: B shows A's change.
    let hist = base.join("data1/policy-history/proef");
    let kept = std::fs::read_dir(&hist).map(|d| d.count()).unwrap_or(0);
    assert!(kept >= 2, "history on B: {kept} versions");
    drop(pg);
}

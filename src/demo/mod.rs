//! `ketenpoort demo`: the whole gateway on one machine, with simulated
//! back-ends for the municipalities, DT&V, IND, AVIM and an NGO, playing a
//! short scripted case consultation in each pilot.
//!
//! It copies the shipped configuration into a demo folder, makes a
//! development PKI there, starts back-ends that hold synthetic dossiers with
//! more fields than any rule allows (health and criminal data included),
//! starts the gateway, and plays the script over real mutual TLS as the
//! partners' systems would. Every step says what it expected and what came.

pub mod backend;
pub mod data;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::audit::checkpoint::Verifier;
use crate::client::PartnerClient;
use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::pki::{self, Ca, LeafSpec};
use crate::policy::PolicySet;
use crate::policy::partners::{PartnerKind, Partners};
use crate::policy::service::{Part, PathTemplate, Service};
use crate::server::{Listeners, run};

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration to copy (`config/ketenpoort.toml`).
    pub config: PathBuf,
    /// The demo folder, made anew.
    pub dir: PathBuf,
    /// Stop after the script (exit status says whether every step did what it should).
    pub once: bool,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[error("demo: {0}")]
pub struct DemoError(pub String);

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DemoError + '_ {
    move |e| DemoError(format!("{what}: {e}"))
}

/// One scripted step and what came of it.
#[derive(Debug, Clone)]
struct Outcome {
    pilot: String,
    what: String,
    from: String,
    to: String,
    purpose: String,
    expected: u16,
    got: u16,
    note: String,
}

/// Matches a path against a template; the placeholder values in order.
fn match_template(t: &PathTemplate, path: &str) -> Option<Vec<String>> {
    let mut rest = path;
    let mut values = Vec::new();
    for p in &t.parts {
        match p {
            Part::Lit(l) => rest = rest.strip_prefix(l.as_str())?,
            Part::Var(_) => {
                let end = rest.find('/').unwrap_or(rest.len());
                values.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(values)
}

/// The simulated back-end of one provider.
fn backend_handler(services: Vec<Arc<Service>>) -> backend::Handler {
    Arc::new(move |req: backend::Incoming| {
        for svc in &services {
            let Some(t) = &svc.path else { continue };
            let Some(values) = match_template(t, &req.path) else {
                continue;
            };
            if req.method == Method::GET {
                let v = values.first().cloned().unwrap_or_default();
                if v.starts_with("5559") {
                    return backend::Reply::json(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "onbekend"}),
                    );
                }
                let seed = v
                    .bytes()
                    .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
                return backend::Reply::json(StatusCode::OK, &data::dossier(svc, &v, seed));
            }
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            return backend::Reply::json(
                StatusCode::CREATED,
                &json!({"vnummer": body["vnummer"], "status": "ontvangen", "intern_kenmerk": "AANM-0001 (synthetisch)"}),
            );
        }
        backend::Reply::json(StatusCode::NOT_FOUND, &json!({"error": "geen dienst"}))
    })
}

fn copy_config(src: &GatewayConfig, dir: &Path) -> Result<PathBuf, DemoError> {
    let cfg_dir = dir.join("config");
    std::fs::create_dir_all(cfg_dir.join("pilots")).map_err(err("creating the demo folder"))?;
    std::fs::copy(&src.partners_file, cfg_dir.join("partners.toml"))
        .map_err(err("copying partners.toml"))?;
    for e in std::fs::read_dir(&src.pilots_dir).map_err(err("reading the pilots folder"))? {
        let p = e.map_err(err("reading the pilots folder"))?.path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(
                &p,
                cfg_dir
                    .join("pilots")
                    .join(p.file_name().unwrap_or_default()),
            )
            .map_err(err("copying a pilot file"))?;
        }
    }
    let file = cfg_dir.join("ketenpoort.toml");
    std::fs::write(
        &file,
        r#"# Made by `ketenpoort demo`; the demo makes it anew each run.
deployment = "demo"
partners = "partners.toml"
pilots = "pilots"
data_dir = "../data"
[listen]
partners = "127.0.0.1:8443"
console = "127.0.0.1:8444"
[tls]
cert = "../certs/gateway.crt"
key = "../certs/gateway.key"
trust_anchors = ["../certs/ca.crt"]
crls = ["../certs/crl.pem"]
client_cert = "../certs/gateway-client.crt"
client_key = "../certs/gateway-client.key"
[pki]
dev_dir = "../certs"
"#,
    )
    .map_err(err("writing the demo config"))?;
    Ok(file)
}

/// Points every back-end URL in partners.toml at the simulated back-ends.
fn rewrite_backends(file: &Path, ports: &BTreeMap<String, u16>) -> Result<(), DemoError> {
    let text = std::fs::read_to_string(file).map_err(err("reading partners.toml"))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(err("parsing partners.toml"))?;
    if let Some(list) = doc
        .get_mut("partner")
        .and_then(|p| p.as_array_of_tables_mut())
    {
        for t in list.iter_mut() {
            let id = t
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            if let Some(port) = ports.get(&id) {
                t["backend"] = toml_edit::value(format!("https://localhost:{port}"));
            }
        }
    }
    std::fs::write(file, doc.to_string()).map_err(err("writing partners.toml"))
}

async fn bind_or_any(addr: &str, fixed: bool) -> Result<TcpListener, DemoError> {
    if fixed && let Ok(l) = TcpListener::bind(addr).await {
        return Ok(l);
    }
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err("binding a port"))
}

/// Runs the demo; `Ok(true)` when every step did what the script expects.
pub async fn run_demo(opts: Options) -> Result<bool, DemoError> {
    let src = GatewayConfig::load(&opts.config).map_err(err("reading the configuration"))?;
    let dir = std::path::absolute(&opts.dir).map_err(err("demo folder"))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(err("clearing the old demo folder"))?;
    }
    let cfg_file = copy_config(&src, &dir)?;
    let cfg = GatewayConfig::load(&cfg_file).map_err(err("demo config"))?;
    pki::init(&cfg).map_err(err("making the development PKI"))?;
    let certs = dir.join("certs");
    let read = |name: &str| std::fs::read(certs.join(name)).map_err(err("reading the demo PKI"));
    let ca_pem = read("ca.crt")?;
    let ca = Ca::load(
        &String::from_utf8_lossy(&ca_pem),
        &String::from_utf8_lossy(&read("ca.key")?),
    )
    .map_err(err("loading the demo CA"))?;
    let backend_cert = ca
        .issue(&LeafSpec::server(
            "demo back-ends",
            &["localhost", "127.0.0.1"],
        ))
        .map_err(err("issuing the back-end certificate"))?;
    let backend_tls = backend::tls_config(
        &ca_pem,
        backend_cert.cert_pem.as_bytes(),
        backend_cert.key_pem.as_bytes(),
    )
    .map_err(DemoError)?;

    // Back-ends on free ports, then the partners file pointed at them.
    let partners = Partners::load(&cfg.partners_file).map_err(err("partners"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut ports = BTreeMap::new();
    for p in partners.list.iter().filter(|p| p.backend.is_some()) {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(err("binding a back-end"))?;
        ports.insert(
            p.id.clone(),
            l.local_addr().map_err(err("back-end address"))?.port(),
        );
        let mut stop = stop_rx.clone();
        tokio::spawn(backend::serve(
            l,
            backend_tls.clone(),
            backend_handler(p.services.clone()),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
    }
    rewrite_backends(&cfg.partners_file, &ports)?;

    let gw = Arc::new(Gateway::load(&cfg_file).map_err(err("starting the gateway"))?);
    let listeners = Listeners {
        partners: bind_or_any("127.0.0.1:8443", !opts.once).await?,
        console: bind_or_any("127.0.0.1:8444", !opts.once).await?,
        admin: tokio::net::UnixListener::bind(crate::admin::socket_path(&gw.config.data_dir)).ok(),
    };
    let addr = listeners
        .partners
        .local_addr()
        .map_err(err("gateway address"))?;
    let console = listeners
        .console
        .local_addr()
        .map_err(err("console address"))?;
    let (gw_stop, gw_stopped) = oneshot::channel::<()>();
    let gateway = tokio::spawn(run(listeners, gw.clone(), async {
        let _ = gw_stopped.await;
    }));

    let base = format!("https://127.0.0.1:{}", addr.port());
    let policy = gw.policy.current();
    let outcomes = play(&base, &certs, &ca_pem, &policy.policy).await?;
    let all_ok = outcomes.iter().all(|o| o.expected == o.got);
    print_table(&outcomes);

    let audit_dir = gw.config.data_dir.join("audit");
    gw.audit.checkpoint().await.map_err(err("checkpoint"))?;
    let vkey =
        std::fs::read_to_string(audit_dir.join("checkpoint.vkey")).map_err(err("verifier key"))?;
    let verifier = Verifier::parse(&vkey).map_err(err("verifier key"))?;
    let rep = crate::audit::verify::verify(&audit_dir, &verifier, |_| {})
        .map_err(err("verifying the audit log"))?;
    println!(
        "\naudit log: {} records, {} signed checkpoints, verified (root {})",
        rep.records,
        rep.checkpoints,
        &hex::encode(rep.root)[..16]
    );
    println!(
        "{} of {} steps did what the script expects",
        outcomes.iter().filter(|o| o.expected == o.got).count(),
        outcomes.len()
    );

    if !opts.once {
        let rel = |f: &str| certs.join(f).display().to_string();
        println!(
            "\nThe gateway keeps serving on {addr} (console https://{console}). Try, as the municipality of Utrecht:"
        );
        println!(
            "  curl --cert {} --key {} --cacert {} -H 'Ketenpoort-Purpose: casusoverleg' {base}/v1/pilots/utrecht/services/dtv/vertrekdossier/5550200001",
            rel("gemeente-utrecht.crt"),
            rel("gemeente-utrecht.key"),
            rel("ca.crt")
        );
        println!(
            "and look at the log: ketenpoort audit query --config {} --pilot utrecht",
            cfg_file.display()
        );
        println!("Ctrl-C stops.");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = gw_stop.send(());
    let _ = gateway.await;
    let _ = stop_tx.send(true);
    Ok(all_ok)
}

struct Script<'a> {
    base: &'a str,
    certs: &'a Path,
    ca: &'a [u8],
    clients: BTreeMap<String, PartnerClient>,
    out: Vec<Outcome>,
}

impl Script<'_> {
    fn client(&mut self, id: &str) -> Result<PartnerClient, DemoError> {
        if let Some(c) = self.clients.get(id) {
            return Ok(c.clone());
        }
        let read = |ext: &str| {
            std::fs::read(self.certs.join(format!("{id}.{ext}")))
                .map_err(err("reading a partner certificate"))
        };
        let c = PartnerClient::new(self.base, self.ca, &read("crt")?, &read("key")?)
            .map_err(DemoError)?;
        self.clients.insert(id.to_string(), c.clone());
        Ok(c)
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &mut self,
        pilot: &str,
        what: &str,
        actor: &str,
        method: Method,
        path: &str,
        purpose: Option<&str>,
        body: Option<&Value>,
        expected: u16,
        to: &str,
    ) -> Result<Option<crate::client::Reply>, DemoError> {
        let c = self.client(actor)?;
        let headers: Vec<(&str, &str)> = purpose
            .map(|p| ("ketenpoort-purpose", p))
            .into_iter()
            .collect();
        let reply = c.send(method.clone(), path, &headers, body).await;
        let (got, note) = match &reply {
            Ok(r) if r.status.is_success() => {
                let withheld = r.header("ketenpoort-withheld").unwrap_or("").to_string();
                let n_fields = count_leaves(&r.json());
                let mut note = if path == "/v1/inbox" {
                    format!(
                        "{} document(s) waiting",
                        r.json()["items"].as_array().map_or(0, Vec::len)
                    )
                } else if path.starts_with("/v1/inbox/") {
                    if method == Method::DELETE {
                        "deleted from the mailbox".into()
                    } else {
                        format!(
                            "document from {}",
                            r.json()["sender"].as_str().unwrap_or("?")
                        )
                    }
                } else if r.status == StatusCode::CREATED {
                    "kept in the mailbox".to_string()
                } else {
                    format!("{n_fields} values")
                };
                if !withheld.is_empty() {
                    note.push_str(&format!("; withheld: {}", shorten(&withheld, 70)));
                }
                (r.status.as_u16(), note)
            }
            Ok(r) => {
                let t = r.json()["type"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches(crate::problem::TYPE_PREFIX)
                    .to_string();
                (r.status.as_u16(), t)
            }
            Err(e) => (0, format!("error: {}", shorten(e, 60))),
        };
        self.out.push(Outcome {
            pilot: pilot.into(),
            what: what.into(),
            from: actor.into(),
            to: to.into(),
            purpose: purpose.unwrap_or("-").into(),
            expected,
            got,
            note,
        });
        Ok(reply.ok())
    }
}

fn count_leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(count_leaves).sum(),
        Value::Array(a) => a.iter().map(count_leaves).sum(),
        _ => 1,
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// The scripted case consultation, pilot by pilot.
async fn play(
    base: &str,
    certs: &Path,
    ca: &[u8],
    policy: &PolicySet,
) -> Result<Vec<Outcome>, DemoError> {
    let mut s = Script {
        base,
        certs,
        ca,
        clients: BTreeMap::new(),
        out: Vec::new(),
    };
    let today = time::OffsetDateTime::now_utc().date();
    for (i, (pid, pilot)) in policy.pilots.iter().enumerate() {
        let v = format!("5550{}00001", i + 1);
        let g = format!("gemeente-{pid}");
        let active = pilot.covenant.valid_from <= today && today <= pilot.covenant.valid_until;
        let ok = |code: u16| if active { code } else { 403 };
        let ngos: Vec<&str> = pilot
            .partners
            .iter()
            .filter(|p| {
                policy
                    .partners
                    .get(p)
                    .is_some_and(|x| x.kind == PartnerKind::Ngo)
            })
            .map(String::as_str)
            .collect();
        let mailbox_ngo = ngos
            .iter()
            .copied()
            .find(|n| policy.partners.get(n).is_some_and(|x| x.mailbox));
        let ngo = ngos.first().copied().unwrap_or("");
        let svc = |provider: &str, service: &str, rest: &str| {
            let base = format!("/v1/pilots/{pid}/services/{provider}/{service}");
            if rest.is_empty() {
                base
            } else {
                format!("{base}/{rest}")
            }
        };

        s.call(
            pid,
            "case consultation: departure dossier",
            &g,
            Method::GET,
            &svc("dtv", "vertrekdossier", &v),
            Some("casusoverleg"),
            None,
            ok(200),
            "dtv",
        )
        .await?;
        s.call(
            pid,
            "case consultation: residence dossier",
            ngo,
            Method::GET,
            &svc("ind", "verblijfsdossier", &v),
            Some("casusoverleg"),
            None,
            ok(200),
            "ind",
        )
        .await?;
        if !active {
            s.call(
                pid,
                "programme office asks for a dossier",
                "programmabureau",
                Method::GET,
                &svc("dtv", "vertrekdossier", &v),
                Some("casusoverleg"),
                None,
                403,
                "dtv",
            )
            .await?;
            continue;
        }
        s.call(
            pid,
            "medical track: health details",
            &g,
            Method::GET,
            &svc("dtv", "vertrekdossier", &v),
            Some("medisch"),
            None,
            200,
            "dtv",
        )
        .await?;
        s.call(
            pid,
            "researcher asks for health data",
            "onderzoek",
            Method::GET,
            &svc("dtv", "vertrekdossier", &v),
            Some("medisch"),
            None,
            403,
            "dtv",
        )
        .await?;
        s.call(
            pid,
            "monitoring: pseudonymised",
            "onderzoek",
            Method::GET,
            &svc(&g, "lvv-dossier", &v),
            Some("monitoring"),
            None,
            200,
            &g,
        )
        .await?;
        s.call(
            pid,
            "programme office asks for a dossier",
            "programmabureau",
            Method::GET,
            &svc("dtv", "vertrekdossier", &v),
            Some("casusoverleg"),
            None,
            403,
            "dtv",
        )
        .await?;
        if let Some(mb) = mailbox_ngo {
            let msg = json!({
                "vnummer": v, "naam": "Testpersoon (synthetisch)", "onderwerp": "uitkomst casusoverleg",
                "casusoverleg": {"datum": "2026-11-28"},
                "afspraken": [{"omschrijving": "gesprek terugkeer plannen", "verantwoordelijke": "dtv", "intern": "x"}],
                "medisch": {"bijzonderheden": "synthetisch medisch gegeven"}
            });
            s.call(
                pid,
                "outcome to the NGO's mailbox",
                &g,
                Method::POST,
                &svc(mb, "bericht", ""),
                Some("casusoverleg"),
                Some(&msg),
                201,
                mb,
            )
            .await?;
            let list = s
                .call(
                    pid,
                    "NGO lists its mailbox",
                    mb,
                    Method::GET,
                    "/v1/inbox",
                    None,
                    None,
                    200,
                    mb,
                )
                .await?;
            if let Some(id) = list
                .as_ref()
                .and_then(|r| r.json()["items"][0]["id"].as_u64())
            {
                s.call(
                    pid,
                    "NGO reads the document",
                    mb,
                    Method::GET,
                    &format!("/v1/inbox/{id}"),
                    None,
                    None,
                    200,
                    mb,
                )
                .await?;
                s.call(
                    pid,
                    "NGO acknowledges it",
                    mb,
                    Method::DELETE,
                    &format!("/v1/inbox/{id}"),
                    None,
                    None,
                    204,
                    mb,
                )
                .await?;
            }
        }
    }
    if let Some(pid) = policy.pilots.keys().next() {
        let g = format!("gemeente-{pid}");
        s.call(
            pid,
            "a purpose no covenant knows",
            &g,
            Method::GET,
            &format!("/v1/pilots/{pid}/services/dtv/vertrekdossier/5550900001"),
            Some("nieuwsgierigheid"),
            None,
            400,
            "dtv",
        )
        .await?;
        s.call(
            pid,
            "a dossier the provider does not have",
            &g,
            Method::GET,
            &format!("/v1/pilots/{pid}/services/dtv/vertrekdossier/5559000001"),
            Some("casusoverleg"),
            None,
            404,
            "dtv",
        )
        .await?;
    }
    Ok(s.out)
}

fn print_table(rows: &[Outcome]) {
    println!(
        "{:<10} {:<40} {:<24} {:<24} {:<13} {:>6}  what came of it",
        "pilot", "step", "from", "to", "purpose", "status"
    );
    for r in rows {
        let status = if r.expected == r.got {
            format!("{}", r.got)
        } else {
            format!("{}≠{}", r.got, r.expected)
        };
        println!(
            "{:<10} {:<40} {:<24} {:<24} {:<13} {:>6}  {}",
            r.pilot,
            shorten(&r.what, 40),
            shorten(&r.from, 24),
            shorten(&r.to, 24),
            shorten(&r.purpose, 13),
            status,
            r.note
        );
    }
}

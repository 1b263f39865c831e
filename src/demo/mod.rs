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
mod script;
mod shipped;
pub mod users;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::client::PartnerClient;
use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::pki::{self, Ca, LeafSpec};
use crate::policy::PolicySet;
use crate::policy::partners::Partners;
use crate::policy::service::{Part, PathTemplate, Service};
use crate::server::{Listeners, run};
use script::{CONSULTATION, Cast, IN_FORCE, MISTAKES, PROGRAMME_OFFICE, Step};

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration whose partners and pilots to copy; `None` plays the
    /// shipped configuration the binary carries.
    pub config: Option<PathBuf>,
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
                    return backend::Canned::json(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "onbekend"}),
                    );
                }
                let seed = v
                    .bytes()
                    .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
                return backend::Canned::json(StatusCode::OK, &data::dossier(svc, &v, seed));
            }
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            return backend::Canned::json(
                StatusCode::CREATED,
                &json!({"vnummer": body["vnummer"], "status": "ontvangen", "intern_kenmerk": "AANM-0001 (synthetisch)"}),
            );
        }
        backend::Canned::json(StatusCode::NOT_FOUND, &json!({"error": "geen dienst"}))
    })
}

/// Writes partners.toml and the pilot files into the demo folder: those of
/// the configuration given, or the shipped ones the binary carries.
fn copy_config(src: Option<&GatewayConfig>, dir: &Path) -> Result<PathBuf, DemoError> {
    let cfg_dir = dir.join("config");
    std::fs::create_dir_all(cfg_dir.join("pilots")).map_err(err("creating the demo folder"))?;
    match src {
        Some(src) => copy_files(src, &cfg_dir)?,
        None => {
            std::fs::write(cfg_dir.join("partners.toml"), shipped::PARTNERS)
                .map_err(err("writing partners.toml"))?;
            for (name, text) in shipped::PILOTS {
                std::fs::write(cfg_dir.join("pilots").join(name), text)
                    .map_err(err("writing a pilot file"))?;
            }
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

/// Copies partners.toml and every pilot file of a configuration on disk.
fn copy_files(src: &GatewayConfig, cfg_dir: &Path) -> Result<(), DemoError> {
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
    Ok(())
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
    let src = match &opts.config {
        Some(f) => Some(GatewayConfig::load(f).map_err(err("reading the configuration"))?),
        None => None,
    };
    let dir = std::path::absolute(&opts.dir).map_err(err("demo folder"))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(err("clearing the old demo folder"))?;
    }
    let cfg_file = copy_config(src.as_ref(), &dir)?;
    let cfg = GatewayConfig::load(&cfg_file).map_err(err("demo config"))?;
    let pki = DemoPki::make(&cfg, &dir)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    start_backends(&cfg, &pki, &stop_rx).await?;

    users::add(&cfg).map_err(DemoError)?;
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
    let outcomes = play(&base, &pki.certs, &pki.ca_pem, &policy.policy).await?;
    let all_ok = outcomes.iter().all(|o| o.expected == o.got);
    print_table(&outcomes);
    verify_audit(&gw).await?;
    println!(
        "{} of {} steps did what the script expects",
        outcomes.iter().filter(|o| o.expected == o.got).count(),
        outcomes.len()
    );

    if !opts.once {
        users::print_links(&gw, console);
        print_try_it(addr, console, &base, &pki.certs, &cfg_file);
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = gw_stop.send(());
    let _ = gateway.await;
    let _ = stop_tx.send(true);
    Ok(all_ok)
}

/// The development PKI of the demo folder, and a certificate for the
/// simulated back-ends issued by its CA.
struct DemoPki {
    certs: PathBuf,
    ca_pem: Vec<u8>,
    backend_tls: Arc<rustls::ServerConfig>,
}

impl DemoPki {
    fn make(cfg: &GatewayConfig, dir: &Path) -> Result<Self, DemoError> {
        pki::init(cfg).map_err(err("making the development PKI"))?;
        let certs = dir.join("certs");
        let read =
            |name: &str| std::fs::read(certs.join(name)).map_err(err("reading the demo PKI"));
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
        Ok(DemoPki {
            certs,
            ca_pem,
            backend_tls,
        })
    }
}

/// Back-ends on free ports, then the partners file pointed at them; they
/// stop when `stop` turns true.
async fn start_backends(
    cfg: &GatewayConfig,
    pki: &DemoPki,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), DemoError> {
    let partners = Partners::load(&cfg.partners_file).map_err(err("partners"))?;
    let mut ports = BTreeMap::new();
    for p in partners.list.iter().filter(|p| p.backend.is_some()) {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(err("binding a back-end"))?;
        ports.insert(
            p.id.to_string(),
            l.local_addr().map_err(err("back-end address"))?.port(),
        );
        let mut stop = stop.clone();
        tokio::spawn(backend::serve(
            l,
            pki.backend_tls.clone(),
            backend_handler(p.services.clone()),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
    }
    rewrite_backends(&cfg.partners_file, &ports)
}

/// Checks the audit log the script left behind, as an auditor would.
async fn verify_audit(gw: &Gateway) -> Result<(), DemoError> {
    let audit_dir = gw.config.data_dir.join("audit");
    gw.audit.checkpoint().await.map_err(err("checkpoint"))?;
    let keys = crate::audit::rotation::KeyHistory::read(&audit_dir).map_err(err("verifier key"))?;
    let rep = crate::audit::verify::verify_keys(&audit_dir, &keys, |_| {})
        .map_err(err("verifying the audit log"))?;
    println!(
        "\naudit log: {} records, {} signed checkpoints, verified (root {})",
        rep.records,
        rep.checkpoints,
        &hex::encode(rep.root)[..16]
    );
    Ok(())
}

/// How to talk to the gateway that keeps serving after the script.
fn print_try_it(
    addr: std::net::SocketAddr,
    console: std::net::SocketAddr,
    base: &str,
    certs: &Path,
    cfg_file: &Path,
) {
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

    /// Plays one step of the script in the pilot of `cast`.
    async fn step(&mut self, cast: &Cast<'_>, step: &Step, expected: u16) -> Result<(), DemoError> {
        let provider = cast.who(step.provider);
        let dossier = step.dossier.unwrap_or(&cast.vnummer);
        self.call(
            cast.pid,
            step.what,
            cast.who(step.actor),
            Method::GET,
            &cast.service(provider, step.service, dossier),
            Some(step.purpose),
            None,
            expected,
            provider,
        )
        .await?;
        Ok(())
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
    for (i, pid) in policy.pilots.keys().enumerate() {
        let cast = Cast::new(policy, pid, i, today);
        let in_force: &[Step] = if cast.in_force { &IN_FORCE } else { &[] };
        for step in CONSULTATION
            .iter()
            .chain(in_force)
            .chain([&PROGRAMME_OFFICE])
        {
            // Outside the covenant's validity every request is refused.
            let expected = if cast.in_force { step.expected } else { 403 };
            s.step(&cast, step, expected).await?;
        }
        if cast.in_force
            && let Some(mb) = cast.mailbox_ngo
        {
            mailbox_round(&mut s, &cast, mb).await?;
        }
    }
    lvv_round(&mut s, policy, today).await?;
    if let Some(pid) = policy.pilots.keys().next() {
        let cast = Cast::new(policy, pid, 0, today);
        for step in &MISTAKES {
            s.step(&cast, step, step.expected).await?;
        }
    }
    Ok(s.out)
}

/// The LVV registry: a person admitted in one pilot is found "elsewhere"
/// by the next, where a transfer is possible; the case moves (the fields
/// both files allow) and the next pilot finds them "here". The first pair
/// of pilots in force whose files agree on a transfer plays it (Utrecht →
/// Amsterdam in the shipped files).
async fn lvv_round(
    s: &mut Script<'_>,
    policy: &PolicySet,
    today: time::Date,
) -> Result<(), DemoError> {
    let in_force = |p: &crate::policy::Pilot| {
        p.covenant.valid_from <= today && today <= p.covenant.valid_until
    };
    let Some(a) = policy
        .pilots
        .keys()
        .flat_map(|f| policy.pilots.keys().map(move |t| (f, t)))
        .filter_map(|(f, t)| policy.transfer(f, t))
        .find(|a| in_force(a.from) && in_force(a.to))
    else {
        return Ok(());
    };
    let (Some(rf), Some(rt)) = (&a.from.registration, &a.to.registration) else {
        return Ok(());
    };
    let (from, to) = (a.from.id.as_str(), a.to.id.as_str());
    let (registrar, checker) = (
        &rf.registrars[0],
        rt.checkers.first().unwrap_or(&rt.registrars[0]),
    );
    let v = "5550090001";
    let reg = |p: &str| format!("/v1/pilots/{p}/registrations/{v}");
    let since = json!({"since": today.to_string()});
    s.call(
        from,
        "admitted to the LVV",
        registrar,
        Method::PUT,
        &reg(from),
        Some(&rf.purpose),
        Some(&since),
        201,
        "ketenpoort",
    )
    .await?;
    if let Some(o) = s.out.last_mut() {
        o.note = "stay opened".into();
    }
    for (what, expected_here) in [
        ("already in an LVV? (before the move)", false),
        ("already in an LVV? (after the move)", true),
    ] {
        let r = s
            .call(
                to,
                what,
                checker,
                Method::GET,
                &reg(to),
                Some(&rt.purpose),
                None,
                200,
                "ketenpoort",
            )
            .await?;
        if let (Some(r), Some(o)) = (r, s.out.last_mut()) {
            let j = r.json();
            o.note = format!(
                "here: {}, elsewhere: {}, transfer possible: {}",
                j["here"],
                j["elsewhere"],
                j["transfer_possible"] == json!(true)
            );
            if j["here"] != json!(expected_here) {
                o.got = 0;
            }
        }
        if expected_here {
            break;
        }
        let dossier = json!({
            "vnummer": v, "naam": "Testpersoon (synthetisch)", "geboortedatum": "1990-05-17", "nationaliteit": "onbekend",
            "casus": {"doelgroep": "buitenschuld"}, "begeleiding": {"plan_van_aanpak": "synthetisch plan", "traject": "terugkeer"},
            "opvang": {"startdatum": today.to_string()}, "gezondheid": {"ggz_indicatie": "synthetisch"}
        });
        s.call(
            from,
            &format!("case moves to {to}"),
            registrar,
            Method::POST,
            &format!("/v1/pilots/{from}/transfers/{to}"),
            Some(&a.rule.purpose),
            Some(&dossier),
            201,
            &a.rule.service.provider,
        )
        .await?;
        if let Some(o) = s.out.last_mut().filter(|o| o.got == 201) {
            o.note = o
                .note
                .replace("kept in the mailbox", "delivered, the stay moved");
        }
    }
    Ok(())
}

/// The municipality sends the outcome to the NGO's mailbox; the NGO lists,
/// reads and acknowledges it.
async fn mailbox_round(s: &mut Script<'_>, cast: &Cast<'_>, mb: &str) -> Result<(), DemoError> {
    let pid = cast.pid;
    let msg = json!({
        "vnummer": cast.vnummer, "naam": "Testpersoon (synthetisch)", "onderwerp": "uitkomst casusoverleg",
        "casusoverleg": {"datum": "2026-11-28"},
        "afspraken": [{"omschrijving": "gesprek terugkeer plannen", "verantwoordelijke": "dtv", "intern": "x"}],
        "medisch": {"bijzonderheden": "synthetisch medisch gegeven"}
    });
    s.call(
        pid,
        "outcome to the NGO's mailbox",
        &cast.municipality,
        Method::POST,
        &cast.service(mb, "bericht", ""),
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
    let Some(id) = list
        .as_ref()
        .and_then(|r| r.json()["items"][0]["id"].as_u64())
    else {
        return Ok(());
    };
    let doc = format!("/v1/inbox/{id}");
    s.call(
        pid,
        "NGO reads the document",
        mb,
        Method::GET,
        &doc,
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
        &doc,
        None,
        None,
        204,
        mb,
    )
    .await?;
    Ok(())
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

//! The local admin socket: how command-line tools use what the running
//! gateway holds.
//!
//! fjall (the index) allows one process per database, so `ketenpoort audit query` cannot
//! open the index while the gateway runs. The gateway listens on a Unix socket
//! in its data directory (mode 0600: whoever may read the data directory may
//! ask), and the tool asks it there; when no gateway answers, the tool opens the
//! index itself. Either way the same query code runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use serde_json::Value;

use crate::audit::retention::Retentions;
use crate::audit::rotation::Rotated;
use crate::audit::store::{Filter, LOOKUP_SCOPE, Options, SubjectKeys, View};
use crate::audit::{Decision, Record};
use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::policy::retention::Retention;

/// The socket's path under the data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// A query as a tool asks it.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// V-nummer of the data subject.
    pub subject: Option<String>,
    /// Partner id.
    pub partner: Option<String>,
    /// Pilot id.
    pub pilot: Option<String>,
    /// Purpose id.
    pub purpose: Option<String>,
    /// From (epoch µs).
    pub since: Option<i64>,
    /// Until (epoch µs).
    pub until: Option<i64>,
    /// Disclosed or refused.
    pub decision: Option<Decision>,
    /// At most this many.
    pub limit: usize,
}

/// The query as it travels over the socket: the subject already pseudonymised.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wire {
    /// The look-up's own pseudonym (under the look-ups' key of this month).
    subject: Option<String>,
    /// The person's pseudonyms under every subject key that still exists.
    #[serde(default)]
    subjects: Vec<String>,
    partner: Option<String>,
    pilot: Option<String>,
    purpose: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    decision: Option<String>,
    limit: usize,
}

impl Wire {
    fn filter(&self) -> Result<Filter, String> {
        let subject = match &self.subject {
            Some(h) => {
                let mut b = [0u8; 32];
                hex::decode_to_slice(h, &mut b).map_err(|_| "bad subject pseudonym".to_string())?;
                Some(b)
            }
            None => None,
        };
        let subjects = self
            .subjects
            .iter()
            .map(|h| {
                let mut b = [0u8; 32];
                hex::decode_to_slice(h, &mut b).map_err(|_| "bad subject pseudonym".to_string())?;
                Ok(b)
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Filter {
            subject,
            subjects,
            partner: self.partner.clone(),
            pilot: self.pilot.clone(),
            purpose: self.purpose.clone(),
            since: self.since,
            until: self.until,
            decision: self.decision.as_deref().and_then(Decision::parse),
            before: None,
            limit: self.limit,
        })
    }
}

/// Why a tool's query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The gateway answered with an error.
    #[error("the running gateway answered: {0}")]
    Gateway(String),
    /// Talking to the gateway failed.
    #[error("cannot talk to the gateway at {path}: {reason}")]
    Socket {
        /// The socket.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Opening the store directly failed.
    #[error(
        "{0} (if the gateway runs, it should answer on its admin socket; is it running with this data directory?)"
    )]
    Direct(String),
}

/// Runs a query: through the running gateway when one answers on the admin
/// socket, otherwise on the index directly.
pub fn query(config: &GatewayConfig, q: &Query) -> Result<Vec<Record>, AdminError> {
    let opts = Options::of(config);
    let keys = SubjectKeys::new(&opts.keys_dir);
    let direct = |e: std::io::Error| AdminError::Direct(e.to_string());
    let (subject, subjects) = match q.subject.as_deref() {
        Some(v) => (
            Some(hex::encode(
                keys.pseudonym_now(LOOKUP_SCOPE, v).map_err(direct)?,
            )),
            keys.pseudonyms(v)
                .map_err(direct)?
                .iter()
                .map(hex::encode)
                .collect(),
        ),
        None => (None, Vec::new()),
    };
    let wire = Wire {
        subject,
        subjects,
        partner: q.partner.clone(),
        pilot: q.pilot.clone(),
        purpose: q.purpose.clone(),
        since: q.since,
        until: q.until,
        decision: q.decision.map(|d| d.as_str().to_string()),
        limit: q.limit,
    };
    let sock = socket_path(&config.data_dir);
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        return ask_gateway(&sock, &wire);
    }
    let filter = wire.filter().map_err(AdminError::Direct)?;
    if let Some(subject) = filter.subject {
        // A look-up of a person is recorded before it is answered, as in
        // the console; so the log is opened for writing.
        let audit =
            crate::audit::Audit::open(opts).map_err(|e| AdminError::Direct(e.to_string()))?;
        let recorded = audit.record_blocking(cli_lookup(subject));
        let page = recorded
            .map_err(|e| AdminError::Direct(format!("the look-up cannot be recorded: {e}")))
            .and_then(|_| {
                audit
                    .view()
                    .query(&filter)
                    .map_err(|e| AdminError::Direct(e.to_string()))
            });
        audit.shutdown();
        return page.map(|p| p.records);
    }
    let view = View::open_with_index(&opts).map_err(|e| AdminError::Direct(e.to_string()))?;
    view.query(&filter)
        .map(|p| p.records)
        .map_err(|e| AdminError::Direct(e.to_string()))
}

/// The record of a look-up from the command line, named after the local
/// user who ran it.
fn cli_lookup(subject: [u8; 32]) -> crate::audit::Entry {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    crate::audit::Entry::lookup(&format!("cli:{user}"), "cli/audit-query", subject)
}

/// Asks the running gateway to sign a checkpoint now; returns the signed note.
pub fn checkpoint_now(config: &GatewayConfig) -> Result<String, AdminError> {
    let sock = socket_path(&config.data_dir);
    let body = call(&sock, "/v1/audit/checkpoint", Vec::new())?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn ask_gateway(sock: &Path, wire: &Wire) -> Result<Vec<Record>, AdminError> {
    let body = serde_json::to_vec(wire).map_err(|e| AdminError::Gateway(e.to_string()))?;
    let body = call(sock, "/v1/audit/query", body)?;
    let lines: Vec<String> =
        serde_json::from_slice(&body).map_err(|e| AdminError::Gateway(e.to_string()))?;
    lines
        .iter()
        .map(|h| {
            let b = hex::decode(h).map_err(|e| AdminError::Gateway(e.to_string()))?;
            Record::decode(&b).map_err(|e| AdminError::Gateway(e.to_string()))
        })
        .collect()
}

/// `on`, `off` or nothing (ask); the state after it, logged when it changed.
fn set_maintenance(gw: &Gateway, body: &[u8]) -> Result<bool, String> {
    use std::sync::atomic::Ordering;
    let want = match body {
        b"" => return Ok(gw.maintenance.load(Ordering::SeqCst)),
        b"on" => true,
        b"off" => false,
        _ => return Err("maintenance takes on or off".into()),
    };
    if gw.maintenance.swap(want, Ordering::SeqCst) != want {
        tracing::warn!(
            maintenance = want,
            "maintenance {}: /healthz answers {}",
            if want { "on" } else { "off" },
            if want {
                "503 (drain)"
            } else {
                "by its checks again"
            }
        );
    }
    Ok(want)
}

/// One POST over the admin socket; the body of a 200 answer.
fn call(sock: &Path, path: &str, body: Vec<u8>) -> Result<Bytes, AdminError> {
    let err = |reason: String| AdminError::Socket {
        path: sock.display().to_string(),
        reason,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(e.to_string()))?;
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(sock)
            .await
            .map_err(|e| err(e.to_string()))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::post(path)
            .header(hyper::header::HOST, "localhost")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| err(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(AdminError::Gateway(
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        Ok(body)
    })
}

/// What `audit retention` asks: as if today were `as_of`; each pilot's
/// retention as the tool read it from the policy files.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RetentionAsk {
    as_of: String,
    dry_run: bool,
    retentions: BTreeMap<String, Option<String>>,
}

/// Each pilot's audit retention in a policy.
pub fn retentions(policy: &crate::policy::PolicySet) -> Retentions {
    policy
        .pilots
        .iter()
        .map(|(id, p)| (id.clone(), p.retention))
        .collect()
}

/// Shows (`dry_run`) or does retention as of a day: through the running
/// gateway when one answers on the admin socket (it holds the keys in
/// use), otherwise on the data directory directly. The answer lists the
/// keys destroyed (or due) and each pilot's status.
pub fn retention(
    config: &GatewayConfig,
    policy: &crate::policy::PolicySet,
    as_of: time::Date,
    dry_run: bool,
) -> Result<Value, AdminError> {
    let ask = RetentionAsk {
        as_of: as_of.to_string(),
        dry_run,
        retentions: retentions(policy)
            .into_iter()
            .map(|(k, v)| (k, v.map(|r| r.to_string())))
            .collect(),
    };
    let sock = socket_path(&config.data_dir);
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        let body = serde_json::to_vec(&ask).map_err(|e| AdminError::Gateway(e.to_string()))?;
        let body = call(&sock, "/v1/audit/retention", body)?;
        return serde_json::from_slice(&body).map_err(|e| AdminError::Gateway(e.to_string()));
    }
    let mut opts = Options::new(&config.data_dir, &config.deployment);
    opts.storage = config.storage.clone();
    let audit = crate::audit::Audit::open(opts).map_err(|e| AdminError::Direct(e.to_string()))?;
    let out = run_retention(&audit, &ask).map_err(AdminError::Direct);
    audit.shutdown();
    out
}

/// Retention as asked, on an open log. Blocking.
fn run_retention(audit: &crate::audit::Audit, ask: &RetentionAsk) -> Result<Value, String> {
    let as_of = crate::policy::consent::parse_day(&ask.as_of).ok_or("as_of is no date")?;
    let mut r = Retentions::new();
    for (pilot, text) in &ask.retentions {
        let parsed = match text {
            Some(t) => Some(Retention::parse(t).ok_or_else(|| format!("bad retention {t}"))?),
            None => None,
        };
        r.insert(pilot.clone(), parsed);
    }
    let due = if ask.dry_run {
        audit.retention_due(&r, as_of)
    } else {
        audit.retention_run(&r, as_of)
    }
    .map_err(|e| e.to_string())?;
    let status = audit.retention_status(&r);
    Ok(serde_json::json!({
        "as_of": ask.as_of,
        "dry_run": ask.dry_run,
        "due": due.iter().map(|d| serde_json::json!({
            "scope": d.scope,
            "month": d.month,
            "due_since": d.due_since.to_string(),
            "records": d.records,
        })).collect::<Vec<_>>(),
        "pilots": status.iter().map(|s| serde_json::json!({
            "pilot": s.pilot,
            "retention": s.retention,
            "oldest_linkable": s.oldest_linkable,
            "next_destruction": s.next_destruction.map(|d| d.to_string()),
        })).collect::<Vec<_>>(),
    }))
}

/// Turns maintenance on or off in the running gateway (`Some`), or asks
/// whether it is on (`None`); the state after the call. Only through the
/// admin socket: maintenance is a state of the running process.
pub fn maintenance(config: &GatewayConfig, on: Option<bool>) -> Result<bool, AdminError> {
    let sock = socket_path(&config.data_dir);
    let body = match on {
        Some(true) => b"on".to_vec(),
        Some(false) => b"off".to_vec(),
        None => Vec::new(),
    };
    let answer = call(&sock, "/v1/maintenance", body)?;
    Ok(answer.as_ref() == b"on")
}

/// Replaces the log's checkpoint signing key (see
/// [`crate::audit::rotation`]): in the running gateway when one answers on
/// the admin socket, whose writer then signs with the new key alone;
/// otherwise on the data directory directly. Either way the one writer of
/// the log does it, between two batches, so two keys never sign apart.
pub fn rotate_key(config: &GatewayConfig) -> Result<Rotated, AdminError> {
    let sock = socket_path(&config.data_dir);
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        let body = call(&sock, "/v1/audit/rotate-key", Vec::new())?;
        return serde_json::from_slice(&body).map_err(|e| AdminError::Gateway(e.to_string()));
    }
    let opts = Options::new(&config.data_dir, &config.deployment);
    let audit = crate::audit::Audit::open(opts).map_err(|e| AdminError::Direct(e.to_string()))?;
    let out = audit
        .rotate_key_blocking()
        .map_err(|e| AdminError::Direct(e.to_string()));
    audit.shutdown();
    out
}

/// What `ketenpoort backup` asks the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupAsk {
    /// The backup folder (absolute; empty or new).
    to: PathBuf,
    /// Whether the secret keys go into it.
    include_keys: bool,
}

/// Has the running gateway take a backup of its data directory into `to`
/// (see [`crate::backup`]). Only through the admin socket: the gateway
/// holds the stores.
pub fn backup(
    config: &GatewayConfig,
    to: &Path,
    include_keys: bool,
) -> Result<crate::backup::Summary, AdminError> {
    let sock = socket_path(&config.data_dir);
    let to = std::path::absolute(to).map_err(|e| AdminError::Gateway(e.to_string()))?;
    let ask = serde_json::to_vec(&BackupAsk { to, include_keys })
        .map_err(|e| AdminError::Gateway(e.to_string()))?;
    let body = call(&sock, "/v1/backup", ask)?;
    serde_json::from_slice(&body).map_err(|e| AdminError::Gateway(e.to_string()))
}

async fn take_backup(gw: &Gateway, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    };
    let ask: BackupAsk = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    };
    let taken = crate::backup::take(
        gw.audit.clone(),
        gw.mailbox.db().clone(),
        gw.config.data_dir.clone(),
        ask.to,
        ask.include_keys,
    )
    .await;
    match taken {
        Ok(s) => reply(StatusCode::OK, serde_json::to_vec(&s).unwrap_or_default()),
        Err(e) => {
            tracing::error!(error = %e, "backup failed");
            reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string().into_bytes())
        }
    }
}

/// Serves one admin request (in the gateway).
pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    let audit = gw.audit.clone();
    if req.method() == Method::POST && req.uri().path() == "/v1/maintenance" {
        let body = match Limited::new(req.into_body(), 16).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
        };
        return match set_maintenance(&gw, &body) {
            Ok(on) => reply(StatusCode::OK, if on { "on" } else { "off" }.into()),
            Err(e) => reply(StatusCode::BAD_REQUEST, e.into_bytes()),
        };
    }
    if req.method() == Method::POST && req.uri().path() == "/v1/backup" {
        return take_backup(&gw, req).await;
    }
    if req.method() == Method::POST && req.uri().path() == "/v1/audit/checkpoint" {
        return match audit.checkpoint().await {
            Ok(cp) => reply(StatusCode::OK, cp.note.into_bytes()),
            Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string().into_bytes()),
        };
    }
    if req.method() == Method::POST && req.uri().path() == "/v1/audit/rotate-key" {
        return match audit.rotate_key().await {
            Ok(r) => {
                tracing::warn!(
                    size = r.size,
                    new_key = %r.new_vkey,
                    "checkpoint signing key rotated: give monitors and witnesses the new verifier key"
                );
                reply(StatusCode::OK, serde_json::to_vec(&r).unwrap_or_default())
            }
            Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string().into_bytes()),
        };
    }
    if req.method() == Method::POST && req.uri().path() == "/v1/audit/retention" {
        let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
        };
        let ask: RetentionAsk = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
        };
        return match tokio::task::spawn_blocking(move || run_retention(&audit, &ask)).await {
            Ok(Ok(v)) => reply(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()),
            Ok(Err(e)) => reply(StatusCode::SERVICE_UNAVAILABLE, e.into_bytes()),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string().into_bytes(),
            ),
        };
    }
    if req.method() != Method::POST || req.uri().path() != "/v1/audit/query" {
        return reply(StatusCode::NOT_FOUND, b"no such admin call".to_vec());
    }
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    };
    let filter = match serde_json::from_slice::<Wire>(&body)
        .map_err(|e| e.to_string())
        .and_then(|w| w.filter())
    {
        Ok(f) => f,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.into_bytes()),
    };
    if let Some(subject) = filter.subject
        && let Err(e) = audit.record(cli_lookup(subject)).await
    {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the look-up cannot be recorded: {e}").into_bytes(),
        );
    }
    let view = audit.view().clone();
    match tokio::task::spawn_blocking(move || view.query(&filter)).await {
        Ok(Ok(page)) => {
            let hexes: Vec<String> = page
                .records
                .iter()
                .map(|r| hex::encode(r.encode()))
                .collect();
            reply(
                StatusCode::OK,
                serde_json::to_vec(&hexes).unwrap_or_default(),
            )
        }
        Ok(Err(e)) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string().into_bytes(),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string().into_bytes(),
        ),
    }
}

//! The listeners: accept TCP, finish TLS, learn who is calling, serve HTTP.
//!
//! [`run`] takes its listeners and a shutdown future as inputs (as
//! tokio-rs/mini-redis does), so a test binds port 0, starts the real server and
//! stops it when done. Each connection is handled on its own task: a slow or
//! hostile peer never holds up another partner.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::admin;
use crate::audit::{self, Audit, AuditError};
use crate::config::{ConfigError, GatewayConfig};
use crate::console::{self, ConsoleState, users::UserStore};
use crate::exchange::{self, mailbox::Mailbox};
use crate::identity::Peer;
use crate::metrics::Metrics;
use crate::policy::store::PolicyStore;
use crate::tls::{TlsError, TlsStore};
use crate::watch::{self, Watch};

/// Most connections served at once per listener; further ones wait in the
/// kernel's backlog instead of exhausting memory or file descriptors.
pub const MAX_CONNECTIONS: usize = 4096;
/// A TLS handshake that takes longer than this is dropped (slow or idle peers).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to send a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (HTTP/1.1 buffer, HTTP/2 header list).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long open connections get to finish when the gateway stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A config file is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A certificate, key or CRL could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The audit log could not be opened (or is damaged).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The mailbox store could not be opened.
    #[error("mailbox: {0}")]
    Mailbox(String),
    /// The console users file is not valid.
    #[error("console users: {0}")]
    Console(String),
}

/// Everything a running gateway shares between connections.
pub struct Gateway {
    /// The gateway's configuration.
    pub config: GatewayConfig,
    /// Partners, their certificate index, the pilots' rules and pseudonym
    /// keys, reloaded when partners.toml or a policy file changes.
    pub policy: PolicyStore,
    /// TLS configs, reloaded when certificates or CRLs change.
    pub tls: TlsStore,
    /// The audit log: every disclosure and refusal, durable before delivery.
    pub audit: Arc<Audit>,
    /// Documents waiting for partners without a server.
    pub mailbox: Arc<Mailbox>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Console users and state.
    pub console: ConsoleState,
}

impl Gateway {
    /// Reads the whole configuration; any error stops the start.
    pub fn load(config_file: &Path) -> Result<Self, StartError> {
        Self::from_config(GatewayConfig::load(config_file)?)
    }

    /// Builds the gateway from a configuration already read (and perhaps
    /// adjusted, as `serve --partners-addr` does).
    pub fn from_config(config: GatewayConfig) -> Result<Self, StartError> {
        let policy = PolicyStore::load(&config)?;
        let tls = TlsStore::new(config.tls.clone())?;
        let metrics = Arc::new(Metrics::new());
        let snap = policy.current();
        metrics.set_policy(
            snap.policy
                .pilots
                .values()
                .map(|p| (p.id.as_str(), p.version.as_str())),
        );
        let mut audit_opts = audit::Options::new(&config.data_dir, &config.deployment);
        audit_opts.metrics = Some(metrics.clone());
        let audit = Arc::new(Audit::open(audit_opts)?);
        let console = ConsoleState::new(
            UserStore::load(&config.data_dir).map_err(|e| StartError::Console(e.to_string()))?,
        );
        let mailbox = Arc::new(
            Mailbox::open(
                &config.data_dir.join("mailbox"),
                config.limits.mailbox_quota_bytes,
                config.limits.mailbox_total_bytes,
            )
            .map_err(|e| StartError::Mailbox(e.to_string()))?,
        );
        Ok(Self {
            config,
            policy,
            tls,
            audit,
            mailbox,
            metrics,
            console,
        })
    }

    /// Re-reads certificates and CRLs, keeping the running ones if the new ones
    /// do not build.
    pub async fn reload_tls(self: &Arc<Self>) {
        let gw = self.clone();
        match tokio::task::spawn_blocking(move || gw.tls.reload()).await {
            Ok(Ok(())) => info!("certificates and CRLs reloaded"),
            Ok(Err(e)) => {
                error!(error = %e, "reload failed; keeping the running certificates and CRLs")
            }
            Err(e) => error!(error = %e, "reload task failed"),
        }
    }

    /// Re-reads partners and policies, keeping the running ones if any file
    /// does not validate.
    pub async fn reload_policy(self: &Arc<Self>) {
        let gw = self.clone();
        match tokio::task::spawn_blocking(move || gw.policy.reload()).await {
            Ok(Ok(())) => {
                let snap = self.policy.current();
                self.metrics.set_policy(
                    snap.policy
                        .pilots
                        .values()
                        .map(|p| (p.id.as_str(), p.version.as_str())),
                );
                for p in snap.policy.pilots.values() {
                    info!(pilot = %p.id, version = %p.version, rules = p.rules.len(), "policy loaded");
                }
            }
            Ok(Err(e)) => error!(error = %e, "policy not reloaded; keeping the running one"),
            Err(e) => error!(error = %e, "policy reload task failed"),
        }
    }
}

/// The two sockets the gateway serves.
pub struct Listeners {
    /// Partner API: mutual TLS.
    pub partners: TcpListener,
    /// Console: privacy officers and administrators.
    pub console: TcpListener,
    /// Local admin socket for command-line tools (optional).
    pub admin: Option<UnixListener>,
}

/// Serves both listeners until `shutdown` completes, then lets open
/// connections finish (up to [`SHUTDOWN_GRACE`]).
pub async fn run(listeners: Listeners, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let http = Arc::new(http_builder());
    let partner_slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let console_slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let reloaders = [
        tokio::spawn(reload_tls_on_change(gateway.clone())),
        tokio::spawn(reload_policy_on_change(gateway.clone())),
        tokio::spawn(sweep_mailboxes(gateway.clone())),
        tokio::spawn(reload_users_on_change(gateway.clone())),
    ];
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = accept(&listeners.partners, &partner_slots) => {
                let Some((tcp, addr, permit)) = accepted else { continue };
                let (gw, http, watcher) = (gateway.clone(), http.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let _permit = permit;
                    let Some((tls, peer)) = partner_handshake(&gw, tcp, addr).await else { return };
                    let peer = Arc::new(peer);
                    let svc = service_fn(move |req| {
                        let (gw, peer) = (gw.clone(), peer.clone());
                        async move { Ok::<_, std::convert::Infallible>(partner_request(&gw, &peer, req).await) }
                    });
                    if let Err(e) = watcher.watch(http.serve_connection(TokioIo::new(tls), svc).into_owned()).await {
                        debug!(peer = %addr, error = %e, "partner connection ended with an error");
                    }
                });
            }
            accepted = accept(&listeners.console, &console_slots) => {
                let Some((tcp, addr, permit)) = accepted else { continue };
                let (gw, http, watcher) = (gateway.clone(), http.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let _permit = permit;
                    let acceptor = TlsAcceptor::from(gw.tls.current().console.clone());
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => { debug!(peer = %addr, reason = %e, "console TLS handshake failed"); return; }
                        Err(_) => { debug!(peer = %addr, "console TLS handshake timed out"); return; }
                    };
                    let svc = service_fn(move |req| {
                        let gw = gw.clone();
                        async move { Ok::<_, std::convert::Infallible>(console_request(&gw, req).await) }
                    });
                    if let Err(e) = watcher.watch(http.serve_connection(TokioIo::new(tls), svc).into_owned()).await {
                        debug!(peer = %addr, error = %e, "console connection ended with an error");
                    }
                });
            }
            accepted = accept_admin(listeners.admin.as_ref()) => {
                let Some(unix) = accepted else { continue };
                let (audit, watcher) = (gateway.audit.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let audit = audit.clone();
                        async move { Ok::<_, std::convert::Infallible>(admin::handle(audit, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(unix), svc);
                    let _ = watcher.watch(conn).await;
                });
            }
            _ = &mut shutdown => break,
        }
    }

    info!("shutting down: no new connections; letting open ones finish");
    for r in &reloaders {
        r.abort();
    }
    drop(listeners);
    tokio::select! {
        _ = graceful.shutdown() => info!("all connections closed"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("grace period over; closing the remaining connections"),
    }
    let audit = gateway.audit.clone();
    let _ = tokio::task::spawn_blocking(move || audit.shutdown()).await;
    info!("audit log closed");
}

async fn accept_admin(listener: Option<&UnixListener>) -> Option<tokio::net::UnixStream> {
    match listener {
        Some(l) => l.accept().await.ok().map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(256);
    b
}

/// Accepts one connection once a slot is free. Accept errors (out of file
/// descriptors, a peer that reset at once) are logged and skipped: the
/// listener must keep serving everyone else.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((tcp, addr)) => {
            let _ = tcp.set_nodelay(true);
            Some((tcp, addr, permit))
        }
        Err(e) => {
            warn!(error = %e, "accept failed");
            // Out of descriptors is the usual cause; a short pause lets some close.
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Finishes the mutual-TLS handshake and maps the certificate to a partner.
/// Refusals at this stage (no certificate, unknown CA, expired, revoked, wrong
/// key usage) are logged with their reason and end the connection.
async fn partner_handshake(
    gw: &Gateway,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Peer)> {
    let acceptor = TlsAcceptor::from(gw.tls.current().partners.clone());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            warn!(peer = %addr, reason = %e, "partner TLS handshake refused");
            return None;
        }
        Err(_) => {
            warn!(peer = %addr, "partner TLS handshake timed out");
            return None;
        }
    };
    // The verifier requires a certificate, so one is present; stay defensive.
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.clone();
    let peer = gw.policy.current().identities.identify(&leaf);
    match &peer.partner {
        Ok(p) => info!(peer = %addr, partner = %p.id, "partner connected"),
        Err(e) => {
            warn!(peer = %addr, reason = %e, cert_sha256 = %hex::encode(peer.cert_sha256), "certificate accepted by TLS but maps to no partner")
        }
    }
    Some((tls, peer))
}

/// Routes one request on the partner API: the disclosure pipeline.
async fn partner_request(gw: &Gateway, peer: &Peer, req: Request<Incoming>) -> Response<Body> {
    exchange::handle(gw, peer, req).await
}

/// Routes one request on the console.
async fn console_request(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    console::handle(gw, req).await
}

/// Deletes mailbox documents past their purpose's retention, now and then.
async fn sweep_mailboxes(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(gw.config.limits.mailbox_sweep);
    loop {
        tick.tick().await;
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
        exchange::sweep_mailboxes(&gw, now).await;
    }
}

/// Reloads the console users when `ketenpoort user add/revoke` changes them.
async fn reload_users_on_change(gw: Arc<Gateway>) {
    let file = gw.console.users.file().to_path_buf();
    let name = file.file_name().map(PathBuf::from);
    let mut watch = Watch::new(watch::parents(std::slice::from_ref(&file)), move |p| {
        p.file_name().map(PathBuf::from) == name
    });
    loop {
        watch.changed().await;
        let g = gw.clone();
        match tokio::task::spawn_blocking(move || g.console.users.reload()).await {
            Ok(Ok(())) => info!("console users reloaded"),
            Ok(Err(e)) => {
                error!(error = %e, "console users not reloaded; keeping the running list")
            }
            Err(e) => error!(error = %e, "console users reload failed"),
        }
    }
}

/// Reloads TLS material when any of its files change on disk, or on SIGHUP.
async fn reload_tls_on_change(gw: Arc<Gateway>) {
    let files = gw.tls.files().all();
    let names: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.file_name().map(PathBuf::from))
        .collect();
    let mut watch = Watch::new(watch::parents(&files), move |p| {
        p.file_name().is_some_and(|n| names.iter().any(|m| m == n))
    });
    loop {
        watch.changed().await;
        gw.reload_tls().await;
    }
}

/// Reloads partners and policies when partners.toml or a pilot file changes, or
/// on SIGHUP.
async fn reload_policy_on_change(gw: Arc<Gateway>) {
    let (dirs, partners_file) = gw.policy.watched();
    let partners_name = partners_file.file_name().map(PathBuf::from);
    let mut watch = Watch::new(dirs, move |p| {
        p.extension().is_some_and(|x| x == "toml")
            || p.file_name().map(PathBuf::from) == partners_name
    });
    loop {
        watch.changed().await;
        gw.reload_policy().await;
    }
}

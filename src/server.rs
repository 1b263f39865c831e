//! The listeners: accept TCP, finish TLS, learn who is calling, serve HTTP.
//!
//! [`run`] takes its listeners and a shutdown future as inputs (as
//! tokio-rs/mini-redis does), so a test binds port 0, starts the real server and
//! stops it when done. Each connection is handled on its own task: a slow or
//! hostile peer never holds up another partner.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admin;
use crate::conn::{ConnState, Counted, Tally};
use crate::console;
use crate::exchange;
use crate::gateway::Gateway;
use crate::identity::Peer;
use crate::watch::Watch;

/// Most connections served at once per listener; further ones wait in the
/// kernel's backlog instead of exhausting memory or file descriptors.
pub const MAX_CONNECTIONS: usize = 16384;
/// Streams one HTTP/2 connection may have open at once.
pub const MAX_STREAMS: u32 = 32;
/// HTTP/2 flow-control window per stream: what a peer may send before the
/// gateway reads. Small, so unread request bodies cannot pile up.
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// HTTP/2 flow-control window per connection.
pub const CONNECTION_WINDOW: u32 = 512 * 1024;
/// A connection asked to close gets this long to finish its requests.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// Time a client gets to send a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (HTTP/1.1 buffer, HTTP/2 header list).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long open connections get to finish when the gateway stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The two sockets the gateway serves.
pub struct Listeners {
    /// Partner API: mutual TLS.
    pub partners: TcpListener,
    /// Console: privacy officers and administrators.
    pub console: TcpListener,
    /// Local admin socket for command-line tools (optional).
    pub admin: Option<UnixListener>,
}

/// Asks a connection to finish gracefully when the gateway stops, when it
/// has been idle or open too long, or when its state asks to close; drops it
/// when it has not finished [`CLOSE_GRACE`] after that.
macro_rules! drive {
    ($conn:expr, $stop:expr, $state:expr, $limits:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        let mut stop = $stop;
        let age = tokio::time::sleep($limits.max_connection_age);
        tokio::pin!(age);
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let why = tokio::select! {
                r = conn.as_mut() => break r.map_err(|e| e.to_string()),
                _ = stop.changed(), if deadline.is_none() => "stopping",
                _ = &mut age, if deadline.is_none() => "age",
                _ = $state.idle($limits.idle_timeout), if deadline.is_none() => "idle",
                _ = $state.closing(), if deadline.is_none() => "closing",
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    break Err("did not finish in time after being asked to close".to_string());
                }
            };
            debug!(peer = %$state.addr, why, "closing connection");
            deadline = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            conn.as_mut().graceful_shutdown();
        }
    }};
}

/// Serves both listeners until `shutdown` completes, then lets open
/// connections finish (up to [`SHUTDOWN_GRACE`]).
pub async fn run(listeners: Listeners, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    crate::conn::raise_fd_limit();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let http = Arc::new(http_builder());
    let partner_slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let console_slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let limits = gateway.config.limits.clone();
    let partner_sources = Arc::new(Tally::<IpAddr>::new(limits.max_connections_per_source));
    let console_sources = Arc::new(Tally::<IpAddr>::new(limits.max_connections_per_source));
    let per_partner = Arc::new(Tally::<String>::new(limits.max_connections_per_partner));
    gateway.share_policy();
    let reloaders = reloaders(&gateway);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = accept(&listeners.partners, &partner_slots, &partner_sources, &gateway) => {
                let Some((tcp, addr, permit)) = accepted else { continue };
                let (gw, http, stop, per_partner) = (gateway.clone(), http.clone(), stop_rx.clone(), per_partner.clone());
                tokio::spawn(serve_partner(gw, http, stop, per_partner, tcp, addr, permit));
            }
            accepted = accept(&listeners.console, &console_slots, &console_sources, &gateway) => {
                let Some((tcp, addr, permit)) = accepted else { continue };
                let (gw, http, stop) = (gateway.clone(), http.clone(), stop_rx.clone());
                tokio::spawn(serve_console(gw, http, stop, tcp, addr, permit));
            }
            accepted = accept_admin(listeners.admin.as_ref()) => {
                let Some(unix) = accepted else { continue };
                let (gw, stop) = (gateway.clone(), stop_rx.clone());
                tokio::spawn(serve_admin(gw, stop, unix));
            }
            _ = &mut shutdown => break,
        }
    }

    info!("shutting down: no new connections; letting open ones finish");
    for r in &reloaders {
        r.abort();
    }
    drop(listeners);
    drop(stop_rx);
    let _ = stop_tx.send(());
    tokio::select! {
        _ = stop_tx.closed() => info!("all connections closed"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("grace period over; closing the remaining connections"),
    }
    let audit = gateway.audit.clone();
    let _ = tokio::task::spawn_blocking(move || audit.shutdown()).await;
    info!("audit log closed");
}

/// The HTTP server settings both listeners share.
type Http = Arc<auto::Builder<TokioExecutor>>;

/// One partner connection: handshake, partner limit, certificate watch, and
/// the disclosure pipeline for each request.
async fn serve_partner(
    gw: Arc<Gateway>,
    http: Http,
    stop: tokio::sync::watch::Receiver<()>,
    per_partner: Arc<Tally<String>>,
    tcp: TcpStream,
    addr: SocketAddr,
    _slot: Slot,
) {
    let limits = gw.config.limits.clone();
    // The generation before the handshake: a reload during it is checked again.
    let generation = gw.tls.generation();
    let Some((tls, peer, chain)) = partner_handshake(&gw, tcp, addr).await else {
        return;
    };
    let _counted = match &peer.partner {
        Ok(p) => match per_partner.take(p.id.to_string()) {
            Some(c) => Some(c),
            None => {
                gw.metrics.connection_limited("per-partner");
                warn!(peer = %addr, partner = %p.id, "partner at its connection limit; connection closed");
                return;
            }
        },
        Err(_) => None,
    };
    let state = Arc::new(ConnState::with_chain(addr, chain, generation));
    if let (Ok(p), Some(t)) = (&peer.partner, state.not_after()) {
        gw.saw_partner_certificate(&p.id, t);
    }
    let watcher = {
        let (gw, state) = (gw.clone(), state.clone());
        tokio::spawn(async move { state.watch_certificate(&gw.tls).await })
    };
    let peer = Arc::new(peer);
    let svc = {
        let (gw, state) = (gw.clone(), state.clone());
        service_fn(move |req| {
            let (gw, peer, state) = (gw.clone(), peer.clone(), state.clone());
            async move {
                let _busy = state.busy();
                let mut resp = exchange::handle(&gw, &peer, &state, req).await;
                resp.headers_mut().insert(
                    exchange::wire::API_VERSION,
                    hyper::header::HeaderValue::from_static(exchange::wire::API_VERSION_VALUE),
                );
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let ended = drive!(
        http.serve_connection(TokioIo::new(tls), svc),
        stop,
        state,
        limits
    );
    watcher.abort();
    if let Err(e) = ended {
        debug!(peer = %addr, error = %e, "partner connection ended with an error");
    }
}

/// One console connection: TLS (a personal certificate optional), then the
/// console's routes.
async fn serve_console(
    gw: Arc<Gateway>,
    http: Http,
    stop: tokio::sync::watch::Receiver<()>,
    tcp: TcpStream,
    addr: SocketAddr,
    _slot: Slot,
) {
    let limits = gw.config.limits.clone();
    let acceptor = TlsAcceptor::from(gw.tls.current().console.clone());
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(peer = %addr, reason = %e, "console TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(peer = %addr, "console TLS handshake timed out");
            return;
        }
    };
    // A personal certificate, checked in the handshake against the console's
    // CA, goes with every request of the connection; whether it is anyone's
    // the console decides.
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .filter(|c| !c.is_empty())
        .map(|c| console::login::PeerCertificate(Arc::new(c.to_vec())));
    let state = Arc::new(ConnState::new(addr));
    let svc = {
        let state = state.clone();
        service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let (gw, state) = (gw.clone(), state.clone());
            if let Some(p) = &peer {
                req.extensions_mut().insert(p.clone());
            }
            async move {
                let _busy = state.busy();
                Ok::<_, std::convert::Infallible>(console::handle(&gw, req).await)
            }
        })
    };
    if let Err(e) = drive!(
        http.serve_connection(TokioIo::new(tls), svc),
        stop,
        state,
        limits
    ) {
        debug!(peer = %addr, error = %e, "console connection ended with an error");
    }
}

/// One admin-socket connection (local command-line tools).
async fn serve_admin(
    gw: Arc<Gateway>,
    mut stop: tokio::sync::watch::Receiver<()>,
    unix: tokio::net::UnixStream,
) {
    let svc = service_fn(move |req| {
        let gw = gw.clone();
        async move { Ok::<_, std::convert::Infallible>(admin::handle(gw, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(unix), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
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
    // Small windows and few streams: what a peer can make the gateway buffer
    // is bounded per connection, whatever it sends and however slowly.
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buf_size(256 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// Accepts one connection once a slot is free. Accept errors (out of file
/// descriptors, a peer that reset at once) are logged and skipped: the
/// listener must keep serving everyone else.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    sources: &Tally<IpAddr>,
    gw: &Gateway,
) -> Option<(TcpStream, SocketAddr, Slot)> {
    let permit = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((tcp, addr)) => {
            let Some(counted) = sources.take(addr.ip()) else {
                // Closed at once: one source must not hold the slots partners need.
                gw.metrics.connection_limited("per-source");
                debug!(peer = %addr, "source at its connection limit; connection closed");
                return None;
            };
            let _ = tcp.set_nodelay(true);
            Some((tcp, addr, (permit, counted)))
        }
        Err(e) => {
            warn!(error = %e, "accept failed");
            // Out of descriptors is the usual cause; a short pause lets some close.
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// A connection's place: one of the listener's slots, and its count for the
/// source address.
type Slot = (tokio::sync::OwnedSemaphorePermit, Counted<IpAddr>);

/// Finishes the mutual-TLS handshake and maps the certificate to a partner.
/// Refusals at this stage (no certificate, unknown CA, expired, revoked, wrong
/// key usage) are logged with their reason and end the connection. Returns
/// the peer's chain too, to check it again when the CRLs change.
async fn partner_handshake(
    gw: &Gateway,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    Peer,
    Vec<rustls_pki_types::CertificateDer<'static>>,
)> {
    let acceptor = TlsAcceptor::from(gw.tls.current().partners.clone());
    let timeout = gw.config.limits.handshake_timeout;
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
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
    let chain = tls.get_ref().1.peer_certificates()?.to_vec();
    let leaf = chain.first()?.clone();
    let peer = gw.policy.current().identities.identify(&leaf);
    match &peer.partner {
        Ok(p) => info!(peer = %addr, partner = %p.id, "partner connected"),
        Err(e) => {
            warn!(peer = %addr, reason = %e, cert_sha256 = %hex::encode(peer.cert_sha256), "certificate accepted by TLS but maps to no partner")
        }
    }
    Some((tls, peer, chain))
}

/// Records the refusals before the pipeline that were folded into a
/// minute's window and not yet recorded.
async fn record_folded_refusals(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(crate::conn::WINDOW);
    loop {
        tick.tick().await;
        crate::exchange::stranger::record_ended(&gw).await;
    }
}

/// Deletes mailbox documents past their purpose's retention, now and then.
async fn sweep_mailboxes(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(gw.config.limits.mailbox_sweep);
    loop {
        tick.tick().await;
        let now = crate::audit::record::now_micros();
        exchange::inbox::sweep_mailboxes(&gw, now).await;
    }
}

/// How often the gateway destroys the subject keys of months past retention.
const RETENTION_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Destroys the subject keys of months past retention: at start, then daily.
async fn apply_retention(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    loop {
        tick.tick().await;
        let r = crate::admin::retentions(&gw.policy.current().policy);
        let audit = gw.audit.clone();
        let today = time::OffsetDateTime::now_utc().date();
        match tokio::task::spawn_blocking(move || audit.retention_run(&r, today)).await {
            Ok(Ok(done)) if !done.is_empty() => {
                tracing::info!(
                    keys = done.len(),
                    "retention: subject keys of months past retention destroyed"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "retention could not run; trying again tomorrow")
            }
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
    }
}

/// Runs `reload` whenever `watch` wakes: a file it watches changed, or an
/// operator sent SIGHUP. One loop for certificates, policies and users.
async fn reload_on_change<F, Fut>(mut watch: Watch, reload: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        watch.changed().await;
        reload().await;
    }
}

/// The reload tasks: each part of the running state, from its own files.
fn reloaders(gw: &Arc<Gateway>) -> Vec<tokio::task::JoinHandle<()>> {
    let (dirs, partners_file) = gw.policy.watched();
    let partners_name = partners_file.file_name().map(PathBuf::from);
    let policy_watch = Watch::new(dirs, move |p| {
        p.extension().is_some_and(|x| x == "toml")
            || p.file_name().map(PathBuf::from) == partners_name
    });
    let tls_watch = Watch::files(&gw.tls.files().all());
    let users_watch = Watch::files(&[gw.console.users.file().to_path_buf()]);
    let (a, b, c) = (gw.clone(), gw.clone(), gw.clone());
    vec![
        tokio::spawn(reload_on_change(tls_watch, move || {
            let gw = a.clone();
            async move { gw.reload_tls().await }
        })),
        tokio::spawn(reload_on_change(policy_watch, move || {
            let gw = b.clone();
            async move { gw.reload_policy().await }
        })),
        tokio::spawn(reload_on_change(users_watch, move || {
            let gw = c.clone();
            async move { gw.reload_users().await }
        })),
        tokio::spawn(sweep_mailboxes(gw.clone())),
        tokio::spawn(apply_retention(gw.clone())),
        tokio::spawn(record_folded_refusals(gw.clone())),
        tokio::spawn(gw.witnessing.clone().run()),
        tokio::spawn(check_expiry_hourly(gw.clone())),
        tokio::spawn(refresh_crls(gw.clone())),
        tokio::spawn(check_disk(gw.clone())),
    ]
}

/// Disk space for the log: a gauge refreshed and a warning logged every
/// [`DISK_CHECK`].
async fn check_disk(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(DISK_CHECK);
    loop {
        tick.tick().await;
        let gw = gw.clone();
        let _ = tokio::task::spawn_blocking(move || gw.check_disk()).await;
    }
}

/// How often the space left on the data directory is looked at.
pub const DISK_CHECK: Duration = Duration::from_secs(60);

/// Fetches the CRLs every `[tls] crl_refresh_secs`, before a nextUpdate,
/// and at once when a partner's chain names a new distribution point; the
/// TLS set is rebuilt when one changed, or when one passed its nextUpdate
/// plus the grace (from then on its CA's partners are refused, and open
/// connections are checked again as after any TLS reload).
async fn refresh_crls(gw: Arc<Gateway>) {
    let files = gw.tls.files().clone();
    let learned = gw.tls.learned().clone();
    let grace = files.crl_grace.as_secs() as i64;
    let now = || time::OffsetDateTime::now_utc().unix_timestamp();
    let mut last = now();
    loop {
        let t = now();
        let mut wait = files.crl_refresh.as_secs() as i64;
        for n in gw.tls.current().validity.crls.iter().filter_map(|c| c.1) {
            for at in [n, n + grace] {
                if at > t {
                    wait = wait.min(at - t);
                }
            }
        }
        let wait = Duration::from_secs(wait.max(1) as u64);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = learned.wake.notified() => {}
        }
        let changed = crate::crl::refresh(&files, &learned).await;
        let t = now();
        let crossed = gw
            .tls
            .current()
            .validity
            .crls
            .iter()
            .any(|c| c.1.is_some_and(|n| last < n + grace && n + grace <= t));
        last = t;
        if changed || crossed {
            gw.reload_tls().await;
        }
    }
}

/// Certificate and CRL dates: gauges refreshed and warnings logged every
/// hour (and at start and on every TLS reload, in the gateway).
async fn check_expiry_hourly(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    tick.tick().await;
    loop {
        tick.tick().await;
        gw.check_expiry();
    }
}

//! The witness's HTTP listener: `POST /add-checkpoint` and nothing else.
//!
//! Plain HTTP by default (a partner may put the witness behind its own
//! proxy); TLS with rustls and the ring provider when `cert` and `key_file`
//! are configured. [`run`] takes the listener and a shutdown future, so a
//! test binds port 0 and drives the real server. Bodies are capped at
//! [`MAX_BODY_BYTES`] (413 beyond), connections at [`MAX_CONNECTIONS`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::config::WitnessTls;
use super::service::{Answer, Witness};
use crate::tls::{TlsError, provider, read_certs, read_key};

/// Largest request body: a checkpoint with its signatures and 63 proof
/// lines fits many times over (post-quantum signatures included).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a client gets to finish the TLS handshake or send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection asked to close (the witness stops) gets this long.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The rustls server configuration of a witness that terminates TLS itself.
pub fn tls_config(files: &WitnessTls) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(32);
    b
}

/// Serves `listener` until `shutdown` completes, then gives open
/// connections [`CLOSE_GRACE`] to finish.
pub async fn run(
    listener: TcpListener,
    witness: Arc<Witness>,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(());
    let http = Arc::new(http_builder());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (witness, http, stop, acceptor) = (
            witness.clone(),
            http.clone(),
            stop_rx.clone(),
            acceptor.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_connection(tcp, witness, &http, stop).await,
                Some(a) => match tokio::time::timeout(HEADER_READ_TIMEOUT, a.accept(tcp)).await {
                    Ok(Ok(tls)) => serve_connection(tls, witness, &http, stop).await,
                    _ => tracing::debug!(peer = %addr, "TLS handshake failed or timed out"),
                },
            }
        });
    }
    drop(stop_rx);
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(CLOSE_GRACE, stop_tx.closed()).await;
}

async fn serve_connection<I>(
    io: I,
    witness: Arc<Witness>,
    http: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let witness = witness.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, witness).await) }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
}

fn respond(a: Answer) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(a.body)));
    *r.status_mut() = a.status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    r
}

fn plain(status: StatusCode, text: &str) -> Answer {
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: format!("{text}\n"),
    }
}

async fn handle(req: Request<Incoming>, witness: Arc<Witness>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/add-checkpoint" {
        return respond(plain(StatusCode::NOT_FOUND, "not found"));
    }
    if req.method() != Method::POST {
        let mut r = respond(plain(StatusCode::METHOD_NOT_ALLOWED, "use POST"));
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return respond(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
        Err(_) => return respond(plain(StatusCode::BAD_REQUEST, "could not read the body")),
    };
    // The state lock and fsync block: off the runtime's threads.
    match tokio::task::spawn_blocking(move || witness.add_checkpoint(&body)).await {
        Ok(answer) => respond(answer),
        Err(_) => respond(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
}

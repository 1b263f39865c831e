//! The connector the gateway calls back-ends with: hyper-rustls' HTTPS
//! connector, plus the SHA-256 of the certificate each back-end presented.
//!
//! An answer's audit record must say who really answered, not only whom the
//! gateway meant to call. hyper's pooled client hides the TLS session, so the
//! connector puts the fingerprint into the connection's `Connected` info, which
//! the client copies into every response's extensions ([`BackendCert`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper::rt;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// SHA-256 of the back-end's leaf certificate, in a response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendCert(pub [u8; 32]);

/// An HTTPS connector that reports the back-end's certificate.
#[derive(Clone)]
pub struct CertConnector(pub HttpsConnector<HttpConnector>);

/// A connection made by [`CertConnector`].
pub struct CertStream(MaybeHttpsStream<TokioIo<TcpStream>>);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for CertConnector {
    type Response = CertStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<CertStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(CertStream) })
    }
}

impl Connection for CertStream {
    fn connected(&self) -> Connected {
        match &self.0 {
            MaybeHttpsStream::Https(s) => {
                // Built here rather than taken from hyper-rustls, which
                // would chain the TCP connector's addresses (`HttpInfo`):
                // the client copies every extra into every response, an
                // allocation each, and nothing here reads them.
                let (_, tls) = s.inner().get_ref();
                let mut connected = Connected::new();
                if tls.alpn_protocol() == Some(b"h2") {
                    connected = connected.negotiated_h2();
                }
                match tls.peer_certificates().and_then(|c| c.first()) {
                    Some(leaf) => connected.extra(BackendCert(crate::identity::sha256(leaf))),
                    None => connected,
                }
            }
            MaybeHttpsStream::Http(_) => self.0.connected(),
        }
    }
}

impl rt::Read for CertStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl rt::Write for CertStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

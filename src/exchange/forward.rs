//! Calling a provider's back-end: mutual TLS with the gateway's client
//! certificate, the back-end's certificate checked against the trust anchors,
//! a deadline, and a bounded answer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::tls::BackendClient;

/// Why a back-end gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// No connection (refused, unreachable, reset).
    #[error("the back-end is unreachable")]
    Unreachable,
    /// The back-end's certificate did not verify.
    #[error("the back-end's certificate is not trusted")]
    BadCertificate,
    /// No answer before the deadline.
    #[error("the back-end did not answer in time")]
    Timeout,
    /// The answer is larger than allowed.
    #[error("the back-end's answer is too large")]
    TooLarge,
}

/// What the back-end answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
    /// SHA-256 of the certificate the back-end presented: who really answered.
    pub cert_sha256: Option<[u8; 32]>,
}

fn is_cert_error(e: &(dyn std::error::Error + 'static)) -> bool {
    // The connector wraps rustls' error in io::Errors (more than one deep);
    // look through both `source()` and io::Error's inner error.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::AlertReceived(_)
            );
        }
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// Sends one request and reads the whole answer, within `deadline` and
/// `max_bytes`.
pub async fn call(
    client: &BackendClient,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    deadline: Duration,
    max_bytes: usize,
) -> Result<Answer, ForwardError> {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(h) = req.headers_mut() {
        *h = headers;
        if !body.is_empty() {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    let req = req
        .body(Full::new(body))
        .map_err(|_| ForwardError::Unreachable)?;
    let work = async {
        let resp = client.request(req).await.map_err(|e| {
            if is_cert_error(&e) {
                ForwardError::BadCertificate
            } else {
                ForwardError::Unreachable
            }
        })?;
        let status = resp.status();
        let cert_sha256 = resp
            .extensions()
            .get::<crate::backend::BackendCert>()
            .map(|c| c.0);
        let body = read_whole(Limited::new(resp.into_body(), max_bytes))
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    ForwardError::TooLarge
                } else {
                    ForwardError::Unreachable
                }
            })?;
        Ok(Answer {
            status,
            body,
            cert_sha256,
        })
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| ForwardError::Timeout)?
}

/// Reads a whole body as one `Bytes`. A body that comes in one frame, the
/// usual answer, is taken as it is: `BodyExt::collect` would queue it first
/// (an allocation per exchange).
async fn read_whole<B>(mut body: B) -> Result<Bytes, B::Error>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut first: Option<Bytes> = None;
    let mut more: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers: nothing a back-end's answer needs
        };
        match (&first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut m = bytes::BytesMut::with_capacity(f.len() + data.len());
                m.extend_from_slice(f);
                m.extend_from_slice(&data);
                more = Some(m);
            }
            (Some(_), Some(m)) => m.extend_from_slice(&data),
        }
    }
    Ok(match (first, more) {
        (_, Some(m)) => m.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;
    use hyper::body::Frame;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body that yields the frames it is given, as a back-end's answer
    /// comes off the wire in whatever pieces it was sent.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl hyper::body::Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(Ok))
        }
    }

    fn frames(parts: &[&'static [u8]], trailers: bool) -> Frames {
        let mut q: VecDeque<_> = parts
            .iter()
            .map(|p| Frame::data(Bytes::from_static(p)))
            .collect();
        if trailers {
            q.push_back(Frame::trailers(HeaderMap::new()));
        }
        Frames(q)
    }

    #[tokio::test]
    async fn an_answer_in_pieces_is_read_whole_and_in_order() {
        // A back-end dribbling its answer a byte at a time, with trailers.
        let body = frames(&[b"{", b"\"a\"", b":", b"1", b"}"], true);
        assert_eq!(read_whole(body).await.unwrap(), &b"{\"a\":1}"[..]);
        let body = frames(&[b"", b"{}"], false);
        assert_eq!(read_whole(body).await.unwrap(), &b"{}"[..]);
        assert!(read_whole(frames(&[], true)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_answer_in_one_piece_is_not_copied() {
        let one: &'static [u8] = b"{\"vnummer\":\"5550001234\"}";
        let read = read_whole(frames(&[one], false)).await.unwrap();
        assert_eq!(read.as_ptr(), one.as_ptr());
    }

    #[tokio::test]
    async fn pieces_beyond_the_limit_are_refused_as_too_large() {
        let body = Limited::new(frames(&[b"0123456789", b"0123456789"], false), 15);
        let e = read_whole(body).await.unwrap_err();
        assert!(
            e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
        );
    }
}

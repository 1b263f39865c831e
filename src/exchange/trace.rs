//! W3C trace context (`traceparent`): taken over from the caller when valid,
//! made otherwise, passed to the provider and kept in the audit record, so
//! a partner can follow one exchange through its own systems and ours.

use hyper::header::{HeaderMap, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};

use super::wire::TRACEPARENT;

/// W3C trace context of one exchange: the caller's trace (or a new one), and
/// the span of the gateway's hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The gateway's span.
    pub span_id: [u8; 8],
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The system RNG does not fail on Linux; a zero id would still be unique
    // enough for tracing, never for security.
    let _ = SystemRandom::new().fill(&mut b);
    b
}

fn hex_field<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if s.len() != N * 2 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode_to_slice(s, &mut out).ok()?;
    (out != [0u8; N]).then_some(out)
}

impl Trace {
    /// The caller's `traceparent` if it is valid, else a new trace. A garbage
    /// header is ignored, not an error: tracing must never block an exchange.
    pub fn from_headers(h: &HeaderMap) -> Self {
        let parsed = h
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| {
                let mut parts = s.trim().split('-');
                let (v, t, p, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                if v != "00"
                    || f.len() != 2
                    || !f.bytes().all(|b| b.is_ascii_hexdigit())
                    || parts.next().is_some()
                {
                    return None;
                }
                hex_field::<8>(p)?;
                hex_field::<16>(t)
            });
        Self {
            trace_id: parsed.unwrap_or_else(random),
            span_id: random(),
        }
    }

    /// The `traceparent` for the next hop.
    pub fn header(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "00-{}-{}-01",
            hex::encode(self.trace_id),
            hex::encode(self.span_id)
        ))
        .unwrap_or_else(|_| {
            HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
        })
    }
}

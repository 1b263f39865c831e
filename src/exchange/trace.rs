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

/// Random bytes drawn from the system RNG a page at a time: two `getrandom`
/// calls per exchange showed in the profile. Trace ids must be unique and
/// unguessable enough for tracing; they protect nothing.
const POOL: usize = 4096;

thread_local! {
    static RANDOM: std::cell::RefCell<(usize, Box<[u8; POOL]>)> =
        std::cell::RefCell::new((POOL, Box::new([0u8; POOL])));
}

fn random<const N: usize>() -> [u8; N] {
    RANDOM.with_borrow_mut(|(used, pool)| {
        if *used + N > POOL {
            // The system RNG does not fail on Linux; a zero id would still
            // be unique enough for tracing, never for security.
            let _ = SystemRandom::new().fill(&mut pool[..]);
            *used = 0;
        }
        let mut b = [0u8; N];
        b.copy_from_slice(&pool[*used..*used + N]);
        // Never hand out the same bytes twice.
        pool[*used..*used + N].fill(0);
        *used += N;
        b
    })
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
        let mut b = *b"00-00000000000000000000000000000000-0000000000000000-01";
        let _ = hex::encode_to_slice(self.trace_id, &mut b[3..35]);
        let _ = hex::encode_to_slice(self.span_id, &mut b[36..52]);
        HeaderValue::from_bytes(&b).unwrap_or_else(|_| {
            HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;

    #[test]
    fn header_round_trips_and_new_traces_differ() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2 * POOL {
            let t = Trace::from_headers(&HeaderMap::new());
            assert_ne!(t.trace_id, [0; 16]);
            assert!(seen.insert(t.trace_id), "a trace id came twice");
            let mut h = HeaderMap::new();
            h.insert(TRACEPARENT, t.header());
            let back = Trace::from_headers(&h);
            assert_eq!(back.trace_id, t.trace_id);
            assert_eq!(
                t.header().to_str().unwrap(),
                format!(
                    "00-{}-{}-01",
                    hex::encode(t.trace_id),
                    hex::encode(t.span_id)
                )
            );
        }
    }
}

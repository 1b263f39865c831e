//! W3C trace context (`traceparent`): taken over from the caller when valid,
//! made otherwise, passed to the provider and kept in the audit record, so
//! a partner can follow one exchange through its own systems and ours.
//!
//! FSC's transaction id (`Fsc-Transaction-Id`, a UUIDv7 as FSC Logging's
//! schema has it) is the same promise for partners that speak FSC: taken
//! over, or made when absent; a malformed one is refused before any stage
//! runs ([`take_transaction_id`]), since FSC's inway refuses it too.

use hyper::header::{HeaderMap, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};

use super::wire::{FSC_TRANSACTION_ID, TRACEPARENT};

/// W3C trace context of one exchange: the caller's trace (or a new one), and
/// the span of the gateway's hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The gateway's span.
    pub span_id: [u8; 8],
    /// The caller's span, from a valid `traceparent`: Logboek's
    /// `foreign_operation`.
    pub parent_span_id: Option<[u8; 8]>,
    /// The FSC transaction id (UUIDv7 bytes).
    pub fsc_transaction_id: [u8; 16],
}

/// An `Fsc-Transaction-Id` that is not one UUIDv7 in its hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Fsc-Transaction-Id is not one hyphenated UUIDv7")]
pub struct InvalidTransactionId;

/// A new UUIDv7: the time in milliseconds, then random bits.
pub fn new_transaction_id() -> [u8; 16] {
    let ms = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(ms, &random::<10>())
        .into_uuid()
        .into_bytes()
}

/// One `Fsc-Transaction-Id`: exactly one header, the hyphenated form, version 7,
/// the RFC 9562 variant. `Ok(None)` when there is none.
pub fn parse_transaction_id(h: &HeaderMap) -> Result<Option<[u8; 16]>, InvalidTransactionId> {
    let mut values = h.get_all(&FSC_TRANSACTION_ID).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InvalidTransactionId);
    }
    let s = v.to_str().map_err(|_| InvalidTransactionId)?;
    if s.len() != 36 {
        return Err(InvalidTransactionId);
    }
    let u = uuid::Uuid::try_parse(s).map_err(|_| InvalidTransactionId)?;
    if u.get_version_num() != 7 || u.get_variant() != uuid::Variant::RFC4122 {
        return Err(InvalidTransactionId);
    }
    Ok(Some(u.into_bytes()))
}

/// The transaction id of a request on the partner API: the caller's when it
/// is valid, a new one when absent (written into the request, so every stage
/// sees the same one); `Err` for anything else.
pub fn take_transaction_id(h: &mut HeaderMap) -> Result<HeaderValue, InvalidTransactionId> {
    if let Some(id) = parse_transaction_id(h)? {
        return Ok(transaction_header(id));
    }
    let v = transaction_header(new_transaction_id());
    h.insert(FSC_TRANSACTION_ID, v.clone());
    Ok(v)
}

/// `Fsc-Transaction-Id` as sent.
pub fn transaction_header(id: [u8; 16]) -> HeaderValue {
    let mut buf = [0u8; 36];
    let s = uuid::Uuid::from_bytes(id)
        .hyphenated()
        .encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
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
                Some((hex_field::<16>(t)?, hex_field::<8>(p)?))
            });
        Self {
            trace_id: parsed.map_or_else(random, |(t, _)| t),
            span_id: random(),
            parent_span_id: parsed.map(|(_, p)| p),
            fsc_transaction_id: parse_transaction_id(h)
                .ok()
                .flatten()
                .unwrap_or_else(new_transaction_id),
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
    fn transaction_ids_are_uuid_v7_only() {
        let mut h = HeaderMap::new();
        let made = take_transaction_id(&mut h).unwrap();
        assert_eq!(h.get(FSC_TRANSACTION_ID), Some(&made));
        let u = uuid::Uuid::parse_str(made.to_str().unwrap()).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(
            parse_transaction_id(&h).unwrap(),
            Some(u.into_bytes()),
            "a made id is taken over as it is"
        );
        for bad in [
            "0189f7e5-c883-4106-8272-ccb7fcba0575",   // version 4
            "0189f7e5-c883-7106-c272-ccb7fcba0575",   // another variant
            "0189f7e5c8837106 8272ccb7fcba0575",      // not hyphenated
            "0189f7e5c88371068272ccb7fcba0575",       // simple form
            "{0189f7e5-c883-7106-8272-ccb7fcba0575}", // braced
            "",
        ] {
            let mut h = HeaderMap::new();
            h.insert(FSC_TRANSACTION_ID, HeaderValue::from_static(bad));
            assert!(take_transaction_id(&mut h).is_err(), "{bad} taken");
        }
        let mut h = HeaderMap::new();
        h.append(
            FSC_TRANSACTION_ID,
            HeaderValue::from_static("0189f7e5-c883-7106-8272-ccb7fcba0575"),
        );
        assert!(parse_transaction_id(&h).unwrap().is_some());
        h.append(
            FSC_TRANSACTION_ID,
            HeaderValue::from_static("0189f7e5-c883-7106-8272-ccb7fcba0576"),
        );
        assert!(parse_transaction_id(&h).is_err(), "two ids taken");
    }

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

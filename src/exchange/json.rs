//! Strict JSON reading for documents that cross the gateway.
//!
//! serde_json keeps the last of two equal keys; a back-end or client might
//! keep the first. A document with duplicate keys is therefore refused, so the
//! minimiser and the recipient can never disagree about which value they saw.
//! Nesting is bounded, and bytes must be UTF-8. Documents that cross the
//! gateway on the hot path are read by `policy::stream` instead, with the same
//! rules and error texts (tests/stream.rs holds the two together).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deepest nesting of arrays and objects accepted: one limit for this reader
/// and for the minimiser that parses as it goes.
pub use crate::policy::stream::MAX_DEPTH;

/// Why a body is not an acceptable JSON document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

/// Parses a document strictly: valid UTF-8, no duplicate keys, nesting at most
/// [`MAX_DEPTH`], nothing after the value.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError("the body is not UTF-8".into()))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| JsonError(format!("malformed JSON: {e}")))?;
    de.end()
        .map_err(|e| JsonError(format!("malformed JSON: {e}")))?;
    Ok(v)
}

struct Strict {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(A::Error::custom(format!("nested deeper than {MAX_DEPTH}")));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            depth: self.depth + 1,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(A::Error::custom(format!("nested deeper than {MAX_DEPTH}")));
        }
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(A::Error::custom("a key appears twice in one object"));
            }
            let v = map.next_value_seed(Strict {
                depth: self.depth + 1,
            })?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness() {
        assert_eq!(
            parse(br#"{"a": [1, {"b": null}]}"#).unwrap()["a"][1]["b"],
            Value::Null
        );
        assert!(
            parse(br#"{"a": 1, "a": 2}"#)
                .unwrap_err()
                .0
                .contains("twice")
        );
        assert!(parse(br#"{"x": {"a": 1, "a": 2}}"#).is_err());
        assert!(parse(b"{\"a\": \"\xff\"}").unwrap_err().0.contains("UTF-8"));
        assert!(parse(br#"{"a": 1} x"#).is_err());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).unwrap_err().0.contains("deeper"));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        assert_eq!(
            parse(b"18446744073709551615").unwrap(),
            Value::from(u64::MAX)
        );
        assert!(parse(b"1e400").is_err());
    }
}

//! The signature of an OpenID Connect ID token (a JWS in compact form),
//! checked with ring against the provider's published keys (JWKS).
//!
//! Only RS256 and ES256, the algorithms providers use; `none`, HMAC and
//! anything else are refused, whatever the token's header says, so a token
//! cannot choose a weaker check for itself. What the claims must say (issuer,
//! audience, expiry, nonce) is checked by the login flow.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest ID token taken in.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// One key of a provider's JWKS (the members used here).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    /// `RSA` or `EC`.
    pub kty: String,
    /// Key id, matched against the token's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// `sig` or absent for signing keys.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent, base64url.
    #[serde(default)]
    pub e: Option<String>,
    /// EC curve: `P-256`.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate, base64url.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(default)]
    pub y: Option<String>,
}

/// A JWKS document.
#[derive(Debug, Clone, Deserialize)]
pub struct JwkSet {
    /// Its keys.
    pub keys: Vec<Jwk>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url parts with JSON in the first two.
    #[error("the token is malformed")]
    Malformed,
    /// An algorithm other than RS256 or ES256.
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// No key of the provider has the token's key id (and type).
    #[error("no key of the provider fits the token")]
    UnknownKey,
    /// The signature does not verify with the provider's key.
    #[error("the token's signature does not verify")]
    Signature,
}

fn b64(s: &str) -> Result<Vec<u8>, JwtError> {
    B64URL.decode(s).map_err(|_| JwtError::Malformed)
}

fn verify_with(alg: &str, key: &Jwk, input: &[u8], sig: &[u8]) -> bool {
    let field = |f: &Option<String>| f.as_deref().and_then(|v| B64URL.decode(v).ok());
    match (alg, key.kty.as_str()) {
        ("RS256", "RSA") => match (field(&key.n), field(&key.e)) {
            (Some(n), Some(e)) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
                .is_ok(),
            _ => false,
        },
        ("ES256", "EC") if key.crv.as_deref() == Some("P-256") => {
            match (field(&key.x), field(&key.y)) {
                (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    let mut point = Vec::with_capacity(65);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(input, sig)
                        .is_ok()
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// The token's key id, if its header names one (to know whether the
/// provider's key set must be fetched again).
pub fn key_id(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let h: Value = serde_json::from_slice(&b64(header).ok()?).ok()?;
    h.get("kid")?.as_str().map(str::to_string)
}

/// The claims of a token whose signature verifies with one of `keys`.
pub fn verify(token: &str, keys: &[Jwk]) -> Result<Map<String, Value>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Value = serde_json::from_slice(&b64(h)?).map_err(|_| JwtError::Malformed)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kty = match alg {
        "RS256" => "RSA",
        "ES256" => "EC",
        _ => return Err(JwtError::Algorithm),
    };
    let kid = header.get("kid").and_then(Value::as_str);
    let sig = b64(s)?;
    let input = &token.as_bytes()[..h.len() + 1 + p.len()];
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| k.kty == kty && k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .collect();
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    if !candidates.iter().any(|k| verify_with(alg, k, input, &sig)) {
        return Err(JwtError::Signature);
    }
    match serde_json::from_slice(&b64(p)?) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => Err(JwtError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn es256(claims: &str) -> (String, Jwk) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pk = pair.public_key().as_ref();
        let jwk = Jwk {
            kty: "EC".into(),
            kid: Some("k1".into()),
            use_: Some("sig".into()),
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some(B64URL.encode(&pk[1..33])),
            y: Some(B64URL.encode(&pk[33..65])),
        };
        let input = format!(
            "{}.{}",
            B64URL.encode(r#"{"alg":"ES256","kid":"k1"}"#),
            B64URL.encode(claims)
        );
        let sig = pair.sign(&rng, input.as_bytes()).unwrap();
        (format!("{input}.{}", B64URL.encode(sig.as_ref())), jwk)
    }

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let (token, key) = es256(r#"{"sub":"x"}"#);
        assert_eq!(
            verify(&token, std::slice::from_ref(&key)).unwrap()["sub"],
            "x"
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64URL.encode(r#"{"sub":"y"}"#);
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), std::slice::from_ref(&key)),
            Err(JwtError::Signature)
        );
        let (_, other) = es256("{}");
        assert_eq!(verify(&token, &[other]), Err(JwtError::Signature));
    }

    #[test]
    fn a_token_cannot_choose_its_own_check() {
        let (token, key) = es256(r#"{"sub":"x"}"#);
        let payload = token.split('.').nth(1).unwrap();
        for alg in ["none", "HS256", "RS512", ""] {
            let h = B64URL.encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#));
            assert_eq!(
                verify(&format!("{h}.{payload}."), std::slice::from_ref(&key)),
                Err(JwtError::Algorithm)
            );
        }
        assert_eq!(verify("a.b", &[key]), Err(JwtError::Malformed));
    }
}

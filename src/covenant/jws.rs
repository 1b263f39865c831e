//! Covenant signatures: JWS compact serialisation (RFC 7515), made with the
//! key of a partner's organisation certificate, the one it uses for mutual TLS.
//!
//! The header carries `alg` and `x5c` (the certificate chain, standard base64
//! DER, RFC 7515 §4.1.6); the payload is
//! `{"pilot": …, "version": "sha256:…", "decision": "accept"|"revoke"}`,
//! optionally with `"iat"`. Verifying checks the signature with the leaf's
//! key (ring), the chain with the same rustls/webpki client-certificate
//! verifier as the partner listener (trust anchors, CRLs, validity, client
//! EKU), and maps the leaf to a partner with the same rules as TLS does
//! ([`crate::identity::PartnerIndex`]). Whether that partner may sign this
//! pilot and version is the registry's question, not this module's.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::PartnerIndex;
use crate::policy::partners::Partner;

/// What a partner says about a covenant version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// It agrees to the version.
    Accept,
    /// It withdraws its agreement.
    Revoke,
}

impl Decision {
    /// `accept` or `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Revoke => "revoke",
        }
    }
}

/// The signed statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Pilot id.
    pub pilot: String,
    /// `sha256:<hex>` of the covenant text.
    pub version: String,
    /// Accept or revoke.
    pub decision: Decision,
    /// When it was signed (seconds since the epoch), if the signer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// Why a JWS is not a valid covenant signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not three base64url parts, or a part that is not the JSON it should be.
    #[error("malformed JWS: {0}")]
    Malformed(String),
    /// An `alg` other than ES256, ES384, RS256, PS256, EdDSA, or `crit` set.
    #[error("unsupported JWS: {0}")]
    Unsupported(String),
    /// The signature does not verify with the certificate's key.
    #[error("the signature does not verify with the key of the certificate in x5c")]
    BadSignature,
    /// The chain is not trusted now (unknown CA, revoked, expired, not a client certificate).
    #[error("the certificate is not trusted: {0}")]
    Untrusted(String),
    /// The certificate maps to no partner, or to several.
    #[error("the certificate is not a partner's: {0}")]
    NotAPartner(String),
    /// A key or certificate for signing could not be used.
    #[error("cannot sign: {0}")]
    Key(String),
}

/// A signature that verified, with the partner it is from.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signer.
    pub partner: Arc<Partner>,
    /// SHA-256 of the leaf certificate.
    pub cert_sha256: [u8; 32],
    /// What it signed.
    pub payload: Payload,
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64url(part: &str, what: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwsError::Malformed(format!("{what} is not base64url")))
}

/// A signing key, with the `alg` it makes.
enum Signer {
    Es256(EcdsaKeyPair),
    Es384(EcdsaKeyPair),
    Ps256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Signer {
    fn from_key(key: &PrivateKeyDer<'_>) -> Result<Self, JwsError> {
        let rng = SystemRandom::new();
        match key {
            PrivateKeyDer::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                if let Ok(p) =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                {
                    return Ok(Self::Es256(p));
                }
                if let Ok(p) =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng)
                {
                    return Ok(Self::Es384(p));
                }
                if let Ok(p) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    return Ok(Self::EdDsa(p));
                }
                RsaKeyPair::from_pkcs8(der)
                    .map(Self::Ps256)
                    .map_err(|e| JwsError::Key(format!("unsupported PKCS#8 key: {e}")))
            }
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(Self::Ps256)
                .map_err(|e| JwsError::Key(format!("RSA key: {e}"))),
            _ => Err(JwsError::Key(
                "the key must be PKCS#8 (or PKCS#1 for RSA)".into(),
            )),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Es384(_) => "ES384",
            Self::Ps256(_) => "PS256",
            Self::EdDsa(_) => "EdDSA",
        }
    }

    fn public_key(&self) -> &[u8] {
        match self {
            Self::Es256(k) | Self::Es384(k) => k.public_key().as_ref(),
            Self::Ps256(k) => k.public_key().as_ref(),
            Self::EdDsa(k) => k.public_key().as_ref(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, JwsError> {
        let rng = SystemRandom::new();
        let fail = |_| JwsError::Key("signing failed".into());
        Ok(match self {
            Self::Es256(k) | Self::Es384(k) => k.sign(&rng, msg).map_err(fail)?.as_ref().to_vec(),
            Self::EdDsa(k) => k.sign(msg).as_ref().to_vec(),
            Self::Ps256(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&signature::RSA_PSS_SHA256, &rng, msg, &mut sig)
                    .map_err(fail)?;
                sig
            }
        })
    }
}

/// Signs `payload` with `key`, putting `chain` (leaf first) in `x5c`. The
/// key must belong to the leaf.
pub fn sign(
    payload: &Payload,
    chain: &[CertificateDer<'_>],
    key: &PrivateKeyDer<'_>,
) -> Result<String, JwsError> {
    let signer = Signer::from_key(key)?;
    let leaf = chain
        .first()
        .ok_or_else(|| JwsError::Key("no certificate".into()))?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|_| JwsError::Key("the certificate does not parse".into()))?;
    if cert.public_key().subject_public_key.data.as_ref() != signer.public_key() {
        return Err(JwsError::Key(
            "the key does not belong to the certificate".into(),
        ));
    }
    let header = serde_json::json!({
        "alg": signer.alg(),
        "x5c": chain.iter().map(|c| STANDARD.encode(c.as_ref())).collect::<Vec<_>>(),
    });
    let payload = serde_json::to_vec(payload).map_err(|e| JwsError::Key(e.to_string()))?;
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(&payload)
    );
    let sig = signer.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64url(&sig)))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn algorithm(alg: &str) -> Result<&'static dyn signature::VerificationAlgorithm, JwsError> {
    Ok(match alg {
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "EdDSA" => &signature::ED25519,
        other => return Err(JwsError::Unsupported(format!("alg '{other}'"))),
    })
}

/// Verifies a compact JWS: its form, its signature, its chain (with
/// `verifier`, now) and whose certificate it is (with `partners`).
pub fn verify(
    jws: &str,
    verifier: &dyn ClientCertVerifier,
    partners: &PartnerIndex,
) -> Result<Verified, JwsError> {
    let jws = jws.trim();
    let parts: Vec<&str> = jws.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(JwsError::Malformed("not three parts".into()));
    };
    let header: Header = serde_json::from_slice(&unb64url(h, "the header")?)
        .map_err(|e| JwsError::Malformed(format!("header: {e}")))?;
    if header.crit.is_some() {
        return Err(JwsError::Unsupported("crit".into()));
    }
    let alg = algorithm(&header.alg)?;
    let chain: Vec<CertificateDer<'static>> = header
        .x5c
        .iter()
        .map(|c| STANDARD.decode(c).map(CertificateDer::from))
        .collect::<Result<_, _>>()
        .map_err(|_| JwsError::Malformed("x5c holds no standard base64".into()))?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(JwsError::Malformed("x5c holds no certificate".into()));
    };
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|_| JwsError::Malformed("the x5c certificate does not parse".into()))?;
    let key = cert.public_key().subject_public_key.data.as_ref();
    let sig = unb64url(s, "the signature")?;
    signature::UnparsedPublicKey::new(alg, key)
        .verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| JwsError::BadSignature)?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map_err(|e| JwsError::Untrusted(e.to_string()))?;
    let peer = partners.identify(leaf.as_ref());
    let partner = peer
        .partner
        .map_err(|e| JwsError::NotAPartner(e.to_string()))?;
    let payload: Payload = serde_json::from_slice(&unb64url(p, "the payload")?)
        .map_err(|e| JwsError::Malformed(format!("payload: {e}")))?;
    Ok(Verified {
        partner,
        cert_sha256: peer.cert_sha256,
        payload,
    })
}

/// The pilot and version a JWS says it is about, unverified: only to know
/// where an inbox signature is to be submitted, which then verifies it.
pub fn peek(jws: &str) -> Option<(String, String)> {
    let p = jws.trim().split('.').nth(1)?;
    let payload: Payload = serde_json::from_slice(&unb64url(p, "the payload").ok()?).ok()?;
    Some((payload.pilot, payload.version))
}

/// [`sign`] with the certificate chain and key as PEM text.
pub fn sign_pem(payload: &Payload, chain_pem: &str, key_pem: &str) -> Result<String, JwsError> {
    use rustls_pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| JwsError::Key(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| JwsError::Key(format!("key: {e}")))?;
    sign(payload, &chain, &key)
}

/// An acceptance of `version` of `pilot`, stamped now.
pub fn acceptance(pilot: &str, version: &str) -> Payload {
    Payload {
        pilot: pilot.to_string(),
        version: version.to_string(),
        decision: Decision::Accept,
        iat: Some(time::OffsetDateTime::now_utc().unix_timestamp()),
    }
}

//! Certificate → partner: who is calling.
//!
//! The TLS layer has already checked the chain, validity and revocation. What is
//! left is to decide which *organisation* the certificate belongs to. Government
//! partners carry their OIN in the subject's serialNumber (PKIoverheid); NGOs with a
//! private-services certificate carry an HRN-derived OIN or an
//! `organizationIdentifier` of `NTRNL-<KvK>`; NGOs without PKIoverheid are
//! recognised by a pinned public key. A certificate must map to exactly one
//! partner: none or several is a refusal.
//!
//! The mapping is done once per connection and the result travels with every
//! request on it, so no request re-parses a certificate.

use std::collections::HashMap;
use std::sync::Arc;

use ring::digest::{SHA256, digest};
use x509_parser::prelude::*;

use crate::policy::partners::{Partner, Partners};

/// OID 2.5.4.5, subject serialNumber: where PKIoverheid puts the OIN.
const OID_SERIAL_NUMBER: &str = "2.5.4.5";
/// OID 2.5.4.97, organizationIdentifier: `NTRNL-<KvK>` in the PKIoverheid G4 profile.
const OID_ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";
/// OIN prefix of numbers derived from a KvK number (HRN).
const HRN_PREFIX: &str = "00000003";

/// Why a verified certificate is still not a partner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No OIN, KvK number or pinned key of any partner is in the certificate.
    #[error("the certificate belongs to no known partner")]
    UnknownPartner,
    /// The certificate's identifiers lead to more than one partner.
    #[error("the certificate matches more than one partner: {0:?}")]
    Ambiguous(Vec<String>),
    /// The certificate could not be parsed after the handshake accepted it.
    #[error("the certificate could not be read")]
    Unreadable,
}

/// What the gateway knows of the peer on one connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The partner, or why the certificate maps to none.
    pub partner: Result<Arc<Partner>, IdentityError>,
    /// SHA-256 of the leaf certificate (DER): goes into audit records.
    pub cert_sha256: [u8; 32],
}

/// Lookup tables from certificate identifiers to partners, built once from
/// `partners.toml`.
#[derive(Debug, Default)]
pub struct PartnerIndex {
    by_oin: HashMap<String, Arc<Partner>>,
    by_kvk: HashMap<String, Arc<Partner>>,
    by_pin: HashMap<[u8; 32], Arc<Partner>>,
}

impl PartnerIndex {
    /// Indexes every way each partner can be recognised.
    pub fn new(partners: &Partners) -> Self {
        let mut ix = Self::default();
        for p in &partners.list {
            if let Some(oin) = &p.oin {
                ix.by_oin.insert(oin.clone(), p.clone());
            }
            if let Some(kvk) = &p.kvk {
                ix.by_kvk.insert(kvk.clone(), p.clone());
            }
            for pin in &p.spki_sha256 {
                ix.by_pin.insert(*pin, p.clone());
            }
        }
        ix
    }

    /// Maps a leaf certificate (already verified by TLS) to a partner.
    pub fn identify(&self, leaf_der: &[u8]) -> Peer {
        let cert_sha256 = sha256(leaf_der);
        let partner = match X509Certificate::from_der(leaf_der) {
            Ok((_, cert)) => self.match_cert(&cert),
            Err(_) => Err(IdentityError::Unreadable),
        };
        Peer {
            partner,
            cert_sha256,
        }
    }

    fn match_cert(&self, cert: &X509Certificate<'_>) -> Result<Arc<Partner>, IdentityError> {
        let mut found: Vec<&Arc<Partner>> = Vec::new();
        let subject = cert.subject();
        for attr in subject.iter_attributes() {
            let Ok(value) = attr.as_str() else { continue };
            let oid = attr.attr_type().to_id_string();
            if oid == OID_SERIAL_NUMBER {
                found.extend(self.by_oin.get(value));
                if let Some(kvk) = kvk_of_hrn(value) {
                    found.extend(self.by_kvk.get(kvk));
                }
            } else if oid == OID_ORGANIZATION_IDENTIFIER
                && let Some(kvk) = value.strip_prefix("NTRNL-")
            {
                found.extend(self.by_kvk.get(kvk));
            }
        }
        let pin = sha256(cert.tbs_certificate.subject_pki.raw);
        found.extend(self.by_pin.get(&pin));
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        match found.as_slice() {
            [] => Err(IdentityError::UnknownPartner),
            [one] => Ok((*one).clone()),
            many => Err(IdentityError::Ambiguous(
                many.iter().map(|p| p.id.to_string()).collect(),
            )),
        }
    }
}

/// `00000003` + 8-digit KvK + `0000` → the KvK number.
fn kvk_of_hrn(oin: &str) -> Option<&str> {
    let rest = oin.strip_prefix(HRN_PREFIX)?;
    (rest.len() == 12 && rest.ends_with("0000") && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| &rest[..8])
}

/// SHA-256 of the subject public key info of a certificate: the pin format of
/// `spki_sha256` in partners.toml.
pub fn spki_sha256(cert_der: &[u8]) -> Option<[u8; 32]> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    Some(sha256(cert.tbs_certificate.subject_pki.raw))
}

/// SHA-256 as a fixed array.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrn_gives_kvk() {
        assert_eq!(kvk_of_hrn("00000003123456780000"), Some("12345678"));
        assert_eq!(kvk_of_hrn("00000003123456781234"), None);
        assert_eq!(kvk_of_hrn("00000001123456780000"), None);
    }
}

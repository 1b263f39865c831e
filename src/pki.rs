//! A development PKI: a CA, the gateway's certificates, one certificate per
//! partner and a CRL, so that the gateway can run end to end on one machine.
//!
//! Production uses PKIoverheid certificates (see certs/README.md); nothing here
//! is meant for it. The same [`Ca`] also mints the certificates of the tests, so
//! test and development certificates are made by one program, never edited by
//! hand.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ::time::{Duration, OffsetDateTime};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use crate::config::GatewayConfig;
use crate::identity::spki_sha256;
use crate::policy::partners::{Partner, Partners};

/// Why a PKI step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds something unusable.
    #[error("{file}: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The partners or gateway config is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// No such partner.
    #[error("no partner '{0}' in partners.toml")]
    UnknownPartner(String),
}

fn io(file: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        file: file.to_path_buf(),
        source,
    }
}

/// OID of the subject serialNumber attribute (the OIN in PKIoverheid).
const SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];
/// OID of organizationIdentifier (`NTRNL-<KvK>`).
const ORGANIZATION_IDENTIFIER: [u64; 4] = [2, 5, 4, 97];

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS client (a partner, or the gateway calling a back-end).
    Client,
    /// TLS server (the gateway, a back-end).
    Server,
}

/// What goes into one leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Subject CN.
    pub common_name: String,
    /// Subject O.
    pub organization: Option<String>,
    /// Subject serialNumber: an OIN for PKIoverheid-style certificates.
    pub serial_number: Option<String>,
    /// Subject organizationIdentifier (`NTRNL-<KvK>`).
    pub organization_identifier: Option<String>,
    /// Client or server.
    pub usage: Usage,
    /// DNS names and IP addresses (server certificates).
    pub sans: Vec<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// CRL distribution points (http URLs of its issuer's CRL).
    pub crl_urls: Vec<String>,
}

impl LeafSpec {
    /// A client certificate valid from yesterday for a year.
    pub fn client(common_name: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.into(),
            organization: None,
            serial_number: None,
            organization_identifier: None,
            usage: Usage::Client,
            sans: Vec::new(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(365),
            crl_urls: Vec::new(),
        }
    }

    /// A server certificate for these names, valid from yesterday for a year.
    pub fn server(common_name: &str, sans: &[&str]) -> Self {
        Self {
            usage: Usage::Server,
            sans: sans.iter().map(|s| s.to_string()).collect(),
            ..Self::client(common_name)
        }
    }

    /// The client certificate a partner would hold: OIN in serialNumber, KvK as
    /// organizationIdentifier, or neither (then it is recognised by its key pin).
    pub fn for_partner(p: &Partner) -> Self {
        Self {
            organization: Some(p.name.clone()),
            serial_number: p.oin.clone(),
            organization_identifier: p.kvk.as_ref().map(|k| format!("NTRNL-{k}")),
            ..Self::client(&p.name)
        }
    }
}

/// A certificate with its key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// The certificate's serial number, for revocation.
    pub serial: Vec<u8>,
    /// SHA-256 of its subject public key info: the pin of partners.toml.
    pub spki_sha256: [u8; 32],
}

/// A certificate authority that can issue leaves and CRLs.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate.
    pub cert_pem: String,
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    // The system RNG failing is not something a PKI tool can work around.
    SystemRandom::new()
        .fill(&mut b)
        .expect("system random number generator");
    b[0] = (b[0] & 0x7f) | 0x01; // positive and of full length
    SerialNumber::from_slice(&b)
}

/// A development CA's certificate parameters: `path_len` levels of CAs
/// below it, valid from yesterday for `days`.
fn ca_params(name: &str, path_len: u8, days: i64) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ketenpoort development");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
    params.serial_number = Some(random_serial());
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

impl Ca {
    /// A new self-signed CA.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        // One level of intermediates below it, as in PKIoverheid.
        let params = ca_params(name, 1, 3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An intermediate CA under this one; `crl_urls` say where this CA's
    /// CRL (which would revoke the intermediate) is published.
    pub fn intermediate(&self, name: &str, crl_urls: &[String]) -> Result<Self, PkiError> {
        let mut params = ca_params(name, 0, 1825);
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = crl_points(crl_urls);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An existing CA from its certificate and key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// The CA's private key.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a leaf certificate with a fresh key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(spec.sans.clone())?;
        let dn = &mut params.distinguished_name;
        *dn = rcgen::DistinguishedName::new();
        dn.push(DnType::CommonName, spec.common_name.as_str());
        if let Some(o) = &spec.organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        if let Some(sn) = &spec.serial_number {
            dn.push(
                DnType::CustomDnType(SERIAL_NUMBER.to_vec()),
                DnValue::PrintableString(sn.as_str().try_into()?),
            );
        }
        if let Some(oi) = &spec.organization_identifier {
            dn.push(
                DnType::CustomDnType(ORGANIZATION_IDENTIFIER.to_vec()),
                oi.as_str(),
            );
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match spec.usage {
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.crl_distribution_points = crl_points(&spec.crl_urls);
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let pin = spki_sha256(cert.der()).ok_or_else(|| PkiError::Invalid {
            file: PathBuf::from("<generated>"),
            reason: "generated certificate does not parse".into(),
        })?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: serial.to_bytes(),
            spki_sha256: pin,
        })
    }

    /// A CRL listing these serial numbers, valid for a year.
    pub fn crl(&self, revoked: &[Vec<u8>]) -> Result<String, PkiError> {
        self.crl_until(revoked, OffsetDateTime::now_utc() + Duration::days(365))
    }

    /// A CRL like [`Ca::crl`] whose nextUpdate is `next_update` (tests of
    /// a CRL that was not renewed in time use one in the past).
    pub fn crl_until(
        &self,
        revoked: &[Vec<u8>],
        next_update: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let this_update = (now - Duration::minutes(1)).min(next_update - Duration::hours(1));
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: this_update,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

fn crl_points(urls: &[String]) -> Vec<rcgen::CrlDistributionPoint> {
    if urls.is_empty() {
        return Vec::new();
    }
    vec![rcgen::CrlDistributionPoint {
        uris: urls.to_vec(),
    }]
}

/// [`crate::datadir::write_atomic`], with the PKI's error.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    crate::datadir::write_atomic(path, contents, mode).map_err(io(path))
}

/// What `pki init` made.
#[derive(Debug)]
pub struct InitReport {
    /// The folder it wrote.
    pub dir: PathBuf,
    /// Files written, in order.
    pub files: Vec<PathBuf>,
    /// Partners recognised by key pin, whose pins were written into partners.toml.
    pub pinned: Vec<String>,
    /// Pilots whose covenant every partner signed with its development key.
    pub signed: Vec<String>,
}

/// Makes the development PKI in the config's `pki.dev_dir`: CA, gateway server
/// and client certificates, one certificate per partner, an empty CRL. Partners
/// recognised only by a key pin get their new pin written into partners.toml.
/// Then every partner signs the covenant of each pilot it is a party to, as it
/// stands in the files, with its development key; the signatures wait in the
/// data directory's covenant inbox, where the gateway takes them at start
/// (checked like any other), so a fresh checkout runs as before.
pub fn init(config: &GatewayConfig) -> Result<InitReport, PkiError> {
    let partners = Partners::load(&config.partners_file)?;
    let dir = config.dev_pki_dir.clone();
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
    let mut files = Vec::new();
    let mut put = |name: &str, contents: &str, mode: u32| -> Result<(), PkiError> {
        let path = dir.join(name);
        write_atomic(&path, contents.as_bytes(), mode)?;
        files.push(path);
        Ok(())
    };

    let ca = Ca::generate("ketenpoort development CA")?;
    put("ca.crt", &ca.cert_pem, 0o644)?;
    put("ca.key", &ca.key_pem(), 0o600)?;

    let server = ca.issue(&LeafSpec::server(
        "ketenpoort gateway",
        &["localhost", "127.0.0.1", "::1"],
    ))?;
    put("gateway.crt", &server.cert_pem, 0o644)?;
    put("gateway.key", &server.key_pem, 0o600)?;
    let client = ca.issue(&LeafSpec {
        organization: Some("ketenpoort".into()),
        ..LeafSpec::client("ketenpoort gateway client")
    })?;
    put("gateway-client.crt", &client.cert_pem, 0o644)?;
    put("gateway-client.key", &client.key_pem, 0o600)?;

    let mut pins = Vec::new();
    let mut keys = std::collections::HashMap::new();
    for p in &partners.list {
        let issued = ca.issue(&LeafSpec::for_partner(p))?;
        keys.insert(p.id.to_string(), issued.clone());
        put(&format!("{}.crt", p.id), &issued.cert_pem, 0o644)?;
        put(&format!("{}.key", p.id), &issued.key_pem, 0o600)?;
        if p.oin.is_none() && p.kvk.is_none() {
            pins.push((p.id.to_string(), issued.spki_sha256));
        }
    }
    put("crl.pem", &ca.crl(&[])?, 0o644)?;
    if !pins.is_empty() {
        write_pins(&config.partners_file, &pins)?;
    }
    let signed = sign_pilots(config, &keys)?;
    Ok(InitReport {
        dir,
        files,
        pinned: pins.into_iter().map(|(id, _)| id).collect(),
        signed,
    })
}

/// Every partner with a key here accepts the covenant of each pilot it is a
/// party to, into the data directory's covenant inbox; the pilots signed.
pub fn sign_pilots(
    config: &GatewayConfig,
    keys: &std::collections::HashMap<String, Issued>,
) -> Result<Vec<String>, PkiError> {
    if !config.pilots_dir.is_dir() {
        return Ok(Vec::new());
    }
    let set = crate::policy::PolicySet::load(&config.partners_file, &config.pilots_dir)?;
    let mut signed = Vec::new();
    for pilot in set.pilots.values() {
        let payload = crate::covenant::jws::acceptance(&pilot.id, &pilot.covenant_version);
        for partner in &pilot.partners {
            let Some(k) = keys.get(partner) else { continue };
            let jws =
                crate::covenant::jws::sign_pem(&payload, &k.cert_pem, &k.key_pem).map_err(|e| {
                    PkiError::Invalid {
                        file: config.pilots_dir.join(format!("{}.toml", pilot.id)),
                        reason: e.to_string(),
                    }
                })?;
            let name = format!(
                "{}-{}-{}",
                pilot.id,
                &crate::policy::terms::version_hex(&pilot.covenant_version)[..12],
                partner
            );
            let inbox = crate::covenant::store::inbox_dir(&config.data_dir);
            crate::covenant::store::drop_in_inbox(&config.data_dir, &name, &jws)
                .map_err(io(&inbox))?;
        }
        signed.push(pilot.id.to_string());
    }
    Ok(signed)
}

/// Replaces `spki_sha256` of the named partners in partners.toml, keeping the
/// rest of the file (comments, order) as it is.
fn write_pins(file: &Path, pins: &[(String, [u8; 32])]) -> Result<(), PkiError> {
    let text = fs::read_to_string(file).map_err(io(file))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| PkiError::Invalid {
                file: file.to_path_buf(),
                reason: e.to_string(),
            })?;
    if let Some(list) = doc
        .get_mut("partner")
        .and_then(|p| p.as_array_of_tables_mut())
    {
        for table in list.iter_mut() {
            let Some(id) = table.get("id").and_then(|v| v.as_str()).map(String::from) else {
                continue;
            };
            if let Some((_, pin)) = pins.iter().find(|(p, _)| *p == id) {
                let mut arr = toml_edit::Array::new();
                arr.push(hex::encode(pin));
                table["spki_sha256"] = toml_edit::value(arr);
            }
        }
    }
    write_atomic(file, doc.to_string().as_bytes(), 0o644)?;
    // The rewritten file must still be a valid partners file.
    Partners::load(file)?;
    Ok(())
}

/// Adds a partner's development certificate to the CRL. The running gateway
/// picks the new CRL up by itself.
pub fn revoke(config: &GatewayConfig, partner_id: &str) -> Result<PathBuf, PkiError> {
    let partners = Partners::load(&config.partners_file)?;
    if partners.get(partner_id).is_none() {
        return Err(PkiError::UnknownPartner(partner_id.into()));
    }
    let dir = &config.dev_pki_dir;
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(io(&path))
    };
    let ca = Ca::load(&read("ca.crt")?, &read("ca.key")?)?;
    let cert_file = dir.join(format!("{partner_id}.crt"));
    let serial = serial_of(&cert_file, &read(&format!("{partner_id}.crt"))?)?;
    let crl_file = dir.join("crl.pem");
    let mut revoked = match fs::read_to_string(&crl_file) {
        Ok(pem) => revoked_serials(&crl_file, &pem)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&crl_file)(e)),
    };
    if !revoked.contains(&serial) {
        revoked.push(serial);
    }
    write_atomic(&crl_file, ca.crl(&revoked)?.as_bytes(), 0o644)?;
    Ok(crl_file)
}

fn pem_der(file: &Path, pem: &str, label: &str) -> Result<Vec<u8>, PkiError> {
    let invalid = |reason: String| PkiError::Invalid {
        file: file.to_path_buf(),
        reason,
    };
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    if p.label != label {
        return Err(invalid(format!("expected a {label}, found {}", p.label)));
    }
    Ok(p.contents)
}

fn serial_of(file: &Path, pem: &str) -> Result<Vec<u8>, PkiError> {
    let der = pem_der(file, pem, "CERTIFICATE")?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| PkiError::Invalid {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(strip_sign_byte(cert.raw_serial()))
}

fn revoked_serials(file: &Path, pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let der = pem_der(file, pem, "X509 CRL")?;
    let (_, crl) = CertificateRevocationList::from_der(&der).map_err(|e| PkiError::Invalid {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| strip_sign_byte(r.raw_serial()))
        .collect())
}

/// DER integers carry a leading zero when the top bit is set; rcgen adds it
/// back, so compare serials without it.
fn strip_sign_byte(b: &[u8]) -> Vec<u8> {
    match b {
        [0, rest @ ..] if !rest.is_empty() && rest[0] & 0x80 != 0 => rest.to_vec(),
        _ => b.to_vec(),
    }
}

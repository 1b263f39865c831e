//! The partners of the chain and how the gateway recognises them
//! (`partners.toml`): each partner's certificate identifiers and, for a
//! partner that holds data, the services it offers with their declared
//! fields. It lives with the policy because the declared fields are the
//! schema every rule is checked and minimised against.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::text::Text;

use serde::Deserialize;
use toml::Spanned;

use super::service::Service;
use crate::config::{ConfigError, Source, valid_id};

/// The name the gateway's own records carry as sender or recipient; never
/// a partner's id.
pub const GATEWAY_ID: &str = "ketenpoort";

/// A partner id: lowercase letters, digits and '-', and not the gateway's
/// own name, which is the sender or recipient of its own records
/// (officers' look-ups, strangers' refusals, retention): a partner of that
/// name would be party to all of them.
fn check_id(src: &Source, id: &Spanned<String>) -> Result<(), ConfigError> {
    let v = id.get_ref();
    if !valid_id(v) {
        return Err(src.error(
            id,
            format!("partner id '{v}' must be lowercase letters, digits and '-'"),
        ));
    }
    if v == GATEWAY_ID {
        return Err(src.error(
            id,
            format!("partner id '{v}' is the gateway's own name in the log"),
        ));
    }
    Ok(())
}

/// What sort of organisation a partner is; it shapes what the covenants let it see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerKind {
    /// A pilot city's municipality.
    Municipality,
    /// A national chain partner: DT&V, IND, AVIM, COA, DJI.
    Chain,
    /// A guiding NGO.
    Ngo,
    /// The independent monitoring researchers.
    Research,
    /// The national programme office.
    Programme,
}

impl PartnerKind {
    /// The word used in the config file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Municipality => "municipality",
            Self::Chain => "chain",
            Self::Ngo => "ngo",
            Self::Research => "research",
            Self::Programme => "programme",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartners {
    #[serde(default)]
    partner: Vec<RawPartner>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartner {
    id: Spanned<String>,
    name: Spanned<String>,
    kind: PartnerKind,
    #[serde(default)]
    oin: Option<Spanned<String>>,
    #[serde(default)]
    kvk: Option<Spanned<String>>,
    #[serde(default)]
    spki_sha256: Vec<Spanned<String>>,
    #[serde(default)]
    backend: Option<Spanned<String>>,
    #[serde(default)]
    mailbox: bool,
    #[serde(default)]
    service: Vec<crate::policy::service::RawService>,
}

/// One chain partner and the ways its certificate is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// Stable id used in policies, audit records and the API (`dtv`, `gemeente-utrecht`).
    pub id: Text,
    /// The id as the `Ketenpoort-Consumer` header a call to a back-end
    /// carries: made once here rather than copied per request.
    pub id_header: hyper::header::HeaderValue,
    /// The organisation's name, for people.
    pub name: String,
    /// What kind of organisation it is.
    pub kind: PartnerKind,
    /// OIN (20 digits), matched against a PKIoverheid certificate's subject serialNumber.
    pub oin: Option<String>,
    /// KvK number (8 digits), matched against an HRN-derived OIN
    /// (`00000003<kvk>0000`) or an `organizationIdentifier` of `NTRNL-<kvk>`.
    pub kvk: Option<String>,
    /// SHA-256 pins of the subject public key info, for partners without PKIoverheid.
    pub spki_sha256: Vec<[u8; 32]>,
    /// The partner's back-end, if it has one.
    pub backend: Option<Backend>,
    /// No back-end: documents sent to this partner wait in its gateway mailbox.
    pub mailbox: bool,
    /// The services it offers, by name.
    pub services: Vec<Arc<Service>>,
}

impl Partner {
    /// Whether a covenant's list of partner ids names this partner.
    pub fn named_in(&self, ids: &[String]) -> bool {
        ids.iter().any(|id| *id == *self.id)
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// All partners, by id, as read from `partners.toml`.
#[derive(Debug, Clone, Default)]
pub struct Partners {
    /// The file they were read from.
    pub file: PathBuf,
    /// In file order, so listings read like the file.
    pub list: Vec<Arc<Partner>>,
    by_id: HashMap<String, usize>,
}

/// A partner's back-end, as calls to it are addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its base URL (`https://host[:port]`).
    pub url: String,
    /// The `Host` header a call carries (`host[:port]`, without the default
    /// port, as the HTTP client wrote it): made once here rather than
    /// formatted by the client per request.
    pub host: hyper::header::HeaderValue,
}

impl Backend {
    /// Checks `backend = "..."` of a partner (`mailbox`: it has none).
    fn parse(src: &Source, b: &Spanned<String>, mailbox: bool) -> Result<Self, ConfigError> {
        if mailbox {
            return Err(src.error(
                b,
                "a mailbox partner has no back-end; remove one of the two",
            ));
        }
        let url = b.get_ref();
        url.strip_prefix("https://")
            .filter(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', '@']))
            .map(|h| h.strip_suffix(":443").unwrap_or(h))
            .and_then(|h| hyper::header::HeaderValue::from_str(h).ok())
            .map(|host| Self {
                url: url.clone(),
                host,
            })
            .ok_or_else(|| {
                src.error(
                    b,
                    format!("backend '{url}' must be https://host[:port], without a path"),
                )
            })
    }
}

fn all_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

impl Partners {
    /// Reads and checks `partners.toml`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let src = Source::read(file)?;
        Self::from_source(&src)
    }

    /// Checks a partners file already in memory.
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let raw: RawPartners = src.parse()?;
        let mut out = Partners {
            file: src.file.clone(),
            ..Default::default()
        };
        // Each recognition key must lead to one partner, or a certificate could
        // be taken for two organisations.
        let mut keys: HashMap<String, String> = HashMap::new();
        let mut claim = |key: String, at: &Spanned<String>, id: &str| -> Result<(), ConfigError> {
            if let Some(other) = keys.insert(key, id.to_string()) {
                return Err(src.error(at, format!("already used by partner '{other}'")));
            }
            Ok(())
        };
        for p in raw.partner {
            let id = p.id.get_ref().clone();
            check_id(src, &p.id)?;
            if out.by_id.contains_key(&id) {
                return Err(src.error(&p.id, format!("partner '{id}' is defined twice")));
            }
            if p.name.get_ref().trim().is_empty() {
                return Err(src.error(&p.name, "name is empty"));
            }
            if let Some(oin) = &p.oin {
                if !all_digits(oin.get_ref(), 20) {
                    return Err(src.error(oin, "oin must be exactly 20 digits"));
                }
                claim(format!("oin:{}", oin.get_ref()), oin, &id)?;
            }
            if let Some(kvk) = &p.kvk {
                if !all_digits(kvk.get_ref(), 8) {
                    return Err(src.error(kvk, "kvk must be exactly 8 digits"));
                }
                claim(format!("kvk:{}", kvk.get_ref()), kvk, &id)?;
            }
            let mut pins = Vec::new();
            for pin in &p.spki_sha256 {
                let mut b = [0u8; 32];
                hex::decode_to_slice(pin.get_ref(), &mut b).map_err(|_| {
                    src.error(
                        pin,
                        "spki_sha256 must be 64 hex digits (SHA-256 of the public key info)",
                    )
                })?;
                claim(format!("pin:{}", hex::encode(b)), pin, &id)?;
                pins.push(b);
            }
            if p.oin.is_none() && p.kvk.is_none() && pins.is_empty() {
                return Err(src.error(
                    &p.id,
                    format!("partner '{id}' has no oin, kvk or spki_sha256: its certificate could never be recognised"),
                ));
            }
            let backend = match &p.backend {
                Some(b) => Some(Backend::parse(src, b, p.mailbox)?),
                None => None,
            };
            let mut services: Vec<Arc<Service>> = Vec::new();
            for raw in p.service {
                let svc = Service::from_raw(src, &id, p.mailbox, raw)?;
                if services.iter().any(|s| s.name == svc.name) {
                    return Err(src.error_whole(format!(
                        "partner '{id}' declares service '{}' twice",
                        svc.name
                    )));
                }
                services.push(Arc::new(svc));
            }
            if !services.is_empty() && backend.is_none() && !p.mailbox {
                return Err(src.error(
                    &p.id,
                    format!(
                        "partner '{id}' offers services but has no backend (or mailbox = true)"
                    ),
                ));
            }
            out.by_id.insert(id.clone(), out.list.len());
            let id_header = hyper::header::HeaderValue::from_str(&id).map_err(|_| {
                src.error(&p.id, format!("partner id '{id}' cannot be a header value"))
            })?;
            out.list.push(Arc::new(Partner {
                id: id.into(),
                id_header,
                name: p.name.into_inner(),
                kind: p.kind,
                oin: p.oin.map(Spanned::into_inner),
                kvk: p.kvk.map(Spanned::into_inner),
                spki_sha256: pins,
                backend,
                mailbox: p.mailbox,
                services,
            }));
        }
        Ok(out)
    }

    /// The partner with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Partner>> {
        self.by_id.get(id).map(|&i| &self.list[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partners(text: &str) -> Result<Partners, ConfigError> {
        Partners::from_source(&Source {
            file: "partners.toml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn bad_oin_names_line() {
        let e = partners(
            "[[partner]]\nid = \"dtv\"\nname = \"DT&V\"\nkind = \"chain\"\noin = \"123\"\n",
        )
        .unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(5));
        assert!(e.to_string().starts_with("partners.toml:5:"), "{e}");
        assert!(e.reason.contains("20 digits"));
    }

    #[test]
    fn duplicate_id_and_shared_oin_are_refused() {
        let p = |id: &str, oin: &str| {
            format!("[[partner]]\nid = \"{id}\"\nname = \"X\"\nkind = \"chain\"\noin = \"{oin}\"\n")
        };
        let e = partners(&(p("a", &"1".repeat(20)) + &p("a", &"2".repeat(20)))).unwrap_err();
        assert!(e.reason.contains("defined twice"), "{e}");
        assert_eq!(e.at.map(|a| a.0), Some(7));
        let e = partners(&(p("a", &"1".repeat(20)) + &p("b", &"1".repeat(20)))).unwrap_err();
        assert!(e.reason.contains("already used by partner 'a'"), "{e}");
    }

    #[test]
    fn the_backend_host_is_its_authority_without_the_default_port() {
        let host = |url: &str| {
            let p = partners(&format!(
                "[[partner]]\nid = \"a\"\nname = \"X\"\nkind = \"chain\"\noin = \"{}\"\nbackend = \"{url}\"\n",
                "1".repeat(20)
            ))
            .unwrap();
            let h = p.get("a").unwrap().backend.clone().unwrap().host;
            h.to_str().unwrap().to_string()
        };
        assert_eq!(host("https://dtv.example:8443"), "dtv.example:8443");
        assert_eq!(host("https://dtv.example:443"), "dtv.example");
        assert_eq!(host("https://dtv.example"), "dtv.example");
    }

    #[test]
    fn the_consumer_header_is_the_id() {
        let p = partners(&format!(
            "[[partner]]\nid = \"gemeente-utrecht\"\nname = \"X\"\nkind = \"chain\"\noin = \"{}\"\n",
            "1".repeat(20)
        ))
        .unwrap();
        let p = p.get("gemeente-utrecht").unwrap();
        assert_eq!(p.id_header.as_bytes(), p.id.as_bytes());
    }

    #[test]
    fn unknown_kind_and_unknown_key_are_located() {
        let e = partners("[[partner]]\nid = \"a\"\nname = \"X\"\nkind = \"bank\"\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(4), "{e}");
        let e = partners("[[partner]]\nid = \"a\"\nname = \"X\"\nkind = \"ngo\"\nion = \"1\"\n")
            .unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(5), "{e}");
    }

    #[test]
    fn partner_needs_a_recognition_key() {
        let e = partners("[[partner]]\nid = \"a\"\nname = \"X\"\nkind = \"ngo\"\n").unwrap_err();
        assert!(e.reason.contains("never be recognised"), "{e}");
        let e = partners(
            "[[partner]]\nid = \"a\"\nname = \"X\"\nkind = \"ngo\"\nspki_sha256 = [\"zz\"]\n",
        )
        .unwrap_err();
        assert!(e.reason.contains("64 hex"), "{e}");
    }
}

//! `[console]` of `ketenpoort.toml`: which CA personal certificates come
//! from, how long an idle session lasts, and the organisations' identity
//! providers officers and administrators may log in through
//! (`[[console.oidc]]`).
//!
//! Apart from the rest of the file because the identity providers alone are
//! a page of settings; the errors are made by the caller (who holds the
//! file's text), so this module needs nothing of its parent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The idle timeout of a console session without `session_idle_secs`.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(900);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    #[serde(default)]
    pub(super) client_ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) client_crls: Vec<PathBuf>,
    #[serde(default)]
    session_idle_secs: Option<Spanned<u64>>,
    #[serde(default)]
    oidc: Vec<RawOidc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    name: Spanned<String>,
    #[serde(default)]
    title: Option<String>,
    issuer: Spanned<String>,
    client_id: String,
    client_secret_file: PathBuf,
    #[serde(default)]
    redirect_uri: Option<Spanned<String>>,
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    role_claim: String,
    #[serde(default)]
    partner_claim: Option<String>,
    #[serde(default)]
    pilot_claim: Option<String>,
    #[serde(default)]
    name_claim: Option<String>,
    #[serde(default)]
    partners: Vec<String>,
    #[serde(default)]
    pilots: Vec<String>,
}

/// `[console]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// The identity providers, in the order of the file.
    pub oidc: Vec<OidcProvider>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            session_idle: DEFAULT_SESSION_IDLE,
            oidc: Vec::new(),
        }
    }
}

/// One `[[console.oidc]]`: an organisation's OpenID Connect provider, and
/// which of its ID token's claims say what a person may do here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// Short name, in `/login/oidc/<name>` and in user names (`<name>:<sub>`).
    pub name: String,
    /// What the login page calls it.
    pub title: String,
    /// The issuer, exactly as its discovery document and ID tokens name it.
    pub issuer: String,
    /// The gateway's client id at the provider.
    pub client_id: String,
    /// The file holding the client secret (read when needed, never logged).
    pub client_secret_file: PathBuf,
    /// Where the provider sends the browser back; without it, the console's
    /// own address as the browser reached it, `/login/oidc/callback`.
    pub redirect_uri: Option<String>,
    /// The CA of the provider's HTTPS certificate; without it, the trust
    /// anchors.
    pub ca: Option<PathBuf>,
    /// Scopes asked for; `openid` always among them.
    pub scopes: Vec<String>,
    /// The claim holding the role (`privacy-officer` or `policy-admin`; a
    /// list of values, such as groups, is searched for one of them).
    pub role_claim: String,
    /// The claim holding an officer's partner: when set, an officer without
    /// it is refused (never silently unbound, which would show every
    /// partner's records).
    pub partner_claim: Option<String>,
    /// The claim holding an administrator's pilot, likewise.
    pub pilot_claim: Option<String>,
    /// The claim that names the person in the console (`sub` by default).
    pub name_claim: String,
    /// The partners whose privacy officers this provider may vouch for
    /// (`partners`): an organisation's provider speaks for its own people,
    /// not for another partner's. Empty: it logs in no officer.
    pub partners: Vec<String>,
    /// The pilots whose administrators it may vouch for (`pilots`),
    /// likewise. A provider never logs in an unbound officer or
    /// administrator: those see or change every partner's and pilot's.
    pub pilots: Vec<String>,
}

/// Whether a URL may be used to reach an identity provider: HTTPS, or
/// plain HTTP to this machine only (a developer's provider).
pub fn acceptable_url(url: &str) -> bool {
    let Ok(u) = url.parse::<hyper::Uri>() else {
        return false;
    };
    match (u.scheme_str(), u.host()) {
        (Some("https"), Some(h)) => !h.is_empty(),
        (Some("http"), Some(h)) => matches!(h, "localhost" | "127.0.0.1" | "[::1]"),
        _ => false,
    }
}

impl RawConsole {
    /// Checks the section; `resolve` makes a path absolute, `error` makes a
    /// located error from a byte offset and a reason.
    pub(super) fn check<E>(
        &self,
        resolve: impl Fn(&Path) -> PathBuf,
        error: impl Fn(usize, String) -> E,
    ) -> Result<ConsoleSettings, E> {
        let session_idle = match &self.session_idle_secs {
            None => DEFAULT_SESSION_IDLE,
            Some(v) if (1..=86_400).contains(v.get_ref()) => Duration::from_secs(*v.get_ref()),
            Some(v) => {
                return Err(error(
                    v.span().start,
                    "session_idle_secs must be between 1 and 86400".into(),
                ));
            }
        };
        let mut oidc: Vec<OidcProvider> = Vec::new();
        for o in &self.oidc {
            let name = o.name.get_ref();
            let id_like = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !id_like || oidc.iter().any(|p| p.name == *name) {
                return Err(error(
                    o.name.span().start,
                    format!("'{name}' must be unique, lowercase letters, digits and '-'"),
                ));
            }
            let issuer = o.issuer.get_ref().trim_end_matches('/').to_string();
            if !acceptable_url(&issuer) {
                return Err(error(
                    o.issuer.span().start,
                    "the issuer must be an https:// URL (http:// only to localhost)".into(),
                ));
            }
            if let Some(r) = &o.redirect_uri
                && !acceptable_url(r.get_ref())
                && !r.get_ref().starts_with("https://")
            {
                return Err(error(
                    r.span().start,
                    "redirect_uri must be an https:// URL".into(),
                ));
            }
            let mut scopes = o.scopes.clone().unwrap_or_default();
            if !scopes.iter().any(|s| s == "openid") {
                scopes.insert(0, "openid".into());
            }
            oidc.push(OidcProvider {
                name: name.clone(),
                title: o.title.clone().unwrap_or_else(|| name.clone()),
                issuer,
                client_id: o.client_id.clone(),
                client_secret_file: resolve(&o.client_secret_file),
                redirect_uri: o.redirect_uri.as_ref().map(|r| r.get_ref().clone()),
                ca: o.ca.as_deref().map(&resolve),
                scopes,
                role_claim: o.role_claim.clone(),
                partner_claim: o.partner_claim.clone(),
                pilot_claim: o.pilot_claim.clone(),
                name_claim: o.name_claim.clone().unwrap_or_else(|| "sub".into()),
                partners: o.partners.clone(),
                pilots: o.pilots.clone(),
            });
        }
        Ok(ConsoleSettings { session_idle, oidc })
    }
}

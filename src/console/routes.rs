//! The console's routes as tables: the router finds a request's operation
//! here and nowhere else, and the console's OpenAPI document
//! (`docs/console-openapi.yaml`) must list exactly [`ROUTES`] (a test checks
//! it), so a route cannot be served without being documented. The web page's
//! own files ([`STATIC`]) are no API and stay out of the document.

use hyper::Method;

/// The console API's version (API Design Rules, `/core/version-header`): the
/// console document's `info.version`, sent as `API-Version` on every console
/// answer; a test keeps the two equal.
pub const API_VERSION_VALUE: &str = "0.1.0";

/// The console API's OpenAPI document, served at `/api/v1/openapi.json`
/// (generated from docs/console-openapi.yaml by scripts/openapi-json.py).
pub const OPENAPI_JSON: &str = include_str!("../../docs/console-openapi.json");

/// Where the console API lives: the document's server URL ends in it.
pub const BASE: &str = "/api/v1";

/// What a console request asks for; the router answers each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /api/v1/openapi.json`.
    OpenApi,
    /// `GET /login`: a one-time link, or a personal certificate, opens a
    /// session.
    Login,
    /// `GET /login/providers`: the identity providers to log in with.
    LoginProviders,
    /// `GET /login/oidc/callback`: an identity provider's answer.
    OidcCallback,
    /// `GET /login/oidc/{provider}`: off to an identity provider.
    OidcStart,
    /// `GET`, `POST`, `DELETE /api/v1/session`: the session (who, its CSRF
    /// token), log in with a token or certificate, log out.
    Session,
    /// `GET /api/v1/users`: console users for the access review.
    Users,
    /// `GET /api/v1/whoami`.
    Whoami,
    /// `GET /api/v1/pilots`.
    Pilots,
    /// `GET /api/v1/pilots/{pilot}/policy`.
    Policy,
    /// `PUT /api/v1/pilots/{pilot}/policy`.
    PutPolicy,
    /// `POST /api/v1/pilots/{pilot}/policy/explain`.
    Explain,
    /// `GET /api/v1/pilots/{pilot}/history`.
    History,
    /// `GET /api/v1/pilots/{pilot}/rules`.
    RulesEditor,
    /// `POST /api/v1/pilots/{pilot}/rules`.
    RulesEdit,
    /// `GET /api/v1/pilots/{pilot}/flows.svg`.
    FlowsSvg,
    /// `GET /api/v1/pilots/{pilot}/covenant`.
    Covenant,
    /// `DELETE /api/v1/pilots/{pilot}/covenant/versions/{version}`.
    WithdrawVersion,
    /// `GET /api/v1/disclosures`.
    Disclosures,
    /// `POST /api/v1/disclosures/search`.
    Search,
    /// `GET /api/v1/disclosures/{id}/evidence`.
    Evidence,
    /// `GET /api/v1/subjects/{vnummer}/report` (deprecated).
    ReportByPath,
    /// `POST /api/v1/subjects/report`.
    Report,
    /// `GET /api/v1/registrations/checks`.
    RegistrationChecks,
    /// `GET /api/v1/audit/head`.
    AuditHead,
    /// `POST /api/v1/audit/verify`.
    Verify,
    /// `GET /api/v1/audit/verify`.
    VerifyStatus,
    /// `GET /api/v1/audit/proof`.
    Proof,
    /// `GET /api/v1/stats`.
    Stats,
    /// `GET /api/v1/figures`.
    Figures,
    /// `GET /api/v1/register`.
    Register,
}

impl Op {
    /// Whether the operation needs a console token: the document at the
    /// base of the API and the node's health and metrics do not (they carry
    /// no personal data).
    pub fn needs_token(self) -> bool {
        !matches!(
            self,
            Op::Health
                | Op::Metrics
                | Op::OpenApi
                | Op::Login
                | Op::LoginProviders
                | Op::OidcCallback
                | Op::OidcStart
                | Op::Session
        )
    }
}

/// Every route the console serves but its page files: (method, path
/// template, operation). `{name}` matches one non-empty path segment.
pub const ROUTES: &[(&str, &str, Op)] = &[
    ("GET", "/healthz", Op::Health),
    ("GET", "/metrics", Op::Metrics),
    ("GET", "/api/v1/openapi.json", Op::OpenApi),
    ("GET", "/login", Op::Login),
    ("GET", "/login/providers", Op::LoginProviders),
    // Before the template below, which would take "callback" for a name.
    ("GET", "/login/oidc/callback", Op::OidcCallback),
    ("GET", "/login/oidc/{provider}", Op::OidcStart),
    ("GET", "/api/v1/session", Op::Session),
    ("POST", "/api/v1/session", Op::Session),
    ("DELETE", "/api/v1/session", Op::Session),
    ("GET", "/api/v1/users", Op::Users),
    ("GET", "/api/v1/whoami", Op::Whoami),
    ("GET", "/api/v1/pilots", Op::Pilots),
    ("GET", "/api/v1/pilots/{pilot}/policy", Op::Policy),
    ("PUT", "/api/v1/pilots/{pilot}/policy", Op::PutPolicy),
    ("POST", "/api/v1/pilots/{pilot}/policy/explain", Op::Explain),
    ("GET", "/api/v1/pilots/{pilot}/history", Op::History),
    ("GET", "/api/v1/pilots/{pilot}/rules", Op::RulesEditor),
    ("POST", "/api/v1/pilots/{pilot}/rules", Op::RulesEdit),
    ("GET", "/api/v1/pilots/{pilot}/flows.svg", Op::FlowsSvg),
    ("GET", "/api/v1/pilots/{pilot}/covenant", Op::Covenant),
    (
        "DELETE",
        "/api/v1/pilots/{pilot}/covenant/versions/{version}",
        Op::WithdrawVersion,
    ),
    ("GET", "/api/v1/disclosures", Op::Disclosures),
    ("POST", "/api/v1/disclosures/search", Op::Search),
    ("GET", "/api/v1/disclosures/{id}/evidence", Op::Evidence),
    ("GET", "/api/v1/subjects/{vnummer}/report", Op::ReportByPath),
    ("POST", "/api/v1/subjects/report", Op::Report),
    (
        "GET",
        "/api/v1/registrations/checks",
        Op::RegistrationChecks,
    ),
    ("GET", "/api/v1/audit/head", Op::AuditHead),
    ("POST", "/api/v1/audit/verify", Op::Verify),
    ("GET", "/api/v1/audit/verify", Op::VerifyStatus),
    ("GET", "/api/v1/audit/proof", Op::Proof),
    ("GET", "/api/v1/stats", Op::Stats),
    ("GET", "/api/v1/figures", Op::Figures),
    ("GET", "/api/v1/register", Op::Register),
];

/// The page and its files, served as they are: no build step, nothing from
/// the internet. Path, content type, body.
pub const STATIC: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("page/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("page/index.html"),
    ),
    (
        "/console.css",
        "text/css; charset=utf-8",
        include_str!("page/console.css"),
    ),
    (
        "/i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("page/i18n.js"),
    ),
    (
        "/proof.js",
        "text/javascript; charset=utf-8",
        include_str!("page/proof.js"),
    ),
    (
        "/charts.js",
        "text/javascript; charset=utf-8",
        include_str!("page/charts.js"),
    ),
    (
        "/rules.js",
        "text/javascript; charset=utf-8",
        include_str!("page/rules.js"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("page/app.js"),
    ),
];

/// What the table says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// This operation, with the template's `{…}` values in order.
    Op(Op, Vec<&'a str>),
    /// The path is a route, not for this method; these methods it takes.
    Method(Vec<&'static str>),
    /// No route has this path.
    None,
}

/// The template's values when `path` fits it.
fn fit<'a>(template: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut values = Vec::new();
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(values),
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return None;
                }
                values.push(ps);
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// Finds the route of a request in [`ROUTES`].
pub fn find<'a>(method: &Method, path: &'a str) -> Found<'a> {
    let mut allowed = Vec::new();
    for (m, template, op) in ROUTES {
        if let Some(values) = fit(template, path) {
            if *m == method.as_str() {
                return Found::Op(*op, values);
            }
            allowed.push(*m);
        }
    }
    if allowed.is_empty() {
        Found::None
    } else {
        Found::Method(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fit_whole_segments_only() {
        assert_eq!(
            find(&Method::GET, "/api/v1/pilots/utrecht/policy"),
            Found::Op(Op::Policy, vec!["utrecht"])
        );
        assert_eq!(
            find(&Method::DELETE, "/api/v1/pilots/p/covenant/versions/ab"),
            Found::Op(Op::WithdrawVersion, vec!["p", "ab"])
        );
        assert_eq!(
            find(&Method::POST, "/api/v1/subjects/report"),
            Found::Op(Op::Report, vec![])
        );
        assert_eq!(
            find(&Method::PATCH, "/api/v1/pilots/p/policy"),
            Found::Method(vec!["GET", "PUT"])
        );
        for miss in [
            "/api/v1/pilots//policy",
            "/api/v1/pilots/",
            "/api/v1/pilots/p/policy/",
            "/api/v1/whoami/x",
            "/api/v1",
        ] {
            assert_eq!(find(&Method::GET, miss), Found::None, "{miss}");
        }
    }
}

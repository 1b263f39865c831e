//! `policy explain`: the decision for one exchange in words, for an
//! administrator trying a rule before it goes live (CLI and console).

use std::fmt::Write;

use serde_json::Value;

use super::decide::Query;
use super::model::Direction;
use super::store::Snapshot;

/// Why an explain question could not be asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// The service is not offered by either partner named.
    #[error("neither '{from}' nor '{to}' offers a service '{service}'")]
    NoSuchService {
        /// --from.
        from: String,
        /// --to.
        to: String,
        /// --service.
        service: String,
    },
    /// The service's provider is neither end of the exchange.
    #[error(
        "service {service} belongs to '{provider}', which is neither the sender nor the recipient"
    )]
    ProviderNotInvolved {
        /// `provider/service`.
        service: String,
        /// Its provider.
        provider: String,
    },
}

/// Explains the decision on data going from `from` to `to` through `service`
/// for `purpose` on day `today`; with `doc`, also the minimised document.
#[allow(clippy::too_many_arguments)]
pub fn explain(
    snap: &Snapshot,
    pilot: &str,
    from: &str,
    to: &str,
    service: &str,
    purpose: &str,
    today: time::Date,
    doc: Option<&Value>,
) -> Result<String, ExplainError> {
    let offers = |p: &str, s: &str| {
        snap.policy
            .partners
            .get(p)
            .is_some_and(|p| p.service(s).is_some())
    };
    let (provider, sname) = match service.split_once('/') {
        Some((p, s)) => (p.to_string(), s.to_string()),
        None if offers(from, service) => (from.to_string(), service.to_string()),
        None if offers(to, service) => (to.to_string(), service.to_string()),
        None => {
            return Err(ExplainError::NoSuchService {
                from: from.into(),
                to: to.into(),
                service: service.into(),
            });
        }
    };
    let (direction, consumer) = if provider == from {
        (Direction::Response, to)
    } else if provider == to {
        (Direction::Request, from)
    } else {
        return Err(ExplainError::ProviderNotInvolved {
            service: format!("{provider}/{sname}"),
            provider,
        });
    };
    let q = Query {
        pilot,
        consumer,
        provider: &provider,
        service: &sname,
        purpose,
        today,
        call: None,
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{from} → {to} via {provider}/{sname} ({}: {}), pilot {pilot}, purpose {purpose}, on {today}",
        direction.as_str(),
        match direction {
            Direction::Request => "what the caller sends",
            Direction::Response => "what the provider answers",
        }
    );
    let grant = match snap.policy.authorise(&q) {
        Err(r) => {
            let _ = writeln!(out, "REFUSED ({}): {}", r.reason.code(), r.detail);
            return Ok(out);
        }
        Ok(g) => g,
    };
    let _ = writeln!(
        out,
        "ALLOWED by rule {} (policy {})",
        grant.rule.id, grant.pilot.version
    );
    let _ = writeln!(
        out,
        "  covenant:    {} {}",
        grant.pilot.covenant.id, grant.pilot.covenant.version
    );
    let _ = writeln!(out, "  legal basis: {}", grant.purpose.legal_basis);
    let _ = writeln!(out, "  retention:   {} days", grant.purpose.retention_days);
    let allowed = grant.rule.allowed(direction);
    if allowed.is_empty() {
        let _ = writeln!(
            out,
            "  fields:      none in this direction (everything is withheld)"
        );
    } else {
        let _ = writeln!(out, "  fields:");
        for p in allowed {
            let cats: Vec<_> = grant
                .rule
                .service
                .categories_of(p)
                .iter()
                .map(|c| c.as_str())
                .collect();
            let t = grant
                .rule
                .transform_of(p)
                .map(|t| format!(", {t}"))
                .unwrap_or_default();
            let _ = writeln!(out, "    {p} [{}{t}]", cats.join(", "));
        }
    }
    if let Some(doc) = doc {
        let m = grant.minimise(direction, doc, &snap.keys);
        let _ = writeln!(out, "disclosed: {}", list(&m.disclosed));
        let _ = writeln!(out, "withheld:  {}", list(&m.withheld));
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&m.value).unwrap_or_default()
        );
    }
    Ok(out)
}

fn list(v: &[crate::text::Text]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

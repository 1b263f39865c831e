//! The LVV figures for privacy officers: the same table the programme's
//! figures readers get over the partner API ([`crate::figures`]), small
//! cells suppressed the same way, so an officer sees what the programme
//! sees and never a list of people. An officer bound to a partner sees the
//! pilots that partner signed.

use std::collections::HashMap;

use hyper::Response;

use super::reply::{forbidden, json_ok};
use super::users::{Role, User};
use crate::figures;
use crate::gateway::{Body, Gateway};
use crate::problem::{self, Problem};

/// `GET /api/v1/figures?pilot=P&from=YYYY-MM&to=YYYY-MM`.
pub async fn get(gw: &Gateway, user: &User, q: &HashMap<String, String>) -> Response<Body> {
    if user.role != Role::PrivacyOfficer {
        return forbidden("the figures are for privacy officers").response();
    }
    let query = ["pilot", "from", "to"]
        .iter()
        .filter_map(|k| q.get(*k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join("&");
    let ask = match figures::ask(Some(&query)) {
        Ok(a) => a,
        Err(e) => return Problem::new(problem::INVALID_FIGURES_QUERY, &e).response(),
    };
    let snap = gw.policy.current();
    let Some(pilot) = snap.policy.pilots.get(&ask.pilot) else {
        return problem::respond(problem::UNKNOWN_PILOT, format!("no pilot '{}'", ask.pilot));
    };
    if let Some(own) = &user.partner
        && !pilot.partners.contains(own)
    {
        return forbidden("your partner did not sign this pilot's covenant").response();
    }
    let Some(reg) = &pilot.registration else {
        return problem::respond(
            problem::NO_RULE,
            "this pilot keeps no registration of stays",
        );
    };
    let registry = gw.registry.clone();
    let reasons = reg.end_reasons.clone();
    match tokio::task::spawn_blocking(move || figures::of_registry(&registry, &ask, &reasons)).await
    {
        Ok(Ok(f)) => json_ok(&serde_json::to_value(&f).unwrap_or_default()),
        _ => problem::respond(problem::REGISTRY_UNAVAILABLE, "the registry cannot be read"),
    }
}

/// Most records one registration-checks request reads.
const CHECKS_SCAN_MAX: usize = 200_000;

/// One partner's row of the registration figures.
#[derive(Debug, Default, serde::Serialize)]
struct CheckRow {
    /// "Already in an LVV?" checks answered.
    checks: u64,
    /// Checks refused for going over the pilot's limit per minute.
    refused_limit: u64,
    /// Registry calls refused for any other reason (not a checker, a wrong
    /// purpose, ...).
    refused_other: u64,
    /// Stays registered.
    registrations: u64,
    /// Stays ended.
    endings: u64,
}

/// `GET /api/v1/registrations/checks?pilot=P&since=D&until=D`: per partner,
/// how often it asked "already in an LVV?", how often it was refused for
/// asking too often (someone walking through V-nummers shows here), and its
/// registrations and endings. Counts of organisations' calls, from the
/// audit log's registry records: never a list of people.
pub async fn checks(gw: &Gateway, user: &User, q: &HashMap<String, String>) -> Response<Body> {
    use crate::audit::record::parse_time;
    use crate::audit::{Decision, Filter};
    use crate::exchange::registration::SERVICE;
    if user.role != Role::PrivacyOfficer {
        return forbidden("the figures are for privacy officers").response();
    }
    let snap = gw.policy.current();
    // The pilots this officer may see: those its partner signed.
    let visible: Vec<String> = snap
        .policy
        .pilots
        .values()
        .filter(|p| {
            user.partner
                .as_ref()
                .is_none_or(|own| p.partners.contains(own))
        })
        .filter(|p| q.get("pilot").is_none_or(|want| *want == p.id))
        .map(|p| p.id.to_string())
        .collect();
    if let Some(want) = q.get("pilot")
        && visible.is_empty()
    {
        return if snap.policy.pilots.contains_key(want) {
            forbidden("your partner did not sign this pilot's covenant").response()
        } else {
            problem::respond(problem::UNKNOWN_PILOT, format!("no pilot '{want}'"))
        };
    }
    let mut times = [None, None];
    for (i, k) in ["since", "until"].iter().enumerate() {
        if let Some(t) = q.get(*k) {
            match parse_time(t) {
                Some(m) => times[i] = Some(m),
                None => {
                    return Problem::new(problem::BAD_QUERY, "times are YYYY-MM-DD or RFC 3339")
                        .response();
                }
            }
        }
    }
    if let (Some(u), Some(t)) = (times[1].as_mut(), q.get("until"))
        && t.len() == 10
    {
        *u += 86_400_000_000 - 1;
    }
    let view = gw.audit.view().clone();
    let service = format!("ketenpoort/{SERVICE}");
    let counted = tokio::task::spawn_blocking(move || {
        let mut rows: std::collections::BTreeMap<String, CheckRow> = Default::default();
        let mut seen = 0usize;
        for pilot in &visible {
            let mut f = Filter {
                pilot: Some(pilot.clone()),
                since: times[0],
                until: times[1],
                limit: crate::audit::store::MAX_PAGE,
                ..Filter::default()
            };
            loop {
                let page = view.query(&f)?;
                seen += page.records.len();
                for r in page.records.iter().filter(|r| r.entry.service == service) {
                    let e = &r.entry;
                    let who = if e.sender == "ketenpoort" {
                        &e.recipient
                    } else {
                        &e.sender
                    };
                    let row = rows.entry(who.to_string()).or_default();
                    match (e.decision, e.disclosed.first().map(|t| t.as_str())) {
                        (Decision::Refused, _) if e.reason == problem::TOO_MANY_CHECKS.slug => {
                            row.refused_limit += 1;
                        }
                        (Decision::Refused, _) => row.refused_other += 1,
                        (_, Some("since")) => row.registrations += 1,
                        (_, Some("reason")) => row.endings += 1,
                        _ => row.checks += 1,
                    }
                }
                match page.next {
                    Some(n) if seen < CHECKS_SCAN_MAX => f.before = Some(n),
                    _ => break,
                }
            }
        }
        Ok::<_, crate::audit::AuditError>((rows, seen < CHECKS_SCAN_MAX))
    })
    .await;
    let Ok(Ok((rows, complete))) = counted else {
        return problem::respond(problem::INTERNAL, "the audit log could not be read");
    };
    let name = |id: &str| {
        snap.policy
            .partners
            .get(id)
            .map_or_else(|| id.to_string(), |p| p.name.clone())
    };
    json_ok(&serde_json::json!({
        "complete": complete,
        "partners": rows.iter().map(|(id, r)| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["partner"] = id.clone().into();
            v["name"] = name(id).into();
            v
        }).collect::<Vec<_>>(),
    }))
}

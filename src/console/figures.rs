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

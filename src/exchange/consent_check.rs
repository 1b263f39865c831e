//! The pipeline's consent check: a flow whose rule rests on consent passes
//! only for a person with a consent in force, decided by
//! [`crate::policy::Grant::consent`] on the history the register keeps.
//! Apart from the consent API ([`super::consent`]) so that the pipeline's
//! stages can use it without depending on that handler.

use super::refusal::{Exchange, Refusal};
use crate::policy::Grant;
use crate::policy::consent::ConsentEvent;
use crate::problem;

/// The register could not be read or written.
pub fn unavailable() -> Refusal {
    Refusal::new(
        problem::CONSENT_UNAVAILABLE,
        "the consent register cannot be read or written",
    )
}

/// The day consents are judged on.
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// The pipeline's check, once the subject is known: a flow whose rule
/// rests on consent passes only for a person with a consent in force; the
/// exchange's records then cite it.
pub async fn require(
    x: &mut Exchange<'_>,
    grant: &Grant<'_>,
    vnummer: Option<&str>,
) -> Result<(), Refusal> {
    if !grant.rule.consent {
        return Ok(());
    }
    let history = match vnummer {
        Some(v) => Some(history(x, v, &grant.rule.id).await?),
        None => None,
    };
    x.consent = grant.consent(history.as_deref(), today())?;
    Ok(())
}

/// The consent an answer element about another person rests on: checked
/// like the request's subject, since that person's consent is what lets
/// their data go.
pub async fn of_element(
    x: &Exchange<'_>,
    grant: &Grant<'_>,
    vnummer: &str,
) -> Result<Option<u64>, Refusal> {
    if !grant.rule.consent {
        return Ok(None);
    }
    let h = history(x, vnummer, &grant.rule.id).await?;
    grant.consent(Some(&h), today()).map_err(Refusal::from)
}

/// A person's history for one rule of the exchange's pilot.
pub async fn history(
    x: &Exchange<'_>,
    vnummer: &str,
    rule: &str,
) -> Result<Vec<ConsentEvent>, Refusal> {
    let reg = x.gw.consents.clone();
    let p = reg.pseudonym(vnummer);
    let (pilot, rule) = (x.target.pilot.to_string(), rule.to_string());
    tokio::task::spawn_blocking(move || reg.history(&p, &pilot, &rule))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(unavailable)
}

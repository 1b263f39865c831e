//! The partner API's routes, parsed from the raw request path.
//!
//! Only plain segments are accepted: letters, digits and `-._~`, no empty
//! segments, no `.` or `..`, no percent-escapes. So an encoded slash or a path
//! traversal can never reach a back-end path, and ids in the route are safe to
//! use as keys and in logs.

/// Every route the partner API serves: (methods, path template). The OpenAPI
/// document must list exactly these (a test checks it).
pub const ROUTES: &[(&[&str], &str)] = &[
    (&["GET"], "/v1/whoami"),
    (&["GET"], "/v1/openapi.json"),
    (
        &["GET", "POST", "PUT", "PATCH", "DELETE"],
        "/v1/pilots/{pilot}/services/{provider}/{service}",
    ),
    (
        &["GET", "POST", "PUT", "PATCH", "DELETE"],
        "/v1/pilots/{pilot}/services/{provider}/{service}/{rest}",
    ),
    (&["GET"], "/v1/pilots/{pilot}/covenant"),
    (&["GET"], "/v1/pilots/{pilot}/covenant/versions/{version}"),
    (
        &["POST"],
        "/v1/pilots/{pilot}/covenant/versions/{version}/signatures",
    ),
    (
        &["GET", "PUT", "DELETE"],
        "/v1/pilots/{pilot}/registrations/{vnummer}",
    ),
    (&["POST"], "/v1/pilots/{pilot}/transfers/{to}"),
    (&["GET"], "/v1/figures"),
    (&["POST"], "/v1/logboek/processing-activities"),
    (
        &["GET", "PUT", "DELETE"],
        "/v1/pilots/{pilot}/consents/{vnummer}/{rule}",
    ),
    (&["GET"], "/v1/inbox"),
    (&["GET", "DELETE"], "/v1/inbox/{id}"),
    (&["GET"], "/v1/audit/checkpoint"),
    (&["GET"], "/v1/audit/keys"),
    (&["GET"], "/v1/audit/proof/consistency"),
    (&["GET"], "/v1/audit/tile/{tile}"),
    (&["GET"], "/v1/audit/records/{id}/evidence"),
];

/// A parsed route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v1/whoami`.
    Whoami,
    /// `/v1/openapi.json`: the partner API's OpenAPI document.
    OpenApi,
    /// `/v1/pilots/{pilot}/services/{provider}/{service}/{rest...}`.
    Service {
        /// Pilot id.
        pilot: &'a str,
        /// Provider partner id.
        provider: &'a str,
        /// Service name.
        service: &'a str,
        /// Values for the service's path template, in order.
        rest: Vec<&'a str>,
    },
    /// `/v1/pilots/{pilot}/covenant`.
    Covenant(&'a str),
    /// `/v1/pilots/{pilot}/covenant/versions/{version}`: the hex digest.
    CovenantVersion(&'a str, &'a str),
    /// `/v1/pilots/{pilot}/covenant/versions/{version}/signatures`.
    CovenantSignatures(&'a str, &'a str),
    /// `/v1/pilots/{pilot}/registrations/{vnummer}`.
    Registration {
        /// Pilot id.
        pilot: &'a str,
        /// The person's V-nummer (checked by the handler).
        vnummer: &'a str,
    },
    /// `/v1/pilots/{pilot}/transfers/{to}`: a case moves from `pilot` to `to`.
    Transfer {
        /// The sending pilot.
        from: &'a str,
        /// The receiving pilot.
        to: &'a str,
    },
    /// `/v1/figures?pilot=P&from=YYYY-MM&to=YYYY-MM`.
    Figures,
    /// `/v1/logboek/processing-activities`: the Logboek read extension.
    Logboek,
    /// `/v1/pilots/{pilot}/consents/{vnummer}/{rule}`.
    Consent {
        /// Pilot id.
        pilot: &'a str,
        /// The person's V-nummer (checked by the handler).
        vnummer: &'a str,
        /// The rule that rests on consent.
        rule: &'a str,
    },
    /// `/v1/inbox`.
    Inbox,
    /// `/v1/inbox/{id}`.
    InboxItem(u64),
    /// `/v1/audit/checkpoint`: the published checkpoint.
    AuditCheckpoint,
    /// `/v1/audit/keys`: the log's checkpoint keys and their announcements.
    AuditKeys,
    /// `/v1/audit/proof/consistency?from=N&to=M`.
    AuditConsistency,
    /// `/v1/audit/tile/<L>/<N>[.p/<W>]`: the segments after `tile`.
    AuditTile(Vec<&'a str>),
    /// `/v1/audit/records/{id}/evidence`.
    Evidence(u64),
}

/// Why a path is not a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// A segment holds something other than plain characters.
    BadSegment,
    /// No route has this shape.
    NotFound,
}

/// Longest path segment accepted.
const MAX_SEGMENT: usize = 128;

fn plain(seg: &str) -> bool {
    !seg.is_empty()
        && seg.len() <= MAX_SEGMENT
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Parses a request path (without query).
pub fn parse(path: &str) -> Result<Route<'_>, RouteError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(RouteError::NotFound);
    };
    // On the stack for any path the API has: a `Vec` was two allocations
    // per request.
    let segs: smallvec::SmallVec<[&str; 12]> = rest.split('/').collect();
    if !segs.iter().all(|s| plain(s)) {
        return Err(RouteError::BadSegment);
    }
    match segs.as_slice() {
        ["v1", "whoami"] => Ok(Route::Whoami),
        ["v1", "openapi.json"] => Ok(Route::OpenApi),
        ["v1", "inbox"] => Ok(Route::Inbox),
        ["v1", "figures"] => Ok(Route::Figures),
        ["v1", "logboek", "processing-activities"] => Ok(Route::Logboek),
        ["v1", "audit", "checkpoint"] => Ok(Route::AuditCheckpoint),
        ["v1", "audit", "keys"] => Ok(Route::AuditKeys),
        ["v1", "audit", "proof", "consistency"] => Ok(Route::AuditConsistency),
        ["v1", "audit", "tile", rest @ ..] if !rest.is_empty() => {
            Ok(Route::AuditTile(rest.to_vec()))
        }
        ["v1", "inbox", id] => id
            .parse()
            .map(Route::InboxItem)
            .map_err(|_| RouteError::NotFound),
        ["v1", "pilots", pilot, "covenant"] => Ok(Route::Covenant(pilot)),
        ["v1", "pilots", pilot, "covenant", "versions", v] => Ok(Route::CovenantVersion(pilot, v)),
        [
            "v1",
            "pilots",
            pilot,
            "covenant",
            "versions",
            v,
            "signatures",
        ] => Ok(Route::CovenantSignatures(pilot, v)),
        ["v1", "pilots", pilot, "registrations", vnummer] => {
            Ok(Route::Registration { pilot, vnummer })
        }
        ["v1", "pilots", from, "transfers", to] => Ok(Route::Transfer { from, to }),
        ["v1", "pilots", pilot, "consents", vnummer, rule] => Ok(Route::Consent {
            pilot,
            vnummer,
            rule,
        }),
        ["v1", "audit", "records", id, "evidence"] => id
            .parse()
            .map(Route::Evidence)
            .map_err(|_| RouteError::NotFound),
        [
            "v1",
            "pilots",
            pilot,
            "services",
            provider,
            service,
            rest @ ..,
        ] => Ok(Route::Service {
            pilot,
            provider,
            service,
            rest: rest.to_vec(),
        }),
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(parse("/v1/whoami"), Ok(Route::Whoami));
        assert_eq!(
            parse("/v1/pilots/utrecht/services/dtv/vertrekdossier/5550001234"),
            Ok(Route::Service {
                pilot: "utrecht",
                provider: "dtv",
                service: "vertrekdossier",
                rest: vec!["5550001234"]
            })
        );
        assert_eq!(parse("/v1/inbox/42"), Ok(Route::InboxItem(42)));
        assert_eq!(parse("/v1/audit/checkpoint"), Ok(Route::AuditCheckpoint));
        assert_eq!(
            parse("/v1/audit/tile/1/x001/067.p/5"),
            Ok(Route::AuditTile(vec!["1", "x001", "067.p", "5"]))
        );
        assert_eq!(parse("/v1/audit/tile"), Err(RouteError::NotFound));
        assert_eq!(parse("/v1/inbox/x"), Err(RouteError::NotFound));
        assert_eq!(
            parse("/v1/audit/records/7/evidence"),
            Ok(Route::Evidence(7))
        );
        assert_eq!(
            parse("/v1/pilots/utrecht/transfers/amsterdam"),
            Ok(Route::Transfer {
                from: "utrecht",
                to: "amsterdam"
            })
        );
        assert_eq!(parse("/v1/figures"), Ok(Route::Figures));
        assert_eq!(parse("/v2/whoami"), Err(RouteError::NotFound));
    }

    #[test]
    fn traversal_and_escapes_are_refused() {
        for p in [
            "/v1/pilots/utrecht/services/dtv/vertrekdossier/..",
            "/v1/pilots/utrecht/services/dtv/vertrekdossier/a%2Fb",
            "/v1/pilots/utrecht/services/dtv/vertrekdossier/%2e%2e",
            "/v1/pilots/utrecht/services/dtv//x",
            "/v1/pilots/utrecht/services/dtv/vertrekdossier/a\\b",
            "/v1/whoami/",
        ] {
            assert_eq!(parse(p), Err(RouteError::BadSegment), "{p}");
        }
    }
}

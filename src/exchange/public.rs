//! The log's public state on the partner API: what any partner (mutual TLS)
//! may read to check the log on its own, with tools that are not
//! ketenpoort's.
//!
//! - `GET /v1/audit/checkpoint`: the published checkpoint as a signed note
//!   (`text/plain; charset=utf-8`): the log's Ed25519 signature and, when
//!   witnesses are configured, the cosignature lines of at least the quorum
//!   (`c2sp.org/tlog-checkpoint`, `c2sp.org/tlog-cosignature`); 404 when no
//!   checkpoint has reached its quorum yet.
//! - `GET /v1/audit/keys`: the log's checkpoint verifier keys, oldest
//!   first, each with the tree size it signs from and (after the first) the
//!   checkpoint that announced it, signed by the key before it and by
//!   itself (`application/json`; see [`crate::audit::rotation`]). A monitor
//!   that trusts an old key follows a rotation with it.
//! - `GET /v1/audit/proof/consistency?from=N&to=M`: the RFC 6962
//!   consistency proof between the trees of `N` and `M` records, as the
//!   proof lines of `c2sp.org/tlog-witness`: one base64 hash per line,
//!   nothing else (`text/plain; charset=utf-8`). Empty when `N` is 0 or
//!   equals `M`.
//! - `GET /v1/audit/tile/<L>/<N>[.p/<W>]`: hash tiles as in
//!   `c2sp.org/tlog-tiles` (`application/octet-stream`). Entry bundles are
//!   not served: a record is for the parties to its exchange.
//!
//! These carry hashes and sizes only, no personal data, so reading them is
//! not a disclosure and is not recorded in the log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::audit::tile::{self, TileRef};
use crate::gateway::{Body, Gateway};
use crate::problem;

/// Content type of notes and proof lines.
const TEXT: &str = "text/plain; charset=utf-8";

fn respond(content_type: &'static str, cache: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// `GET /v1/audit/checkpoint`.
pub async fn checkpoint(gw: &Gateway) -> Response<Body> {
    let view = gw.audit.view();
    let published = match view.published_checkpoint() {
        Some((_, note)) => Some(note),
        // No witnesses and nothing signed yet (a new log): sign the log as
        // it is, so a partner can start from its first state.
        None if !view.witnessed() => gw.audit.checkpoint().await.ok().map(|c| c.note),
        None => None,
    };
    match published {
        Some(note) => respond(TEXT, "no-cache", note.into_bytes()),
        None => problem::respond(
            problem::NOT_FOUND,
            "no checkpoint has reached its quorum of witness cosignatures yet",
        ),
    }
}

/// `GET /v1/audit/keys`.
pub fn keys(gw: &Gateway) -> Response<Body> {
    let body = serde_json::json!({ "keys": gw.audit.key_history().keys });
    respond(
        "application/json",
        "no-cache",
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// `from` and `to` of the query, both decimal, nothing else.
fn sizes(query: Option<&str>) -> Option<(u64, u64)> {
    let (mut from, mut to) = (None, None);
    for pair in query?.split('&') {
        let (k, v) = pair.split_once('=')?;
        let v = crate::witness::note::parse_decimal(v)?;
        let slot = match k {
            "from" => &mut from,
            "to" => &mut to,
            _ => return None,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    Some((from?, to?))
}

/// `GET /v1/audit/proof/consistency?from=N&to=M`.
pub async fn consistency(gw: &Gateway, query: Option<&str>) -> Response<Body> {
    let Some((from, to)) = sizes(query) else {
        return problem::respond(
            problem::BAD_QUERY,
            "give ?from=N&to=M, tree sizes in decimal",
        );
    };
    let view = gw.audit.view().clone();
    let head = view.head().size;
    if from > to || to > head {
        return problem::respond(
            problem::NOT_FOUND,
            format!("no consistency proof from {from} to {to}: the log has {head} records"),
        );
    }
    if from == 0 || from == to {
        return respond(TEXT, "no-cache", Vec::new());
    }
    match tokio::task::spawn_blocking(move || view.consistency_proof(from, to)).await {
        Ok(Ok(proof)) => {
            let mut out = String::with_capacity(proof.len() * 45);
            for h in proof {
                out.push_str(&B64.encode(h));
                out.push('\n');
            }
            respond(TEXT, "max-age=86400", out.into_bytes())
        }
        _ => problem::respond(problem::INTERNAL, "the proof could not be read"),
    }
}

/// `GET /v1/audit/tile/...`: a hash tile, complete in the log as it is.
pub async fn tile(gw: &Gateway, segs: &[&str]) -> Response<Body> {
    let Some(t) = TileRef::parse(segs) else {
        return problem::respond(
            problem::NOT_FOUND,
            "no such tile: hash tiles are tile/<L>/<N>[.p/<W>]; entry bundles are not served",
        );
    };
    let view = gw.audit.view().clone();
    let read = tokio::task::spawn_blocking(move || {
        let size = view.head().size;
        tile::read(view.as_ref(), &t, size)
    })
    .await;
    match read {
        Ok(Ok(Some(bytes))) => respond(
            "application/octet-stream",
            "max-age=31536000, immutable",
            bytes,
        ),
        Ok(Ok(None)) => {
            problem::respond(problem::NOT_FOUND, "the log does not hold this tile (yet)")
        }
        _ => problem::respond(problem::INTERNAL, "the tile could not be read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_queries_are_strict() {
        assert_eq!(sizes(Some("from=3&to=10")), Some((3, 10)));
        assert_eq!(sizes(Some("to=10&from=0")), Some((0, 10)));
        for bad in [
            "from=3",
            "from=03&to=4",
            "from=1&to=2&x=1",
            "from=1&from=1&to=2",
            "from=-1&to=2",
            "",
        ] {
            assert_eq!(sizes(Some(bad)), None, "{bad}");
        }
        assert_eq!(sizes(None), None);
    }
}

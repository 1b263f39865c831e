//! `GET /healthz`: whether this node can serve, for load balancers and
//! monitoring, without a token and without personal data.
//!
//! 200 `{"status": "ok", "failed": []}` only when every check passes; else
//! 503 with `"status": "fail"` (or `"maintenance"` while `ketenpoort
//! maintenance on` drains the node, whatever the checks say) and the failed
//! checks by name, with a line each in `details` for the operator:
//! - `audit`: the data directory takes a write and an fsync (a full or
//!   read-only disk fails it; the log could not make a record durable), and
//!   a shared PostgreSQL log answers (a load balancer then sends no partner
//!   to a node cut off from the database);
//! - `crl`: at least one CRL is loaded and none is past its nextUpdate;
//! - `policy`: a policy with at least one pilot is loaded;
//! - `certificates`: the gateway's own server and client certificates are
//!   within their validity.
//!
//! The checks read what the running gateway holds (the TLS set and policy
//! in force, not the files on disk), so a CRL renewed on disk but refused on
//! reload still fails `crl` when the old one runs out.

use std::sync::atomic::{AtomicU64, Ordering};

use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::reply::respond;
use crate::gateway::{Body, Gateway};

/// The outcome of the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `ok`, `fail` or `maintenance`.
    pub status: &'static str,
    /// The failed checks, by name, with why.
    pub failed: Vec<(&'static str, String)>,
}

impl Health {
    /// The `/healthz` answer.
    pub fn response(&self) -> Response<Body> {
        let mut details = Map::new();
        for (name, why) in &self.failed {
            details.insert((*name).to_string(), Value::String(why.clone()));
        }
        let failed: Vec<&str> = self.failed.iter().map(|(n, _)| *n).collect();
        let mut body = json!({"status": self.status, "failed": failed});
        if !details.is_empty() {
            body["details"] = Value::Object(details);
        }
        let status = if self.status == "ok" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut r = respond(
            status,
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        );
        r.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-store"),
        );
        r
    }
}

/// Runs every check against the running gateway.
pub async fn check(gw: &Gateway) -> Health {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut failed = Vec::new();
    let dir = gw.config.data_dir.clone();
    // One write check at a time: the endpoint needs no token, so a crowd
    // polling it must not turn into a crowd of fsyncs beside the log's.
    static PROBING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let one = PROBING.lock().await;
    let view = gw.audit.view().clone();
    let probed = tokio::task::spawn_blocking(move || {
        probe_write(&dir)?;
        view.reachable().map_err(std::io::Error::other)
    })
    .await;
    drop(one);
    match probed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failed.push(("audit", format!("the data directory takes no write: {e}"))),
        Err(e) => failed.push(("audit", format!("the write check did not run: {e}"))),
    }
    let tls = gw.tls.current();
    if let Some(why) = crl_problem(&tls.validity.crls, now) {
        failed.push(("crl", why));
    }
    if gw.policy.current().policy.pilots.is_empty() {
        failed.push(("policy", "no pilot's policy is loaded".to_string()));
    }
    if let Some(why) = certificate_problem(&tls.validity.own, now) {
        failed.push(("certificates", why));
    }
    let status = if gw.maintenance.load(Ordering::SeqCst) {
        "maintenance"
    } else if failed.is_empty() {
        "ok"
    } else {
        "fail"
    };
    Health { status, failed }
}

/// Writes, syncs and removes a small file in the data directory: what the
/// audit log needs of its disk (a new block, made durable).
fn probe_write(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    static N: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        ".healthz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&[0u8; 4096])?;
        f.sync_data()
    });
    let removed = std::fs::remove_file(&path);
    written?;
    removed
}

/// Why the CRLs fail the check: none loaded, or one past its nextUpdate.
fn crl_problem(crls: &[(String, Option<i64>)], now: i64) -> Option<String> {
    if crls.is_empty() {
        return Some("no CRL is loaded: revocation is not checked".to_string());
    }
    let late: Vec<String> = crls
        .iter()
        .filter_map(|(file, next)| match next {
            Some(t) if *t < now => Some(format!("{file} (nextUpdate {})", rfc3339(*t))),
            _ => None,
        })
        .collect();
    (!late.is_empty()).then(|| format!("past nextUpdate: {}", late.join(", ")))
}

/// Why the gateway's own certificates fail the check.
fn certificate_problem(own: &[(&'static str, i64, i64)], now: i64) -> Option<String> {
    let bad: Vec<String> = own
        .iter()
        .filter_map(|(what, from, until)| {
            if now < *from {
                Some(format!(
                    "{what} certificate not valid before {}",
                    rfc3339(*from)
                ))
            } else if now > *until {
                Some(format!("{what} certificate expired {}", rfc3339(*until)))
            } else {
                None
            }
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crls_fail_when_none_or_late() {
        assert!(crl_problem(&[], 100).is_some());
        let crls = vec![("a.pem".to_string(), Some(200)), ("b.pem".into(), None)];
        assert_eq!(crl_problem(&crls, 100), None);
        let why = crl_problem(&crls, 300).unwrap();
        assert!(why.contains("a.pem") && !why.contains("b.pem"), "{why}");
    }

    #[test]
    fn own_certificates_fail_outside_their_validity() {
        let own = vec![("server", 100, 200), ("client", 100, 300)];
        assert_eq!(certificate_problem(&own, 150), None);
        let why = certificate_problem(&own, 250).unwrap();
        assert!(why.starts_with("server certificate expired"), "{why}");
        assert!(
            certificate_problem(&own, 50)
                .unwrap()
                .contains("not valid before")
        );
    }

    #[test]
    fn the_answer_names_the_failed_checks() {
        let h = Health {
            status: "fail",
            failed: vec![("crl", "late".into())],
        };
        let r = h.response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ok = Health {
            status: "ok",
            failed: vec![],
        };
        assert_eq!(ok.response().status(), StatusCode::OK);
    }
}

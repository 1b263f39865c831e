//! The V-nummer out of URLs: searches and reports by person take it in a
//! POST body, because a URL ends up in browser history, bookmarks, proxy and
//! server logs. The GET forms with the V-nummer in the path or query keep
//! answering for one more release, marked deprecated (RFC 9745) with a link
//! to their successor.

use std::collections::HashMap;

use hyper::Response;
use hyper::header::HeaderValue;
use serde_json::Value;

use crate::gateway::Body;
use crate::problem::{self, Problem};

/// When the GET forms were deprecated (2026-11-29T00:00:00Z), as the
/// structured-field date of the `Deprecation` header.
const DEPRECATED_SINCE: &str = "@1795910400";

/// The fields a search body may carry: the query of `GET /disclosures`.
const SEARCH_KEYS: &[&str] = &[
    "subject", "partner", "pilot", "purpose", "since", "until", "decision", "limit", "cursor",
    "format",
];

/// The fields a report body may carry.
const REPORT_KEYS: &[&str] = &["vnummer", "format", "lang"];

/// A JSON object body as the query map the GET forms read: strings and
/// numbers as text, nulls and empty strings left out, unknown keys refused
/// (a typo must not silently widen a search).
pub fn body_map(body: &[u8], allowed: &[&str]) -> Result<HashMap<String, String>, Problem> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Problem::new(problem::MALFORMED_JSON, "the body must be a JSON object"))?;
    let Value::Object(o) = v else {
        return Err(Problem::new(
            problem::MALFORMED_JSON,
            "the body must be a JSON object",
        ));
    };
    let mut out = HashMap::new();
    for (k, v) in o {
        if !allowed.contains(&k.as_str()) {
            return Err(Problem::new(
                problem::BAD_QUERY,
                format!("unknown field; allowed: {}", allowed.join(", ")),
            ));
        }
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            _ => {
                return Err(Problem::new(
                    problem::BAD_QUERY,
                    "every field is a string or a number",
                ));
            }
        };
        if !text.is_empty() {
            out.insert(k, text);
        }
    }
    Ok(out)
}

/// The body of `POST /api/v1/disclosures/search`.
pub fn search_body(body: &[u8]) -> Result<HashMap<String, String>, Problem> {
    body_map(body, SEARCH_KEYS)
}

/// The body of `POST /api/v1/subjects/report`: the V-nummer and the query.
pub fn report_body(body: &[u8]) -> Result<(String, HashMap<String, String>), Problem> {
    let mut q = body_map(body, REPORT_KEYS)?;
    let v = q
        .remove("vnummer")
        .ok_or_else(|| Problem::new(problem::INVALID_SUBJECT, "give the vnummer in the body"))?;
    Ok((v, q))
}

/// Marks an answer of a deprecated GET form, naming its successor.
pub fn deprecated(mut resp: Response<Body>, successor: &'static str) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert("deprecation", HeaderValue::from_static(DEPRECATED_SINCE));
    if let Ok(link) = HeaderValue::from_str(&format!("<{successor}>; rel=\"successor-version\"")) {
        h.insert(hyper::header::LINK, link);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_queries_and_typos_are_refused() {
        let q = search_body(br#"{"subject":"5550001234","limit":5,"pilot":"","x":null}"#);
        assert!(q.is_err(), "x is not a search field");
        let q = search_body(br#"{"subject":"5550001234","limit":5,"pilot":""}"#).unwrap();
        assert_eq!(q["subject"], "5550001234");
        assert_eq!(q["limit"], "5");
        assert!(!q.contains_key("pilot"));
        assert!(search_body(b"[1]").is_err());
        assert!(search_body(br#"{"limit":[1]}"#).is_err());
        let (v, q) = report_body(br#"{"vnummer":"5550001234","format":"html"}"#).unwrap();
        assert_eq!(v, "5550001234");
        assert_eq!(q["format"], "html");
        assert!(report_body(br#"{"format":"html"}"#).is_err());
    }
}

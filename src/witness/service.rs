//! `add-checkpoint` as `c2sp.org/tlog-witness` v1.0.0 defines it, without
//! the HTTP around it: a request body in, a status and a body out.
//!
//! The checks, in the spec's order:
//! 1. the body is an `old N` line, at most 63 base64 proof lines, an empty
//!    line and a checkpoint note, else 400;
//! 2. the origin is one this witness is configured for, else 404;
//! 3. a trusted log key signed it, and no trusted key's line fails, else 403;
//! 4. `old` is at most the checkpoint's size, and the proof is empty when
//!    `old` is 0, else 400;
//! 5. under the state lock: `old` is the size last cosigned (0 when never),
//!    else 409 with that size as `text/x.tlog.size`; at the same size the
//!    root is the one cosigned, else 409; the consistency proof from the
//!    cosigned root to the new one verifies, else 422;
//! 6. the new checkpoint is stored durably, then cosigned: 200 with the
//!    cosignature line.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::StatusCode;

use crate::audit::checkpoint::{CheckpointError, Verifier};
use crate::audit::merkle;

use super::cosign::Cosigner;
use super::note::{Note, parse_checkpoint, parse_decimal};
use super::state::{Seen, State};

/// Most consistency proof lines a client may send (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Content type of a 409 answer's body: the size the witness holds.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The answer to one request: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: String,
}

impl Answer {
    fn text(status: StatusCode, body: impl Into<String>) -> Self {
        let mut body = body.into();
        body.push('\n');
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }

    fn size(size: u64) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            content_type: SIZE_CONTENT_TYPE,
            body: format!("{size}\n"),
        }
    }
}

/// A parsed `add-checkpoint` request body.
struct Request<'a> {
    old: u64,
    proof: Vec<Vec<u8>>,
    note: &'a str,
}

fn parse_request(body: &[u8]) -> Result<Request<'_>, &'static str> {
    let body = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8")?;
    let (first, mut rest) = body.split_once('\n').ok_or("no old size line")?;
    let old = first
        .strip_prefix("old ")
        .and_then(parse_decimal)
        .ok_or("the first line is not 'old <size>'")?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or("no empty line before the checkpoint")?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err("more than 63 consistency proof lines");
        }
        let hash = B64
            .decode(line)
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or("a consistency proof line is not base64 of 32 bytes")?;
        proof.push(hash);
    }
    Ok(Request {
        old,
        proof,
        note: rest,
    })
}

/// A witness: its key, the logs it witnesses and what it has cosigned.
#[derive(Debug)]
pub struct Witness {
    /// The key its cosignatures are made with.
    cosigner: Cosigner,
    /// Origin → the log keys trusted for it.
    logs: BTreeMap<String, Vec<Verifier>>,
    /// The latest cosigned checkpoint of each log, on disk.
    state: State,
}

/// Seconds since the epoch, for the cosignature's timestamp.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Witness {
    /// A witness from its parts.
    pub fn new(cosigner: Cosigner, logs: BTreeMap<String, Vec<Verifier>>, state: State) -> Self {
        Self {
            cosigner,
            logs,
            state,
        }
    }

    /// The witness's verifier key (type 0x04).
    pub fn vkey(&self) -> String {
        self.cosigner.vkey()
    }

    /// Handles one `add-checkpoint` request body. Blocking: it may wait for
    /// the state lock and for the disk.
    pub fn add_checkpoint(&self, body: &[u8]) -> Answer {
        let req = match parse_request(body) {
            Ok(r) => r,
            Err(why) => return Answer::text(StatusCode::BAD_REQUEST, why),
        };
        let note = match Note::parse(req.note) {
            Ok(n) => n,
            Err(e) => return Answer::text(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let cp = match parse_checkpoint(&note.text) {
            Ok(cp) => cp,
            Err(e) => return Answer::text(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let Some(keys) = self.logs.get(&cp.origin) else {
            return Answer::text(StatusCode::NOT_FOUND, "unknown log origin");
        };
        if !signed_by_trusted_key(keys, req.note) {
            return Answer::text(
                StatusCode::FORBIDDEN,
                "no valid signature by a trusted log key",
            );
        }
        if req.old > cp.size {
            return Answer::text(
                StatusCode::BAD_REQUEST,
                "old size beyond the checkpoint size",
            );
        }
        if req.old == 0 && !req.proof.is_empty() {
            return Answer::text(StatusCode::BAD_REQUEST, "a proof from size 0 must be empty");
        }
        let new = Seen {
            size: cp.size,
            root: cp.root,
        };
        if let Err(answer) = self.check_and_store(&cp.origin, req.old, &req.proof, new, req.note) {
            return answer;
        }
        let line = self.cosigner.cosign(&note.text, now()).line();
        tracing::info!(origin = %cp.origin, size = cp.size, "cosigned a checkpoint");
        Answer {
            status: StatusCode::OK,
            content_type: "text/plain; charset=utf-8",
            body: line,
        }
    }

    /// Step 5 and 6 under the one lock: the new checkpoint extends what was
    /// cosigned, and is on disk before this returns.
    fn check_and_store(
        &self,
        origin: &str,
        old: u64,
        proof: &[Vec<u8>],
        new: Seen,
        note: &str,
    ) -> Result<(), Answer> {
        let internal = |e: super::state::StateError| {
            tracing::error!(error = %e, "witness state");
            Answer::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the witness cannot keep its state",
            )
        };
        let mut state = self.state.lock().map_err(internal)?;
        let seen = state.get(origin).unwrap_or(Seen {
            size: 0,
            root: merkle::empty_root(),
        });
        if old != seen.size {
            return Err(Answer::size(seen.size));
        }
        if new.size == seen.size {
            if new.root != seen.root {
                tracing::warn!(%origin, size = new.size, "a second root for a cosigned size: the log forked");
                return Err(Answer::size(seen.size));
            }
            if !proof.is_empty() {
                return Err(Answer::text(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "a proof between equal sizes must be empty",
                ));
            }
            return Ok(());
        }
        if old > 0 {
            let consistent =
                merkle::verify_consistency(old, new.size, proof, &seen.root, &new.root);
            if let Err(e) = consistent {
                tracing::warn!(%origin, old, size = new.size, error = %e, "consistency proof does not verify");
                return Err(Answer::text(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    e.to_string(),
                ));
            }
        }
        state.store(origin, new, note).map_err(internal)
    }
}

/// A signature by one of the trusted keys verifies, and none of their
/// lines fails (a note with a bad signature by a known key is rejected
/// whole, as signed-note asks).
fn signed_by_trusted_key(keys: &[Verifier], note: &str) -> bool {
    let mut good = false;
    for k in keys {
        match k.verify(note) {
            Ok(_) => good = true,
            Err(CheckpointError::NoSignature(_)) => {}
            Err(_) => return false,
        }
    }
    good
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_are_parsed_strictly() {
        let h = B64.encode([1u8; 32]);
        let note = "o\n1\nx\n\n\u{2014} o AAAAAAA=\n";
        let body = format!("old 0\n{h}\n\n{note}");
        let ok = parse_request(body.as_bytes()).unwrap();
        assert_eq!((ok.old, ok.proof.len(), ok.note), (0, 1, note));
        for bad in [
            format!("old 00\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("new 1\n\n{note}"),
            format!("old 1\n{note}"),
            format!("old 1\nAAAA\n\n{note}"),
            format!("old 1\n{}\n{note}", format!("{h}\n").repeat(64)),
        ] {
            assert!(parse_request(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let max = format!("old 1\n{}\n{note}", format!("{h}\n").repeat(63));
        assert_eq!(parse_request(max.as_bytes()).unwrap().proof.len(), 63);
    }
}

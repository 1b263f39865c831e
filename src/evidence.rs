//! Evidence of one disclosure, as a file anyone can check offline: a C2SP
//! transparency log proof (`c2sp.org/tlog-proof@v1`, extension
//! `.tlog-proof`), whose `extra` line carries the record's bytes.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the record's canonical bytes>
//! index <record id>
//! <base64 inclusion proof hash, one per line, leaf's sibling first>
//!
//! <the published checkpoint: log signature and witness cosignatures>
//! ```
//!
//! The spec says the extra data is not authenticated, and it is not trusted
//! here: the checker hashes it into the RFC 6962 leaf hash and proves that
//! leaf at `index` in the checkpoint's tree. A changed byte, a changed index
//! or a checkpoint of another tree no longer proves. The checkpoint itself is
//! trusted only with the log's signature and the cosignatures of a quorum of
//! the witnesses the checker names ([`Trust`]); the monitor (`audit monitor`)
//! uses the same policy for the checkpoints it fetches.
//!
//! Making a file ([`make`]) needs the log (a [`View`]); checking one
//! ([`check`]) needs only the file and the keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::audit::checkpoint::{Checkpoint, CheckpointError, Verifier};
use crate::audit::merkle::{self, Hash, ProofError};
use crate::audit::store::View;
use crate::audit::{AuditError, Record};
use crate::witness::note::parse_decimal;
use crate::witness::{CosignError, CosignatureVerifier, Note};

/// The first line of every proof file.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// The content type the gateway serves a proof file with (the spec names
/// none; it is text).
pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// The file extension the spec recommends.
pub const EXTENSION: &str = "tlog-proof";
/// Most inclusion proof lines read: a tree of 2^64 leaves needs 64.
const MAX_PROOF: usize = 64;

/// A parsed proof file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// The opaque extra data: here, the record's canonical bytes.
    pub extra: Option<Vec<u8>>,
    /// The entry's zero-based index in the log (the record id).
    pub index: u64,
    /// The RFC 6962 inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The checkpoint note, verbatim, signatures and cosignatures included.
    pub checkpoint: String,
}

impl TlogProof {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof file; the checkpoint is kept as text, unchecked.
    pub fn parse(text: &str) -> Result<Self, CheckError> {
        let bad = CheckError::Malformed;
        // The proof lines end at the first empty line; the checkpoint (which
        // has an empty line of its own) follows verbatim.
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or(bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("the first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or(bad("no index line"))?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(b64)
                    .map_err(|_| bad("the extra line is not base64"))?,
            );
            line = lines.next().ok_or(bad("no index line"))?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or(bad("no 'index N' line (N in decimal, no leading zeroes)"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF {
                return Err(bad("more than 64 inclusion proof lines"));
            }
            let h = B64
                .decode(l)
                .ok()
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or(bad("an inclusion proof line is not base64 of 32 bytes"))?;
            proof.push(h);
        }
        if checkpoint.is_empty() {
            return Err(bad("no checkpoint after the empty line"));
        }
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

/// Why a proof file or a checkpoint is not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The file is not a tlog-proof file of the expected shape.
    #[error("not a tlog-proof file: {0}")]
    Malformed(&'static str),
    /// A key given to check with is not usable.
    #[error("{0}")]
    Key(String),
    /// The checkpoint does not carry a valid signature of the log's key.
    #[error("the checkpoint is not signed by the log: {0}")]
    LogSignature(#[from] CheckpointError),
    /// Too few of the trusted witnesses cosigned the checkpoint.
    #[error("{valid} valid cosignature(s), {quorum} needed{detail}")]
    Quorum {
        /// Trusted witnesses whose cosignature verifies.
        valid: usize,
        /// How many are needed.
        quorum: usize,
        /// What was wrong with the others.
        detail: String,
    },
    /// The record is not at that index in the checkpoint's tree.
    #[error("the record is not entry {index} of the log's tree of {size}: {source}")]
    Inclusion {
        /// The index the file claims.
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
        /// Why the proof fails.
        source: ProofError,
    },
    /// The extra data is not a record of this log.
    #[error("the extra data is not an audit record: {0}")]
    Record(String),
}

/// Who is trusted to say what the log holds: the log's checkpoint key, the
/// witnesses' cosignature keys, and how many of them must have cosigned.
#[derive(Debug, Clone)]
pub struct Trust {
    log: Verifier,
    witnesses: Vec<CosignatureVerifier>,
    quorum: usize,
}

impl Trust {
    /// From verifier keys in the signed-note format. `quorum` defaults to
    /// every witness given; it cannot exceed their number.
    pub fn new(
        log_vkey: &str,
        witness_vkeys: &[String],
        quorum: Option<usize>,
    ) -> Result<Self, CheckError> {
        let log = Verifier::parse(log_vkey).map_err(|e| {
            CheckError::Key(format!("the log's key is not an Ed25519 verifier key: {e}"))
        })?;
        let witnesses = witness_vkeys
            .iter()
            .map(|k| {
                CosignatureVerifier::parse(k)
                    .map_err(|e| CheckError::Key(format!("witness key '{}': {e}", k.trim())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = quorum.unwrap_or(witnesses.len());
        if quorum > witnesses.len() {
            return Err(CheckError::Key(format!(
                "a quorum of {quorum} needs at least {quorum} witness keys, {} given",
                witnesses.len()
            )));
        }
        Ok(Self {
            log,
            witnesses,
            quorum,
        })
    }

    /// The cosignatures needed.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Checks the log's signature on a checkpoint note.
    pub fn signed(&self, note: &str) -> Result<Checkpoint, CheckError> {
        Ok(self.log.verify(note)?)
    }

    /// Checks the quorum of cosignatures on a checkpoint note; gives the
    /// names of the witnesses whose cosignature verifies. A witness counts
    /// once however many keys of it are trusted.
    pub fn cosigned(&self, note: &str) -> Result<Vec<String>, CheckError> {
        let parsed = Note::parse(note).map_err(|_| CheckError::Malformed("a malformed note"))?;
        let mut valid: Vec<String> = Vec::new();
        let mut problems = Vec::new();
        for w in &self.witnesses {
            match w.verify_note(&parsed) {
                Ok(_) if !valid.iter().any(|n| n == w.name()) => valid.push(w.name().to_string()),
                Ok(_) => {}
                Err(CosignError::Missing(name)) => problems.push(format!("none by {name}")),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if valid.len() < self.quorum {
            return Err(CheckError::Quorum {
                valid: valid.len(),
                quorum: self.quorum,
                detail: if problems.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", problems.join("; "))
                },
            });
        }
        Ok(valid)
    }
}

/// What a valid proof file proves.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The record, decoded from the extra data.
    pub record: Record,
    /// The checkpoint it is included in.
    pub checkpoint: Checkpoint,
    /// The witnesses whose cosignature verifies.
    pub cosigners: Vec<String>,
}

/// Checks a proof file offline: the log's signature on the checkpoint, the
/// quorum of cosignatures, then the inclusion of the leaf hash of the extra
/// data at the index, and that the extra data is the record with that id.
pub fn check(text: &str, trust: &Trust) -> Result<Verified, CheckError> {
    let p = TlogProof::parse(text)?;
    let checkpoint = trust.signed(&p.checkpoint)?;
    let cosigners = trust.cosigned(&p.checkpoint)?;
    let bytes = p.extra.ok_or(CheckError::Malformed(
        "no extra line: the record's bytes are missing",
    ))?;
    let proof: Vec<Vec<u8>> = p.proof.iter().map(|h| h.to_vec()).collect();
    merkle::verify_inclusion(
        p.index,
        checkpoint.size,
        &merkle::leaf_hash(&bytes),
        &proof,
        &checkpoint.root,
    )
    .map_err(|source| CheckError::Inclusion {
        index: p.index,
        size: checkpoint.size,
        source,
    })?;
    let record = Record::decode(&bytes).map_err(|e| CheckError::Record(e.0.to_string()))?;
    if record.id != p.index {
        return Err(CheckError::Record(format!(
            "it is record {}, the file claims entry {}",
            record.id, p.index
        )));
    }
    Ok(Verified {
        record,
        checkpoint,
        cosigners,
    })
}

/// Why no proof file can be made for a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MakeError {
    /// There is no record with this id.
    #[error("no record {0}")]
    NoRecord(u64),
    /// The asking partner neither sent nor received the record.
    #[error("record {0} was neither sent nor received by you")]
    NotParty(u64),
    /// No published checkpoint covers the record yet.
    #[error("record {0} is not yet in a published checkpoint; try again shortly")]
    NotYetPublished(u64),
    /// The log could not be read.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The proof file of record `id` at the published checkpoint. With `party`,
/// only for a record that partner sent or received. Blocking (reads files).
pub fn make(view: &View, id: u64, party: Option<&str>) -> Result<String, MakeError> {
    if id >= view.head().size {
        return Err(MakeError::NoRecord(id));
    }
    let record = view.record(id)?;
    if let Some(p) = party
        && record.entry.sender != p
        && record.entry.recipient != p
    {
        return Err(MakeError::NotParty(id));
    }
    let (size, checkpoint) = view
        .published_checkpoint()
        .filter(|(size, _)| id < *size)
        .ok_or(MakeError::NotYetPublished(id))?;
    let proof = view.inclusion_proof(id, size)?;
    Ok(TlogProof {
        extra: Some(record.encode()),
        index: id,
        proof,
        checkpoint,
    }
    .render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_file_round_trips_and_garbage_is_refused() {
        let note = "o\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} o AAAAAAAA\n";
        let p = TlogProof {
            extra: Some(b"record".to_vec()),
            index: 2,
            proof: vec![[1; 32], [2; 32]],
            checkpoint: note.to_string(),
        };
        let text = p.render();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra cmVjb3Jk\nindex 2\n"));
        assert_eq!(TlogProof::parse(&text).unwrap(), p);
        let none = TlogProof {
            extra: None,
            proof: vec![],
            ..p.clone()
        };
        assert_eq!(TlogProof::parse(&none.render()).unwrap(), none);
        for bad in [
            text.replacen("@v1", "@v2", 1),
            text.replacen("index 2", "index 02", 1),
            text.replacen("index 2", "index -2", 1),
            text.replacen("extra cmVjb3Jk", "extra !!", 1),
            text.replacen("index 2\n", "", 1),
            text.replacen("\n\no\n", "\no\n", 1),
            format!("{HEADER}\nindex 1\nAAAA\n\n{note}"),
        ] {
            assert!(TlogProof::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quorum_larger_than_the_witnesses_given_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::audit::checkpoint::Signer::load_or_create(&d.path().join("k"), "o").unwrap();
        assert!(Trust::new(&s.vkey(), &[], Some(1)).is_err());
        assert_eq!(Trust::new(&s.vkey(), &[], None).unwrap().quorum(), 0);
        assert!(Trust::new("nonsense", &[], None).is_err());
    }
}

//! The C2SP signed-note format (`c2sp.org/signed-note`), as far as witnesses
//! need it: a note split into its text and signature lines, signature lines
//! formatted, key IDs and verifier keys (`name+hexid+base64(type || key)`),
//! and the three mandatory lines of a checkpoint (`c2sp.org/tlog-checkpoint`).
//!
//! Parsing is strict where the specifications say MUST: valid UTF-8, no
//! control characters but newline, text separated from the signatures by the
//! last blank line, every signature line well formed, checkpoint sizes in
//! decimal without leading zeroes. Whether a signature is trusted is not this
//! module's business; it only says who claims to have signed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::audit::merkle::Hash;
use crate::identity::sha256;

/// Signature type of Ed25519 note signatures (the log's checkpoints).
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of timestamped Ed25519 witness cosignatures (cosignature/v1).
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;
/// Most signature lines read from one note; the spec asks for at least 16.
pub const MAX_SIGNATURES: usize = 64;

/// Why a note, a signature line or a verifier key is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note does not have the shape the signed-note spec requires.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// The note text is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(&'static str),
    /// A verifier key is not `name+hexid+base64(type || key)` of the right type.
    #[error("malformed verifier key: {0}")]
    Key(&'static str),
}

/// One signature line: `— <name> base64(key ID || signature)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The 4-byte key ID (big-endian uint32 in the spec).
    pub key_id: [u8; 4],
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, newline included.
    pub fn line(&self) -> String {
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }

    /// Parses one signature line (without its newline).
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
            "a signature line does not start with '— '",
        ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("a signature line has no signature"))?;
        if !valid_key_name(name) {
            return Err(NoteError::Malformed("a signature line has a bad key name"));
        }
        let blob = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        if blob.len() < 5 {
            return Err(NoteError::Malformed("a signature is too short"));
        }
        Ok(Self {
            name: name.to_string(),
            key_id: [blob[0], blob[1], blob[2], blob[3]],
            signature: blob[4..].to_vec(),
        })
    }
}

/// A signed note: its text (final newline included) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline, without the blank line.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.chars().any(|c| c != '\n' && c.is_control()) {
            return Err(NoteError::Malformed(
                "a control character other than newline",
            ));
        }
        let body = note
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("the note does not end in a newline"))?;
        // The text is separated from the signatures by the last blank line.
        let (text, sigs) = body
            .rsplit_once("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Self {
            text: format!("{text}\n"),
            signatures,
        })
    }

    /// The note as text: its text, a blank line, its signature lines.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.text);
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }
}

/// A key name is non-empty, without Unicode spaces or '+'.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// `SHA-256(name || 0x0A || type || public key)[:4]`.
pub fn key_id(name: &str, key_type: u8, public: &[u8]) -> [u8; 4] {
    let mut v = Vec::with_capacity(name.len() + 2 + public.len());
    v.extend_from_slice(name.as_bytes());
    v.push(b'\n');
    v.push(key_type);
    v.extend_from_slice(public);
    let h = sha256(&v);
    [h[0], h[1], h[2], h[3]]
}

/// A verifier key: `name+hexid+base64(type || public key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name.
    pub name: String,
    /// Its key ID, checked against the name, type and key on parsing.
    pub key_id: [u8; 4],
    /// The signature type byte.
    pub key_type: u8,
    /// The public key material.
    pub public: Vec<u8>,
}

impl VerifierKey {
    /// A verifier key from its parts; the key ID is computed.
    pub fn new(name: &str, key_type: u8, public: &[u8]) -> Self {
        Self {
            name: name.to_string(),
            key_id: key_id(name, key_type, public),
            key_type,
            public: public.to_vec(),
        }
    }

    /// Parses `name+hexid+base64(type || key)`; the ID must be the one the
    /// spec computes from the name, type and key.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Key("not name+id+key"));
        };
        if !valid_key_name(name) {
            return Err(NoteError::Key("the name is empty or holds a space or '+'"));
        }
        let key = B64
            .decode(key)
            .map_err(|_| NoteError::Key("the key is not base64"))?;
        let (&key_type, public) = key.split_first().ok_or(NoteError::Key("no key"))?;
        let k = Self::new(name, key_type, public);
        if id.len() != 8 || hex::encode(k.key_id) != id.to_ascii_lowercase() {
            return Err(NoteError::Key("the key ID does not match the name and key"));
        }
        Ok(k)
    }

    /// The key in the `name+hexid+base64(type || key)` format.
    pub fn render(&self) -> String {
        let mut k = vec![self.key_type];
        k.extend_from_slice(&self.public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(k)
        )
    }

    /// Whether a signature line claims to be by this key (name and ID both).
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }
}

/// The three mandatory lines of a checkpoint's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBody {
    /// The log's origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
}

/// Parses a checkpoint's note text: origin, size (decimal, no leading
/// zeroes), root (base64 of 32 bytes), then optional non-empty extension lines.
pub fn parse_checkpoint(text: &str) -> Result<CheckpointBody, NoteError> {
    let lines = text
        .strip_suffix('\n')
        .ok_or(NoteError::Checkpoint("the text does not end in a newline"))?;
    let mut lines = lines.split('\n');
    let origin = lines.next().unwrap_or_default();
    if origin.is_empty() {
        return Err(NoteError::Checkpoint("empty origin line"));
    }
    let size = lines
        .next()
        .and_then(parse_decimal)
        .ok_or(NoteError::Checkpoint(
            "the tree size is not a decimal number",
        ))?;
    let root = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
        .ok_or(NoteError::Checkpoint(
            "the root hash is not base64 of 32 bytes",
        ))?;
    if lines.any(str::is_empty) {
        return Err(NoteError::Checkpoint("an empty extension line"));
    }
    Ok(CheckpointBody {
        origin: origin.to_string(),
        size,
        root,
    })
}

/// An ASCII decimal without sign or leading zeroes (`0` itself allowed).
pub fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_NOTE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

    #[test]
    fn the_spec_example_parses_and_renders_back() {
        let n = Note::parse(SPEC_NOTE).unwrap();
        assert_eq!(n.signatures.len(), 2);
        assert_eq!(n.signatures[1].name, "witness.example.com/w1");
        assert_eq!(n.signatures[1].signature.len(), 72);
        assert_eq!(n.render(), SPEC_NOTE);
        let cp = parse_checkpoint(&n.text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            SPEC_NOTE.trim_end(),                             // no final newline
            &SPEC_NOTE.replace("\n\n", "\n"),                 // no blank line
            &SPEC_NOTE.replace("20852163\n", "20852163\r\n"), // control character
            &format!("{SPEC_NOTE}\u{2014} x\n"),              // no signature
            &format!("{SPEC_NOTE}junk\n"),                    // not a signature line
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checkpoint_sizes_are_canonical_decimals() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        assert_eq!(
            parse_checkpoint(&format!("o\n0\n{root}\n")).unwrap().size,
            0
        );
        for size in ["07", "+7", "-1", "", "1 "] {
            assert!(parse_checkpoint(&format!("o\n{size}\n{root}\n")).is_err());
        }
        assert!(parse_checkpoint(&format!("o\n7\n{root}\next\n")).is_ok());
        assert!(parse_checkpoint(&format!("o\n7\n{root}\n\next\n")).is_err());
        assert!(parse_checkpoint("o\n7\nAAAA\n").is_err());
    }

    #[test]
    fn verifier_keys_round_trip_and_check_their_id() {
        let k = VerifierKey::new("witness.example/w1", TYPE_COSIGNATURE_V1, &[7; 32]);
        let text = k.render();
        assert_eq!(VerifierKey::parse(&text).unwrap(), k);
        let other_name = text.replacen("w1", "w2", 1);
        assert!(VerifierKey::parse(&other_name).is_err());
        assert!(VerifierKey::parse("a b+00000000+AQ==").is_err());
    }
}

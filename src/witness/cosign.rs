//! Ed25519 cosignatures, `cosignature/v1` of `c2sp.org/tlog-cosignature`:
//! made by a witness ([`Cosigner`]), checked by anyone who trusts it
//! ([`CosignatureVerifier`]).
//!
//! The signed message is `cosignature/v1\ntime <T>\n` followed by the whole
//! checkpoint text; the signature is the 8-byte big-endian timestamp followed
//! by the 64-byte Ed25519 signature; the key ID is
//! `SHA-256(name || 0x0A || 0x04 || public key)[:4]`, and the verifier key
//! is the signed-note vkey with type byte 0x04.
//!
//! The witness key file holds the name with the key, in the Go signed-note
//! private key format (`PRIVATE+KEY+name+hexid+base64(0x04 || seed)`), so a
//! witness can never serve under a name its verifier key was not made for.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SecureRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::note::{
    Note, NoteError, NoteSignature, TYPE_COSIGNATURE_V1, VerifierKey, valid_key_name,
};

/// Largest timestamp a cosignature may carry (2^63 - 1).
const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Why a key file could not be made or read, or a cosignature does not check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CosignError {
    /// Reading or writing the key file failed.
    #[error("{file}: {source}")]
    Io {
        /// The key file.
        file: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The key file does not hold a cosignature/v1 private key.
    #[error("{file}: {reason}")]
    KeyFile {
        /// The key file.
        file: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The name cannot be a note key name.
    #[error("'{0}' cannot be a key name: it must be non-empty, without spaces or '+'")]
    BadName(String),
    /// A verifier key is malformed or not of type 0x04.
    #[error(transparent)]
    Key(#[from] NoteError),
    /// The note holds no signature line of this cosigner.
    #[error("no cosignature by {0}")]
    Missing(String),
    /// A line of this cosigner is there, but it does not verify.
    #[error("the cosignature by {0} does not verify")]
    Invalid(String),
    /// The system's random source failed.
    #[error("no randomness for a new key")]
    Random,
}

/// The message a cosignature/v1 signs: header, time line, checkpoint text.
pub fn signed_message(checkpoint_text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}").into_bytes()
}

/// A witness's signing key with its name.
pub struct Cosigner {
    key: Ed25519KeyPair,
    vkey: VerifierKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.vkey.name)
            .finish()
    }
}

impl Cosigner {
    /// A new key for `name`, written to `path` (mode 0600, never over an
    /// existing file). Blocking.
    pub fn generate(name: &str, path: &Path) -> Result<Self, CosignError> {
        if !valid_key_name(name) {
            return Err(CosignError::BadName(name.to_string()));
        }
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| CosignError::Random)?;
        let me = Self::from_seed(name, &seed)?;
        let mut blob = vec![TYPE_COSIGNATURE_V1];
        blob.extend_from_slice(&seed);
        let text = format!(
            "PRIVATE+KEY+{name}+{}+{}\n",
            hex::encode(me.vkey.key_id),
            B64.encode(blob)
        );
        let io = |source| CosignError::Io {
            file: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(me)
    }

    /// Reads a key file made by [`Cosigner::generate`]. Blocking.
    pub fn load(path: &Path) -> Result<Self, CosignError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CosignError::Io {
            file: file.clone(),
            source,
        })?;
        let bad = |reason| CosignError::KeyFile {
            file: file.clone(),
            reason,
        };
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(bad("not a PRIVATE+KEY+name+id+key file"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not a PRIVATE+KEY+name+id+key file"));
        };
        let blob = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let seed = match blob.split_first() {
            Some((&TYPE_COSIGNATURE_V1, seed)) if seed.len() == 32 => seed,
            _ => return Err(bad("not an Ed25519 cosignature/v1 key (type 0x04)")),
        };
        let me = Self::from_seed(name, seed)?;
        if hex::encode(me.vkey.key_id) != id {
            return Err(bad("the key ID does not match the name and key"));
        }
        Ok(me)
    }

    fn from_seed(name: &str, seed: &[u8]) -> Result<Self, CosignError> {
        if !valid_key_name(name) {
            return Err(CosignError::BadName(name.to_string()));
        }
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| CosignError::Random)?;
        let vkey = VerifierKey::new(name, TYPE_COSIGNATURE_V1, key.public_key().as_ref());
        Ok(Self { key, vkey })
    }

    /// The cosigner's name.
    pub fn name(&self) -> &str {
        &self.vkey.name
    }

    /// The verifier key, `name+hexid+base64(0x04 || public key)`: what a log
    /// or a monitor configures to trust this witness.
    pub fn vkey(&self) -> String {
        self.vkey.render()
    }

    /// Cosigns a checkpoint text (the note text, final newline included, no
    /// signatures) at `timestamp` (seconds since the epoch).
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> NoteSignature {
        let timestamp = timestamp.min(MAX_TIMESTAMP);
        let sig = self.key.sign(&signed_message(checkpoint_text, timestamp));
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(sig.as_ref());
        NoteSignature {
            name: self.vkey.name.clone(),
            key_id: self.vkey.key_id,
            signature,
        }
    }
}

/// A witness as a log or a monitor trusts it: its name and cosignature/v1 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    vkey: VerifierKey,
}

impl CosignatureVerifier {
    /// Parses a witness verifier key (`name+hexid+base64(0x04 || key)`).
    pub fn parse(vkey: &str) -> Result<Self, CosignError> {
        let vkey = VerifierKey::parse(vkey.trim())?;
        if vkey.key_type != TYPE_COSIGNATURE_V1 || vkey.public.len() != 32 {
            return Err(NoteError::Key("not an Ed25519 cosignature/v1 key (type 0x04)").into());
        }
        Ok(Self { vkey })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.vkey.name
    }

    /// Whether a signature line claims to be this witness's (name and key ID).
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        self.vkey.matches(sig)
    }

    /// Checks one cosignature over a checkpoint text; gives its timestamp.
    pub fn verify_signature(
        &self,
        checkpoint_text: &str,
        sig: &NoteSignature,
    ) -> Result<u64, CosignError> {
        let invalid = || CosignError::Invalid(self.vkey.name.clone());
        if !self.matches(sig) || sig.signature.len() != 8 + 64 {
            return Err(invalid());
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&sig.signature[..8]);
        let timestamp = u64::from_be_bytes(ts);
        if timestamp > MAX_TIMESTAMP {
            return Err(invalid());
        }
        UnparsedPublicKey::new(&ED25519, &self.vkey.public)
            .verify(
                &signed_message(checkpoint_text, timestamp),
                &sig.signature[8..],
            )
            .map_err(|_| invalid())?;
        Ok(timestamp)
    }

    /// Finds and checks this witness's cosignature in a note (a checkpoint
    /// with any signatures, or a checkpoint with a witness's response lines
    /// appended); gives its timestamp. Lines of other keys are ignored; a
    /// line of this key that does not verify is an error, as the spec asks.
    pub fn verify_note(&self, note: &Note) -> Result<u64, CosignError> {
        let mut found = None;
        for sig in note.signatures.iter().filter(|s| self.matches(s)) {
            let t = self.verify_signature(&note.text, sig)?;
            found = Some(found.map_or(t, |f: u64| f.max(t)));
        }
        found.ok_or_else(|| CosignError::Missing(self.vkey.name.clone()))
    }

    /// Parses a witness's `add-checkpoint` response body (signature lines)
    /// and gives this witness's verified cosignature in it, ready to be
    /// added to the checkpoint's note.
    pub fn verify_response(
        &self,
        checkpoint_text: &str,
        body: &str,
    ) -> Result<NoteSignature, CosignError> {
        let mut found = None;
        for line in body.lines() {
            let sig = NoteSignature::parse_line(line)?;
            if self.matches(&sig) {
                self.verify_signature(checkpoint_text, &sig)?;
                found = Some(sig);
            }
        }
        found.ok_or_else(|| CosignError::Missing(self.vkey.name.clone()))
    }
}

/// A checkpoint note with cosignature lines added after its own signatures,
/// skipping lines it already holds: the cosigned checkpoint as published.
pub fn add_cosignatures(
    checkpoint_note: &str,
    cosignatures: &[NoteSignature],
) -> Result<String, NoteError> {
    let mut note = Note::parse(checkpoint_note)?;
    for c in cosignatures {
        if !note.signatures.contains(c) {
            note.signatures.push(c.clone());
        }
    }
    Ok(note.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosignature_verifies_and_binds_text_time_and_key() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("w.key");
        let c = Cosigner::generate("witness.example/w1", &path).unwrap();
        assert!(Cosigner::generate("witness.example/w1", &path).is_err());
        let again = Cosigner::load(&path).unwrap();
        assert_eq!(again.vkey(), c.vkey());
        let v = CosignatureVerifier::parse(&c.vkey()).unwrap();
        let text = "o\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let sig = again.cosign(text, 1_679_315_147);
        assert_eq!(v.verify_signature(text, &sig).unwrap(), 1_679_315_147);
        assert_eq!(v.verify_response(text, &sig.line()).unwrap(), sig);
        assert!(v.verify_signature(&text.replace('3', "4"), &sig).is_err());
        let mut later = sig.clone();
        later.signature[7] ^= 1;
        assert!(v.verify_signature(text, &later).is_err());
        let note = add_cosignatures(
            &format!("{text}\n{}", sig.line()),
            std::slice::from_ref(&sig),
        )
        .unwrap();
        assert_eq!(note.matches('\u{2014}').count(), 1);
    }
}

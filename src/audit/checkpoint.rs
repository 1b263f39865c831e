//! Signed checkpoints in the C2SP tlog-checkpoint / signed-note text format,
//! signed with Ed25519 (ring).
//!
//! A checkpoint says "the log `origin` had `size` records with root `root`",
//! signed by the gateway. Partners keep the checkpoints they saw; a consistency
//! proof between two of them shows the log only grew. The verifier key is
//! exported in the note `vkey` format (`name+hash+base64`), so standard
//! signed-note tools can check it too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::merkle::Hash;
use crate::identity::sha256;

/// Signature algorithm byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;

/// A checkpoint: its parsed parts and the full signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `ketenpoort/<deployment>`.
    pub origin: String,
    /// Number of records.
    pub size: u64,
    /// Merkle root at that size.
    pub root: Hash,
    /// The signed note as text.
    pub note: String,
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Not a signed note of the expected shape.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// No signature by this key.
    #[error("no signature by key {0}")]
    NoSignature(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The verifier key is malformed.
    #[error("malformed verifier key")]
    BadKey,
    /// Signed by a key of the log that was not in force at that size
    /// (before it was announced, or after the next key was).
    #[error("signed by key {key}, which was not the log's key at size {size}")]
    NotInForce {
        /// The key's name and ID.
        key: String,
        /// The checkpoint's size.
        size: u64,
    },
}

fn key_hash(name: &str, public: &[u8]) -> [u8; 4] {
    let mut v = Vec::with_capacity(name.len() + 2 + public.len());
    v.extend_from_slice(name.as_bytes());
    v.push(b'\n');
    v.push(ALG_ED25519);
    v.extend_from_slice(public);
    let h = sha256(&v);
    [h[0], h[1], h[2], h[3]]
}

fn body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// The gateway's checkpoint signing key.
pub struct Signer {
    key: Ed25519KeyPair,
    name: String,
    hash: [u8; 4],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("name", &self.name).finish()
    }
}

impl Signer {
    /// Loads the PKCS#8 key at `path`, or makes one (mode 0600). Blocking.
    pub fn load_or_create(path: &Path, origin: &str) -> std::io::Result<Self> {
        let pkcs8 = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                    .map_err(|_| std::io::Error::other("cannot generate an Ed25519 key"))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    Ok(mut f) => {
                        f.write_all(doc.as_ref())?;
                        f.sync_all()?;
                        doc.as_ref().to_vec()
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Self::from_pkcs8(path, &pkcs8, origin)
    }

    /// Makes a new key at `path` (mode 0600), replacing what a rotation
    /// cut short may have left there. Blocking.
    pub fn create(path: &Path, origin: &str) -> std::io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Self::load_or_create(path, origin)
    }

    /// Loads the PKCS#8 key at `path`; a missing file is an error (a
    /// restore must not make a new key). Blocking.
    pub fn load(path: &Path, origin: &str) -> std::io::Result<Self> {
        Self::from_pkcs8(path, &std::fs::read(path)?, origin)
    }

    fn from_pkcs8(path: &Path, pkcs8: &[u8], origin: &str) -> std::io::Result<Self> {
        let key = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not an Ed25519 key", path.display()),
            )
        })?;
        let hash = key_hash(origin, key.public_key().as_ref());
        Ok(Self {
            key,
            name: origin.to_string(),
            hash,
        })
    }

    /// The verifier key, `name+hash+base64(0x01 || public key)`: what partners
    /// keep to check checkpoints.
    pub fn vkey(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.public_key().as_ref());
        format!("{}+{}+{}", self.name, hex::encode(self.hash), B64.encode(k))
    }

    /// Signs a checkpoint for this size and root.
    pub fn sign(&self, size: u64, root: &Hash) -> Checkpoint {
        sign_together(&[self], size, root)
    }

    /// The signature line of this key on a note's text.
    fn signature_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.hash.to_vec();
        blob.extend_from_slice(sig.as_ref());
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// One checkpoint signed by several keys of the log, in this order: the
/// note that announces a new key carries the old key's line and the new
/// one's (signed-note allows any number of signature lines). All signers
/// carry the log's origin as their name. `signers` must not be empty.
pub fn sign_together(signers: &[&Signer], size: u64, root: &Hash) -> Checkpoint {
    let name = signers.first().map_or("", |s| s.name.as_str());
    let text = body(name, size, root);
    let mut note = format!("{text}\n");
    for s in signers {
        note.push_str(&s.signature_line(&text));
    }
    Checkpoint {
        origin: name.to_string(),
        size,
        root: *root,
        note,
    }
}

/// A parsed verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    hash: [u8; 4],
    public: Vec<u8>,
}

impl Verifier {
    /// `name+hash`: how messages name the key.
    pub fn id(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.hash))
    }

    /// Parses `name+hash+base64key`.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        // The name holds no '+'; the base64 key may.
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(h), Some(k)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CheckpointError::BadKey);
        };
        // signed-note: key names are non-empty, without spaces or '+'.
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(CheckpointError::BadKey);
        }
        let key = B64.decode(k).map_err(|_| CheckpointError::BadKey)?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(CheckpointError::BadKey);
        }
        let public = key[1..].to_vec();
        let hash = key_hash(name, &public);
        if hex::encode(hash) != h.to_ascii_lowercase() {
            return Err(CheckpointError::BadKey);
        }
        Ok(Self {
            name: name.to_string(),
            hash,
            public,
        })
    }

    /// Parses a signed checkpoint and checks its signature, as signed-note
    /// and tlog-checkpoint ask: signatures of other keys are ignored, one of
    /// this key (name and key ID) that does not verify rejects the note.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let (text, sigs) = split_note(note)?;
        let (origin, size, root) = parse_text(&text)?;
        let sigs = sigs
            .split('\n')
            .map(parse_signature_line)
            .collect::<Result<Vec<_>, _>>()?;
        for (name, blob) in sigs {
            if name != self.name || blob[..4] != self.hash {
                continue;
            }
            if blob.len() != 68 {
                return Err(CheckpointError::BadSignature);
            }
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &blob[4..])
                .map_err(|_| CheckpointError::BadSignature)?;
            return Ok(Checkpoint {
                origin: origin.to_string(),
                size,
                root,
                note: note.to_string(),
            });
        }
        Err(CheckpointError::NoSignature(self.name.clone()))
    }
}

/// A note's text (final newline included) and its signature lines (without
/// the last newline): UTF-8 without control characters but newline, the
/// text separated from the signatures by the last blank line.
fn split_note(note: &str) -> Result<(String, &str), CheckpointError> {
    if note.chars().any(|c| c != '\n' && c.is_control()) {
        return Err(CheckpointError::Malformed("a control character"));
    }
    let body = note
        .strip_suffix('\n')
        .ok_or(CheckpointError::Malformed("no newline at the end"))?;
    let (text, sigs) = body.rsplit_once("\n\n").ok_or(CheckpointError::Malformed(
        "no blank line before the signatures",
    ))?;
    Ok((format!("{text}\n"), sigs))
}

/// Origin, size and root of a checkpoint text: a non-empty origin, a size
/// in decimal without leading zeroes, a root of 32 bytes, then non-empty
/// extension lines if any.
fn parse_text(text: &str) -> Result<(&str, u64, Hash), CheckpointError> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = body.split('\n');
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or(CheckpointError::Malformed("no origin"))?;
    let size: u64 = lines
        .next()
        .filter(|l| *l == "0" || (!l.starts_with('0') && l.bytes().all(|b| b.is_ascii_digit())))
        .and_then(|l| l.parse().ok())
        .ok_or(CheckpointError::Malformed("no tree size"))?;
    let root: Hash = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(CheckpointError::Malformed("no root hash"))?;
    if lines.any(str::is_empty) {
        return Err(CheckpointError::Malformed("an empty extension line"));
    }
    Ok((origin, size, root))
}

/// `— <name> base64(key ID || signature)` → name and the decoded bytes.
fn parse_signature_line(line: &str) -> Result<(&str, Vec<u8>), CheckpointError> {
    let malformed = CheckpointError::Malformed("a malformed signature line");
    let (name, b64) = line
        .strip_prefix("\u{2014} ")
        .and_then(|rest| rest.split_once(' '))
        .ok_or(malformed.clone())?;
    let blob = B64.decode(b64).map_err(|_| malformed.clone())?;
    if name.is_empty() || blob.len() < 5 {
        return Err(malformed);
    }
    Ok((name, blob))
}

/// Appends a checkpoint to the checkpoints file (`len u32 LE | note`) and
/// syncs it. Blocking.
pub fn append(file: &mut File, cp: &Checkpoint) -> std::io::Result<()> {
    let mut out = (cp.note.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(cp.note.as_bytes());
    file.write_all(&out)?;
    file.sync_data()
}

/// Every note in a checkpoints file, in order; a torn last entry is skipped.
pub fn read_all(path: &Path) -> std::io::Result<Vec<String>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let n = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        if i + 4 + n > bytes.len() {
            break;
        }
        out.push(String::from_utf8_lossy(&bytes[i + 4..i + 4 + n]).into_owned());
        i += 4 + n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(&d.path().join("k"), "ketenpoort/test").unwrap();
        let cp = s.sign(8, &[5; 32]);
        assert!(cp.note.starts_with("ketenpoort/test\n8\n"));
        let v = Verifier::parse(&s.vkey()).unwrap();
        assert_eq!(v.verify(&cp.note).unwrap(), cp);
        let forged = cp.note.replacen("\n8\n", "\n9\n", 1);
        assert_eq!(v.verify(&forged), Err(CheckpointError::BadSignature));
        // What signed-note and tlog-checkpoint refuse.
        let leading_zero = cp.note.replacen("\n8\n", "\n08\n", 1);
        assert!(matches!(
            v.verify(&leading_zero),
            Err(CheckpointError::Malformed(_))
        ));
        let cr = cp.note.replacen("\n8\n", "\n8\r\n", 1);
        assert!(matches!(v.verify(&cr), Err(CheckpointError::Malformed(_))));
        let junk = format!("{}junk\n", cp.note);
        assert!(matches!(
            v.verify(&junk),
            Err(CheckpointError::Malformed(_))
        ));
        // Other keys' signatures (a witness's cosignature) are ignored.
        let cosigned = format!("{}\u{2014} witness.example/w1 AAAAAAAA\n", cp.note);
        assert_eq!(v.verify(&cosigned).unwrap().size, 8);
        // The same key file gives the same key.
        let again = Signer::load_or_create(&d.path().join("k"), "ketenpoort/test").unwrap();
        assert_eq!(again.vkey(), s.vkey());
    }
}

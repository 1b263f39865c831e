//! The subject key: how a V-nummer becomes the pseudonym in audit records.
//!
//! Records must let a privacy officer find every disclosure about one person
//! without the log holding the V-nummer itself. A keyed HMAC does that: the
//! same V-nummer always gives the same pseudonym, and without the key (kept
//! under `<data_dir>/keys`, outside the log) a pseudonym cannot be tested
//! against guessed V-nummers. It lives apart from the store because tools that
//! answer an access request need it without opening the writer.

use std::path::Path;

use ring::hmac;

use super::merkle::Hash;

/// The key that turns a V-nummer into the subject pseudonym of audit records.
#[derive(Clone)]
pub struct SubjectKey(hmac::Key);

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

impl SubjectKey {
    /// Loads (or makes) the key. Blocking.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        Ok(Self(hmac::Key::new(
            hmac::HMAC_SHA256,
            &crate::keys::load_or_create(path)?,
        )))
    }
    /// The pseudonym of a V-nummer.
    pub fn pseudonym(&self, vnummer: &str) -> Hash {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, vnummer.as_bytes()).as_ref());
        out
    }
}

//! The witnesses the gateway sends its checkpoints to, from `[[witness]]`:
//! each one's name, where to post, and the key its cosignatures must verify
//! with.

use hyper::Uri;

use crate::config::{ConfigError, GatewayConfig};
use crate::witness::cosign::CosignatureVerifier;

/// One configured witness.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name (the key name of its cosignatures); metrics and logs use it.
    pub name: String,
    /// Its `add-checkpoint` URL.
    pub add_checkpoint: Uri,
    /// Checks its cosignatures.
    pub verifier: CosignatureVerifier,
}

/// The configured witnesses with their keys parsed; a key that is not a
/// cosignature/v1 verifier key, or that names another witness, is an error
/// at its place in the file.
pub fn targets(config: &GatewayConfig) -> Result<Vec<Target>, ConfigError> {
    let mut out = Vec::with_capacity(config.witnesses.list.len());
    for w in &config.witnesses.list {
        let at = |reason: String| ConfigError {
            file: config.file.clone(),
            at: Some(w.vkey_at),
            reason,
        };
        let verifier = CosignatureVerifier::parse(&w.vkey).map_err(|e| {
            at(format!(
                "vkey is not a witness verifier key (name+id+key, Ed25519 cosignature/v1, type 0x04): {e}"
            ))
        })?;
        if verifier.name() != w.name {
            return Err(at(format!(
                "the vkey is for '{}', not for witness '{}'",
                verifier.name(),
                w.name
            )));
        }
        let url = format!("{}/add-checkpoint", w.url.trim_end_matches('/'));
        let add_checkpoint = url.parse().map_err(|_| ConfigError {
            file: config.file.clone(),
            at: None,
            reason: format!("witness '{}': '{url}' is not a URL", w.name),
        })?;
        out.push(Target {
            name: w.name.clone(),
            add_checkpoint,
            verifier,
        });
    }
    Ok(out)
}

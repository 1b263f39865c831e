//! One pilot's covenant state as it is kept: the versions seen, every
//! signature, who revoked the version in force, and which version that is.
//! Plain data with the questions asked of it; the registry changes it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::jws::Decision;

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Proposed; waiting for the signatures it needs.
    Pending,
    /// The version the gateway enforces.
    InForce,
    /// Was in force, or was pending when a later version took effect.
    Superseded,
    /// Withdrawn by an administrator before it took effect.
    Withdrawn,
}

/// One version of the covenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// `sha256:<hex>`.
    pub version: String,
    /// When it was (last) proposed, RFC 3339.
    pub proposed: String,
    /// Where it stands.
    pub status: Status,
    /// The partners the version lists: who may sign it.
    pub partners: Vec<String>,
    /// When it took effect, if it did.
    #[serde(default)]
    pub took_effect: Option<String>,
    /// Why it could take effect: `signed` or `narrows <version>`.
    #[serde(default)]
    pub basis: Option<String>,
}

/// One signature, as received and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The version signed.
    pub version: String,
    /// The signer.
    pub partner: String,
    /// Accept or revoke.
    pub decision: Decision,
    /// When the gateway received it, RFC 3339.
    pub time: String,
    /// SHA-256 of the signing certificate, hex.
    pub cert_sha256: String,
    /// The audit record of it.
    pub record: u64,
    /// The JWS itself: the evidence.
    pub jws: String,
}

/// A pilot's covenant state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PilotState {
    /// The version in force, if any.
    #[serde(default)]
    pub in_force: Option<String>,
    /// Every version seen, in the order proposed.
    #[serde(default)]
    pub versions: Vec<VersionEntry>,
    /// Partners that revoked their acceptance of the version in force, with when.
    #[serde(default)]
    pub revoked: BTreeMap<String, String>,
    /// Every signature, in the order received.
    #[serde(default)]
    pub signatures: Vec<Signature>,
}

impl PilotState {
    /// The entry of a version.
    pub fn entry(&self, version: &str) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The entry of a version, to change.
    pub fn entry_mut(&mut self, version: &str) -> Option<&mut VersionEntry> {
        self.versions.iter_mut().find(|v| v.version == version)
    }

    /// Partners whose last word on `version` is accept, with when.
    pub fn accepted(&self, version: &str) -> BTreeMap<String, String> {
        let mut last: BTreeMap<&str, &Signature> = BTreeMap::new();
        for s in self.signatures.iter().filter(|s| s.version == version) {
            last.insert(&s.partner, s);
        }
        last.into_iter()
            .filter(|(_, s)| s.decision == Decision::Accept)
            .map(|(p, s)| (p.to_string(), s.time.clone()))
            .collect()
    }

    /// Pending versions, newest first.
    pub fn pending_newest_first(&self) -> Vec<String> {
        self.versions
            .iter()
            .rev()
            .filter(|v| v.status == Status::Pending)
            .map(|v| v.version.clone())
            .collect()
    }

    /// Makes `version` the one in force: the previous one and every version
    /// proposed before it that still waits are superseded, and partners that
    /// accepted it are no longer counted as having revoked.
    pub fn take_effect(&mut self, version: &str, time: &str, basis: &str) {
        let pos = self.versions.iter().position(|v| v.version == version);
        for (i, v) in self.versions.iter_mut().enumerate() {
            let older = pos.is_some_and(|p| i < p);
            if v.status == Status::InForce || (v.status == Status::Pending && older) {
                v.status = Status::Superseded;
            }
        }
        if let Some(e) = self.entry_mut(version) {
            e.status = Status::InForce;
            e.took_effect = Some(time.to_string());
            e.basis = Some(basis.to_string());
        }
        let signers: BTreeSet<String> = self.accepted(version).into_keys().collect();
        self.revoked.retain(|p, _| !signers.contains(p));
        self.in_force = Some(version.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(v: &str, p: &str, d: Decision) -> Signature {
        Signature {
            version: v.into(),
            partner: p.into(),
            decision: d,
            time: "t".into(),
            cert_sha256: String::new(),
            record: 0,
            jws: String::new(),
        }
    }

    #[test]
    fn the_last_word_counts_and_taking_effect_supersedes() {
        let mut s = PilotState::default();
        for v in ["a", "b", "c"] {
            s.versions.push(VersionEntry {
                version: v.into(),
                proposed: "t".into(),
                status: Status::Pending,
                partners: vec![],
                took_effect: None,
                basis: None,
            });
        }
        s.signatures.push(sig("b", "dtv", Decision::Accept));
        s.signatures.push(sig("b", "ind", Decision::Accept));
        s.signatures.push(sig("b", "ind", Decision::Revoke));
        assert_eq!(s.accepted("b").into_keys().collect::<Vec<_>>(), ["dtv"]);
        s.revoked.insert("dtv".into(), "t".into());
        s.take_effect("b", "t", "signed");
        assert_eq!(s.entry("a").unwrap().status, Status::Superseded);
        assert_eq!(s.entry("c").unwrap().status, Status::Pending);
        assert!(s.revoked.is_empty());
        assert_eq!(s.pending_newest_first(), ["c"]);
    }
}

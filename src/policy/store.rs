//! The running policy: partners, their certificate index, the pilots' rules and
//! the pseudonym keys, swapped whole when a file changes. A file that does not
//! validate leaves the running snapshot in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::{PolicySet, PseudonymKeys};
use crate::config::{ConfigError, GatewayConfig};
use crate::identity::PartnerIndex;

/// Everything one request needs from configuration, consistent with itself.
#[derive(Debug)]
pub struct Snapshot {
    /// Partners, services and pilots' rules.
    pub policy: PolicySet,
    /// Certificate → partner, built from the same partners.
    pub identities: PartnerIndex,
    /// Pseudonym keys of every pilot in `policy`.
    pub keys: PseudonymKeys,
}

impl Snapshot {
    /// Reads partners, pilots and keys. Blocking.
    pub fn load(
        partners_file: &Path,
        pilots_dir: &Path,
        data_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let policy = PolicySet::load(partners_file, pilots_dir)?;
        let keys = crate::keys::pseudonym_keys(data_dir, policy.pilots.keys().map(String::as_str))
            .map_err(|e| ConfigError {
                file: crate::keys::dir(data_dir),
                at: None,
                reason: format!("pseudonym keys: {e}"),
            })?;
        Ok(Self {
            identities: PartnerIndex::new(&policy.partners),
            policy,
            keys,
        })
    }
}

/// The current snapshot, swappable while requests are served.
#[derive(Debug)]
pub struct PolicyStore {
    partners_file: PathBuf,
    pilots_dir: PathBuf,
    data_dir: PathBuf,
    current: crate::swap::Swap<Snapshot>,
}

impl PolicyStore {
    /// Loads the first snapshot; an error stops the start.
    pub fn load(config: &GatewayConfig) -> Result<Self, ConfigError> {
        let snap = Snapshot::load(&config.partners_file, &config.pilots_dir, &config.data_dir)?;
        Ok(Self {
            partners_file: config.partners_file.clone(),
            pilots_dir: config.pilots_dir.clone(),
            data_dir: config.data_dir.clone(),
            current: crate::swap::Swap::new(snap),
        })
    }

    /// The snapshot for a new connection or request.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.get()
    }

    /// Re-reads the files; swaps only when everything validates. Blocking.
    pub fn reload(&self) -> Result<(), ConfigError> {
        self.current
            .replace_with(|| Snapshot::load(&self.partners_file, &self.pilots_dir, &self.data_dir))
    }

    /// What to watch: the folders of partners.toml and of the pilot files,
    /// and partners.toml itself (its folder holds other files too).
    pub fn watched(&self) -> (Vec<PathBuf>, &Path) {
        let mut dirs = crate::watch::parents(std::slice::from_ref(&self.partners_file));
        dirs.push(self.pilots_dir.clone());
        (dirs, &self.partners_file)
    }
}

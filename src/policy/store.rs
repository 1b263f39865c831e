//! The running policy: partners, their certificate index, the pilots' rules and
//! the pseudonym keys, swapped whole when a file changes. A file that does not
//! validate leaves the running snapshot in place.
//!
//! What runs is not always what the files say: a pilot runs the covenant
//! version its partners signed, which the file on disk may already have moved
//! past. The policy layer does not know about signatures; an [`Enforce`] from
//! above (the covenant registry) turns the files as read into the policy that
//! runs, and [`PolicyStore::refresh`] asks it again when a signature arrives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::partners::Partners;

use super::model::{PolicySet, PseudonymKeys};
use crate::config::{ConfigError, GatewayConfig};
use crate::identity::PartnerIndex;

/// Turns the policy files as read into the policy that runs.
pub trait Enforce: Send + Sync + std::fmt::Debug {
    /// The policy to run, given the files as read (`partners_bytes`: the
    /// partners file, for each pilot's policy version). Never fails: what it
    /// cannot establish it refuses (fail closed) and logs.
    fn enforce(&self, on_disk: &PolicySet, partners_bytes: &[u8]) -> PolicySet;
}

/// Everything one request needs from configuration, consistent with itself.
#[derive(Debug)]
pub struct Snapshot {
    /// Partners, services and pilots' rules, as they run.
    pub policy: PolicySet,
    /// The same as the files hold them (a pilot may run an older version
    /// than its file while partners have yet to sign the newer one).
    pub on_disk: Arc<PolicySet>,
    /// The partners file as read.
    pub partners_bytes: Arc<[u8]>,
    /// Certificate → partner, built from the same partners.
    pub identities: PartnerIndex,
    /// Pseudonym keys of every pilot in `policy`.
    pub keys: PseudonymKeys,
}

impl Snapshot {
    /// Reads partners, pilots and keys, as the files hold them. Blocking.
    pub fn load(
        partners_file: &Path,
        pilots_dir: &Path,
        data_dir: &Path,
    ) -> Result<Self, ConfigError> {
        Self::load_enforced(partners_file, pilots_dir, data_dir, None)
    }

    /// Reads partners, pilots and keys, and runs what `enforce` makes of them.
    pub fn load_enforced(
        partners_file: &Path,
        pilots_dir: &Path,
        data_dir: &Path,
        enforce: Option<&dyn Enforce>,
    ) -> Result<Self, ConfigError> {
        let partners_src = crate::config::Source::read(partners_file)?;
        let partners = Partners::from_source(&partners_src)?;
        let bytes: Arc<[u8]> = Arc::from(partners_src.text.as_bytes());
        let on_disk = Arc::new(PolicySet::load_pilots(
            Arc::new(partners),
            &bytes,
            pilots_dir,
        )?);
        let keys = crate::keys::pseudonym_keys(data_dir, on_disk.pilots.keys().map(String::as_str))
            .map_err(|e| ConfigError {
                file: crate::keys::dir(data_dir),
                at: None,
                reason: format!("pseudonym keys: {e}"),
            })?;
        let policy = match enforce {
            Some(e) => e.enforce(&on_disk, &bytes),
            None => (*on_disk).clone(),
        };
        // Exchanges run on `policy`; a key it lacks is still derived on
        // demand, the same key.
        let keys = keys.derived_for(&policy);
        Ok(Self {
            identities: PartnerIndex::new(&policy.partners),
            policy,
            on_disk,
            partners_bytes: bytes,
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
    enforce: Option<Arc<dyn Enforce>>,
    /// Held while a new snapshot is built, so a refresh cannot swap in a
    /// snapshot older than the reload that ran beside it.
    building: std::sync::Mutex<()>,
    current: crate::swap::Swap<Snapshot>,
}

impl PolicyStore {
    /// Loads the first snapshot, as the files hold it; an error stops the start.
    pub fn load(config: &GatewayConfig) -> Result<Self, ConfigError> {
        Self::load_enforced(config, None)
    }

    /// Loads the first snapshot through `enforce`; an error stops the start.
    pub fn load_enforced(
        config: &GatewayConfig,
        enforce: Option<Arc<dyn Enforce>>,
    ) -> Result<Self, ConfigError> {
        let snap = Snapshot::load_enforced(
            &config.partners_file,
            &config.pilots_dir,
            &config.data_dir,
            enforce.as_deref(),
        )?;
        Ok(Self {
            partners_file: config.partners_file.clone(),
            pilots_dir: config.pilots_dir.clone(),
            data_dir: config.data_dir.clone(),
            enforce,
            building: std::sync::Mutex::new(()),
            current: crate::swap::Swap::new(snap),
        })
    }

    /// Enforces again on the files as last read (a signature arrived, a
    /// proposal was withdrawn): no file is re-read, so a file being edited
    /// cannot hold up a revocation. Blocking.
    pub fn refresh(&self) -> Result<(), ConfigError> {
        let _one = self.building.lock().unwrap_or_else(|p| p.into_inner());
        self.current.replace_with(|| {
            let old = self.current.get();
            let policy = match &self.enforce {
                Some(e) => e.enforce(&old.on_disk, &old.partners_bytes),
                None => (*old.on_disk).clone(),
            };
            let keys = old.keys.clone().derived_for(&policy);
            Ok::<_, ConfigError>(Snapshot {
                identities: PartnerIndex::new(&policy.partners),
                policy,
                on_disk: old.on_disk.clone(),
                partners_bytes: old.partners_bytes.clone(),
                keys,
            })
        })
    }

    /// The snapshot for a new connection or request.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.get()
    }

    /// Re-reads the files; swaps only when everything validates. Blocking.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let _one = self.building.lock().unwrap_or_else(|p| p.into_inner());
        self.current.replace_with(|| {
            Snapshot::load_enforced(
                &self.partners_file,
                &self.pilots_dir,
                &self.data_dir,
                self.enforce.as_deref(),
            )
        })
    }

    /// What to watch: the folders of partners.toml and of the pilot files,
    /// and partners.toml itself (its folder holds other files too).
    pub fn watched(&self) -> (Vec<PathBuf>, &Path) {
        let mut dirs = crate::watch::parents(std::slice::from_ref(&self.partners_file));
        dirs.push(self.pilots_dir.clone());
        (dirs, &self.partners_file)
    }
}

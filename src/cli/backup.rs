//! `ketenpoort backup` and `ketenpoort restore`: the embedded data
//! directory copied while the gateway runs, and put back into an empty one
//! (see [`crate::backup`]). With PostgreSQL as storage, its own tools back
//! up the database (docs/operations.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::report::Report;
use crate::config::GatewayConfig;

/// Runs `backup`: through the running gateway's admin socket.
pub fn backup(config_file: &Path, to: &Path, include_keys: bool) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    let s = crate::admin::backup(&config, to, include_keys).with_context(|| {
        format!(
            "backup through {} (the running gateway takes it; is it running with this configuration?)",
            crate::admin::socket_path(&config.data_dir).display()
        )
    })?;
    let mut r = Report::new().out(format!(
        "backup in {}: {} audit records up to a signed checkpoint, {} files, {} bytes; manifest.json holds their SHA-256\n",
        to.display(),
        s.size,
        s.files,
        s.bytes
    ));
    r = if s.secret_keys {
        r.err(
            "warning: this backup holds the secret keys (subject pseudonyms, checkpoint signing): whoever reads it can link audit records to persons; keep it as safe as the data directory\n",
        )
    } else {
        r.err(
            "note: no secret keys in this backup; a restore needs the keys/ folder of the data directory (--keys DIR): keep a copy of it apart\n",
        )
    };
    Ok(r)
}

/// Runs `restore`: no gateway may run on the target data directory.
pub fn restore(config_file: &Path, from: &Path, keys: Option<PathBuf>) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    let r = crate::backup::restore::restore(from, &config.data_dir, keys.as_deref())?;
    Ok(Report::new().out(format!(
        "restored into {}: {} audit records (verified against the backup's checkpoint), {} files{}; the gateway rebuilds the caches and the index at its start\n",
        config.data_dir.display(),
        r.size,
        r.files,
        if r.keys_from_elsewhere {
            ", keys from --keys"
        } else {
            ""
        }
    )))
}

//! `ketenpoort demo`: the library's scripted consultation, given a runtime.
//! The demo prints its own table as the script plays, so that a person
//! watching sees each step as it happens; only its verdict comes back here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::report::Report;

/// Plays the demo; fails (exit 1) when a step did not do what the script expects.
/// Its partners and pilots come from `--config` when given, else from
/// `./config/ketenpoort.toml` when present (a checkout), else from the
/// shipped configuration inside the binary: never from a system install's
/// `/etc/ketenpoort`, whose partners are real.
pub fn demo(config: Option<&Path>, once: bool, dir: PathBuf) -> Result<Report> {
    let local = Path::new(crate::config::DEFAULT_CONFIG);
    let config = config.or_else(|| local.exists().then_some(local));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let ok = rt.block_on(crate::demo::run_demo(crate::demo::Options {
        config: config.map(Path::to_path_buf),
        dir,
        once,
    }))?;
    Ok(if ok {
        Report::new()
    } else {
        Report::new().failed()
    })
}

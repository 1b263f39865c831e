//! `ketenpoort serve`: the gateway's own process. The listeners are bound here,
//! not in the library's `server::run`, so that tests can hand that function
//! listeners on port 0 and the binary can add the admin socket and signals.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::report::Report;
use crate::config::GatewayConfig;
use crate::server;

/// Serves until Ctrl-C or SIGTERM; the addresses given override the config's.
pub fn serve(
    config_file: &Path,
    partners_addr: Option<SocketAddr>,
    console_addr: Option<SocketAddr>,
) -> Result<Report> {
    let mut config = GatewayConfig::load(config_file)?;
    if let Some(a) = partners_addr {
        config.partners_addr = a;
    }
    if let Some(a) = console_addr {
        config.console_addr = a;
    }
    let gateway = Arc::new(crate::gateway::Gateway::from_config(config)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let c = &gateway.config;
        let listeners = server::Listeners {
            partners: tokio::net::TcpListener::bind(c.partners_addr)
                .await
                .with_context(|| format!("listening on {}", c.partners_addr))?,
            console: tokio::net::TcpListener::bind(c.console_addr)
                .await
                .with_context(|| format!("listening on {}", c.console_addr))?,
            admin: Some(bind_admin(&c.data_dir)?),
        };
        tracing::info!(partners = %c.partners_addr, console = %c.console_addr, "ketenpoort listening");
        server::run(listeners, gateway, shutdown_signal()).await;
        Ok(Report::new())
    })
}

/// The admin socket for command-line tools, readable by the owner only.
fn bind_admin(data_dir: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = crate::admin::socket_path(data_dir);
    // A socket file left by a gateway that was killed: nobody listens on it.
    if std::os::unix::net::UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let l = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Completes on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C alone stops the gateway.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

//! The process around the server: load, bind, run until SIGTERM/SIGINT,
//! reload on SIGHUP.
//!
//! Owns: signal handling and the reload rules (a bad new configuration is
//! refused and logged, the old one stays; listener changes need a restart;
//! the DNS cache survives a reload that leaves `[dns]` alone). Must not:
//! handle connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::Snapshot;
use super::run::{Server, bind_all};
use crate::config::{Config, ListenerSettings};

/// Loads the configuration again (same file and command-line overrides).
pub type Loader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Runs `serve` until a stop signal. `Ok(())` after a clean stop.
pub async fn run(load: Loader) -> Result<(), String> {
    let config = load()?;
    let listeners = config.listeners().map_err(|e| e.to_string())?;
    let snap = Snapshot::build(config).map_err(|e| e.to_string())?;
    let bound = bind_all(&listeners).await?;
    for l in &listeners {
        tracing::info!(
            listen = %l.listen,
            protocol = ?l.protocol,
            next_hop = %l.next_hop,
            role = ?l.role,
            mode = ?l.mode,
            "listening"
        );
    }
    tracing::info!(dns = snap.resolver.mode(), authserv_id = %snap.before_queue.authserv_id, "authgate serve started");
    let server = Server::start(bound, snap);
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&server, &listeners, &load),
        }
    }
    let deadline = Duration::from_secs(server.snapshot().config.server.shutdown_timeout_secs);
    let active = server.active_sessions();
    tracing::info!(
        active,
        "stopping: no new connections; waiting for sessions in flight"
    );
    if server.shutdown(deadline).await {
        tracing::info!("stopped");
    } else {
        tracing::warn!(
            "stopped with sessions still open after {deadline:?}; their clients will retry"
        );
    }
    Ok(())
}

fn reload(server: &Server, listeners: &[ListenerSettings], load: &Loader) {
    let old = server.snapshot();
    let config = match load() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return;
        }
    };
    match config.listeners() {
        Ok(new) if new != listeners => {
            tracing::warn!(
                "listener changes take effect after a restart; keeping the current sockets"
            )
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return;
        }
    }
    let snap = if config.dns == old.config.dns {
        Snapshot::with_resolver(config, Arc::clone(&old.resolver))
    } else {
        Snapshot::build(config)
    };
    match snap {
        Ok(s) => {
            server.reload(s);
            tracing::info!("configuration and keys reloaded");
        }
        Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
    }
}

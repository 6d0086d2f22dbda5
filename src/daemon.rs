//! The process around the server (`authgate serve` and `authgate milter`):
//! load, bind, run until SIGTERM/SIGINT, reload on SIGHUP; and the choice of
//! front for each listener.
//!
//! Owns: signal handling, the reload rules (a bad new configuration is
//! refused and logged, the old one stays; listener changes need a restart;
//! the DNS cache survives a reload that leaves `[dns]` alone), and [`Front`],
//! the [`Service`] that sends a listener's connections to the SMTP/LMTP
//! proxy or the milter front by its `protocol`. It sits beside the fronts,
//! above `server`, so that the server need not know them. It also starts
//! the metrics endpoint (`[metrics] listen`), counts sessions per front and
//! reloads. Must not: handle connections itself (the fronts do) or accept
//! them (the server does).

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{Config, ListenerSettings};
use crate::role::ListenProtocol;
use crate::server::Snapshot;
use crate::server::listen::{Peer, Stream};
use crate::server::run::{Server, Service, bind_all};
use crate::smtp::proxy::{ConnContext, HopPool, serve_connection};

/// The reply to an SMTP/LMTP client past `server.max_sessions`.
const SMTP_BUSY: &[u8] = b"421 4.3.2 Too many sessions, try again later\r\n";

/// A listener's front, chosen by its `protocol`.
#[derive(Debug)]
pub enum Front {
    /// The SMTP/LMTP proxy, with the listener's idle next-hop connections.
    Smtp(Arc<HopPool>),
    /// The milter front (no per-listener state).
    Milter,
}

impl Front {
    /// The front for `listener` (the factory [`Server::start`] takes).
    pub fn for_listener(listener: &ListenerSettings) -> Front {
        match listener.protocol {
            ListenProtocol::Smtp | ListenProtocol::Lmtp => Front::Smtp(Arc::default()),
            ListenProtocol::Milter => Front::Milter,
        }
    }
}

impl Service for Front {
    async fn serve(
        &self,
        stream: Stream,
        peer: Peer,
        listener: Arc<ListenerSettings>,
        snap: Arc<Snapshot>,
        shutdown: watch::Receiver<bool>,
    ) {
        let _open = crate::metrics::global().session(match self {
            Front::Smtp(_) => crate::outcome::Front::Proxy,
            Front::Milter => crate::outcome::Front::Milter,
        });
        match self {
            Front::Smtp(hops) => {
                let cx = ConnContext {
                    listener,
                    snap,
                    shutdown,
                    hops: Arc::clone(hops),
                };
                serve_connection(stream, peer, cx).await;
            }
            Front::Milter => {
                crate::milter::serve_connection(stream, peer, listener, snap, shutdown).await
            }
        }
    }

    fn sweeps(&self) -> bool {
        matches!(self, Front::Smtp(_))
    }

    /// Idle next-hop connections past `server.next_hop_idle_secs` (all of
    /// them at shutdown) get their QUIT, concurrently.
    fn sweep(&self, all: bool) -> Option<impl Future<Output = ()> + Send + 'static> {
        let Front::Smtp(hops) = self else {
            return None;
        };
        let quits = hops.expired(all);
        if quits.is_empty() {
            return None;
        }
        Some(async move {
            futures_util::future::join_all(quits).await;
        })
    }

    fn busy(&self) -> Option<&'static [u8]> {
        match self {
            Front::Smtp(_) => Some(SMTP_BUSY),
            Front::Milter => None,
        }
    }
}

/// Loads the configuration again (same file and command-line overrides).
pub type Loader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Runs `serve` until a stop signal. `Ok(())` after a clean stop.
pub async fn run(load: Loader) -> Result<(), String> {
    let config = load()?;
    let listeners = config.listeners().map_err(|e| e.to_string())?;
    let metrics_at = config.metrics.address().map_err(|e| e.to_string())?;
    let mut reporting = crate::report::service::Reporting::start(&config);
    let snap = Snapshot::build(config).map_err(|e| e.to_string())?;
    let bound = bind_all(&listeners).await?;
    let endpoint = match metrics_at {
        Some(addr) => {
            let e = crate::metrics::Endpoint::start(addr).await?;
            tracing::info!(listen = %e.local_addr(), "metrics at GET /metrics");
            Some(e)
        }
        None => None,
    };
    crate::metrics::global().report_writer(reporting.recorder().map(|r| r.shared_counters()));
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
    tracing::info!(dns = snap.resolver.mode(), authserv_id = %snap.before_queue.authserv_id, "authgate started");
    let server = Server::start(bound, snap, Front::for_listener);
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut rotation = crate::rotation::Watch::new(&server.snapshot().config.rotation_dir());
    let mut every = rotation_interval(&server, None);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                check_rotation(&server, &mut rotation).await;
                reload(&server, &listeners, &load, &mut reporting);
                every = rotation_interval(&server, Some(every));
            }
            _ = every.tick() => {
                if check_rotation(&server, &mut rotation).await {
                    reload(&server, &listeners, &load, &mut reporting);
                    every = rotation_interval(&server, Some(every));
                }
            }
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
    reporting.stop();
    if let Some(e) = endpoint {
        e.stop();
    }
    Ok(())
}

/// The key rotation timer (`dkim.rotation.check_interval_secs`), kept
/// when the interval did not change.
fn rotation_interval(
    server: &Server<Front>,
    current: Option<tokio::time::Interval>,
) -> tokio::time::Interval {
    let secs = server
        .snapshot()
        .config
        .dkim
        .rotation
        .check_interval_secs
        .max(1);
    let period = Duration::from_secs(secs);
    match current {
        Some(i) if i.period() == period => i,
        _ => {
            let mut i = tokio::time::interval(period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        }
    }
}

/// Switches pending keys whose record is now published; `true` when what
/// signs changed (here or in another process), so keys must be reloaded.
async fn check_rotation(server: &Server<Front>, watch: &mut crate::rotation::Watch) -> bool {
    let snap = server.snapshot();
    let c = &snap.config;
    watch
        .check(
            &c.rotation_dir(),
            &c.dns,
            c.dkim.sign.allow_insecure_key_permissions,
        )
        .await
}

fn reload(
    server: &Server<Front>,
    listeners: &[ListenerSettings],
    load: &Loader,
    reporting: &mut crate::report::service::Reporting,
) {
    let ok = try_reload(server, listeners, load, reporting);
    crate::metrics::global().reload(ok);
}

/// [`reload`]; `false` when the new configuration was refused.
fn try_reload(
    server: &Server<Front>,
    listeners: &[ListenerSettings],
    load: &Loader,
    reporting: &mut crate::report::service::Reporting,
) -> bool {
    let old = server.snapshot();
    let config = match load() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return false;
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
            return false;
        }
    }
    if config.metrics != old.config.metrics {
        tracing::warn!(
            "metrics.listen changes take effect after a restart; keeping the current endpoint"
        );
    }
    let snap = if config.dns == old.config.dns {
        Snapshot::with_resolver(config, Arc::clone(&old.resolver))
    } else {
        Snapshot::build(config)
    };
    match snap {
        Ok(s) => {
            reporting.apply(&s.config);
            crate::metrics::global()
                .report_writer(reporting.recorder().map(|r| r.shared_counters()));
            server.reload(s);
            tracing::info!("configuration and keys reloaded");
            true
        }
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            false
        }
    }
}

//! The accept loops of `serve` and `milter`: every listener, one session
//! limit, the snapshot swap on reload, and a graceful stop.
//!
//! Owns: accepting, the `max_sessions` limit (past it a client gets the
//! service's [`Service::busy`] line and is closed), the once-a-second
//! housekeeping tick, and waiting for sessions in flight on shutdown. Takes
//! a [`Service`] per listener from the caller and hands it each accepted
//! connection. Must not: know which fronts exist (it imports neither `smtp`
//! nor `milter`; `crate::daemon` chooses), or read signals or files (the
//! daemon does, then calls [`Server::reload`] / [`Server::shutdown`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::Snapshot;
use super::listen::{Listener, Peer, Stream};
use crate::config::ListenerSettings;
use crate::sockaddr::SocketAddress;

/// What a listener runs for each connection: a front (the SMTP/LMTP proxy,
/// the milter) seen from the server. The server makes one value per
/// listener when it starts (see [`Server::start`]) and shares it between
/// that listener's sessions, so per-listener state (the proxy's pool of
/// idle next-hop connections) lives in it.
///
/// Generic, not `dyn`: the server is monomorphised over the one type the
/// daemon passes (an enum of its fronts), and no future is boxed.
pub trait Service: Send + Sync + 'static {
    /// Serves one accepted connection until it ends. `listener` is the
    /// listener's settings, `snap` the configuration at accept time (kept
    /// for the whole session), and `shutdown` flips to `true` when the
    /// server stops, so idle sessions can close.
    fn serve(
        &self,
        stream: Stream,
        peer: Peer,
        listener: Arc<ListenerSettings>,
        snap: Arc<Snapshot>,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send;

    /// Whether [`Service::sweep`] is worth calling once a second while the
    /// listener accepts (it is always called once at shutdown). `false`
    /// keeps the accept loop from waking when there is nothing to sweep.
    fn sweeps(&self) -> bool {
        false
    }

    /// Housekeeping due now, taken out synchronously, as a future the
    /// server spawns (`None`: nothing to do). Called once a second with
    /// `all == false` when [`Service::sweeps`], and once with `all == true`
    /// after the sessions ended at shutdown (then it is awaited). The
    /// SMTP front closes its idle next-hop connections here.
    fn sweep(&self, all: bool) -> Option<impl Future<Output = ()> + Send + 'static> {
        let _ = all;
        None::<std::future::Ready<()>>
    }

    /// What to write to a client refused because `server.max_sessions`
    /// sessions are running, before closing it (`None`: just close; a
    /// milter client then applies its default action).
    fn busy(&self) -> Option<&'static [u8]> {
        None
    }
}

/// A listener bound to its socket.
#[derive(Debug)]
pub struct Bound {
    /// Its settings.
    pub settings: Arc<ListenerSettings>,
    /// The socket.
    pub listener: Listener,
}

/// Binds every listener; the first failure is returned with its address.
pub async fn bind_all(list: &[ListenerSettings]) -> Result<Vec<Bound>, String> {
    let mut out = Vec::with_capacity(list.len());
    for l in list {
        let unix = l.unix_options().map_err(|e| e.to_string())?;
        if let SocketAddress::Unix(path) = &l.listen
            && let Some(dir) = path.parent()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        let listener = Listener::bind(&l.listen, &unix)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", l.listen))?;
        out.push(Bound {
            settings: Arc::new(l.clone()),
            listener,
        });
    }
    Ok(out)
}

/// A running server whose listeners run services of type `S`.
#[derive(Debug)]
pub struct Server<S> {
    snap: watch::Sender<Arc<Snapshot>>,
    shutdown: watch::Sender<bool>,
    sessions: Arc<Semaphore>,
    max_sessions: u32,
    loops: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddress>,
    /// Each listener's service (for the sweep at shutdown).
    services: Vec<Arc<S>>,
}

impl<S: Service> Server<S> {
    /// Starts accepting on every listener; `service` makes each listener's
    /// [`Service`] from its settings.
    pub fn start(
        bound: Vec<Bound>,
        snap: Snapshot,
        service: impl Fn(&ListenerSettings) -> S,
    ) -> Server<S> {
        let max_sessions =
            u32::try_from(snap.config.server.max_sessions.max(1)).unwrap_or(u32::MAX >> 4);
        let (snap_tx, _) = watch::channel(Arc::new(snap));
        let (shutdown_tx, _) = watch::channel(false);
        let sessions = Arc::new(Semaphore::new(max_sessions as usize));
        let mut addrs = Vec::new();
        let mut loops = Vec::new();
        let mut services = Vec::new();
        for b in bound {
            if let Ok(a) = b.listener.local_addr() {
                addrs.push(a);
            }
            let svc = Arc::new(service(&b.settings));
            services.push(Arc::clone(&svc));
            loops.push(tokio::spawn(accept_loop(
                b,
                snap_tx.subscribe(),
                shutdown_tx.subscribe(),
                Arc::clone(&sessions),
                svc,
            )));
        }
        Server {
            snap: snap_tx,
            shutdown: shutdown_tx,
            sessions,
            max_sessions,
            loops,
            addrs,
            services,
        }
    }

    /// The bound addresses (real ports when configured with port 0).
    pub fn local_addrs(&self) -> &[SocketAddress] {
        &self.addrs
    }

    /// The snapshot new sessions start with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snap.borrow())
    }

    /// New sessions use `snap`; sessions in flight keep theirs.
    pub fn reload(&self, snap: Snapshot) {
        self.snap.send_replace(Arc::new(snap));
    }

    /// Sessions in flight.
    pub fn active_sessions(&self) -> usize {
        self.max_sessions as usize - self.sessions.available_permits()
    }

    /// Stops accepting, tells idle sessions to close (SMTP: 421), waits for
    /// the rest up to `deadline`, then runs every service's final sweep.
    /// Returns whether every session finished.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.shutdown.send_replace(true);
        for l in &self.loops {
            l.abort();
        }
        for l in self.loops {
            let _ = l.await;
        }
        let all = self.sessions.acquire_many(self.max_sessions);
        let finished = tokio::time::timeout(deadline, all).await.is_ok();
        // E.g. idle next-hop connections get their QUIT (each bounded by 5 s).
        let mut sweeps = tokio::task::JoinSet::new();
        for svc in &self.services {
            if let Some(sweep) = svc.sweep(true) {
                sweeps.spawn(sweep);
            }
        }
        while sweeps.join_next().await.is_some() {}
        finished
    }
}

async fn accept_loop<S: Service>(
    bound: Bound,
    snap: watch::Receiver<Arc<Snapshot>>,
    shutdown: watch::Receiver<bool>,
    sessions: Arc<Semaphore>,
    service: Arc<S>,
) {
    let Bound { settings, listener } = bound;
    // The service's housekeeping (idle next-hop connections closed) runs here.
    let sweep = service.sweeps();
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = reap.tick(), if sweep => {
                if let Some(work) = service.sweep(false) {
                    tokio::spawn(work);
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept on {}: {e}", settings.listen);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&sessions).try_acquire_owned() else {
            tracing::warn!(peer = %peer, "too many sessions; refusing");
            tokio::spawn(refuse_busy(stream, service.busy()));
            continue;
        };
        let snapshot = Arc::clone(&snap.borrow());
        let listener_settings = Arc::clone(&settings);
        let shutdown = shutdown.clone();
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            service
                .serve(stream, peer, listener_settings, snapshot, shutdown)
                .await;
            drop(permit);
        });
    }
}

async fn refuse_busy(mut stream: Stream, busy: Option<&'static [u8]>) {
    if let Some(line) = busy {
        let _ = stream.write_all(line).await;
    }
    let _ = stream.shutdown().await;
}

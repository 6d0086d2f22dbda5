//! The accept loops of `serve`: every listener, one session limit, the
//! snapshot swap on reload, and a graceful stop.
//!
//! Owns: binding, the `max_sessions` limit (421 past it), which protocol
//! handler a connection goes to, and waiting for sessions in flight on
//! shutdown. Must not: read signals or files (the CLI does, then calls
//! [`Server::reload`] / [`Server::shutdown`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::Snapshot;
use super::listen::{Listener, Peer, Stream};
use crate::config::ListenerSettings;
use crate::role::ListenProtocol;
use crate::smtp::proxy::{ConnContext, HopPool, serve_connection};
use crate::sockaddr::SocketAddress;

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

/// A running server.
#[derive(Debug)]
pub struct Server {
    snap: watch::Sender<Arc<Snapshot>>,
    shutdown: watch::Sender<bool>,
    sessions: Arc<Semaphore>,
    max_sessions: u32,
    loops: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddress>,
    /// Each SMTP/LMTP listener's idle next-hop connections.
    pools: Vec<Arc<HopPool>>,
}

impl Server {
    /// Starts accepting on every listener.
    pub fn start(bound: Vec<Bound>, snap: Snapshot) -> Server {
        let max_sessions =
            u32::try_from(snap.config.server.max_sessions.max(1)).unwrap_or(u32::MAX >> 4);
        let (snap_tx, _) = watch::channel(Arc::new(snap));
        let (shutdown_tx, _) = watch::channel(false);
        let sessions = Arc::new(Semaphore::new(max_sessions as usize));
        let mut addrs = Vec::new();
        let mut loops = Vec::new();
        let mut pools = Vec::new();
        for b in bound {
            if let Ok(a) = b.listener.local_addr() {
                addrs.push(a);
            }
            let hops = Arc::new(HopPool::default());
            pools.push(Arc::clone(&hops));
            loops.push(tokio::spawn(accept_loop(
                b,
                snap_tx.subscribe(),
                shutdown_tx.subscribe(),
                Arc::clone(&sessions),
                hops,
            )));
        }
        Server {
            snap: snap_tx,
            shutdown: shutdown_tx,
            sessions,
            max_sessions,
            loops,
            addrs,
            pools,
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

    /// Stops accepting, tells idle sessions to close (421), waits for the
    /// rest up to `deadline`. Returns whether every session finished.
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
        // Idle next-hop connections get their QUIT (each bounded by 5 s).
        let mut quits = tokio::task::JoinSet::new();
        for pool in &self.pools {
            for quit in pool.expired(true) {
                quits.spawn(quit);
            }
        }
        while quits.join_next().await.is_some() {}
        finished
    }
}

async fn accept_loop(
    bound: Bound,
    snap: watch::Receiver<Arc<Snapshot>>,
    shutdown: watch::Receiver<bool>,
    sessions: Arc<Semaphore>,
    hops: Arc<HopPool>,
) {
    let Bound { settings, listener } = bound;
    // Idle next-hop connections past their time are closed (QUIT) here.
    let sweep = settings.protocol != ListenProtocol::Milter;
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = reap.tick(), if sweep => {
                for quit in hops.expired(false) {
                    tokio::spawn(quit);
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
            tokio::spawn(refuse_busy(stream, settings.protocol));
            continue;
        };
        let snapshot = Arc::clone(&snap.borrow());
        let listener_settings = Arc::clone(&settings);
        let shutdown = shutdown.clone();
        let hops = Arc::clone(&hops);
        tokio::spawn(async move {
            handle(stream, peer, listener_settings, snapshot, shutdown, hops).await;
            drop(permit);
        });
    }
}

async fn handle(
    stream: Stream,
    peer: Peer,
    settings: Arc<ListenerSettings>,
    snap: Arc<Snapshot>,
    shutdown: watch::Receiver<bool>,
    hops: Arc<HopPool>,
) {
    match settings.protocol {
        ListenProtocol::Smtp | ListenProtocol::Lmtp => {
            let cx = ConnContext {
                listener: settings,
                snap,
                shutdown,
                hops,
            };
            serve_connection(stream, peer, cx).await;
        }
        ListenProtocol::Milter => {
            crate::milter::serve_connection(stream, peer, settings, snap).await;
        }
    }
}

async fn refuse_busy(mut stream: Stream, protocol: ListenProtocol) {
    if protocol != ListenProtocol::Milter {
        let _ = stream
            .write_all(b"421 4.3.2 Too many sessions, try again later\r\n")
            .await;
    }
    let _ = stream.shutdown().await;
}

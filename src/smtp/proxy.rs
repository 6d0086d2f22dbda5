//! One proxy connection: bytes between the client, the [`Session`] state
//! machine, the message pipeline and the next hop.
//!
//! Owns: timeouts per phase, reading commands and DATA/BDAT, spooling the
//! body while the pipeline hashes it, relaying the filtered message and
//! handing the next hop's own replies back. Must not: decide what a command
//! means (the session does) or what a message's results mean for it (the
//! outcome layer does: [`crate::outcome::Fate`]), nor word a reply of its
//! own: every reply it writes comes from the [`Session`] or from the fate.
//!
//! Both sides are generic streams. [`serve_connection`] (the accept loop's
//! entry) connects to the next hop or reuses one from the [`HopPool`], then
//! runs what [`serve_over`] runs over any connected pair of streams.
//!
//! Never owning a message: the client gets a 2xx for a message only as the
//! next hop's own 2xx; anything going wrong on our side becomes a 4xx.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf,
};
use tokio::sync::watch;
use tokio::time::timeout;

use super::data::{DotDecoder, DotEncoder};
use super::reply::{Reply, complete_reply_len};
use super::session::{HopCaps, Session, SessionConfig, Step};
use crate::config::ListenerSettings;
use crate::message::body::{Spool, SpoolBody};
use crate::outcome::{Front, InFlight, Meta, Origin, Refusal};
use crate::pipeline::{Envelope, Pushed};
use crate::role::{HopProtocol, ListenProtocol};
use crate::server::Snapshot;
use crate::server::listen::{Peer, Stream};

/// Longest command line we read (smtp-proto's limit).
const MAX_COMMAND_LINE: usize = 4096;
/// Longest reply we accept from a next hop.
const MAX_REPLY: usize = 64 * 1024;
/// Bytes read per socket read.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("client: {0}")]
    Client(std::io::Error),
    #[error("client timed out")]
    ClientTimeout,
    /// A write to the client made no progress for `command_timeout_secs`
    /// (it pipelines commands and reads no replies).
    #[error("client stopped reading")]
    ClientStalled,
    #[error("next hop: {0}")]
    Hop(String),
    /// The spool could not be read back while the message was going out:
    /// the next hop has part of it and is dropped without the final dot.
    #[error("spool: {0}")]
    Spool(String),
    #[error("shutting down")]
    Shutdown,
}

/// What a message cut off by `e` was: lost by the next hop (a tempfail
/// of ours, `next_hop` in the metrics) or abandoned by the client or the
/// shutdown.
fn refusal_of(e: &ProxyError) -> Refusal {
    match e {
        ProxyError::Hop(_) => Refusal::NextHop(e.to_string()),
        _ => Refusal::Abandoned(e.to_string()),
    }
}

fn io_err(e: std::io::Error) -> ProxyError {
    ProxyError::Client(e)
}

/// The next hop connection, over any stream: a socket in production
/// ([`Stream`], which the pool keeps), whatever the caller of
/// [`serve_over`] connected.
struct Hop<H> {
    r: ReadHalf<H>,
    w: WriteHalf<H>,
    buf: Vec<u8>,
    /// Pipelined commands not written yet: they go out together, in one
    /// write, before the first reply is read (or with the next write).
    out: Vec<u8>,
    timeout: Duration,
    /// The next hop offered PIPELINING.
    pipelining: bool,
    /// A message was cut off inside DATA: the connection is only dropped
    /// (no QUIT, which would be read as message text), so the next hop
    /// discards the partial message.
    broken: bool,
}

/// Connects to the next hop at `to` within `secs`.
async fn connect(to: &crate::sockaddr::SocketAddress, secs: u64) -> Result<Stream, String> {
    timeout(Duration::from_secs(secs), Stream::connect(to))
        .await
        .map_err(|_| format!("connect to {to} timed out"))?
        .map_err(|e| format!("connect to {to}: {e}"))
}

impl<H: AsyncRead + AsyncWrite> Hop<H> {
    /// A connected next hop, nothing read from it yet; `timeout` bounds
    /// each write and each reply.
    fn new(stream: H, timeout: Duration) -> Hop<H> {
        let (r, w) = tokio::io::split(stream);
        Hop {
            r,
            w,
            buf: Vec::new(),
            out: Vec::new(),
            timeout,
            pipelining: false,
            broken: false,
        }
    }

    /// Writes `bytes`, after whatever was queued.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ProxyError> {
        if self.out.is_empty() {
            return self.write(bytes).await;
        }
        self.out.extend_from_slice(bytes);
        self.flush().await
    }

    /// Queues a pipelined command (see `out`).
    fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    async fn flush(&mut self) -> Result<(), ProxyError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let written = self.write(&out).await;
        self.out = out;
        self.out.clear();
        written
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ProxyError> {
        timeout(self.timeout, self.w.write_all(bytes))
            .await
            .map_err(|_| ProxyError::Hop("write timed out".into()))?
            .map_err(|e| ProxyError::Hop(format!("write: {e}")))
    }

    async fn reply_within(&mut self, limit: Duration) -> Result<Reply, ProxyError> {
        // Nothing is waited for while commands sit unwritten.
        self.flush().await?;
        loop {
            if let Some(n) = complete_reply_len(&self.buf) {
                let raw: Vec<u8> = self.buf.drain(..n).collect();
                return Reply::parse(&raw).map_err(|e| ProxyError::Hop(e.to_string()));
            }
            if self.buf.len() > MAX_REPLY {
                return Err(ProxyError::Hop("reply too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(limit, self.r.read(&mut chunk))
                .await
                .map_err(|_| ProxyError::Hop("timed out waiting for a reply".into()))?
                .map_err(|e| ProxyError::Hop(format!("read: {e}")))?;
            if n == 0 {
                return Err(ProxyError::Hop("connection closed".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn reply(&mut self) -> Result<Reply, ProxyError> {
        self.reply_within(self.timeout).await
    }

    async fn command(&mut self, line: &[u8]) -> Result<Reply, ProxyError> {
        self.send(line).await?;
        self.reply().await
    }

    /// Still open and silent: no close, no unsolicited reply waiting
    /// (checked without blocking).
    fn alive(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let mut rb = tokio::io::ReadBuf::new(&mut byte);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::Pin::new(&mut self.r)
            .poll_read(&mut cx, &mut rb)
            .is_pending()
    }

    async fn quit(mut self) {
        if self.broken {
            return;
        }
        let _ = timeout(Duration::from_secs(5), async {
            let _ = self.send(b"QUIT\r\n").await;
            let _ = self.reply().await;
            let _ = self.w.shutdown().await;
        })
        .await;
    }
}

/// The client connection with its read buffer and pending output.
struct Client<S> {
    r: ReadHalf<S>,
    w: WriteHalf<S>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// How long a write may make no progress (`command_timeout_secs`).
    write_limit: Duration,
}

impl<S: AsyncRead + AsyncWrite> Client<S> {
    fn new(stream: S, write_limit: Duration) -> Client<S> {
        let (r, w) = tokio::io::split(stream);
        Client {
            r,
            w,
            inbuf: Vec::new(),
            out: Vec::new(),
            write_limit,
        }
    }

    /// Writes the pending output. Each write that moves bytes restarts
    /// the clock; what was written leaves `out` at once, so a flush cut
    /// short (shutdown's `select!`) never sends a byte twice.
    async fn flush(&mut self) -> Result<(), ProxyError> {
        while !self.out.is_empty() {
            let n = timeout(self.write_limit, self.w.write(&self.out))
                .await
                .map_err(|_| ProxyError::ClientStalled)?
                .map_err(io_err)?;
            if n == 0 {
                return Err(io_err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        Ok(())
    }

    fn queue(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out);
    }

    /// Reads more bytes; `Ok(false)` at end of stream.
    async fn fill(&mut self, limit: Duration) -> Result<bool, ProxyError> {
        // Pipelined replies go out before we wait (RFC 2920 §3.2).
        self.flush().await?;
        // Straight into the buffer: no zeroed 64 KiB scratch per read.
        self.inbuf.reserve(READ_CHUNK);
        let n = timeout(limit, self.r.read_buf(&mut self.inbuf))
            .await
            .map_err(|_| ProxyError::ClientTimeout)?
            .map_err(io_err)?;
        Ok(n > 0)
    }

    /// The next command line; `None` at end of stream. Over-long lines are
    /// returned as an empty vector after being skipped.
    async fn line(
        &mut self,
        limit: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Vec<u8>>, ProxyError> {
        let mut skipping = false;
        loop {
            if let Some(nl) = memchr::memchr(b'\n', &self.inbuf) {
                let line: Vec<u8> = self.inbuf.drain(..=nl).collect();
                return Ok(Some(if skipping { Vec::new() } else { line }));
            }
            if self.inbuf.len() > MAX_COMMAND_LINE {
                self.inbuf.clear();
                skipping = true;
            }
            if *shutdown.borrow() && self.inbuf.is_empty() {
                return Err(ProxyError::Shutdown);
            }
            tokio::select! {
                more = self.fill(limit) => {
                    if !more? {
                        return Ok(None);
                    }
                }
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Most idle next-hop connections a listener keeps.
const POOL_MAX: usize = 16;

/// Next-hop connections of one listener whose clients have quit, kept
/// (`server.next_hop_idle_secs`) for its next clients: a client then
/// costs no connect, greeting or EHLO on the next hop. Only connections
/// with no transaction open and nothing outstanding are kept; each is
/// checked for a close or an unsolicited reply (an idle timeout's 421)
/// before it is used again.
#[derive(Default)]
pub struct HopPool {
    idle: std::sync::Mutex<Vec<IdleHop>>,
}

struct IdleHop {
    hop: Hop<Stream>,
    caps: HopCaps,
    /// The name we greeted the next hop with.
    hostname: String,
    until: tokio::time::Instant,
}

impl std::fmt::Debug for HopPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HopPool({} idle)", self.len())
    }
}

impl HopPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleHop>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently parked connection that is still usable.
    fn take(&self, hostname: &str) -> Option<(Hop<Stream>, HopCaps)> {
        let now = tokio::time::Instant::now();
        let mut idle = self.lock();
        while let Some(mut i) = idle.pop() {
            if i.until > now && i.hostname == hostname && i.hop.alive() {
                return Some((i.hop, i.caps));
            }
            // Expired or closed: dropped. (Expired ones normally get their
            // QUIT from the accept loop's sweep first.)
        }
        None
    }

    /// Keeps `hop` for `idle` unless the pool is full; returns it if not kept.
    fn park(
        &self,
        hop: Hop<Stream>,
        caps: HopCaps,
        hostname: String,
        idle: Duration,
    ) -> Option<Hop<Stream>> {
        if idle.is_zero() || !hop.out.is_empty() || !hop.buf.is_empty() {
            return Some(hop);
        }
        let mut pool = self.lock();
        if pool.len() >= POOL_MAX {
            return Some(hop);
        }
        pool.push(IdleHop {
            hop,
            caps,
            hostname,
            until: tokio::time::Instant::now() + idle,
        });
        None
    }

    /// Takes out the connections idle for longer than they may be (all of
    /// them with `all`, at shutdown): the QUITs to send.
    pub fn expired(&self, all: bool) -> Vec<impl std::future::Future<Output = ()> + Send + use<>> {
        let now = tokio::time::Instant::now();
        let mut pool = self.lock();
        let (old, keep): (Vec<IdleHop>, Vec<IdleHop>) =
            pool.drain(..).partition(|i| all || i.until <= now);
        *pool = keep;
        old.into_iter().map(|i| i.hop.quit()).collect()
    }

    /// Idle connections kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the connection handler needs besides the sockets.
pub struct ConnContext {
    /// The listener's settings.
    pub listener: Arc<ListenerSettings>,
    /// Configuration and policy at accept time.
    pub snap: Arc<Snapshot>,
    /// Flips to `true` on SIGTERM: idle sessions are closed with 421.
    pub shutdown: watch::Receiver<bool>,
    /// The listener's idle next-hop connections.
    pub hops: Arc<HopPool>,
}

/// Serves one SMTP/LMTP client until it quits or fails, over a next-hop
/// connection an earlier client left in `cx.hops`, else a new one (see
/// [`serve_over`]); afterwards the connection is kept there for the next
/// client when it can be, else it gets its QUIT.
pub async fn serve_connection<S>(stream: S, peer: Peer, cx: ConnContext)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let settings = &cx.snap.config.server;
    let hostname = cx.snap.hostname.clone();
    let served = match cx.hops.take(&hostname) {
        Some((mut hop, caps)) => {
            // The reply timeout of this session's configuration (a reload
            // may have changed it since the connection was made).
            hop.timeout = Duration::from_secs(settings.next_hop_timeout_secs);
            tracing::debug!(peer = %peer, reused = true, "next hop connection");
            let reusable =
                serve_session(stream, &mut hop, caps.clone(), peer, &cx, &hostname).await;
            Some((hop, caps, reusable))
        }
        None => match connect(&cx.listener.next_hop, settings.connect_timeout_secs).await {
            Ok(hop) => serve_fresh(stream, hop, peer, &cx, &hostname).await,
            Err(why) => {
                refuse(stream, peer, &cx, &hostname, &why).await;
                None
            }
        },
    };
    let Some((hop, caps, reusable)) = served else {
        return;
    };
    let idle = Duration::from_secs(settings.next_hop_idle_secs);
    let left = if reusable && !*cx.shutdown.borrow() {
        cx.hops.park(hop, caps, hostname, idle)
    } else {
        Some(hop)
    };
    if let Some(hop) = left {
        hop.quit().await;
    }
}

/// Serves one SMTP/LMTP client over `hop`, a next-hop connection the
/// caller has just opened (nothing read from it yet): the next hop's 220
/// and our EHLO/LHLO first (the client gets a 421 greeting if either
/// fails), then the client's session, then QUIT to the next hop. Uses
/// `cx` but not its pool (`cx.hops`): the connection is not kept.
pub async fn serve_over<C, H>(client: C, hop: H, peer: Peer, cx: ConnContext)
where
    C: AsyncRead + AsyncWrite + Send,
    H: AsyncRead + AsyncWrite,
{
    let hostname = cx.snap.hostname.clone();
    if let Some((hop, _, _)) = serve_fresh(client, hop, peer, &cx, &hostname).await {
        hop.quit().await;
    }
}

/// [`serve_over`] up to the QUIT: returns the next hop, what it offered
/// and whether it could serve another client (`None`: it could not be
/// greeted, and the client was refused).
async fn serve_fresh<C, H>(
    client: C,
    hop: H,
    peer: Peer,
    cx: &ConnContext,
    hostname: &str,
) -> Option<(Hop<H>, HopCaps, bool)>
where
    C: AsyncRead + AsyncWrite + Send,
    H: AsyncRead + AsyncWrite,
{
    let limit = Duration::from_secs(cx.snap.config.server.next_hop_timeout_secs);
    match open_hop(Hop::new(hop, limit), cx, hostname).await {
        Ok((mut hop, caps)) => {
            tracing::debug!(peer = %peer, reused = false, "next hop connection");
            let reusable = serve_session(client, &mut hop, caps.clone(), peer, cx, hostname).await;
            Some((hop, caps, reusable))
        }
        Err(why) => {
            refuse(client, peer, cx, hostname, &why).await;
            None
        }
    }
}

/// No next hop: the client's greeting is a 421, then the connection closes.
async fn refuse<C>(client: C, peer: Peer, cx: &ConnContext, hostname: &str, why: &str)
where
    C: AsyncRead + AsyncWrite,
{
    tracing::warn!(peer = %peer, "next hop {} unavailable: {why}", cx.listener.next_hop);
    crate::outcome::session_refused(crate::outcome::TempfailCause::NextHop);
    let limit = Duration::from_secs(cx.snap.config.server.command_timeout_secs);
    let mut client = Client::new(client, limit);
    client.queue(&Session::hop_unavailable(hostname));
    let _ = client.flush().await;
}

/// The client's session over a greeted next hop with `caps`, until the
/// client quits or something fails; returns whether `hop` can serve
/// another client.
async fn serve_session<C, H>(
    client: C,
    hop: &mut Hop<H>,
    caps: HopCaps,
    peer: Peer,
    cx: &ConnContext,
    hostname: &str,
) -> bool
where
    C: AsyncRead + AsyncWrite + Send,
    H: AsyncRead + AsyncWrite,
{
    let settings = &cx.snap.config.server;
    let client = Client::new(client, Duration::from_secs(settings.command_timeout_secs));
    let trusted = match peer {
        Peer::Unix => true,
        Peer::Tcp(a) => crate::policy::is_internal(a.ip(), &settings.authorized_xforward_hosts),
    };
    let session = Session::new(SessionConfig {
        lmtp: cx.listener.protocol == ListenProtocol::Lmtp,
        hostname: hostname.to_string(),
        max_message_size: settings.max_message_size,
        max_recipients: settings.max_recipients,
        hop: caps,
        trusted,
        peer_ip: peer.ip(),
    });
    let mut conn = Conn {
        cx,
        session,
        client,
        shutdown: cx.shutdown.clone(),
    };
    let result = conn.run(hop).await;
    let reusable = result.is_ok() && conn.session.hop_reusable();
    match result {
        Ok(()) => {}
        Err(ProxyError::Hop(why)) => {
            tracing::warn!(peer = %peer, "next hop failed: {why}");
            conn.client.queue(&Session::hop_failed());
        }
        Err(ProxyError::Spool(why)) => {
            // The message's 451 is queued already; the next hop is dropped.
            tracing::warn!(peer = %peer, "spool failed while relaying: {why}");
        }
        Err(ProxyError::Shutdown) => conn.client.queue(&Session::shutting_down()),
        Err(ProxyError::ClientTimeout) => {
            tracing::info!(peer = %peer, "client timed out");
            conn.client.queue(&Session::timed_out());
        }
        Err(ProxyError::ClientStalled) => {
            // Nothing more is written: it would only wait again.
            tracing::info!(peer = %peer, "client stopped reading its replies: session ended");
            conn.client.out.clear();
        }
        Err(e) => tracing::info!(peer = %peer, "session ended: {e}"),
    }
    let _ = conn.client.flush().await;
    let _ = conn.client.w.shutdown().await;
    reusable
}

/// Reads the next hop's greeting and says EHLO/LHLO.
async fn open_hop<H: AsyncRead + AsyncWrite>(
    mut hop: Hop<H>,
    cx: &ConnContext,
    hostname: &str,
) -> Result<(Hop<H>, HopCaps), String> {
    let greeting = hop.reply().await.map_err(|e| e.to_string())?;
    if greeting.code != 220 {
        return Err(format!("greeting: {greeting}"));
    }
    let hello = match cx.listener.next_hop_protocol {
        HopProtocol::Smtp => "EHLO",
        HopProtocol::Lmtp => "LHLO",
    };
    let ehlo = hop
        .command(format!("{hello} {hostname}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    if !ehlo.is_positive() {
        return Err(format!("{hello}: {ehlo}"));
    }
    let caps = HopCaps::from_ehlo(&ehlo);
    hop.pipelining = caps.pipelining;
    Ok((hop, caps))
}

struct Conn<'a, S> {
    cx: &'a ConnContext,
    session: Session,
    client: Client<S>,
    shutdown: watch::Receiver<bool>,
}

/// A message as it arrives.
struct Incoming {
    job: InFlight<Arc<crate::dns::SystemResolver>>,
    spool: Spool,
    /// Body bytes for the spool file, written by [`spill`] off the runtime
    /// thread once the read buffer they came from is decoded.
    pending: Vec<u8>,
    size: u64,
    longest_line: usize,
    /// The whole message must have arrived by then (`server.max_data_secs`).
    deadline: tokio::time::Instant,
    /// Why the body could not be spooled: the rest of the message is read
    /// but not kept, and the message gets the spool's 451.
    spool_failed: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Send> Conn<'_, S> {
    async fn run<H: AsyncRead + AsyncWrite>(&mut self, hop: &mut Hop<H>) -> Result<(), ProxyError> {
        let greeting = self.session.greeting();
        self.client.queue(&greeting);
        let limit = Duration::from_secs(self.cx.snap.config.server.command_timeout_secs);
        let mut incoming: Option<Incoming> = None;
        // The next message's job, started when the next hop accepts MAIL FROM.
        let mut prepared: Option<Incoming> = None;
        // Commands sent to the next hop whose replies are not read yet: with
        // PIPELINING, MAIL and the RCPTs the client pipelined behind it go
        // out before the first reply is read (RFC 2920), one round trip for
        // the envelope instead of one per command.
        let mut waiting: VecDeque<Sent> = VecDeque::new();
        loop {
            let Some(line) = self.client.line(limit, &mut self.shutdown).await? else {
                return Ok(());
            };
            if line.is_empty() {
                self.replies(hop, &mut waiting, &mut incoming, &mut prepared)
                    .await?;
                self.client.queue(&Session::line_too_long());
                continue;
            }
            let step = self.session.command(&line);
            if !matches!(step, Step::Forward { .. }) {
                // Replies go to the client in command order.
                self.replies(hop, &mut waiting, &mut incoming, &mut prepared)
                    .await?;
            }
            match step {
                Step::Reply(r) => self.client.queue(&r),
                Step::Quit(r) => {
                    self.client.queue(&r);
                    return Ok(());
                }
                Step::Forward { prelude, command } => {
                    // With PIPELINING this only queues the command; reading
                    // the first reply writes the whole group.
                    waiting.push_back(send_forward(hop, &prelude, &command).await?);
                    if !(hop.pipelining && next_is_rcpt(&self.client.inbuf)) {
                        self.replies(hop, &mut waiting, &mut incoming, &mut prepared)
                            .await?;
                    }
                }
                Step::ResetThenReply(r) => {
                    self.reset_hop(hop).await?;
                    incoming = None;
                    prepared = None;
                    self.client.queue(&r);
                }
                Step::Data => {
                    self.client.queue(&Session::go_ahead());
                    let mut msg = self.data_phase(prepared.take());
                    if let Err(e) = self.read_data(&mut msg).await {
                        self.abandon(msg, &e);
                        return Err(e);
                    }
                    self.deliver(hop, msg).await?;
                }
                Step::Chunk { size, last, refuse } => {
                    if let Some(r) = refuse {
                        self.read_chunk(size, None).await?;
                        self.client.queue(&r);
                        continue;
                    }
                    let mut msg = match incoming.take() {
                        Some(m) => m,
                        None => self.data_phase(prepared.take()),
                    };
                    if let Err(e) = self.read_chunk(size, Some(&mut msg)).await {
                        self.abandon(msg, &e);
                        return Err(e);
                    }
                    if last {
                        self.deliver(hop, msg).await?;
                    } else {
                        self.client.queue(&self.session.chunk_received(size));
                        incoming = Some(msg);
                    }
                }
            }
        }
    }

    /// Reads the next hop's replies to the commands in `waiting`, in order,
    /// and queues the client's replies.
    async fn replies<H: AsyncRead + AsyncWrite>(
        &mut self,
        hop: &mut Hop<H>,
        waiting: &mut VecDeque<Sent>,
        incoming: &mut Option<Incoming>,
        prepared: &mut Option<Incoming>,
    ) -> Result<(), ProxyError> {
        while let Some(sent) = waiting.pop_front() {
            for _ in 0..sent.xforward {
                refused_xforward(&hop.reply().await?);
            }
            let r = hop.reply().await?;
            let mail_accepted = sent.mail && r.is_positive();
            let r = self.session.forwarded(r);
            if !self.session.transaction().bdat {
                *incoming = None;
            }
            // The client checks (iprev, SPF, DNSBL) need only the envelope,
            // complete once MAIL FROM is accepted: start them now, so their
            // DNS lookups overlap RCPT, DATA and the transfer.
            if sent.mail || sent.rset {
                *prepared = mail_accepted.then(|| self.start_message());
            }
            self.client.queue(&r);
        }
        Ok(())
    }

    fn start_message(&self) -> Incoming {
        let (snap, s) = (&self.cx.snap, &self.session);
        let ctx = Arc::clone(snap.context(self.cx.listener.mode));
        let client_ip = s.client_ip();
        let authenticated = s.login().is_some();
        let origin = Origin {
            authenticated,
            internal: client_ip
                .is_some_and(|ip| crate::policy::is_internal(ip, &ctx.internal_hosts)),
            ..Origin::default()
        };
        let envelope = Envelope {
            client_ip,
            helo: s.client_helo(),
            mail_from: Some(s.transaction().mail_from.clone()),
            authenticated,
        };
        let plan = crate::outcome::plan(self.cx.listener.role, &origin);
        let resolver = Arc::clone(&snap.resolver);
        let job = InFlight::start(Front::Proxy, ctx, resolver, plan, envelope, None);
        let m = &snap.config.message;
        Incoming {
            job,
            spool: Spool::new(m.spool_threshold, m.spool_dir.clone()),
            pending: Vec::new(),
            size: 0,
            longest_line: 0,
            deadline: self.data_deadline(),
            spool_failed: None,
        }
    }

    /// Feeds message bytes to the pipeline and the spool. Past the size
    /// limit, or once the spool failed, the bytes are counted but no
    /// longer kept.
    fn take(&self, msg: &mut Incoming, bytes: &[u8]) {
        msg.size += bytes.len() as u64;
        let max = self.cx.snap.config.server.max_message_size;
        if (max > 0 && msg.size > max) || msg.spool_failed.is_some() {
            return;
        }
        if let Pushed::Body { from } = msg.job.push(bytes) {
            let body = &bytes[from..];
            // In memory below the threshold; the file's part waits for
            // `spill` (no file I/O on the runtime thread).
            if !(msg.pending.is_empty() && msg.spool.hold(body)) {
                msg.pending.extend_from_slice(body);
            }
        }
    }

    /// The message whose data now starts: the one prepared at MAIL (its
    /// lookups already running), else a new one; the data deadline counts
    /// from now.
    fn data_phase(&self, prepared: Option<Incoming>) -> Incoming {
        let mut msg = prepared.unwrap_or_else(|| self.start_message());
        msg.deadline = self.data_deadline();
        msg
    }

    fn data_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(self.cx.snap.config.server.max_data_secs)
    }

    /// The wait for the next DATA bytes: the per-read timeout, cut short
    /// by the message deadline, so a client dripping bytes cannot hold a
    /// session forever.
    fn data_wait(&self, deadline: tokio::time::Instant) -> Result<Duration, ProxyError> {
        let per_read = Duration::from_secs(self.cx.snap.config.server.data_timeout_secs);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(ProxyError::ClientTimeout);
        }
        Ok(per_read.min(left))
    }

    async fn read_data(&mut self, msg: &mut Incoming) -> Result<(), ProxyError> {
        let mut dec = DotDecoder::default();
        loop {
            if !self.client.inbuf.is_empty() {
                // Decoded bytes go to the job and the spool as slices of the
                // read buffer (no copy).
                let end = dec.push_with(&self.client.inbuf, |piece| self.take(msg, piece));
                spill(msg).await;
                let used = end.unwrap_or(self.client.inbuf.len());
                self.client.inbuf.drain(..used);
                if end.is_some() {
                    msg.longest_line = dec.longest_line();
                    return Ok(());
                }
            }
            let limit = self.data_wait(msg.deadline)?;
            if !self.client.fill(limit).await? {
                return Err(ProxyError::Client(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    async fn read_chunk(
        &mut self,
        size: usize,
        mut msg: Option<&mut Incoming>,
    ) -> Result<(), ProxyError> {
        let deadline = msg
            .as_deref()
            .map_or_else(|| self.data_deadline(), |m| m.deadline);
        let mut left = size;
        let mut line = 0usize;
        loop {
            let n = left.min(self.client.inbuf.len());
            let bytes: Vec<u8> = self.client.inbuf.drain(..n).collect();
            left -= n;
            if let Some(m) = msg.as_deref_mut() {
                for piece in bytes.split_inclusive(|&b| b == b'\n') {
                    line += piece.len();
                    if piece.ends_with(b"\n") {
                        m.longest_line = m.longest_line.max(line.saturating_sub(2));
                        line = 0;
                    }
                }
                self.take(m, &bytes);
                spill(m).await;
            }
            if left == 0 {
                return Ok(());
            }
            let limit = self.data_wait(deadline)?;
            if !self.client.fill(limit).await? {
                return Err(ProxyError::Client(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// What the log line and the records need to know of the message.
    fn meta(&self, msg: &Incoming) -> Meta {
        Meta {
            queue_id: self.session.queue_id().map(str::to_string),
            recipients: self.session.transaction().rcpts.len(),
            size: msg.size,
            rcpt_domain: self
                .session
                .transaction()
                .rcpts
                .first()
                .and_then(|r| crate::message::address::domain_of(r.trim_matches(['<', '>']))),
        }
    }

    /// Runs the pipeline and relays the message; queues the client's replies.
    async fn deliver<H: AsyncRead + AsyncWrite>(
        &mut self,
        hop: &mut Hop<H>,
        mut msg: Incoming,
    ) -> Result<(), ProxyError> {
        let settings = &self.cx.snap.config.server;
        let meta = self.meta(&msg);
        let rcpts = meta.recipients;
        let refusal = if settings.max_message_size > 0 && msg.size > settings.max_message_size {
            Some(Refusal::TooBig)
        } else if msg.longest_line > settings.max_line_length {
            Some(Refusal::LineTooLong(settings.max_line_length))
        } else {
            msg.spool_failed.take().map(Refusal::Spool)
        };
        let headers_count = msg.job.headers().len();
        let mut fate = match refusal {
            Some(r) => msg.job.refuse(meta, r),
            None => msg.job.finish(meta).await,
        };
        // The proxy's own limit on header fields, checked once the pipeline
        // has split them (a pipeline failure keeps its own reply).
        if fate.message.is_some()
            && headers_count.max(fate.headers().len()) > settings.max_header_fields
        {
            fate.overrule(Refusal::TooManyHeaders(settings.max_header_fields));
        }
        if let Some(answer) = &fate.answer {
            let r = Reply::from(answer);
            let reset = self.reset_hop(hop).await;
            fate.emit();
            reset?;
            for reply in self.session.data_failed(r) {
                self.client.queue(&reply);
            }
            return Ok(());
        }
        let mut head = Vec::with_capacity(4096);
        if let Some(m) = &fate.message {
            m.write_head(&mut head);
        }
        let replies = match self.relay(hop, &head, msg.spool, rcpts).await {
            Ok(r) => r,
            Err(ProxyError::Spool(why)) => {
                fate.overrule(Refusal::Spool(why.clone()));
                let r = fate
                    .answer
                    .as_ref()
                    .map_or_else(Session::hop_failed, Reply::from);
                // Cut off inside DATA, the next hop can only be dropped;
                // before DATA its transaction is reset and the session goes on.
                let reset = if hop.broken {
                    Err(ProxyError::Spool(why))
                } else {
                    self.reset_hop(hop).await
                };
                fate.emit();
                for reply in self.session.data_failed(r) {
                    self.client.queue(&reply);
                }
                return reset;
            }
            Err(e) => {
                fate.overrule(refusal_of(&e));
                fate.emit();
                return Err(e);
            }
        };
        fate.told = replies.first().map(|r| format!("{} {r}", outcome_word(r)));
        fate.emit();
        for reply in replies {
            self.client.queue(&reply);
        }
        Ok(())
    }

    /// `RSET` to the next hop: whatever it had open is gone.
    async fn reset_hop<H: AsyncRead + AsyncWrite>(
        &mut self,
        hop: &mut Hop<H>,
    ) -> Result<(), ProxyError> {
        hop.command(b"RSET\r\n").await?;
        self.session.hop_reset();
        Ok(())
    }

    /// The connection ends inside a message: its record says why.
    fn abandon(&self, msg: Incoming, e: &ProxyError) {
        let meta = self.meta(&msg);
        msg.job.refuse(meta, refusal_of(e)).emit();
    }

    /// DATA to the next hop: the new header block, the spooled body.
    async fn relay<H: AsyncRead + AsyncWrite>(
        &mut self,
        hop: &mut Hop<H>,
        head: &[u8],
        spool: Spool,
        rcpts: usize,
    ) -> Result<Vec<Reply>, ProxyError> {
        // The spool file is rewound before DATA (on the blocking pool, as
        // its reads): failing here leaves the next hop's transaction open,
        // to be reset.
        let body = match spool.into_body() {
            SpoolBody::Mem(m) => Body::Mem(m),
            SpoolBody::File(f) => {
                let mut f = tokio::fs::File::from_std(f);
                f.seek(std::io::SeekFrom::Start(0))
                    .await
                    .map_err(|e| ProxyError::Spool(e.to_string()))?;
                Body::File(f)
            }
        };
        let go = hop.command(b"DATA\r\n").await?;
        if go.code != 354 {
            return Ok(self.session.data_replies(vec![go]));
        }
        // Header block, body and the final dot go out in as few writes as
        // READ_CHUNK allows: a small message is one write, not three (each
        // write wakes the next hop).
        let mut enc = DotEncoder::default();
        let mut out = Vec::with_capacity(2 * READ_CHUNK + head.len());
        enc.push(head, &mut out);
        match body {
            // A body still in memory is encoded from where it lies.
            Body::Mem(body) => {
                for piece in body.chunks(READ_CHUNK) {
                    encode_to(hop, &mut enc, &mut out, piece).await?;
                }
            }
            Body::File(mut file) => {
                let mut buf = vec![0u8; READ_CHUNK];
                loop {
                    let n = file.read(&mut buf).await.map_err(|e| {
                        hop.broken = true;
                        ProxyError::Spool(e.to_string())
                    })?;
                    if n == 0 {
                        break;
                    }
                    encode_to(hop, &mut enc, &mut out, &buf[..n]).await?;
                }
            }
        }
        enc.finish(&mut out);
        hop.send(&out).await?;
        let limit = Duration::from_secs(self.cx.snap.config.server.next_hop_data_timeout_secs);
        let n = match self.cx.listener.next_hop_protocol {
            HopProtocol::Smtp => 1,
            HopProtocol::Lmtp => rcpts.max(1),
        };
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(hop.reply_within(limit).await?);
        }
        self.session.hop_reset();
        Ok(self.session.data_replies(replies))
    }
}

/// A body to relay: in memory, or its spool file read through `tokio::fs`
/// (the reads run on the blocking pool).
enum Body {
    Mem(Vec<u8>),
    File(tokio::fs::File),
}

/// Writes the message's pending body bytes to its spool file on tokio's
/// blocking pool (STYLE §8: a large body going to disk must not stall the
/// other sessions on the runtime thread). A failure is kept in
/// `spool_failed`: the rest of the message is read, not kept.
async fn spill(msg: &mut Incoming) {
    if msg.pending.is_empty() {
        return;
    }
    if msg.spool_failed.is_some() {
        msg.pending.clear();
        return;
    }
    // Placeholders while the blocking task owns them (no allocation).
    let mut spool = std::mem::replace(&mut msg.spool, Spool::new(0, None));
    let pending = std::mem::take(&mut msg.pending);
    let done = tokio::task::spawn_blocking(move || {
        let written = spool.write(&pending);
        (spool, pending, written)
    })
    .await;
    match done {
        Ok((spool, mut pending, written)) => {
            msg.spool = spool;
            pending.clear();
            msg.pending = pending;
            if let Err(e) = written {
                msg.spool_failed = Some(e.to_string());
            }
        }
        Err(e) => msg.spool_failed = Some(format!("spool task: {e}")),
    }
}

/// Dot-stuffs `piece` onto `out`; sends `out` once it holds a chunk's worth.
async fn encode_to<H: AsyncRead + AsyncWrite>(
    hop: &mut Hop<H>,
    enc: &mut DotEncoder,
    out: &mut Vec<u8>,
    piece: &[u8],
) -> Result<(), ProxyError> {
    enc.push(piece, out);
    if out.len() >= READ_CHUNK {
        hop.send(out).await?;
        out.clear();
    }
    Ok(())
}

/// A command sent to the next hop, its reply not read yet.
struct Sent {
    /// XFORWARD lines sent before it in the same write (their replies come
    /// first and are only checked).
    xforward: usize,
    /// It was MAIL FROM.
    mail: bool,
    /// It was RSET.
    rset: bool,
}

/// Sends the XFORWARD `prelude` and `command` to the next hop without
/// reading the command's reply. With PIPELINING (RFC 2920) they go out in
/// one write; without it each XFORWARD is answered before the next line.
async fn send_forward<H: AsyncRead + AsyncWrite>(
    hop: &mut Hop<H>,
    prelude: &[Vec<u8>],
    command: &[u8],
) -> Result<Sent, ProxyError> {
    let mut sent = Sent {
        xforward: 0,
        mail: is_verb(command, b"MAIL "),
        rset: is_verb(command, b"RSET"),
    };
    if hop.pipelining {
        // Written with the RCPTs pipelined behind it, at the latest when
        // the first reply is read.
        for p in prelude {
            hop.queue(p);
        }
        hop.queue(command);
        sent.xforward = prelude.len();
    } else {
        for p in prelude {
            hop.send(p).await?;
            refused_xforward(&hop.reply().await?);
        }
        hop.send(command).await?;
    }
    Ok(sent)
}

/// Is the next complete command line the client already sent a RCPT?
/// Only then is a reply left unread: the client pipelined and is not
/// waiting for it yet.
fn next_is_rcpt(inbuf: &[u8]) -> bool {
    memchr::memchr(b'\n', inbuf).is_some() && is_verb(inbuf, b"RCPT ")
}

fn refused_xforward(r: &Reply) {
    if !r.is_positive() {
        tracing::warn!("next hop refused XFORWARD: {r}");
    }
}

/// Does this command line start with `verb` (any case)?
fn is_verb(command: &[u8], verb: &[u8]) -> bool {
    command
        .get(..verb.len())
        .is_some_and(|v| v.eq_ignore_ascii_case(verb))
}

fn outcome_word(r: &Reply) -> &'static str {
    match r.code {
        200..=299 => "relayed",
        400..=499 => "tempfail",
        _ => "rejected",
    }
}

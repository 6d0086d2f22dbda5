//! One proxy connection: bytes between the client, the [`Session`] state
//! machine, the message pipeline and the next hop.
//!
//! Owns: timeouts per phase, reading commands and DATA/BDAT, spooling the
//! body while the pipeline hashes it, relaying the filtered message and
//! handing the next hop's own replies back. Must not: decide what a command
//! means (the session does) or what a result means (the pipeline does).
//!
//! Never owning a message: the client gets a 2xx for a message only as the
//! next hop's own 2xx; anything going wrong on our side becomes a 4xx.

use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::timeout;

use super::data::{DotDecoder, DotEncoder};
use super::reply::{Reply, complete_reply_len};
use super::session::{HopCaps, Session, SessionConfig, Step};
use crate::config::ListenerSettings;
use crate::dns::Metered;
use crate::message::body::{Spool, SpoolReader};
use crate::pipeline::{Envelope, MessageJob, Options, Pushed};
use crate::role::{HopProtocol, ListenProtocol, Role};
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
    #[error("next hop: {0}")]
    Hop(String),
    #[error("shutting down")]
    Shutdown,
}

fn io_err(e: std::io::Error) -> ProxyError {
    ProxyError::Client(e)
}

/// The next hop connection.
struct Hop {
    r: ReadHalf<Stream>,
    w: WriteHalf<Stream>,
    buf: Vec<u8>,
    /// Pipelined commands not written yet: they go out together, in one
    /// write, before the first reply is read (or with the next write).
    out: Vec<u8>,
    timeout: Duration,
    /// The next hop offered PIPELINING.
    pipelining: bool,
}

impl Hop {
    async fn connect(to: &crate::sockaddr::SocketAddress, secs: u64) -> Result<Hop, String> {
        let stream = timeout(Duration::from_secs(secs), Stream::connect(to))
            .await
            .map_err(|_| format!("connect to {to} timed out"))?
            .map_err(|e| format!("connect to {to}: {e}"))?;
        let (r, w) = tokio::io::split(stream);
        Ok(Hop {
            r,
            w,
            buf: Vec::new(),
            out: Vec::new(),
            timeout: Duration::from_secs(secs),
            pipelining: false,
        })
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
}

impl<S: AsyncRead + AsyncWrite> Client<S> {
    async fn flush(&mut self) -> Result<(), ProxyError> {
        if !self.out.is_empty() {
            self.w.write_all(&self.out).await.map_err(io_err)?;
            self.out.clear();
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
    hop: Hop,
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
    fn take(&self, hostname: &str) -> Option<(Hop, HopCaps)> {
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
    fn park(&self, hop: Hop, caps: HopCaps, hostname: String, idle: Duration) -> Option<Hop> {
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

/// Serves one SMTP/LMTP client until it quits or fails.
pub async fn serve_connection<S>(stream: S, peer: Peer, cx: ConnContext)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(stream);
    let mut client = Client {
        r,
        w,
        inbuf: Vec::new(),
        out: Vec::new(),
    };
    let settings = &cx.snap.config.server;
    let hostname = server_hostname(&cx.snap);
    let pooled = cx.hops.take(&hostname);
    let reused = pooled.is_some();
    let opened = match pooled {
        // The reply timeout of this session's configuration (a reload may
        // have changed it since the connection was made).
        Some((mut h, caps)) => {
            h.timeout = Duration::from_secs(settings.next_hop_timeout_secs);
            Ok((h, caps))
        }
        None => open_hop(&cx, &hostname).await,
    };
    let mut hop = match opened {
        Ok(h) => h,
        Err(why) => {
            tracing::warn!(peer = %peer, "next hop {} unavailable: {why}", cx.listener.next_hop);
            client.queue(&Reply::new(
                421,
                "4.4.1",
                format!("{hostname} next hop unavailable, try again later"),
            ));
            let _ = client.flush().await;
            return;
        }
    };
    let trusted = match peer {
        Peer::Unix => true,
        Peer::Tcp(a) => crate::policy::is_internal(a.ip(), &settings.authorized_xforward_hosts),
    };
    tracing::debug!(peer = %peer, reused, "next hop connection");
    let session = Session::new(SessionConfig {
        lmtp: cx.listener.protocol == ListenProtocol::Lmtp,
        hostname: hostname.clone(),
        max_message_size: settings.max_message_size,
        max_recipients: settings.max_recipients,
        hop: hop.1.clone(),
        trusted,
        peer_ip: peer.ip(),
    });
    let mut conn = Conn {
        cx: &cx,
        session,
        client,
        shutdown: cx.shutdown.clone(),
    };
    let result = conn.run(&mut hop.0).await;
    let reusable = result.is_ok() && conn.session.hop_reusable();
    match result {
        Ok(()) => {}
        Err(ProxyError::Hop(why)) => {
            tracing::warn!(peer = %peer, "next hop failed: {why}");
            conn.client.queue(&Session::hop_failed());
        }
        Err(ProxyError::Shutdown) => conn.client.queue(&Reply::new(
            421,
            "4.3.2",
            "Service shutting down, try again later",
        )),
        Err(ProxyError::ClientTimeout) => {
            tracing::info!(peer = %peer, "client timed out");
            conn.client.queue(&Reply::new(
                421,
                "4.4.2",
                "Timeout exceeded, closing connection",
            ));
        }
        Err(e) => tracing::info!(peer = %peer, "session ended: {e}"),
    }
    let _ = conn.client.flush().await;
    let _ = conn.client.w.shutdown().await;
    let idle = Duration::from_secs(settings.next_hop_idle_secs);
    let (hop, caps) = hop;
    let left = if reusable && !*cx.shutdown.borrow() {
        cx.hops.park(hop, caps, hostname, idle)
    } else {
        Some(hop)
    };
    if let Some(hop) = left {
        hop.quit().await;
    }
}

fn server_hostname(snap: &Snapshot) -> String {
    let h = &snap.config.server.hostname;
    if h.is_empty() {
        crate::config::system_hostname()
    } else {
        h.clone()
    }
}

async fn open_hop(cx: &ConnContext, hostname: &str) -> Result<(Hop, HopCaps), String> {
    let s = &cx.snap.config.server;
    let mut hop = Hop::connect(&cx.listener.next_hop, s.connect_timeout_secs).await?;
    hop.timeout = Duration::from_secs(s.next_hop_timeout_secs);
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
    job: MessageJob<Metered<Arc<crate::dns::SystemResolver>>>,
    metered: Arc<Metered<Arc<crate::dns::SystemResolver>>>,
    spool: Spool,
    size: u64,
    longest_line: usize,
    /// The whole message must have arrived by then (`server.max_data_secs`).
    deadline: tokio::time::Instant,
}

impl<S: AsyncRead + AsyncWrite + Send> Conn<'_, S> {
    async fn run(&mut self, hop: &mut Hop) -> Result<(), ProxyError> {
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
                self.client
                    .queue(&Reply::new(500, "5.5.2", "Error: line too long"));
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
                    self.client
                        .queue(&Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
                    let mut msg = self.data_phase(prepared.take());
                    self.read_data(&mut msg).await?;
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
                    self.read_chunk(size, Some(&mut msg)).await?;
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
    async fn replies(
        &mut self,
        hop: &mut Hop,
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

    /// The pipeline options for this message from the listener's role.
    fn options(&self) -> Options {
        let s = &self.session;
        let ctx = self.cx.snap.context(self.cx.listener.mode);
        let client_ip = s.client_ip();
        let authenticated = s.login().is_some();
        let internal =
            client_ip.is_some_and(|ip| crate::policy::is_internal(ip, &ctx.internal_hosts));
        let (verify, sign) = match self.cx.listener.role {
            Role::Inbound => (true, false),
            Role::Outbound => (false, true),
            Role::Both => (true, true),
            Role::Auto if internal || authenticated => (false, true),
            Role::Auto => (true, false),
        };
        Options {
            verify,
            sign,
            now: now(),
            envelope: Envelope {
                client_ip,
                helo: s.client_helo(),
                mail_from: Some(s.transaction().mail_from.clone()),
                authenticated,
            },
        }
    }

    fn start_message(&self) -> Incoming {
        let snap = &self.cx.snap;
        let ctx = Arc::clone(snap.context(self.cx.listener.mode));
        let metered = Arc::new(Metered::new(Arc::clone(&snap.resolver)));
        let job = MessageJob::new(ctx, Arc::clone(&metered), self.options());
        let m = &snap.config.message;
        Incoming {
            job,
            metered,
            spool: Spool::new(m.spool_threshold, m.spool_dir.clone()),
            size: 0,
            longest_line: 0,
            deadline: self.data_deadline(),
        }
    }

    /// Feeds message bytes to the pipeline and the spool. Past the size
    /// limit the bytes are counted but no longer kept.
    fn take(&self, msg: &mut Incoming, bytes: &[u8]) -> Result<(), ProxyError> {
        msg.size += bytes.len() as u64;
        let max = self.cx.snap.config.server.max_message_size;
        if max > 0 && msg.size > max {
            return Ok(());
        }
        if let Pushed::Body { from } = msg.job.push(bytes) {
            msg.spool
                .write(&bytes[from..])
                .map_err(|e| ProxyError::Hop(format!("spool: {e}")))?;
        }
        Ok(())
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
                let mut failed = Ok(());
                let end = dec.push_with(&self.client.inbuf, |piece| {
                    if failed.is_ok() {
                        failed = self.take(msg, piece);
                    }
                });
                failed?;
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
                self.take(m, &bytes)?;
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

    /// Runs the pipeline and relays the message; queues the client's replies.
    async fn deliver(&mut self, hop: &mut Hop, mut msg: Incoming) -> Result<(), ProxyError> {
        let settings = &self.cx.snap.config.server;
        let rcpts = self.session.transaction().rcpts.len();
        let queue_id = self.session.queue_id().map(str::to_string);
        let refusal = if settings.max_message_size > 0 && msg.size > settings.max_message_size {
            Some(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"))
        } else if msg.longest_line > settings.max_line_length {
            Some(Reply::new(
                554,
                "5.6.0",
                format!(
                    "Message has a line longer than {} bytes",
                    settings.max_line_length
                ),
            ))
        } else {
            None
        };
        if let Some(r) = refusal {
            self.reset_hop(hop).await?;
            self.finish_with(&r, queue_id.as_deref(), rcpts, msg.size);
            return Ok(());
        }
        let headers_count = msg.job.headers().len();
        let finished = match msg.job.finish().await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("pipeline failed: {e}");
                self.reset_hop(hop).await?;
                let r = Reply::new(451, "4.3.0", "Error: internal error, try again later");
                self.finish_with(&r, queue_id.as_deref(), rcpts, msg.size);
                return Ok(());
            }
        };
        let v = &finished.verdict;
        let size = msg.size;
        let log = |outcome: &str, stats: &crate::dns::DnsStats| {
            let info = crate::report::MessageInfo {
                queue_id: queue_id.as_deref(),
                recipients: rcpts,
                size,
                outcome,
            };
            crate::report::log_message(&info, v, stats);
        };
        let local = if headers_count.max(finished.headers.len()) > settings.max_header_fields {
            Some(Reply::new(
                554,
                "5.6.0",
                format!(
                    "Message has more than {} header fields",
                    settings.max_header_fields
                ),
            ))
        } else if let Some(why) = &v.tempfail {
            Some(Reply::new(451, "4.7.1", format!("Try again later: {why}")))
        } else {
            v.reject
                .as_ref()
                .map(|why| Reply::new(550, "5.7.1", format!("Message refused: {why}")))
        };
        if let Some(r) = local {
            self.reset_hop(hop).await?;
            log(&format!("{} {r}", outcome_word(&r)), &msg.metered.stats());
            for reply in self.session.data_failed(r) {
                self.client.queue(&reply);
            }
            return Ok(());
        }
        let mut head = Vec::with_capacity(4096);
        finished.write_head(&mut head);
        let replies = self.relay(hop, &head, &mut msg.spool, rcpts).await?;
        let summary = replies
            .first()
            .map_or(String::new(), |r| format!("{} {r}", outcome_word(r)));
        log(&summary, &msg.metered.stats());
        for reply in replies {
            self.client.queue(&reply);
        }
        Ok(())
    }

    /// `RSET` to the next hop: whatever it had open is gone.
    async fn reset_hop(&mut self, hop: &mut Hop) -> Result<(), ProxyError> {
        hop.command(b"RSET\r\n").await?;
        self.session.hop_reset();
        Ok(())
    }

    fn finish_with(&mut self, r: &Reply, queue_id: Option<&str>, rcpts: usize, size: u64) {
        tracing::info!(
            queue_id = queue_id.unwrap_or("-"),
            rcpts,
            size,
            outcome = %r,
            "message not relayed"
        );
        for reply in self.session.data_failed(r.clone()) {
            self.client.queue(&reply);
        }
    }

    /// DATA to the next hop: the new header block, the spooled body.
    async fn relay(
        &mut self,
        hop: &mut Hop,
        head: &[u8],
        spool: &mut Spool,
        rcpts: usize,
    ) -> Result<Vec<Reply>, ProxyError> {
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
        let reader = spool
            .reader()
            .map_err(|e| ProxyError::Hop(format!("spool: {e}")))?;
        match reader {
            // A body still in memory is encoded from where it lies.
            SpoolReader::Mem(body) => {
                for piece in body.chunks(READ_CHUNK) {
                    encode_to(hop, &mut enc, &mut out, piece).await?;
                }
            }
            SpoolReader::File(file) => {
                let mut buf = vec![0u8; READ_CHUNK];
                loop {
                    let n = file
                        .read(&mut buf)
                        .map_err(|e| ProxyError::Hop(format!("spool: {e}")))?;
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

/// Dot-stuffs `piece` onto `out`; sends `out` once it holds a chunk's worth.
async fn encode_to(
    hop: &mut Hop,
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
async fn send_forward(
    hop: &mut Hop,
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

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! Milter front: Postfix `smtpd_milters`/`non_smtpd_milters` and Sendmail
//! `INPUT_MAIL_FILTER` talk to us over a Unix or TCP socket.
//!
//! Owns: moving bytes between the socket and [`session::Session`], and
//! running one message per transaction through the outcome layer (started
//! at MAIL FROM so SPF runs during the transfer, fed header and body events
//! as they arrive, never keeping the body), then writing its record; at
//! shutdown, closing a connection between messages and letting one in the
//! middle of a message finish it first. The accept loop is the server's. Must not: interpret the protocol (that is
//! [`session`] and [`codec`]) or decide a message's fate (that is
//! [`crate::outcome`]).

pub mod codec;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::config::{ListenerSettings, MilterSettings};
use crate::dns::SystemResolver;
use crate::outcome::{Fate, Front, InFlight, Meta, Refusal};
use crate::server::Snapshot;
use crate::server::listen::{Peer, Stream};
use codec::{CodecError, Response};
use session::{Action, Begin, Session, SessionError};

/// Why a milter connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Reading or writing the socket failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The MTA sent bytes that are not a milter packet.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The MTA sent a packet that makes no sense here.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The MTA said nothing for too long.
    #[error("no command from the MTA for {0} s")]
    Timeout(u64),
}

/// One message in flight.
type Job = InFlight<Arc<SystemResolver>>;

/// Room made for a socket read, and the least room worth a read.
const READ_SIZE: usize = 64 * 1024;
const READ_MIN: usize = 16 * 1024;

/// The session settings for `listener` under `snap`'s configuration.
pub fn session_settings(listener: &ListenerSettings, snap: &Snapshot) -> session::Settings {
    let m: &MilterSettings = &snap.config.milter;
    session::Settings {
        role: listener.role,
        outbound_daemons: m.outbound_daemons.clone(),
        internal_hosts: snap.before_queue.internal_hosts.clone(),
        sign_local_submissions: m.sign_local_submissions,
        quarantine: m.quarantine,
    }
}

/// Serves one MTA connection until it quits or fails, or until `shutdown`
/// flips to `true` while no message is in progress. Every message gets a
/// reply: a failure inside the pipeline becomes a 451 for that message
/// only; a broken connection makes the MTA apply `milter_default_action`.
pub async fn serve_connection(
    stream: Stream,
    peer: Peer,
    listener: Arc<ListenerSettings>,
    snap: Arc<Snapshot>,
    shutdown: watch::Receiver<bool>,
) {
    let settings = session_settings(&listener, &snap);
    // No tracing span around the connection: entering and leaving it on
    // every poll cost more than the one field it would add (the peer is
    // "unix" for Postfix's usual socket); the lines below name it.
    match drive(stream, settings, snap, shutdown).await {
        Ok(()) => tracing::debug!(%peer, "milter connection closed"),
        Err(ConnError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%peer, "MTA hung up")
        }
        Err(e) => tracing::warn!(%peer, error = %e, "milter connection ended"),
    }
}

/// The connection loop over any byte stream (tests use a socket pair).
/// Once `shutdown` is `true`, the connection is closed (`Ok`) as soon as
/// it waits for the MTA with no message in progress and nothing half read;
/// a message in progress is finished first.
pub async fn drive<S>(
    mut io: S,
    settings: session::Settings,
    snap: Arc<Snapshot>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let idle = snap.config.server.command_timeout_secs.max(1);
    let mut session = Session::new(settings);
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut job: Option<Job> = None;
    // Reused for every packet: the actions, and the header field being fed.
    let mut actions: Vec<Action> = Vec::new();
    let mut field: Vec<u8> = Vec::new();
    // Start of the undecoded bytes: packets are consumed by moving it, and
    // the buffer is compacted once per read, not once per packet.
    let mut pos = 0usize;
    loop {
        let Some((cmd, data, used)) = codec::frame(buf.get(pos..).unwrap_or_default())? else {
            buf.drain(..pos);
            pos = 0;
            if job.is_none() && buf.is_empty() {
                // Between messages: a stop closes the connection; the MTA
                // opens a new one (to the next process) for its next message.
                tokio::select! {
                    biased;
                    () = stopped(&mut shutdown) => {
                        tracing::debug!("shutting down: closing an idle milter connection");
                        return Ok(());
                    }
                    read = read_more(&mut io, &mut buf, idle) => read?,
                }
            } else {
                read_more(&mut io, &mut buf, idle).await?;
            }
            continue;
        };
        pos += used;
        // Body chunks go to the job straight from the read buffer, header
        // fields through one reused buffer.
        match cmd {
            b'B' => actions.extend(session.body_chunk(data.len())?),
            b'L' => {
                let (name, value) = codec::header_parts(data)?;
                session.header_into(name, value, &mut field, &mut actions)?;
            }
            _ => {
                let cmd = codec::parse(cmd, data)?;
                tracing::trace!(?cmd, "from MTA");
                session.handle_into(cmd, &mut actions)?;
            }
        }
        for action in actions.drain(..) {
            match action {
                Action::Reply(r) => codec::encode(&r, &mut out),
                Action::Begin(b) => job = Some(start(&snap, b)),
                Action::Feed(bytes) => {
                    if let Some(j) = &mut job {
                        j.push(&bytes);
                    }
                }
                Action::FeedChunk => {
                    if let Some(j) = &mut job {
                        j.push(data);
                    }
                }
                Action::FeedHeader => {
                    if let Some(j) = &mut job {
                        j.push(&field);
                    }
                }
                Action::Finish(meta) => {
                    for r in finish(job.take(), meta, &mut session).await {
                        codec::encode(&r, &mut out);
                    }
                }
                Action::Abort => job = None,
                Action::Close => {
                    flush(&mut io, &mut out).await?;
                    return Ok(());
                }
            }
        }
        flush(&mut io, &mut out).await?;
    }
}

/// Reads more bytes; the buffer stays under one maximum packet plus one read
/// because [`codec::decode`] refuses oversized lengths up front. It grows
/// only when little room is left (a body chunk is at most 64 KiB), so a
/// connection allocates its buffer once instead of once per read.
async fn read_more<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    idle_secs: u64,
) -> Result<(), ConnError> {
    if buf.capacity() - buf.len() < READ_MIN {
        buf.reserve(READ_SIZE);
    }
    let read = tokio::time::timeout(Duration::from_secs(idle_secs), io.read_buf(buf))
        .await
        .map_err(|_| ConnError::Timeout(idle_secs))??;
    if read == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

/// Resolves once `shutdown` is `true` (never, if its sender is gone
/// without saying so).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn flush<S: AsyncWrite + Unpin>(io: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        io.flush().await?;
        out.clear();
    }
    Ok(())
}

fn start(snap: &Snapshot, b: Begin) -> Job {
    let ctx = Arc::clone(&snap.before_queue);
    let resolver = Arc::clone(&snap.resolver);
    InFlight::start(Front::Milter, ctx, resolver, b.plan, b.envelope, None)
}

/// Finishes the message and returns the replies; writes its record.
async fn finish(job: Option<Job>, meta: Meta, session: &mut Session) -> Vec<Response> {
    let mut fate = match job {
        Some(job) => job.finish(meta).await,
        None => {
            tracing::warn!("end of message without a message");
            let why = Refusal::Failed("end of message without a message".into());
            Fate::refused(Front::Milter, meta, Default::default(), why)
        }
    };
    let replies = session.end_of_message(&fate);
    if replies.iter().any(|r| matches!(r, Response::Quarantine(_))) {
        fate.told = Some("accepted, held".into());
    }
    fate.emit();
    replies
}

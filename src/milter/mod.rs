//! Milter front: Postfix `smtpd_milters`/`non_smtpd_milters` and Sendmail
//! `INPUT_MAIL_FILTER` talk to us over a Unix or TCP socket.
//!
//! Owns: moving bytes between the socket and [`session::Session`], running
//! one pipeline job per message (started at MAIL FROM so SPF runs during the
//! transfer, fed header and body events as they arrive, never keeping the
//! body), the per-message log line, and the small accept loop of `authgate
//! milter`. Must not: interpret the protocol (that is [`session`] and
//! [`codec`]) or decide policy (that is the pipeline).

pub mod codec;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{ListenerSettings, MilterSettings};
use crate::dns::{Metered, SystemResolver};
use crate::pipeline::{MessageJob, Options};
use crate::report::{MessageInfo, log_message};
use crate::server::Snapshot;
use crate::server::listen::{Peer, Stream};
use codec::{CodecError, Response};
use session::{Action, Begin, Finish, Outcome, Session, SessionError};

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

type MeteredResolver = Metered<Arc<SystemResolver>>;

/// Room made for a socket read, and the least room worth a read.
const READ_SIZE: usize = 64 * 1024;
const READ_MIN: usize = 16 * 1024;

/// One message in flight: its pipeline job and DNS meter.
struct Job {
    job: MessageJob<MeteredResolver>,
    dns: Arc<MeteredResolver>,
}

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

/// Serves one MTA connection until it quits or fails. Every message gets
/// a reply: a failure inside the pipeline becomes a 451 for that message
/// only; a broken connection makes the MTA apply `milter_default_action`.
pub async fn serve_connection(
    stream: Stream,
    peer: Peer,
    listener: Arc<ListenerSettings>,
    snap: Arc<Snapshot>,
) {
    let settings = session_settings(&listener, &snap);
    // No tracing span around the connection: entering and leaving it on
    // every poll cost more than the one field it would add (the peer is
    // "unix" for Postfix's usual socket); the lines below name it.
    match drive(stream, settings, snap).await {
        Ok(()) => tracing::debug!(%peer, "MTA closed the milter connection"),
        Err(ConnError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%peer, "MTA hung up")
        }
        Err(e) => tracing::warn!(%peer, error = %e, "milter connection ended"),
    }
}

/// The connection loop over any byte stream (tests use a socket pair).
pub async fn drive<S>(
    mut io: S,
    settings: session::Settings,
    snap: Arc<Snapshot>,
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
            read_more(&mut io, &mut buf, idle).await?;
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
                        j.job.push(&bytes);
                    }
                }
                Action::FeedChunk => {
                    if let Some(j) = &mut job {
                        j.job.push(data);
                    }
                }
                Action::FeedHeader => {
                    if let Some(j) = &mut job {
                        j.job.push(&field);
                    }
                }
                Action::Finish(info) => {
                    for r in finish(job.take(), &info, &mut session).await {
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

async fn flush<S: AsyncWrite + Unpin>(io: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        io.flush().await?;
        out.clear();
    }
    Ok(())
}

fn start(snap: &Snapshot, b: Begin) -> Job {
    tracing::debug!(
        verify = b.verify,
        sign = b.sign,
        reason = b.reason,
        "message starts"
    );
    let dns = Arc::new(Metered::new(Arc::clone(&snap.resolver)));
    let opts = Options {
        verify: b.verify,
        sign: b.sign,
        now: now(),
        envelope: b.envelope,
    };
    let job = MessageJob::new(Arc::clone(&snap.before_queue), Arc::clone(&dns), opts);
    Job { job, dns }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Finishes the job (a panic in it costs this message a 451, not the
/// connection), logs the message, and returns the replies. The job runs in
/// this task: a task of its own per message cost a spawn and a wake-up.
async fn finish(job: Option<Job>, info: &Finish, session: &mut Session) -> Vec<Response> {
    let Some(Job { job, dns }) = job else {
        tracing::warn!("end of message without a message");
        return session.end_of_message(Outcome::Failed);
    };
    let finished = match (CatchUnwind(std::pin::pin!(job.finish()))).await {
        Ok(Ok(f)) => Some(f),
        Ok(Err(e)) => {
            tracing::warn!(queue_id = info.queue_id.as_deref().unwrap_or("-"), error = %e, "pipeline failed");
            None
        }
        Err(_) => {
            tracing::error!(
                queue_id = info.queue_id.as_deref().unwrap_or("-"),
                "pipeline panicked"
            );
            None
        }
    };
    let (replies, verdict) = match &finished {
        Some(f) => (
            session.end_of_message(Outcome::Done {
                verdict: &f.verdict,
                headers: &f.headers,
            }),
            f.verdict.clone(),
        ),
        None => (session.end_of_message(Outcome::Failed), Default::default()),
    };
    let outcome = describe(&replies);
    let mi = MessageInfo {
        queue_id: info.queue_id.as_deref(),
        recipients: info.recipients,
        size: info.size,
        outcome: &outcome,
    };
    log_message(&mi, &verdict, &dns.stats());
    replies
}

/// Polls a future and turns a panic inside it into `Err`, as a spawned
/// task's `JoinHandle` would, without the task.
struct CatchUnwind<'a, F>(std::pin::Pin<&'a mut F>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<'_, F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

/// The log line's `outcome`: what the MTA was told.
fn describe(replies: &[Response]) -> String {
    let held = replies.iter().any(|r| matches!(r, Response::Quarantine(_)));
    match replies.last() {
        Some(Response::ReplyCode(text)) if text.starts_with('5') => {
            format!("rejected {}", text.get(..9).unwrap_or(text))
        }
        Some(Response::ReplyCode(text)) => format!("tempfail {}", text.get(..9).unwrap_or(text)),
        _ if held => "accepted, held".into(),
        _ => "accepted".into(),
    }
}

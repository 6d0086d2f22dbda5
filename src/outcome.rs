//! A message's fate, decided once for every front.
//!
//! Owns: everything between the pipeline and the three fronts (pipe, SMTP/
//! LMTP proxy, milter) that used to be decided in each of them: which
//! listener role means verify and which means sign ([`plan`]); the clock
//! and the per-message DNS meter ([`InFlight::start`]); what a finished
//! message's [`Verdict`] means for the MTA ([`Fate`]: accept, quarantine,
//! reject or tempfail, with the one SMTP code and text per case); what a
//! message refused by the front itself means ([`Refusal`]); and the one
//! per-message [`Record`] (today the log line; the DMARC report row and
//! the metrics hang off it too), written for every message however it
//! ended. Each front only turns a [`Fate`] into its protocol: an SMTP reply,
//! milter actions, an exit status and stdout.
//!
//! Must not: speak a protocol, touch a socket, or evaluate anything (the
//! pipeline does; [`crate::policy::decide`] is the one place that says
//! reject or quarantine).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dns::{DnsStats, Lookup, Metered};
use crate::message::LineEnding;
use crate::message::headers::Header;
use crate::pipeline::{
    Context, Edits, Envelope, Finished, MessageJob, Options, PipelineError, Pushed, Verdict,
};
use crate::role::Role;

/// What happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver it (with our header edits).
    Accept,
    /// Deliver it marked: the quarantine header (and, in the milter, HOLD
    /// when configured).
    Quarantine,
    /// Refuse it: a 5xx, or the reject exit status.
    Reject,
    /// Ask the MTA to retry: a 4xx, or exit 75.
    Tempfail,
}

impl Disposition {
    /// The word in the log line and the records.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Accept => "accept",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
            Disposition::Tempfail => "tempfail",
        }
    }
}

/// An SMTP reply we give ourselves: code, enhanced code (RFC 3463), text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Reply code.
    pub code: u16,
    /// Enhanced status code.
    pub enhanced: &'static str,
    /// Human-readable text (fronts make it safe for their protocol).
    pub text: String,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

impl Answer {
    fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Answer {
        Answer {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// DMARC, DNSBL, SPF or From policy refuses the message.
    pub fn refused(why: &str) -> Answer {
        Answer::new(550, "5.7.1", format!("Message refused: {why}"))
    }

    /// A temporary failure of a check (DNS) with `tempfail` policy.
    pub fn try_later(why: &str) -> Answer {
        Answer::new(451, "4.7.1", format!("Try again later: {why}"))
    }

    /// Something failed on our side (RFC 3463 4.3.0: mail system status).
    pub fn internal_error() -> Answer {
        Answer::new(451, "4.3.0", "Error: internal error, try again later")
    }

    /// The message could not be held on our disk (spool full or failing).
    pub fn spool_failure() -> Answer {
        Answer::new(451, "4.3.0", "Error: local spool failure, try again later")
    }
}

/// Which front carried the message (for the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// `authgate pipe` (and `sign`).
    Pipe,
    /// `authgate verify`.
    Verify,
    /// The SMTP/LMTP proxy.
    Proxy,
    /// The milter.
    Milter,
}

impl Front {
    /// The word in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Pipe => "pipe",
            Front::Verify => "verify",
            Front::Proxy => "proxy",
            Front::Milter => "milter",
        }
    }
}

/// What the front knows about the client besides the envelope, for [`plan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client authenticated (SMTP AUTH).
    pub authenticated: bool,
    /// The client is in `internal_hosts`.
    pub internal: bool,
    /// The MTA's daemon is one of `milter.outbound_daemons`.
    pub outbound_daemon: bool,
    /// Local submission (`sendmail`/pickup) that is to be signed.
    pub local_submission: bool,
}

/// Whether to verify and/or sign, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Verify signatures, check the client, evaluate DMARC, add A-R.
    pub verify: bool,
    /// Sign for authors in the signing table.
    pub sign: bool,
    /// Why (for the debug log).
    pub reason: &'static str,
}

/// The listener's role applied to this client (OpenDKIM's `Mode sv` rules
/// for `auto`): mail from an authenticated client, an internal host, an
/// outbound daemon or a local submission is ours and signed; the rest is
/// verified.
pub fn plan(role: Role, o: &Origin) -> Plan {
    let p = |verify, sign, reason| Plan {
        verify,
        sign,
        reason,
    };
    match role {
        Role::Inbound => p(true, false, "inbound listener"),
        Role::Outbound => p(false, true, "outbound listener"),
        Role::Both => p(true, true, "listener signs and verifies"),
        Role::Auto if o.authenticated => p(false, true, "SASL-authenticated client"),
        Role::Auto if o.internal => p(false, true, "client in internal_hosts"),
        Role::Auto if o.outbound_daemon => p(false, true, "daemon_name in milter.outbound_daemons"),
        Role::Auto if o.local_submission => p(false, true, "local submission"),
        Role::Auto => p(true, false, "inbound"),
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the front knows about a message besides its results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The MTA's queue id (XFORWARD IDENT, milter `i` macro), if known.
    pub queue_id: Option<String>,
    /// Recipients in the transaction.
    pub recipients: usize,
    /// Message size in bytes.
    pub size: u64,
    /// The first recipient's domain (DMARC aggregate `envelope_to`).
    pub rcpt_domain: Option<String>,
}

/// Why a front refused or lost a message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than `server.max_message_size` (RFC 5321 §4.5.3.1.10).
    TooBig,
    /// A line longer than `server.max_line_length` bytes.
    LineTooLong(usize),
    /// More than `server.max_header_fields` header fields.
    TooManyHeaders(usize),
    /// The pipeline failed or panicked.
    Failed(String),
    /// The body could not be spooled or read back (disk full, spool
    /// directory missing or failing): a local temporary failure.
    Spool(String),
    /// The next hop was unavailable or lost the message (closed, timed
    /// out, answered nonsense) before it took it; the front's own reply
    /// (the proxy's 421, pipe's exit 75) said so.
    NextHop(String),
    /// The connection ended before the message did (client gone or timed
    /// out, shutdown); the front's own reply, if any, said so.
    Abandoned(String),
}

/// Why a message was tempfailed, for the metrics
/// (`authgate_tempfails_total{cause}`): typed, never parsed from a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TempfailCause {
    /// A DNS temporary error with `tempfail` policy ([`crate::policy::decide`]).
    Dns,
    /// The spool failed ([`Refusal::Spool`]).
    Spool,
    /// The next hop was unavailable or lost the message ([`Refusal::NextHop`]).
    NextHop,
    /// The pipeline failed or panicked ([`Refusal::Failed`]).
    Internal,
}

impl TempfailCause {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TempfailCause::Dns => "dns",
            TempfailCause::Spool => "spool",
            TempfailCause::NextHop => "next_hop",
            TempfailCause::Internal => "internal",
        }
    }
}

impl Refusal {
    fn fate(&self) -> (Disposition, Option<Answer>, String) {
        let reject = |a: Answer| (Disposition::Reject, Some(a.clone()), a.text);
        match self {
            Refusal::TooBig => reject(Answer::new(
                552,
                "5.3.4",
                "Message size exceeds fixed limit",
            )),
            Refusal::LineTooLong(n) => reject(Answer::new(
                554,
                "5.6.0",
                format!("Message has a line longer than {n} bytes"),
            )),
            Refusal::TooManyHeaders(n) => reject(Answer::new(
                554,
                "5.6.0",
                format!("Message has more than {n} header fields"),
            )),
            Refusal::Failed(why) => (
                Disposition::Tempfail,
                Some(Answer::internal_error()),
                why.clone(),
            ),
            Refusal::Spool(why) => (
                Disposition::Tempfail,
                Some(Answer::spool_failure()),
                format!("spool: {why}"),
            ),
            Refusal::NextHop(why) | Refusal::Abandoned(why) => {
                (Disposition::Tempfail, None, why.clone())
            }
        }
    }

    /// Whether the message's end of data was reached (a client that left
    /// mid-message got no reply at all).
    fn reached_end(&self) -> bool {
        !matches!(self, Refusal::Abandoned(_))
    }
}

/// A message from its start (MAIL FROM, or the first byte in pipe mode) to
/// its [`Fate`]: the pipeline job, its DNS meter, the clock.
pub struct InFlight<R> {
    job: MessageJob<Metered<R>>,
    dns: Arc<Metered<R>>,
    front: Front,
    started: Instant,
}

impl<R: Lookup + 'static> InFlight<R> {
    /// Starts a message: reads the clock (unless `now` is given, as
    /// `--now` does), meters its DNS, starts its job.
    pub fn start(
        front: Front,
        ctx: Arc<Context>,
        resolver: R,
        plan: Plan,
        envelope: Envelope,
        now: Option<u64>,
    ) -> Self {
        tracing::debug!(
            verify = plan.verify,
            sign = plan.sign,
            reason = plan.reason,
            "message starts"
        );
        let dns = Arc::new(Metered::new(resolver));
        let opts = Options {
            verify: plan.verify,
            sign: plan.sign,
            now: now.unwrap_or_else(unix_now),
            envelope,
        };
        InFlight {
            job: MessageJob::new(ctx, Arc::clone(&dns), opts),
            dns,
            front,
            started: Instant::now(),
        }
    }

    /// Feeds the next bytes of the message.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        self.job.push(bytes)
    }

    /// The header fields parsed so far.
    pub fn headers(&self) -> &[Header] {
        self.job.headers()
    }

    /// The message's line ending.
    pub fn line_ending(&self) -> LineEnding {
        self.job.line_ending()
    }

    /// Runs the rest of the pipeline and decides the message's fate. A
    /// failure or a panic inside the pipeline is a tempfail for this
    /// message only (the job runs in the caller's task: a task of its own
    /// per message cost a spawn and a wake-up).
    pub async fn finish(self, meta: Meta) -> Fate {
        let InFlight {
            job,
            dns,
            front,
            started,
        } = self;
        let end_of_data = Instant::now();
        let envelope = job.envelope().clone();
        let result = CatchUnwind(std::pin::pin!(job.finish())).await;
        let done = |f: Result<Finished, PipelineError>| match f {
            Ok(f) => Ok(f),
            Err(e) => Err(e.to_string()),
        };
        match result.map_or_else(|_| Err("pipeline panicked".to_string()), done) {
            Ok(finished) => {
                let mut f = Fate::decided(front, meta, finished, started, dns.stats());
                f.end_of_data = Some(end_of_data);
                f
            }
            Err(why) => {
                tracing::error!(
                    queue_id = meta.queue_id.as_deref().unwrap_or("-"),
                    "pipeline failed: {why}"
                );
                let mut f = Fate::refused(front, meta, envelope, Refusal::Failed(why));
                f.elapsed = started.elapsed();
                f.dns = dns.stats();
                f.end_of_data = Some(end_of_data);
                f
            }
        }
    }

    /// The front refuses (or loses) the message itself; the pipeline's
    /// results so far are dropped.
    pub fn refuse(self, meta: Meta, why: Refusal) -> Fate {
        let envelope = self.job.envelope().clone();
        let end_of_data = why.reached_end().then(Instant::now);
        let mut f = Fate::refused(self.front, meta, envelope, why);
        f.end_of_data = end_of_data;
        f.elapsed = self.started.elapsed();
        f.dns = self.dns.stats();
        f
    }
}

/// Everything about a finished message's fate; fronts turn it into their
/// protocol, then call [`Fate::emit`].
#[derive(Debug)]
pub struct Fate {
    /// What happens to it.
    pub disposition: Disposition,
    /// The reply for a reject or tempfail we answer ourselves (`None`:
    /// the front's own success, e.g. the next hop's reply, or no reply at
    /// all for an abandoned message).
    pub answer: Option<Answer>,
    /// Why it is refused, tempfailed or abandoned.
    pub reason: Option<String>,
    /// The pipeline's results and edits (`None` when the front refused the
    /// message before or instead of the pipeline).
    pub message: Option<Finished>,
    /// The front.
    pub front: Front,
    /// What the front knows besides the results.
    pub meta: Meta,
    /// The envelope (as recovered from trace headers where given).
    pub envelope: Envelope,
    /// From the message's start (MAIL FROM in the proxy, the envelope in
    /// the milter, the first byte in pipe mode) to the decision.
    pub elapsed: Duration,
    /// When the front reached the end of the message's data and asked for
    /// the decision (`None`: the message never got there, or the fate was
    /// made without [`InFlight`]). The metrics' reply latency runs from
    /// here to [`Fate::emit`], which the fronts call just before replying.
    pub end_of_data: Option<Instant>,
    /// Why the front refused, lost or overruled the message itself
    /// (`None`: the pipeline's decision stands).
    pub refusal: Option<Refusal>,
    /// DNS cost of the message.
    pub dns: DnsStats,
    /// What the MTA was told, when the front knows better than the
    /// disposition (the next hop's reply, "held").
    pub told: Option<String>,
}

static NO_EDITS: Edits = Edits {
    add: Vec::new(),
    remove: Vec::new(),
};

impl Fate {
    /// The fate of a message the pipeline finished.
    pub fn decided(
        front: Front,
        meta: Meta,
        mut finished: Finished,
        started: Instant,
        dns: DnsStats,
    ) -> Fate {
        // The record's envelope: moved, not copied (the verdict's is
        // left empty; nothing reads it after rendering).
        let envelope = std::mem::take(&mut finished.verdict.envelope);
        let d = &finished.verdict.decision;
        let (disposition, answer, reason) = if let Some(why) = &d.tempfail {
            (
                Disposition::Tempfail,
                Some(Answer::try_later(why)),
                Some(why.clone()),
            )
        } else if let Some(why) = &d.reject {
            (
                Disposition::Reject,
                Some(Answer::refused(why)),
                Some(why.clone()),
            )
        } else if d.quarantine {
            (Disposition::Quarantine, None, None)
        } else {
            (Disposition::Accept, None, None)
        };
        Fate {
            disposition,
            answer,
            reason,
            envelope,
            message: Some(finished),
            front,
            meta,
            elapsed: started.elapsed(),
            end_of_data: None,
            refusal: None,
            dns,
            told: None,
        }
    }

    /// The fate of a message the front refused or lost itself.
    pub fn refused(front: Front, meta: Meta, envelope: Envelope, why: Refusal) -> Fate {
        let (disposition, answer, reason) = why.fate();
        Fate {
            disposition,
            answer,
            reason: Some(reason),
            message: None,
            front,
            meta,
            envelope,
            elapsed: Duration::ZERO,
            end_of_data: None,
            refusal: Some(why),
            dns: DnsStats::default(),
            told: None,
        }
    }

    /// The front overrules the decision (a limit of its own, or the message
    /// was lost on its way on): the results stay in the record.
    pub fn overrule(&mut self, why: Refusal) {
        let (disposition, answer, reason) = why.fate();
        self.disposition = disposition;
        self.answer = answer;
        self.reason = Some(reason);
        self.refusal = Some(why);
    }

    /// Why a tempfailed message was tempfailed (`None`: not a tempfail, or
    /// a client that left mid-message, which is no tempfail of ours).
    pub fn tempfail_cause(&self) -> Option<TempfailCause> {
        if self.disposition != Disposition::Tempfail {
            return None;
        }
        match &self.refusal {
            None => Some(TempfailCause::Dns),
            Some(Refusal::Spool(_)) => Some(TempfailCause::Spool),
            Some(Refusal::NextHop(_)) => Some(TempfailCause::NextHop),
            Some(Refusal::Failed(_)) => Some(TempfailCause::Internal),
            Some(_) => None,
        }
    }

    /// The results, when the pipeline ran.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.message.as_ref().map(|m| &m.verdict)
    }

    /// The header edits (none when the pipeline did not finish).
    pub fn edits(&self) -> &Edits {
        self.message.as_ref().map_or(&NO_EDITS, |m| &m.edits)
    }

    /// The original header fields (empty when unknown or unparsed).
    pub fn headers(&self) -> &[Header] {
        self.message.as_ref().map_or(&[], |m| &m.headers)
    }

    /// Whether the message goes on to the MTA (accept or quarantine).
    pub fn delivers(&self) -> bool {
        matches!(
            self.disposition,
            Disposition::Accept | Disposition::Quarantine
        )
    }

    /// The per-message record.
    pub fn record(&self) -> Record<'_> {
        Record { fate: self }
    }

    /// Writes the record: the one place every finished message passes.
    /// The log line, then every registered [`Observer`] (the DMARC report
    /// store, metrics).
    pub fn emit(&self) {
        self.record().log();
        let observers = OBSERVERS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for o in observers.iter() {
            o.finished(self);
        }
    }
}

/// Something that wants every finished message (the report store's
/// writer, metrics). It must not block: [`Fate::emit`] runs on the
/// front's task.
pub trait Observer: Send + Sync {
    /// One message's fate.
    fn finished(&self, fate: &Fate);

    /// A session refused before any message, for `cause` (the proxy's 421
    /// greeting when its next hop is down): the client's messages are
    /// tempfailed without a fate of their own.
    fn session_refused(&self, _cause: TempfailCause) {}
}

/// Tells every observer that a session was refused for `cause`
/// ([`Observer::session_refused`]).
pub fn session_refused(cause: TempfailCause) {
    let observers = OBSERVERS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for o in observers.iter() {
        o.session_refused(cause);
    }
}

static OBSERVERS: std::sync::RwLock<Vec<std::sync::Arc<dyn Observer>>> =
    std::sync::RwLock::new(Vec::new());

/// Registers `o` for every message from now on, replacing an earlier one
/// registered under the same `name` (a configuration reload).
pub fn observe(name: &'static str, o: std::sync::Arc<dyn Observer>) {
    let mut all = OBSERVERS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut named = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(i) = named.iter().position(|n| *n == name) {
        all[i] = o;
    } else {
        named.push(name);
        all.push(o);
    }
}

/// Unregisters the observer registered under `name`, if any.
pub fn unobserve(name: &'static str) {
    let mut all = OBSERVERS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut named = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(i) = named.iter().position(|n| *n == name) {
        named.remove(i);
        all.remove(i);
    }
}

static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// The one per-message record, whichever front carried the message.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    fate: &'a Fate,
}

impl Record<'_> {
    /// What the MTA was told: the front's words, else the disposition's
    /// (`accepted`, `rejected 550 5.7.1 ...`, `tempfail 451 4.7.1 ...`).
    pub fn told(&self) -> String {
        let f = self.fate;
        if let Some(t) = &f.told {
            return t.clone();
        }
        match (&f.answer, f.disposition) {
            (Some(a), Disposition::Reject) => format!("rejected {a}"),
            (Some(a), _) => format!("tempfail {a}"),
            (None, Disposition::Tempfail) => "abandoned".into(),
            (None, _) => "accepted".into(),
        }
    }

    /// The per-message log line (info), with the field names admins grep.
    pub fn log(&self) {
        let f = self.fate;
        let v = f.verdict();
        let env = &f.envelope;
        let (reject, tempfail) = match f.disposition {
            Disposition::Reject => (f.reason.as_deref(), None),
            Disposition::Tempfail => (None, f.reason.as_deref()),
            _ => (None, None),
        };
        let signed: Vec<String> = v.map_or_else(Vec::new, |v| {
            v.signed
                .iter()
                .map(|(d, s, alg)| format!("d={d} s={s} a={alg}"))
                .collect()
        });
        let listed: Vec<&str> = v.map_or_else(Vec::new, |v| {
            v.dnsbl
                .iter()
                .filter(|o| o.listed())
                .map(|o| o.zone.as_str())
                .collect()
        });
        if let Some(why) = v.and_then(|v| v.not_signed.as_deref()) {
            // Warn level: `pipe` and `sign` log warnings only, and an admin
            // should see that mail they expect signed left unsigned.
            tracing::warn!(
                front = %f.front.as_str(),
                queue_id = %f.meta.queue_id.as_deref().unwrap_or("-"),
                "message not signed: {why}"
            );
        }
        tracing::info!(
            front = %f.front.as_str(),
            queue_id = %f.meta.queue_id.as_deref().unwrap_or("-"),
            client = %env.client_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            helo = %env.helo.as_deref().unwrap_or("-"),
            from = %env.mail_from.as_deref().map_or("-", |f| if f.is_empty() { "<>" } else { f }),
            rcpts = f.meta.recipients,
            size = f.meta.size,
            dkim = %v.map_or_else(|| "-".to_string(), dkim_summary),
            spf = %v.and_then(|v| v.spf_mailfrom.as_ref()).map_or("-", |o| o.result.as_str()),
            dmarc = %v.map_or_else(|| "-".to_string(), dmarc_summary),
            iprev = %v.and_then(|v| v.iprev.as_ref()).map_or("-", |o| o.result.as_str()),
            dnsbl_listed = %listed.join(","),
            signed = %signed.join(", "),
            not_signed = %v.and_then(|v| v.not_signed.as_deref()).unwrap_or("-"),
            disposition = %f.disposition.as_str(),
            reject = %reject.unwrap_or("-"),
            tempfail = %tempfail.unwrap_or("-"),
            unparsed = %v.and_then(|v| v.unparsed.as_deref()).unwrap_or("-"),
            outcome = %self.told(),
            elapsed_ms = f.elapsed.as_millis() as u64,
            dns_queries = f.dns.queries,
            dns_cache_hits = f.dns.cache_hits,
            dns_wait_ms = f.dns.waited.as_millis() as u64,
            "message"
        );
    }
}

fn dkim_summary(v: &Verdict) -> String {
    let parts: Vec<String> = v
        .dkim
        .iter()
        .map(|d| {
            format!(
                "{} d={} s={}",
                d.result.as_str(),
                d.domain.as_deref().unwrap_or("-"),
                d.selector.as_deref().unwrap_or("-"),
            )
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn dmarc_summary(v: &Verdict) -> String {
    match &v.dmarc {
        None => "-".into(),
        Some(o) => format!(
            "{} header.from={} p={} dis={}",
            o.result.as_str(),
            o.domain,
            o.policy.map_or("-", |p| p.as_str()),
            v.decision.applied.as_str()
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{Answer as DnsAnswer, RecordType};
    use crate::message::HeaderSplitter;
    use crate::pipeline::Edits;
    use crate::policy::Decision;

    #[test]
    fn the_role_and_the_client_say_verify_or_sign() {
        let o = |authenticated, internal, outbound_daemon, local_submission| Origin {
            authenticated,
            internal,
            outbound_daemon,
            local_submission,
        };
        let nobody = o(false, false, false, false);
        for (role, origin, want) in [
            (Role::Auto, nobody, (true, false)),
            (Role::Auto, o(true, false, false, false), (false, true)),
            (Role::Auto, o(false, true, false, false), (false, true)),
            (Role::Auto, o(false, false, true, false), (false, true)),
            (Role::Auto, o(false, false, false, true), (false, true)),
            (Role::Inbound, o(true, true, true, true), (true, false)),
            (Role::Outbound, nobody, (false, true)),
            (Role::Both, nobody, (true, true)),
        ] {
            let p = plan(role, &origin);
            assert_eq!((p.verify, p.sign), want, "{role:?} {origin:?}");
        }
    }

    fn finished(decision: Decision) -> Finished {
        let verdict = Verdict {
            decision,
            ..Verdict::default()
        };
        Finished::new(
            verdict,
            Edits::default(),
            Vec::new(),
            HeaderSplitter::new(0),
        )
    }

    #[test]
    fn each_decision_has_one_disposition_and_one_reply() {
        let why = |s: &str| Some(s.to_string());
        let d = |reject, tempfail, quarantine| Decision {
            reject,
            tempfail,
            quarantine,
            ..Decision::default()
        };
        for (decision, disposition, answer, told) in [
            (d(None, None, false), Disposition::Accept, None, "accepted"),
            (
                d(None, None, true),
                Disposition::Quarantine,
                None,
                "accepted",
            ),
            (
                d(why("DMARC policy of x.example says reject"), None, false),
                Disposition::Reject,
                Some("550 5.7.1 Message refused: DMARC policy of x.example says reject"),
                "rejected 550 5.7.1 Message refused: DMARC policy of x.example says reject",
            ),
            // A tempfail wins over a reject: the result is not final yet.
            (
                d(why("r"), why("DMARC temporary error for x.example"), true),
                Disposition::Tempfail,
                Some("451 4.7.1 Try again later: DMARC temporary error for x.example"),
                "tempfail 451 4.7.1 Try again later: DMARC temporary error for x.example",
            ),
        ] {
            let f = Fate::decided(
                Front::Proxy,
                Meta::default(),
                finished(decision),
                Instant::now(),
                DnsStats::default(),
            );
            assert_eq!(f.disposition, disposition);
            assert_eq!(
                f.answer.as_ref().map(ToString::to_string).as_deref(),
                answer
            );
            assert_eq!(f.record().told(), told);
            assert_eq!(f.delivers(), answer.is_none());
        }
    }

    #[test]
    fn refusals_by_the_front_get_their_reply_and_a_record() {
        for (why, disposition, answer) in [
            (
                Refusal::TooBig,
                Disposition::Reject,
                Some("552 5.3.4 Message size exceeds fixed limit"),
            ),
            (
                Refusal::LineTooLong(998),
                Disposition::Reject,
                Some("554 5.6.0 Message has a line longer than 998 bytes"),
            ),
            (
                Refusal::TooManyHeaders(1000),
                Disposition::Reject,
                Some("554 5.6.0 Message has more than 1000 header fields"),
            ),
            (
                Refusal::Failed("pipeline panicked".into()),
                Disposition::Tempfail,
                Some("451 4.3.0 Error: internal error, try again later"),
            ),
            (
                Refusal::Spool("No space left on device".into()),
                Disposition::Tempfail,
                Some("451 4.3.0 Error: local spool failure, try again later"),
            ),
            (
                Refusal::Abandoned("client timed out".into()),
                Disposition::Tempfail,
                None,
            ),
        ] {
            let f = Fate::refused(
                Front::Milter,
                Meta::default(),
                Envelope::default(),
                why.clone(),
            );
            assert_eq!(f.disposition, disposition, "{why:?}");
            assert_eq!(
                f.answer.as_ref().map(ToString::to_string).as_deref(),
                answer
            );
            assert!(f.reason.is_some() && f.verdict().is_none() && f.edits().add.is_empty());
        }
        let mut f = Fate::decided(
            Front::Proxy,
            Meta::default(),
            finished(Decision::default()),
            Instant::now(),
            DnsStats::default(),
        );
        f.overrule(Refusal::Abandoned("next hop: connection closed".into()));
        assert_eq!(f.disposition, Disposition::Tempfail);
        assert!(f.verdict().is_some(), "the results stay in the record");
        assert_eq!(f.record().told(), "abandoned");
    }

    #[test]
    fn each_tempfail_has_one_typed_cause() {
        let refused =
            |why: Refusal| Fate::refused(Front::Proxy, Meta::default(), Envelope::default(), why);
        for (why, want) in [
            (
                Refusal::Spool("disk full".into()),
                Some(TempfailCause::Spool),
            ),
            (
                Refusal::NextHop("next hop: closed".into()),
                Some(TempfailCause::NextHop),
            ),
            (
                Refusal::Failed("pipeline panicked".into()),
                Some(TempfailCause::Internal),
            ),
            // A client that left got no tempfail from us.
            (Refusal::Abandoned("client timed out".into()), None),
            (Refusal::TooBig, None),
            (Refusal::LineTooLong(998), None),
            (Refusal::TooManyHeaders(9), None),
        ] {
            assert_eq!(refused(why.clone()).tempfail_cause(), want, "{why:?}");
        }
        let decided = |tempfail: Option<&str>, reject: Option<&str>| {
            let d = Decision {
                tempfail: tempfail.map(str::to_string),
                reject: reject.map(str::to_string),
                ..Decision::default()
            };
            Fate::decided(
                Front::Milter,
                Meta::default(),
                finished(d),
                Instant::now(),
                DnsStats::default(),
            )
        };
        // policy::decide tempfails only on a DNS temporary error.
        let mut f = decided(Some("DMARC temporary error for x.example"), None);
        assert_eq!(f.tempfail_cause(), Some(TempfailCause::Dns));
        assert_eq!(decided(None, Some("DMARC")).tempfail_cause(), None);
        assert_eq!(decided(None, None).tempfail_cause(), None);
        // The front's overrule wins: lost on the way to the next hop.
        f.overrule(Refusal::NextHop("next hop: connection closed".into()));
        assert_eq!(f.tempfail_cause(), Some(TempfailCause::NextHop));
        assert_eq!(
            [
                TempfailCause::Dns,
                TempfailCause::Spool,
                TempfailCause::NextHop,
                TempfailCause::Internal
            ]
            .map(TempfailCause::as_str),
            ["dns", "spool", "next_hop", "internal"]
        );
    }

    /// Answers every lookup only after a pause, then panics: the key lookup
    /// runs as its own task, so the panic reaches the pipeline as a failed
    /// task (and DMARC's lookup panics inside `finish` itself).
    struct Panics;

    impl Lookup for Panics {
        async fn lookup(&self, _: &str, _: RecordType) -> DnsAnswer {
            tokio::task::yield_now().await;
            panic!("resolver bug");
        }
    }

    #[tokio::test]
    async fn a_failing_pipeline_is_a_tempfail_for_this_message_only() {
        let ctx = Arc::new(
            crate::config::Config::default()
                .context()
                .expect("default context"),
        );
        let plan = plan(Role::Inbound, &Origin::default());
        let mut msg = InFlight::start(Front::Pipe, ctx, Panics, plan, Envelope::default(), Some(1));
        let signed = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=AAAA; b=AAAA\r\nFrom: a@example.com\r\n\r\nbody\r\n";
        msg.push(signed);
        let f = msg.finish(Meta::default()).await;
        assert_eq!(f.disposition, Disposition::Tempfail);
        assert_eq!(f.answer, Some(Answer::internal_error()));
        assert!(f.message.is_none());
    }
}

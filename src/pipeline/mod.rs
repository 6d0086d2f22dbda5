//! One message through DKIM, SPF, DMARC and local policy, fed in steps.
//!
//! Owns: the per-message work shared by every front (pipe, proxy, milter),
//! in five pieces: [`job`] streams the message (header split, DKIM body
//! hashes, key lookups started as soon as the header block is complete);
//! [`signer`] plans and makes our signatures; [`client`] checks the connecting client (SPF, iprev, DNSBL),
//! started as soon as the envelope is known (MAIL FROM); [`assess`]
//! evaluates DMARC over the results and asks [`crate::policy::decide`] what
//! they make us do; [`render`] writes the header edits in the one fixed
//! order. The result is a [`Finished`] message: its [`Verdict`] and its
//! [`Edits`]. Must not: keep the body (fronts spool it if they need it),
//! write output, read the clock (`now` is an option), or know which front
//! carries the message (what the MTA is told is [`crate::outcome`]'s job).

pub mod assess;
pub mod client;
pub mod job;
pub mod render;
pub mod signer;

use std::net::IpAddr;
use std::sync::Arc;

use crate::dkim::canon::Canon;
use crate::dkim::key::SigningKey;
use crate::dkim::verify::{DkimOutcome, KeyCache, VerifyOptions};
use crate::dmarc::{DmarcOptions, DmarcOutcome};
use crate::dnsbl::{DnsblAction, DnsblOutcome, DnsblZone};
use crate::iprev::IprevOutcome;
use crate::message::HeaderSplitter;
use crate::message::headers::Header;
use crate::policy::{Actions, Decision, RejectAction, SpfFailAction};
use crate::spf::SpfOutcome;

pub use job::{MessageJob, Pushed};
pub use render::Edits;

/// A signing key with the identity it signs as (OpenDKIM KeyTable entry).
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The entry's name, for logs and config errors.
    pub name: String,
    /// `d=`; `%` means the author's domain.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// The private key.
    pub key: Arc<SigningKey>,
}

/// One signing-table row (OpenDKIM SigningTable): pattern and keys to use.
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// Glob on the author address (`*@example.com`) or a bare domain.
    pub pattern: String,
    /// Keys to sign with (several = dual signing, e.g. RSA and Ed25519).
    pub keys: Vec<KeyEntry>,
}

/// Signing policy.
#[derive(Debug, Clone)]
pub struct Signing {
    /// Rows in order; the first match wins.
    pub table: Vec<TableEntry>,
    /// Header canonicalization.
    pub header_canon: Canon,
    /// Body canonicalization.
    pub body_canon: Canon,
    /// Fields to sign when present.
    pub headers: Vec<String>,
    /// Fields signed once more than present.
    pub oversign: Vec<String>,
    /// Seconds until `x=`, if signatures should expire.
    pub expire_after: Option<u64>,
}

/// Everything a message needs that outlives it: the policy. (The resolver
/// is handed to each job separately so a front can meter it per message.)
#[derive(Debug, Clone)]
pub struct Context {
    /// Our authserv-id (RFC 8601 §2.3).
    pub authserv_id: String,
    /// Verification policy.
    pub verify: VerifyOptions,
    /// Signing policy (`None`: nothing to sign with).
    pub signing: Option<Signing>,
    /// Largest header block we parse.
    pub max_header_bytes: usize,
    /// Checks on the connecting client (iprev, DNSBL, SPF).
    pub client_checks: ClientChecks,
    /// DMARC evaluation (`None`: off).
    pub dmarc: Option<DmarcOptions>,
    /// What results make us do.
    pub actions: Actions,
    /// Clients whose mail is ours (signed, never subjected to DMARC policy).
    pub internal_hosts: Vec<ipnet::IpNet>,
    /// Upstream authserv-ids whose A-R results we use when we cannot check ourselves.
    pub trusted_authserv_ids: Vec<String>,
    /// `by` host names of `Received:` fields our own MTA writes; the topmost
    /// such field gives the client address and HELO in pipe mode.
    pub trusted_received_by: Vec<String>,
    /// DKIM key records already parsed, shared by the messages of this context.
    pub dkim_keys: KeyCache,
}

impl Context {
    /// The policy of an after-queue listener. After the queue a reject
    /// means a bounce to the envelope sender, which a spoofer chose
    /// (backscatter): unless `really_reject`, DMARC and SPF rejects become
    /// quarantine and a DNSBL reject a header.
    pub fn after_queue(&self, really_reject: bool) -> Context {
        let mut c = self.clone();
        if really_reject {
            return c;
        }
        if c.actions.dmarc_reject == RejectAction::Reject {
            c.actions.dmarc_reject = RejectAction::Quarantine;
        }
        if c.actions.spf_fail == SpfFailAction::Reject {
            c.actions.spf_fail = SpfFailAction::Quarantine;
        }
        for zone in &mut c.client_checks.dnsbl {
            if zone.action == DnsblAction::Reject {
                zone.action = DnsblAction::Header;
            }
        }
        c
    }
}

/// Checks of the connecting client that need only its address.
#[derive(Debug, Clone, Default)]
pub struct ClientChecks {
    /// Run iprev (RFC 8601 §3).
    pub iprev: bool,
    /// DNS blocklists to ask.
    pub dnsbl: Vec<DnsblZone>,
    /// Header naming the lists that list the client.
    pub dnsbl_header: String,
    /// Check SPF for MAIL FROM (and HELO when `spf_helo`).
    pub spf: bool,
    /// Also check the HELO identity (RFC 7208 §2.3).
    pub spf_helo: bool,
    /// Add `Received-SPF:` (RFC 7208 §9.1).
    pub received_spf: bool,
}

/// The SMTP envelope, as far as the front knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Connecting client address.
    pub client_ip: Option<IpAddr>,
    /// HELO/EHLO name.
    pub helo: Option<String>,
    /// MAIL FROM; `Some("")` is the null sender.
    pub mail_from: Option<String>,
    /// The client authenticated (SMTP AUTH): exempt from DMARC enforcement.
    pub authenticated: bool,
}

/// What to do with this message.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Verify signatures and add Authentication-Results.
    pub verify: bool,
    /// Add signatures for authors in the signing table.
    pub sign: bool,
    /// Current time, seconds since the epoch.
    pub now: u64,
    /// The envelope; MAIL FROM is also the last fallback for the signing
    /// identity. Missing parts may be filled from trace headers.
    pub envelope: Envelope,
}

/// The results for one message and what local policy makes of them.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// One outcome per DKIM-Signature, in header order.
    pub dkim: Vec<DkimOutcome>,
    /// The DKIM-Signature fields we added, in signing-table order.
    pub signatures: Vec<Header>,
    /// `d=`/`s=`/`a=` of each signature added.
    pub signed: Vec<(String, String, String)>,
    /// Why a message we were to sign (its author matched the signing
    /// table) goes out unsigned: no From or several From (RFC 6376 §5.4),
    /// no author domain usable as d=%, or a header block too large to parse.
    pub not_signed: Option<String>,
    /// Why the message was passed through without parsing, if it was.
    pub unparsed: Option<String>,
    /// The envelope used (given, or recovered from trace headers); the
    /// outcome layer moves it into [`crate::outcome::Fate::envelope`].
    pub envelope: Envelope,
    /// iprev outcome, when the client address was known.
    pub iprev: Option<IprevOutcome>,
    /// DNSBL outcomes, in configuration order.
    pub dnsbl: Vec<DnsblOutcome>,
    /// SPF for the MAIL FROM identity.
    pub spf_mailfrom: Option<SpfOutcome>,
    /// SPF for the HELO identity.
    pub spf_helo: Option<SpfOutcome>,
    /// DMARC, when evaluated.
    pub dmarc: Option<DmarcOutcome>,
    /// What local policy makes of the results ([`crate::policy::decide`]):
    /// the only place that says reject, quarantine or tempfail.
    pub decision: Decision,
}

/// Failures that must make the front answer "try again later".
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] crate::dkim::sign::SignError),
    /// A lookup task died.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A message after the pipeline: its verdict, its header edits and what
/// is needed to write the new header block.
#[derive(Debug)]
pub struct Finished {
    /// Results and the decision.
    pub verdict: Verdict,
    /// Fields to add and remove, in their final order.
    pub edits: Edits,
    /// The original header fields.
    pub headers: Vec<Header>,
    /// The message's clock (seconds since the epoch; `--now` where given):
    /// the time its report row carries.
    pub at: u64,
    splitter: HeaderSplitter,
}

impl Finished {
    /// The message is itself a DMARC or feedback report (`multipart/report`
    /// or an RFC 9990 "Report Domain:" subject): never the subject of a
    /// failure report, so reports cannot loop.
    pub fn is_report(&self) -> bool {
        self.headers.iter().any(|h| {
            let v = h.value_str();
            let v = v.trim_start().to_ascii_lowercase();
            (h.is("Content-Type") && v.starts_with("multipart/report"))
                || (h.is("Subject") && v.starts_with("report domain:"))
        })
    }

    /// A finished message from its parts (the job builds it; fronts'
    /// tests may too).
    pub fn new(
        verdict: Verdict,
        edits: Edits,
        headers: Vec<Header>,
        splitter: HeaderSplitter,
    ) -> Finished {
        Finished {
            verdict,
            edits,
            headers,
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            splitter,
        }
    }

    /// The header block as it should be written: added fields, then the
    /// original fields minus removed ones, then the blank separator line.
    /// For an unparsed message, the raw bytes read so far follow the additions.
    pub fn write_head(&self, out: &mut Vec<u8>) {
        for h in &self.edits.add {
            out.extend_from_slice(h.raw());
        }
        if self.verdict.unparsed.is_some() {
            out.extend_from_slice(self.splitter.block());
            return;
        }
        for (i, h) in self.headers.iter().enumerate() {
            if !self.edits.remove.contains(&i) {
                out.extend_from_slice(h.raw());
            }
        }
        out.extend_from_slice(self.splitter.separator());
    }
}

/// Work started early: finished at once when every answer it needed was
/// in the cache, else running as its own task. Most lookups of a busy
/// server are cache hits; each one that needs no task saves an allocation,
/// a scheduling round and often a worker wake-up.
enum Task<T> {
    Done(T),
    Running(tokio::task::JoinHandle<T>),
}

impl<T: Send + 'static> Task<T> {
    /// Polls `fut` once and spawns it only if it has to wait. (A future
    /// that returned `Pending` re-registers its waker when the task polls
    /// it again; the cache's waits are on state, so no wake-up is lost.)
    fn start(
        handle: &tokio::runtime::Handle,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        let mut fut = Box::pin(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => Task::Done(v),
            std::task::Poll::Pending => Task::Running(handle.spawn(fut)),
        }
    }

    async fn join(self) -> Result<T, PipelineError> {
        match self {
            Task::Done(v) => Ok(v),
            Task::Running(h) => h.await.map_err(|e| PipelineError::Internal(e.to_string())),
        }
    }
}

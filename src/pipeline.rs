//! One message through DKIM verification and signing, fed in steps.
//!
//! Owns: the per-message flow shared by every front (pipe, proxy, milter):
//! split the header block from the stream, start key lookups as soon as the
//! header block is complete (concurrently, while the body still streams),
//! hash the body in one pass for every signature to check and to add, then
//! produce the header edits ([`Verdict`]). Must not: keep the body (fronts
//! spool it if they need it), write output, or read the clock (`now` is an
//! option).

use std::collections::HashMap;
use std::sync::Arc;

use crate::authres::{self, Entry};
use crate::dkim::canon::{BodyHash, BodyHashes, BodySpec, Canon};
use crate::dkim::key::SigningKey;
use crate::dkim::sign::{SignSpec, choose_headers, pattern_matches, sign};
use crate::dkim::verify::{
    Candidate, DkimOutcome, DkimResult, KeyCache, VerifyOptions, evaluate, find_signatures,
};
use std::net::IpAddr;

use crate::dmarc::{DmarcOptions, DmarcOutcome, SpfVerdict};
use crate::dns::{DnsError, Resolver};
use crate::dnsbl::{DnsblAction, DnsblOutcome, DnsblZone};
use crate::iprev::IprevOutcome;
use crate::message::address::{domain_of, first_address};
use crate::message::envelope::from_trace_headers;
use crate::message::headers::{Header, split_fields};
use crate::message::{HeaderSplitter, LineEnding, Split};
use crate::policy::{Actions, Decision, Exemption, decide, dmarc_entry, is_internal};
use crate::spf::{Identity, SpfOptions, SpfOutcome, SpfResult};

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

/// The header edits and results for one message.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Fields to add at the top, in order (first = topmost).
    pub add: Vec<Header>,
    /// Indices (into the original header list) of fields to remove.
    pub remove: Vec<usize>,
    /// One outcome per DKIM-Signature, in header order.
    pub dkim: Vec<DkimOutcome>,
    /// `d=`/`s=`/`a=` of each signature added.
    pub signed: Vec<(String, String, String)>,
    /// Why the message was passed through without parsing, if it was.
    pub unparsed: Option<String>,
    /// The envelope used (given, or recovered from trace headers).
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
    /// The local decision (applied disposition, overrides).
    pub decision: Decision,
    /// Why the message should be refused, if a configured action says so.
    pub reject: Option<String>,
    /// Why the MTA should retry later, if a configured action says so.
    pub tempfail: Option<String>,
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

type KeyAnswer = Result<Vec<Vec<u8>>, DnsError>;

enum Lookup {
    Pending(String),
    Started(Task<KeyAnswer>),
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

enum Phase {
    Headers,
    Body,
    Unparsed(String),
}

/// Results of the checks that need only the client address.
#[derive(Debug, Default)]
struct ClientResults {
    iprev: Option<IprevOutcome>,
    dnsbl: Vec<DnsblOutcome>,
    spf_mailfrom: Option<SpfOutcome>,
    spf_helo: Option<SpfOutcome>,
}

enum ClientTask {
    NotStarted,
    Started(Box<Task<ClientResults>>),
}

struct PlannedSignature {
    key: KeyEntry,
    domain: String,
}

/// One message in flight. Feed it with [`MessageJob::push`], then
/// [`MessageJob::finish`].
pub struct MessageJob<R> {
    ctx: Arc<Context>,
    resolver: Arc<R>,
    opts: Options,
    splitter: HeaderSplitter,
    phase: Phase,
    headers: Vec<Header>,
    candidates: Vec<Candidate>,
    lookups: HashMap<String, Lookup>,
    planned: Vec<PlannedSignature>,
    hashes: BodyHashes,
    client: ClientTask,
}

/// Where the body starts in a pushed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The chunk was all header bytes.
    Header,
    /// `chunk[from..]` is body.
    Body {
        /// Offset of the first body byte.
        from: usize,
    },
}

impl<R: Resolver + 'static> MessageJob<R> {
    /// Starts a message.
    pub fn new(ctx: Arc<Context>, resolver: Arc<R>, opts: Options) -> Self {
        let limit = ctx.max_header_bytes;
        MessageJob {
            ctx,
            resolver,
            opts,
            splitter: HeaderSplitter::new(limit),
            phase: Phase::Headers,
            headers: Vec::new(),
            candidates: Vec::new(),
            lookups: HashMap::new(),
            planned: Vec::new(),
            hashes: BodyHashes::new([]),
            client: ClientTask::NotStarted,
        }
        .started()
    }

    /// Starts the client checks right away when the address is known.
    fn started(mut self) -> Self {
        self.start_client_checks();
        self
    }

    fn client_checks_wanted(&self) -> bool {
        let c = &self.ctx.client_checks;
        self.opts.verify
            && self.opts.envelope.client_ip.is_some()
            && (c.iprev || c.spf || !c.dnsbl.is_empty())
    }

    fn start_client_checks(&mut self) {
        if !matches!(self.client, ClientTask::NotStarted) || !self.client_checks_wanted() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (ctx, resolver) = (Arc::clone(&self.ctx), Arc::clone(&self.resolver));
        let (env, now) = (self.opts.envelope.clone(), self.opts.now);
        self.client = ClientTask::Started(Box::new(Task::start(&handle, async move {
            client_checks(&ctx, resolver, &env, now).await
        })));
    }

    /// Starts the `_dmarc` lookups of the author domains now, so the shared
    /// cache holds them (or has them in flight) when DMARC is evaluated.
    fn prewarm_dmarc(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (domains, _) = crate::dmarc::author_domains(&self.headers);
        for domain in domains.into_iter().take(4) {
            let resolver = Arc::clone(&self.resolver);
            let _ = Task::start(&handle, async move {
                let _ = resolver.txt(&format!("_dmarc.{domain}")).await;
            });
        }
    }

    /// Fills missing envelope parts from `Return-path` and our own `Received`.
    fn envelope_from_trace(&mut self) {
        let trace = from_trace_headers(&self.headers, &self.ctx.trusted_received_by);
        let env = &mut self.opts.envelope;
        env.client_ip = env.client_ip.or(trace.client_ip);
        if env.helo.is_none() {
            env.helo = trace.helo;
        }
        if env.mail_from.is_none() {
            env.mail_from = trace.mail_from;
        }
    }

    /// Feeds the next bytes of the message.
    pub fn push(&mut self, chunk: &[u8]) -> Pushed {
        match self.phase {
            Phase::Body => {
                self.hashes.update(chunk);
                Pushed::Body { from: 0 }
            }
            Phase::Unparsed(_) => Pushed::Body { from: 0 },
            Phase::Headers => match self.splitter.push(chunk) {
                Split::NeedMore => Pushed::Header,
                Split::TooLarge => {
                    self.phase = Phase::Unparsed("header block too large".into());
                    Pushed::Header
                }
                Split::Done { body_start } => {
                    self.headers_complete();
                    self.hashes.update(&chunk[body_start..]);
                    Pushed::Body { from: body_start }
                }
            },
        }
    }

    /// The message's line ending.
    pub fn line_ending(&self) -> LineEnding {
        self.splitter.ending()
    }

    /// The parsed header fields (empty until the header block is complete).
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    fn headers_complete(&mut self) {
        self.phase = Phase::Body;
        self.headers = split_fields(self.splitter.block());
        self.envelope_from_trace();
        self.start_client_checks();
        if self.opts.verify && self.ctx.dmarc.is_some() {
            self.prewarm_dmarc();
        }
        let mut specs = Vec::new();
        if self.opts.verify {
            self.candidates = find_signatures(&self.headers, &self.ctx.verify, self.opts.now);
            specs.extend(self.candidates.iter().filter_map(Candidate::body_spec));
            for name in self.candidates.iter().filter_map(Candidate::key_name) {
                let lookup = self.start_lookup(&name);
                self.lookups
                    .entry(name.to_ascii_lowercase())
                    .or_insert(lookup);
            }
        }
        if self.opts.sign {
            self.plan_signatures();
            if let Some(s) = &self.ctx.signing
                && !self.planned.is_empty()
            {
                specs.push(BodySpec {
                    canon: s.body_canon,
                    limit: None,
                });
            }
        }
        self.hashes = BodyHashes::new(specs);
    }

    fn start_lookup(&self, name: &str) -> Lookup {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Lookup::Pending(name.to_string());
        };
        let resolver = Arc::clone(&self.resolver);
        let name = name.to_string();
        Lookup::Started(Task::start(
            &handle,
            async move { resolver.txt(&name).await },
        ))
    }

    /// The signing identity: From, then Sender, then the envelope sender.
    fn author(&self) -> Option<String> {
        ["From", "Sender"]
            .iter()
            .find_map(|name| {
                self.headers
                    .iter()
                    .find(|h| h.is(name))
                    .and_then(|h| first_address(h.value()))
            })
            .or_else(|| {
                self.opts
                    .envelope
                    .mail_from
                    .clone()
                    .filter(|s| s.contains('@'))
            })
    }

    fn plan_signatures(&mut self) {
        let Some(signing) = &self.ctx.signing else {
            return;
        };
        // No author at all still matches the pattern "*".
        let author = self.author().unwrap_or_default();
        let Some(row) = signing
            .table
            .iter()
            .find(|r| pattern_matches(&r.pattern, &author))
        else {
            return;
        };
        let author_domain = domain_of(&author).unwrap_or_default();
        self.planned = row
            .keys
            .iter()
            .map(|k| PlannedSignature {
                key: k.clone(),
                domain: if k.domain == "%" {
                    author_domain.clone()
                } else {
                    k.domain.clone()
                },
            })
            .filter(|p| !p.domain.is_empty())
            .collect();
    }

    /// Ends the message: waits for key lookups, evaluates, signs.
    pub async fn finish(mut self) -> Result<Finished, PipelineError> {
        if let Phase::Headers = self.phase {
            // The input ended inside the header block: all headers, no body.
            self.headers_complete();
        }
        if let Phase::Unparsed(why) = &self.phase {
            let verdict = self.unparsed_verdict(why.clone());
            return Ok(Finished {
                verdict,
                headers: Vec::new(),
                splitter: self.splitter,
            });
        }
        let bodies = std::mem::replace(&mut self.hashes, BodyHashes::new([])).finish();
        let mut verdict = Verdict::default();
        if self.opts.sign {
            self.sign_all(&bodies, &mut verdict)?;
        }
        if self.opts.verify {
            let keys = self.collect_lookups().await?;
            let client = self.collect_client_checks().await?;
            self.verify_all(&keys, &bodies, &mut verdict);
            self.apply_client_results(client, &mut verdict);
            self.evaluate_dmarc(&mut verdict).await;
            self.write_authentication_results(&mut verdict);
        }
        verdict.envelope = self.opts.envelope.clone();
        Ok(Finished {
            verdict,
            headers: self.headers,
            splitter: self.splitter,
        })
    }

    fn unparsed_verdict(&self, why: String) -> Verdict {
        let mut v = Verdict {
            unparsed: Some(why.clone()),
            ..Verdict::default()
        };
        if self.opts.verify {
            let entry = Entry {
                method: "dkim".into(),
                result: DkimResult::PermError.as_str().into(),
                comment: Some(why),
                props: Vec::new(),
                trailing: None,
            };
            let value = authres::build(&self.ctx.authserv_id, &[entry]);
            v.add.push(Header::new(
                "Authentication-Results",
                &value,
                self.line_ending().as_bytes(),
            ));
        }
        v
    }

    async fn collect_lookups(&mut self) -> Result<HashMap<String, KeyAnswer>, PipelineError> {
        let mut answers = HashMap::new();
        for (name, lookup) in self.lookups.drain() {
            let answer = match lookup {
                Lookup::Pending(n) => self.resolver.txt(&n).await,
                Lookup::Started(task) => task.join().await?,
            };
            answers.insert(name, answer);
        }
        Ok(answers)
    }

    fn verify_all(
        &self,
        keys: &HashMap<String, KeyAnswer>,
        bodies: &[(BodySpec, BodyHash)],
        verdict: &mut Verdict,
    ) {
        verdict.dkim = self
            .candidates
            .iter()
            .map(|c| {
                let key = c.key_name().and_then(|n| keys.get(&n.to_ascii_lowercase()));
                evaluate(
                    c,
                    &self.headers,
                    key,
                    bodies,
                    &self.ctx.verify,
                    &self.ctx.dkim_keys,
                )
            })
            .collect();
    }

    async fn collect_client_checks(&mut self) -> Result<ClientResults, PipelineError> {
        match std::mem::replace(&mut self.client, ClientTask::NotStarted) {
            ClientTask::Started(task) => task.join().await,
            ClientTask::NotStarted if self.client_checks_wanted() => Ok(client_checks(
                &self.ctx,
                Arc::clone(&self.resolver),
                &self.opts.envelope,
                self.opts.now,
            )
            .await),
            ClientTask::NotStarted => Ok(ClientResults::default()),
        }
    }

    fn apply_client_results(&self, client: ClientResults, verdict: &mut Verdict) {
        let listed: Vec<&DnsblOutcome> = client
            .dnsbl
            .iter()
            .filter(|o| o.listed() && o.action != DnsblAction::Ignore)
            .collect();
        if !listed.is_empty() && !self.ctx.client_checks.dnsbl_header.is_empty() {
            let value = crate::dnsbl::header_value(&client.dnsbl);
            let eol = self.line_ending().as_bytes();
            verdict.add.push(Header::new(
                &self.ctx.client_checks.dnsbl_header,
                &value,
                eol,
            ));
        }
        if let Some(hit) = listed.iter().find(|o| o.action == DnsblAction::Reject) {
            verdict
                .reject
                .get_or_insert(format!("client listed in {}", hit.zone));
        }
        verdict.iprev = client.iprev;
        verdict.dnsbl = client.dnsbl;
        verdict.spf_mailfrom = client.spf_mailfrom;
        verdict.spf_helo = client.spf_helo;
    }

    /// The SPF result DMARC uses: ours, else a trusted upstream A-R's.
    fn spf_for_dmarc(&self, verdict: &Verdict) -> Option<(SpfVerdict, String)> {
        if let Some(o) = &verdict.spf_mailfrom {
            let env = &self.opts.envelope;
            let mail_from = env.mail_from.as_deref().unwrap_or_default();
            let domain = domain_of(mail_from).or_else(|| env.helo.clone())?;
            return Some((spf_verdict(o.result), domain));
        }
        crate::policy::trusted_results(&self.headers, &self.ctx.trusted_authserv_ids)
            .into_iter()
            .find(|e| e.method == "spf" && e.props.iter().any(|(k, _)| k == "smtp.mailfrom"))
            .and_then(|e| {
                let from = e
                    .props
                    .iter()
                    .find(|(k, _)| k == "smtp.mailfrom")
                    .map(|(_, v)| v.clone())?;
                let domain = domain_of(&from).unwrap_or(from);
                Some((spf_verdict_str(&e.result), domain))
            })
    }

    async fn evaluate_dmarc(&self, verdict: &mut Verdict) {
        let mut from_problems = Vec::new();
        let mut spf_known = true;
        if let Some(opts) = &self.ctx.dmarc {
            let spf = self.spf_for_dmarc(verdict);
            spf_known = spf.is_some();
            let passing: Vec<String> = verdict
                .dkim
                .iter()
                .filter(|d| d.result == DkimResult::Pass)
                .filter_map(|d| d.domain.clone())
                .collect();
            let spf_ref = spf.as_ref().map(|(v, d)| (*v, d.as_str()));
            let v =
                crate::dmarc::check(&*self.resolver, &self.headers, spf_ref, &passing, opts).await;
            from_problems = v.from_problems;
            verdict.dmarc = Some(v.outcome);
        }
        let env = &self.opts.envelope;
        let exemption = if env.authenticated {
            Some(Exemption::AuthenticatedClient)
        } else if env
            .client_ip
            .is_some_and(|ip| is_internal(ip, &self.ctx.internal_hosts))
        {
            Some(Exemption::TrustedHost)
        } else if !spf_known {
            Some(Exemption::NoEnvelope)
        } else {
            None
        };
        let decision = decide(
            &self.ctx.actions,
            verdict.dmarc.as_ref(),
            &from_problems,
            verdict.spf_mailfrom.as_ref(),
            exemption,
        );
        if decision.quarantine {
            let (name, value) = &self.ctx.actions.quarantine_header;
            verdict.add.push(Header::new(
                name,
                &format!(" {value}"),
                self.line_ending().as_bytes(),
            ));
        }
        if let Some(r) = &decision.reject {
            verdict.reject.get_or_insert(r.clone());
        }
        // Headers only, or our own clients: nothing refuses (DNSBL included).
        // A missing envelope only waives the DMARC/SPF decision above.
        let ours = matches!(
            exemption,
            Some(Exemption::TrustedHost | Exemption::AuthenticatedClient)
        );
        if self.ctx.actions.never_block || ours {
            verdict.reject = None;
        }
        verdict.tempfail = decision.tempfail.clone();
        verdict.decision = decision;
    }

    /// `Received-SPF:` for MAIL FROM, else HELO (RFC 7208 §9.1), under A-R.
    fn add_received_spf(&self, verdict: &mut Verdict, mail_from: &str, helo: &str) {
        let (Some(ip), Some((o, identity))) = (
            self.opts.envelope.client_ip,
            verdict
                .spf_mailfrom
                .as_ref()
                .map(|o| (o, Identity::MailFrom))
                .or_else(|| verdict.spf_helo.as_ref().map(|o| (o, Identity::Helo))),
        ) else {
            return;
        };
        let line = crate::spf::received_spf_header(
            o,
            identity,
            ip,
            helo,
            mail_from,
            &self.ctx.authserv_id,
        );
        let value = line.split_once(':').map_or(line.as_str(), |(_, v)| v);
        let header = Header::new("Received-SPF", value, self.line_ending().as_bytes());
        verdict.add.insert(0, header);
    }

    /// Our one A-R field on top; forged copies of it are removed.
    fn write_authentication_results(&self, verdict: &mut Verdict) {
        let env = &self.opts.envelope;
        let (mail_from, helo) = (
            env.mail_from.clone().unwrap_or_default(),
            env.helo.clone().unwrap_or_default(),
        );
        let mut entries: Vec<Entry> = Vec::new();
        if let Some(o) = &verdict.spf_mailfrom {
            entries.push(crate::spf::authres_entry(
                o,
                Identity::MailFrom,
                &mail_from,
                &helo,
            ));
        }
        if let Some(o) = &verdict.spf_helo {
            entries.push(crate::spf::authres_entry(
                o,
                Identity::Helo,
                &mail_from,
                &helo,
            ));
        }
        let dkim_start = entries.len();
        entries.extend(verdict.dkim.iter().map(Entry::dkim));
        if entries.len() == dkim_start {
            entries.push(Entry::dkim_none());
        }
        entries.extend(
            verdict
                .dmarc
                .as_ref()
                .map(|o| dmarc_entry(o, &verdict.decision)),
        );
        entries.extend(verdict.iprev.as_ref().map(Entry::iprev));
        if self.ctx.client_checks.received_spf {
            self.add_received_spf(verdict, &mail_from, &helo);
        }
        let value = authres::build(&self.ctx.authserv_id, &entries);
        let eol = self.line_ending().as_bytes();
        verdict
            .add
            .insert(0, Header::new("Authentication-Results", &value, eol));
        verdict.remove = self
            .headers
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                h.is("Authentication-Results") && authres::claims(h.value(), &self.ctx.authserv_id)
            })
            .map(|(i, _)| i)
            .collect();
    }

    fn sign_all(
        &self,
        bodies: &[(BodySpec, BodyHash)],
        verdict: &mut Verdict,
    ) -> Result<(), PipelineError> {
        let Some(signing) = &self.ctx.signing else {
            return Ok(());
        };
        let spec = BodySpec {
            canon: signing.body_canon,
            limit: None,
        };
        let Some((_, body)) = bodies.iter().find(|(s, _)| *s == spec) else {
            return Ok(());
        };
        let names = choose_headers(&self.headers, &signing.headers, &signing.oversign);
        for p in &self.planned {
            let spec = SignSpec {
                key: Arc::clone(&p.key.key),
                domain: p.domain.clone(),
                selector: p.key.selector.clone(),
                header_canon: signing.header_canon,
                body_canon: signing.body_canon,
                signed_headers: names.clone(),
                timestamp: self.opts.now,
                expiration: signing
                    .expire_after
                    .map(|x| self.opts.now.saturating_add(x)),
            };
            let header = sign(&self.headers, &spec, body, self.line_ending().as_bytes())?;
            verdict.add.push(header);
            let alg = p.key.key.algorithm().as_str().to_string();
            verdict
                .signed
                .push((p.domain.clone(), p.key.selector.clone(), alg));
        }
        Ok(())
    }
}

/// A message after the pipeline: its verdict and what is needed to write
/// the new header block.
#[derive(Debug)]
pub struct Finished {
    /// Results and header edits.
    pub verdict: Verdict,
    /// The original header fields.
    pub headers: Vec<Header>,
    splitter: HeaderSplitter,
}

impl Finished {
    /// The header block as it should be written: added fields, then the
    /// original fields minus removed ones, then the blank separator line.
    /// For an unparsed message, the raw bytes read so far follow the additions.
    pub fn write_head(&self, out: &mut Vec<u8>) {
        for h in &self.verdict.add {
            out.extend_from_slice(h.raw());
        }
        if self.verdict.unparsed.is_some() {
            out.extend_from_slice(self.splitter.block());
            return;
        }
        for (i, h) in self.headers.iter().enumerate() {
            if !self.verdict.remove.contains(&i) {
                out.extend_from_slice(h.raw());
            }
        }
        out.extend_from_slice(self.splitter.separator());
    }
}

/// iprev, DNSBL and SPF for the envelope, concurrently.
async fn client_checks<R: Resolver + 'static>(
    ctx: &Context,
    resolver: Arc<R>,
    env: &Envelope,
    now: u64,
) -> ClientResults {
    let Some(ip) = env.client_ip else {
        return ClientResults::default();
    };
    let checks = &ctx.client_checks;
    let iprev = async {
        if checks.iprev {
            Some(crate::iprev::check(&*resolver, ip).await)
        } else {
            None
        }
    };
    let dnsbl = crate::dnsbl::check(&*resolver, ip, &checks.dnsbl);
    let opts = SpfOptions {
        receiver: ctx.authserv_id.clone(),
        now,
        ..SpfOptions::default()
    };
    let helo = env.helo.clone().unwrap_or_default();
    let spf_mailfrom = async {
        match &env.mail_from {
            Some(from) if checks.spf && (!from.is_empty() || !helo.is_empty()) => {
                Some(crate::spf::verify_mail_from(&*resolver, ip, from, &helo, &opts).await)
            }
            _ => None,
        }
    };
    let spf_helo = async {
        if checks.spf && checks.spf_helo && !helo.is_empty() {
            Some(crate::spf::verify_helo(&*resolver, ip, &helo, &opts).await)
        } else {
            None
        }
    };
    let (iprev, dnsbl, spf_mailfrom, spf_helo) = tokio::join!(iprev, dnsbl, spf_mailfrom, spf_helo);
    for o in &dnsbl {
        if let crate::dnsbl::DnsblStatus::NotChecked { reason } = &o.status {
            tracing::warn!(zone = %o.zone, %ip, %reason, "DNSBL not checked");
        }
    }
    ClientResults {
        iprev,
        dnsbl,
        spf_mailfrom,
        spf_helo,
    }
}

/// The SPF result in DMARC's terms.
fn spf_verdict(r: SpfResult) -> SpfVerdict {
    match r {
        SpfResult::Pass => SpfVerdict::Pass,
        SpfResult::Fail => SpfVerdict::Fail,
        SpfResult::SoftFail => SpfVerdict::SoftFail,
        SpfResult::Neutral => SpfVerdict::Neutral,
        SpfResult::None => SpfVerdict::None,
        SpfResult::TempError => SpfVerdict::TempError,
        SpfResult::PermError => SpfVerdict::PermError,
    }
}

/// An upstream A-R `spf=` keyword in DMARC's terms (unknown = none).
fn spf_verdict_str(r: &str) -> SpfVerdict {
    match r {
        "pass" => SpfVerdict::Pass,
        "fail" => SpfVerdict::Fail,
        "softfail" => SpfVerdict::SoftFail,
        "neutral" => SpfVerdict::Neutral,
        "temperror" => SpfVerdict::TempError,
        "permerror" => SpfVerdict::PermError,
        _ => SpfVerdict::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// Key records handed in by name; everything else is NXDOMAIN.
    struct MapDns(HashMap<String, Vec<u8>>);

    impl Resolver for MapDns {
        async fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, DnsError> {
            self.0
                .get(&name.to_ascii_lowercase())
                .map(|v| vec![v.clone()])
                .ok_or(DnsError::NxDomain)
        }
        async fn a(&self, _: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
            Err(DnsError::NxDomain)
        }
        async fn aaaa(&self, _: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
            Err(DnsError::NxDomain)
        }
        async fn mx(&self, _: &str) -> Result<Vec<crate::dns::Mx>, DnsError> {
            Err(DnsError::NxDomain)
        }
        async fn ptr(&self, _: IpAddr) -> Result<Vec<String>, DnsError> {
            Err(DnsError::NxDomain)
        }
    }

    fn keys() -> (KeyEntry, KeyEntry, HashMap<String, Vec<u8>>) {
        let doc = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa = SigningKey::Rsa(doc);
        let ed = SigningKey::ed25519_from_seed(&[7u8; 32]).unwrap();
        let b64 =
            |k: &SigningKey| base64::engine::general_purpose::STANDARD.encode(k.public_key_bytes());
        let mut dns = HashMap::new();
        dns.insert(
            "rsa._domainkey.example.com".into(),
            format!("v=DKIM1; k=rsa; p={}", b64(&rsa)).into_bytes(),
        );
        dns.insert(
            "ed._domainkey.example.com".into(),
            format!("v=DKIM1; k=ed25519; p={}", b64(&ed)).into_bytes(),
        );
        let entry = |name: &str, key| KeyEntry {
            name: name.into(),
            domain: "%".into(),
            selector: name.into(),
            key: Arc::new(key),
        };
        (entry("rsa", rsa), entry("ed", ed), dns)
    }

    fn context(
        dns: HashMap<String, Vec<u8>>,
        table: Vec<TableEntry>,
    ) -> (Arc<Context>, Arc<MapDns>) {
        let ctx = Arc::new(Context {
            authserv_id: "mx.example.net".into(),
            verify: VerifyOptions::default(),
            signing: Some(Signing {
                table,
                header_canon: Canon::Relaxed,
                body_canon: Canon::Relaxed,
                headers: crate::config::SignSettings::default().headers,
                oversign: crate::config::SignSettings::default().oversign,
                expire_after: Some(3600),
            }),
            max_header_bytes: 1 << 20,
            client_checks: ClientChecks::default(),
            trusted_received_by: vec!["mx.example.net".into()],
            dkim_keys: KeyCache::default(),
            dmarc: None,
            actions: Actions::default(),
            internal_hosts: Vec::new(),
            trusted_authserv_ids: Vec::new(),
        });
        (ctx, Arc::new(MapDns(dns)))
    }

    async fn run(
        (ctx, dns): &(Arc<Context>, Arc<MapDns>),
        msg: &[u8],
        sign: bool,
        verify: bool,
        chunk: usize,
    ) -> (Vec<u8>, Verdict) {
        let opts = Options {
            verify,
            sign,
            now: 1_700_000_000,
            envelope: Envelope {
                mail_from: Some("bounce@example.com".into()),
                ..Envelope::default()
            },
        };
        let mut job = MessageJob::new(Arc::clone(ctx), Arc::clone(dns), opts);
        let mut body = Vec::new();
        for piece in msg.chunks(chunk.max(1)) {
            if let Pushed::Body { from } = job.push(piece) {
                body.extend_from_slice(&piece[from..]);
            }
        }
        let finished = job.finish().await.unwrap();
        let mut out = Vec::new();
        finished.write_head(&mut out);
        out.extend_from_slice(&body);
        (out, finished.verdict)
    }

    const MSG: &[u8] = b"From: Joe <joe@example.com>\nTo: a@example.org\nSubject: hello\n  folded \xc3\xa9\nAuthentication-Results: mx.example.net; dkim=pass\nAuthentication-Results: other.example; dkim=pass\n\nbody  line \nsecond\n\n\n";

    #[tokio::test]
    async fn dual_signs_and_verifies_lf_message_keeping_line_endings() {
        let (rsa, ed, dns) = keys();
        let ctx = context(
            dns,
            vec![TableEntry {
                pattern: "*@example.com".into(),
                keys: vec![rsa, ed],
            }],
        );
        for chunk in [1, 7, 4096] {
            let (signed, v) = run(&ctx, MSG, true, false, chunk).await;
            assert_eq!(v.signed.len(), 2);
            assert!(
                !signed.windows(2).any(|w| w == b"\r\n"),
                "LF message must stay LF"
            );
            assert!(signed.ends_with(&MSG[MSG.len() - 40..]));
            let (checked, v) = run(&ctx, &signed, false, true, chunk).await;
            let results: Vec<_> = v.dkim.iter().map(|d| d.result).collect();
            assert_eq!(
                results,
                vec![crate::dkim::verify::DkimResult::Pass; 2],
                "{v:?}"
            );
            let text = String::from_utf8_lossy(&checked);
            assert!(
                text.starts_with("Authentication-Results: mx.example.net;\n\tdkim=pass"),
                "{text}"
            );
            assert_eq!(
                text.matches("Authentication-Results: mx.example.net; dkim=pass")
                    .count(),
                0,
                "forged A-R removed"
            );
            assert!(
                text.contains("Authentication-Results: other.example; dkim=pass"),
                "foreign A-R kept"
            );
        }
    }

    #[tokio::test]
    async fn crlf_message_signed_verifies_after_header_refolding() {
        let (rsa, _, dns) = keys();
        let ctx = context(
            dns,
            vec![TableEntry {
                pattern: "example.com".into(),
                keys: vec![rsa],
            }],
        );
        let crlf = String::from_utf8_lossy(MSG).replace('\n', "\r\n");
        let (signed, _) = run(&ctx, crlf.as_bytes(), true, false, 13).await;
        let refolded = String::from_utf8_lossy(&signed)
            .replace("Subject: hello\r\n  folded", "Subject:   hello folded");
        let (_, v) = run(&ctx, refolded.as_bytes(), false, true, 64).await;
        assert_eq!(
            v.dkim[0].result,
            crate::dkim::verify::DkimResult::Pass,
            "{:?}",
            v.dkim[0]
        );
        let tampered = String::from_utf8_lossy(&signed).replace("second", "sec0nd");
        let (_, v) = run(&ctx, tampered.as_bytes(), false, true, 64).await;
        assert_eq!(v.dkim[0].reason, "body hash did not verify");
    }

    #[tokio::test]
    async fn signing_table_first_match_and_author_fallbacks() {
        let (rsa, ed, dns) = keys();
        let ctx = context(
            dns,
            vec![
                TableEntry {
                    pattern: "*@*.example.com".into(),
                    keys: vec![ed.clone()],
                },
                TableEntry {
                    pattern: "*@example.com".into(),
                    keys: vec![rsa],
                },
                TableEntry {
                    pattern: "*".into(),
                    keys: vec![ed],
                },
            ],
        );
        let (_, v) = run(&ctx, b"From: a@sub.example.com\n\nx\n", true, false, 100).await;
        assert_eq!(
            v.signed,
            vec![(
                "sub.example.com".into(),
                "ed".into(),
                "ed25519-sha256".into()
            )]
        );
        let (_, v) = run(
            &ctx,
            b"Sender: a@example.com\nSubject: no from\n\nx\n",
            true,
            false,
            100,
        )
        .await;
        assert_eq!(v.signed[0].0, "example.com");
        let (_, v) = run(&ctx, b"Subject: nothing\n\nx\n", true, false, 100).await;
        assert_eq!(v.signed[0].0, "example.com", "envelope sender fallback");
    }

    #[tokio::test]
    async fn unsigned_headerless_and_oversized_messages_pass_through() {
        let (_, _, dns) = keys();
        let ctx = context(dns, Vec::new());
        let (out, v) = run(&ctx, b"Subject: x\n\nbody\n", false, true, 3).await;
        assert!(out.starts_with(
            b"Authentication-Results: mx.example.net;\n\tdkim=none\nSubject: x\n\nbody\n"
        ));
        assert!(v.dkim.is_empty());
        let (out, _) = run(&ctx, b"no header block at all", false, true, 5).await;
        assert!(
            out.ends_with(b"no header block at all"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let (base, dns) = context(HashMap::new(), Vec::new());
        let mut small = (*base).clone();
        small.max_header_bytes = 10;
        let small = (Arc::new(small), dns);
        let big = b"X-Long: 0123456789012345678901234567890\nFrom: a@b\n\nbody\n";
        let (out, v) = run(&small, big, false, true, 8).await;
        assert!(v.unparsed.is_some());
        assert!(out.ends_with(big), "unparsed message kept intact");
        assert!(String::from_utf8_lossy(&out).contains("dkim=permerror (header block too large)"));
    }
}

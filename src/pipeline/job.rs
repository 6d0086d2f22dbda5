//! The streaming part of a message: header split, DKIM, signing.
//!
//! Owns: splitting the header block from the stream, finding the
//! DKIM-Signatures and starting their key lookups (and the `_dmarc`
//! prewarm) as soon as the header block is complete, hashing the body once
//! for every signature to check and to add ([`super::signer`] plans and
//! makes ours), and at the end verifying and signing. The client checks run beside it ([`super::client`]); at the end
//! [`super::assess`] decides and [`super::render`] writes the edits. Must
//! not: keep the body, decide policy or write header fields itself.

use std::collections::HashMap;
use std::sync::Arc;

use super::client::ClientCheck;
use super::signer::Signer;
use super::{Context, Finished, Options, PipelineError, Task, Verdict};
use crate::dkim::canon::{BodyHash, BodyHashes, BodySpec};
use crate::dkim::verify::{Candidate, evaluate, find_signatures};
use crate::dns::{DnsError, Resolver};
use crate::message::envelope::from_trace_headers;
use crate::message::headers::{Header, split_fields};
use crate::message::{HeaderSplitter, LineEnding, Split};

type KeyAnswer = Result<Vec<Vec<u8>>, DnsError>;

enum Lookup {
    Pending(String),
    Started(Task<KeyAnswer>),
}

enum Phase {
    Headers,
    Body,
    Unparsed(String),
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
    signer: Signer,
    hashes: BodyHashes,
    client: ClientCheck,
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
    /// Starts a message; the client checks start at once when the client
    /// address is known (the fronts create the job at MAIL FROM).
    pub fn new(ctx: Arc<Context>, resolver: Arc<R>, opts: Options) -> Self {
        let limit = ctx.max_header_bytes;
        let mut job = MessageJob {
            ctx,
            resolver,
            opts,
            splitter: HeaderSplitter::new(limit),
            phase: Phase::Headers,
            headers: Vec::new(),
            candidates: Vec::new(),
            lookups: HashMap::new(),
            signer: Signer::default(),
            hashes: BodyHashes::new([]),
            client: ClientCheck::default(),
        };
        job.start_client_checks();
        job
    }

    fn start_client_checks(&mut self) {
        if self.opts.verify {
            self.client.start(
                &self.ctx,
                &self.resolver,
                &self.opts.envelope,
                self.opts.now,
            );
        }
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

    /// The envelope as known so far (trace headers fill gaps at the end of
    /// the header block).
    pub fn envelope(&self) -> &super::Envelope {
        &self.opts.envelope
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
            let mail_from = self.opts.envelope.mail_from.as_deref();
            self.signer = Signer::plan(&self.ctx, &self.headers, mail_from);
            specs.extend(self.signer.body_spec(&self.ctx));
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

    /// Ends the message: waits for the lookups and client checks, verifies,
    /// signs, decides ([`super::assess`]) and renders the edits.
    pub async fn finish(mut self) -> Result<Finished, PipelineError> {
        if let Phase::Headers = self.phase {
            // The input ended inside the header block: all headers, no body.
            self.headers_complete();
        }
        let mut verdict = Verdict::default();
        if let Phase::Unparsed(why) = &self.phase {
            verdict.unparsed = Some(why.clone());
            // Nothing to sign over: delivered as it came, and said so.
            if self.opts.sign && self.ctx.signing.is_some() {
                verdict.not_signed = Some(format!("message not parsed ({why})"));
            }
        } else {
            let bodies = std::mem::replace(&mut self.hashes, BodyHashes::new([])).finish();
            if self.opts.sign {
                let eol = self.line_ending().as_bytes();
                let signed =
                    self.signer
                        .sign(&self.ctx, &self.headers, &bodies, self.opts.now, eol)?;
                (verdict.signatures, verdict.signed) = signed;
                verdict.not_signed = self.signer.refused().map(str::to_string);
            }
            if self.opts.verify {
                let keys = self.collect_lookups().await?;
                let client = std::mem::take(&mut self.client)
                    .results(
                        &self.ctx,
                        &self.resolver,
                        &self.opts.envelope,
                        self.opts.now,
                    )
                    .await?;
                self.verify_all(&keys, &bodies, &mut verdict);
                client.into_verdict(&mut verdict);
                super::assess::assess(
                    &self.ctx,
                    &*self.resolver,
                    &self.headers,
                    &self.opts.envelope,
                    &mut verdict,
                )
                .await;
            }
        }
        verdict.envelope = self.opts.envelope.clone();
        let edits = super::render::edits(
            &self.ctx,
            &verdict,
            &self.headers,
            self.opts.verify,
            self.line_ending().as_bytes(),
        );
        let headers = if verdict.unparsed.is_some() {
            Vec::new()
        } else {
            self.headers
        };
        Ok(Finished {
            verdict,
            edits,
            headers,
            at: self.opts.now,
            splitter: self.splitter,
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::canon::Canon;
    use crate::dkim::key::SigningKey;
    use crate::dkim::verify::{KeyCache, VerifyOptions};
    use crate::pipeline::{ClientChecks, Envelope, KeyEntry, Signing, TableEntry};
    use crate::policy::Actions;
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
                headers: crate::dkim::sign::DEFAULT_SIGNED_HEADERS
                    .iter()
                    .map(|h| h.to_string())
                    .collect(),
                oversign: crate::dkim::sign::DEFAULT_OVERSIGNED_HEADERS
                    .iter()
                    .map(|h| h.to_string())
                    .collect(),
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
        // From without an address (a group): Sender, then MAIL FROM.
        let (_, v) = run(
            &ctx,
            b"From: undisclosed-recipients:;\nSender: a@example.com\nSubject: s\n\nx\n",
            true,
            false,
            100,
        )
        .await;
        assert_eq!(v.signed[0].0, "example.com");
        let (_, v) = run(&ctx, b"From: list:;\nSubject: s\n\nx\n", true, false, 100).await;
        assert_eq!(v.signed[0].0, "example.com", "envelope sender fallback");
        assert_eq!(v.not_signed, None);
    }

    /// RFC 6376 §5.4: "The From header field MUST be signed". A message
    /// without one is delivered unsigned with the reason, whatever else
    /// (Sender, MAIL FROM) names an author the signing table matches.
    #[tokio::test]
    async fn message_without_from_is_left_unsigned_with_the_reason() {
        let (rsa, _, dns) = keys();
        let ctx = context(
            dns,
            vec![TableEntry {
                pattern: "*".into(),
                keys: vec![rsa],
            }],
        );
        for msg in [
            &b"Sender: a@example.com\nSubject: no from\n\nx\n"[..],
            b"Subject: nothing\n\nx\n",
            b"\nbody only\n",
        ] {
            let (out, v) = run(&ctx, msg, true, false, 100).await;
            assert!(v.signed.is_empty() && v.signatures.is_empty(), "{v:?}");
            assert_eq!(out, msg, "delivered as it came");
            let why = v.not_signed.unwrap_or_default();
            assert!(why.contains("no From header field"), "{why}");
        }
    }

    /// RFC 6376 §3.5: d= is a domain-name. With d=% the author's domain
    /// becomes d=: an internationalized one as its A-labels (RFC 8616 §4),
    /// and one that cannot be a domain-name (an address literal) leaves
    /// the message unsigned with the reason, not signed with a broken d=.
    #[tokio::test]
    async fn author_domain_signs_as_a_valid_d_or_not_at_all() {
        let (_, ed, dns) = keys();
        let ctx = context(
            dns,
            vec![TableEntry {
                pattern: "*".into(),
                keys: vec![ed],
            }],
        );
        let (_, v) = run(
            &ctx,
            "From: a@Bücher.example\n\nx\n".as_bytes(),
            true,
            false,
            9,
        )
        .await;
        assert_eq!(v.signed[0].0, "xn--bcher-kva.example");
        for msg in [
            &b"From: a@[192.0.2.1]\n\nx\n"[..],
            b"From: a@exa_mple.com\n\nx\n",
        ] {
            let (out, v) = run(&ctx, msg, true, false, 9).await;
            assert_eq!((out.as_slice(), v.signed.len()), (msg, 0));
            let why = v.not_signed.unwrap_or_default();
            assert!(why.contains("no author domain for d=%"), "{why}");
        }
    }

    /// RFC 5322 §3.6 allows one From; RFC 6376 §5.4 signs "the" From. With
    /// two, which one a reader sees is up to the reader: no signature.
    #[tokio::test]
    async fn message_with_several_from_fields_is_left_unsigned() {
        let (rsa, _, dns) = keys();
        let ctx = context(
            dns,
            vec![TableEntry {
                pattern: "*@example.com".into(),
                keys: vec![rsa],
            }],
        );
        let msg = b"From: a@example.com\nFrom: ceo@bank.example\nSubject: s\n\nx\n";
        let (out, v) = run(&ctx, msg, true, false, 100).await;
        assert!(v.signed.is_empty(), "{v:?}");
        assert_eq!(out, msg);
        assert_eq!(
            v.not_signed.as_deref(),
            Some("2 From header fields (RFC 5322 §3.6 allows one)")
        );
        // An author the table does not match is not "refused": nothing to say.
        let (_, v) = run(&ctx, b"From: a@other.example\n\nx\n", true, false, 100).await;
        assert_eq!((v.signed.len(), v.not_signed), (0, None));
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
        // To be signed, it goes out unsigned, intact, with the reason.
        let (out, v) = run(&small, big, true, false, 8).await;
        assert_eq!((out.as_slice(), v.signed.len()), (&big[..], 0));
        assert_eq!(
            v.not_signed.as_deref(),
            Some("message not parsed (header block too large)")
        );
    }
}

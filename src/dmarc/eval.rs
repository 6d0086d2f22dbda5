//! DMARC evaluation for one Author Domain (RFC 9989 §4.4, §4.10, §5.3).
//!
//! Owns: identifier alignment (relaxed = same Organizational Domain,
//! strict = identical, case-insensitive per RFC 4343), choosing `p`, `sp`
//! or `np` (with the non-existence test of §3.2.13), `t=y`, the invalid
//! policy rule of §4.10.1, and the RFC 7489 mode (PSL Organizational
//! Domains, `pct` sampling). Must not: parse messages (see [`super::check`])
//! or act on the verdict; the disposition is what the domain *requests*.

use std::hash::{BuildHasher, Hasher};

use super::orgdomain::{Discovered, Walker, normalize_domain, psl_org_domain};
use super::record::{Alignment, DmarcRecord, Policy};
use crate::dns::Resolver;

/// The SPF result handed in by the caller (RFC 7208 §2.6), for the
/// RFC5321.MailFrom identity only: RFC 9989 §4.4.2 ignores HELO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfVerdict {
    /// `pass`: the domain is an SPF-Authenticated Identifier.
    Pass,
    /// `fail`.
    Fail,
    /// `softfail`.
    SoftFail,
    /// `neutral`.
    Neutral,
    /// `none`.
    None,
    /// `temperror`: an aligned identifier might pass later.
    TempError,
    /// `permerror`.
    PermError,
}

/// The DMARC result (RFC 8601 §2.7.1 names, RFC 9989 §5.3.5-5.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcResult {
    /// An aligned identifier passed.
    Pass,
    /// A policy applies and nothing aligned passed.
    Fail,
    /// DMARC does not apply (no record, no usable From).
    None,
    /// A DNS query needed for a definite answer failed temporarily.
    TempError,
    /// The record cannot be used (invalid policy, no usable `rua`) or the
    /// Author Domain is not a valid domain name.
    PermError,
}

impl DmarcResult {
    /// The A-R keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcResult::Pass => "pass",
            DmarcResult::Fail => "fail",
            DmarcResult::None => "none",
            DmarcResult::TempError => "temperror",
            DmarcResult::PermError => "permerror",
        }
    }
}

/// What the domain asks the receiver to do with this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Disposition {
    /// Deliver normally.
    #[default]
    None,
    /// Treat as suspicious.
    Quarantine,
    /// Reject.
    Reject,
}

impl Disposition {
    /// The keyword (`none`, `quarantine`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::None => "none",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
        }
    }
}

impl From<Policy> for Disposition {
    fn from(p: Policy) -> Self {
        match p {
            Policy::None => Disposition::None,
            Policy::Quarantine => Disposition::Quarantine,
            Policy::Reject => Disposition::Reject,
        }
    }
}

/// What to do when From names several different domains (RFC 9989 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiDomainFrom {
    /// "DMARC validation is not possible and the process terminates":
    /// result `none`, flagged for local policy.
    #[default]
    Skip,
    /// "MAY choose to go forward": evaluate each domain and keep the
    /// strictest outcome (RFC 7489 §6.6.1 did this).
    Strictest,
}

/// Receiver configuration.
#[derive(Debug, Clone, Copy)]
pub struct DmarcOptions {
    /// RFC 7489 mode: PSL Organizational Domains, policy at the author then
    /// the PSL Organizational Domain, `pct` honoured.
    pub use_psl: bool,
    /// Several From domains: skip (RFC 9989 default) or strictest.
    pub multi_domain_from: MultiDomainFrom,
    /// Returns a number in 0..=99 for `pct` sampling (PSL mode only); a
    /// failing message gets the full policy when the number is below `pct`.
    pub sample: fn() -> u8,
}

impl Default for DmarcOptions {
    fn default() -> Self {
        DmarcOptions {
            use_psl: false,
            multi_domain_from: MultiDomainFrom::Skip,
            sample: random_percent,
        }
    }
}

/// A number in 0..=99 from the standard library's per-process random keys.
pub fn random_percent() -> u8 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    u8::try_from(h.finish() % 100).unwrap_or(0)
}

/// The authenticated identifiers for one Author Domain.
#[derive(Debug, Clone, Copy)]
pub struct EvalInputs<'a> {
    /// The Author Domain (RFC5322.From domain), any case, U- or A-labels.
    pub author_domain: &'a str,
    /// SPF result and the RFC5321.MailFrom domain it was computed for.
    pub spf: Option<(SpfVerdict, &'a str)>,
    /// `d=` of every DKIM signature that passed.
    pub dkim_pass_domains: &'a [String],
}

/// The outcome for one Author Domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcOutcome {
    /// The DMARC result.
    pub result: DmarcResult,
    /// The policy the domain requests for this message (`p`, `sp` or `np`
    /// as applicable), before `t=y`/`pct`; `None` without a usable record.
    pub policy: Option<Policy>,
    /// What the domain asks for this message: the policy on `fail` after
    /// `t=y` (one level below, RFC 9989 §4.7) and `pct` (PSL mode); `None`
    /// otherwise.
    pub disposition: Disposition,
    /// The Author Domain (A-labels, lower case).
    pub domain: String,
    /// Where the applied record was found.
    pub policy_domain: Option<String>,
    /// The Author Domain's Organizational Domain, when it was needed.
    pub org_domain: Option<String>,
    /// `t=y` in the applied record.
    pub testing: bool,
    /// An SPF pass for an aligned MailFrom domain.
    pub spf_aligned: bool,
    /// A DKIM pass for an aligned `d=`.
    pub dkim_aligned: bool,
    /// Why, for logs and A-R comments.
    pub reason: String,
    /// `_dmarc` TXT and existence queries sent.
    pub dns_queries: usize,
    /// The record as published at `policy_domain` (what DMARC reports
    /// quote: `p`, `sp`, `np`, alignment, `t`, `psd`, `rua`, `ruf`, `fo`).
    pub record: Option<Box<DmarcRecord>>,
    /// Discovery used the DNS tree walk (RFC 9989) rather than the PSL.
    pub treewalk: bool,
}

impl DmarcOutcome {
    /// An outcome without a record.
    pub fn bare(result: DmarcResult, domain: &str, reason: impl Into<String>) -> Self {
        DmarcOutcome {
            result,
            policy: None,
            disposition: Disposition::None,
            domain: domain.to_string(),
            policy_domain: None,
            org_domain: None,
            testing: false,
            spf_aligned: false,
            dkim_aligned: false,
            reason: reason.into(),
            dns_queries: 0,
            record: None,
            treewalk: true,
        }
    }
}

/// Which policy tag governs the Author Domain (RFC 9989 §4.10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applicable {
    /// The record is the Author Domain's own: `p`.
    Own,
    /// The record is a parent's: `sp` for existing, `np` for non-existent.
    Subdomain,
}

/// Evaluates DMARC for one Author Domain (RFC 9989 §5.3.2-5.3.6).
pub async fn evaluate<R: Resolver>(
    resolver: &R,
    inputs: &EvalInputs<'_>,
    opts: &DmarcOptions,
) -> DmarcOutcome {
    let Some(author) = normalize_domain(inputs.author_domain) else {
        return DmarcOutcome::bare(
            DmarcResult::PermError,
            inputs.author_domain,
            "Author Domain is not a valid domain name",
        );
    };
    let mut walker = Walker::new(resolver);
    let mut out = evaluate_with(&mut walker, &author, inputs, opts).await;
    out.treewalk = !opts.use_psl;
    out.dns_queries = out.dns_queries.saturating_add(walker.queries());
    out
}

async fn evaluate_with<R: Resolver>(
    walker: &mut Walker<'_, R>,
    author: &str,
    inputs: &EvalInputs<'_>,
    opts: &DmarcOptions,
) -> DmarcOutcome {
    let found = if opts.use_psl {
        walker.discover_policy_psl(author).await
    } else {
        walker.discover_policy(author).await
    };
    let discovered = match found {
        Err(e) => return DmarcOutcome::bare(DmarcResult::TempError, author, e.to_string()),
        Ok(None) => return DmarcOutcome::bare(DmarcResult::None, author, "no DMARC policy record"),
        Ok(Some(d)) => d,
    };
    let mut out = DmarcOutcome::bare(DmarcResult::Fail, author, "");
    out.policy_domain = Some(discovered.domain.clone());
    out.record = Some(Box::new(discovered.record.clone()));
    out.testing = discovered.record.testing;
    let Some(record) = usable_record(&discovered, &mut out) else {
        return out;
    };
    let applicable = if discovered.domain == author {
        Applicable::Own
    } else {
        Applicable::Subdomain
    };
    let mut align = Aligner::new(walker, author, opts.use_psl);
    let spf_temp = check_alignment(&mut align, &record, inputs, &mut out).await;
    out.org_domain = align.author_org.clone();
    let existence = if out.spf_aligned || out.dkim_aligned {
        Ok(true)
    } else {
        author_exists(&mut align, &record, applicable).await
    };
    finish(
        out,
        &record,
        applicable,
        existence,
        spf_temp || align.temp_error,
        opts,
    )
}

/// Applies the invalid-policy rule of RFC 9989 §4.10.1 (RFC 7489 §6.6.3
/// step 6 in PSL mode) to a record without a valid `p` or with an invalid
/// `sp`/`np`: with a usable `rua`, act as if the record were `p=none`
/// (its `sp` and `np` gone with the rest of the policy); otherwise no DMARC
/// processing. "No processing" is reported as `permerror`, which RFC 9989
/// §9.1 defines by "the retrieval of an improperly formatted DMARC Policy
/// Record", and which carries no policy, so nothing is enforced.
fn usable_record(d: &Discovered, out: &mut DmarcOutcome) -> Option<DmarcRecord> {
    if !d.record.lacks_valid_policy() {
        return Some(d.record.clone());
    }
    let bad = if d.record.invalid_policy_tags.is_empty() {
        "no p".to_string()
    } else {
        format!("invalid {}", d.record.invalid_policy_tags.join(", "))
    };
    if !d.record.has_valid_rua() {
        out.result = DmarcResult::PermError;
        out.reason = format!("{bad} in record at {} and no valid rua", d.domain);
        return None;
    }
    out.reason = format!("{bad}; acting as p=none (RFC 9989 4.10.1)");
    Some(DmarcRecord {
        policy: Some(Policy::None),
        subdomain_policy: None,
        np: None,
        invalid_policy_tags: Vec::new(),
        ..d.record.clone()
    })
}

/// Sets `spf_aligned` / `dkim_aligned`; returns whether an aligned SPF
/// identifier had a temporary error.
async fn check_alignment<R: Resolver>(
    align: &mut Aligner<'_, '_, R>,
    record: &DmarcRecord,
    inputs: &EvalInputs<'_>,
    out: &mut DmarcOutcome,
) -> bool {
    let mut spf_temp = false;
    if let Some((verdict, domain)) = inputs.spf
        && matches!(verdict, SpfVerdict::Pass | SpfVerdict::TempError)
        && let Some(domain) = normalize_domain(domain)
        && align.aligned(&domain, record.aspf).await
    {
        out.spf_aligned = verdict == SpfVerdict::Pass;
        spf_temp = verdict == SpfVerdict::TempError;
    }
    for d in inputs
        .dkim_pass_domains
        .iter()
        .filter_map(|d| normalize_domain(d))
    {
        if align.aligned(&d, record.adkim).await {
            out.dkim_aligned = true;
            break;
        }
    }
    spf_temp
}

/// Whether the Author Domain exists (RFC 9989 §3.2.13: NXDOMAIN means
/// not). Asked only when `np` could change the answer.
async fn author_exists<R: Resolver>(
    align: &mut Aligner<'_, '_, R>,
    record: &DmarcRecord,
    applicable: Applicable,
) -> Result<bool, String> {
    let sp = record.subdomain_policy.or(record.policy);
    if applicable == Applicable::Own || record.np.is_none() || record.np == sp {
        return Ok(true);
    }
    align
        .walker
        .domain_exists(align.author)
        .await
        .map_err(|e| format!("existence test for {}: {e}", align.author))
}

/// Turns alignment and the record into the result and the disposition.
fn finish(
    mut out: DmarcOutcome,
    record: &DmarcRecord,
    applicable: Applicable,
    existence: Result<bool, String>,
    temp: bool,
    opts: &DmarcOptions,
) -> DmarcOutcome {
    let exists = match existence {
        Ok(e) => e,
        Err(reason) => {
            out.result = DmarcResult::TempError;
            out.reason = reason;
            return out;
        }
    };
    let policy = requested_policy(record, applicable, exists);
    out.policy = Some(policy);
    let note = std::mem::take(&mut out.reason);
    let (result, why) = if out.spf_aligned || out.dkim_aligned {
        (DmarcResult::Pass, "aligned identifier passed")
    } else if temp {
        (
            DmarcResult::TempError,
            "aligned identifier had a temporary error",
        )
    } else {
        (DmarcResult::Fail, "no aligned identifier passed")
    };
    out.result = result;
    out.reason = if note.is_empty() {
        why.to_string()
    } else {
        format!("{why}; {note}")
    };
    if result == DmarcResult::Fail {
        out.disposition = disposition(policy, record, opts);
    }
    out
}

/// `p`, `sp` or `np` for this Author Domain (RFC 9989 §4.7, §4.10.1);
/// an absent `p` is `none`.
fn requested_policy(record: &DmarcRecord, applicable: Applicable, exists: bool) -> Policy {
    let p = record.policy.unwrap_or(Policy::None);
    match applicable {
        Applicable::Own => p,
        Applicable::Subdomain if !exists => record.np.or(record.subdomain_policy).unwrap_or(p),
        Applicable::Subdomain => record.subdomain_policy.unwrap_or(p),
    }
}

/// The requested disposition after `t=y` and (PSL mode) `pct`.
fn disposition(policy: Policy, record: &DmarcRecord, opts: &DmarcOptions) -> Disposition {
    let mut policy = policy;
    if record.testing {
        policy = policy.one_level_below();
    }
    if opts.use_psl
        && let Some(pct) = record.pct
        && (opts.sample)() >= pct
    {
        policy = policy.one_level_below();
    }
    policy.into()
}

/// Identifier alignment with memoised Organizational Domains.
struct Aligner<'w, 'r, R> {
    walker: &'w mut Walker<'r, R>,
    author: &'w str,
    use_psl: bool,
    author_org: Option<String>,
    temp_error: bool,
}

impl<'w, 'r, R: Resolver> Aligner<'w, 'r, R> {
    fn new(walker: &'w mut Walker<'r, R>, author: &'w str, use_psl: bool) -> Self {
        Aligner {
            walker,
            author,
            use_psl,
            author_org: None,
            temp_error: false,
        }
    }

    /// RFC 9989 §4.4: strict = identical; relaxed = same Organizational Domain.
    async fn aligned(&mut self, id: &str, mode: Alignment) -> bool {
        if id == self.author {
            return true;
        }
        if mode == Alignment::Strict {
            return false;
        }
        let Some(author_org) = self.org(self.author).await else {
            return false;
        };
        self.author_org = Some(author_org.clone());
        // Both Organizational Domains are suffixes of their names, so a
        // name that does not end in the author's one cannot share it.
        if !is_suffix(id, &author_org) {
            return false;
        }
        self.org(id).await.is_some_and(|org| org == author_org)
    }

    async fn org(&mut self, domain: &str) -> Option<String> {
        if self.use_psl {
            return Some(psl_org_domain(domain));
        }
        match self.walker.org_domain(domain).await {
            Ok(org) => Some(org),
            Err(_) => {
                self.temp_error = true;
                None
            }
        }
    }
}

/// `name` equals `suffix` or ends with `.suffix`.
fn is_suffix(name: &str, suffix: &str) -> bool {
    name == suffix
        || name
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.'))
}

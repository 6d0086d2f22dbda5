//! The `check_host()` function (RFC 7208 §4): fetch, select, evaluate.
//!
//! Owns: record selection (§4.5), domain validation (§4.3), mechanism
//! matching (§5), `redirect=` and `exp=` (§6), the processing limits
//! (§4.6.4: DNS-querying terms, void lookups, MX and PTR names) and the
//! mapping of DNS failures to `temperror`. Must not: read the clock, open
//! sockets or log; DNS comes only through [`Resolver`], time and the
//! receiver name through [`SpfOptions`]. Every query is bounded: at most
//! `lookup_limit` terms query DNS, each of them at most 1 + 10 queries, plus
//! one PTR walk (1 + 10) and one `exp=` TXT per evaluation.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use super::macros::{Letter, MacroContext, MacroString, is_toplabel, truncate_domain};
use super::record::{Directive, Mechanism, Qualifier, Record, is_spf_record};
use crate::dns::{DnsError, Resolver};

/// At most this many MX names per `mx` mechanism (§4.6.4); more is a
/// `permerror`.
pub const MX_LIMIT: usize = 10;
/// At most this many PTR names are validated (§4.6.4, §5.5); the rest are
/// ignored.
pub const PTR_LIMIT: usize = 10;

/// The seven results of `check_host()` (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// No syntactically valid domain, or no SPF record (§2.6.1).
    None,
    /// The domain owner asserts nothing about the IP (§2.6.2).
    Neutral,
    /// The client is authorized (§2.6.3).
    Pass,
    /// The client is not authorized (§2.6.4).
    Fail,
    /// Probably not authorized (§2.6.5).
    SoftFail,
    /// A transient DNS error (§2.6.6).
    TempError,
    /// The record could not be interpreted (§2.6.7).
    PermError,
}

impl SpfResult {
    /// The lower-case keyword used in headers (§8).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Neutral => "neutral",
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::SoftFail => "softfail",
            Self::TempError => "temperror",
            Self::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for SpfResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Qualifier> for SpfResult {
    fn from(q: Qualifier) -> Self {
        match q {
            Qualifier::Pass => Self::Pass,
            Qualifier::Fail => Self::Fail,
            Qualifier::SoftFail => Self::SoftFail,
            Qualifier::Neutral => Self::Neutral,
        }
    }
}

/// What `check_host()` concluded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    /// The result.
    pub result: SpfResult,
    /// The expanded `exp=` text, only on `fail` (§6.2).
    pub explanation: Option<String>,
    /// Human-readable: which mechanism matched or what went wrong.
    pub reason: String,
    /// The directive that decided the result, as written back (`-all`).
    pub mechanism: Option<String>,
}

/// Evaluation settings (RFC 7208 §4.6.4, §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOptions {
    /// The receiving host's name, for `%{r}` (§7.3).
    pub receiver: String,
    /// Seconds since the Unix epoch, for `%{t}`.
    pub now: u64,
    /// Void lookups allowed before `permerror` (§4.6.4, default 2).
    pub void_limit: u32,
    /// DNS-querying terms allowed before `permerror` (§4.6.4, default 10).
    pub lookup_limit: u32,
}

impl Default for SpfOptions {
    fn default() -> Self {
        Self {
            receiver: "unknown".into(),
            now: 0,
            void_limit: 2,
            lookup_limit: 10,
        }
    }
}

/// Why evaluation stopped early: the two error results, as values.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    Temp(String),
    Perm(String),
}

type Step<T> = Result<T, Stop>;

/// A non-error result of one record's evaluation.
#[derive(Debug, Clone)]
struct Verdict {
    result: SpfResult,
    mechanism: Option<String>,
    explanation: Option<String>,
    reason: String,
}

impl Verdict {
    fn plain(result: SpfResult, reason: impl Into<String>) -> Self {
        Self {
            result,
            mechanism: None,
            explanation: None,
            reason: reason.into(),
        }
    }
}

/// RFC 7208 §4: evaluates the SPF record of `domain` for a client at `ip`.
///
/// `sender` is the full identity (`local@domain`; a missing local-part
/// becomes `postmaster`, §4.3). IPv4-mapped IPv6 addresses are evaluated as
/// IPv4 (§5). Never fails: DNS problems and bad records are results.
pub async fn check_host<R: Resolver>(
    resolver: &R,
    ip: IpAddr,
    domain: &str,
    sender: &str,
    helo: &str,
    opts: &SpfOptions,
) -> SpfOutcome {
    let ip = unmap(ip);
    let (local, sender_domain) = split_sender(sender, domain);
    let mut eval = Eval {
        resolver,
        ip,
        sender: format!("{local}@{sender_domain}"),
        local,
        sender_domain,
        helo,
        opts,
        lookups: 0,
        voids: 0,
        validated: None,
    };
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    match eval.check_domain(domain, true).await {
        Ok(v) => SpfOutcome {
            result: v.result,
            explanation: v.explanation,
            reason: v.reason,
            mechanism: v.mechanism,
        },
        Err(Stop::Temp(reason)) => error_outcome(SpfResult::TempError, reason),
        Err(Stop::Perm(reason)) => error_outcome(SpfResult::PermError, reason),
    }
}

fn error_outcome(result: SpfResult, reason: String) -> SpfOutcome {
    SpfOutcome {
        result,
        explanation: None,
        reason,
        mechanism: None,
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes the IPv4 address.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Local-part and domain of `sender`; `postmaster` when there is no
/// local-part (§4.3), `fallback` when there is no `@`.
fn split_sender(sender: &str, fallback: &str) -> (String, String) {
    let (local, domain) = match sender.rsplit_once('@') {
        Some((l, d)) => (l, d),
        None => ("", fallback),
    };
    let local = if local.is_empty() {
        "postmaster"
    } else {
        local
    };
    (local.to_owned(), domain.to_owned())
}

/// §4.3: a multi-label name of 1–63 character labels, at most 253
/// characters, ending in a top label (so IP literals are rejected).
pub fn valid_domain(domain: &str) -> bool {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels
            .iter()
            .all(|l| (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_graphic()))
        && labels.last().is_some_and(|top| is_toplabel(top))
}

/// A name (in the resolvers' text form, see [`query_name`]) that can be
/// queried at all: 1–63 octet labels, at most 255 octets on the wire (253
/// of plain text). Expanded targets may hold any octet (§7.1, §7.3).
fn queryable(name: &str) -> bool {
    crate::dns::name::wire_labels(name).is_some()
}

/// The resolvers' text form of a raw name. Macro expansion (§7.3) and the
/// sender give raw text: `.` between labels, every other character its own
/// octets, a space, `%`, `/` or `\` included. The resolvers take RFC 1035
/// §5.1 escapes ([`crate::dns::name`]), so only `\` needs escaping; the
/// rest goes to the wire as is, with `--dns-zone` and `--dns-server` alike.
fn query_name(raw: &str) -> std::borrow::Cow<'_, str> {
    crate::dns::name::escape_raw(raw)
}

/// True when `ip` lies in `net/len`.
fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// True when `name` is `target` or a subdomain of it (case-insensitive).
fn is_at_or_below(name: &str, target: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let target = target
        .strip_suffix('.')
        .unwrap_or(target)
        .to_ascii_lowercase();
    name == target || name.ends_with(&format!(".{target}"))
}

/// Recursion through include/redirect needs a boxed future: an `async fn`
/// cannot call itself without one. The lookup limit bounds the depth.
type BoxStep<'s> = Pin<Box<dyn Future<Output = Step<Verdict>> + Send + 's>>;

/// One `check_host()` evaluation: its inputs and shared counters.
struct Eval<'a, R> {
    resolver: &'a R,
    ip: IpAddr,
    sender: String,
    local: String,
    sender_domain: String,
    helo: &'a str,
    opts: &'a SpfOptions,
    /// DNS-querying terms seen so far, across includes and redirects.
    lookups: u32,
    /// Lookups that returned NXDOMAIN or no records.
    voids: u32,
    /// PTR names that resolve back to the client (§5.5), computed once.
    validated: Option<Vec<String>>,
}

impl<'a, R: Resolver> Eval<'a, R> {
    fn check_domain<'s>(&'s mut self, domain: &'s str, want_exp: bool) -> BoxStep<'s> {
        Box::pin(async move {
            if !valid_domain(domain) {
                return Ok(Verdict::plain(
                    SpfResult::None,
                    format!("'{domain}' is not a valid domain name"),
                ));
            }
            let Some(record) = self.fetch_record(domain).await? else {
                return Ok(Verdict::plain(
                    SpfResult::None,
                    format!("no SPF record at {domain}"),
                ));
            };
            self.evaluate(&record, domain, want_exp).await
        })
    }

    /// §4.4, §4.5: exactly one `v=spf1` record, parsed whole.
    async fn fetch_record(&mut self, domain: &str) -> Step<Option<Record>> {
        let txts = match self.resolver.txt(&query_name(domain)).await {
            Ok(txts) => txts,
            Err(DnsError::Temporary(e)) => {
                return Err(Stop::Temp(format!("TXT lookup of {domain}: {e}")));
            }
            Err(_) => return Ok(None),
        };
        let mut spf = txts.iter().filter(|t| is_spf_record(t));
        let Some(first) = spf.next() else {
            return Ok(None);
        };
        if spf.next().is_some() {
            return Err(Stop::Perm(format!("{domain} has more than one SPF record")));
        }
        Record::parse(first)
            .map(Some)
            .map_err(|e| Stop::Perm(format!("bad SPF record at {domain}: {e}")))
    }

    /// §4.6: directives in order, then `redirect=`, then neutral.
    async fn evaluate(&mut self, record: &Record, domain: &str, want_exp: bool) -> Step<Verdict> {
        for directive in &record.directives {
            if self.matches(&directive.mechanism, domain).await? {
                return Ok(self.matched(directive, record, domain, want_exp).await);
            }
        }
        match &record.redirect {
            Some(spec) => self.redirect(spec, domain, want_exp).await,
            None => Ok(Verdict::plain(
                SpfResult::Neutral,
                format!("no mechanism matched in {domain} (default neutral)"),
            )),
        }
    }

    async fn matched(
        &mut self,
        directive: &Directive,
        record: &Record,
        domain: &str,
        want_exp: bool,
    ) -> Verdict {
        let result = SpfResult::from(directive.qualifier);
        let explanation = match (&record.explanation, result, want_exp) {
            (Some(spec), SpfResult::Fail, true) => self.explain(spec, domain).await,
            _ => None,
        };
        Verdict {
            result,
            mechanism: Some(directive.to_string()),
            explanation,
            reason: format!("{domain}: matched {directive}"),
        }
    }

    /// §6.1: the target's result is ours; no record there is a permerror.
    async fn redirect(
        &mut self,
        spec: &MacroString,
        domain: &str,
        want_exp: bool,
    ) -> Step<Verdict> {
        self.count("redirect")?;
        let target = self.expand_domain(spec, domain).await;
        let verdict = self.check_domain(&target, want_exp).await?;
        if verdict.result == SpfResult::None {
            return Err(Stop::Perm(format!("redirect={target}: {}", verdict.reason)));
        }
        Ok(verdict)
    }

    /// Counts one DNS-querying term against the limit (§4.6.4).
    fn count(&mut self, term: &str) -> Step<()> {
        self.lookups = self.lookups.saturating_add(1);
        if self.lookups > self.opts.lookup_limit {
            return Err(Stop::Perm(format!(
                "{term}: more than {} DNS-querying terms",
                self.opts.lookup_limit
            )));
        }
        Ok(())
    }

    /// Counts one void lookup (§4.6.4).
    fn void(&mut self, name: &str) -> Step<()> {
        self.voids = self.voids.saturating_add(1);
        if self.voids > self.opts.void_limit {
            return Err(Stop::Perm(format!(
                "{name}: more than {} void lookups",
                self.opts.void_limit
            )));
        }
        Ok(())
    }

    async fn matches(&mut self, mechanism: &Mechanism, domain: &str) -> Step<bool> {
        if mechanism.queries_dns() {
            self.count(&mechanism.to_string())?;
        }
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => Ok(in_prefix(self.ip, IpAddr::V4(*net), *len)),
            Mechanism::Ip6(net, len) => Ok(in_prefix(self.ip, IpAddr::V6(*net), *len)),
            Mechanism::Include(spec) => self.include(spec, domain).await,
            Mechanism::A(spec, cidr) => {
                let target = self.target(spec.as_ref(), domain).await;
                let addrs = self.addresses(&query_name(&target)).await?;
                Ok(self.any_in(&addrs, cidr.v4, cidr.v6))
            }
            Mechanism::Mx(spec, cidr) => {
                let target = self.target(spec.as_ref(), domain).await;
                self.mx(&target, cidr.v4, cidr.v6).await
            }
            Mechanism::Ptr(spec) => {
                let target = self.target(spec.as_ref(), domain).await;
                let names = self.validated_names().await;
                Ok(names.iter().any(|n| is_at_or_below(n, &target)))
            }
            Mechanism::Exists(spec) => {
                let target = self.expand_domain(spec, domain).await;
                self.exists(&target).await
            }
        }
    }

    /// §5.2: pass matches; fail, softfail, neutral do not; none is a
    /// permerror; errors propagate.
    async fn include(&mut self, spec: &MacroString, domain: &str) -> Step<bool> {
        let target = self.expand_domain(spec, domain).await;
        let verdict = self.check_domain(&target, false).await?;
        match verdict.result {
            SpfResult::Pass => Ok(true),
            SpfResult::None => Err(Stop::Perm(format!("include:{target}: {}", verdict.reason))),
            _ => Ok(false),
        }
    }

    /// The mechanism's domain-spec expanded, or the current domain.
    async fn target(&mut self, spec: Option<&MacroString>, domain: &str) -> String {
        match spec {
            Some(spec) => self.expand_domain(spec, domain).await,
            None => domain.to_owned(),
        }
    }

    fn any_in(&self, addrs: &[IpAddr], v4: u8, v6: u8) -> bool {
        let len = if self.ip.is_ipv4() { v4 } else { v6 };
        addrs.iter().any(|a| in_prefix(self.ip, *a, len))
    }

    /// A records for IPv4 clients, AAAA for IPv6 (§5.3); void answers are
    /// counted, temporary failures stop evaluation. `name` is in the
    /// resolvers' text form ([`query_name`], or an MX exchange as given).
    async fn addresses(&mut self, name: &str) -> Step<Vec<IpAddr>> {
        if !queryable(name) {
            self.void(name)?;
            return Ok(Vec::new());
        }
        let answer = match self.ip {
            IpAddr::V4(_) => self
                .resolver
                .a(name)
                .await
                .map(|v| v.into_iter().map(IpAddr::V4).collect()),
            IpAddr::V6(_) => self
                .resolver
                .aaaa(name)
                .await
                .map(|v| v.into_iter().map(IpAddr::V6).collect()),
        };
        self.sort_answer(name, answer)
    }

    fn sort_answer<T>(&mut self, name: &str, answer: Result<Vec<T>, DnsError>) -> Step<Vec<T>> {
        match answer {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) | Err(DnsError::NxDomain | DnsError::NoData) => {
                self.void(name)?;
                Ok(Vec::new())
            }
            Err(DnsError::Temporary(e)) => Err(Stop::Temp(format!("lookup of {name}: {e}"))),
        }
    }

    /// §5.4: at most [`MX_LIMIT`] names, each looked up for addresses.
    async fn mx(&mut self, target: &str, v4: u8, v6: u8) -> Step<bool> {
        let query = query_name(target);
        let mut mxs = if queryable(&query) {
            let answer = self.resolver.mx(&query).await;
            self.sort_answer(target, answer)?
        } else {
            self.void(target)?;
            Vec::new()
        };
        if mxs.len() > MX_LIMIT {
            return Err(Stop::Perm(format!(
                "mx:{target}: more than {MX_LIMIT} MX records"
            )));
        }
        mxs.sort_by_key(|m| m.preference);
        for mx in mxs {
            // RFC 7505 null MX ("."), normalised to an empty name: no host.
            if mx.exchange.is_empty() || mx.exchange == "." {
                continue;
            }
            let addrs = self.addresses(&mx.exchange).await?;
            if self.any_in(&addrs, v4, v6) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// §5.7: any A record matches (always A, whatever the client family).
    async fn exists(&mut self, target: &str) -> Step<bool> {
        let query = query_name(target);
        if !queryable(&query) {
            self.void(target)?;
            return Ok(false);
        }
        let answer = self.resolver.a(&query).await;
        Ok(!self.sort_answer(target, answer)?.is_empty())
    }

    /// §5.5: PTR names (first [`PTR_LIMIT`]) whose addresses include the
    /// client, as raw text (for `ptr:` and `%{p}`); a name raw text cannot
    /// say (a `.` inside a label, octets that are not UTF-8) is dropped.
    /// DNS errors only drop names; computed once per evaluation.
    async fn validated_names(&mut self) -> Vec<String> {
        if let Some(names) = &self.validated {
            return names.clone();
        }
        let names: Vec<String> = self.resolver.ptr(self.ip).await.unwrap_or_default();
        let mut validated = Vec::new();
        for name in names.into_iter().take(PTR_LIMIT) {
            if self.resolves_to_client(&name).await
                && let Some(raw) = crate::dns::name::to_raw(&name)
            {
                validated.push(raw);
            }
        }
        self.validated = Some(validated.clone());
        validated
    }

    /// `name` is a PTR target as the resolver gave it (its text form).
    async fn resolves_to_client(&self, name: &str) -> bool {
        if !queryable(name) {
            return false;
        }
        match self.ip {
            IpAddr::V4(ip) => self.resolver.a(name).await.is_ok_and(|v| v.contains(&ip)),
            IpAddr::V6(ip) => self
                .resolver
                .aaaa(name)
                .await
                .is_ok_and(|v| v.contains(&ip)),
        }
    }

    /// `%{p}` (§7.3): a validated name at or below `domain` if any, else
    /// any validated name, else none (`unknown`).
    async fn ptr_macro_value(&mut self, domain: &str) -> Option<String> {
        let names = self.validated_names().await;
        names
            .iter()
            .find(|n| is_at_or_below(n, domain))
            .or(names.first())
            .cloned()
    }

    /// Expands a domain-spec, doing the PTR walk only when `%{p}` is used.
    async fn expand_domain(&mut self, spec: &MacroString, domain: &str) -> String {
        let ptr = self.ptr_if_used(spec, domain).await;
        truncate_domain(&spec.expand_domain(&self.context(domain, ptr.as_deref())))
    }

    async fn ptr_if_used(&mut self, spec: &MacroString, domain: &str) -> Option<String> {
        if spec.uses(Letter::Ptr) {
            self.ptr_macro_value(domain).await
        } else {
            None
        }
    }

    fn context<'c>(&'c self, domain: &'c str, ptr: Option<&'c str>) -> MacroContext<'c> {
        MacroContext {
            sender: &self.sender,
            local: &self.local,
            sender_domain: &self.sender_domain,
            domain,
            ip: self.ip,
            validated_ptr: ptr,
            helo: self.helo,
            receiver: &self.opts.receiver,
            now: self.opts.now,
        }
    }

    /// §6.2: fetch and expand the explanation; any problem means none.
    async fn explain(&mut self, spec: &MacroString, domain: &str) -> Option<String> {
        let target = self.expand_domain(spec, domain).await;
        let query = query_name(&target);
        if !queryable(&query) {
            return None;
        }
        let txts = self.resolver.txt(&query).await.ok()?;
        let [txt] = txts.as_slice() else {
            return None;
        };
        let text = std::str::from_utf8(txt).ok()?;
        let parsed = MacroString::parse(text, true).ok()?;
        let ptr = self.ptr_if_used(&parsed, domain).await;
        let out = parsed.expand(&self.context(domain, ptr.as_deref()));
        out.is_ascii().then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_validation_follows_section_4_3() {
        for (d, ok) in [
            ("example.com", true),
            ("example.com.", true),
            ("a.b.c.example.com", true),
            ("localhost", false),
            ("", false),
            ("a..example.com", false),
            (".example.com", false),
            ("[192.0.2.1]", false),
            ("192.0.2.1", false),
            (&format!("{}.com", "a".repeat(64)), false),
            (&format!("{}.com", "a".repeat(63)), true),
            (&format!("{}com", "a.".repeat(130)), false),
        ] {
            assert_eq!(valid_domain(d), ok, "{d}");
        }
    }

    #[test]
    fn expanded_names_are_queried_as_their_raw_octets() {
        // §7.3: an expansion may hold any octet; each goes to the resolver
        // as that octet, `\` included (escaped for the resolvers' text).
        for (raw, want) in [
            ("a b.x", vec![&b"a b"[..], b"x"]),
            ("a%b:c/d.x", vec![b"a%b:c/d", b"x"]),
            (r"a\b.x", vec![br"a\b", b"x"]),
            (r"a\.b.x", vec![br"a\", b"b", b"x"]),
            (r"\065.x", vec![br"\065", b"x"]),
        ] {
            let labels = crate::dns::name::wire_labels(&query_name(raw)).unwrap();
            assert_eq!(labels, want, "{raw}");
        }
        // Limits count octets (§4.3, RFC 1035 §2.3.4): 63 backslashes are
        // one 63-octet label, though 126 characters once escaped.
        assert!(queryable(&query_name(&format!("{}.x", "\\".repeat(63)))));
        assert!(!queryable(&query_name(&format!("{}.x", "\\".repeat(64)))));
        assert!(!queryable(&query_name("a..b.x")));
        assert!(!queryable(&query_name(&format!("{}x", "a.".repeat(127)))));
    }

    #[test]
    fn prefixes_match_by_family() {
        for (ip, net, len, want) in [
            ("192.0.2.1", "192.0.2.0", 24, true),
            ("192.0.3.1", "192.0.2.0", 24, false),
            ("192.0.3.1", "0.0.0.0", 0, true),
            ("192.0.2.1", "192.0.2.1", 32, true),
            ("2001:db8::1", "2001:db8::", 32, true),
            ("2001:db9::1", "2001:db8::", 32, false),
            ("2001:db8::1", "::", 0, true),
            ("192.0.2.1", "::", 0, false),
        ] {
            let (ip, net) = (ip.parse().unwrap(), net.parse().unwrap());
            assert_eq!(in_prefix(ip, net, len), want, "{ip} {net}/{len}");
        }
    }

    #[test]
    fn sender_without_local_part_is_postmaster() {
        for (s, l, d) in [
            ("a@example.com", "a", "example.com"),
            ("@example.com", "postmaster", "example.com"),
            ("example.com", "postmaster", "fallback.example"),
            ("a@b@example.com", "a@b", "example.com"),
        ] {
            assert_eq!(split_sender(s, "fallback.example"), (l.into(), d.into()));
        }
    }

    #[test]
    fn mapped_ipv6_is_unmapped() {
        assert_eq!(
            unmap("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(unmap(v6), v6);
    }
}

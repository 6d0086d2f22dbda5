//! Policy discovery and Organizational Domains (RFC 9989 §4.10; RFC 7489
//! §3.2 and §6.6.3 in PSL mode).
//!
//! Owns: the DNS Tree Walk (at most [`MAX_WALK_QUERIES`] TXT queries per
//! walk), choosing the Organizational Domain from a walk (§4.10.2), choosing
//! the DMARC Policy Record (§4.10.1), and the RFC 7489 equivalents computed
//! with the embedded Public Suffix List. Every `_dmarc` answer is memoised
//! per [`Walker`], so the policy walk and the alignment walks of one message
//! never ask twice, and [`Walker::queries`] counts what was really asked.
//! Must not: decide pass/fail or read message data.

use std::collections::HashMap;

use super::record::{DmarcRecord, Psd, is_dmarc_record};
use crate::dns::{DnsError, Resolver};

/// Most `_dmarc` queries one tree walk makes (RFC 9989 §4.10).
pub const MAX_WALK_QUERIES: usize = 8;

/// Longest name the walk keeps after the first query (RFC 9989 §4.10 step 4).
const SHORTENED_LABELS: usize = 7;

/// A `_dmarc` lookup failed temporarily, so no definite answer exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("temporary DNS error for _dmarc.{domain}: {reason}")]
pub struct WalkError {
    /// The domain whose `_dmarc` name failed.
    pub domain: String,
    /// The resolver's message.
    pub reason: String,
}

/// What `_dmarc.<domain>` holds after RFC 9989 §4.10 step 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No TXT string starting with `v=DMARC1` (NXDOMAIN and NODATA included).
    Absent,
    /// Several DMARC records: "they are all discarded".
    Multiple,
    /// Exactly one DMARC record.
    Found(DmarcRecord),
}

/// The DMARC Policy Record chosen for an Author Domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Where the record was found (the policy domain).
    pub domain: String,
    /// The record.
    pub record: DmarcRecord,
}

/// Runs memoised `_dmarc` lookups through a [`Resolver`] for one message.
pub struct Walker<'r, R> {
    resolver: &'r R,
    memo: HashMap<String, Result<Lookup, String>>,
    queries: usize,
}

impl<'r, R: Resolver> Walker<'r, R> {
    /// A walker with an empty memo.
    pub fn new(resolver: &'r R) -> Self {
        Walker {
            resolver,
            memo: HashMap::new(),
            queries: 0,
        }
    }

    /// TXT queries sent so far (memo hits not counted).
    pub fn queries(&self) -> usize {
        self.queries
    }

    /// Whether `domain` exists: RFC 9989 §3.2.13 and Appendix A.4 use the
    /// RFC 8020 meaning, so one NXDOMAIN answer (here to an A query) says
    /// no, and any other definite answer (records or NODATA) says yes.
    pub async fn domain_exists(&mut self, domain: &str) -> Result<bool, String> {
        self.queries = self.queries.saturating_add(1);
        match self.resolver.a(domain).await {
            Ok(_) | Err(DnsError::NoData) => Ok(true),
            Err(DnsError::NxDomain) => Ok(false),
            Err(DnsError::Temporary(e)) => Err(e),
        }
    }

    /// Looks up `_dmarc.<domain>` once (RFC 9989 §4.10 steps 1-2, 5-6).
    pub async fn lookup(&mut self, domain: &str) -> Result<Lookup, WalkError> {
        if let Some(hit) = self.memo.get(domain) {
            return hit.clone().map_err(|reason| walk_error(domain, reason));
        }
        self.queries = self.queries.saturating_add(1);
        let answer = match self.resolver.txt(&format!("_dmarc.{domain}")).await {
            Ok(txts) => Ok(classify(&txts)),
            Err(DnsError::NxDomain | DnsError::NoData) => Ok(Lookup::Absent),
            Err(DnsError::Temporary(e)) => Err(e),
        };
        self.memo.insert(domain.to_string(), answer.clone());
        answer.map_err(|reason| walk_error(domain, reason))
    }

    /// The DNS Tree Walk from `start` (RFC 9989 §4.10): every valid record
    /// found, longest name first, stopping after one with `psd=y`/`psd=n`.
    pub async fn tree_walk(
        &mut self,
        start: &str,
    ) -> Result<Vec<(String, DmarcRecord)>, WalkError> {
        let mut found = Vec::new();
        for target in walk_targets(start) {
            if let Lookup::Found(record) = self.lookup(&target).await? {
                let stop = record.psd != Psd::Unknown;
                found.push((target, record));
                if stop {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// The Organizational Domain of `domain` by tree walk (RFC 9989 §4.10.2).
    pub async fn org_domain(&mut self, domain: &str) -> Result<String, WalkError> {
        let found = self.tree_walk(domain).await?;
        Ok(org_domain_from_walk(domain, &found))
    }

    /// RFC 9989 §4.10.1: the Author Domain's own record, else that of its
    /// Organizational Domain, else that of its Public Suffix Domain.
    pub async fn discover_policy(&mut self, author: &str) -> Result<Option<Discovered>, WalkError> {
        if let Lookup::Found(record) = self.lookup(author).await? {
            return Ok(Some(discovered(author, record)));
        }
        let found = self.tree_walk(author).await?;
        let org = org_domain_from_walk(author, &found);
        let pick = found
            .iter()
            .find(|(name, _)| *name == org)
            .or_else(|| found.iter().find(|(_, r)| r.psd == Psd::Yes));
        Ok(pick.map(|(name, record)| discovered(name, record.clone())))
    }

    /// RFC 7489 §6.6.3: the Author Domain's record, else (only when the
    /// author has none at all) that of its PSL Organizational Domain.
    pub async fn discover_policy_psl(
        &mut self,
        author: &str,
    ) -> Result<Option<Discovered>, WalkError> {
        match self.lookup(author).await? {
            Lookup::Found(record) => return Ok(Some(discovered(author, record))),
            // §6.6.3 step 5: several records end policy discovery.
            Lookup::Multiple => return Ok(None),
            Lookup::Absent => {}
        }
        let org = psl_org_domain(author);
        if org == author {
            return Ok(None);
        }
        match self.lookup(&org).await? {
            Lookup::Found(record) => Ok(Some(discovered(&org, record))),
            _ => Ok(None),
        }
    }
}

fn discovered(domain: &str, record: DmarcRecord) -> Discovered {
    Discovered {
        domain: domain.to_string(),
        record,
    }
}

fn walk_error(domain: &str, reason: String) -> WalkError {
    WalkError {
        domain: domain.to_string(),
        reason,
    }
}

/// Keeps the DMARC records of one TXT answer (RFC 9989 §4.10 step 2).
fn classify(txts: &[Vec<u8>]) -> Lookup {
    let mut dmarc = txts.iter().filter(|t| is_dmarc_record(t));
    match (dmarc.next(), dmarc.next()) {
        (Some(one), None) => match DmarcRecord::parse(one) {
            Ok(record) => Lookup::Found(record),
            Err(_) => Lookup::Absent,
        },
        (Some(_), Some(_)) => Lookup::Multiple,
        (None, _) => Lookup::Absent,
    }
}

/// The names a tree walk from `domain` queries, in order (RFC 9989 §4.10):
/// the name itself, then (8+ labels) its last 7 labels, then one label
/// fewer each time down to the single-label name. At most 8 names.
pub fn walk_targets(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let n = labels.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = vec![labels.join(".")];
    let mut keep = if n >= 8 { SHORTENED_LABELS } else { n - 1 };
    while keep >= 1 {
        out.push(labels[n - keep..].join("."));
        keep -= 1;
    }
    out
}

/// Chooses the Organizational Domain from one walk's records, longest name
/// first (RFC 9989 §4.10.2): `psd=n` wins; `psd=y` (not at `start`) makes
/// the name one label below it; else the shortest name with a record; with
/// no record at all, `start` itself.
pub fn org_domain_from_walk(start: &str, found: &[(String, DmarcRecord)]) -> String {
    for (name, record) in found {
        match record.psd {
            Psd::No => return name.clone(),
            Psd::Yes if name != start => return one_label_below(start, name),
            _ => {}
        }
    }
    found
        .last()
        .map_or_else(|| start.to_string(), |(name, _)| name.clone())
}

/// The suffix of `start` with one label more than `parent`.
fn one_label_below(start: &str, parent: &str) -> String {
    let labels: Vec<&str> = start.split('.').collect();
    let want = parent.split('.').count().saturating_add(1);
    let skip = labels.len().saturating_sub(want);
    labels[skip..].join(".")
}

/// Lower-cases and converts to A-labels (RFC 9989 §5.3.1, RFC 5890 §2.3);
/// strips one trailing dot. `None` for names IDNA rejects or with empty labels.
pub fn normalize_domain(domain: &str) -> Option<String> {
    let trimmed = domain.trim().trim_end_matches('.');
    if trimmed.is_empty() || trimmed.split('.').any(str::is_empty) {
        return None;
    }
    let ascii = idna::domain_to_ascii(&trimmed.to_lowercase()).ok()?;
    (!ascii.is_empty()).then_some(ascii)
}

/// The RFC 7489 §3.2 Organizational Domain from the embedded PSL: the
/// public suffix plus one label. A name that is itself a public suffix (or
/// an unknown TLD alone) is its own Organizational Domain.
pub fn psl_org_domain(domain: &str) -> String {
    let name = normalize_domain(domain).unwrap_or_else(|| domain.to_ascii_lowercase());
    match psl::domain_str(&name) {
        Some(org) => org.to_string(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_targets_follow_rfc_9989_section_4_10() {
        assert_eq!(
            walk_targets("a.b.c.d.e.f.g.h.i.j.mail.example.com"),
            vec![
                "a.b.c.d.e.f.g.h.i.j.mail.example.com",
                "g.h.i.j.mail.example.com",
                "h.i.j.mail.example.com",
                "i.j.mail.example.com",
                "j.mail.example.com",
                "mail.example.com",
                "example.com",
                "com",
            ]
        );
        assert_eq!(walk_targets("a.mail.example.com").len(), 4);
        assert_eq!(walk_targets("com"), vec!["com"]);
        assert!(walk_targets("").is_empty());
        // Eight labels: the parent already has seven, so no jump.
        let eight = walk_targets("a.b.c.d.e.f.g.h");
        assert_eq!(eight.len(), 8);
        assert_eq!(eight[1], "b.c.d.e.f.g.h");
        for n in 1..20 {
            let name = vec!["x"; n].join(".");
            assert!(walk_targets(&name).len() <= MAX_WALK_QUERIES, "{n}");
        }
    }

    fn rec(psd: Psd) -> DmarcRecord {
        DmarcRecord {
            psd,
            ..DmarcRecord::default()
        }
    }

    #[test]
    fn org_domain_selection_follows_section_4_10_2() {
        let s = |v: &str| v.to_string();
        let u = Psd::Unknown;
        for (start, found, want) in [
            ("a.mail.example.com", vec![], "a.mail.example.com"),
            (
                "a.mail.example.com",
                vec![(s("mail.example.com"), rec(u)), (s("example.com"), rec(u))],
                "example.com",
            ),
            (
                "a.mail.example.com",
                vec![(s("mail.example.com"), rec(Psd::No))],
                "mail.example.com",
            ),
            (
                "a.mail.example.com",
                vec![(s("com"), rec(Psd::Yes))],
                "example.com",
            ),
            (
                "mail.giant.bank.example",
                vec![
                    (s("giant.bank.example"), rec(u)),
                    (s("bank.example"), rec(Psd::Yes)),
                ],
                "giant.bank.example",
            ),
            (
                "bank.example",
                vec![(s("bank.example"), rec(Psd::Yes))],
                "bank.example",
            ),
        ] {
            assert_eq!(
                org_domain_from_walk(start, &found),
                want,
                "{start} {found:?}"
            );
        }
    }

    #[test]
    fn psl_org_domains_follow_rfc_7489() {
        for (name, want) in [
            ("a.b.example.co.uk", "example.co.uk"),
            ("EXAMPLE.CO.UK", "example.co.uk"),
            ("co.uk", "co.uk"),
            ("foo.github.io", "foo.github.io"),
            ("x.foo.github.io", "foo.github.io"),
            ("mail.example.com.", "example.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("a.bücher.de", "xn--bcher-kva.de"),
            ("com", "com"),
        ] {
            assert_eq!(psl_org_domain(name), want, "{name}");
        }
    }

    #[test]
    fn normalize_domain_lowercases_and_converts_idn() {
        assert_eq!(normalize_domain("Ex.COM."), Some("ex.com".into()));
        assert_eq!(
            normalize_domain("Bücher.Example"),
            Some("xn--bcher-kva.example".into())
        );
        assert_eq!(normalize_domain("a..b"), None);
        assert_eq!(normalize_domain(""), None);
    }
}

//! DMARC (RFC 9989, obsoleting RFC 7489 and RFC 9091).
//!
//! Owns: the Author Domain extraction of RFC 9989 §5.3.1 (including the
//! multi-From cases), running [`eval::evaluate`] per domain, and the A-R
//! `dmarc=` entry (RFC 8601 §2.7.1, RFC 9989 §9.1). Must not: touch
//! sockets or act on the verdict: the caller decides what a `reject`
//! request or a [`FromProblem`] means locally (RFC 9989 §5.4).
//!
//! ```no_run
//! # async fn demo(r: &authgate::dns::zone::ZoneResolver, headers: &[authgate::message::headers::Header]) {
//! use authgate::dmarc::{self, DmarcOptions, SpfVerdict};
//! let v = dmarc::check(r, headers, Some((SpfVerdict::Pass, "example.com")),
//!                      &["example.com".to_string()], &DmarcOptions::default()).await;
//! let entry = dmarc::authres_entry(&v.outcome, v.outcome.disposition, None);
//! println!("{}", authgate::authres::build("mx.example.net", &[entry]));
//! # }
//! ```

pub mod eval;
pub mod orgdomain;
pub mod record;

pub use eval::{
    Disposition, DmarcOptions, DmarcOutcome, DmarcResult, EvalInputs, MultiDomainFrom, SpfVerdict,
    evaluate,
};
pub use record::{Alignment, DmarcRecord, Policy, Psd, RecordError};

use crate::authres::Entry;
use crate::dns::Resolver;
use crate::message::address::{domain_of, parse_addresses};
use crate::message::headers::Header;

/// Why the From header field does not give exactly one Author Domain
/// (RFC 9989 §4.4, §5.3.1, §11.5); local policy may reject on these
/// (as OpenDMARC's `RequiredHeaders` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromProblem {
    /// No From header field.
    Missing,
    /// More than one From header field (RFC 5322 §3.6 allows one).
    MultipleFields(usize),
    /// A From field with no address at all (empty, group with no members).
    NoAddress,
    /// An address without a domain part.
    AddressWithoutDomain(String),
    /// Several different Author Domains.
    MultipleDomains(Vec<String>),
}

/// The DMARC verdict for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcVerdict {
    /// The outcome to report and act on (the strictest one when several
    /// Author Domains were evaluated).
    pub outcome: DmarcOutcome,
    /// One outcome per evaluated Author Domain.
    pub per_domain: Vec<DmarcOutcome>,
    /// Problems with the From header field, for local policy.
    pub from_problems: Vec<FromProblem>,
}

/// Evaluates DMARC for a message (RFC 9989 §5.3). `headers` may be the
/// whole header block or only the From fields; `spf` is the result for
/// the RFC5321.MailFrom domain; `dkim_pass_domains` the `d=` of every
/// passing DKIM signature.
pub async fn check<R: Resolver>(
    resolver: &R,
    headers: &[Header],
    spf: Option<(SpfVerdict, &str)>,
    dkim_pass_domains: &[String],
    opts: &DmarcOptions,
) -> DmarcVerdict {
    let (domains, mut problems) = author_domains(headers);
    let skip = domains.len() > 1 && opts.multi_domain_from == MultiDomainFrom::Skip;
    if domains.len() > 1 {
        problems.push(FromProblem::MultipleDomains(domains.clone()));
    }
    if domains.is_empty() || skip {
        let why = if skip {
            "several Author Domains"
        } else {
            "no Author Domain"
        };
        let outcome = DmarcOutcome::bare(DmarcResult::None, "", why);
        return verdict(outcome, Vec::new(), problems);
    }
    let mut per_domain = Vec::with_capacity(domains.len());
    for domain in &domains {
        let inputs = EvalInputs {
            author_domain: domain,
            spf,
            dkim_pass_domains,
        };
        per_domain.push(evaluate(resolver, &inputs, opts).await);
    }
    let outcome = strictest(&per_domain);
    verdict(outcome, per_domain, problems)
}

fn verdict(
    outcome: DmarcOutcome,
    per_domain: Vec<DmarcOutcome>,
    from_problems: Vec<FromProblem>,
) -> DmarcVerdict {
    DmarcVerdict {
        outcome,
        per_domain,
        from_problems,
    }
}

/// The distinct Author Domains of all From fields, in order, with the
/// problems found (RFC 9989 §5.3.1). Never panics on any input.
pub fn author_domains(headers: &[Header]) -> (Vec<String>, Vec<FromProblem>) {
    let fields: Vec<&Header> = headers.iter().filter(|h| h.is("From")).collect();
    let mut problems = Vec::new();
    match fields.len() {
        0 => problems.push(FromProblem::Missing),
        1 => {}
        n => problems.push(FromProblem::MultipleFields(n)),
    }
    let mut domains: Vec<String> = Vec::new();
    // Seen domains in a set: a From field of 10 000 addresses in as many
    // domains made the `contains` scan quadratic (tests/hostile).
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for field in fields {
        let addresses = parse_addresses(field.value());
        if addresses.is_empty() {
            problems.push(FromProblem::NoAddress);
        }
        for address in addresses {
            match domain_of(&address) {
                Some(d) => {
                    let d = orgdomain::normalize_domain(&d).unwrap_or(d);
                    if seen.insert(d.clone()) {
                        domains.push(d);
                    }
                }
                None => problems.push(FromProblem::AddressWithoutDomain(address)),
            }
        }
    }
    (domains, problems)
}

/// The outcome that asks for the most: a `fail` with the strictest
/// disposition, then `temperror`, `permerror`, `pass`, `none`.
fn strictest(outcomes: &[DmarcOutcome]) -> DmarcOutcome {
    let rank = |o: &DmarcOutcome| -> u8 {
        match o.result {
            DmarcResult::Fail => 10 + o.disposition as u8,
            DmarcResult::TempError => 4,
            DmarcResult::PermError => 3,
            DmarcResult::Pass => 2,
            DmarcResult::None => 1,
        }
    };
    outcomes
        .iter()
        .max_by_key(|o| rank(o))
        .cloned()
        .unwrap_or_else(|| DmarcOutcome::bare(DmarcResult::None, "", "no Author Domain"))
}

/// The A-R `dmarc=` entry (RFC 8601 §2.7.1, RFC 9989 §9.1) in OpenDMARC's
/// style: `dmarc=fail (p=reject dis=quarantine) header.from=example.com`.
/// `applied` is the disposition local policy applied (`dis=`) and
/// `override_reason` why it differs from the requested one; for errors
/// and failures the comment ends with the reason.
pub fn authres_entry(
    o: &DmarcOutcome,
    applied: Disposition,
    override_reason: Option<&str>,
) -> Entry {
    let mut comment = Vec::new();
    if let Some(p) = o.policy {
        comment.push(format!("p={}", Disposition::from(p).as_str()));
        comment.push(format!("dis={}", applied.as_str()));
    }
    if let Some(why) = override_reason {
        comment.push(why.to_string());
    }
    if o.result != DmarcResult::Pass && !o.reason.is_empty() {
        comment.push(o.reason.clone());
    }
    let mut props = Vec::new();
    if !o.domain.is_empty() {
        props.push(("header.from".to_string(), o.domain.clone()));
    }
    Entry {
        method: "dmarc".into(),
        result: o.result.as_str().into(),
        comment: (!comment.is_empty()).then(|| comment.join(" ")),
        props,
        trailing: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(values: &[&str]) -> Vec<Header> {
        values
            .iter()
            .map(|v| Header::new("From", v, b"\r\n"))
            .collect()
    }

    #[test]
    fn author_domains_cover_the_from_shapes_of_section_5_3_1() {
        for (values, want, problems) in [
            (vec!["a@Example.COM"], vec!["example.com"], 0),
            (vec!["a@x.org, b@X.org"], vec!["x.org"], 0),
            (vec!["a@x.org, b@y.org"], vec!["x.org", "y.org"], 0),
            (vec!["a@x.org", "b@x.org"], vec!["x.org"], 1),
            (vec!["undisclosed-recipients:;"], vec![], 1),
            (vec![""], vec![], 1),
            (vec!["team: a@x.org, b@x.org;"], vec!["x.org"], 0),
            (vec!["nodomain"], vec![], 1),
            (
                vec!["<joe@bücher.example>"],
                vec!["xn--bcher-kva.example"],
                0,
            ),
            (vec![], vec![], 1),
        ] {
            let (domains, found) = author_domains(&from(&values));
            assert_eq!(domains, want, "{values:?}");
            assert_eq!(found.len(), problems, "{values:?} {found:?}");
        }
    }

    #[test]
    fn authres_entry_prints_policy_applied_disposition_and_reason() {
        let mut o = DmarcOutcome::bare(DmarcResult::Fail, "example.com", "no aligned identifier");
        o.policy = Some(Policy::Reject);
        o.disposition = Disposition::Reject;
        let none = DmarcOutcome::bare(DmarcResult::None, "example.com", "no policy record");
        let temp = DmarcOutcome::bare(DmarcResult::TempError, "example.com", "SERVFAIL");
        let mut pass = DmarcOutcome::bare(DmarcResult::Pass, "example.com", "aligned");
        pass.policy = Some(Policy::None);
        let q = Disposition::Quarantine;
        let local = Some("local policy: quarantine instead of reject");
        for (o, applied, why, want) in [
            (
                &o,
                Disposition::Reject,
                None,
                "dmarc=fail (p=reject dis=reject no aligned identifier) header.from=example.com",
            ),
            (
                &o,
                q,
                local,
                "dmarc=fail (p=reject dis=quarantine local policy: quarantine instead of reject no aligned identifier) header.from=example.com",
            ),
            (
                &none,
                Disposition::None,
                None,
                "dmarc=none (no policy record) header.from=example.com",
            ),
            (
                &temp,
                Disposition::None,
                None,
                "dmarc=temperror (SERVFAIL) header.from=example.com",
            ),
            (
                &pass,
                Disposition::None,
                None,
                "dmarc=pass (p=none dis=none) header.from=example.com",
            ),
        ] {
            let e = authres_entry(o, applied, why);
            assert_eq!(
                crate::authres::build("x", &[e]),
                format!(" x;\r\n\t{want}"),
                "{want}"
            );
        }
    }
}

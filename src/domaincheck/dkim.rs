//! DKIM findings: the key record of each selector (RFC 6376 §3.6.1,
//! RFC 8463, RFC 8301), diagnosed by [`crate::keycheck::check_published`].
//!
//! Owns: which selectors are looked up and how a guessed one that is absent
//! is reported. Must not: judge a key record itself (that is keycheck's).

use super::{Area, COMMON_SELECTORS, Finding, Level, Selectors, add};
use crate::dns::{DnsError, Resolver};
use crate::keycheck::check_published;

const A: Area = Area::Dkim;

pub(super) async fn check<R: Resolver>(
    r: &R,
    domain: &str,
    selectors: &Selectors,
    out: &mut Vec<Finding>,
) {
    let (names, source): (Vec<&str>, String) = match selectors {
        Selectors::Given(s) => (
            s.iter().map(String::as_str).collect(),
            "given with --selector".into(),
        ),
        Selectors::Configured(s) => (
            s.iter().map(String::as_str).collect(),
            "configured in [[dkim.keys]]".into(),
        ),
        Selectors::Common => (COMMON_SELECTORS.to_vec(), "common selector names".into()),
    };
    let guessing = *selectors == Selectors::Common;
    let mut found = Vec::new();
    for selector in &names {
        let name = format!("{selector}._domainkey.{domain}");
        let answer = r.txt(&name).await;
        if guessing && matches!(answer, Err(DnsError::NxDomain | DnsError::NoData)) {
            continue;
        }
        found.push(*selector);
        for f in check_published(domain, selector, &answer, !guessing).findings {
            add(out, A, f.level, format!("{name}: {}", f.message), f.fix);
        }
    }
    let list = names.join(", ");
    if guessing && found.is_empty() {
        add(
            out,
            A,
            Level::Warning,
            format!(
                "no DKIM key found at the common selectors ({list}) of {domain}; name yours with --selector (or a configuration with [[dkim.keys]])."
            ),
            Some(format!(
                "generate a key (authgate keygen --domain {domain} --selector NAME), publish the record it prints, and sign with it."
            )),
        );
    } else {
        add(
            out,
            A,
            Level::Ok,
            format!("selectors checked ({source}): {list}."),
            None,
        );
    }
}

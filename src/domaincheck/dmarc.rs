//! DMARC findings: the record at `_dmarc.DOMAIN` or the one inherited by
//! the RFC 9989 §4.10 tree walk, its policy strength (`p`, `sp`, `np`,
//! `t`, `psd`, the retired `pct`), its report destinations (`rua`, `ruf`)
//! and, area `report-auth`, whether each destination outside the domain's
//! organisation agrees to receive its reports (RFC 9990 §3).
//!
//! Owns: the DMARC and report-auth findings and their fixed records. Must
//! not: parse the record or walk the tree itself ([`crate::dmarc`] does),
//! or send reports.

use super::{Area, Finding, Level, add, txt_line, unchecked};
use crate::dmarc::orgdomain::{Walker, psl_org_domain};
use crate::dmarc::record::{DmarcRecord, Policy, Psd, is_dmarc_record};
use crate::dns::{DnsError, Resolver};
use crate::report::send::authorised;
use crate::report::uri::parse_uris;

const A: Area = Area::Dmarc;

/// The DMARC record texts at `_dmarc.<domain>`.
async fn fetch<R: Resolver>(r: &R, domain: &str) -> Result<Vec<String>, String> {
    match r.txt(&format!("_dmarc.{domain}")).await {
        Ok(t) => Ok(t
            .iter()
            .filter(|t| is_dmarc_record(t))
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()),
        Err(DnsError::NxDomain | DnsError::NoData) => Ok(Vec::new()),
        Err(DnsError::Temporary(why)) => Err(why),
    }
}

pub(super) async fn check<R: Resolver>(r: &R, domain: &str, out: &mut Vec<Finding>) {
    let name = format!("_dmarc.{domain}");
    let starter = txt_line(
        &name,
        &format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"),
    );
    let own = match fetch(r, domain).await {
        Ok(v) => v,
        Err(why) => return unchecked(out, A, &name, &why),
    };
    match own.as_slice() {
        [one] => {
            let rec = DmarcRecord::parse(one.as_bytes()).unwrap_or_default();
            add(
                out,
                A,
                Level::Ok,
                format!("DMARC record at {name}: \"{one}\"."),
                None,
            );
            judge(r, domain, domain, one, &rec, out).await;
        }
        [] => inherited(r, domain, &starter, out).await,
        several => add(
            out,
            A,
            Level::Error,
            format!(
                "{} DMARC records at {name}: receivers discard them all (RFC 9989 §4.10); keep one.",
                several.len()
            ),
            Some(txt_line(&name, &several[0])),
        ),
    }
}

/// No record of its own: the tree walk may find the organisation's.
async fn inherited<R: Resolver>(r: &R, domain: &str, starter: &str, out: &mut Vec<Finding>) {
    let mut walker = Walker::new(r);
    let found = match walker.discover_policy(domain).await {
        Ok(f) => f,
        Err(e) => return unchecked(out, A, &format!("_dmarc.{}", e.domain), &e.reason),
    };
    let Some(d) = found else {
        return add(
            out,
            A,
            Level::Error,
            format!(
                "no DMARC record at _dmarc.{domain} nor above it: receivers apply no DMARC policy, and anyone can send as {domain}. Start with p=none and reports, then tighten."
            ),
            Some(starter.to_owned()),
        );
    };
    let raw = match fetch(r, &d.domain).await {
        Ok(v) => v.into_iter().next().unwrap_or_default(),
        Err(why) => return unchecked(out, A, &format!("_dmarc.{}", d.domain), &why),
    };
    add(
        out,
        A,
        Level::Ok,
        format!(
            "no DMARC record at _dmarc.{domain}; the record of {org} applies (found by the RFC 9989 tree walk at _dmarc.{org}): \"{raw}\".",
            org = d.domain
        ),
        None,
    );
    judge(r, domain, &d.domain, &raw, &d.record, out).await;
}

/// Judges the record found at `_dmarc.<at>` as it applies to `domain`.
async fn judge<R: Resolver>(
    r: &R,
    domain: &str,
    at: &str,
    raw: &str,
    rec: &DmarcRecord,
    out: &mut Vec<Finding>,
) {
    let name = format!("_dmarc.{at}");
    let fix = |tag: &str, value: Option<&str>| Some(txt_line(&name, &set_tag(raw, tag, value)));
    let own = domain == at;
    let (tag, effective) = if own {
        ("p", rec.policy)
    } else {
        ("sp", rec.subdomain_policy.or(rec.policy))
    };
    policy(rec, tag, effective, &fix, out);
    if rec.testing {
        add(
            out,
            A,
            Level::Warning,
            "t=y (testing mode): receivers apply a policy one level weaker than the one published (RFC 9989 §4.7).",
            fix("t", None),
        );
    }
    weaker(rec, &fix, out);
    extras(at, rec, &fix, out);
    reports(r, at, rec, &fix, out).await;
}

fn policy(
    rec: &DmarcRecord,
    tag: &str,
    effective: Option<Policy>,
    fix: &dyn Fn(&str, Option<&str>) -> Option<String>,
    out: &mut Vec<Finding>,
) {
    let invalid = rec.invalid_policy_tags.iter().any(|t| t == "p");
    match effective {
        None if invalid => add(
            out,
            A,
            Level::Error,
            "p= has an invalid value: receivers treat the record as p=none when rua= is usable, else ignore it (RFC 9989 §4.10.1). Use none, quarantine or reject.",
            fix("p", Some("none")),
        ),
        None if rec.has_valid_rua() => add(
            out,
            A,
            Level::Warning,
            "the record has no p= tag, so it means p=none: monitoring only.",
            fix("p", Some("none")),
        ),
        None => add(
            out,
            A,
            Level::Error,
            "the record has no p= tag and no valid rua=: receivers apply no DMARC processing (RFC 9989 §4.10.1). Add p=none at least.",
            fix("p", Some("none")),
        ),
        Some(Policy::None) => add(
            out,
            A,
            Level::Warning,
            format!(
                "{tag}=none: monitoring only; mail failing DMARC is delivered as usual. Once the reports show your own mail passes, move to quarantine, then reject."
            ),
            fix(tag, Some("quarantine")),
        ),
        Some(Policy::Quarantine) => add(
            out,
            A,
            Level::Ok,
            format!(
                "{tag}=quarantine: mail failing DMARC goes to spam; reject is the strongest policy."
            ),
            None,
        ),
        Some(Policy::Reject) => add(
            out,
            A,
            Level::Ok,
            format!("{tag}=reject: mail failing DMARC is refused."),
            None,
        ),
    }
}

/// `sp`/`np` weaker than `p` (a note), invalid ones (a warning).
fn weaker(
    rec: &DmarcRecord,
    fix: &dyn Fn(&str, Option<&str>) -> Option<String>,
    out: &mut Vec<Finding>,
) {
    let p = rec.policy.unwrap_or(Policy::None);
    for (tag, value, what) in [
        ("sp", rec.subdomain_policy, "existing subdomains"),
        ("np", rec.np, "non-existent subdomains (RFC 9989)"),
    ] {
        if rec.invalid_policy_tags.iter().any(|t| t == tag) {
            add(
                out,
                A,
                Level::Warning,
                format!(
                    "{tag}= has an invalid value and is ignored; use none, quarantine or reject."
                ),
                fix(tag, None),
            );
        } else if let Some(v) = value.filter(|v| *v < p) {
            add(
                out,
                A,
                Level::Ok,
                format!("note: {tag}={v} is weaker than p={p}: {what} get the weaker policy."),
                None,
            );
        }
    }
}

/// `psd=`, the retired `pct=`, and ignored pieces.
fn extras(
    at: &str,
    rec: &DmarcRecord,
    fix: &dyn Fn(&str, Option<&str>) -> Option<String>,
    out: &mut Vec<Finding>,
) {
    match rec.psd {
        Psd::Yes => add(
            out,
            A,
            Level::Warning,
            format!(
                "psd=y declares {at} a public suffix domain (RFC 9989 §4.7): only registries operating a public suffix should publish it."
            ),
            fix("psd", None),
        ),
        Psd::No => add(
            out,
            A,
            Level::Ok,
            format!("psd=n: {at} declares itself an organizational domain."),
            None,
        ),
        Psd::Unknown => {}
    }
    if rec.pct.is_some_and(|p| p < 100) {
        add(
            out,
            A,
            Level::Warning,
            "pct= below 100 is no longer part of DMARC (RFC 9989 dropped it); receivers following it apply the policy to all mail. Use t=y to soften the policy instead.",
            fix("pct", None),
        );
    }
    if !rec.ignored.is_empty() {
        add(
            out,
            A,
            Level::Warning,
            format!(
                "receivers ignore parts of the record: {}.",
                rec.ignored.join("; ")
            ),
            None,
        );
    }
}

/// `rua`/`ruf` destinations and their authorisation (RFC 9990 §3).
async fn reports<R: Resolver>(
    r: &R,
    at: &str,
    rec: &DmarcRecord,
    fix: &dyn Fn(&str, Option<&str>) -> Option<String>,
    out: &mut Vec<Finding>,
) {
    let Some(rua) = &rec.rua else {
        let to = format!("mailto:dmarc-reports@{at}");
        return add(
            out,
            A,
            Level::Warning,
            "no rua=: nobody sends you aggregate reports, so you cannot see who sends as your domain.",
            fix("rua", Some(&to)),
        );
    };
    for (tag, list) in [("rua", Some(rua)), ("ruf", rec.ruf.as_ref())] {
        let Some(list) = list else { continue };
        let uris = parse_uris(list);
        if uris.is_empty() {
            add(
                out,
                A,
                Level::Warning,
                format!("{tag}={list} holds no usable mailto: address."),
                None,
            );
        }
        for u in uris {
            if psl_org_domain(at) == psl_org_domain(&u.domain) {
                continue;
            }
            destination(r, at, tag, &u.address, &u.domain, out).await;
        }
    }
}

async fn destination<R: Resolver>(
    r: &R,
    at: &str,
    tag: &str,
    address: &str,
    dest: &str,
    out: &mut Vec<Finding>,
) {
    const RA: Area = Area::ReportAuth;
    let name = format!("{at}._report._dmarc.{dest}");
    match authorised(r, at, dest).await {
        Ok(true) => add(
            out,
            RA,
            Level::Ok,
            format!("{tag} destination {address}: {dest} accepts reports for {at} ({name})."),
            None,
        ),
        Ok(false) => add(
            out,
            RA,
            Level::Error,
            format!(
                "{tag} destination {address} is outside {at}'s organisation and {dest} does not accept its reports (no v=DMARC1 at {name}): receivers send it nothing (RFC 9990 §3). The owner of {dest} must publish the record."
            ),
            Some(txt_line(&name, "v=DMARC1")),
        ),
        Err(e) => unchecked(out, RA, &name, &e.to_string()),
    }
}

/// The tag list `raw` with `tag` set to `value` (appended when absent) or
/// dropped (`None`).
fn set_tag(raw: &str, tag: &str, value: Option<&str>) -> String {
    let mut tags: Vec<(String, String)> = raw
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let at = tags.iter().position(|(n, _)| n.eq_ignore_ascii_case(tag));
    match (at, value) {
        (Some(i), None) => {
            tags.remove(i);
        }
        (Some(i), Some(v)) => tags[i].1 = v.to_owned(),
        (None, Some(v)) => tags.push((tag.to_owned(), v.to_owned())),
        (None, None) => {}
    }
    tags.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

//! Sender Policy Framework (RFC 7208).
//!
//! Owns: the public SPF API: [`check_host`] (§4), the MAIL FROM and HELO
//! wrappers ([`verify_mail_from`], [`verify_helo`], §2.3, §2.4), the
//! `Received-SPF` writer (§9.1) and the Authentication-Results entry
//! (RFC 8601 §2.7.2). Parsing lives in [`record`] and [`macros`], evaluation
//! in [`eval`]. Must not: read the clock, log, or reach DNS other than
//! through [`Resolver`]; the caller bounds wall-clock time (§4.6.4
//! recommends 20 s) with a timeout around these futures.

pub mod eval;
pub mod macros;
pub mod record;

use std::net::IpAddr;

pub use eval::{SpfOptions, SpfOutcome, SpfResult, check_host};

use crate::authres::Entry;
use crate::dns::Resolver;

/// Which identity was checked (§2.3, §2.4; `identity=` in §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The MAIL FROM (RFC 5321 reverse-path) identity.
    MailFrom,
    /// The HELO/EHLO identity.
    Helo,
}

impl Identity {
    /// `mailfrom` or `helo`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MailFrom => "mailfrom",
            Self::Helo => "helo",
        }
    }
}

/// §2.4: checks the MAIL FROM identity. A null reverse-path (`""` or `<>`)
/// is checked as `postmaster@<helo>` (§2.4); an address without a
/// local-part as `postmaster@<domain>` (§4.3).
pub async fn verify_mail_from<R: Resolver>(
    resolver: &R,
    ip: IpAddr,
    mail_from: &str,
    helo: &str,
    opts: &SpfOptions,
) -> SpfOutcome {
    let path = mail_from
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    if path.is_empty() {
        return verify_helo(resolver, ip, helo, opts).await;
    }
    let (local, domain) = path.rsplit_once('@').unwrap_or(("", path));
    let local = if local.is_empty() {
        "postmaster"
    } else {
        local
    };
    let sender = format!("{local}@{domain}");
    check_host(resolver, ip, domain, &sender, helo, opts).await
}

/// §2.3: checks the HELO identity as `postmaster@<helo>`.
pub async fn verify_helo<R: Resolver>(
    resolver: &R,
    ip: IpAddr,
    helo: &str,
    opts: &SpfOptions,
) -> SpfOutcome {
    let sender = format!("postmaster@{helo}");
    check_host(resolver, ip, helo, &sender, helo, opts).await
}

/// The `Received-SPF` header field (§9.1), without the final CRLF:
///
/// ```text
/// Received-SPF: pass (mx.example.org: matched ip4:192.0.2.0/24)
///  client-ip=192.0.2.1; envelope-from="a@example.com"; helo=mail.example.com;
///  identity=mailfrom; receiver=mx.example.org; mechanism="ip4:192.0.2.0/24";
/// ```
///
/// (written on one line). `problem=` replaces `mechanism=` for the error
/// results. Values are dot-atoms where possible, else quoted-strings.
pub fn received_spf_header(
    outcome: &SpfOutcome,
    identity: Identity,
    ip: IpAddr,
    helo: &str,
    envelope_from: &str,
    receiver: &str,
) -> String {
    let mut out = format!(
        "Received-SPF: {} ({}: {}) client-ip={}; envelope-from={}; helo={}; identity={}; receiver={};",
        outcome.result,
        comment_safe(receiver),
        comment_safe(&outcome.reason),
        ip,
        kv_value(envelope_from),
        kv_value(helo),
        identity.as_str(),
        kv_value(receiver),
    );
    let extra = match outcome.result {
        SpfResult::TempError | SpfResult::PermError => Some(("problem", &outcome.reason)),
        _ => outcome.mechanism.as_ref().map(|m| ("mechanism", m)),
    };
    if let Some((key, value)) = extra {
        out.push_str(&format!(" {key}={};", kv_value(value)));
    }
    out
}

/// The Authentication-Results entry (RFC 8601 §2.7.2): `spf=<result>` with
/// `smtp.mailfrom=<envelope_from>` or `smtp.helo=<helo>`.
pub fn authres_entry(
    outcome: &SpfOutcome,
    identity: Identity,
    envelope_from: &str,
    helo: &str,
) -> Entry {
    let prop = match identity {
        Identity::MailFrom if !envelope_from.is_empty() => ("smtp.mailfrom", envelope_from),
        Identity::MailFrom => ("smtp.mailfrom", helo),
        Identity::Helo => ("smtp.helo", helo),
    };
    Entry {
        method: "spf".into(),
        result: outcome.result.as_str().into(),
        comment: (!outcome.reason.is_empty()).then(|| outcome.reason.clone()),
        props: vec![(prop.0.into(), prop.1.into())],
        trailing: None,
    }
}

/// A `dot-atom` (RFC 5322 §3.2.3) as is, anything else quoted.
fn kv_value(v: &str) -> String {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !v.is_empty() && v.split('.').all(|p| !p.is_empty() && p.chars().all(atext));
    if dot_atom {
        return v.to_owned();
    }
    let mut q = String::from("\"");
    for c in v.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Comment text: no control characters, parentheses and backslashes
/// escaped (RFC 5322 §3.2.2 ctext).
fn comment_safe(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if matches!(c, '(' | ')' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(result: SpfResult, mech: Option<&str>, reason: &str) -> SpfOutcome {
        SpfOutcome {
            result,
            explanation: None,
            reason: reason.into(),
            mechanism: mech.map(Into::into),
        }
    }

    #[test]
    fn received_spf_carries_section_9_1_keys() {
        let o = outcome(SpfResult::Pass, Some("ip4:192.0.2.0/24"), "matched (ip4)");
        let h = received_spf_header(
            &o,
            Identity::MailFrom,
            "192.0.2.1".parse().unwrap(),
            "mail.example.com",
            "a@example.com",
            "mx.example.org",
        );
        assert_eq!(
            h,
            "Received-SPF: pass (mx.example.org: matched \\(ip4\\)) client-ip=192.0.2.1; \
             envelope-from=\"a@example.com\"; helo=mail.example.com; identity=mailfrom; \
             receiver=mx.example.org; mechanism=\"ip4:192.0.2.0/24\";"
        );
    }

    #[test]
    fn received_spf_errors_name_the_problem() {
        let o = outcome(SpfResult::PermError, None, "two records");
        let h = received_spf_header(
            &o,
            Identity::Helo,
            "2001:db8::1".parse().unwrap(),
            "h.example",
            "",
            "mx",
        );
        assert!(h.starts_with("Received-SPF: permerror (mx: two records) client-ip=2001:db8::1;"));
        assert!(h.contains("envelope-from=\"\";"));
        assert!(h.contains("identity=helo;"));
        assert!(h.ends_with("problem=\"two records\";"));
    }

    #[test]
    fn authres_entry_uses_smtp_properties() {
        let o = outcome(SpfResult::Fail, Some("-all"), "r");
        let e = authres_entry(&o, Identity::MailFrom, "a@example.com", "h.example");
        assert_eq!((e.method.as_str(), e.result.as_str()), ("spf", "fail"));
        assert_eq!(
            e.props,
            vec![("smtp.mailfrom".into(), "a@example.com".into())]
        );
        let e = authres_entry(&o, Identity::Helo, "", "h.example");
        assert_eq!(e.props, vec![("smtp.helo".into(), "h.example".into())]);
    }
}

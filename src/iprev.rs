//! iprev (RFC 8601 §2.7.3, §3): does the client's reverse DNS map back to it?
//!
//! Owns: the PTR lookup of the client address, the forward A/AAAA lookups of
//! at most [`MAX_NAMES`] PTR names, and the mapping of DNS outcomes to the
//! five iprev results. Must not: decide policy; callers choose what a `fail`
//! means.

use std::net::IpAddr;

use crate::dns::{DnsError, Resolver};

/// PTR names checked per client address (RFC 7208 §5.5 uses the same bound).
pub const MAX_NAMES: usize = 10;

/// An iprev result (RFC 8601 §2.7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IprevResult {
    /// A PTR name resolves back to the client address.
    Pass,
    /// Reverse and forward lookups answered, but nothing maps back.
    Fail,
    /// A transient DNS error kept the check from completing.
    TempError,
    /// No PTR data is published for the address (NXDOMAIN or NODATA).
    PermError,
}

impl IprevResult {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            IprevResult::Pass => "pass",
            IprevResult::Fail => "fail",
            IprevResult::TempError => "temperror",
            IprevResult::PermError => "permerror",
        }
    }
}

/// The outcome for one client address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IprevOutcome {
    /// The result.
    pub result: IprevResult,
    /// The client address (`policy.iprev`).
    pub ip: IpAddr,
    /// The PTR name that mapped back (pass) or the first one seen.
    pub name: Option<String>,
    /// Why, for logs and the A-R comment on non-pass results.
    pub reason: String,
}

/// Runs the iprev check for `ip`.
pub async fn check<R: Resolver>(resolver: &R, ip: IpAddr) -> IprevOutcome {
    let ip = canonical(ip);
    let outcome = |result, name: Option<String>, reason: String| IprevOutcome {
        result,
        ip,
        name,
        reason,
    };
    let names = match resolver.ptr(ip).await {
        Ok(names) if !names.is_empty() => names,
        Ok(_) | Err(DnsError::NxDomain) | Err(DnsError::NoData) => {
            return outcome(IprevResult::PermError, None, "no PTR record".into());
        }
        Err(DnsError::Temporary(e)) => {
            return outcome(
                IprevResult::TempError,
                None,
                format!("PTR lookup failed: {e}"),
            );
        }
    };
    let mut temporary = None;
    for name in names.iter().take(MAX_NAMES) {
        match forward_matches(resolver, name, ip).await {
            Ok(true) => return outcome(IprevResult::Pass, Some(name.clone()), String::new()),
            Ok(false) => {}
            Err(e) => temporary = temporary.or(Some(e)),
        }
    }
    let first = names.first().cloned();
    match temporary {
        Some(e) => outcome(
            IprevResult::TempError,
            first,
            format!("forward lookup failed: {e}"),
        ),
        None => outcome(
            IprevResult::Fail,
            first,
            "PTR name does not resolve back to the address".into(),
        ),
    }
}

/// IPv4-mapped IPv6 addresses are checked as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

async fn forward_matches<R: Resolver>(
    resolver: &R,
    name: &str,
    ip: IpAddr,
) -> Result<bool, String> {
    let found = match ip {
        IpAddr::V4(v4) => resolver.a(name).await.map(|list| list.contains(&v4)),
        IpAddr::V6(v6) => resolver.aaaa(name).await.map(|list| list.contains(&v6)),
    };
    match found {
        Ok(hit) => Ok(hit),
        Err(DnsError::NxDomain) | Err(DnsError::NoData) => Ok(false),
        Err(DnsError::Temporary(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::ZoneResolver;

    const ZONE: &str = r#"
$ORIGIN example.
good        300 IN A    192.0.2.1
good        300 IN A    192.0.2.4
good        300 IN AAAA 2001:db8::1
other       300 IN A    192.0.2.99
1.2.0.192.in-addr.arpa.  300 IN PTR good.example.
2.2.0.192.in-addr.arpa.  300 IN PTR other.example.
3.2.0.192.in-addr.arpa.  300 IN PTR broken.example.
4.2.0.192.in-addr.arpa.  300 IN PTR other.example.
4.2.0.192.in-addr.arpa.  300 IN PTR good.example.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR good.example.
;@servfail 5.2.0.192.in-addr.arpa.
6.2.0.192.in-addr.arpa.  300 IN PTR flaky.example.
;@servfail flaky.example.
"#;

    #[tokio::test]
    async fn maps_dns_outcomes_to_rfc8601_results() {
        let dns = ZoneResolver::parse(ZONE, None).unwrap();
        for (ip, want, name) in [
            ("192.0.2.1", IprevResult::Pass, Some("good.example")),
            ("::ffff:192.0.2.1", IprevResult::Pass, Some("good.example")),
            ("2001:db8::1", IprevResult::Pass, Some("good.example")),
            ("192.0.2.2", IprevResult::Fail, Some("other.example")),
            ("192.0.2.3", IprevResult::Fail, Some("broken.example")),
            ("192.0.2.4", IprevResult::Pass, Some("good.example")),
            ("192.0.2.5", IprevResult::TempError, None),
            ("192.0.2.6", IprevResult::TempError, Some("flaky.example")),
            ("192.0.2.7", IprevResult::PermError, None),
        ] {
            let out = check(&dns, ip.parse().unwrap()).await;
            assert_eq!(
                (out.result, out.name.as_deref()),
                (want, name),
                "{ip}: {out:?}"
            );
        }
    }
}

//! Domain check (`authgate check DOMAIN`): what a domain publishes in DNS
//! for mail authentication, judged the way receivers judge it, with the
//! record line that fixes each problem.
//!
//! Owns: the [`Finding`]s per [`Area`] — SPF (`spf`: presence, syntax,
//! RFC 7208 §4.6.4 lookup and void-lookup limits, `all`, `ptr`), DKIM
//! (`dkim`: the records of the selectors handed in, diagnosed by
//! [`crate::keycheck::check_published`]), DMARC (`dmarc`: discovery by
//! the RFC 9989 tree walk, policy strength, report destinations and their
//! RFC 9990 §3 authorisation), MX and reverse DNS (`mx`: null MX of
//! RFC 7505, addresses, FCrDNS), MTA-STS and TLS-RPT (`sts`: the TXT
//! records of RFC 8461 §3.1 and RFC 8460 §3).
//! Must not: read files or the configuration (the caller passes the
//! selectors), print, or fetch anything but DNS through [`Resolver`]; the
//! MTA-STS policy behind HTTPS is not fetched.

mod dkim;
mod dmarc;
mod mx;
mod spf;
mod sts;

use crate::dns::Resolver;
pub use crate::keycheck::Level;

/// Which part of the domain's setup a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    /// The SPF record (RFC 7208).
    Spf,
    /// DKIM key records (RFC 6376 §3.6).
    Dkim,
    /// The DMARC record (RFC 9989).
    Dmarc,
    /// Authorisation of external report destinations (RFC 9990 §3).
    ReportAuth,
    /// MX records and their addresses (RFC 5321 §5.1, RFC 7505).
    Mx,
    /// Forward-confirmed reverse DNS of the MX addresses.
    Rdns,
    /// The `_mta-sts` TXT record (RFC 8461 §3.1).
    MtaSts,
    /// The `_smtp._tls` TXT record (RFC 8460 §3).
    TlsRpt,
}

impl Area {
    /// Every area, in the order findings are printed.
    pub const ALL: [Area; 8] = [
        Area::Spf,
        Area::Dkim,
        Area::Dmarc,
        Area::ReportAuth,
        Area::Mx,
        Area::Rdns,
        Area::MtaSts,
        Area::TlsRpt,
    ];

    /// `spf`, `dkim`, `dmarc`, `report-auth`, `mx`, `rdns`, `mta-sts`, `tls-rpt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Spf => "spf",
            Area::Dkim => "dkim",
            Area::Dmarc => "dmarc",
            Area::ReportAuth => "report-auth",
            Area::Mx => "mx",
            Area::Rdns => "rdns",
            Area::MtaSts => "mta-sts",
            Area::TlsRpt => "tls-rpt",
        }
    }
}

/// One thing found about the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it is about.
    pub area: Area,
    /// How bad it is.
    pub level: Level,
    /// A plain sentence.
    pub message: String,
    /// The record line (or, where no record can be given, the step) that
    /// fixes it; `None` when there is nothing to fix.
    pub fix: Option<String>,
}

/// The DKIM selectors to look at, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selectors {
    /// Named with `--selector`.
    Given(Vec<String>),
    /// From `[[dkim.keys]]` of the configuration for this domain.
    Configured(Vec<String>),
    /// None known: try [`COMMON_SELECTORS`].
    Common,
}

/// Selectors tried when none is given or configured: the defaults of
/// common software and providers (OpenDKIM, Microsoft 365, Google, Mailchimp…).
pub const COMMON_SELECTORS: [&str; 9] = [
    "default",
    "selector1",
    "selector2",
    "google",
    "k1",
    "mail",
    "dkim",
    "s1",
    "s2",
];

/// Checks everything for `domain`; findings grouped by [`Area::ALL`]
/// order, in the order found within an area.
pub async fn check_domain<R: Resolver>(
    resolver: &R,
    domain: &str,
    selectors: &Selectors,
) -> Vec<Finding> {
    let domain = crate::dns::normalize_name(domain.trim());
    let mut out = Vec::new();
    spf::check(resolver, &domain, &mut out).await;
    dkim::check(resolver, &domain, selectors, &mut out).await;
    dmarc::check(resolver, &domain, &mut out).await;
    mx::check(resolver, &domain, &mut out).await;
    sts::check(resolver, &domain, &mut out).await;
    // Stable sort: areas in order, findings within an area as found.
    out.sort_by_key(|f| f.area);
    out
}

/// The worst level of `findings` (ok when there are none).
pub fn worst(findings: &[Finding]) -> Level {
    findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok)
}

fn add(
    out: &mut Vec<Finding>,
    area: Area,
    level: Level,
    message: impl Into<String>,
    fix: Option<String>,
) {
    out.push(Finding {
        area,
        level,
        message: message.into(),
        fix,
    });
}

/// The finding for a lookup that failed temporarily.
fn unchecked(out: &mut Vec<Finding>, area: Area, name: &str, why: &str) {
    add(
        out,
        area,
        Level::Error,
        format!("could not check: the DNS lookup of {name} failed ({why})."),
        Some(
            "retry later; if it persists, check the resolver (--dns-server) and the domain's name servers."
                .into(),
        ),
    );
}

/// A TXT zone-file line for `name` (without trailing dot) and `value`.
fn txt_line(name: &str, value: &str) -> String {
    crate::keygen::zone_line(&format!("{name}."), value)
}

/// The TXT records at `name` that start with `prefix` (case-insensitive),
/// as text; `Err` with the reason on a temporary failure.
async fn txt_starting<R: Resolver>(
    resolver: &R,
    name: &str,
    prefix: &str,
) -> Result<Vec<String>, String> {
    match resolver.txt(name).await {
        Ok(records) => Ok(records
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .filter(|t| {
                t.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            })
            .collect()),
        Err(crate::dns::DnsError::NxDomain | crate::dns::DnsError::NoData) => Ok(Vec::new()),
        Err(crate::dns::DnsError::Temporary(why)) => Err(why),
    }
}

#[cfg(test)]
mod tests;

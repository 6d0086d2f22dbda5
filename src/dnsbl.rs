//! DNS blocklists (RFC 5782): is the client address listed?
//!
//! Owns: building the query name (reversed IPv4 octets or IPv6 nibbles under
//! the list's zone), telling "listed" from "not listed" from "not checked"
//! (resolver refused, unexpected answers, timeouts), and the per-zone action
//! from configuration. Must not: apply the action or log what was not
//! checked (the caller does both), spawn tasks (the zones are asked
//! concurrently inside the caller's task), or see the configuration.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::dns::{DnsError, Resolver};

/// What to do when a zone lists the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsblAction {
    /// Record it in a header (and the log); deliver.
    Header,
    /// Refuse the message (exit status in pipe mode, 5xx in the proxy).
    Reject,
    /// Look it up and log it only.
    Ignore,
}

/// One `[[dnsbl.zones]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblZone {
    /// The list's zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// What a listing means here.
    pub action: DnsblAction,
}

/// The answer of one zone for one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DnsblStatus {
    /// Listed with these return codes (127.0.0.0/8).
    Listed {
        /// The A records returned, e.g. `127.0.0.2`.
        codes: Vec<Ipv4Addr>,
    },
    /// NXDOMAIN or NODATA: not listed.
    NotListed,
    /// No usable answer: the caller logs the reason as a warning; never treated as listed.
    NotChecked {
        /// Why (resolver refused, timeout, unexpected answer).
        reason: String,
    },
}

/// One zone's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsblOutcome {
    /// The zone asked.
    pub zone: String,
    /// The configured action.
    pub action: DnsblAction,
    /// What it answered.
    #[serde(flatten)]
    pub status: DnsblStatus,
}

impl DnsblOutcome {
    /// Whether the zone lists the client.
    pub fn listed(&self) -> bool {
        matches!(self.status, DnsblStatus::Listed { .. })
    }
}

/// The query name for `ip` in `zone` (RFC 5782 §2.1, §2.4).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => query_name(IpAddr::V4(v4), zone),
            None => {
                let mut name = String::with_capacity(64 + zone.len());
                for byte in v6.octets().iter().rev() {
                    name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
                }
                name.push_str(zone);
                name
            }
        },
    }
}

/// Classifies the A records a list returned. `127.255.255.0/24` is the range
/// lists use for "your query was refused" (Spamhaus: public resolver, rate
/// limit, typing error); answers outside 127/8 come from resolvers that rewrite
/// NXDOMAIN. Neither is a listing.
pub fn classify(answer: Result<Vec<Ipv4Addr>, DnsError>) -> DnsblStatus {
    let codes = match answer {
        Ok(codes) => codes,
        Err(DnsError::NxDomain) | Err(DnsError::NoData) => return DnsblStatus::NotListed,
        Err(DnsError::Temporary(e)) => return DnsblStatus::NotChecked { reason: e },
    };
    if let Some(refused) = codes.iter().find(|c| c.octets()[..3] == [127, 255, 255]) {
        return DnsblStatus::NotChecked {
            reason: format!("list refused the query ({refused}); use a local resolver"),
        };
    }
    if let Some(odd) = codes.iter().find(|c| c.octets()[0] != 127) {
        return DnsblStatus::NotChecked {
            reason: format!("unexpected answer {odd} (NXDOMAIN rewriting resolver?)"),
        };
    }
    if codes.is_empty() {
        DnsblStatus::NotListed
    } else {
        DnsblStatus::Listed { codes }
    }
}

/// Asks one zone about `ip`.
pub async fn check_zone<R: Resolver>(resolver: &R, ip: IpAddr, zone: &DnsblZone) -> DnsblOutcome {
    let status = classify(resolver.a(&query_name(ip, &zone.zone)).await);
    DnsblOutcome {
        zone: zone.zone.clone(),
        action: zone.action,
        status,
    }
}

/// Asks every zone concurrently (the lookups are polled together in the
/// caller's task, not spawned); results in configuration order.
pub async fn check<R: Resolver>(
    resolver: &R,
    ip: IpAddr,
    zones: &[DnsblZone],
) -> Vec<DnsblOutcome> {
    futures_util::future::join_all(zones.iter().map(|zone| check_zone(resolver, ip, zone))).await
}

/// The value of the DNSBL result header, e.g.
/// `zen.spamhaus.org=listed (127.0.0.2, 127.0.0.4); bl.example=not-listed`.
pub fn header_value(outcomes: &[DnsblOutcome]) -> String {
    let parts: Vec<String> = outcomes
        .iter()
        .map(|o| match &o.status {
            DnsblStatus::Listed { codes } => {
                let codes: Vec<String> = codes.iter().map(ToString::to_string).collect();
                format!("{}=listed ({})", o.zone, codes.join(", "))
            }
            DnsblStatus::NotListed => format!("{}=not-listed", o.zone),
            DnsblStatus::NotChecked { .. } => format!("{}=not-checked", o.zone),
        })
        .collect();
    format!(" {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::ZoneResolver;

    #[test]
    fn query_names_follow_rfc5782() {
        assert_eq!(
            query_name("192.0.2.99".parse().unwrap(), "bl.example."),
            "99.2.0.192.bl.example"
        );
        assert_eq!(
            query_name("2001:db8:1:2:3:4:567:89ab".parse().unwrap(), "bl.example"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example"
        );
        assert_eq!(
            query_name("::ffff:192.0.2.99".parse().unwrap(), "bl.example"),
            "99.2.0.192.bl.example"
        );
    }

    #[tokio::test]
    async fn listed_refused_and_unexpected_answers() {
        let zone = "$ORIGIN bl.example.\n\
            2.0.0.127 300 IN A 127.0.0.2\n\
            2.0.0.127 300 IN A 127.0.0.4\n\
            1.2.0.192 300 IN A 127.255.255.254\n\
            2.2.0.192 300 IN A 198.51.100.7\n\
            ;@servfail 3.2.0.192.bl.example.\n";
        let dns = ZoneResolver::parse(zone, None).unwrap();
        let z = DnsblZone {
            zone: "bl.example".into(),
            action: DnsblAction::Reject,
        };
        let status = |ip: &str| {
            let dns = &dns;
            let z = z.clone();
            let ip: IpAddr = ip.parse().unwrap();
            async move { check_zone(dns, ip, &z).await.status }
        };
        let codes = vec!["127.0.0.2".parse().unwrap(), "127.0.0.4".parse().unwrap()];
        assert_eq!(status("127.0.0.2").await, DnsblStatus::Listed { codes });
        assert!(
            matches!(status("192.0.2.1").await, DnsblStatus::NotChecked { reason } if reason.contains("refused"))
        );
        assert!(
            matches!(status("192.0.2.2").await, DnsblStatus::NotChecked { reason } if reason.contains("unexpected"))
        );
        assert!(matches!(
            status("192.0.2.3").await,
            DnsblStatus::NotChecked { .. }
        ));
        assert_eq!(status("192.0.2.4").await, DnsblStatus::NotListed);
        let all = check(
            &dns,
            "127.0.0.2".parse().unwrap(),
            &[
                z.clone(),
                DnsblZone {
                    zone: "other.example".into(),
                    action: DnsblAction::Header,
                },
            ],
        )
        .await;
        assert_eq!(
            header_value(&all),
            " bl.example=listed (127.0.0.2, 127.0.0.4); other.example=not-listed"
        );
    }
}

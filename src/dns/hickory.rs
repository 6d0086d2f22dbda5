//! Production resolver on hickory-resolver 0.26.
//!
//! Owns: server configuration (explicit `servers` or `/etc/resolv.conf`,
//! never a public fallback), timeouts and attempts, UDP with TCP retry when
//! an answer is truncated (RFC 7766 §5, RFC 1035 §4.2.1), and sorting
//! hickory's results into [`Answer`]s: NXDOMAIN (RFC 1035 §4.1.1 RCODE 3)
//! is [`DnsError::NxDomain`], NOERROR without records of the type
//! (RFC 2308 §2.2) is [`DnsError::NoData`], and SERVFAIL, REFUSED, timeouts
//! and I/O errors are [`DnsError::Temporary`]. Negative answers carry the
//! RFC 2308 §5 TTL from the SOA in the authority section.
//!
//! hickory's own cache is disabled: [`super::Cache`] is the only cache, so
//! TTLs and query counts stay under our control. Each upstream query is
//! logged at `debug` on target `authgate::dns`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup as HickoryLookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType as HickoryType};
use hickory_resolver::{Resolver as HickoryInner, TokioResolver};
use tokio::time::Instant;

use super::{Answer, DnsError, DnsSettings, DnsSetupError, Lookup, Mx, RecordType, Records};

/// Where the system resolver configuration lives.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// A [`Lookup`] / [`super::Resolver`] that asks real name servers.
pub struct HickoryResolver {
    resolver: TokioResolver,
    servers: Vec<SocketAddr>,
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryResolver")
            .field("servers", &self.servers)
            .finish()
    }
}

impl HickoryResolver {
    /// Builds from `settings.servers`, or from [`RESOLV_CONF`] when empty.
    pub fn new(settings: &DnsSettings) -> Result<Self, DnsSetupError> {
        if settings.servers.is_empty() {
            return Self::from_resolv_conf(Path::new(RESOLV_CONF), settings);
        }
        let servers = settings
            .servers
            .iter()
            .map(|s| parse_server(s))
            .collect::<Result<Vec<_>, _>>()?;
        Self::with_servers(servers, settings)
    }

    /// Builds from the `nameserver` lines of a resolv.conf file; its
    /// options are ignored in favour of `settings`.
    pub fn from_resolv_conf(path: &Path, settings: &DnsSettings) -> Result<Self, DnsSetupError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| DnsSetupError::ResolvConf {
            path: shown.clone(),
            source,
        })?;
        let (config, _) = hickory_resolver::system_conf::parse_resolv_conf(bytes).map_err(|e| {
            DnsSetupError::ResolvConfContent {
                path: shown,
                message: e.to_string(),
            }
        })?;
        let servers = config
            .name_servers
            .iter()
            .map(|ns| SocketAddr::new(ns.ip, 53))
            .collect();
        Self::with_servers(servers, settings)
    }

    /// Builds for explicit server addresses.
    pub fn with_servers(
        servers: Vec<SocketAddr>,
        settings: &DnsSettings,
    ) -> Result<Self, DnsSetupError> {
        if servers.is_empty() {
            return Err(DnsSetupError::Invalid("no DNS servers configured".into()));
        }
        let name_servers = servers.iter().map(|addr| name_server(*addr)).collect();
        let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);
        let resolver = HickoryInner::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options(settings)?)
            .build()
            .map_err(|e| DnsSetupError::Resolver(e.to_string()))?;
        Ok(Self { resolver, servers })
    }

    /// The servers queried, in order.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    async fn query(&self, name: &str, rtype: RecordType) -> Answer {
        let start = Instant::now();
        let answer = match fqdn(name) {
            Some(qname) => to_answer(
                self.resolver.lookup(qname, hickory_type(rtype)).await,
                rtype,
            ),
            None => Answer::new(Err(DnsError::NxDomain), 0),
        };
        tracing::debug!(
            target: "authgate::dns",
            name,
            rtype = %rtype,
            outcome = %outcome(&answer),
            ttl = answer.ttl,
            latency_ms = start.elapsed().as_secs_f64() * 1000.0,
            "upstream query"
        );
        answer
    }
}

impl Lookup for HickoryResolver {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        self.query(name, rtype).await
    }
}

super::resolver_via_lookup!(for HickoryResolver);

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT` (`[IPv6]` alone too); port 53 by
/// default.
pub fn parse_server(text: &str) -> Result<SocketAddr, DnsSetupError> {
    let trimmed = text.trim();
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| DnsSetupError::BadServer(text.to_owned()))
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for conn in &mut ns.connections {
        conn.port = addr.port();
    }
    ns
}

fn options(settings: &DnsSettings) -> Result<ResolverOpts, DnsSetupError> {
    if settings.timeout_ms == 0 || settings.attempts == 0 {
        return Err(DnsSetupError::Invalid(
            "dns.timeout_ms and dns.attempts must be at least 1".into(),
        ));
    }
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(settings.timeout_ms);
    // hickory counts retries after the first try; we count tries.
    opts.attempts = usize::try_from(settings.attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    opts.num_concurrent_reqs = 1;
    Ok(opts)
}

/// `name` as a fully qualified hickory name, built label by label from its
/// raw octets ([`super::name`]: a space, `%`, `/`, `:`, `=` or a non-ASCII
/// octet goes on the wire as is, as the zone-file resolver answers it);
/// `None` when it cannot be a DNS name at all (an empty label, a label over
/// 63 octets, more than 255 octets, a bad escape), so no server could ever
/// hold it.
pub fn fqdn(name: &str) -> Option<Name> {
    let labels = super::name::wire_labels(name)?;
    Name::from_labels(labels.iter().map(Vec::as_slice)).ok()
}

fn hickory_type(rtype: RecordType) -> HickoryType {
    match rtype {
        RecordType::A => HickoryType::A,
        RecordType::Aaaa => HickoryType::AAAA,
        RecordType::Mx => HickoryType::MX,
        RecordType::Txt => HickoryType::TXT,
        RecordType::Ptr => HickoryType::PTR,
    }
}

/// Sorts a hickory result into an [`Answer`].
fn to_answer(result: Result<HickoryLookup, NetError>, rtype: RecordType) -> Answer {
    match result {
        Ok(lookup) => from_lookup(&lookup, rtype),
        Err(err) => from_error(err),
    }
}

fn from_lookup(lookup: &HickoryLookup, rtype: RecordType) -> Answer {
    let ttl = lookup.answers().iter().map(|r| r.ttl).min().unwrap_or(0);
    let data = lookup.answers().iter().map(|r| &r.data);
    let records = match rtype {
        RecordType::A => Records::A(
            data.filter_map(|d| if let RData::A(a) = d { Some(a.0) } else { None })
                .collect(),
        ),
        RecordType::Aaaa => Records::Aaaa(
            data.filter_map(|d| {
                if let RData::AAAA(a) = d {
                    Some(a.0)
                } else {
                    None
                }
            })
            .collect(),
        ),
        RecordType::Mx => Records::Mx(data.filter_map(mx).collect()),
        RecordType::Txt => Records::Txt(
            data.filter_map(|d| {
                if let RData::TXT(t) = d {
                    Some(t.txt_data.concat())
                } else {
                    None
                }
            })
            .collect(),
        ),
        RecordType::Ptr => Records::Ptr(
            data.filter_map(|d| {
                if let RData::PTR(p) = d {
                    Some(name_text(&p.0))
                } else {
                    None
                }
            })
            .collect(),
        ),
    };
    if !is_empty(&records) {
        return Answer::new(Ok(records), ttl);
    }
    // Only CNAMEs came back: the chain ended in NXDOMAIN or NODATA.
    let err = if lookup.message().metadata.response_code == ResponseCode::NXDomain {
        DnsError::NxDomain
    } else {
        DnsError::NoData
    };
    Answer::new(Err(err), negative_ttl_of(lookup).min(ttl))
}

/// RFC 2308 §5 negative TTL from an SOA in the authority section.
fn negative_ttl_of(lookup: &HickoryLookup) -> u32 {
    lookup
        .authorities()
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })
        .unwrap_or(0)
}

fn mx(data: &RData) -> Option<Mx> {
    match data {
        RData::MX(m) => Some(Mx {
            preference: m.preference,
            exchange: name_text(&m.exchange),
        }),
        _ => None,
    }
}

/// A name from an answer in the text form of [`super::name`] (ASCII
/// lower-cased): the same text the zone-file resolver gives for it, and
/// one that [`fqdn`] turns back into the same octets.
pub fn name_text(name: &Name) -> String {
    super::name::render(name.iter().map(<[u8]>::to_ascii_lowercase))
}

fn is_empty(records: &Records) -> bool {
    match records {
        Records::A(v) => v.is_empty(),
        Records::Aaaa(v) => v.is_empty(),
        Records::Mx(v) => v.is_empty(),
        Records::Txt(v) => v.is_empty(),
        Records::Ptr(v) => v.is_empty(),
    }
}

fn from_error(err: NetError) -> Answer {
    match err {
        NetError::Dns(HickoryDnsError::NoRecordsFound(no)) => match no.response_code {
            ResponseCode::NXDomain => {
                Answer::new(Err(DnsError::NxDomain), no.negative_ttl.unwrap_or(0))
            }
            ResponseCode::NoError => {
                Answer::new(Err(DnsError::NoData), no.negative_ttl.unwrap_or(0))
            }
            code => Answer::temporary(format!("response code {code}")),
        },
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => {
            Answer::temporary(format!("response code {code}"))
        }
        NetError::Timeout => Answer::timed_out(),
        other => Answer::temporary(other.to_string()),
    }
}

/// A short outcome label for the query log.
fn outcome(answer: &Answer) -> String {
    match &answer.result {
        Ok(records) => format!("NOERROR ({} records)", len(records)),
        Err(DnsError::NxDomain) => "NXDOMAIN".into(),
        Err(DnsError::NoData) => "NODATA".into(),
        Err(DnsError::Temporary(why)) => format!("TEMPFAIL ({why})"),
    }
}

fn len(records: &Records) -> usize {
    match records {
        Records::A(v) => v.len(),
        Records::Aaaa(v) => v.len(),
        Records::Mx(v) => v.len(),
        Records::Txt(v) => v.len(),
        Records::Ptr(v) => v.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_parse_with_default_port() {
        for (text, want) in [
            ("192.0.2.53", "192.0.2.53:53"),
            ("192.0.2.53:5353", "192.0.2.53:5353"),
            ("[2001:db8::53]:5353", "[2001:db8::53]:5353"),
            ("2001:db8::53", "[2001:db8::53]:53"),
            ("[2001:db8::53]", "[2001:db8::53]:53"),
        ] {
            assert_eq!(
                parse_server(text).unwrap(),
                want.parse::<SocketAddr>().unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_server_addresses_are_named() {
        for text in ["dns.google", "192.0.2.53:99999", "", "[::1"] {
            let err = parse_server(text).unwrap_err();
            assert!(
                matches!(&err, DnsSetupError::BadServer(s) if s == text),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn unreadable_resolv_conf_is_an_error() {
        let err = HickoryResolver::from_resolv_conf(
            Path::new("/nonexistent/resolv.conf"),
            &DnsSettings::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/resolv.conf"),
            "{err}"
        );
    }

    #[test]
    fn resolv_conf_without_nameservers_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "search example.com\n").unwrap();
        let err = HickoryResolver::from_resolv_conf(&path, &DnsSettings::default()).unwrap_err();
        assert!(
            matches!(err, DnsSetupError::ResolvConfContent { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn resolv_conf_nameservers_are_used_on_port_53() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.1\nnameserver 2001:db8::1\n").unwrap();
        let r = HickoryResolver::from_resolv_conf(&path, &DnsSettings::default()).unwrap();
        let want: Vec<SocketAddr> = vec![
            "192.0.2.1:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
        ];
        assert_eq!(r.servers(), want);
    }

    #[test]
    fn names_that_cannot_exist_are_not_sent() {
        let long_label = format!("{}.example", "x".repeat(64));
        assert!(fqdn(&long_label).is_none());
        let long_name = format!("{}x.example", "a.".repeat(123));
        assert!(fqdn(&long_name).is_none());
        for bad in ["a..example", ".example", r"a\256.example", "a\\"] {
            assert!(fqdn(bad).is_none(), "{bad}");
        }
        assert!(fqdn("_dmarc.Example.COM").is_some_and(|n| n.is_fqdn()));
    }

    #[test]
    fn names_are_built_from_raw_octets() {
        // RFC 7208 §7.3: macros expand to any octets; RFC 2181 §11: a label
        // is any octets. Each goes on the wire as written.
        for (text, want) in [
            ("a b.x.example", vec![&b"a b"[..], b"x", b"example"]),
            ("a%b.x.example", vec![b"a%b", b"x", b"example"]),
            ("a/b.x.example", vec![b"a/b", b"x", b"example"]),
            ("a:b.x.example", vec![b"a:b", b"x", b"example"]),
            ("_spf=1.example.", vec![b"_spf=1", b"example"]),
            ("é.example", vec!["é".as_bytes(), b"example"]),
            (r"a\.b.example", vec![b"a.b", b"example"]),
            (r"\200.example", vec![b"\xc8", b"example"]),
            (r"a\\b.example", vec![b"a\\b", b"example"]),
        ] {
            let name = fqdn(text).unwrap();
            let got: Vec<&[u8]> = name.iter().collect();
            assert_eq!(got, want, "{text}");
            assert!(name.is_fqdn());
            assert_eq!(
                super::super::normalize_name(&name_text(&name)),
                super::super::normalize_name(text),
                "{text}"
            );
        }
        // 63 octets written as 252 characters of escapes still fit a label.
        assert!(fqdn(&format!("{}.example", r"\032".repeat(63))).is_some());
    }

    #[test]
    fn zero_timeout_or_attempts_is_rejected() {
        for settings in [
            DnsSettings {
                timeout_ms: 0,
                ..DnsSettings::default()
            },
            DnsSettings {
                attempts: 0,
                ..DnsSettings::default()
            },
        ] {
            assert!(options(&settings).is_err());
        }
    }

    #[test]
    fn error_mapping() {
        use hickory_resolver::net::NoRecords;
        use hickory_resolver::proto::op::Query;
        let nx = NetError::from(HickoryDnsError::NoRecordsFound(NoRecords::new(
            Query::default(),
            ResponseCode::NXDomain,
        )));
        let nodata = NetError::from(HickoryDnsError::NoRecordsFound(NoRecords::new(
            Query::default(),
            ResponseCode::NoError,
        )));
        for (err, want) in [
            (nx, Some(DnsError::NxDomain)),
            (nodata, Some(DnsError::NoData)),
            (
                NetError::from(HickoryDnsError::ResponseCode(ResponseCode::ServFail)),
                None,
            ),
            (
                NetError::from(HickoryDnsError::ResponseCode(ResponseCode::Refused)),
                None,
            ),
            (NetError::Timeout, None),
        ] {
            let got = from_error(err).result.unwrap_err();
            match want {
                Some(w) => assert_eq!(got, w),
                None => assert!(matches!(got, DnsError::Temporary(_)), "{got}"),
            }
        }
    }
}

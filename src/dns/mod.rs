//! DNS access for every evaluator, behind one small trait.
//!
//! Owns: the [`Resolver`] trait and its error type, the record-level
//! [`Lookup`] trait that carries TTLs to the [`cache`], the production adapter
//! ([`hickory`]), the offline zone-file resolver ([`zone`]), the overlay of
//! both ([`overlay`]), per-message metering ([`metered`]) and [`build`], which
//! turns [`DnsSettings`] into the one [`SystemResolver`] the CLI uses.
//!
//! Evaluators in `dkim/`, `spf/` and `dmarc/` only see [`Resolver`]; they
//! never open sockets. Negative answers follow RFC 2308: NXDOMAIN
//! (§2.1) and NODATA (§2.2) are definitive and cacheable, everything else
//! (SERVFAIL, REFUSED, timeouts) is [`DnsError::Temporary`] and never cached.
//!
//! ```no_run
//! use authgate::dns::{self, DnsSettings, Metered, Resolver};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Once, at startup: errors name the bad server, file or line.
//! let shared = std::sync::Arc::new(dns::build(&DnsSettings::default())?);
//! // Per message: count what this message cost.
//! let per_message = Metered::new(&*shared);
//! let dmarc = per_message.txt("_dmarc.example.com").await;
//! let stats = per_message.stats(); // queries, cache_hits, waited
//! # let _ = (dmarc, stats); Ok(()) }
//! ```

pub mod cache;
pub mod hickory;
pub mod metered;
pub mod name;
pub mod overlay;
mod settings;
mod system;
pub mod zone;

pub use cache::Cache;
pub use metered::{DnsStats, Metered};
pub use settings::DnsSettings;
pub use system::{DnsSetupError, SystemResolver, build};

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a lookup produced no records.
///
/// Only [`DnsError::Temporary`] is a temporary condition (SERVFAIL, REFUSED,
/// timeouts, network errors); NXDOMAIN and NODATA are definitive answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (RCODE 3, NXDOMAIN).
    #[error("NXDOMAIN")]
    NxDomain,
    /// The name exists but has no records of the asked type (NOERROR, no answer).
    #[error("no records of this type (NODATA)")]
    NoData,
    /// Temporary failure: SERVFAIL, REFUSED, timeout, I/O error.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

/// One MX record (RFC 1035 §3.3.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// Preference; lower is preferred.
    pub preference: u16,
    /// Exchange host name, without the trailing dot, lower case.
    pub exchange: String,
}

/// Asynchronous DNS lookups used by the evaluators.
///
/// Names are given without a trailing dot; implementations treat them as
/// fully qualified. CNAMEs are followed by the implementation. Names are
/// text as [`name`] describes: raw octets, `.` between labels, `\` escapes
/// (RFC 1035 §5.1); names given back (MX, PTR) are in that form too.
pub trait Resolver: Send + Sync {
    /// TXT records at `name`; each record's character-strings are already
    /// concatenated without separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
    fn txt(&self, name: &str) -> impl Future<Output = Result<Vec<Vec<u8>>, DnsError>> + Send;
    /// A records at `name`.
    fn a(&self, name: &str) -> impl Future<Output = Result<Vec<Ipv4Addr>, DnsError>> + Send;
    /// AAAA records at `name`.
    fn aaaa(&self, name: &str) -> impl Future<Output = Result<Vec<Ipv6Addr>, DnsError>> + Send;
    /// MX records at `name`, in answer order.
    fn mx(&self, name: &str) -> impl Future<Output = Result<Vec<Mx>, DnsError>> + Send;
    /// PTR names for `ip` (the reverse name is built by the implementation),
    /// without trailing dots.
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Result<Vec<String>, DnsError>> + Send;
}

impl<R: Resolver> Resolver for std::sync::Arc<R> {
    fn txt(&self, name: &str) -> impl Future<Output = Result<Vec<Vec<u8>>, DnsError>> + Send {
        (**self).txt(name)
    }
    fn a(&self, name: &str) -> impl Future<Output = Result<Vec<Ipv4Addr>, DnsError>> + Send {
        (**self).a(name)
    }
    fn aaaa(&self, name: &str) -> impl Future<Output = Result<Vec<Ipv6Addr>, DnsError>> + Send {
        (**self).aaaa(name)
    }
    fn mx(&self, name: &str) -> impl Future<Output = Result<Vec<Mx>, DnsError>> + Send {
        (**self).mx(name)
    }
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Result<Vec<String>, DnsError>> + Send {
        (**self).ptr(ip)
    }
}

/// The record types the evaluators ask for (RFC 1035 §3.2.2, RFC 3596 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchange.
    Mx,
    /// Text strings.
    Txt,
    /// Domain name pointer (reverse lookups).
    Ptr,
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Mx => "MX",
            Self::Txt => "TXT",
            Self::Ptr => "PTR",
        })
    }
}

/// The records of one answer, already typed; TXT strings are concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records {
    /// A records.
    A(Vec<Ipv4Addr>),
    /// AAAA records.
    Aaaa(Vec<Ipv6Addr>),
    /// MX records.
    Mx(Vec<Mx>),
    /// TXT records, one byte string per record.
    Txt(Vec<Vec<u8>>),
    /// PTR targets.
    Ptr(Vec<String>),
}

/// One answer with the lifetime the cache may give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The records, or why there are none.
    pub result: Result<Records, DnsError>,
    /// Seconds the answer may be cached: the smallest record TTL of the
    /// answer (CNAMEs included), or the negative TTL of RFC 2308 §5
    /// (`min(SOA TTL, SOA MINIMUM)`, 0 when no SOA came back). Ignored for
    /// [`DnsError::Temporary`].
    pub ttl: u32,
    /// True when the answer came from the cache (or was shared with a
    /// concurrent identical query) instead of a fresh upstream query.
    pub cached: bool,
}

impl Answer {
    /// A fresh (not cached) answer.
    pub fn new(result: Result<Records, DnsError>, ttl: u32) -> Self {
        Self {
            result,
            ttl,
            cached: false,
        }
    }

    /// A temporary failure (never cached).
    pub fn temporary(reason: impl Into<String>) -> Self {
        Self::new(Err(DnsError::Temporary(reason.into())), 0)
    }

    /// No answer within the configured time and attempts (a temporary
    /// failure that [`Answer::is_timeout`] recognises, for the metrics).
    pub fn timed_out() -> Self {
        Self::temporary(TIMED_OUT)
    }

    /// Whether this is the answer of a query that timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(&self.result, Err(DnsError::Temporary(why)) if why == TIMED_OUT)
    }
}

/// The reason of [`Answer::timed_out`].
const TIMED_OUT: &str = "timed out";

impl Answer {}

/// Record-level lookups that report TTLs; the layer below [`Resolver`].
///
/// Every resolver in this module implements it, so they can be stacked:
/// [`Cache`] over [`overlay::Overlay`] over [`hickory::HickoryResolver`].
/// `name` may carry a trailing dot and any case.
pub trait Lookup: Send + Sync {
    /// Query `name` for `rtype`.
    fn lookup(&self, name: &str, rtype: RecordType) -> impl Future<Output = Answer> + Send;
}

impl<L: Lookup> Lookup for std::sync::Arc<L> {
    fn lookup(&self, name: &str, rtype: RecordType) -> impl Future<Output = Answer> + Send {
        (**self).lookup(name, rtype)
    }
}

impl<L: Lookup> Lookup for &L {
    fn lookup(&self, name: &str, rtype: RecordType) -> impl Future<Output = Answer> + Send {
        (**self).lookup(name, rtype)
    }
}

/// The cache and zone key of `name`: its [`name::canonical`] text (escapes
/// decoded and written back one way, ASCII lower-cased, no final dot). Text
/// that is no name (`a..b`, `x.example..`, a bad escape) is only
/// lower-cased: it stays no name, so a lookup of the key (the cache asks
/// its upstream for the key) finds nothing, as a lookup of the text would.
pub fn normalize_name(name: &str) -> String {
    self::name::canonical(name).unwrap_or_else(|| name.to_ascii_lowercase())
}

/// The reverse-lookup name for `ip` (RFC 1035 §3.5, RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            out.push_str("ip6.arpa");
            out
        }
    }
}

/// Runs one typed query through a [`Lookup`] and unpacks the records.
async fn typed<L: Lookup + ?Sized, T>(
    lookup: &L,
    name: &str,
    rtype: RecordType,
    pick: fn(Records) -> Option<Vec<T>>,
) -> Result<Vec<T>, DnsError> {
    let records = lookup.lookup(name, rtype).await.result?;
    pick(records)
        .ok_or_else(|| DnsError::Temporary(format!("{rtype} query returned other records")))
}

/// Implements [`Resolver`] for a type that implements [`Lookup`].
macro_rules! resolver_via_lookup {
    (for $t:ty) => {
        $crate::dns::resolver_via_lookup!(impl<> for $t);
    };
    (impl<$($g:ident: $b:path),*> for $t:ty) => {
        impl<$($g: $b),*> $crate::dns::Resolver for $t {
            fn txt(&self, name: &str) -> impl ::std::future::Future<
                Output = Result<Vec<Vec<u8>>, $crate::dns::DnsError>> + Send {
                $crate::dns::typed_txt(self, name)
            }
            fn a(&self, name: &str) -> impl ::std::future::Future<
                Output = Result<Vec<::std::net::Ipv4Addr>, $crate::dns::DnsError>> + Send {
                $crate::dns::typed_a(self, name)
            }
            fn aaaa(&self, name: &str) -> impl ::std::future::Future<
                Output = Result<Vec<::std::net::Ipv6Addr>, $crate::dns::DnsError>> + Send {
                $crate::dns::typed_aaaa(self, name)
            }
            fn mx(&self, name: &str) -> impl ::std::future::Future<
                Output = Result<Vec<$crate::dns::Mx>, $crate::dns::DnsError>> + Send {
                $crate::dns::typed_mx(self, name)
            }
            fn ptr(&self, ip: ::std::net::IpAddr) -> impl ::std::future::Future<
                Output = Result<Vec<String>, $crate::dns::DnsError>> + Send {
                $crate::dns::typed_ptr(self, ip)
            }
        }
    };
}
pub(crate) use resolver_via_lookup;

pub(crate) async fn typed_txt<L: Lookup + ?Sized>(
    l: &L,
    name: &str,
) -> Result<Vec<Vec<u8>>, DnsError> {
    typed(l, name, RecordType::Txt, |r| match r {
        Records::Txt(v) => Some(v),
        _ => None,
    })
    .await
}

pub(crate) async fn typed_a<L: Lookup + ?Sized>(
    l: &L,
    name: &str,
) -> Result<Vec<Ipv4Addr>, DnsError> {
    typed(l, name, RecordType::A, |r| match r {
        Records::A(v) => Some(v),
        _ => None,
    })
    .await
}

pub(crate) async fn typed_aaaa<L: Lookup + ?Sized>(
    l: &L,
    name: &str,
) -> Result<Vec<Ipv6Addr>, DnsError> {
    typed(l, name, RecordType::Aaaa, |r| match r {
        Records::Aaaa(v) => Some(v),
        _ => None,
    })
    .await
}

pub(crate) async fn typed_mx<L: Lookup + ?Sized>(l: &L, name: &str) -> Result<Vec<Mx>, DnsError> {
    typed(l, name, RecordType::Mx, |r| match r {
        Records::Mx(v) => Some(v),
        _ => None,
    })
    .await
}

pub(crate) async fn typed_ptr<L: Lookup + ?Sized>(
    l: &L,
    ip: IpAddr,
) -> Result<Vec<String>, DnsError> {
    let name = reverse_name(ip);
    typed(l, &name, RecordType::Ptr, |r| match r {
        Records::Ptr(v) => Some(v),
        _ => None,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_follow_rfc_1035_and_3596() {
        for (ip, want) in [
            ("192.0.2.1", "1.2.0.192.in-addr.arpa"),
            (
                "2001:db8::1",
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            ),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(reverse_name(ip), want);
        }
    }

    #[test]
    fn normalize_lowercases_and_strips_root_dot() {
        assert_eq!(normalize_name("Example.COM."), "example.com");
        assert_eq!(normalize_name("a.b"), "a.b");
        assert_eq!(normalize_name("A B.x"), normalize_name(r"a\032b.X."));
        // Not names: keys that no name has.
        assert_eq!(normalize_name("x.Example.."), "x.example..");
        assert_eq!(normalize_name(r"A\"), r"a\");
    }
}

//! DNS access for every evaluator, behind one small trait.
//!
//! Owns: the [`Resolver`] trait and its error type, the production adapter
//! ([`hickory`]) and the offline zone-file resolver ([`zone`]). Evaluators in
//! `dkim/`, `spf/` and `dmarc/` only see the trait; they never open sockets.

pub mod hickory;
pub mod zone;

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};

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
/// fully qualified. CNAMEs are followed by the implementation.
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
    fn ptr(
        &self,
        ip: std::net::IpAddr,
    ) -> impl Future<Output = Result<Vec<String>, DnsError>> + Send;
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
    fn ptr(
        &self,
        ip: std::net::IpAddr,
    ) -> impl Future<Output = Result<Vec<String>, DnsError>> + Send {
        (**self).ptr(ip)
    }
}

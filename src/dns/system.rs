//! The one resolver the CLI uses, chosen by [`DnsSettings`].
//!
//! Owns the choice of backend (offline zone files, live servers, or zone
//! files overlaid on explicit servers) and puts the shared [`Cache`] on
//! top. Setup errors are reported here, before any mail is accepted.

use super::cache::{Cache, CacheConfig};
use super::hickory::HickoryResolver;
use super::overlay::Overlay;
use super::zone::{ZoneError, ZoneResolver};
use super::{Answer, DnsSettings, Lookup, RecordType};

/// Why the DNS layer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    /// A `dns.servers` entry is not `IP`, `IP:PORT` or `[IPv6]:PORT`.
    #[error("invalid DNS server address {0:?}: expected IP, IP:PORT or [IPv6]:PORT")]
    BadServer(String),
    /// resolv.conf could not be read.
    #[error("cannot read {path} (set dns.servers to avoid it): {source}")]
    ResolvConf {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// resolv.conf has no usable `nameserver` line.
    #[error("{path}: {message} (set dns.servers to avoid it)")]
    ResolvConfContent {
        /// The file.
        path: String,
        /// What hickory reported.
        message: String,
    },
    /// A zone file could not be loaded.
    #[error("DNS zone file: {0}")]
    Zone(#[from] ZoneError),
    /// A setting is out of range.
    #[error("invalid DNS setting: {0}")]
    Invalid(String),
    /// hickory refused the configuration.
    #[error("DNS resolver setup failed: {0}")]
    Resolver(String),
}

/// The backend below the cache.
pub enum Backend {
    /// Only zone files: fully offline, absent names are NXDOMAIN.
    Zone(ZoneResolver),
    /// Live name servers.
    Live(HickoryResolver),
    /// Zone files shadowing explicit name servers.
    Overlay(Overlay<HickoryResolver>),
}

impl Lookup for Backend {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        match self {
            Self::Zone(z) => z.lookup(name, rtype).await,
            Self::Live(h) => h.lookup(name, rtype).await,
            Self::Overlay(o) => o.lookup(name, rtype).await,
        }
    }
}

/// The cached resolver every part of the program shares (wrap it in an
/// `Arc`, or lend `&SystemResolver` to [`super::Metered`] per message).
pub struct SystemResolver {
    cache: Cache<Backend>,
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SystemResolver({})", self.mode())
    }
}

impl SystemResolver {
    /// Puts the cache configured by `settings` over `backend`.
    pub fn new(backend: Backend, settings: &DnsSettings) -> Self {
        Self {
            cache: Cache::new(backend, CacheConfig::from(settings)),
        }
    }

    /// The backend, for diagnostics.
    pub fn backend(&self) -> &Backend {
        self.cache.inner()
    }

    /// A one-word description for the startup log: `offline`, `live` or
    /// `overlay`.
    pub fn mode(&self) -> &'static str {
        match self.backend() {
            Backend::Zone(_) => "offline",
            Backend::Live(_) => "live",
            Backend::Overlay(_) => "overlay",
        }
    }
}

impl Lookup for SystemResolver {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        self.cache.lookup(name, rtype).await
    }
}

super::resolver_via_lookup!(for SystemResolver);

/// Builds the resolver described by `settings`:
///
/// | `zone_files` | `servers` | result |
/// |---|---|---|
/// | set | empty | offline, from the zone files |
/// | empty | set / empty | live, from `servers` / `/etc/resolv.conf` |
/// | set | set | zone files overlaid on `servers` |
pub fn build(settings: &DnsSettings) -> Result<SystemResolver, DnsSetupError> {
    let backend = match (settings.zone_files.is_empty(), settings.servers.is_empty()) {
        (false, true) => Backend::Zone(ZoneResolver::load(&settings.zone_files)?),
        (true, _) => Backend::Live(HickoryResolver::new(settings)?),
        (false, false) => Backend::Overlay(Overlay::new(
            ZoneResolver::load(&settings.zone_files)?,
            HickoryResolver::new(settings)?,
        )),
    };
    Ok(SystemResolver::new(backend, settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{DnsError, Resolver};

    fn zone_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join("test.zone");
        std::fs::write(&path, "a.example. TXT \"hello\"\n").unwrap();
        path
    }

    #[tokio::test]
    async fn zone_files_alone_are_offline() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DnsSettings {
            zone_files: vec![zone_file(&dir)],
            ..DnsSettings::default()
        };
        let r = build(&settings).unwrap();
        assert_eq!(r.mode(), "offline");
        assert_eq!(r.txt("a.example").await.unwrap(), [b"hello".to_vec()]);
        assert_eq!(r.txt("b.example").await, Err(DnsError::NxDomain));
    }

    #[tokio::test]
    async fn zone_files_with_servers_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DnsSettings {
            zone_files: vec![zone_file(&dir)],
            servers: vec!["127.0.0.1:9".into()],
            ..DnsSettings::default()
        };
        assert_eq!(build(&settings).unwrap().mode(), "overlay");
    }

    #[test]
    fn setup_errors_are_reported() {
        let bad_server = DnsSettings {
            servers: vec!["resolver.example".into()],
            ..DnsSettings::default()
        };
        assert!(matches!(
            build(&bad_server),
            Err(DnsSetupError::BadServer(_))
        ));
        let missing_zone = DnsSettings {
            zone_files: vec!["/nonexistent.zone".into()],
            ..DnsSettings::default()
        };
        let err = build(&missing_zone).err().unwrap();
        assert!(err.to_string().contains("/nonexistent.zone"), "{err}");
    }
}

//! The `[dns]` table of the application config.
//!
//! Owns only the shape and defaults of the settings; turning them into a
//! resolver is [`super::build`]'s job, and validation errors surface there.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// DNS settings (`[dns]` in the config file).
///
/// ```toml
/// [dns]
/// servers = ["192.0.2.53", "[2001:db8::53]:5353"]  # empty: /etc/resolv.conf
/// timeout_ms = 2000
/// attempts = 2
/// zone_files = ["/etc/authgate/test.zone"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings {
    /// Name servers as `IP`, `IP:PORT` or `[IPv6]:PORT` (port 53 by
    /// default). Empty means the `nameserver` lines of `/etc/resolv.conf`.
    pub servers: Vec<String>,
    /// Time to wait for one answer from one server, in milliseconds.
    pub timeout_ms: u64,
    /// Tries per query (the first one included) before giving up with a
    /// temporary error.
    pub attempts: u32,
    /// RFC 1035 master files. Alone: fully offline resolution. Together with
    /// explicit `servers`: an overlay whose names shadow the servers' answers.
    pub zone_files: Vec<PathBuf>,
    /// Maximum number of cached answers (0 disables the cache).
    pub cache_entries: usize,
    /// Floor for cached TTLs, in seconds.
    pub cache_min_ttl_secs: u32,
    /// Ceiling for positive TTLs, in seconds.
    pub cache_max_ttl_secs: u32,
    /// Ceiling for negative (NXDOMAIN / NODATA) TTLs, in seconds
    /// (RFC 2308 §5 suggests 1 to 3 hours).
    pub negative_max_ttl_secs: u32,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout_ms: 2000,
            attempts: 2,
            zone_files: Vec::new(),
            cache_entries: 10_000,
            cache_min_ttl_secs: 5,
            cache_max_ttl_secs: 86_400,
            negative_max_ttl_secs: 3_600,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_defaults() {
        let s: DnsSettings = toml::from_str("servers = [\"127.0.0.1:5353\"]").unwrap();
        assert_eq!(s.servers, ["127.0.0.1:5353"]);
        assert_eq!(s.timeout_ms, 2000);
        assert_eq!(s.attempts, 2);
        assert_eq!(s.cache_entries, 10_000);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<DnsSettings>("timeout_secs = 5").unwrap_err();
        assert!(err.to_string().contains("timeout_secs"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() {
        let s = DnsSettings {
            zone_files: vec!["a.zone".into()],
            ..DnsSettings::default()
        };
        let text = toml::to_string(&s).unwrap();
        assert_eq!(toml::from_str::<DnsSettings>(&text).unwrap(), s);
    }
}

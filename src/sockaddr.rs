//! Socket addresses as admins write them, shared by the configuration (where
//! a listener listens, where its next hop is) and the server (what it binds
//! and connects to).
//!
//! Owns: parsing and printing `127.0.0.1:10025`, `[::1]:10025`,
//! `inet:8891@127.0.0.1`, `inet6:8891@[::1]`, `unix:/run/authgate/milter.sock`,
//! `local:/path` and a bare absolute path, and the mode and group wanted for
//! a Unix listening socket. Must not: open sockets or touch files (binding
//! is `server::listen`), or import anything above it: it sits at the bottom
//! of the module graph so that `config` and `server` can both use it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Where to listen or connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketAddress {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

/// Why an address string is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad socket address {input:?}: {why} (use 127.0.0.1:PORT, [::1]:PORT, inet:PORT@HOST or unix:/path)"
)]
pub struct AddressError {
    input: String,
    why: &'static str,
}

impl FromStr for SocketAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| AddressError {
            input: s.to_string(),
            why,
        };
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("local:")) {
            return unix_path(path).ok_or_else(|| err("Unix socket paths must be absolute"));
        }
        if s.starts_with('/') {
            return unix_path(s).ok_or_else(|| err("Unix socket paths must be absolute"));
        }
        if let Some(rest) = s.strip_prefix("inet:").or_else(|| s.strip_prefix("inet6:")) {
            return milter_inet(rest).ok_or_else(|| err("expected inet:PORT@HOST"));
        }
        s.parse::<SocketAddr>()
            .map(SocketAddress::Tcp)
            .map_err(|_| err("not an IP:PORT"))
    }
}

fn unix_path(p: &str) -> Option<SocketAddress> {
    p.starts_with('/')
        .then(|| SocketAddress::Unix(PathBuf::from(p)))
}

/// Sendmail/Postfix milter notation: `PORT@HOST` (HOST an address, possibly
/// bracketed; `localhost` allowed), or `HOST:PORT` as Postfix also accepts.
fn milter_inet(rest: &str) -> Option<SocketAddress> {
    let (port, host) = match rest.split_once('@') {
        Some((port, host)) => (port, host),
        None => {
            let (host, port) = rest.rsplit_once(':')?;
            (port, host)
        }
    };
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "localhost" | "" => std::net::IpAddr::from([127, 0, 0, 1]),
        h => h.parse().ok()?,
    };
    Some(SocketAddress::Tcp(SocketAddr::new(ip, port)))
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Tcp(a) => write!(f, "{a}"),
            SocketAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl serde::Serialize for SocketAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SocketAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Owner and mode of a Unix listening socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixSocketOptions {
    /// Permission bits, e.g. `0o660`.
    pub mode: Option<u32>,
    /// Group name or numeric gid given to the socket (e.g. `postfix`).
    pub group: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> SocketAddress {
        SocketAddress::Tcp(s.parse().unwrap())
    }

    #[test]
    fn parses_the_forms_admins_write() {
        let cases = [
            ("127.0.0.1:10025", tcp("127.0.0.1:10025")),
            ("[::1]:10025", tcp("[::1]:10025")),
            ("inet:8891@127.0.0.1", tcp("127.0.0.1:8891")),
            ("inet:8891@localhost", tcp("127.0.0.1:8891")),
            ("inet6:8891@[::1]", tcp("[::1]:8891")),
            ("inet:127.0.0.1:8891", tcp("127.0.0.1:8891")),
            (
                "unix:/run/authgate/milter.sock",
                SocketAddress::Unix("/run/authgate/milter.sock".into()),
            ),
            ("local:/tmp/x", SocketAddress::Unix("/tmp/x".into())),
            ("/tmp/x", SocketAddress::Unix("/tmp/x".into())),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<SocketAddress>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn refuses_nonsense_with_a_hint() {
        for bad in ["", "10025", "unix:relative", "inet:x@127.0.0.1", "host:25"] {
            let e = bad.parse::<SocketAddress>().unwrap_err();
            assert!(e.to_string().contains("127.0.0.1:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["127.0.0.1:25", "[::1]:25", "unix:/run/a.sock"] {
            let a: SocketAddress = s.parse().unwrap();
            assert_eq!(a.to_string().parse::<SocketAddress>().unwrap(), a);
        }
    }
}

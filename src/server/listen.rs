//! Listeners on TCP and Unix sockets, and connections to a next hop.
//!
//! Owns: binding a [`SocketAddress`] (replacing a stale Unix socket file,
//! then setting its mode and group so the MTA's user can connect),
//! accepting, and connecting. Must not: speak any protocol, or parse
//! addresses (that is [`crate::sockaddr`], at the bottom of the module
//! graph so the configuration can use it without importing the server).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::sockaddr::{SocketAddress, UnixSocketOptions};

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix; the path is removed when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

/// Who connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A Unix socket client (a local process).
    Unix,
}

impl Peer {
    /// The client's IP address, for TCP clients.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

impl Listener {
    /// Binds `addr`. A Unix socket path left by a previous run is replaced
    /// (only if it is a socket nobody answers on), then given `unix` mode and group.
    pub async fn bind(addr: &SocketAddress, unix: &UnixSocketOptions) -> io::Result<Listener> {
        match addr {
            SocketAddress::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a).await?)),
            SocketAddress::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = UnixListener::bind(path)?;
                apply_unix_options(path, unix)?;
                Ok(Listener::Unix(listener, path.clone()))
            }
        }
    }

    /// Waits for the next client.
    pub async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Peer::Tcp(a)))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddress> {
        match self {
            Listener::Tcp(l) => Ok(SocketAddress::Tcp(l.local_addr()?)),
            Listener::Unix(_, p) => Ok(SocketAddress::Unix(p.clone())),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by another process", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

fn apply_unix_options(path: &Path, unix: &UnixSocketOptions) -> io::Result<()> {
    if let Some(group) = &unix.group {
        let gid = group_id(group)?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    if let Some(mode) = unix.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// A numeric gid, or a group name looked up in `/etc/group`.
pub fn group_id(group: &str) -> io::Result<u32> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group")?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse().ok()?;
            Some((name, gid))
        })
        .find(|(name, _)| *name == group)
        .map(|(_, gid)| gid)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no group {group:?} in /etc/group"),
            )
        })
}

/// A connected socket of either kind.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix.
    Unix(UnixStream),
}

impl Stream {
    /// Connects to a next hop.
    pub async fn connect(addr: &SocketAddress) -> io::Result<Stream> {
        match addr {
            SocketAddress::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            SocketAddress::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p).await?)),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_listener_replaces_a_stale_socket_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let addr = SocketAddress::Unix(path.clone());
        let opts = UnixSocketOptions {
            mode: Some(0o660),
            group: Some("0".into()),
        };
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let l = Listener::bind(&addr, &opts).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let _client = Stream::connect(&addr).await.unwrap();
        let (_, peer) = l.accept().await.unwrap();
        assert_eq!(peer, Peer::Unix);
        // A live socket is not stolen.
        assert!(Listener::bind(&addr, &opts).await.is_err());
        drop(l);
        assert!(!path.exists());
    }

    #[test]
    fn group_names_resolve() {
        assert_eq!(group_id("root").unwrap(), 0);
        assert!(group_id("no-such-group-xyz").is_err());
    }
}

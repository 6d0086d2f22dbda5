//! The `/metrics` endpoint: a minimal HTTP/1.1 responder.
//!
//! Owns: the listening socket, the cap on concurrent scrapers, reading one
//! request head (size limit, timeout), the answer (200 with the exposition
//! for `GET /metrics`, OpenMetrics when the scraper accepts it, else the
//! Prometheus text format 0.0.4; 404, 405 or 400 otherwise) and the close.
//! Must not: keep connections open, read a request body, or serve anything
//! but the metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{Messages, Metrics, OBSERVER, global};

/// The OpenMetrics content type (what Prometheus asks for first).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Concurrent scrapes at most; more wait for the listener's backlog.
const MAX_SCRAPERS: usize = 4;
/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// Time for the whole request head, and for the whole response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The `/metrics` endpoint, listening.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Endpoint {
    /// Binds `addr`, registers the per-message observer and serves the
    /// [`global`] metrics until [`Endpoint::stop`]. A bind failure names
    /// the address.
    pub async fn start(addr: SocketAddr) -> Result<Endpoint, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} for metrics (metrics.listen): {e}"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        crate::outcome::observe(OBSERVER, Arc::new(Messages));
        let task = tokio::spawn(accept_loop(listener));
        Ok(Endpoint { addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and counting messages.
    pub fn stop(self) {
        crate::outcome::unobserve(OBSERVER);
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener) {
    let scrapers = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let Ok(permit) = Arc::clone(&scrapers).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    scrape(stream).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("metrics endpoint: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection: read the request head (bounded), answer, close.
async fn scrape(mut stream: TcpStream) {
    let head = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        _ => return,
    };
    let response = respond(head.as_deref(), global());
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(IO_TIMEOUT, write).await;
}

/// Reads up to the blank line ending the request head; `None` past
/// [`MAX_REQUEST`] bytes (answered 400) or at an early close.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
}

/// The whole HTTP response to a request head (`None`: too large or cut
/// off).
fn respond(head: Option<&[u8]>, metrics: &Metrics) -> Vec<u8> {
    let Some(head) = head.and_then(|h| std::str::from_utf8(h).ok()) else {
        return response(
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n",
        );
    };
    let mut lines = head.lines();
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET only\n",
        );
    }
    if path != "/metrics" {
        return response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            "see /metrics\n",
        );
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    match metrics.encode(openmetrics) {
        Ok(body) if openmetrics => response("200 OK", OPENMETRICS, &body),
        Ok(body) => response(
            "200 OK",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            &body,
        ),
        Err(_) => response(
            "500 Internal Server Error",
            "text/plain; charset=utf-8",
            "encoding failed\n",
        ),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_endpoint_answers_get_metrics_only() {
        let m = Metrics::new();
        let status = |req: Option<&str>| {
            let r = respond(req.map(str::as_bytes), &m);
            String::from_utf8(r).unwrap()
        };
        for (req, want) in [
            (
                Some("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4",
            ),
            (
                Some(
                    "GET /metrics?x=1 HTTP/1.0\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
                ),
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0",
            ),
            (Some("GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 "),
            (Some("POST /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 405 "),
            (Some("\u{0}\u{1}\r\n\r\n"), "HTTP/1.1 405 "),
            (None, "HTTP/1.1 400 "),
        ] {
            assert!(status(req).starts_with(want), "{req:?}: {}", status(req));
        }
    }
}

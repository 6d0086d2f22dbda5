//! SMTP dialogue cases: the client's bytes (all at once: pipelined, then
//! end of stream) go to the proxy (`serve_over`) over in-memory pipes; a
//! scripted next hop accepts everything. Observed: the reply codes the
//! client got, in order, and the commands and messages the next hop got.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authgate::config::Config;
use authgate::server::Snapshot;
use authgate::server::listen::Peer;
use authgate::smtp::proxy::{ConnContext, HopPool, serve_over};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use toml::Value;

use crate::manifest::Case;
use crate::{Observed, template};

/// A dialogue taking longer than this hangs (a failure, not a measure).
const HANG: Duration = Duration::from_secs(60);

/// The configuration both fronts use: base.zone as the only DNS.
pub fn snapshot() -> Arc<Snapshot> {
    static SNAP: OnceLock<Arc<Snapshot>> = OnceLock::new();
    Arc::clone(SNAP.get_or_init(|| {
        let mut config = Config {
            authserv_id: "mx.hostile.test".into(),
            ..Config::default()
        };
        config.server.hostname = "filter.test".into();
        config.iprev.enabled = false;
        config.spf.helo = false;
        config.dns.zone_files =
            vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/base.zone")];
        Arc::new(Snapshot::build(config).unwrap())
    }))
}

/// What the scripted next hop saw.
#[derive(Debug, Default)]
struct HopLog {
    verbs: Vec<String>,
    messages: usize,
    longest_line: usize,
}

async fn next_hop(stream: DuplexStream) -> HopLog {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let mut log = HopLog::default();
    let _ = w.write_all(b"220 hop.test ESMTP\r\n").await;
    let mut line = Vec::new();
    let mut in_data = false;
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return log,
            Ok(_) => {}
        }
        log.longest_line = log.longest_line.max(line.len());
        if in_data {
            if line == b".\r\n" {
                in_data = false;
                log.messages += 1;
                let _ = w.write_all(b"250 2.0.0 queued\r\n").await;
            }
            continue;
        }
        let verb = String::from_utf8_lossy(&line)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "LHLO" => b"250-hop.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => b"221 bye\r\n",
            _ => b"250 2.0.0 ok\r\n",
        };
        log.verbs.push(verb.clone());
        let _ = w.write_all(reply).await;
        if verb == "QUIT" {
            return log;
        }
    }
}

/// The reply codes in `out`: one per complete reply (its last line).
fn codes(out: &[u8]) -> Vec<Value> {
    out.split(|&b| b == b'\n')
        .filter(|l| l.len() >= 4 && l[3] == b' ')
        .filter_map(|l| std::str::from_utf8(&l[..3]).ok()?.parse::<i64>().ok())
        .map(Value::Integer)
        .collect()
}

/// Runs the case at `scale`; what it did.
pub fn run(case: &Case, scale: usize, rt: &tokio::runtime::Runtime) -> Observed {
    let input = template::expand(&case.input, scale);
    let snap = snapshot();
    let listener = snap.config.listeners().unwrap().remove(0);
    let (_shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let cx = ConnContext {
        listener: Arc::new(listener),
        snap,
        shutdown: shutdown_rx,
        hops: Arc::new(HopPool::default()),
    };
    let (result, hop) = rt.block_on(async move {
        let (mut client, client_end) = tokio::io::duplex(64 * 1024);
        let (hop, hop_end) = tokio::io::duplex(64 * 1024);
        let peer = Peer::Tcp("192.0.2.1:40000".parse().unwrap());
        let proxy = tokio::spawn(serve_over(client_end, hop_end, peer, cx));
        let hop = tokio::spawn(next_hop(hop));
        let (mut r, mut w) = tokio::io::split(&mut client);
        let write = async {
            let _ = w.write_all(&input).await;
            let _ = w.shutdown().await;
        };
        let read = async {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out).await;
            out
        };
        let result = tokio::time::timeout(HANG, async {
            let ((), out) = tokio::join!(write, read);
            proxy.await.map(|()| out)
        })
        .await;
        (result, hop.await.ok())
    });
    let mut o = Observed::new();
    match result {
        Err(_) => {
            o.insert("end".into(), Value::String("hung".into()));
        }
        Ok(Err(e)) => {
            o.insert("end".into(), Value::String(format!("panic: {e}")));
        }
        Ok(Ok(out)) => {
            o.insert("end".into(), Value::String("closed".into()));
            let codes = codes(&out);
            o.insert("replies_n".into(), Value::Integer(codes.len() as i64));
            o.insert("codes".into(), Value::Array(codes));
            o.insert(
                "replies".into(),
                Value::String(String::from_utf8_lossy(&out).into_owned()),
            );
        }
    }
    if let Some(h) = hop {
        let verbs = h.verbs.iter().map(|v| Value::String(v.clone())).collect();
        o.insert("hop".into(), Value::Array(verbs));
        o.insert("delivered".into(), Value::Integer(h.messages as i64));
        o.insert(
            "hop_longest_line".into(),
            Value::Integer(h.longest_line as i64),
        );
    }
    o
}

//! Loopback load for `authgate serve`: an SMTP load client, a fast sink
//! next hop and a slow DNS server, all in one example (see `bench/serve.sh`,
//! which runs them and prints the table in BENCHMARKS.md).
//!
//! ```text
//! smtp_load sink --listen 127.0.0.1:2526
//! smtp_load dns  --listen 127.0.0.1:5353 --zone FILE [--delay-ms 50]
//! smtp_load zone --tag T --count N --key-record FILE > T.zone
//! smtp_load load --to 127.0.0.1:2525 --mode sign|verify --size 2k|20k|1m
//!                --count N --conc C --tag T [--key PEM] [--first K]
//!                [--sink 127.0.0.1:2526] [--rtt-ms MS] [--label TEXT]
//! ```
//!
//! * `sink` answers every command with 250 at once (EHLO offers PIPELINING,
//!   8BITMIME, SIZE and XFORWARD, as Postfix's reinjection smtpd does) and
//!   discards the data, looking only at the header block: it counts messages,
//!   `dkim=pass`, `spf=pass`, `dmarc=pass` in our A-R and DKIM-Signature
//!   fields. `XSTATS` returns and resets the counts (the load client asks).
//! * `dns` answers UDP and TCP queries from an RFC 1035 zone file (authgate's
//!   own zone parser) after a fixed delay; names not in the file are
//!   NXDOMAIN without SOA (so nothing is negatively cached either).
//! * `zone` writes the records for `count` distinct sender domains
//!   `m<i>.<tag>.bench.test`: DKIM key `bench._domainkey`, SPF
//!   (`ip4:198.18.0.0/15`), `_dmarc` (p=none), and for the client address of
//!   message i (198.18.i/256.i%256) a PTR to the domain and its A record. So
//!   with distinct tags per run no lookup of a message is a cache hit: iprev
//!   (PTR, A), SPF for MAIL FROM and HELO, the DKIM key and DMARC.
//! * `load` builds `count` messages of the size (a text body; in verify mode
//!   signed here with `--key` as d=m<i>.<tag>.bench.test s=bench, before the
//!   clock starts), then `conc` sessions send them, one transaction after the
//!   other per session (XFORWARD, MAIL, RCPT, DATA as separate round trips;
//!   XFORWARD gives authgate the client 198.18.x.y (verify) or 10.0.x.y
//!   (sign: an internal host)). Per message it records the latency from
//!   XFORWARD to the final reply and the time from the end of the final "."
//!   to the reply. Prints one JSON line. `--rtt-ms` waits that long before
//!   each command and before the data, like a client a round trip away.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use authgate::config::{Config, KeySettings, TableSettings};
use authgate::dns::zone::ZoneResolver;
use authgate::dns::{DnsError, Lookup, RecordType, Records};
use authgate::pipeline::{MessageJob, Options, Pushed};
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX, PTR, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType as HType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("usage: smtp_load sink|dns|zone|load ... (see the file header)");
    };
    let opts = Opts::parse(&args[1..])?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.num("threads", 2)?)
        .enable_all()
        .build()?;
    match cmd.as_str() {
        "sink" => rt.block_on(sink(opts.get("listen")?.parse()?)),
        "dns" => rt.block_on(dns(&opts)),
        "zone" => zone(&opts),
        "load" => rt.block_on(load(&opts)),
        other => bail!("unknown command {other}"),
    }
}

/// `--name value` pairs.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut v = Vec::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let name = k
                .strip_prefix("--")
                .with_context(|| format!("expected --option, got {k}"))?;
            let val = it.next().with_context(|| format!("{k} needs a value"))?;
            v.push((name.to_string(), val.clone()));
        }
        Ok(Opts(v))
    }
    fn opt(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn get(&self, k: &str) -> Result<&str> {
        self.opt(k).with_context(|| format!("--{k} is required"))
    }
    fn num(&self, k: &str, default: usize) -> Result<usize> {
        self.opt(k)
            .map_or(Ok(default), |v| v.parse().with_context(|| format!("--{k}")))
    }
}

// ---------------------------------------------------------------- sink

#[derive(Default)]
struct SinkStats {
    msgs: AtomicU64,
    bytes: AtomicU64,
    dkim_pass: AtomicU64,
    spf_pass: AtomicU64,
    dmarc_pass: AtomicU64,
    signed: AtomicU64,
}

async fn sink(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let stats = Arc::new(SinkStats::default());
    eprintln!("sink listening on {addr}");
    loop {
        let (sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let _ = sink_session(sock, &stats).await;
        });
    }
}

async fn sink_session(sock: TcpStream, stats: &SinkStats) -> Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    w.write_all(b"220 sink.bench ESMTP\r\n").await?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut line = Vec::new();
    loop {
        line.clear();
        if read_line(&mut r, &mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .map(u8::to_ascii_uppercase)
            .collect::<Vec<u8>>();
        let reply: Vec<u8> = match verb.as_slice() {
            b"EHLO" | b"LHLO" => b"250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 0\r\n250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE PORT\r\n".to_vec(),
            b"DATA" => {
                w.write_all(b"354 go ahead\r\n").await?;
                let (size, head) = sink_data(&mut r, &mut buf).await?;
                stats.msgs.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(size, Ordering::Relaxed);
                count_results(&head, stats);
                b"250 2.0.0 Ok: queued\r\n".to_vec()
            }
            b"XSTATS" => {
                let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
                format!(
                    "250 msgs={} bytes={} dkim_pass={} spf_pass={} dmarc_pass={} signed={}\r\n",
                    take(&stats.msgs),
                    take(&stats.bytes),
                    take(&stats.dkim_pass),
                    take(&stats.spf_pass),
                    take(&stats.dmarc_pass),
                    take(&stats.signed)
                )
                .into_bytes()
            }
            b"QUIT" => {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 2.0.0 Ok\r\n".to_vec(),
        };
        w.write_all(&reply).await?;
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
) -> Result<usize> {
    use tokio::io::AsyncBufReadExt;
    Ok(r.read_until(b'\n', line).await?)
}

/// Reads DATA up to the final "."; returns the size and the unfolded
/// header block (first 64 KiB at most).
async fn sink_data<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<(u64, Vec<u8>)> {
    use tokio::io::AsyncBufReadExt;
    const END: &[u8] = b"\r\n.\r\n";
    let mut head: Vec<u8> = Vec::new();
    let mut head_done = false;
    let mut size = 0u64;
    // the last 4 bytes of the previous chunk, to find an end marker split across reads
    let mut tail: Vec<u8> = b"\r\n".to_vec();
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            bail!("eof in DATA");
        }
        buf.clear();
        buf.extend_from_slice(&tail);
        buf.extend_from_slice(chunk);
        let n = chunk.len();
        if !head_done {
            head.extend_from_slice(chunk);
            if let Some(p) = memchr::memmem::find(&head, b"\r\n\r\n") {
                head.truncate(p);
                head_done = true;
            } else if head.len() > 64 * 1024 {
                head_done = true;
            }
        }
        if let Some(p) = memchr::memmem::find(buf, END) {
            let used = (p + END.len()).saturating_sub(tail.len());
            r.consume(used);
            size += used as u64;
            return Ok((size, head));
        }
        r.consume(n);
        size += n as u64;
        let keep = buf.len().min(4);
        tail = buf[buf.len() - keep..].to_vec();
    }
}

fn count_results(head: &[u8], stats: &SinkStats) {
    let text = String::from_utf8_lossy(head);
    let unfolded = text.replace("\r\n\t", " ").replace("\r\n ", " ");
    for l in unfolded.split("\r\n") {
        if l.starts_with("Authentication-Results: bench.authgate") {
            let has = |s: &str| l.contains(s);
            if has("dkim=pass") {
                stats.dkim_pass.fetch_add(1, Ordering::Relaxed);
            }
            if has("spf=pass") {
                stats.spf_pass.fetch_add(1, Ordering::Relaxed);
            }
            if has("dmarc=pass") {
                stats.dmarc_pass.fetch_add(1, Ordering::Relaxed);
            }
        } else if l.starts_with("DKIM-Signature:") && l.contains("s=bench") {
            stats.signed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------- slow DNS

async fn dns(opts: &Opts) -> Result<()> {
    let addr: SocketAddr = opts.get("listen")?.parse()?;
    let zone = Arc::new(ZoneResolver::load(&[PathBuf::from(opts.get("zone")?)])?);
    let delay = Duration::from_millis(opts.num("delay-ms", 50)? as u64);
    let udp = Arc::new(UdpSocket::bind(addr).await?);
    let tcp = TcpListener::bind(addr).await?;
    eprintln!(
        "dns on {addr} (udp+tcp), {} names, delay {delay:?}",
        zone.len()
    );
    let z = Arc::clone(&zone);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = tcp.accept().await else {
                continue;
            };
            let z = Arc::clone(&z);
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 2];
                    if sock.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len).into()];
                    if sock.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    let Some(resp) = answer(&z, &q, usize::from(u16::MAX)).await else {
                        return;
                    };
                    let mut out = (resp.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&resp);
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = udp.recv_from(&mut buf).await?;
        let q = buf[..n].to_vec();
        let (udp, zone) = (Arc::clone(&udp), Arc::clone(&zone));
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(resp) = answer(&zone, &q, 0).await {
                let _ = udp.send_to(&resp, peer).await;
            }
        });
    }
}

/// The wire answer to one query; `max == 0`: UDP (512 bytes, or the EDNS size).
async fn answer(zone: &ZoneResolver, query: &[u8], max: usize) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let q = req.queries.first()?.clone();
    let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    let limit = if max > 0 {
        max
    } else {
        req.edns
            .as_ref()
            .map_or(512, |e| usize::from(e.max_payload()).max(512))
    };
    if let Some(e) = &req.edns {
        let mut edns = e.clone();
        edns.set_max_payload(1232);
        resp.set_edns(edns);
    }
    resp.add_query(q.clone());
    let name = q.name().to_ascii();
    let rtype = match q.query_type() {
        HType::A => Some(RecordType::A),
        HType::AAAA => Some(RecordType::Aaaa),
        HType::MX => Some(RecordType::Mx),
        HType::TXT => Some(RecordType::Txt),
        HType::PTR => Some(RecordType::Ptr),
        _ => None,
    };
    let owner = q.name().clone();
    match rtype {
        None => {}
        Some(t) => match zone.lookup(&name, t).await.result {
            Ok(records) => {
                let ttl = 300;
                let rec = |d: RData| Record::from_rdata(owner.clone(), ttl, d);
                match records {
                    Records::A(v) => v.into_iter().for_each(|a| {
                        resp.add_answer(rec(RData::A(A(a))));
                    }),
                    Records::Aaaa(v) => v.into_iter().for_each(|a| {
                        resp.add_answer(rec(RData::AAAA(AAAA(a))));
                    }),
                    Records::Mx(v) => v.into_iter().for_each(|m| {
                        if let Ok(n) = Name::from_ascii(format!("{}.", m.exchange)) {
                            resp.add_answer(rec(RData::MX(MX::new(m.preference, n))));
                        }
                    }),
                    Records::Txt(v) => v.into_iter().for_each(|t| {
                        let parts: Vec<&[u8]> = t.chunks(255).collect();
                        resp.add_answer(rec(RData::TXT(TXT::from_bytes(parts))));
                    }),
                    Records::Ptr(v) => v.into_iter().for_each(|p| {
                        if let Ok(n) = Name::from_ascii(format!("{p}.")) {
                            resp.add_answer(rec(RData::PTR(PTR(n))));
                        }
                    }),
                }
            }
            Err(DnsError::NxDomain) => resp.metadata.response_code = ResponseCode::NXDomain,
            Err(DnsError::NoData) => {}
            Err(DnsError::Temporary(_)) => resp.metadata.response_code = ResponseCode::ServFail,
        },
    }
    let bytes = resp.to_vec().ok()?;
    if bytes.len() > limit {
        return resp.truncate().to_vec().ok();
    }
    Some(bytes)
}

// ---------------------------------------------------------------- zone

fn domain(tag: &str, i: usize) -> String {
    format!("m{i}.{tag}.bench.test")
}

/// The client address of message `i`: 198.18.0.0/15 (verify, outside) or
/// 10.0.0.0/16 (sign, an internal host).
fn client_ip(i: usize, internal: bool) -> Ipv4Addr {
    let (hi, lo) = (((i / 256) % 256) as u8, (i % 256) as u8);
    if internal {
        Ipv4Addr::new(10, 0, hi, lo)
    } else {
        Ipv4Addr::new(198, 18 + ((i / 65536) % 2) as u8, hi, lo)
    }
}

fn quoted_txt(text: &str) -> String {
    text.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn zone(opts: &Opts) -> Result<()> {
    let tag = opts.get("tag")?;
    let count = opts.num("count", 1000)?;
    let first = opts.num("first", 0)?;
    let key = std::fs::read_to_string(opts.get("key-record")?)?;
    let key = quoted_txt(key.trim());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "$TTL 300")?;
    for i in first..first + count {
        let d = domain(tag, i);
        let ip = client_ip(i, false).octets();
        writeln!(out, "bench._domainkey.{d}. IN TXT {key}")?;
        writeln!(out, "{d}. IN TXT \"v=spf1 ip4:198.18.0.0/15 -all\"")?;
        writeln!(out, "_dmarc.{d}. IN TXT \"v=DMARC1; p=none\"")?;
        writeln!(out, "{d}. IN A {}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])?;
        writeln!(
            out,
            "{}.{}.{}.{}.in-addr.arpa. IN PTR {d}.",
            ip[3], ip[2], ip[1], ip[0]
        )?;
    }
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------- load

struct Msg {
    from: String,
    helo: String,
    ip: Ipv4Addr,
    head: Vec<u8>,
}

fn parse_size(s: &str) -> Result<usize> {
    let s = s.to_ascii_lowercase();
    let (n, mul) = if let Some(n) = s.strip_suffix('k') {
        (n, 1024)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 1024 * 1024)
    } else {
        (s.as_str(), 1)
    };
    Ok(n.parse::<usize>()? * mul)
}

/// A plain-text body of about `size` bytes, CRLF lines under 78 columns.
fn make_body(size: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "quarterly",
        "report",
        "is",
        "attached",
        "please",
        "review",
        "before",
        "our",
        "meeting",
        "on",
        "Thursday",
        "and",
        "send",
        "comments",
        "to",
        "the",
        "list",
        "thanks",
        "regards",
        "budget",
        "figures",
        "were",
        "updated",
        "after",
        "last",
        "week's",
        "call",
    ];
    let mut body = Vec::with_capacity(size + 100);
    let mut line = String::new();
    let mut i = 0usize;
    while body.len() < size.saturating_sub(600) {
        let w = WORDS[(i * 7 + i / 3) % WORDS.len()];
        i += 1;
        if line.len() + w.len() + 1 > 72 {
            body.extend_from_slice(line.as_bytes());
            body.extend_from_slice(b"\r\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    body.extend_from_slice(line.as_bytes());
    body.extend_from_slice(b"\r\n");
    body
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds the messages; verify mode signs each with its own d=.
async fn build(opts: &Opts, sign_here: bool, body: &[u8]) -> Result<Vec<Msg>> {
    let tag = opts.get("tag")?;
    let count = opts.num("count", 1000)?;
    let first = opts.num("first", 0)?;
    let ctx = if sign_here {
        let mut config = Config {
            authserv_id: "loadgen.bench".into(),
            ..Config::default()
        };
        config.dkim.sign.allow_insecure_key_permissions = true;
        config.dkim.keys.push(KeySettings {
            name: "bench".into(),
            domain: "%".into(),
            selector: "bench".into(),
            file: PathBuf::from(opts.get("key")?),
        });
        config.dkim.signing_table.push(TableSettings {
            pattern: "*".into(),
            keys: vec!["bench".into()],
        });
        Some(Arc::new(config.context()?))
    } else {
        None
    };
    let resolver = Arc::new(ZoneResolver::default());
    let mut msgs = Vec::with_capacity(count);
    for i in first..first + count {
        let d = domain(tag, i);
        let from = format!("user{i}@{d}");
        let head = format!(
            "From: Sender {i} <{from}>\r\nTo: User <user@example.test>\r\nSubject: quarterly report {i}\r\n\
             Date: Mon, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{i}.{tag}@{d}>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        let head = match &ctx {
            None => head.into_bytes(),
            Some(ctx) => {
                let o = Options {
                    verify: false,
                    sign: true,
                    now: now_secs(),
                    envelope: Default::default(),
                };
                let mut job = MessageJob::new(Arc::clone(ctx), Arc::clone(&resolver), o);
                let _: Pushed = job.push(head.as_bytes());
                job.push(body);
                let f = job.finish().await?;
                if f.verdict.signed.is_empty() {
                    bail!("could not sign message {i}");
                }
                let mut h = Vec::new();
                f.write_head(&mut h);
                h
            }
        };
        msgs.push(Msg {
            from,
            helo: d,
            ip: client_ip(i, !sign_here),
            head,
        });
    }
    Ok(msgs)
}

/// Dot-stuffs a body (CRLF lines) and appends the final ".".
fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    line: Vec<u8>,
}

impl Conn {
    async fn open(to: SocketAddr) -> Result<Self> {
        let s = TcpStream::connect(to).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Conn {
            r: BufReader::with_capacity(16 * 1024, r),
            w,
            line: Vec::new(),
        };
        c.reply().await?;
        Ok(c)
    }
    /// Reads one (multi-line) reply; returns its code and last line.
    async fn reply(&mut self) -> Result<(u16, String)> {
        loop {
            self.line.clear();
            if read_line(&mut self.r, &mut self.line).await? == 0 {
                bail!("connection closed");
            }
            if self.line.len() < 4 || self.line[3] != b'-' {
                let text = String::from_utf8_lossy(&self.line).trim_end().to_string();
                let code = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Ok((code, text));
            }
        }
    }
    async fn cmd(&mut self, c: &str) -> Result<(u16, String)> {
        self.w.write_all(c.as_bytes()).await?;
        self.reply().await
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn load(opts: &Opts) -> Result<()> {
    let to: SocketAddr = opts.get("to")?.parse()?;
    let mode = opts.get("mode")?;
    let verify = match mode {
        "verify" => true,
        "sign" => false,
        _ => bail!("--mode sign|verify"),
    };
    let size = parse_size(opts.get("size")?)?;
    let conc = opts.num("conc", 1)?.max(1);
    let rtt = Duration::from_millis(opts.num("rtt-ms", 0)? as u64);
    let body = make_body(size);
    let msgs = Arc::new(build(opts, verify, &body).await?);
    let data = Arc::new(stuffed(&body));
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (msgs, data, next, errors) = (
            Arc::clone(&msgs),
            Arc::clone(&data),
            Arc::clone(&next),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            let mut times: Vec<(f64, f64)> = Vec::new();
            let mut c = Conn::open(to).await?;
            c.cmd("EHLO loadgen.bench\r\n").await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = msgs.get(i) else { break };
                let wait = || async {
                    if !rtt.is_zero() {
                        tokio::time::sleep(rtt).await;
                    }
                };
                wait().await;
                let t0 = Instant::now();
                c.cmd(&format!(
                    "XFORWARD NAME={} ADDR={} PROTO=ESMTP HELO={}\r\n",
                    m.helo, m.ip, m.helo
                ))
                .await?;
                wait().await;
                let (code, text) = c.cmd(&format!("MAIL FROM:<{}>\r\n", m.from)).await?;
                if code != 250 {
                    bail!("MAIL: {text}");
                }
                wait().await;
                c.cmd("RCPT TO:<user@example.test>\r\n").await?;
                wait().await;
                let (code, text) = c.cmd("DATA\r\n").await?;
                if code != 354 {
                    bail!("DATA: {text}");
                }
                wait().await;
                c.w.write_all(&m.head).await?;
                c.w.write_all(&data).await?;
                let t_eod = Instant::now();
                let (code, _) = c.reply().await?;
                let t1 = Instant::now();
                if code != 250 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                times.push((
                    (t1 - t0).as_secs_f64() * 1e3,
                    (t1 - t_eod).as_secs_f64() * 1e3,
                ));
            }
            let _ = c.cmd("QUIT\r\n").await;
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut lat = Vec::new();
    let mut e2r = Vec::new();
    for t in tasks {
        for (a, b) in t.await?? {
            lat.push(a);
            e2r.push(b);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    e2r.sort_by(f64::total_cmp);
    let n = lat.len();
    let bytes = (msgs.iter().map(|m| m.head.len()).sum::<usize>() + n * data.len()) as f64;
    let checks = match opts.opt("sink") {
        Some(s) => {
            let mut c = Conn::open(s.parse()?).await?;
            let (_, text) = c.cmd("XSTATS\r\n").await?;
            let _ = c.cmd("QUIT\r\n").await;
            text.trim_start_matches("250 ").to_string()
        }
        None => String::new(),
    };
    println!(
        "{{\"label\":\"{}\",\"mode\":\"{mode}\",\"size\":\"{}\",\"conc\":{conc},\"rtt_ms\":{},\"msgs\":{n},\"errors\":{},\"secs\":{secs:.3},\"msgs_per_s\":{:.1},\"MB_per_s\":{:.2},\"lat_p50\":{:.2},\"lat_p95\":{:.2},\"lat_p99\":{:.2},\"e2r_p50\":{:.2},\"e2r_p95\":{:.2},\"e2r_p99\":{:.2},\"sink\":\"{checks}\"}}",
        opts.opt("label").unwrap_or("-"),
        opts.get("size")?,
        rtt.as_millis(),
        errors.load(Ordering::Relaxed),
        n as f64 / secs,
        bytes / 1e6 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.95),
        pct(&lat, 0.99),
        pct(&e2r, 0.5),
        pct(&e2r, 0.95),
        pct(&e2r, 0.99),
    );
    Ok(())
}

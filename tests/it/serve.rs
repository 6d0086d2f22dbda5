//! `authgate serve` in process, between a scripted client and a scripted
//! next hop (SMTP or LMTP sink) on loopback: relaying, pipelining, LMTP
//! per-recipient replies, failures turning into 4xx, policy, limits. The
//! proxy's timeouts are tested in virtual time in `proxy_io`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authgate::config::Config;
use authgate::daemon::Front;
use authgate::server::Snapshot;
use authgate::server::run::{Server, bind_all};
use authgate::sockaddr::SocketAddress;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::oracles::{dkim_fixtures, fixture_message};
use crate::support::fixtures;

/// How the sink behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SinkMode {
    /// Accept everything (SMTP: one reply; LMTP: one per recipient, 452
    /// for recipients containing "quota").
    #[default]
    Accept,
    /// 451 after the final dot.
    TempfailData,
    /// Close the connection when the final dot arrives.
    DieOnData,
    /// Accept the message, then say 421 and close, as Postfix's smtpd does
    /// at its idle timeout.
    CloseAfterMessage,
}

/// One transaction as the next hop saw it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub xforward: Vec<String>,
    pub mail: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    pub rset: usize,
}

#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Sessions ended by QUIT.
    pub quits: Arc<AtomicUsize>,
}

impl Sink {
    pub async fn start(lmtp: bool, mode: SinkMode) -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (connections, quits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, c, q) = (
            Arc::clone(&seen),
            Arc::clone(&connections),
            Arc::clone(&quits),
        );
        tokio::spawn(async move {
            while let Ok((conn, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (s, q) = (Arc::clone(&s), Arc::clone(&q));
                tokio::spawn(async move {
                    if sink_over(conn, lmtp, mode, s).await {
                        q.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Sink {
            addr,
            seen,
            connections,
            quits,
        }
    }

    pub fn transactions(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// One next-hop session; true when the client ended it with QUIT.
async fn sink_over<S>(conn: S, lmtp: bool, mode: SinkMode, seen: Arc<Mutex<Vec<Seen>>>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (r, mut w) = tokio::io::split(conn);
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink.test ESMTP\r\n").await.unwrap();
    let mut cur = Seen::default();
    let mut n = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("LHLO") {
            "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE\r\n".into()
        } else if upper.starts_with("XFORWARD") {
            cur.xforward.push(line.trim_end().to_string());
            "250 2.0.0 Ok\r\n".into()
        } else if upper.starts_with("MAIL") {
            if line.contains("refuse-mail") {
                "451 4.3.0 sink refuses this sender\r\n".into()
            } else {
                cur.mail = line.trim_end().to_string();
                "250 2.1.0 Ok\r\n".into()
            }
        } else if upper.starts_with("RCPT") {
            if cur.mail.is_empty() {
                "503 5.5.1 Error: need MAIL command\r\n".into()
            } else if line.contains("unknown") {
                format!("550 5.1.1 {} User unknown\r\n", line.trim_end())
            } else {
                cur.rcpts.push(line.trim_end().to_string());
                "250 2.1.5 Ok\r\n".into()
            }
        } else if upper.starts_with("RSET") {
            cur = Seen {
                rset: cur.rset + 1,
                ..Seen::default()
            };
            "250 2.0.0 Ok\r\n".into()
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go\r\n").await.unwrap();
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                r.read_until(b'\n', &mut l).await.unwrap();
                if l == b".\r\n" || l.is_empty() {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            cur.data = data;
            let rcpts = cur.rcpts.clone();
            seen.lock().unwrap().push(std::mem::take(&mut cur));
            n += 1;
            match mode {
                SinkMode::DieOnData => return false,
                SinkMode::CloseAfterMessage => {
                    let _ = w.write_all(b"250 2.0.0 Ok\r\n").await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = w
                        .write_all(b"421 4.4.2 sink.test Error: timeout exceeded\r\n")
                        .await;
                    return false;
                }
                SinkMode::TempfailData => "451 4.3.0 sink says later\r\n".into(),
                SinkMode::Accept if lmtp => rcpts
                    .iter()
                    .map(|r| {
                        if r.contains("quota") {
                            "452 4.2.2 Quota exceeded\r\n".to_string()
                        } else {
                            format!("250 2.0.0 {} Saved\r\n", &r[8..])
                        }
                    })
                    .collect(),
                SinkMode::Accept => format!("250 2.0.0 Ok: queued as SINK{n}\r\n"),
            }
        } else if upper.starts_with("QUIT") {
            let _ = w.write_all(b"221 2.0.0 Bye\r\n").await;
            return true;
        } else {
            "502 5.5.2 what\r\n".into()
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return false;
        }
    }
}

/// A raw SMTP client.
pub struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            r: BufReader::new(r),
            w,
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    /// One complete reply: (code, all text lines joined by '\n').
    pub async fn reply(&mut self) -> (u16, String) {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(n > 0, "connection closed while waiting for a reply");
            let code: u16 = line[..3].parse().unwrap();
            text.push(line[4..].trim_end().to_string());
            if line.as_bytes()[3] == b' ' {
                return (code, text.join("\n"));
            }
        }
    }

    pub async fn expect(&mut self, code: u16) -> String {
        let (c, t) = self.reply().await;
        assert_eq!(c, code, "expected {code}, got {c} {t}");
        t
    }

    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.r.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

pub struct Proxy {
    pub server: Server<Front>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Starts `serve` in process with `extra` TOML (listener fields go in
/// `listener_extra`), next hop = `hop`.
pub async fn start_proxy(hop: SocketAddr, listener_extra: &str, extra: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authgate.toml");
    let zones = [
        fixtures().join("policy/policy.zone"),
        dkim_fixtures().join("keys.zone"),
        dkim_fixtures().join("rfc8463.zone"),
    ];
    let zones: Vec<String> = zones
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    std::fs::write(
        &path,
        format!(
            "authserv_id = \"test.authserv\"\n{extra}\n[dns]\nzone_files = [{}]\n\n[[listener]]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{hop}\"\n{listener_extra}\n",
            zones.join(", ")
        ),
    )
    .unwrap();
    let config = Config::load(Some(&path), figment::Figment::new()).unwrap();
    let listeners = config.listeners().unwrap();
    let bound = bind_all(&listeners).await.unwrap();
    let server = Server::start(bound, Snapshot::build(config).unwrap(), Front::for_listener);
    let SocketAddress::Tcp(addr) = server.local_addrs()[0].clone() else {
        panic!("tcp")
    };
    Proxy {
        server,
        addr,
        _dir: dir,
    }
}

/// An accepting SMTP sink, `serve` in front of it (`start_proxy` arguments),
/// and a client that has said EHLO.
async fn proxied(listener_extra: &str, extra: &str) -> (Sink, Proxy, Client) {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = start_proxy(sink.addr, listener_extra, extra).await;
    let c = hello(p.addr, "EHLO").await;
    (sink, p, c)
}

pub(crate) async fn hello(addr: SocketAddr, verb: &str) -> Client {
    let mut c = Client::connect(addr).await;
    c.expect(220).await;
    c.send(&format!("{verb} client.example\r\n")).await;
    c.expect(250).await;
    c
}

/// MAIL FROM `from`, RCPT TO b@example.test, DATA: both accepted, 354.
pub(crate) async fn start_data(c: &mut Client, from: &str) {
    c.send(&format!(
        "MAIL FROM:<{from}>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
    ))
    .await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(354).await;
}

fn dotted(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_with_authentication_results_and_the_next_hops_reply() {
    let (sink, _p, mut c) = proxied("", "").await;
    c.send("XFORWARD NAME=mail.example.org ADDR=192.0.2.1 PROTO=ESMTP HELO=mail.example.org\r\n")
        .await;
    c.expect(250).await;
    c.send("XFORWARD IDENT=4ABCDEF SOURCE=REMOTE\r\n").await;
    c.expect(250).await;
    c.send("MAIL FROM:<joe@football.example.com> BODY=8BITMIME ENVID=QQ291\r\n")
        .await;
    c.expect(250).await;
    c.send(
        "RCPT TO:<suzie@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;suzie@example.test\r\n",
    )
    .await;
    c.expect(250).await;
    c.send("DATA\r\n").await;
    c.expect(354).await;
    c.send_bytes(&dotted(&fixture_message("rfc8463.eml"))).await;
    let text = c.expect(250).await;
    assert_eq!(
        text, "2.0.0 Ok: queued as SINK1",
        "the next hop's own reply"
    );
    c.send("QUIT\r\n").await;
    c.expect(221).await;
    let t = &sink.transactions()[0];
    assert_eq!(
        t.mail,
        "MAIL FROM:<joe@football.example.com> BODY=8BITMIME ENVID=QQ291"
    );
    assert_eq!(
        t.rcpts,
        ["RCPT TO:<suzie@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;suzie@example.test"]
    );
    let xf = t.xforward.join(" ");
    assert!(
        xf.contains("ADDR=192.0.2.1") && xf.contains("IDENT=4ABCDEF"),
        "{xf}"
    );
    let data = String::from_utf8_lossy(&t.data);
    assert!(
        data.starts_with("Authentication-Results: test.authserv;"),
        "{data}"
    );
    assert!(data.contains("dkim=pass"), "{data}");
    let original = String::from_utf8(fixture_message("rfc8463.eml")).unwrap();
    let body = original.split_once("\r\n\r\n").unwrap().1;
    assert!(data.ends_with(body), "the body is relayed unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_commands_get_replies_in_order() {
    let (sink, _p, mut c) = proxied("", "").await;
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<unknown@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n").await;
    c.expect(250).await;
    c.expect(250).await;
    let t = c.expect(550).await;
    assert!(
        t.contains("5.1.1") && t.contains("User unknown"),
        "next hop's text: {t}"
    );
    c.expect(250).await;
    c.expect(354).await;
    c.send("Subject: x\r\n\r\n..dot line\r\n.\r\nMAIL FROM:<>\r\nRSET\r\n")
        .await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(250).await;
    let t = &sink.transactions()[0];
    assert_eq!(t.rcpts.len(), 2);
    assert!(
        t.data.ends_with(b"\r\n.dot line\r\n"),
        "{:?}",
        String::from_utf8_lossy(&t.data)
    );
}

/// MAIL and RCPT go to the next hop pipelined: when it refuses MAIL, the
/// client sees that refusal and the hop's own 503 for the RCPT behind it,
/// in order, and the connection goes on.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_rcpt_behind_a_refused_mail_gets_the_hops_reply() {
    let (sink, _p, mut c) = proxied("", "").await;
    c.send("MAIL FROM:<refuse-mail@example.org>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n").await;
    let t = c.expect(451).await;
    assert!(t.contains("sink refuses"), "the next hop's reply: {t}");
    c.expect(503).await;
    c.expect(503).await;
    c.expect(503).await;
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        .await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(354).await;
    c.send("Subject: x\r\n\r\nbody\r\n.\r\n").await;
    c.expect(250).await;
    let seen = sink.transactions();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].rcpts, ["RCPT TO:<b@example.test>"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lmtp_passes_each_recipients_reply_in_order() {
    let sink = Sink::start(true, SinkMode::Accept).await;
    let p = start_proxy(
        sink.addr,
        "protocol = \"lmtp\"\nnext_hop_protocol = \"lmtp\"",
        "",
    )
    .await;
    let mut c = hello(p.addr, "LHLO").await;
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<unknown@example.test>\r\nRCPT TO:<quota@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n").await;
    for code in [250, 250, 550, 250, 250, 354] {
        c.expect(code).await;
    }
    c.send("Subject: hi\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.expect(250).await.contains("alice@example.test"));
    assert_eq!(c.expect(452).await, "4.2.2 Quota exceeded");
    assert!(c.expect(250).await.contains("bob@example.test"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_next_hop_is_a_421_greeting() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let p = start_proxy(dead, "", "").await;
    let mut c = Client::connect(p.addr).await;
    let t = c.expect(421).await;
    assert!(t.contains("4.4.1"), "{t}");
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_hop_dying_at_end_of_data_is_a_4xx_never_a_2xx() {
    for mode in [SinkMode::DieOnData, SinkMode::TempfailData] {
        let sink = Sink::start(false, mode).await;
        let p = start_proxy(sink.addr, "", "").await;
        let mut c = hello(p.addr, "EHLO").await;
        start_data(&mut c, "a@example.org").await;
        c.send("Subject: x\r\n\r\nbody\r\n.\r\n").await;
        let (code, text) = c.reply().await;
        assert!((400..500).contains(&code), "{mode:?}: {code} {text}");
        if mode == SinkMode::TempfailData {
            assert_eq!(text, "4.3.0 sink says later");
        }
    }
}

pub(crate) const DMARC_FAIL: &str =
    "From: <ceo@example.org>\r\nTo: <b@example.test>\r\nSubject: pay\r\n\r\nwire money\r\n.\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn before_queue_dmarc_reject_is_a_550_and_nothing_is_relayed() {
    let (sink, _p, mut c) = proxied("mode = \"before-queue\"", "").await;
    c.send("XFORWARD ADDR=203.0.113.9 HELO=spoofer.example\r\n")
        .await;
    c.expect(250).await;
    start_data(&mut c, "ceo@example.org").await;
    c.send(DMARC_FAIL).await;
    let t = c.expect(550).await;
    assert!(t.starts_with("5.7.1"), "{t}");
    // The same words as the milter and the pipe (outcome::Answer).
    assert!(t.contains("Message refused: DMARC policy of"), "{t}");
    c.send("QUIT\r\n").await;
    c.expect(221).await;
    assert!(
        sink.transactions().is_empty(),
        "a refused message never reaches the next hop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_queue_dmarc_reject_is_quarantined_not_bounced() {
    let (sink, _p, mut c) = proxied("", "").await;
    c.send("XFORWARD ADDR=203.0.113.9 HELO=spoofer.example\r\n")
        .await;
    c.expect(250).await;
    start_data(&mut c, "ceo@example.org").await;
    c.send(DMARC_FAIL).await;
    c.expect(250).await;
    let data = String::from_utf8_lossy(&sink.transactions()[0].data).into_owned();
    assert!(data.contains("dmarc=fail"), "{data}");
    assert!(data.contains("X-Authgate-Quarantine: dmarc"), "{data}");
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_clients_are_signed() {
    let keys = crate::oracles::test_keys();
    let extra = format!(
        "[trust]\ninternal_hosts = [\"10.0.0.0/8\"]\n[[dkim.keys]]\nname = \"k\"\ndomain = \"example.com\"\nselector = \"rsa2048\"\nfile = {:?}\n[[dkim.signing_table]]\npattern = \"*@example.com\"\nkeys = [\"k\"]\n",
        keys.rsa.display().to_string()
    );
    let (sink, _p, mut c) = proxied("", &extra).await;
    c.send("XFORWARD ADDR=10.1.2.3\r\n").await;
    c.expect(250).await;
    c.send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        .await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(354).await;
    c.send("From: Alice <alice@example.com>\r\nTo: b@example.net\r\nSubject: hi\r\n\r\n.leading dot\r\nbye\r\n.\r\n").await;
    c.expect(250).await;
    let data = sink.transactions()[0].data.clone();
    assert!(
        data.starts_with(b"DKIM-Signature:"),
        "{}",
        String::from_utf8_lossy(&data)
    );
    // An independent verifier agrees.
    let results = crate::oracles::oracle_verify(crate::oracles::Oracle::Dkimpy, &data, &keys.zone);
    assert_eq!(results, ["pass"]);
    // RFC 6376 §5.4: no From (the envelope names an author the table
    // matches) means no signature; relayed unsigned and intact, never a 4xx.
    c.send("XFORWARD ADDR=10.1.2.3\r\n").await;
    c.expect(250).await;
    c.send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        .await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(354).await;
    c.send("To: b@example.net\r\nSubject: no from\r\n\r\nbye\r\n.\r\n")
        .await;
    c.expect(250).await;
    let data = sink.transactions()[1].data.clone();
    assert!(
        data.starts_with(b"To: b@example.net\r\nSubject: no from\r\n"),
        "{}",
        String::from_utf8_lossy(&data)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bdat_chunks_are_relayed_as_one_message() {
    let (sink, _p, mut c) = proxied("", "").await;
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n")
        .await;
    c.expect(250).await;
    c.expect(250).await;
    let part1 = b"Subject: chunks\r\n\r\n.not stuffed in BDAT\r\n";
    let part2 = b"end\r\n";
    c.send(&format!("BDAT {}\r\n", part1.len())).await;
    c.send_bytes(part1).await;
    c.expect(250).await;
    c.send(&format!("BDAT {} LAST\r\n", part2.len())).await;
    c.send_bytes(part2).await;
    assert!(c.expect(250).await.contains("SINK1"));
    let data = sink.transactions()[0].data.clone();
    assert!(
        data.ends_with(b"\r\n.not stuffed in BDAT\r\nend\r\n"),
        "{}",
        String::from_utf8_lossy(&data)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_give_clean_5xx() {
    let (sink, _p, mut c) = proxied(
        "",
        "[server]\nmax_message_size = 2000\nmax_line_length = 100",
    )
    .await;
    c.send("MAIL FROM:<a@example.org> SIZE=5000\r\n").await;
    assert!(c.expect(552).await.starts_with("5.3.4"));
    for (body, code) in [("x".repeat(3000), 552), ("y".repeat(150), 554)] {
        start_data(&mut c, "a@example.org").await;
        c.send(&format!("Subject: big\r\n\r\n{body}\r\n.\r\n"))
            .await;
        c.expect(code).await;
    }
    // The session goes on.
    c.send("NOOP\r\n").await;
    c.expect(250).await;
    assert!(sink.transactions().is_empty());
    let long = "A".repeat(5000);
    c.send(&format!("{long}\r\nNOOP\r\n")).await;
    c.expect(500).await;
    c.expect(250).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_past_the_limit_get_421() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = start_proxy(sink.addr, "", "[server]\nmax_sessions = 1").await;
    let mut first = hello(p.addr, "EHLO").await;
    let mut second = Client::connect(p.addr).await;
    assert!(second.expect(421).await.contains("4.3.2"));
    first.send("QUIT\r\n").await;
    first.expect(221).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_a_message_in_flight_finish_and_closes_idle_sessions() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = start_proxy(sink.addr, "", "").await;
    let mut busy = hello(p.addr, "EHLO").await;
    let mut idle = hello(p.addr, "EHLO").await;
    start_data(&mut busy, "a@example.org").await;
    busy.send("Subject: x\r\n\r\nhalf").await;
    let stop = tokio::spawn(p.server.shutdown(Duration::from_secs(10)));
    let (code, _) = idle.reply().await;
    assert_eq!(code, 421, "idle sessions are told to go");
    busy.send(" and the rest\r\n.\r\n").await;
    busy.expect(250).await;
    busy.send("QUIT\r\n").await;
    let _ = busy.reply().await;
    assert!(stop.await.unwrap(), "all sessions finished");
    assert_eq!(sink.transactions().len(), 1);
    assert!(
        TcpStream::connect(p.addr).await.is_err(),
        "no longer listening"
    );
}

/// A free loopback port (bound and released; the race is harmless here).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Daemon {
    child: std::process::Child,
    pub(crate) addr: SocketAddr,
    stderr: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub(crate) async fn start(config: &std::path::Path, dir: &std::path::Path) -> Daemon {
        let port = free_port();
        let stderr = dir.join("stderr.log");
        // Waited for in Drop (and by the tests that stop it).
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                return Daemon {
                    child,
                    addr,
                    stderr,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "serve did not start: {}",
            std::fs::read_to_string(&stderr).unwrap()
        );
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    pub(crate) async fn wait_log(&self, needle: &str) {
        for _ in 0..200 {
            if self.log().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {needle:?} in the log:\n{}", self.log());
    }
}

async fn send_one(addr: SocketAddr) -> String {
    let mut c = hello(addr, "EHLO").await;
    start_data(&mut c, "a@example.org").await;
    c.send("From: a@example.org\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        .await;
    let t = c.expect(250).await;
    c.expect(221).await;
    t
}

pub(crate) fn write_config(
    path: &std::path::Path,
    authserv_id: &str,
    hop: SocketAddr,
    extra: &str,
) {
    let zone = fixtures().join("policy/policy.zone");
    std::fs::write(
        path,
        format!(
            "authserv_id = \"{authserv_id}\"\n{extra}\n[dns]\nzone_files = [{:?}]\n[[listener]]\nnext_hop = \"{hop}\"\n",
            zone.display().to_string()
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    write_config(&config, "one.example", sink.addr, "");
    let d = Daemon::start(&config, dir.path()).await;
    send_one(d.addr).await;
    // A session opened before the reload keeps its configuration.
    let mut early = hello(d.addr, "EHLO").await;

    write_config(&config, "two.example", sink.addr, "");
    d.signal("-HUP");
    d.wait_log("configuration and keys reloaded").await;
    send_one(d.addr).await;

    write_config(
        &config,
        "three.example",
        sink.addr,
        "[dkim.sign]\ncanonicalization = \"bogus\"",
    );
    d.signal("-HUP");
    d.wait_log("reload refused").await;
    send_one(d.addr).await;

    early
        .send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        .await;
    early.expect(250).await;
    early.expect(250).await;
    early.expect(354).await;
    early.send("Subject: early\r\n\r\nx\r\n.\r\n").await;
    early.expect(250).await;

    let ids: Vec<String> = sink
        .transactions()
        .iter()
        .map(|t| {
            let d = String::from_utf8_lossy(&t.data).into_owned();
            d.split(';')
                .next()
                .unwrap()
                .trim_start_matches("Authentication-Results: ")
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        ["one.example", "two.example", "two.example", "one.example"]
    );
    assert!(
        d.log().contains("canonicalization"),
        "the refusal says why:\n{}",
        d.log()
    );

    d.signal("-TERM");
    let mut d = d;
    let mut status = None;
    for _ in 0..200 {
        status = d.child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(status.unwrap().success(), "SIGTERM exits 0");
}

/// `server.threads`: one thread (the default, covered by every other
/// daemon test), a fixed number, or one per core all serve the same way.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_serves_with_any_number_of_threads() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    for threads in [0, 3] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("authgate.toml");
        let extra = format!("[server]\nthreads = {threads}");
        write_config(&config, "mx.example", sink.addr, &extra);
        let d = Daemon::start(&config, dir.path()).await;
        // Several sessions at once.
        let sends: Vec<_> = (0..4).map(|_| tokio::spawn(send_one(d.addr))).collect();
        for s in sends {
            s.await.unwrap();
        }
        d.signal("-TERM");
    }
    assert_eq!(sink.transactions().len(), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_line_carries_queue_id_client_and_results() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    write_config(
        &config,
        "mx.example",
        sink.addr,
        "[server]\nmax_line_length = 100\n",
    );
    let d = Daemon::start(&config, dir.path()).await;
    let mut c = hello(d.addr, "EHLO").await;
    c.send("XFORWARD ADDR=192.0.2.1 HELO=mail.example.org IDENT=4QUEUEID\r\n")
        .await;
    c.expect(250).await;
    start_data(&mut c, "a@example.org").await;
    c.send("From: a@example.org\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
        .await;
    c.expect(250).await;
    d.wait_log("queue_id=4QUEUEID ").await;
    let log = d.log();
    let line = log.lines().find(|l| l.contains("4QUEUEID")).unwrap();
    for want in [
        "client=192.0.2.1",
        "from=a@example.org",
        "spf=pass",
        "dmarc=",
        "dkim=none",
        "outcome=",
    ] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    // A message the proxy refuses itself gets the same line, with the reason.
    c.send("XFORWARD IDENT=4REFUSED\r\n").await;
    c.expect(250).await;
    start_data(&mut c, "a@example.org").await;
    let long = "x".repeat(200);
    c.send(&format!("From: a@example.org\r\n\r\n{long}\r\n.\r\n"))
        .await;
    c.expect(554).await;
    d.wait_log("queue_id=4REFUSED ").await;
    let log = d.log();
    let line = log.lines().find(|l| l.contains("4REFUSED")).unwrap();
    for want in [
        "from=a@example.org",
        "disposition=reject",
        "outcome=rejected 554 5.6.0 Message has a line longer than 100 bytes",
    ] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    d.signal("-TERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_sockets_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let hop_path = dir.path().join("hop.sock");
    let hop = tokio::net::UnixListener::bind(&hop_path).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((conn, _)) = hop.accept().await {
            tokio::spawn(sink_over(conn, true, SinkMode::Accept, Arc::clone(&s2)));
        }
    });
    let listen = dir.path().join("authgate.sock");
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!(
            "authserv_id = \"u\"\n[dns]\nzone_files = [{:?}]\n[[listener]]\nlisten = \"unix:{}\"\nprotocol = \"lmtp\"\nnext_hop = \"unix:{}\"\nnext_hop_protocol = \"lmtp\"\nsocket_mode = \"0600\"\n",
            fixtures().join("policy/policy.zone").display().to_string(),
            listen.display(),
            hop_path.display()
        ),
    )
    .unwrap();
    let config = Config::load(Some(&config), figment::Figment::new()).unwrap();
    let bound = bind_all(&config.listeners().unwrap()).await.unwrap();
    let server = Server::start(bound, Snapshot::build(config).unwrap(), Front::for_listener);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&listen).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let conn = tokio::net::UnixStream::connect(&listen).await.unwrap();
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    let mut transcript = String::new();
    w.write_all(b"LHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        .await
        .unwrap();
    for _ in 0..40 {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        transcript.push_str(&line);
        if line.starts_with("354") {
            break;
        }
    }
    w.write_all(b"Subject: u\r\n\r\nx\r\n.\r\n").await.unwrap();
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(
        line.starts_with("250 2.0.0 <alice@example.test> Saved"),
        "{transcript}{line}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(server.shutdown(Duration::from_secs(5)).await);
    assert!(!listen.exists(), "the socket file is removed on exit");
}

#[test]
fn config_check_refuses_listeners_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[listener]]\nprotocol = \"smtp\"\nnext_hop_protocol = \"lmtp\"\n",
            "cannot relay to an LMTP next hop",
        ),
        ("[[listener]]\nlisten = \"10025\"\n", "127.0.0.1:PORT"),
        (
            "[[listener]]\nlisten = \"unix:/tmp/x\"\nsocket_mode = \"rw\"\n",
            "octal",
        ),
        ("[[listener]]\nrole = \"sideways\"\n", "sideways"),
    ];
    for (toml, want) in cases {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let out = crate::support::authgate()
            .args(["config", "check", "--dns-zone"])
            .arg(fixtures().join("policy/policy.zone"))
            .arg("--config")
            .arg(&path)
            .assert()
            .failure();
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(err.contains(want), "{toml}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_temperror_with_tempfail_policy_is_a_451() {
    let (sink, _p, mut c) = proxied(
        "mode = \"before-queue\"",
        "[dmarc]\ntemperror_action = \"tempfail\"",
    )
    .await;
    c.send("XFORWARD ADDR=192.0.2.1 HELO=mail.example.org\r\n")
        .await;
    c.expect(250).await;
    start_data(&mut c, "a@flaky.example").await;
    c.send("From: a@flaky.example\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
        .await;
    let t = c.expect(451).await;
    assert!(t.starts_with("4.7.1"), "{t}");
    assert!(
        t.contains("Try again later: DMARC temporary error for flaky.example"),
        "{t}"
    );
    assert!(sink.transactions().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_past_the_spool_threshold_is_relayed_intact() {
    let (sink, _p, mut c) = proxied("", "[message]\nspool_threshold = 1024").await;
    start_data(&mut c, "a@example.org").await;
    let mut body = String::new();
    for i in 0..5000 {
        body.push_str(&format!(
            "{}line {i} of a long body\r\n",
            if i % 7 == 0 { "." } else { "" }
        ));
    }
    let msg = format!("From: a@example.org\r\nSubject: big\r\n\r\n{body}");
    c.send_bytes(&dotted(msg.as_bytes())).await;
    c.expect(250).await;
    let data = sink.transactions()[0].data.clone();
    assert!(
        data.ends_with(body.as_bytes()),
        "body changed in the spool round trip"
    );
}

/// BDAT chunks past the spool threshold: each chunk's body bytes go to the
/// spool file off the runtime thread, and the message arrives intact.
#[tokio::test(flavor = "multi_thread")]
async fn bdat_chunks_past_the_spool_threshold_are_relayed_intact() {
    let (sink, _p, mut c) = proxied("", "[message]\nspool_threshold = 1024").await;
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n")
        .await;
    c.expect(250).await;
    c.expect(250).await;
    let mut body = String::new();
    for i in 0..3000 {
        body.push_str(&format!(".line {i} of a chunked body\r\n"));
    }
    let msg = format!("From: a@example.org\r\nSubject: big chunks\r\n\r\n{body}");
    let chunks: Vec<&[u8]> = msg.as_bytes().chunks(7000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() { " LAST" } else { "" };
        c.send(&format!("BDAT {}{last}\r\n", chunk.len())).await;
        c.send_bytes(chunk).await;
        c.expect(250).await;
    }
    let data = sink.transactions()[0].data.clone();
    assert!(
        data.ends_with(body.as_bytes()),
        "body changed in the spool round trip"
    );
}

/// A spool that cannot be written (its directory does not exist) is a
/// local temporary failure of that message: the rest of DATA is still read,
/// the message gets a 451 of its own (not the next hop's 421), the next
/// hop's transaction is reset, and the session goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_spool_is_a_451_for_that_message_and_the_session_goes_on() {
    let missing = tempfile::tempdir().unwrap().path().join("gone");
    let extra = format!(
        "[message]\nspool_threshold = 0\nspool_dir = {:?}",
        missing.display().to_string()
    );
    let (sink, _p, mut c) = proxied("", &extra).await;
    start_data(&mut c, "a@example.org").await;
    let mut body = String::new();
    for i in 0..2000 {
        body.push_str(&format!("line {i} of a body that goes to the spool\r\n"));
    }
    let msg = format!("From: a@example.org\r\nSubject: spool\r\n\r\n{body}");
    c.send_bytes(&dotted(msg.as_bytes())).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 451, "{text}");
    assert_eq!(text, "4.3.0 Error: local spool failure, try again later");
    // The session goes on: a message with no body needs no spool.
    start_data(&mut c, "a@example.org").await;
    c.send("From: a@example.org\r\nSubject: second\r\n\r\n.\r\n")
        .await;
    c.expect(250).await;
    c.send("QUIT\r\n").await;
    c.expect(221).await;
    let seen = sink.transactions();
    assert_eq!(seen.len(), 1, "only the second message is relayed");
    assert!(String::from_utf8_lossy(&seen[0].data).contains("Subject: second"));
}

#[tokio::test(flavor = "multi_thread")]
async fn xclient_from_a_before_queue_proxy_reaches_the_next_hop_as_xforward() {
    let (sink, _p, mut c) = proxied("mode = \"before-queue\"", "").await;
    c.send("XCLIENT ADDR=192.0.2.1 NAME=mail.example.org HELO=mail.example.org\r\n")
        .await;
    assert!(c.expect(220).await.contains("ESMTP"));
    c.send("EHLO mail.example.org\r\n").await;
    c.expect(250).await;
    start_data(&mut c, "a@example.org").await;
    c.send("From: a@example.org\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
        .await;
    c.expect(250).await;
    let t = &sink.transactions()[0];
    let xf = t.xforward.join(" ");
    assert!(
        xf.contains("ADDR=192.0.2.1") && xf.contains("NAME=mail.example.org"),
        "{xf}"
    );
    let data = String::from_utf8_lossy(&t.data);
    assert!(
        data.contains("spf=pass"),
        "SPF ran for the XCLIENT address: {data}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_and_milter_listeners_share_one_process() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = start_proxy(
        sink.addr,
        "[[listener]]\nlisten = \"127.0.0.1:0\"\nprotocol = \"milter\"",
        "",
    )
    .await;
    assert_eq!(p.server.local_addrs().len(), 2);
    let SocketAddress::Tcp(milter) = p.server.local_addrs()[1].clone() else {
        panic!("tcp")
    };
    // Milter option negotiation (SMFIC_OPTNEG, protocol version 6).
    let mut m = TcpStream::connect(milter).await.unwrap();
    let mut pkt = vec![0, 0, 0, 13, b'O'];
    for v in [6u32, 0x1ff, 0x1f_ffff] {
        pkt.extend_from_slice(&v.to_be_bytes());
    }
    m.write_all(&pkt).await.unwrap();
    let mut head = [0u8; 5];
    m.read_exact(&mut head).await.unwrap();
    assert_eq!(head[4], b'O', "the milter listener negotiates");
    // And the SMTP listener relays.
    send_one(p.addr).await;
    assert_eq!(sink.transactions().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn log_format_json_writes_one_object_per_message() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    write_config(&config, "mx.example", sink.addr, "");
    let port = free_port();
    let stderr = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        stderr,
        child: std::process::Command::new("true").spawn().unwrap(),
    };
    for _ in 0..200 {
        if TcpStream::connect(d.addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    send_one(d.addr).await;
    d.wait_log("\"queue_id\"").await;
    let _ = child.kill();
    let _ = child.wait();
    let line = d
        .log()
        .lines()
        .find(|l| l.contains("\"queue_id\""))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["client"], "127.0.0.1", "{v}");
    assert_eq!(v["spf"], "fail", "{v}");
    assert_eq!(v["from"], "a@example.org", "{v}");
    assert!(
        v["outcome"].as_str().unwrap().starts_with("relayed 250"),
        "{v}"
    );
}

/// One client: EHLO, XFORWARD with its own address, a message, QUIT; waits
/// until the proxy has closed the client side (the next hop is parked or
/// closed by then, a moment later).
async fn one_message_session(addr: SocketAddr, n: usize) {
    let mut c = hello(addr, "EHLO").await;
    c.send(&format!("XFORWARD ADDR=192.0.2.{n}\r\n")).await;
    c.expect(250).await;
    start_data(&mut c, "a@example.org").await;
    c.send_bytes(&dotted(b"Subject: pool\r\n\r\nbody\r\n"))
        .await;
    c.expect(250).await;
    c.send("QUIT\r\n").await;
    c.expect(221).await;
    assert!(c.closed().await);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Messages the next hop received, and connections it accepted.
fn relayed(sink: &Sink) -> (usize, usize) {
    (
        sink.transactions().len(),
        sink.connections.load(Ordering::SeqCst),
    )
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn next_hop_connections_are_reused_by_the_next_clients() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = start_proxy(sink.addr, "", "").await;
    for n in 1..=3 {
        one_message_session(p.addr, n).await;
    }
    assert_eq!(relayed(&sink), (3, 1), "(messages, next-hop connections)");
    // Each client's own XFORWARD went before its own MAIL.
    for (n, t) in sink.transactions().iter().enumerate() {
        let want = format!("ADDR=192.0.2.{}", n + 1);
        assert!(t.xforward.join(" ").contains(&want), "{t:?}");
        assert_eq!(t.xforward.len(), 1, "{t:?}");
    }
    assert_eq!(sink.quits.load(Ordering::SeqCst), 0, "kept, not closed");
    // Shutdown sends the kept connection its QUIT.
    assert!(p.server.shutdown(Duration::from_secs(5)).await);
    wait_for("the QUIT at shutdown", || {
        sink.quits.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn next_hop_idle_secs_zero_closes_each_connection_with_its_client() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = start_proxy(sink.addr, "", "[server]\nnext_hop_idle_secs = 0").await;
    for n in 1..=3 {
        one_message_session(p.addr, n).await;
    }
    assert_eq!(relayed(&sink), (3, 3), "(messages, next-hop connections)");
    wait_for("three QUITs", || sink.quits.load(Ordering::SeqCst) == 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_next_hop_connection_is_quit_when_its_time_is_up() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = start_proxy(sink.addr, "", "[server]\nnext_hop_idle_secs = 1").await;
    one_message_session(p.addr, 1).await;
    assert_eq!(sink.quits.load(Ordering::SeqCst), 0);
    wait_for("the idle connection's QUIT", || {
        sink.quits.load(Ordering::SeqCst) == 1
    })
    .await;
    // The next client gets a fresh connection and is relayed as usual.
    one_message_session(p.addr, 2).await;
    assert_eq!(relayed(&sink), (2, 2), "(messages, next-hop connections)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_hop_that_closed_the_idle_connection_is_not_reused() {
    let sink = Sink::start(false, SinkMode::CloseAfterMessage).await;
    let p = start_proxy(sink.addr, "", "").await;
    one_message_session(p.addr, 1).await;
    // The connection is parked, then the next hop says 421 and closes it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    one_message_session(p.addr, 2).await;
    assert_eq!(relayed(&sink), (2, 2), "(messages, next-hop connections)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_hop_with_a_transaction_open_is_not_kept() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let p = start_proxy(sink.addr, "", "").await;
    // MAIL and RCPT accepted, then the client leaves without DATA.
    let mut c = hello(p.addr, "EHLO").await;
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n")
        .await;
    c.expect(250).await;
    c.expect(250).await;
    c.send("QUIT\r\n").await;
    c.expect(221).await;
    wait_for("the QUIT of the busy connection", || {
        sink.quits.load(Ordering::SeqCst) == 1
    })
    .await;
    one_message_session(p.addr, 2).await;
    assert_eq!(relayed(&sink), (1, 2), "(messages, next-hop connections)");
}

/// `[report]` on: every message relayed is a row in the store; the store
/// going away under load never slows or refuses mail, and every message is
/// either a row or counted as dropped once the store is back.
#[tokio::test(flavor = "multi_thread")]
async fn report_rows_are_recorded_and_a_store_outage_loses_no_mail_and_is_counted() {
    let pg = crate::support::PgServer::start();
    let sink = Sink::start(false, SinkMode::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    // A small queue: the outage outlasts it, so some rows are dropped.
    let report = format!(
        "[report]\nenabled = true\nqueue = 5\nstore = \"{}\"",
        pg.url()
    );
    write_config(&config, "mx.example", sink.addr, &report);
    let mut d = Daemon::start(&config, dir.path()).await;
    let mut sent = 0;
    for _ in 0..20 {
        send_one(d.addr).await;
        sent += 1;
    }
    pg.pause();
    for _ in 0..20 {
        // Every message is still relayed with the next hop's 250.
        send_one(d.addr).await;
        sent += 1;
    }
    d.wait_log("report store failed").await;
    pg.resume();
    d.wait_log("report store reachable again").await;
    d.wait_log("rows that never reached the report store noted")
        .await;
    for _ in 0..20 {
        send_one(d.addr).await;
        sent += 1;
    }
    d.signal("-TERM");
    // The writer stores what is queued before the process exits.
    assert!(d.child.wait().unwrap().success(), "{}", d.log());
    assert_eq!(sink.transactions().len(), sent);
    let url = pg.url();
    let (rows, dropped) = tokio::task::spawn_blocking(move || {
        let mut db = authgate::report::Db::open(&url).unwrap();
        let rows = db.query("SELECT COUNT(*) FROM agg_rows", &[]).unwrap()[0][0].int();
        let dropped = db
            .query(
                "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM agg_dropped",
                &[],
            )
            .unwrap()[0][0]
            .int();
        (rows, dropped)
    })
    .await
    .unwrap();
    assert!(rows >= 40 + 5, "rows {rows}, dropped {dropped}");
    assert!(dropped >= 1, "rows {rows}, dropped {dropped}");
    assert_eq!(
        rows + dropped,
        sent as i64,
        "every message is a row or counted as dropped"
    );
}

//! The milter front over a real socket, driven by a small protocol client
//! that speaks the MTA side the way Postfix does (option negotiation with
//! every flag offered, macros before their command, headers with the
//! leading space, body in chunks).

use std::net::SocketAddr;
use std::sync::Arc;

use authgate::config::{Config, KeySettings, ListenerSettings, TableSettings};
use authgate::daemon::Front;
use authgate::milter::codec::{self, MAX_PACKET};
use authgate::role::ListenProtocol;
use authgate::server::Snapshot;
use authgate::server::listen::Listener;
use authgate::sockaddr::{SocketAddress, UnixSocketOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{fixtures, private_key};

struct Server {
    addr: SocketAddr,
    server: authgate::server::run::Server<Front>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let key = private_key(dir.path(), "dkim/rsa2048.pem");
        let zone = dir.path().join("spf.zone");
        std::fs::write(
            &zone,
            "example.com. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n\
             _dmarc.example.com. 300 IN TXT \"v=DMARC1; p=reject\"\n\
             evil.example. 300 IN TXT \"v=spf1 -all\"\n\
             _dmarc.evil.example. 300 IN TXT \"v=DMARC1; p=reject\"\n",
        )
        .unwrap();
        let mut config = Config {
            authserv_id: "mx.test".into(),
            ..Config::default()
        };
        config.dns.zone_files = vec![fixtures().join("dkim/keys.zone"), zone];
        config.trust.internal_hosts = vec!["10.0.0.0/8".parse().unwrap()];
        config.iprev.enabled = false;
        config.dkim.keys.push(KeySettings {
            name: "k".into(),
            domain: "example.com".into(),
            selector: "rsa2048".into(),
            file: key,
        });
        config.dkim.signing_table.push(TableSettings {
            pattern: "*@example.com".into(),
            keys: vec!["k".into()],
        });
        let snap = Snapshot::build(config).unwrap();
        let listener = Listener::bind(
            &SocketAddress::Tcp("127.0.0.1:0".parse().unwrap()),
            &UnixSocketOptions::default(),
        )
        .await
        .unwrap();
        let SocketAddress::Tcp(addr) = listener.local_addr().unwrap() else {
            panic!("tcp")
        };
        let settings = Arc::new(ListenerSettings {
            protocol: ListenProtocol::Milter,
            ..ListenerSettings::default()
        });
        let bound = authgate::server::run::Bound { settings, listener };
        Server {
            addr,
            server: authgate::server::run::Server::start(vec![bound], snap, Front::for_listener),
            _dir: dir,
        }
    }

    async fn client(&self) -> Client {
        Client {
            s: TcpStream::connect(self.addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Stops accepting; sessions still connected may take
    /// `server.shutdown_timeout_secs`, so callers drop their clients first.
    async fn shutdown(self) {
        assert!(
            self.server
                .shutdown(std::time::Duration::from_secs(10))
                .await,
            "sessions finish after shutdown"
        );
    }
}

pub(crate) struct Client {
    pub(crate) s: TcpStream,
    pub(crate) buf: Vec<u8>,
}

/// What the filter answered at end of message.
#[derive(Debug, Default)]
pub(crate) struct Eom {
    inserted: Vec<(u32, String, String)>,
    changed: Vec<(u32, String, String)>,
    quarantined: bool,
    pub(crate) last: (u8, String),
}

impl Client {
    pub(crate) async fn send(&mut self, cmd: u8, data: &[u8]) {
        self.s
            .write_all(&codec::encode_command(cmd, data))
            .await
            .unwrap();
    }

    /// The next reply, or `None` when the filter closed the connection.
    pub(crate) async fn reply(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((cmd, data, used)) = codec::decode_reply(&self.buf).unwrap() {
                self.buf.drain(..used);
                return Some((cmd, data));
            }
            let mut chunk = [0u8; 4096];
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(20), self.s.read(&mut chunk))
                    .await
                    .expect("reply in time")
                    .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub(crate) async fn negotiate(&mut self) -> (u32, u32) {
        let mut opt = Vec::new();
        for v in [6u32, 0x1ff, 0x1f_ffff] {
            opt.extend_from_slice(&v.to_be_bytes());
        }
        self.send(b'O', &opt).await;
        let (cmd, data) = self.reply().await.unwrap();
        assert_eq!(cmd, b'O');
        let word = |i: usize| u32::from_be_bytes(data[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(word(0), 6);
        (word(1), word(2))
    }

    pub(crate) async fn connect(&mut self, host: &str, ip: &str) {
        self.send(b'D', b"C{daemon_name}\0smtpd\0").await;
        let mut d = format!("{host}\0").into_bytes();
        d.push(b'4');
        d.extend_from_slice(&25u16.to_be_bytes());
        d.extend_from_slice(format!("{ip}\0").as_bytes());
        self.send(b'C', &d).await;
        self.send(b'H', b"client.example.com\0").await;
    }

    /// Sends MAIL .. end of message for `msg` (CRLF text), body in
    /// `chunk`-byte pieces, and collects the end-of-message replies.
    pub(crate) async fn message(
        &mut self,
        from: &str,
        auth: Option<&str>,
        msg: &[u8],
        chunk: usize,
    ) -> Eom {
        self.start(from, auth, msg).await;
        let body = &msg[msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        for c in body.chunks(chunk) {
            self.send(b'B', c).await;
        }
        self.send(b'D', b"Ei\0QID1\0").await;
        self.send(b'E', b"").await;
        self.end_of_message().await
    }

    async fn start(&mut self, from: &str, auth: Option<&str>, msg: &[u8]) {
        let mut m = b"M".to_vec();
        if let Some(user) = auth {
            m.extend_from_slice(format!("{{auth_authen}}\0{user}\0").as_bytes());
        }
        self.send(b'D', &m).await;
        self.send(b'M', format!("<{from}>\0").as_bytes()).await;
        self.send(b'R', b"<bob@example.org>\0").await;
        let text = String::from_utf8_lossy(msg);
        let head = text.split("\r\n\r\n").next().unwrap();
        // Unfold into fields; Postfix sends the value after the colon, folded
        // lines joined with LF, leading space kept (SMFIP_HDR_LEADSPC).
        let mut fields: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let last = fields.last_mut().unwrap();
                last.push('\n');
                last.push_str(line);
            } else {
                fields.push(line.to_string());
            }
        }
        for f in fields {
            let (name, value) = f.split_once(':').unwrap();
            self.send(b'L', format!("{name}\0{value}\0").as_bytes())
                .await;
        }
        self.send(b'N', b"").await;
    }

    async fn end_of_message(&mut self) -> Eom {
        let mut eom = Eom::default();
        loop {
            let (cmd, data) = self.reply().await.expect("a reply at end of message");
            let strings = |d: &[u8]| -> Vec<String> {
                d.split(|&b| b == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            match cmd {
                b'i' | b'm' => {
                    let idx = u32::from_be_bytes(data[..4].try_into().unwrap());
                    let s = strings(&data[4..]);
                    let entry = (idx, s[0].clone(), s[1].clone());
                    if cmd == b'i' {
                        eom.inserted.push(entry)
                    } else {
                        eom.changed.push(entry)
                    }
                }
                b'q' => eom.quarantined = true,
                _ => {
                    eom.last = (cmd, strings(&data).concat());
                    return eom;
                }
            }
        }
    }
}

pub(crate) const MESSAGE: &str = "From: Alice <alice@example.com>\r\n\
To: Bob <bob@example.org>\r\n\
Subject: milter\r\n\x20round trip\r\n\
Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\
Message-ID: <m1@example.com>\r\n\
\r\n\
Hello Bob,\r\n\
\r\n\
a body long enough to be split in several chunks.\r\n";

/// Puts the inserted fields (as the MTA would, index 0 = top) on `msg`.
fn apply(eom: &Eom, msg: &str) -> String {
    let mut top = String::new();
    for (_, name, value) in eom.inserted.iter().rev() {
        top.push_str(&format!("{name}:{}\r\n", value.replace('\n', "\r\n")));
    }
    top + msg
}

#[tokio::test]
async fn signs_internal_mail_then_verifies_it_over_tcp() {
    let server = Server::start().await;
    let mut c = server.client().await;
    let (actions, protocol) = c.negotiate().await;
    assert_eq!(actions, authgate::milter::session::WANT_ACTIONS);
    assert_eq!(protocol, authgate::milter::session::WANT_PROTOCOL);
    // Internal client: signed, nothing verified.
    c.connect("lan.example.com", "10.0.0.7").await;
    let signed = c
        .message("alice@example.com", None, MESSAGE.as_bytes(), 7)
        .await;
    assert_eq!(signed.last.0, b'c', "{signed:?}");
    assert_eq!(signed.inserted.len(), 1, "{signed:?}");
    assert_eq!(signed.inserted[0].1, "DKIM-Signature");
    let with_sig = apply(&signed, MESSAGE);
    drop(c);

    // The signed message, as it arrives at the next MX: dkim, spf, dmarc pass.
    let mut c = server.client().await;
    c.negotiate().await;
    c.connect("mail.example.com", "192.0.2.25").await;
    let forged = format!("Authentication-Results: mx.test; dkim=pass\r\n{with_sig}");
    let eom = c
        .message("alice@example.com", None, forged.as_bytes(), 1000)
        .await;
    assert_eq!(eom.last.0, b'c', "{eom:?}");
    // The forged A-R (first field, first of its name) is deleted first.
    assert_eq!(
        eom.changed,
        vec![(1, "Authentication-Results".into(), String::new())]
    );
    let ar = &eom.inserted.last().unwrap();
    assert_eq!((ar.0, ar.1.as_str()), (0, "Authentication-Results"));
    for want in ["dkim=pass", "spf=pass", "dmarc=pass", " mx.test;"] {
        assert!(ar.2.contains(want), "{want} in {}", ar.2);
    }
    assert!(
        eom.inserted.iter().any(|(_, n, _)| n == "Received-SPF"),
        "{eom:?}"
    );
    drop(c);
    server.shutdown().await;
}

/// RFC 6376 §5.4 ("The From header field MUST be signed"): internal mail
/// with no From, or with two, cannot carry a valid signature. The milter
/// lets it through unsigned (continue, no DKIM-Signature inserted): no
/// tempfail, since retrying would never make it signable.
#[tokio::test]
async fn internal_mail_without_a_single_from_continues_unsigned() {
    let server = Server::start().await;
    let mut c = server.client().await;
    c.negotiate().await;
    c.connect("lan.example.com", "10.0.0.7").await;
    let no_from = MESSAGE.replace("From: Alice <alice@example.com>\r\n", "");
    let two_from = MESSAGE.replace("To: Bob", "From: Mallory <ceo@example.org>\r\nTo: Bob");
    for msg in [no_from, two_from] {
        let eom = c
            .message("alice@example.com", None, msg.as_bytes(), 64)
            .await;
        assert_eq!(eom.last.0, b'c', "{eom:?}");
        assert!(
            !eom.inserted.iter().any(|(_, n, _)| n == "DKIM-Signature"),
            "{eom:?}"
        );
    }
    drop(c);
    server.shutdown().await;
}

#[tokio::test]
async fn several_messages_abort_and_reject_on_one_connection() {
    let server = Server::start().await;
    let mut c = server.client().await;
    c.negotiate().await;
    c.connect("mail.evil.example", "198.51.100.9").await;
    // Aborted mid-headers: no reply, the connection goes on.
    c.start("ceo@example.com", None, MESSAGE.as_bytes()).await;
    c.send(b'A', b"").await;
    // DMARC p=reject failure: 550 5.7.1.
    let spoof = MESSAGE.replace("alice@example.com", "ceo@evil.example");
    let eom = c
        .message("ceo@evil.example", None, spoof.as_bytes(), 64)
        .await;
    assert_eq!(eom.last.0, b'y', "{eom:?}");
    assert!(eom.last.1.starts_with("550 5.7.1 "), "{eom:?}");
    // The same words as the proxy and the pipe (outcome::Answer).
    assert!(
        eom.last.1.contains("Message refused: DMARC policy of"),
        "{eom:?}"
    );
    // Same spoof from an authenticated client: signed? No (evil.example is
    // not ours), and not rejected: authenticated clients are exempt.
    let eom = c
        .message("ceo@evil.example", Some("ceo"), spoof.as_bytes(), 64)
        .await;
    assert_eq!(eom.last.0, b'c', "{eom:?}");
    assert!(eom.inserted.is_empty(), "{eom:?}");
    // And a message of ours after all that: signed.
    let eom = c
        .message("alice@example.com", Some("alice"), MESSAGE.as_bytes(), 5)
        .await;
    assert_eq!(eom.last.0, b'c');
    assert_eq!(eom.inserted[0].1, "DKIM-Signature", "{eom:?}");
    c.send(b'Q', b"").await;
    assert!(c.reply().await.is_none(), "closed after QUIT");
    server.shutdown().await;
}

#[tokio::test]
async fn hostile_input_closes_only_that_connection() {
    let server = Server::start().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "oversized length",
            (MAX_PACKET as u32 + 1).to_be_bytes().to_vec(),
        ),
        ("4 GiB length", u32::MAX.to_be_bytes().to_vec()),
        ("zero length", vec![0, 0, 0, 0]),
        ("unknown command", codec::encode_command(b'Z', b"")),
        (
            "command before negotiation",
            codec::encode_command(b'H', b"x\0"),
        ),
        (
            "malformed negotiation",
            codec::encode_command(b'O', b"\0\0"),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = server.client().await;
        c.s.write_all(&bytes).await.unwrap();
        assert!(c.reply().await.is_none(), "{what}: connection closed");
    }
    // A length that lies (claims more than is sent), then the MTA goes away.
    let mut c = server.client().await;
    c.negotiate().await;
    c.s.write_all(&[0, 0, 0, 100, b'B', 1, 2, 3]).await.unwrap();
    c.s.shutdown().await.unwrap();
    assert!(c.reply().await.is_none());
    // The server still serves others.
    let mut c = server.client().await;
    c.negotiate().await;
    c.connect("mail.example.com", "192.0.2.25").await;
    let eom = c
        .message("alice@example.com", None, MESSAGE.as_bytes(), 100)
        .await;
    assert_eq!(eom.last.0, b'c');
    drop(c);
    server.shutdown().await;
}

/// SIGTERM's drain reaches milter connections: one between messages is
/// closed at once (the MTA reconnects to the next process or applies
/// `milter_default_action`), one in the middle of a message finishes that
/// message, gets its end-of-message reply, and is closed after it.
#[tokio::test]
async fn shutdown_closes_idle_milter_connections_and_lets_a_message_finish() {
    let Server {
        server, _dir: dir, ..
    } = Server::start().await;
    let addr = server.local_addrs()[0].clone();
    let SocketAddress::Tcp(addr) = addr else {
        panic!("tcp")
    };
    let client = || async move {
        Client {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    };
    let mut idle = client().await;
    idle.negotiate().await;
    idle.connect("mail.example.com", "192.0.2.25").await;
    let mut busy = client().await;
    // Every flag offered but SMFIP_NR_MAIL (0x4000): the reply to MAIL
    // shows that the filter has started the message before the stop.
    let mut opt = Vec::new();
    for v in [6u32, 0x1ff, 0x1f_ffff & !0x4000] {
        opt.extend_from_slice(&v.to_be_bytes());
    }
    busy.send(b'O', &opt).await;
    assert_eq!(busy.reply().await.unwrap().0, b'O');
    busy.connect("mail.example.com", "192.0.2.25").await;
    busy.start("alice@example.com", None, MESSAGE.as_bytes())
        .await;
    assert_eq!(busy.reply().await.unwrap().0, b'c', "MAIL continues");
    let stop = tokio::spawn(server.shutdown(std::time::Duration::from_secs(30)));
    assert!(
        idle.reply().await.is_none(),
        "the idle connection is closed"
    );
    let body = &MESSAGE[MESSAGE.find("\r\n\r\n").unwrap() + 4..];
    busy.send(b'B', body.as_bytes()).await;
    busy.send(b'E', b"").await;
    let eom = busy.end_of_message().await;
    assert_eq!(eom.last.0, b'c', "{eom:?}");
    assert!(busy.reply().await.is_none(), "closed after its message");
    assert!(stop.await.unwrap(), "every session finished");
    drop(dir);
}

/// `authgate milter` with `[report] enabled`: each finished message is a
/// row in the store (the same `Fate::emit` as the proxy and the pipe).
#[tokio::test]
async fn the_milter_records_report_rows() {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("spf.zone");
    std::fs::write(
        &zone,
        "example.com. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n\
         _dmarc.example.com. 300 IN TXT \"v=DMARC1; p=reject\"\n\
         evil.example. 300 IN TXT \"v=spf1 -all\"\n\
         _dmarc.evil.example. 300 IN TXT \"v=DMARC1; p=reject\"\n",
    )
    .unwrap();
    let config = dir.path().join("authgate.toml");
    std::fs::write(
        &config,
        format!(
            "authserv_id = \"mx.test\"\n[dns]\nzone_files = [\"{}\"]\n[iprev]\nenabled = false\n\
             [report]\nenabled = true\nstore = \"sqlite:{}/r.db\"\n",
            zone.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["milter", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = None;
    for _ in 0..200 {
        if let Ok(c) = TcpStream::connect(addr).await {
            s = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut c = Client {
        s: s.expect("milter listening"),
        buf: Vec::new(),
    };
    c.negotiate().await;
    c.connect("mail.example.com", "192.0.2.7").await;
    let eom = c
        .message("alice@example.com", None, MESSAGE.as_bytes(), 64)
        .await;
    assert_eq!(eom.last.0, b'c', "{eom:?}");
    let spoof = MESSAGE.replace("alice@example.com", "ceo@evil.example");
    let eom = c
        .message("ceo@evil.example", None, spoof.as_bytes(), 64)
        .await;
    assert!(eom.last.1.starts_with("550 5.7.1 "), "{eom:?}");
    c.send(b'Q', b"").await;
    let _ = c.reply().await;
    // SIGTERM: the writer stores what is queued before the process exits.
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    let url = format!("sqlite:{}/r.db", dir.path().display());
    let rows = tokio::task::spawn_blocking(move || {
        let mut db = authgate::report::Db::open(&url).unwrap();
        db.query(
            "SELECT policy_domain, source_ip, env_to, dmarc, disposition FROM agg_rows ORDER BY time, policy_domain",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.iter().map(|v| v.text()).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut rows = rows;
    rows.sort();
    assert_eq!(
        rows,
        [
            "evil.example 192.0.2.7 example.org fail reject",
            "example.com 192.0.2.7 example.org pass none"
        ]
    );
}

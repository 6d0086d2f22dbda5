//! The SMTP proxy's timeouts and failures, in virtual time: `serve_over`
//! between two `tokio::io::duplex` pipes, the client and the next hop both
//! scripted here, under a paused clock (STYLE.md §6). Tokio moves the clock
//! on whenever every task waits, so a 300 s timeout takes no real time and
//! the elapsed virtual time says which limit cut a session.

use std::sync::Arc;
use std::time::Duration;

use authgate::config::Config;
use authgate::server::Snapshot;
use authgate::server::listen::Peer;
use authgate::smtp::proxy::{ConnContext, HopPool, serve_over};
use authgate::smtp::reply::Reply;
use authgate::smtp::session::Session;
use tokio::io::{
    AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a scripted peer waits for a line: longer than any limit the
/// tests set, so the proxy's own timer always fires first (virtual time).
const PATIENCE: Duration = Duration::from_secs(24 * 3600);

/// The proxy's name in its replies (`server.hostname`).
const HOSTNAME: &str = "filter.test";

/// One scripted end of a pipe: the client, or the next hop.
struct Wire {
    r: BufReader<ReadHalf<DuplexStream>>,
    /// Taken by a test that writes from another task.
    w: Option<WriteHalf<DuplexStream>>,
}

impl Wire {
    fn new(stream: DuplexStream) -> Wire {
        let (r, w) = tokio::io::split(stream);
        Wire {
            r: BufReader::new(r),
            w: Some(w),
        }
    }

    async fn send(&mut self, text: &str) {
        let w = self.w.as_mut().expect("the writing half");
        w.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next line with its CRLF; `""` at end of stream.
    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(PATIENCE, self.r.read_line(&mut line))
            .await
            .expect("a line before the scripted peer's patience ran out")
            .unwrap();
        line
    }

    /// Reads a command line and checks that it is `want`.
    async fn command(&mut self, want: &str) {
        let line = self.line().await;
        assert_eq!(line, format!("{want}\r\n"));
    }

    /// One complete reply as its wire text.
    async fn reply(&mut self) -> String {
        let mut text = String::new();
        loop {
            let line = self.line().await;
            assert!(!line.is_empty(), "closed while waiting for a reply: {text}");
            text.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return text;
            }
        }
    }

    async fn expect(&mut self, code: u16) -> String {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(&code.to_string()),
            "expected {code}: {reply}"
        );
        reply
    }

    /// The message after DATA's 354, up to and including the final dot.
    async fn message(&mut self) -> String {
        let mut text = String::new();
        while !text.ends_with("\r\n.\r\n") {
            let line = self.line().await;
            assert!(!line.is_empty(), "closed in the message: {text}");
            text.push_str(&line);
        }
        text
    }

    /// The other end has closed (nothing more to read).
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        tokio::time::timeout(PATIENCE, self.r.read_to_end(&mut rest))
            .await
            .is_ok_and(|r| r.is_ok() && rest.is_empty())
    }
}

/// `serve_over` running, and the test's ends of its two pipes.
struct Run {
    client: Wire,
    hop: Wire,
    task: JoinHandle<()>,
    /// Kept: a dropped sender would look like a shutdown forever pending.
    shutdown: watch::Sender<bool>,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl Run {
    /// Starts the proxy with these `[server]` settings; nothing said yet on
    /// either side.
    async fn start(server: &str) -> Run {
        Run::start_sized(server, 64 * 1024).await
    }

    /// [`Run::start`] with `client_buffer` bytes in each direction of the
    /// client's pipe (what a socket buffers before a write must wait).
    async fn start_sized(server: &str, client_buffer: usize) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.toml");
        // The next hop's address is never dialled: the pipe is the hop.
        crate::serve::write_config(
            &path,
            "test.authserv",
            "127.0.0.1:9".parse().unwrap(),
            &format!("[server]\nhostname = \"{HOSTNAME}\"\n{server}"),
        );
        let config = Config::load(Some(&path), figment::Figment::new()).unwrap();
        let listener = config.listeners().unwrap().remove(0);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let cx = ConnContext {
            listener: Arc::new(listener),
            snap: Arc::new(Snapshot::build(config).unwrap()),
            shutdown: shutdown_rx,
            hops: Arc::new(HopPool::default()),
        };
        let (client, client_end) = tokio::io::duplex(client_buffer);
        let (hop, hop_end) = tokio::io::duplex(64 * 1024);
        let peer = Peer::Tcp("127.0.0.1:40000".parse().unwrap());
        Run {
            client: Wire::new(client),
            hop: Wire::new(hop),
            task: tokio::spawn(serve_over(client_end, hop_end, peer, cx)),
            shutdown,
            started: Instant::now(),
            _dir: dir,
        }
    }

    /// Started, the next hop greeted (220, EHLO without PIPELINING: one
    /// reply per command), the client greeted and past its EHLO.
    async fn greeted(server: &str) -> Run {
        let mut r = Run::start(server).await;
        r.hop.send("220 hop.test ESMTP\r\n").await;
        r.hop.command(&format!("EHLO {HOSTNAME}")).await;
        r.hop.send("250-hop.test\r\n250 8BITMIME\r\n").await;
        r.client.expect(220).await;
        r.client.send("EHLO client.example\r\n").await;
        r.client.expect(250).await;
        r
    }

    /// MAIL and RCPT relayed and accepted, then DATA answered 354 by the proxy.
    async fn envelope(&mut self) {
        for (command, ok) in [
            ("MAIL FROM:<a@example.org>", "250 2.1.0 Ok\r\n"),
            ("RCPT TO:<b@example.test>", "250 2.1.5 Ok\r\n"),
        ] {
            self.client.send(&format!("{command}\r\n")).await;
            self.hop.command(command).await;
            self.hop.send(ok).await;
            self.client.expect(250).await;
        }
        self.client.send("DATA\r\n").await;
        self.client.expect(354).await;
    }

    /// A whole message from the client, then the proxy's DATA to the next
    /// hop, answered 354.
    async fn message_to_hop(&mut self) {
        self.envelope().await;
        self.client
            .send("From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
            .await;
        self.hop.command("DATA").await;
        self.hop.send("354 go ahead\r\n").await;
    }

    /// Virtual time since the start.
    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The session is over: `serve_over` returned.
    async fn finished(self) {
        self.task.await.unwrap();
    }
}

fn wire(reply: &Reply) -> String {
    String::from_utf8(reply.to_bytes()).unwrap()
}

/// The client was told `reply` and its connection closed.
async fn told_and_closed(client: &mut Wire, reply: &Reply) {
    assert_eq!(client.reply().await, wire(reply));
    assert!(client.closed().await, "closed after {reply}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_gets_421_after_the_command_timeout() {
    let mut r = Run::greeted("command_timeout_secs = 300").await;
    told_and_closed(&mut r.client, &Session::timed_out()).await;
    assert!(r.elapsed() >= Duration::from_secs(300), "{:?}", r.elapsed());
    assert!(wire(&Session::timed_out()).starts_with("421 4.4.2 "));
    r.hop.command("QUIT").await;
    r.finished().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_silent_in_data_gets_421_after_the_data_timeout() {
    let mut r = Run::greeted("data_timeout_secs = 180\nmax_data_secs = 1800").await;
    r.envelope().await;
    let data_started = r.elapsed();
    r.client.send("Subject: half a message\r\n").await;
    told_and_closed(&mut r.client, &Session::timed_out()).await;
    let waited = r.elapsed() - data_started;
    assert!(
        waited >= Duration::from_secs(180) && waited < Duration::from_secs(1800),
        "{waited:?}"
    );
    // Nothing was relayed: the next hop hears QUIT, never DATA.
    r.hop.command("QUIT").await;
    r.finished().await;
}

/// Each byte comes within the per-read timeout, so only the deadline for
/// the whole message (`max_data_secs`) ends it.
#[tokio::test(start_paused = true)]
async fn a_client_dripping_data_is_cut_off_at_the_message_deadline() {
    let mut r = Run::greeted("data_timeout_secs = 60\nmax_data_secs = 120").await;
    r.envelope().await;
    let data_started = r.elapsed();
    let mut w = r.client.w.take().unwrap();
    // A byte every 30 s of virtual time, until the proxy hangs up.
    let drip = tokio::spawn(async move {
        while w.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    assert_eq!(r.client.reply().await, wire(&Session::timed_out()));
    let waited = r.elapsed() - data_started;
    assert!(
        waited >= Duration::from_secs(120) && waited < Duration::from_secs(180),
        "{waited:?}"
    );
    assert!(r.client.closed().await);
    // Nothing was relayed: the next hop hears QUIT, never DATA.
    r.hop.command("QUIT").await;
    drip.await.unwrap();
    r.finished().await;
}

#[tokio::test(start_paused = true)]
async fn a_next_hop_silent_after_the_final_dot_is_a_4xx_never_a_2xx() {
    let mut r = Run::greeted("next_hop_timeout_secs = 30\nnext_hop_data_timeout_secs = 600").await;
    r.message_to_hop().await;
    let relayed = r.elapsed();
    assert!(r.hop.message().await.ends_with("\r\nbody\r\n.\r\n"));
    // No reply to the final dot.
    let reply = r.client.reply().await;
    assert_eq!(reply, wire(&Session::hop_failed()));
    assert!(reply.starts_with('4'), "{reply}");
    let waited = r.elapsed() - relayed;
    assert!(waited >= Duration::from_secs(600), "{waited:?}");
    assert!(r.client.closed().await);
    r.hop.command("QUIT").await;
    r.finished().await;
}

#[tokio::test(start_paused = true)]
async fn a_next_hop_silent_on_a_command_is_a_4xx() {
    let mut r = Run::greeted("next_hop_timeout_secs = 30").await;
    let asked = r.elapsed();
    r.client.send("MAIL FROM:<a@example.org>\r\n").await;
    r.hop.command("MAIL FROM:<a@example.org>").await;
    told_and_closed(&mut r.client, &Session::hop_failed()).await;
    let waited = r.elapsed() - asked;
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(300),
        "{waited:?}"
    );
    r.hop.command("QUIT").await;
    r.finished().await;
}

/// Where the next hop goes away in the relay: at our DATA, after its 354,
/// and once the final dot has arrived.
#[derive(Debug, Clone, Copy)]
enum Closes {
    AtData,
    After354,
    AtFinalDot,
}

#[tokio::test(start_paused = true)]
async fn a_next_hop_closing_in_the_relay_is_the_hop_failed_4xx() {
    for closes in [Closes::AtData, Closes::After354, Closes::AtFinalDot] {
        let mut r = Run::greeted("").await;
        r.envelope().await;
        r.client
            .send("From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
            .await;
        r.hop.command("DATA").await;
        match closes {
            Closes::AtData => {}
            Closes::After354 => r.hop.send("354 go ahead\r\n").await,
            Closes::AtFinalDot => {
                r.hop.send("354 go ahead\r\n").await;
                r.hop.message().await;
            }
        }
        drop(r.hop);
        let reply = r.client.reply().await;
        assert_eq!(reply, wire(&Session::hop_failed()), "{closes:?}");
        assert!(r.client.closed().await, "{closes:?}");
        r.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_451_to_the_final_dot_reaches_the_client_and_the_session_goes_on() {
    let mut r = Run::greeted("").await;
    r.message_to_hop().await;
    r.hop.message().await;
    r.hop.send("451 4.3.0 sink says later\r\n").await;
    assert_eq!(r.client.reply().await, "451 4.3.0 sink says later\r\n");
    r.client.send("NOOP\r\nQUIT\r\n").await;
    r.client.expect(250).await;
    r.client.expect(221).await;
    r.hop.command("QUIT").await;
    r.finished().await;
}

/// What the next hop says before our EHLO is answered.
#[derive(Debug, Clone, Copy)]
enum Opening {
    /// A greeting other than 220.
    Refuses,
    /// No greeting at all (`next_hop_timeout_secs`).
    Silent,
    /// 220, then EHLO refused.
    RefusesEhlo,
}

#[tokio::test(start_paused = true)]
async fn a_next_hop_that_cannot_be_greeted_is_a_421_greeting() {
    let unavailable = Session::hop_unavailable(HOSTNAME);
    assert_eq!(
        wire(&unavailable),
        format!("421 4.4.1 {HOSTNAME} next hop unavailable, try again later\r\n")
    );
    for opening in [Opening::Refuses, Opening::Silent, Opening::RefusesEhlo] {
        let mut r = Run::start("next_hop_timeout_secs = 30").await;
        match opening {
            Opening::Refuses => r.hop.send("554 5.3.2 hop.test busy\r\n").await,
            Opening::Silent => {}
            Opening::RefusesEhlo => {
                r.hop.send("220 hop.test ESMTP\r\n").await;
                r.hop.command(&format!("EHLO {HOSTNAME}")).await;
                r.hop.send("502 5.5.2 what\r\n").await;
            }
        }
        told_and_closed(&mut r.client, &unavailable).await;
        if let Opening::Silent = opening {
            assert!(r.elapsed() >= Duration::from_secs(30), "{:?}", r.elapsed());
        }
        // The next hop is dropped, not sent QUIT: it never said hello.
        assert!(r.hop.closed().await, "{opening:?}");
        r.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_an_idle_session_with_421() {
    let mut r = Run::greeted("").await;
    r.shutdown.send_replace(true);
    told_and_closed(&mut r.client, &Session::shutting_down()).await;
    assert!(wire(&Session::shutting_down()).starts_with("421 4.3.2 "));
    r.hop.command("QUIT").await;
    r.finished().await;
}

/// A client that pipelines commands and never reads its replies: once the
/// pipe is full, the proxy's write makes no progress, and after
/// `command_timeout_secs` of that the session ends (its slot is freed).
#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_after_the_command_timeout() {
    let mut r = Run::start_sized("command_timeout_secs = 300", 512).await;
    r.hop.send("220 hop.test ESMTP\r\n").await;
    r.hop.command(&format!("EHLO {HOSTNAME}")).await;
    r.hop.send("250-hop.test\r\n250 8BITMIME\r\n").await;
    r.client.expect(220).await;
    let stalled = r.elapsed();
    let mut w = r.client.w.take().unwrap();
    // Far more NOOPs than both directions of the pipe can hold, never a
    // reply read; the writes fail once the proxy has hung up.
    let flood = tokio::spawn(async move {
        let noops = "NOOP\r\n".repeat(10_000);
        let _ = w.write_all(noops.as_bytes()).await;
    });
    r.hop.command("QUIT").await;
    let waited = r.elapsed() - stalled;
    assert!(waited >= Duration::from_secs(300), "{waited:?}");
    tokio::time::timeout(PATIENCE, r.task)
        .await
        .expect("the session ended")
        .unwrap();
    flood.await.unwrap();
}

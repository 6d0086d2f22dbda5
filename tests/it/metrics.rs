//! `[metrics] listen`: the `authgate serve` and `authgate milter` binaries
//! scraped over TCP at `GET /metrics` after real traffic (accepted, DMARC
//! reject, DNS tempfail, a next hop lost at end of data), with exact
//! counts; the exposition parsed line by line; no endpoint without the
//! setting; a taken address is a startup error naming it.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::serve::{
    Client, DMARC_FAIL, Sink, SinkMode, free_port, hello, start_data, write_config,
};
use crate::support::fixtures;

/// A daemon binary, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    fn signal(&self, sig: &str) {
        let pid = self.0.id().to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

/// Starts `authgate ARGS` and waits until `ready` accepts connections.
async fn spawn(args: &[&str], env: &[(&str, &str)], ready: SocketAddr, stderr: &Path) -> Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"));
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Killed and waited for in Drop.
    #[allow(clippy::zombie_processes)]
    let child = Child(cmd.spawn().unwrap());
    for _ in 0..400 {
        if TcpStream::connect(ready).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "authgate did not start: {}",
        std::fs::read_to_string(stderr).unwrap()
    );
}

/// `GET /metrics` (with `accept`), the response's status line, headers and body.
async fn get(addr: SocketAddr, path: &str, accept: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the endpoint answers and closes")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The samples of a Prometheus text exposition, checked as it is parsed:
/// every family and sample prefixed `authgate_`, every family typed,
/// every value a number.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = HashSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name.starts_with("authgate_"), "{line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line == "# EOF" {
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("authgate_"), "{line}");
        let family = typed.iter().any(|t| {
            name == t
                || ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(t.as_str()))
        });
        assert!(family, "{line}: no # TYPE above it");
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        samples.insert(series.to_string(), v);
    }
    samples
}

async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (head, body) = get(addr, "/metrics", "text/plain").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    parse(&body)
}

/// Scrapes until `series` has `want` (the writer and session ends are
/// asynchronous), then returns the samples.
async fn scrape_until(addr: SocketAddr, series: &str, want: f64) -> BTreeMap<String, f64> {
    let mut last = BTreeMap::new();
    for _ in 0..200 {
        last = scrape(addr).await;
        if last.get(series) == Some(&want) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{series} never reached {want}: {last:#?}");
}

fn assert_samples(m: &BTreeMap<String, f64>, want: &[(&str, f64)]) {
    for (series, v) in want {
        assert_eq!(m.get(*series), Some(v), "{series} in {m:#?}");
    }
}

/// SMTP through a listener: XFORWARD, MAIL/RCPT/DATA, the message; the
/// reply code to the final dot.
async fn relay(addr: SocketAddr, client: &str, from: &str, msg: &str) -> u16 {
    let mut c: Client = hello(addr, "EHLO").await;
    c.send(&format!("XFORWARD ADDR={client} HELO=mail.example.org\r\n"))
        .await;
    c.expect(250).await;
    start_data(&mut c, from).await;
    c.send(msg).await;
    c.reply().await.0
}

const GOOD: &str = "From: a@example.org\r\nSubject: x\r\n\r\nhi\r\n.\r\n";
const FLAKY: &str = "From: a@flaky.example\r\nSubject: x\r\n\r\nhi\r\n.\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn metrics_of_serve_count_each_message_by_disposition_cause_and_result() {
    let ok = Sink::start(false, SinkMode::Accept).await;
    let dying = Sink::start(false, SinkMode::DieOnData).await;
    let dir = tempfile::tempdir().unwrap();
    let [after, before, lost, down, nobody, metrics] = [(); 6].map(|()| free_port());
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let config = dir.path().join("authgate.toml");
    let toml = format!(
        "authserv_id = \"mx.example\"\n\
         [dmarc]\ntemperror_action = \"tempfail\"\n\
         [dns]\nzone_files = [{zone:?}]\n\
         [report]\nenabled = true\nstore = \"sqlite:{store}\"\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [[listener]]\nlisten = \"127.0.0.1:{after}\"\nnext_hop = \"{hop}\"\n\
         [[listener]]\nlisten = \"127.0.0.1:{before}\"\nnext_hop = \"{hop}\"\nmode = \"before-queue\"\n\
         [[listener]]\nlisten = \"127.0.0.1:{lost}\"\nnext_hop = \"{dead}\"\n\
         [[listener]]\nlisten = \"127.0.0.1:{down}\"\nnext_hop = \"127.0.0.1:{nobody}\"\n",
        zone = fixtures().join("policy/policy.zone").display().to_string(),
        store = dir.path().join("r.db").display(),
        hop = ok.addr,
        dead = dying.addr,
    );
    std::fs::write(&config, &toml).unwrap();
    let stderr = dir.path().join("stderr.log");
    let cfg = config.to_str().unwrap();
    let d = spawn(&["serve", "--config", cfg], &[], addr(metrics), &stderr).await;

    // Nothing yet: every family is there, at zero where it has no labels.
    let m = scrape(addr(metrics)).await;
    assert_samples(
        &m,
        &[
            ("authgate_dns_queries_total", 0.0),
            ("authgate_reply_latency_seconds_count", 0.0),
            ("authgate_report_rows_total{result=\"stored\"}", 0.0),
        ],
    );

    assert_eq!(
        relay(addr(after), "192.0.2.1", "a@example.org", GOOD).await,
        250
    );
    let spoof = "XFORWARD ADDR=203.0.113.9 HELO=spoofer.example\r\n";
    let mut c = hello(addr(before), "EHLO").await;
    c.send(spoof).await;
    c.expect(250).await;
    start_data(&mut c, "ceo@example.org").await;
    c.send(DMARC_FAIL).await;
    c.expect(550).await;
    drop(c);
    assert_eq!(
        relay(addr(before), "192.0.2.1", "a@flaky.example", FLAKY).await,
        451
    );
    let code = relay(addr(lost), "192.0.2.1", "a@example.org", GOOD).await;
    assert!((400..500).contains(&code), "{code}");
    // A next hop that is down: the greeting is a 421, counted as a next_hop
    // tempfail although no message began.
    let mut refused = tokio::net::TcpStream::connect(addr(down)).await.unwrap();
    let mut greeting = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut refused, &mut greeting)
        .await
        .unwrap();
    assert!(greeting.starts_with("421 4.4.1 "), "{greeting}");
    // One session stays open while we look.
    let mut open = hello(addr(after), "EHLO").await;

    let m = scrape_until(
        addr(metrics),
        "authgate_sessions_open{front=\"proxy\"}",
        1.0,
    )
    .await;
    assert_samples(
        &m,
        &[
            (
                "authgate_messages_total{front=\"proxy\",disposition=\"accept\"}",
                1.0,
            ),
            (
                "authgate_messages_total{front=\"proxy\",disposition=\"reject\"}",
                1.0,
            ),
            (
                "authgate_messages_total{front=\"proxy\",disposition=\"tempfail\"}",
                2.0,
            ),
            ("authgate_tempfails_total{cause=\"dns\"}", 1.0),
            ("authgate_tempfails_total{cause=\"next_hop\"}", 2.0),
            ("authgate_dmarc_results_total{result=\"pass\"}", 2.0),
            ("authgate_dmarc_results_total{result=\"fail\"}", 1.0),
            ("authgate_dmarc_results_total{result=\"temperror\"}", 1.0),
            ("authgate_spf_results_total{result=\"pass\"}", 2.0),
            ("authgate_spf_results_total{result=\"fail\"}", 2.0),
            ("authgate_iprev_results_total{result=\"pass\"}", 3.0),
            // 203.0.113.9 has no PTR record.
            ("authgate_iprev_results_total{result=\"permerror\"}", 1.0),
            ("authgate_reply_latency_seconds_count", 4.0),
            ("authgate_dns_timeouts_total", 0.0),
        ],
    );
    for absent in [
        "authgate_messages_total{front=\"proxy\",disposition=\"quarantine\"}",
        "authgate_tempfails_total{cause=\"spool\"}",
        "authgate_tempfails_total{cause=\"internal\"}",
    ] {
        assert!(!m.contains_key(absent), "{absent}");
    }
    // The unsigned messages have no DKIM result; each verified message
    // looked up at least its DMARC record.
    assert!(
        !m.keys()
            .any(|k| k.starts_with("authgate_dkim_results_total"))
    );
    let queries = m["authgate_dns_queries_total"];
    assert!(queries >= 4.0, "{queries}");
    assert!(m["authgate_dns_cache_hits_total"] <= queries);
    assert!(m["authgate_reply_latency_seconds_sum"] > 0.0);
    assert_eq!(m["authgate_reply_latency_seconds_bucket{le=\"+Inf\"}"], 4.0);
    // Rows for the accepted and the rejected message (DMARC evaluated
    // against a policy; a tempfailed one is recorded when it comes back).
    scrape_until(
        addr(metrics),
        "authgate_report_rows_total{result=\"stored\"}",
        2.0,
    )
    .await;

    open.send("QUIT\r\n").await;
    open.expect(221).await;
    scrape_until(
        addr(metrics),
        "authgate_sessions_open{front=\"proxy\"}",
        0.0,
    )
    .await;

    // A good reload, then a bad one.
    d.signal("-HUP");
    scrape_until(
        addr(metrics),
        "authgate_config_reloads_total{result=\"ok\"}",
        1.0,
    )
    .await;
    std::fs::write(&config, format!("{toml}\n[server]\nbogus = 1\n")).unwrap();
    d.signal("-HUP");
    let m = scrape_until(
        addr(metrics),
        "authgate_config_reloads_total{result=\"failed\"}",
        1.0,
    )
    .await;
    assert_eq!(m["authgate_config_reloads_total{result=\"ok\"}"], 1.0);

    // OpenMetrics on request; anything but /metrics is a 404.
    let (head, body) = get(addr(metrics), "/metrics", "application/openmetrics-text").await;
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(parse(&body)["authgate_tempfails_total{cause=\"dns\"}"], 1.0);
    let (head, _) = get(addr(metrics), "/", "*/*").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_of_milter_count_its_messages_and_sessions() {
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
    let [milter, metrics] = [(); 2].map(|()| free_port());
    std::fs::write(
        &config,
        format!(
            "authserv_id = \"mx.test\"\n[dns]\nzone_files = [{:?}]\n[iprev]\nenabled = false\n",
            zone.display().to_string()
        ),
    )
    .unwrap();
    let at = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let listen = format!("127.0.0.1:{milter}");
    let metrics_env = format!("127.0.0.1:{metrics}");
    let _d = spawn(
        &[
            "milter",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &listen,
        ],
        // The environment works like the file.
        &[("AUTHGATE_METRICS__LISTEN", &metrics_env)],
        at(metrics),
        &dir.path().join("stderr.log"),
    )
    .await;
    let mut c = crate::milter::Client {
        s: TcpStream::connect(at(milter)).await.unwrap(),
        buf: Vec::new(),
    };
    c.negotiate().await;
    c.connect("mail.example.com", "192.0.2.7").await;
    let message = crate::milter::MESSAGE;
    let eom = c
        .message("alice@example.com", None, message.as_bytes(), 64)
        .await;
    assert_eq!(eom.last.0, b'c', "{eom:?}");
    let spoof = message.replace("alice@example.com", "ceo@evil.example");
    let eom = c
        .message("ceo@evil.example", None, spoof.as_bytes(), 64)
        .await;
    assert!(eom.last.1.starts_with("550 5.7.1 "), "{eom:?}");

    let m = scrape_until(at(metrics), "authgate_sessions_open{front=\"milter\"}", 1.0).await;
    assert_samples(
        &m,
        &[
            (
                "authgate_messages_total{front=\"milter\",disposition=\"accept\"}",
                1.0,
            ),
            (
                "authgate_messages_total{front=\"milter\",disposition=\"reject\"}",
                1.0,
            ),
            ("authgate_dmarc_results_total{result=\"pass\"}", 1.0),
            ("authgate_dmarc_results_total{result=\"fail\"}", 1.0),
            ("authgate_spf_results_total{result=\"pass\"}", 1.0),
            ("authgate_spf_results_total{result=\"fail\"}", 1.0),
            ("authgate_reply_latency_seconds_count", 2.0),
            ("authgate_report_rows_total{result=\"stored\"}", 0.0),
            ("authgate_report_rows_total{result=\"dropped\"}", 0.0),
        ],
    );
    assert!(!m.keys().any(|k| k.contains("front=\"proxy\"")), "{m:#?}");
    assert!(!m.keys().any(|k| k.starts_with("authgate_iprev_results")));
    c.send(b'Q', b"").await;
    let _ = c.reply().await;
    drop(c);
    scrape_until(at(metrics), "authgate_sessions_open{front=\"milter\"}", 0.0).await;
}

/// The TCP sockets `pid` listens on (its socket inodes in the LISTEN
/// state of /proc/net/tcp{,6}).
fn listening(pid: u32) -> usize {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let Ok(link) = std::fs::read_link(fd.unwrap().path()) else {
            continue;
        };
        let link = link.to_string_lossy().into_owned();
        if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(3) == Some(&"0A") && f.get(9).is_some_and(|i| inodes.contains(*i))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_off_by_default_means_no_endpoint() {
    let sink = Sink::start(false, SinkMode::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    let stderr = dir.path().join("stderr.log");
    for metrics in [None, Some(free_port())] {
        let extra = metrics.map_or_else(String::new, |p| {
            format!("[metrics]\nlisten = \"127.0.0.1:{p}\"")
        });
        write_config(&config, "mx.example", sink.addr, &extra);
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let args = [
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &listen,
        ];
        let d = spawn(&args, &[], listen.parse().unwrap(), &stderr).await;
        // The SMTP listener, plus the endpoint when configured.
        assert_eq!(listening(d.0.id()), 1 + usize::from(metrics.is_some()));
        if let Some(p) = metrics {
            let addr: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
            scrape(addr).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_address_taken_is_a_startup_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap();
    let sink = Sink::start(false, SinkMode::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    write_config(
        &config,
        "mx.example",
        sink.addr,
        &format!("[metrics]\nlisten = \"{at}\""),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {at} for metrics")),
        "{err}"
    );
}

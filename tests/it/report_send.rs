//! `authgate report send`: the dry run's files and JSON lines, real
//! submission to an independent SMTP server (aiosmtpd: plain, STARTTLS +
//! AUTH), the report mail signed and passing DMARC, third-party
//! destinations checked, and "never twice, never lost" across kills.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{authgate, fixtures, private_key, zone_for_key};

/// 2026-12-06 12:00 UTC: the messages' day.
const DAY_NOON: i64 = 1_796_558_400;
/// 2026-12-07 01:00 UTC: when the reports are sent.
const NEXT_DAY: i64 = 1_796_605_200;

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(submission: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let key = private_key(dir.path(), "dkim/rfc8463-rsa.pem");
        let keys = zone_for_key(dir.path(), &key, "r", "example.com");
        let policy = std::fs::read_to_string(fixtures().join("policy/policy.zone"))
            .unwrap()
            .replace(
                "\"v=DMARC1; p=reject; rua=mailto:d@example.org\"",
                "\"v=DMARC1; p=reject; rua=mailto:d@example.org,mailto:agg@reports.example.net!10m,mailto:x@unauth.example; ruf=mailto:f@example.org; fo=1\"",
            );
        let zone = dir.path().join("all.zone");
        std::fs::write(
            &zone,
            policy
                + &std::fs::read_to_string(keys).unwrap()
                + "_dmarc.example.com. IN TXT \"v=DMARC1; p=reject\"\n\
                   *._report._dmarc.reports.example.net. IN TXT \"v=DMARC1\"\n\
                   _report._domainkey.example.com. IN TXT \"ra=dkim-reports; rr=v\"\n",
        )
        .unwrap();
        let config = dir.path().join("authgate.toml");
        std::fs::write(
            &config,
            format!(
                "authserv_id = \"mx.example.com\"\n[dns]\nzone_files = [\"{}\"]\n\
                 [[dkim.keys]]\nname = \"r\"\ndomain = \"example.com\"\nselector = \"r\"\nfile = \"{}\"\n\
                 [[dkim.signing_table]]\npattern = \"*@example.com\"\nkeys = [\"r\"]\n\
                 [report]\nenabled = true\nstore = \"sqlite:{}/reports.db\"\norg_name = \"mx.example.com\"\n\
                 from = \"dmarc@example.com\"\ncontact = \"postmaster@example.com\"\n{submission}\n",
                zone.display(),
                key.display(),
                dir.path().display()
            ),
        )
        .unwrap();
        Setup { dir, config }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// One message through `pipe` at `now`, from `ip`.
    fn message(&self, ip: &str, now: i64) {
        let out = authgate()
            .args(["pipe", "--config"])
            .arg(&self.config)
            .args(["--client-ip", ip, "--helo", "mail.example.org"])
            .args(["--mail-from", "ceo@example.org", "--now", &now.to_string()])
            .write_stdin("From: <ceo@example.org>\nTo: <a@example.com>\nSubject: x\n\nhi\n")
            .output()
            .unwrap();
        assert!(matches!(out.status.code(), Some(0 | 77)));
    }

    fn send(&self, extra: &[&str], now: i64) -> (i32, Vec<serde_json::Value>, String) {
        let out = authgate()
            .args(["report", "send", "--day", "2026-12-06", "--config"])
            .arg(&self.config)
            .args(["--now", &now.to_string()])
            .args(extra)
            .output()
            .unwrap();
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (
            out.status.code().unwrap(),
            lines,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn states(&self) -> Vec<(String, String)> {
        let mut db =
            authgate::report::Db::open(&format!("sqlite:{}/reports.db", self.path().display()))
                .unwrap();
        db.query(
            "SELECT destination, state FROM agg_sent ORDER BY destination",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r[0].text(), r[1].text()))
        .collect()
    }
}

/// The SMTP server (tests/oracles/smtp_sink.py), until dropped.
struct Sink {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sink {
    fn start(dir: &Path, args: &[&str]) -> Sink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        Sink::on(dir, port, args)
    }

    fn on(dir: &Path, port: u16, args: &[&str]) -> Sink {
        let out = dir.join("sink");
        std::fs::create_dir_all(&out).unwrap();
        let mut child = Command::new("python3")
            .arg(fixtures().join("../oracles/smtp_sink.py"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&out)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Sink {
            child,
            port,
            dir: out,
        }
    }

    /// The messages received: (envelope JSON, message).
    fn received(&self) -> Vec<(serde_json::Value, String)> {
        let mut n = 1;
        let mut out = Vec::new();
        while let Ok(eml) = std::fs::read_to_string(self.dir.join(format!("{n}.eml"))) {
            let env = std::fs::read_to_string(self.dir.join(format!("{n}.env"))).unwrap();
            out.push((serde_json::from_str(&env).unwrap(), eml));
            n += 1;
        }
        out
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dry_run_writes_the_mail_and_attachment_names_the_same_file_twice_and_marks_nothing() {
    let s = Setup::new("submission = \"127.0.0.1:9\"\nsubmission_tls = \"none\"");
    s.message("192.0.2.1", DAY_NOON);
    s.message("198.51.100.9", DAY_NOON + 60);
    let out = s.path().join("out");
    let (code, lines, err) = s.send(&["--dry-run", "--out", out.to_str().unwrap()], NEXT_DAY);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["domain"], "example.org");
    assert_eq!(l["messages"], 2);
    assert_eq!(
        l["destinations"],
        serde_json::json!(["d@example.org", "agg@reports.example.net"])
    );
    assert_eq!(l["skipped"][0]["address"], "x@unauth.example");
    let file = PathBuf::from(l["file"].as_str().unwrap());
    assert!(
        file.starts_with(&out) && file.to_str().unwrap().ends_with(".xml.gz"),
        "{file:?}"
    );
    assert!(std::fs::metadata(&file).unwrap().len() > 100);
    let eml = std::fs::read_to_string(format!("{}.eml", file.display()))
        .unwrap()
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    assert!(eml.contains("DKIM-Signature:"), "{eml}");
    assert!(eml.contains(&format!(
        "Report-ID: <{}>",
        l["report_id"].as_str().unwrap()
    )));
    // The attachment is valid against the RFC 9990 schema.
    let xml = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gunzip -c '{}' | xmllint --noout --schema '{}' -",
            file.display(),
            fixtures().join("dmarc-2.0.xsd").display()
        ))
        .output()
        .unwrap();
    assert!(
        xml.status.success(),
        "{}",
        String::from_utf8_lossy(&xml.stderr)
    );
    // What we send is what a receiver's `report ingest` reads back.
    let other = s.path().join("receiver.toml");
    std::fs::write(
        &other,
        format!(
            "[report]\nstore = \"sqlite:{}/rcv.db\"\n",
            s.path().display()
        ),
    )
    .unwrap();
    let ing = authgate()
        .args(["report", "ingest", "-c"])
        .arg(&other)
        .arg(format!("{}.eml", file.display()))
        .output()
        .unwrap();
    let line: serde_json::Value = serde_json::from_slice(&ing.stdout).unwrap();
    assert_eq!(line["status"], "stored", "{line}");
    assert_eq!(line["messages"], 2);
    assert_eq!(line["report_id"], l["report_id"]);
    let shown = authgate()
        .args(["report", "show", "--json", "--dns-zone"])
        .arg(fixtures().join("policy/policy.zone"))
        .arg("-c")
        .arg(&other)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(doc[0]["domain"], "example.org");
    assert_eq!(
        (doc[0]["messages"].as_u64(), doc[0]["dmarc_pass"].as_u64()),
        (Some(2), Some(1))
    );
    // Again: the same id and file; and nothing was marked sent.
    let (_, again, _) = s.send(
        &["--dry-run", "--out", out.to_str().unwrap()],
        NEXT_DAY + 600,
    );
    assert_eq!(again[0]["file"], l["file"]);
    assert_eq!(again[0]["report_id"], l["report_id"]);
    assert!(s.states().is_empty());
    // The current day only with --dry-run.
    let (code, _, err) = s.send(&[], DAY_NOON + 3600);
    assert_eq!(code, 1);
    assert!(err.contains("not over yet"), "{err}");
}

#[test]
fn reports_go_once_per_destination_signed_and_passing_dmarc() {
    let pre = tempfile::tempdir().unwrap();
    let sink = Sink::start(pre.path(), &[]);
    let s = Setup::new(&format!(
        "submission = \"127.0.0.1:{}\"\nsubmission_tls = \"none\"",
        sink.port
    ));
    s.message("192.0.2.1", DAY_NOON);
    s.message("198.51.100.9", DAY_NOON + 60);
    let (code, lines, err) = s.send(&[], NEXT_DAY);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines[0]["destinations"].as_array().unwrap().len(),
        2,
        "{lines:?}"
    );
    let got = sink.received();
    assert_eq!(got.len(), 2);
    let mut to: Vec<String> = got
        .iter()
        .map(|(e, _)| e["to"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["agg@reports.example.net", "d@example.org"]);
    for (env, eml) in &got {
        assert_eq!(env["from"], "dmarc@example.com");
        let unfolded = eml.replace("\r\n ", " ").replace("\r\n\t", " ");
        assert!(
            unfolded
                .contains("Subject: Report Domain: example.org Submitter: example.com Report-ID:"),
            "{eml}"
        );
        // The report mail passes DKIM and DMARC at its receiver.
        let out = authgate()
            .args(["verify", "--json", "--config"])
            .arg(&s.config)
            .write_stdin(eml.clone())
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["dkim"][0]["result"], "pass", "{v}");
        assert_eq!(v["dkim"][0]["domain"], "example.com", "{v}");
    }
    // Never twice.
    let (code, lines, _) = s.send(&[], NEXT_DAY + 3600);
    assert_eq!(code, 0);
    assert_eq!(lines[0]["destinations"].as_array().unwrap().len(), 2);
    assert_eq!(sink.received().len(), 2);
    let states = s.states();
    assert_eq!(
        states,
        [
            ("".to_string(), "done".to_string()),
            ("agg@reports.example.net".into(), "sent".into()),
            ("d@example.org".into(), "sent".into())
        ]
    );
}

#[test]
fn starttls_and_auth_submission() {
    let pre = tempfile::tempdir().unwrap();
    let cert = pre.path().join("cert.pem");
    let key = pre.path().join("key.pem");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let sink = Sink::start(
        pre.path(),
        &[
            "--tls",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            "--user",
            "reports",
            "--password",
            "s3cret pass",
        ],
    );
    let pass = pre.path().join("pass");
    std::fs::write(&pass, "s3cret pass\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let s = Setup::new(&format!(
        "submission = \"127.0.0.1:{}\"\nsubmission_tls = \"starttls\"\nsubmission_ca = \"{}\"\n\
         submission_user = \"reports\"\nsubmission_password_file = \"{}\"",
        sink.port,
        cert.display(),
        pass.display()
    ));
    s.message("192.0.2.1", DAY_NOON);
    // A password file others may read is refused.
    let (code, _, err) = s.send(&[], NEXT_DAY);
    assert_eq!(code, 1);
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (code, _, err) = s.send(&[], NEXT_DAY);
    assert_eq!(code, 0, "{err}");
    let got = sink.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0["tls"], true);
    assert_eq!(got[0].0["auth"], true);
}

#[test]
fn a_refusing_server_is_retried_and_a_kill_mid_send_neither_loses_nor_doubles() {
    let pre = tempfile::tempdir().unwrap();
    let s0 = Sink::start(pre.path(), &["--reject-at", "rcpt"]);
    let port = s0.port;
    let s = Setup::new(&format!(
        "submission = \"127.0.0.1:{port}\"\nsubmission_tls = \"none\""
    ));
    s.message("192.0.2.1", DAY_NOON);
    // 450 at RCPT: not sent, exit 75, nothing marked.
    let (code, lines, _) = s.send(&[], NEXT_DAY);
    assert_eq!(code, 75);
    assert_eq!(lines[0]["skipped"].as_array().unwrap().len(), 3);
    assert!(s.states().is_empty(), "{:?}", s.states());
    drop(s0);
    // The server takes the message and never answers the final dot: kill
    // the sender there.
    let stall = Sink::on(pre.path(), port, &["--stall-at", "dot"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["report", "send", "--day", "2026-12-06", "--config"])
        .arg(&s.config)
        .args(["--now", &NEXT_DAY.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !s.states().iter().any(|(_, st)| st == "sending") {
        assert!(std::time::Instant::now() < deadline, "no claim");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stall);
    assert!(stall_received(pre.path()) == 0);
    let sink = Sink::on(pre.path(), port, &[]);
    // Soon after: another run leaves the fresh claim alone (a node may be
    // sending it now) but sends the rest.
    let (code, _, _) = s.send(&[], NEXT_DAY + 60);
    assert_eq!(code, 75);
    assert_eq!(sink.received().len(), 1);
    // Later: the stale claim is taken over; each destination has its
    // report exactly once.
    let (code, _, err) = s.send(&[], NEXT_DAY + 2 * 3600);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = s.send(&[], NEXT_DAY + 3 * 3600);
    assert_eq!(code, 0);
    let mut to: Vec<String> = sink
        .received()
        .iter()
        .map(|(e, _)| e["to"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["agg@reports.example.net", "d@example.org"]);
}

fn stall_received(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("sink"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn failure_reports_are_afrf_rate_limited_redacted_and_never_about_reports() {
    let pre = tempfile::tempdir().unwrap();
    let sink = Sink::start(pre.path(), &[]);
    let s = Setup::new(&format!(
        "submission = \"127.0.0.1:{}\"\nsubmission_tls = \"none\"\nfailure_reports = true\n\
         failure_rate_per_hour = 2\nfailure_redact = true",
        sink.port
    ));
    // Three spoofs (DMARC fail, rejected) and one that is itself a report.
    for i in 0..3 {
        s.message("198.51.100.9", DAY_NOON + i);
    }
    let report = "From: <ceo@example.org>\nTo: <a@example.com>\nSubject: Report Domain: x\n\
                  Content-Type: multipart/report; report-type=feedback-report; boundary=b\n\n--b--\n";
    let out = authgate()
        .args(["pipe", "--config"])
        .arg(&s.config)
        .args(["--client-ip", "198.51.100.9", "--helo", "evil.example"])
        .args([
            "--mail-from",
            "ceo@example.org",
            "--now",
            &(DAY_NOON + 10).to_string(),
        ])
        .write_stdin(report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77));
    let (code, _, err) = s.send(&[], NEXT_DAY);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("failure reports: 2 sent, 1 skipped"), "{err}");
    let failures: Vec<String> = sink
        .received()
        .into_iter()
        .filter(|(e, _)| e["to"][0] == "f@example.org")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(failures.len(), 2);
    for m in &failures {
        assert!(m.contains("multipart/report"), "{m}");
        assert!(
            m.contains("report-type=\"feedback-report\"")
                || m.contains("report-type=feedback-report"),
            "{m}"
        );
        assert!(m.contains("Feedback-Type: auth-failure"), "{m}");
        assert!(m.contains("Auth-Failure: dmarc"), "{m}");
        assert!(m.contains("Reported-Domain: example.org"), "{m}");
        assert!(m.contains("Source-IP: 198.51.100.9"), "{m}");
        assert!(m.contains("DKIM-Signature:"), "signed: {m}");
        // RFC 6590: the sender's local-part is not disclosed.
        let afrf = &m[m.find("text/rfc822-headers").unwrap()..];
        assert!(!afrf.contains("ceo@example.org"), "{m}");
        assert!(afrf.contains("redacted-"), "{m}");
    }
    // Nothing more to send on the next run.
    let (code, _, err) = s.send(&[], NEXT_DAY + 60);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("failure reports:"), "{err}");
}

#[test]
fn dkim_failure_reports_go_to_the_signers_reporting_address_rfc6651() {
    let pre = tempfile::tempdir().unwrap();
    let sink = Sink::start(pre.path(), &[]);
    let s = Setup::new(&format!(
        "submission = \"127.0.0.1:{}\"\nsubmission_tls = \"none\"\ndkim_failure_reports = true",
        sink.port
    ));
    let msg = "From: <news@example.com>\nTo: <a@example.org>\nSubject: s\n\nbody\n";
    let signed = authgate()
        .args([
            "sign",
            "-d",
            "example.com",
            "-s",
            "r",
            "--now",
            &(DAY_NOON - 60).to_string(),
            "-k",
        ])
        .arg(s.path().join("rfc8463-rsa.pem"))
        .write_stdin(msg)
        .output()
        .unwrap();
    assert!(signed.status.success());
    let text = String::from_utf8(signed.stdout).unwrap();
    // The signer asks for reports (r=y); the signature then fails.
    let broken = text.replacen("DKIM-Signature: v=1;", "DKIM-Signature: v=1; r=y;", 1);
    let out = authgate()
        .args(["pipe", "--config"])
        .arg(&s.config)
        .args(["--client-ip", "192.0.2.1", "--helo", "mail.example.org"])
        .args([
            "--mail-from",
            "news@example.com",
            "--now",
            &DAY_NOON.to_string(),
        ])
        .write_stdin(broken)
        .output()
        .unwrap();
    // DKIM fails and so does DMARC (p=reject): refused, and reported.
    assert_eq!(out.status.code(), Some(77));
    let (code, _, err) = s.send(&[], NEXT_DAY);
    assert_eq!(code, 0, "{err}");
    let got: Vec<String> = sink
        .received()
        .into_iter()
        .filter(|(e, _)| e["to"][0] == "dkim-reports@example.com")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(got.len(), 1, "{err}");
    assert!(got[0].contains("Auth-Failure: signature"), "{}", got[0]);
    assert!(got[0].contains("DKIM-Domain: example.com"), "{}", got[0]);
    assert!(got[0].contains("DKIM-Selector: r"), "{}", got[0]);
}

/// The daemons' daily run (`report::service::catch_up`): after downtime it
/// sends every day it missed (no gaps), never a day already sent (no
/// overlaps), and leaves the day not yet over alone.
#[test]
fn the_daily_run_catches_up_without_gaps_or_overlaps() {
    let pre = tempfile::tempdir().unwrap();
    let sink = Sink::start(pre.path(), &[]);
    let s = Setup::new(&format!(
        "submission = \"127.0.0.1:{}\"\nsubmission_tls = \"none\"",
        sink.port
    ));
    const DAY: i64 = 86_400;
    // Mail on three days (the 4th, 5th and 6th); the node was down since.
    for d in [2, 1, 0] {
        s.message("192.0.2.1", DAY_NOON - d * DAY);
    }
    let config = authgate::config::Config::load(Some(&s.config), figment::Figment::new()).unwrap();
    // 2026-12-07 00:10: before the send delay (30 min) the 6th waits.
    let delay = 30 * 60;
    let early = NEXT_DAY - 3000;
    authgate::report::service::catch_up(&config, early, delay).unwrap();
    let days = |sink: &Sink| {
        let mut d: Vec<String> = sink
            .received()
            .iter()
            .filter(|(e, _)| e["to"][0] == "d@example.org")
            .map(|(_, m)| {
                let m = m.replace("\r\n ", " ");
                let at = m.find("Report-ID: <").unwrap() + 12;
                m[at..at + 10].to_string()
            })
            .collect();
        d.sort();
        d
    };
    assert_eq!(days(&sink), ["1796342400", "1796428800"], "the 4th and 5th");
    // Later that day: only the 6th is new.
    authgate::report::service::catch_up(&config, NEXT_DAY, delay).unwrap();
    assert_eq!(days(&sink), ["1796342400", "1796428800", "1796515200"]);
    // And again: nothing more.
    authgate::report::service::catch_up(&config, NEXT_DAY + 3600, delay).unwrap();
    assert_eq!(days(&sink).len(), 3);
}

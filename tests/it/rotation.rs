//! `authgate key rotate`: a new key signs only once its record is published,
//! and the old record's overlap and revocation are reported.
//!
//! The main case runs `authgate serve` signing for example.com against a DNS
//! server on loopback whose zone the test changes (publish the new record,
//! revoke the old one), with mail going through throughout: every message is
//! verified against what the DNS server publishes at that moment.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::dns_server::DnsServer;
use super::serve::{Daemon, Sink, SinkMode, hello};
use super::support::authgate;

const DOMAIN: &str = "example.com";

/// `authgate keygen` for an Ed25519 key `mail` of example.com in `dir`:
/// (key file, TXT value).
fn first_key(dir: &Path) -> (PathBuf, String) {
    let out = authgate()
        .args(["keygen", "-d", DOMAIN, "-s", "mail", "-a", "ed25519", "-o"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let value = text.lines().find(|l| l.starts_with("v=DKIM1")).unwrap();
    (dir.join("mail.example.com.key"), value.to_owned())
}

fn txt(selector: &str, value: &str) -> String {
    format!("{selector}._domainkey.{DOMAIN}. 60 IN TXT \"{value}\"\n")
}

fn write_config(path: &Path, dns: SocketAddr, hop: SocketAddr, key: &Path, interval: u64) {
    std::fs::write(
        path,
        format!(
            "authserv_id = \"mx.example\"\n\
             [trust]\ninternal_hosts = [\"10.0.0.0/8\"]\n\
             [dns]\nservers = [\"{dns}\"]\ntimeout_ms = 500\nattempts = 1\n\
             [dkim.rotation]\ncheck_interval_secs = {interval}\noverlap_secs = 600\n\
             [[dkim.keys]]\nname = \"main\"\ndomain = \"{DOMAIN}\"\nselector = \"mail\"\nfile = {:?}\n\
             [[dkim.signing_table]]\npattern = \"*@{DOMAIN}\"\nkeys = [\"main\"]\n\
             [[listener]]\nnext_hop = \"{hop}\"\n",
            key.display().to_string()
        ),
    )
    .unwrap();
}

/// What `key rotate` printed: (new selector, TXT value).
fn rotate(config: &Path, extra: &[&str]) -> (String, String) {
    let out = authgate()
        .args(["key", "rotate", "--config"])
        .arg(config)
        .args(["--domain", DOMAIN])
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let selector = text
        .split("new selector ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_owned();
    let value = text.lines().find(|l| l.starts_with("v=DKIM1")).unwrap();
    (selector, value.to_owned())
}

/// `authgate key check --json`: (exit code, [(selector, status)]).
fn key_check(config: &Path, env: &[(&str, &str)]) -> (i32, Vec<(String, String)>, String) {
    let mut cmd = authgate();
    cmd.args(["key", "check", "--json", "--config"]).arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let statuses = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["selector"].as_str().unwrap().to_owned(),
                k["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (
        out.status.code().unwrap(),
        statuses,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Sends one message from an internal client through `serve`; returns it as
/// the next hop received it.
async fn send(addr: SocketAddr, sink: &Sink, n: usize) -> Vec<u8> {
    let before = sink.transactions().len();
    let mut c = hello(addr, "EHLO").await;
    c.send("XFORWARD ADDR=10.1.2.3\r\n").await;
    c.expect(250).await;
    c.send(&format!(
        "MAIL FROM:<alice@{DOMAIN}>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
    ))
    .await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(354).await;
    c.send(&format!(
        "From: Alice <alice@{DOMAIN}>\r\nTo: b@example.net\r\nSubject: message {n}\r\n\r\nbody {n}\r\n.\r\nQUIT\r\n"
    ))
    .await;
    c.expect(250).await;
    c.expect(221).await;
    let all = sink.transactions();
    assert_eq!(all.len(), before + 1);
    all[before].data.clone()
}

/// The `s=` of the message's DKIM-Signature.
fn selector_of(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let sig = text
        .split("DKIM-Signature:")
        .nth(1)
        .unwrap_or_else(|| panic!("not signed:\n{text}"));
    let s = sig
        .split(';')
        .map(str::trim)
        .find_map(|t| t.strip_prefix("s="))
        .unwrap();
    s.to_owned()
}

/// `authgate verify` against the DNS server as it is now: dkim=pass.
fn verifies_now(message: &[u8], dns: SocketAddr) {
    let out = authgate()
        .args(["verify", "--authserv-id", "check", "--dns-server"])
        .arg(dns.to_string())
        .write_stdin(message.to_vec())
        .output()
        .unwrap();
    let ar = String::from_utf8_lossy(&out.stdout);
    assert!(
        ar.contains("dkim=pass"),
        "{ar}\n{}",
        String::from_utf8_lossy(message)
    );
}

/// The whole life under a running `serve`: rotate (pending: the old key
/// keeps signing), publish (SIGHUP switches), overlap, revocable, revoked;
/// then a second rotation switched by the timer.
#[tokio::test(flavor = "multi_thread")]
async fn rotation_under_a_running_serve_never_signs_with_an_unpublished_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, mail_value) = first_key(dir.path());
    let mut zone = txt("mail", &mail_value);
    let dns = DnsServer::start(&zone).await;
    let sink = Sink::start(false, SinkMode::Accept).await;
    let config = dir.path().join("authgate.toml");
    // First: no timer to speak of; the switch comes from SIGHUP.
    write_config(&config, dns.addr(), sink.addr, &key, 3600);
    let d = Daemon::start(&config, dir.path()).await;
    let mut n = 0;
    let through = |m: Vec<u8>, expect: &str| {
        assert_eq!(selector_of(&m), expect);
        verifies_now(&m, dns.addr());
    };
    for _ in 0..2 {
        n += 1;
        through(send(d.addr, &sink, n).await, "mail");
    }

    // Rotate: a new key beside the old one, mode 0600; state beside the config.
    let (new, new_value) = rotate(&config, &[]);
    assert!(new.starts_with("s20"), "{new}");
    let new_file = dir.path().join(format!("{new}.{DOMAIN}.key"));
    let mode = std::fs::metadata(&new_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(dir.path().join("rotation/main.toml").exists());
    // Running it again prints the same pending key.
    let (again, again_value) = rotate(&config, &[]);
    assert_eq!((again, again_value), (new.clone(), new_value.clone()));

    // Pending: key check warns (exit 1) and nothing switches, even on SIGHUP.
    let (code, statuses, doc) = key_check(&config, &[]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(
        statuses,
        [
            ("mail".to_owned(), "ok".to_owned()),
            (new.clone(), "pending".to_owned())
        ]
    );
    assert!(doc.contains(&new_value), "the fix is the record: {doc}");
    d.signal("-HUP");
    d.wait_log(&format!("{new} waits for its record (missing)"))
        .await;
    d.wait_log("configuration and keys reloaded").await;
    for _ in 0..2 {
        n += 1;
        through(send(d.addr, &sink, n).await, "mail");
    }

    // Published: the next check switches; mail keeps verifying throughout.
    zone.push_str(&txt(&new, &new_value));
    dns.set_zone(&zone);
    for _ in 0..2 {
        n += 1;
        through(send(d.addr, &sink, n).await, "mail");
    }
    d.signal("-HUP");
    d.wait_log("it signs from now on").await;
    for _ in 0..3 {
        n += 1;
        through(send(d.addr, &sink, n).await, &new);
    }

    // Overlap: the old record must stay; past it, key check says revoke.
    let (code, statuses, doc) = key_check(&config, &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        statuses,
        [
            (new.clone(), "ok".to_owned()),
            ("mail".to_owned(), "overlap".to_owned())
        ]
    );
    let past = [("AUTHGATE_DKIM__ROTATION__OVERLAP_SECS", "0")];
    let (code, statuses, doc) = key_check(&config, &past);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(statuses[1], ("mail".to_owned(), "revocable".to_owned()));
    assert!(doc.contains("v=DKIM1; p="), "{doc}");
    // Revoked: mail signed now still verifies; key check is content.
    zone = txt("mail", "v=DKIM1; k=ed25519; p=") + &txt(&new, &new_value);
    dns.set_zone(&zone);
    n += 1;
    through(send(d.addr, &sink, n).await, &new);
    let (code, statuses, doc) = key_check(&config, &past);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(statuses[1], ("mail".to_owned(), "revoked".to_owned()));

    // A second rotation, to Ed25519 again by default, switched by the timer
    // (the interval comes from the reloaded configuration).
    write_config(&config, dns.addr(), sink.addr, &key, 1);
    d.signal("-HUP");
    let (third, third_value) = rotate(&config, &["--selector", "next"]);
    assert_eq!(third, "next");
    d.wait_log("next waits for its record (missing)").await;
    n += 1;
    through(send(d.addr, &sink, n).await, &new);
    zone.push_str(&txt("next", &third_value));
    dns.set_zone(&zone);
    d.wait_log("next._domainkey.example.com is published").await;
    n += 1;
    through(send(d.addr, &sink, n).await, "next");
    assert_eq!(sink.transactions().len(), n, "every message went through");
}

/// With only `authgate pipe`, `key check` (from cron) makes the switch; a
/// state that no longer matches the configuration is refused by rotate.
#[tokio::test(flavor = "multi_thread")]
async fn key_check_switches_for_pipe_only_setups() {
    let dir = tempfile::tempdir().unwrap();
    let (key, mail_value) = first_key(dir.path());
    let dns = DnsServer::start(&txt("mail", &mail_value)).await;
    let config = dir.path().join("authgate.toml");
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    write_config(&config, dns.addr(), unused, &key, 300);
    let (new, new_value) = rotate(&config, &[]);
    let pipe = || {
        let out = authgate()
            .args(["pipe", "--sign", "--config"])
            .arg(&config)
            .write_stdin(format!(
                "From: alice@{DOMAIN}\r\nTo: b@example.net\r\nSubject: x\r\n\r\nhi\r\n"
            ))
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    assert_eq!(selector_of(&pipe()), "mail");
    dns.set_zone(&(txt("mail", &mail_value) + &txt(&new, &new_value)));
    assert_eq!(selector_of(&pipe()), "mail", "published, not yet checked");
    let out = authgate()
        .args(["key", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("signs with it from now on"), "{stderr}");
    assert!(stdout.contains("rotated: signs from now on"), "{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let signed = pipe();
    assert_eq!(selector_of(&signed), new);
    verifies_now(&signed, dns.addr());

    // The admin edits the configuration by hand: the configuration wins.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("selector = \"mail\"", "selector = \"manual\""),
    )
    .unwrap();
    let out = authgate()
        .args(["key", "rotate", "--config"])
        .arg(&config)
        .args(["--domain", DOMAIN])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("does not match the configuration"),
        "{stderr}"
    );
}

#[test]
fn rotate_says_which_key_when_it_cannot_tell() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = first_key(dir.path());
    let config = dir.path().join("authgate.toml");
    let keys = |rows: &str| {
        std::fs::write(
            &config,
            format!(
                "[[dkim.keys]]\nname = \"a\"\ndomain = \"{DOMAIN}\"\nselector = \"mail\"\nfile = {k:?}\n\
                 [[dkim.keys]]\nname = \"b\"\ndomain = \"%\"\nselector = \"mail\"\nfile = {k:?}\n{rows}",
                k = key.display().to_string()
            ),
        )
        .unwrap();
    };
    let fails = |args: &[&str], needle: &str| {
        let out = authgate()
            .args(["key", "rotate", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    };
    keys("[[dkim.signing_table]]\npattern = \"*\"\nkeys = [\"b\"]\n");
    fails(&["--domain", DOMAIN], "signs for every domain");
    fails(&["--domain", "example.net"], "signs for every domain");
    keys("[[dkim.signing_table]]\npattern = \"*@example.com\"\nkeys = [\"a\"]\n");
    fails(
        &["--domain", "example.org"],
        "no key in the signing table signs for example.org",
    );
    fails(
        &["--domain", DOMAIN, "--key", "b"],
        "no key named \"b\" signs for example.com",
    );
    fails(&["--domain", DOMAIN, "--selector", "mail"], "already used");
    assert!(!dir.path().join("rotation/a.toml").exists());
}

//! The command-line contract: verify, sign, pipe, keygen, config check.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use crate::support::{authgate, fixtures, private_key, zone_for_key};

const RFC8463_NOW: &str = "1528637909";

fn rfc8463_args(cmd: &mut assert_cmd::Command) -> &mut assert_cmd::Command {
    cmd.arg("--dns-zone")
        .arg(fixtures().join("dkim/rfc8463.zone"))
        .args(["--now", RFC8463_NOW])
}

#[test]
fn verify_prints_the_authentication_results_header() {
    let out = rfc8463_args(authgate().arg("verify").args(["--authserv-id", "mx.test"]))
        .arg(fixtures().join("dkim/rfc8463.eml"))
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.starts_with(
            "Authentication-Results: mx.test;\n\tdkim=pass header.d=football.example.com"
        ),
        "{text}"
    );
    assert_eq!(text.matches("dkim=pass").count(), 2);
}

#[test]
fn verify_json_reports_each_signature_in_order() {
    let out = rfc8463_args(authgate().args(["verify", "--json"]))
        .pipe_stdin(fixtures().join("dkim/rfc8463.eml"))
        .unwrap()
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let sigs = v["dkim"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[0]["selector"], "brisbane");
    assert_eq!(sigs[0]["algorithm"], "ed25519-sha256");
    assert_eq!(sigs[1]["selector"], "test");
    for s in sigs {
        assert_eq!(s["result"], "pass");
        assert_eq!(s["testing"], false);
    }
}

#[test]
fn verify_with_unknown_key_is_permerror_and_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("empty.zone");
    std::fs::write(&zone, "other.example. 300 IN TXT \"x\"\n").unwrap();
    let out = authgate()
        .args(["verify", "--json", "--now", RFC8463_NOW, "--dns-zone"])
        .arg(&zone)
        .arg(fixtures().join("dkim/rfc8463.eml"))
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["dkim"][0]["result"], "permerror");
    assert_eq!(
        v["dkim"][0]["reason"],
        "no key record at brisbane._domainkey.football.example.com"
    );
}

#[test]
fn sign_refuses_group_readable_key_and_wrong_algorithm() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path(), "dkim/rfc8463-rsa.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = authgate()
        .args(["sign", "-d", "example.com", "-s", "s"])
        .arg("--key")
        .arg(&key)
        .write_stdin("From: a@example.com\n\nx\n")
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("chmod 600") && !err.contains("BEGIN"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    authgate()
        .args([
            "sign",
            "-d",
            "example.com",
            "-s",
            "s",
            "--algorithm",
            "ed25519-sha256",
        ])
        .arg("--key")
        .arg(&key)
        .write_stdin("From: a@example.com\n\nx\n")
        .assert()
        .failure();
}

fn write_config(
    dir: &std::path::Path,
    keys: &[(&str, &str, &std::path::Path)],
    zone: &std::path::Path,
) -> std::path::PathBuf {
    let mut text = format!(
        "authserv_id = \"mx.test\"\n[dns]\nzone_files = [\"{}\"]\n",
        zone.display()
    );
    let mut names = Vec::new();
    for (sel, domain, file) in keys {
        text += &format!(
            "[[dkim.keys]]\nname = \"{sel}\"\ndomain = \"{domain}\"\nselector = \"{sel}\"\nfile = \"{}\"\n",
            file.display()
        );
        names.push(format!("\"{sel}\""));
    }
    text += &format!(
        "[[dkim.signing_table]]\npattern = \"*@example.com\"\nkeys = [{}]\n",
        names.join(", ")
    );
    let path = dir.join("authgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn pipe_dual_signs_lf_mail_and_the_result_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = private_key(dir.path(), "dkim/rfc8463-rsa.pem");
    let ed = dir.path().join("ed.pem");
    std::fs::write(&ed, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n").unwrap();
    std::fs::set_permissions(&ed, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    zone_for_key(dir.path(), &rsa, "r", "example.com");
    let zone = zone_for_key(dir.path(), &ed, "e", "example.com");
    assert_eq!(zone, dir.path().join("e.example.com.zone"));
    let zone_all = dir.path().join("all.zone");
    let both = std::fs::read_to_string(dir.path().join("r.example.com.zone")).unwrap()
        + &std::fs::read_to_string(&zone).unwrap();
    std::fs::write(&zone_all, both).unwrap();
    let config = write_config(
        dir.path(),
        &[("r", "example.com", &rsa), ("e", "example.com", &ed)],
        &zone_all,
    );
    let msg = "From: Joe <joe@example.com>\nTo: ann@example.org\nSubject: caf\u{e9} \n\tfolded\n\nline one  \nline two\n\n";
    let out = authgate()
        .args(["pipe", "--sign", "--config"])
        .arg(&config)
        .write_stdin(msg)
        .assert()
        .success();
    let signed = out.get_output().stdout.clone();
    let text = String::from_utf8(signed.clone()).unwrap();
    assert!(!text.contains('\r'), "LF in, LF out");
    assert!(text.ends_with(msg), "original message kept byte for byte");
    assert_eq!(text.matches("DKIM-Signature:").count(), 2);
    assert!(text.lines().all(|l| l.len() <= 78));
    let out = authgate()
        .args(["verify", "--json", "--config"])
        .arg(&config)
        .write_stdin(signed)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["dkim"][0]["result"], "pass", "{v}");
    assert_eq!(v["dkim"][1]["result"], "pass", "{v}");
}

/// RFC 6376 §5.4 ("The From header field MUST be signed"): `authgate sign`
/// asked to sign a message with no From, or with two (RFC 5322 §3.6), says
/// why and exits 1 with nothing on stdout, never a signature over a missing
/// From; `pipe --sign` delivers such a message unsigned, exit 0, and warns.
#[test]
fn message_without_a_single_from_is_not_signed_by_sign_or_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path(), "dkim/rfc8463-rsa.pem");
    let zone = zone_for_key(dir.path(), &key, "r", "example.com");
    let config = write_config(dir.path(), &[("r", "example.com", &key)], &zone);
    for (msg, why) in [
        (
            "Sender: a@example.com\nSubject: s\n\nbody\n",
            "no From header field",
        ),
        (
            "From: a@example.com\nFrom: b@example.com\n\nbody\n",
            "2 From header fields",
        ),
    ] {
        let out = authgate()
            .args(["sign", "-d", "example.com", "-s", "r", "--key"])
            .arg(&key)
            .write_stdin(msg)
            .assert()
            .code(1);
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(out.get_output().stdout.is_empty(), "{msg:?}");
        assert!(err.contains("not signed") && err.contains(why), "{err}");
        let out = authgate()
            .args(["pipe", "--sign", "--config"])
            .arg(&config)
            .write_stdin(format!("Return-Path: <a@example.com>\n{msg}"))
            .assert()
            .success();
        let got = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            got.ends_with(msg) && !got.contains("DKIM-Signature"),
            "{got}"
        );
        assert!(
            err.contains("message not signed") && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn pipe_with_defaults_adds_authentication_results_only() {
    let out = rfc8463_args(authgate().args(["pipe", "--authserv-id", "mx.test"]))
        .pipe_stdin(fixtures().join("dkim/rfc8463.eml"))
        .unwrap()
        .assert()
        .success();
    let original = std::fs::read(fixtures().join("dkim/rfc8463.eml")).unwrap();
    let got = out.get_output().stdout.clone();
    assert!(got.starts_with(b"Authentication-Results: mx.test;\r\n\tdkim=pass"));
    assert!(got.ends_with(&original));
}

#[test]
fn pipe_exits_75_and_writes_nothing_when_it_cannot_spool() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[message]\nspool_threshold = 10\nspool_dir = \"/nonexistent/spool\"\n[dns]\nzone_files = []\nservers = [\"127.0.0.1:9\"]\n").unwrap();
    let out = authgate()
        .args(["pipe", "--config"])
        .arg(&config)
        .write_stdin("From: a@b.example\n\nthis body is longer than ten bytes\n")
        .assert()
        .code(75);
    assert!(out.get_output().stdout.is_empty());
}

#[test]
fn pipe_stopped_by_a_signal_mid_message_exits_75() {
    for sig in ["TERM", "INT", "HUP"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .args(["pipe", "--config", "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Half a message; the filter now waits for the rest.
        stdin
            .write_all(b"From: a@b.example\n\nthe first line\n")
            .unwrap();
        stdin.flush().unwrap();
        // The handlers are in place once the "signals" thread exists.
        let pid = child.id();
        let has_thread = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| {
                    d.flatten().any(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim() == "signals")
                    })
                })
                .unwrap_or(false)
        };
        for _ in 0..200 {
            if has_thread() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(has_thread(), "no signals thread");
        Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let code = child.wait().ok();
        drop(stdin);
        let status = code.expect("the filter ignored the signal");
        let mut err = String::new();
        stderr.read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(75), "SIG{sig}: {status:?} {err}");
        assert!(err.contains(&format!("SIG{sig}, exiting 75")), "{err}");
    }
}

#[test]
fn pipe_exits_75_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[dkim]\nnot_a_key = 1\n").unwrap();
    let out = authgate()
        .args(["pipe", "--config"])
        .arg(&config)
        .write_stdin("From: a@b\n\nx\n")
        .assert()
        .code(75);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("not_a_key"));
}

#[test]
fn config_check_names_the_offending_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path(), "dkim/rfc8463-rsa.pem");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let config = write_config(
        dir.path(),
        &[("k", "example.com", &key)],
        &fixtures().join("dkim/rfc8463.zone"),
    );
    let out = authgate()
        .args(["config", "check", "--config"])
        .arg(&config)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("dkim.keys[0].file") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = authgate()
        .args(["config", "check", "--config"])
        .arg(&config)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("configuration OK") && text.contains("max_signatures = 8"),
        "{text}"
    );
}

#[test]
fn keygen_key_signs_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["rsa", "ed25519"] {
        let out = authgate()
            .args([
                "keygen",
                "-d",
                "example.com",
                "-s",
                alg,
                "-a",
                alg,
                "--testing",
                "--out",
            ])
            .arg(dir.path())
            .assert()
            .success();
        let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        let zone_line: String = text
            .lines()
            .skip_while(|l| !l.starts_with("# 1."))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let zone = dir.path().join(format!("{alg}.zone"));
        std::fs::write(&zone, zone_line + "\n").unwrap();
        let key = dir.path().join(format!("{alg}.example.com.key"));
        let signed = authgate()
            .args(["sign", "-d", "example.com", "-s", alg, "--key"])
            .arg(&key)
            .write_stdin("From: a@example.com\n\nhi\n")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let out = authgate()
            .args(["verify", "--json", "--dns-zone"])
            .arg(&zone)
            .write_stdin(signed)
            .assert()
            .success();
        let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        assert_eq!(v["dkim"][0]["result"], "pass", "{alg}: {v}");
        assert_eq!(v["dkim"][0]["testing"], true);
    }
}

/// A 100 MB message streams through `pipe --sign` and verifies afterwards.
/// (Peak memory is measured by the benchmark script, not asserted here.)
#[test]
fn hundred_megabyte_message_through_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path(), "dkim/rfc8463-rsa.pem");
    let zone = zone_for_key(dir.path(), &key, "big", "example.com");
    let config = write_config(dir.path(), &[("big", "example.com", &key)], &zone);
    let bin = assert_cmd::cargo::cargo_bin("authgate");
    let signed_path = dir.path().join("signed.eml");
    let mut child = Command::new(&bin)
        .args(["pipe", "--sign", "--config"])
        .arg(&config)
        .env("TMPDIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&signed_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 =\r\n";
    let lines = 100 * 1024 * 1024 / line.len();
    let writer = std::thread::spawn(move || {
        stdin
            .write_all(b"From: big@example.com\r\nSubject: big\r\n\r\n")
            .unwrap();
        let block: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 1000)
            .collect();
        for _ in 0..lines / 1000 {
            stdin.write_all(&block).unwrap();
        }
    });
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    let size = std::fs::metadata(&signed_path).unwrap().len();
    assert!(size > 100 * 1000 * 1000, "{size}");
    let mut head = vec![0u8; 20];
    std::fs::File::open(&signed_path)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert!(head.starts_with(b"DKIM-Signature: v=1;"));
    let out = authgate()
        .args(["verify", "--json", "--config"])
        .arg(&config)
        .arg(&signed_path)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["dkim"][0]["result"], "pass", "{v}");
}

/// The production resolver against a DNS server on loopback gives the same
/// verdicts as the zone-file resolver on the same data; a SERVFAIL for the
/// key becomes temperror, never permerror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_over_a_loopback_dns_server_matches_zone_files() {
    use crate::dns_server::{DnsServer, Mode};
    let zone_path = fixtures().join("dkim/rfc8463.zone");
    let server = DnsServer::start(&std::fs::read_to_string(&zone_path).unwrap()).await;
    let addr = server.addr().to_string();
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = authgate()
                .args(["verify", "--json", "--now", RFC8463_NOW])
                .args(&args)
                .arg(fixtures().join("dkim/rfc8463.eml"))
                .output()
                .unwrap();
            assert!(out.status.success());
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["dkim"].clone()
        })
    };
    let live = run(vec!["--dns-server".into(), addr.clone()])
        .await
        .unwrap();
    let offline = run(vec!["--dns-zone".into(), zone_path.display().to_string()])
        .await
        .unwrap();
    assert_eq!(live, offline);
    assert_eq!(live[0]["result"], "pass");
    assert!(server.queries_for("brisbane._domainkey.football.example.com") >= 1);
    server.set_mode("test._domainkey.football.example.com", Mode::ServFail);
    let failing = run(vec!["--dns-server".into(), addr]).await.unwrap();
    assert_eq!(failing[0]["result"], "pass");
    assert_eq!(failing[1]["result"], "temperror", "{failing}");
}

fn client_config(dir: &std::path::Path, action: &str) -> std::path::PathBuf {
    let path = dir.join("client.toml");
    let text = format!(
        "authserv_id = \"mx.example.com\"\n[dns]\nzone_files = [\"{}\"]\n[trust]\ntrusted_received_by = [\"mx.example.com\"]\n\
         [[dnsbl.zones]]\nzone = \"bl.example\"\naction = \"{action}\"\n[[dnsbl.zones]]\nzone = \"refusing.example\"\naction = \"reject\"\n",
        fixtures().join("client/client.zone").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn pipe_reads_the_client_from_our_received_field_for_iprev_and_dnsbl() {
    let dir = tempfile::tempdir().unwrap();
    let config = client_config(dir.path(), "reject");
    let out = authgate()
        .args(["pipe", "--config"])
        .arg(&config)
        .pipe_stdin(fixtures().join("client/received.eml"))
        .unwrap()
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("iprev=pass policy.iprev=192.0.2.1 (mail.example.org)"),
        "{text}"
    );
    assert!(
        !text.contains("X-Authgate-DNSBL"),
        "refused query is not a listing: {text}"
    );
}

#[test]
fn dnsbl_listing_adds_a_header_or_refuses_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let msg = "From: x@example.net\nSubject: buy\n\nspam\n";
    let config = client_config(dir.path(), "header");
    let out = authgate()
        .args(["pipe", "--client-ip", "192.0.2.66", "--config"])
        .arg(&config)
        .write_stdin(msg)
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains(
            "X-Authgate-DNSBL: bl.example=listed (127.0.0.2); refusing.example=not-listed"
        ),
        "{text}"
    );
    assert!(text.contains("iprev=fail"), "{text}");
    let config = client_config(dir.path(), "reject");
    let out = authgate()
        .args(["pipe", "--client-ip", "192.0.2.66", "--config"])
        .arg(&config)
        .write_stdin(msg)
        .assert()
        .code(77);
    assert!(out.get_output().stdout.is_empty());
    // The reply the proxy and the milter give, on stderr (the MTA logs it).
    assert!(
        String::from_utf8_lossy(&out.get_output().stderr)
            .contains("550 5.7.1 Message refused: client listed in bl.example")
    );
    let out = authgate()
        .args(["verify", "--json", "--ip", "192.0.2.66", "--config"])
        .arg(&config)
        .write_stdin(msg)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["iprev"]["result"], "fail");
    assert_eq!(v["dnsbl"][0]["status"], "listed");
    assert_eq!(v["dnsbl"][0]["codes"][0], "127.0.0.2");
}

/// A config answering DNS from the policy and DKIM key fixtures.
fn policy_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("policy.toml");
    let text = format!(
        "authserv_id = \"mx.example.com\"\n{extra}\n[dns]\nzone_files = [\"{}\", \"{}\"]\n",
        fixtures().join("policy/policy.zone").display(),
        fixtures().join("dkim/keys.zone").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn pipe_with(config: &std::path::Path, args: &[&str], msg: &str) -> (Option<i32>, String, String) {
    let out = authgate()
        .arg("pipe")
        .arg("--config")
        .arg(config)
        .args(args)
        .write_stdin(msg)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SPOOF: &str =
    "From: CEO <ceo@example.org>\nTo: staff@example.com\nSubject: wire money\n\npay now\n";
const ENVELOPE_BAD: [&str; 6] = [
    "--client-ip",
    "198.51.100.9",
    "--helo",
    "evil.example",
    "--mail-from",
    "ceo@example.org",
];

#[test]
fn dmarc_reject_refuses_a_spoof_and_spf_pass_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let config = policy_config(dir.path(), "");
    let (code, out, err) = pipe_with(&config, &ENVELOPE_BAD, SPOOF);
    assert_eq!(code, Some(77), "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("DMARC policy of example.org says reject"),
        "{err}"
    );
    let good = [
        "--client-ip",
        "192.0.2.1",
        "--helo",
        "mail.example.org",
        "--mail-from",
        "ceo@example.org",
    ];
    let (code, out, _) = pipe_with(&config, &good, SPOOF);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("Authentication-Results: mx.example.com;\n\tspf=pass"),
        "{out}"
    );
    assert!(
        out.contains("\nReceived-SPF: pass (mx.example.com: "),
        "{out}"
    );
    assert!(
        out.contains(
            "spf=pass (example.org: matched ip4:192.0.2.0/24) smtp.mailfrom=ceo@example.org"
        ),
        "{out}"
    );
    assert!(
        out.contains("spf=pass (mail.example.org: matched a) smtp.helo=mail.example.org"),
        "{out}"
    );
    assert!(
        out.contains("dmarc=pass (p=reject dis=none) header.from=example.org"),
        "{out}"
    );
    assert!(
        out.contains("iprev=pass policy.iprev=192.0.2.1 (mail.example.org)"),
        "{out}"
    );
    assert!(out.ends_with(SPOOF));
}

#[test]
fn local_actions_quarantine_header_only_trusted_hosts_and_never_block() {
    let dir = tempfile::tempdir().unwrap();
    let config = policy_config(dir.path(), "[dmarc]\nreject_action = \"quarantine\"\n");
    let (code, out, _) = pipe_with(&config, &ENVELOPE_BAD, SPOOF);
    assert_eq!(code, Some(0));
    assert!(out.contains("X-Authgate-Quarantine: dmarc"), "{out}");
    assert!(
        out.contains(
            "dmarc=fail (p=reject dis=quarantine local policy: quarantine instead of reject"
        ),
        "{out}"
    );
    let config = policy_config(dir.path(), "[dmarc]\nreject_action = \"header\"\n");
    let (code, out, _) = pipe_with(&config, &ENVELOPE_BAD, SPOOF);
    assert_eq!(code, Some(0));
    assert!(
        !out.contains("X-Authgate-Quarantine") && out.contains("dis=none"),
        "{out}"
    );
    let config = policy_config(
        dir.path(),
        "[trust]\ninternal_hosts = [\"198.51.100.0/24\"]\n",
    );
    let (code, out, _) = pipe_with(&config, &ENVELOPE_BAD, SPOOF);
    assert_eq!(code, Some(0));
    assert!(out.contains("dis=none trusted host"), "{out}");
    let config = policy_config(dir.path(), "never_block = true\n");
    let (code, out, _) = pipe_with(&config, &ENVELOPE_BAD, SPOOF);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("spf=fail") && out.contains("dmarc=fail"),
        "{out}"
    );
}

#[test]
fn quarantine_policy_testing_mode_and_temperror() {
    let dir = tempfile::tempdir().unwrap();
    let config = policy_config(dir.path(), "");
    let msg = SPOOF.replace("example.org", "quarantine.example");
    let env = [
        "--client-ip",
        "198.51.100.9",
        "--helo",
        "evil.example",
        "--mail-from",
        "x@quarantine.example",
    ];
    let (code, out, _) = pipe_with(&config, &env, &msg);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("X-Authgate-Quarantine: dmarc") && out.contains("p=quarantine dis=quarantine"),
        "{out}"
    );
    let msg = SPOOF.replace("example.org", "testing.example");
    let env = [
        "--client-ip",
        "198.51.100.9",
        "--helo",
        "evil.example",
        "--mail-from",
        "x@testing.example",
    ];
    let (code, out, _) = pipe_with(&config, &env, &msg);
    assert_eq!(code, Some(0), "t=y: reject lowered to quarantine");
    assert!(out.contains("testing mode t=y"), "{out}");
    let msg = SPOOF.replace("example.org", "flaky.example");
    let env = [
        "--client-ip",
        "198.51.100.9",
        "--helo",
        "evil.example",
        "--mail-from",
        "x@flaky.example",
    ];
    let (code, out, _) = pipe_with(&config, &env, &msg);
    assert_eq!(code, Some(0));
    assert!(out.contains("dmarc=temperror"), "{out}");
    let config = policy_config(dir.path(), "[dmarc]\ntemperror_action = \"tempfail\"\n");
    let (code, out, err) = pipe_with(&config, &env, &msg);
    assert_eq!((code, out.is_empty()), (Some(75), true), "{err}");
    assert!(
        err.contains("451 4.7.1 Try again later: DMARC temporary error for"),
        "{err}"
    );
}

#[test]
fn dkim_alignment_passes_dmarc_when_spf_fails() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path(), "dkim/rsa2048.pem");
    let signed = authgate()
        .args(["sign", "-d", "example.org", "-s", "rsa2048", "--key"])
        .arg(&key)
        .write_stdin(SPOOF)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let config = policy_config(dir.path(), "");
    let out = authgate()
        .args(["verify", "--json", "--config"])
        .arg(&config)
        .args(ENVELOPE_BAD)
        .write_stdin(signed)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["spf"]["result"], "fail");
    assert_eq!(v["dkim"][0]["result"], "pass");
    assert_eq!(v["dmarc"]["result"], "pass", "{v}");
    assert_eq!(v["dmarc"]["dkim_aligned"], true);
    assert_eq!(v["dmarc"]["policy"], "reject");
}

#[test]
fn multi_from_and_required_from() {
    let dir = tempfile::tempdir().unwrap();
    let msg = "From: a@example.org\nFrom: b@quarantine.example\nSubject: x\n\nbody\n";
    let config = policy_config(dir.path(), "[dmarc]\nrequire_valid_from = true\n");
    let (code, _, err) = pipe_with(&config, &ENVELOPE_BAD, msg);
    assert_eq!(code, Some(77));
    assert!(err.contains("unusable From header field"), "{err}");
    let config = policy_config(dir.path(), "[dmarc]\nmulti_domain_from = \"strictest\"\n");
    let (code, _, _) = pipe_with(&config, &ENVELOPE_BAD, msg);
    assert_eq!(code, Some(77), "strictest of reject and quarantine");
}

/// `authgate spf` against a DNS server on loopback equals `--dns-zone`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_over_a_loopback_dns_server_matches_zone_files() {
    use crate::dns_server::DnsServer;
    let zone_path = fixtures().join("policy/policy.zone");
    let server = DnsServer::start(&std::fs::read_to_string(&zone_path).unwrap()).await;
    let addr = server.addr().to_string();
    let cases = [
        ("192.0.2.1", "ceo@example.org"),
        ("198.51.100.9", "ceo@example.org"),
        ("192.0.2.1", "x@nowhere.example"),
    ];
    for (ip, from) in cases {
        let run = |dns: Vec<String>| {
            let (ip, from) = (ip.to_string(), from.to_string());
            tokio::task::spawn_blocking(move || {
                let out = authgate()
                    .args([
                        "spf",
                        "--json",
                        "--ip",
                        &ip,
                        "--helo",
                        "mail.example.org",
                        "--mail-from",
                        &from,
                    ])
                    .args(&dns)
                    .output()
                    .unwrap();
                let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                v.as_object_mut().unwrap().remove("received_spf");
                v
            })
        };
        let live = run(vec!["--dns-server".into(), addr.clone()])
            .await
            .unwrap();
        let offline = run(vec!["--dns-zone".into(), zone_path.display().to_string()])
            .await
            .unwrap();
        assert_eq!(live, offline, "{ip} {from}");
    }
    assert!(server.queries_for("example.org") >= 1);
}

#[test]
fn shipped_example_config_is_valid() {
    let out = authgate()
        .args(["config", "check", "--config"])
        .arg(fixtures().join("../../conf/authgate.toml"))
        // Offline: the shipped file uses /etc/resolv.conf, which tests must not depend on.
        .arg("--dns-zone")
        .arg(fixtures().join("policy/policy.zone"))
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("configuration OK"));
}

#[test]
fn trusted_upstream_spf_result_feeds_dmarc_and_authenticated_clients_are_exempt() {
    let dir = tempfile::tempdir().unwrap();
    let upstream =
        "Authentication-Results: mx1.example.com; spf=pass smtp.mailfrom=ceo@example.org\n";
    let forged = "Authentication-Results: evil.example; spf=pass smtp.mailfrom=ceo@example.org\n";
    let config = policy_config(
        dir.path(),
        "[trust]\ntrusted_authserv_ids = [\"mx1.example.com\"]\n",
    );
    let (code, out, _) = pipe_with(&config, &[], &format!("{upstream}{SPOOF}"));
    assert_eq!(code, Some(0));
    assert!(
        out.contains("dmarc=pass"),
        "trusted upstream SPF pass aligns: {out}"
    );
    let (code, out, _) = pipe_with(&config, &[], &format!("{forged}{SPOOF}"));
    assert_eq!(
        code,
        Some(0),
        "no envelope: DMARC is reported, not enforced"
    );
    assert!(
        out.contains("dmarc=fail (p=reject dis=none SPF not checked: no envelope"),
        "an untrusted A-R is ignored: {out}"
    );
    let (code, _, _) = pipe_with(&config, &ENVELOPE_BAD, &format!("{forged}{SPOOF}"));
    assert_eq!(
        code,
        Some(77),
        "with the envelope known, the spoof is refused"
    );
    let mut env = ENVELOPE_BAD.to_vec();
    env.push("--authenticated");
    let (code, out, _) = pipe_with(&config, &env, SPOOF);
    assert_eq!(code, Some(0));
    assert!(out.contains("dis=none authenticated client"), "{out}");
}

/// A fake sendmail in `dir` that records its arguments and stdin, then
/// runs `tail` (e.g. `exit 0`, `exit 1`, `kill -9 $$`).
fn fake_sendmail(dir: &std::path::Path, tail: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("sendmail");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{d}/args'\ncat > '{d}/stdin'\n{tail}\n",
        d = dir.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

const ENVELOPE_GOOD: [&str; 6] = [
    "--client-ip",
    "192.0.2.1",
    "--helo",
    "mail.example.org",
    "-f",
    "ceo@example.org",
];

fn reinject(
    config: &std::path::Path,
    sendmail: &std::path::Path,
    envelope: &[&str],
) -> assert_cmd::assert::Assert {
    authgate()
        .args(["pipe", "--reinject", "--config"])
        .arg(config)
        .arg("--sendmail")
        .arg(sendmail)
        .args(envelope)
        .args(["--", "staff@example.com", "-boss@example.com"])
        .write_stdin(SPOOF)
        .assert()
}

#[test]
fn pipe_reinject_hands_the_filtered_message_to_sendmail() {
    let dir = tempfile::tempdir().unwrap();
    let config = policy_config(dir.path(), "");
    let sendmail = fake_sendmail(dir.path(), "exit 0");
    let out = reinject(&config, &sendmail, &ENVELOPE_GOOD).success();
    assert!(
        out.get_output().stdout.is_empty(),
        "the message goes to sendmail, not stdout"
    );
    let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-G",
            "-i",
            "-f",
            "ceo@example.org",
            "--",
            "staff@example.com",
            "-boss@example.com"
        ]
    );
    let msg = std::fs::read_to_string(dir.path().join("stdin")).unwrap();
    assert!(
        msg.starts_with("Authentication-Results: mx.example.com;\n\tspf=pass"),
        "{msg}"
    );
    // -f is also the MAIL FROM that SPF and DMARC see.
    assert!(msg.contains("smtp.mailfrom=ceo@example.org"), "{msg}");
    assert!(msg.contains("dmarc=pass"), "{msg}");
    assert!(msg.ends_with(SPOOF));
}

#[test]
fn pipe_reinject_uses_the_configured_sendmail_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let sendmail = fake_sendmail(dir.path(), "exit 0");
    let config = policy_config(
        dir.path(),
        &format!("[pipe]\nsendmail = \"{}\"\n", sendmail.display()),
    );
    authgate()
        .args(["pipe", "--reinject", "--config"])
        .arg(&config)
        .args(ENVELOPE_GOOD)
        .args(["--", "staff@example.com"])
        .write_stdin(SPOOF)
        .assert()
        .success();
    let msg = std::fs::read_to_string(dir.path().join("stdin")).unwrap();
    assert!(msg.ends_with(SPOOF), "{msg}");
}

#[test]
fn pipe_reinject_exits_75_when_sendmail_fails_or_is_missing_or_killed() {
    let dir = tempfile::tempdir().unwrap();
    let config = policy_config(dir.path(), "");
    for tail in ["exit 1", "exit 75", "kill -9 $$"] {
        let sendmail = fake_sendmail(dir.path(), tail);
        let out = reinject(&config, &sendmail, &ENVELOPE_GOOD).code(75);
        assert!(out.get_output().stdout.is_empty(), "{tail}");
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            err.contains("try again later") && err.contains("failed"),
            "{tail}: {err}"
        );
    }
    let out = reinject(
        &config,
        &dir.path().join("no-such-sendmail"),
        &ENVELOPE_GOOD,
    )
    .code(75);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("cannot run"), "{err}");
}

#[test]
fn pipe_reinject_sends_nothing_on_reject_or_tempfail() {
    let dir = tempfile::tempdir().unwrap();
    let config = policy_config(dir.path(), "");
    let sendmail = fake_sendmail(dir.path(), "exit 0");
    let out = reinject(&config, &sendmail, &ENVELOPE_BAD).code(77);
    assert!(out.get_output().stdout.is_empty());
    assert!(
        !dir.path().join("args").exists(),
        "sendmail must not run on reject"
    );
    // An internal failure (the spool cannot be written) is a tempfail: nothing sent either.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[message]\nspool_threshold = 1\nspool_dir = \"/nonexistent/spool\"\n[dns]\nzone_files = []\n").unwrap();
    reinject(&broken, &sendmail, &ENVELOPE_GOOD).code(75);
    assert!(
        !dir.path().join("args").exists(),
        "sendmail must not run on tempfail"
    );
}

#[test]
fn pipe_reinject_needs_a_sender_and_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let config = policy_config(dir.path(), "");
    let sendmail = fake_sendmail(dir.path(), "exit 0");
    for args in [
        vec!["--reinject", "--", "a@example.com"],
        vec!["--reinject", "-f", "ceo@example.org"],
        vec!["-f", "ceo@example.org", "--", "a@example.com"],
    ] {
        let (code, out, err) = pipe_with(
            &config,
            &[&["--sendmail", sendmail.to_str().unwrap()], &args[..]].concat(),
            SPOOF,
        );
        assert_eq!(code, Some(75), "{args:?}: {err}");
        assert!(out.is_empty());
    }
    assert!(!dir.path().join("args").exists());
}

/// The README's first set-up command prints what the README shows
/// (lines ending in `...` are prefixes; `yourhost` is the authserv-id).
#[test]
fn readme_sample_output_is_what_the_first_command_prints() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let command = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- pipe "))
        .expect("the first set-up command");
    let (args, input) = command
        .trim_start_matches("cargo run --release -- ")
        .split_once(" < ")
        .unwrap();
    let after = readme.split("The first prints the message").nth(1).unwrap();
    let block = after.split("```\n").nth(1).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = authgate()
        .current_dir(root)
        .env("AUTHGATE_AUTHSERV_ID", "yourhost")
        .args(args.split_whitespace())
        .write_stdin(std::fs::read(root.join(input.trim())).unwrap())
        .assert()
        .success();
    let printed = String::from_utf8_lossy(&out.get_output().stdout).replace("\r\n", "\n");
    let mut got = printed.lines();
    for want in block.lines() {
        let line = got.next().unwrap_or_default();
        match want.strip_suffix(" ...") {
            Some(prefix) => assert!(line.starts_with(prefix), "{line:?} vs README {want:?}"),
            None => assert_eq!(line, want, "README block differs from the output"),
        }
    }
}

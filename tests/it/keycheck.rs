//! `authgate key check`: one configured key against a zone file written from
//! `authgate keygen`'s output (good, then damaged the ways web panels and
//! admins damage it), checked through the binary: status, JSON shape, exit codes.

use std::path::{Path, PathBuf};

use super::support::{authgate, private_key};

/// The lines `authgate keygen` prints for an Ed25519 key `ed1` of example.com:
/// (BIND zone line, single-line value). Its key file is in `dir`.
fn keygen_ed25519(dir: &Path) -> (String, String) {
    let out = authgate()
        .args([
            "keygen",
            "-d",
            "example.com",
            "-s",
            "ed1",
            "-a",
            "ed25519",
            "-o",
        ])
        .arg(dir)
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .expect("keygen line")
            .to_owned()
    };
    (line("ed1._domainkey.example.com."), line("v=DKIM1"))
}

/// The BIND line keygen renders for a fixture key (RSA keys are slow to generate).
fn zone_line_for(key: &Path, selector: &str) -> String {
    use authgate::keygen::{DnsRecord, KeyAlgorithm, KeygenOptions};
    let sk = authgate::dkim::key::SigningKey::parse(&std::fs::read(key).expect("key")).expect("ok");
    let opts = KeygenOptions {
        domain: "example.com".into(),
        selector: selector.into(),
        algorithm: KeyAlgorithm::Rsa { bits: 2048 },
        testing: false,
    };
    DnsRecord::new(&opts, &sk.public_key_bytes())
        .expect("record")
        .zone_line
}

fn config(
    dir: &Path,
    name: &str,
    domain: &str,
    selector: &str,
    file: &Path,
    signing: bool,
) -> PathBuf {
    let mut toml = format!(
        "[[dkim.keys]]\nname = \"{name}\"\ndomain = \"{domain}\"\nselector = \"{selector}\"\nfile = \"{}\"\n",
        file.display()
    );
    if signing {
        toml.push_str(&format!(
            "[[dkim.signing_table]]\npattern = \"*@example.com\"\nkeys = [\"{name}\"]\n"
        ));
    }
    let path = dir.join(format!("{name}-{signing}.toml"));
    std::fs::write(&path, toml).expect("config");
    path
}

/// Runs `key check` with one zone; returns (stdout, exit code).
fn key_check(dir: &Path, config: &Path, zone: &str, extra: &[&str]) -> (String, i32) {
    let zone_path = dir.join("test.zone");
    std::fs::write(&zone_path, format!("$TTL 300\n{zone}\n")).expect("zone");
    let out = authgate()
        .args(["key", "check", "--config"])
        .arg(config)
        .arg("--dns-zone")
        .arg(&zone_path)
        .args(extra)
        .output()
        .expect("run");
    let mut stdout = String::from_utf8(out.stdout).expect("utf8");
    // On a failure the assertion shows what was said on stderr too.
    stdout.push_str(&String::from_utf8_lossy(&out.stderr));
    (stdout, out.status.code().expect("exit code"))
}

const NAME: &str = "ed1._domainkey.example.com.";

#[test]
fn every_ed25519_finding_has_its_status_and_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (good, value) = keygen_ed25519(dir.path());
    let key = dir.path().join("ed1.example.com.key");
    let p = value.split("p=").nth(1).expect("p=").to_owned();
    let other = zone_line_for(&private_key(dir.path(), "dkim/rsa2048.pem"), "ed1");
    let (head, tail) = value.split_at(40);
    let cases: Vec<(&str, String, bool, &str, i32)> = vec![
        ("ok", good.clone(), true, "OK", 0),
        ("unused key, ok", good.clone(), false, "OK", 0),
        ("missing", String::new(), true, "MISSING", 2),
        (
            "dns failure",
            "$ORIGIN example.com.\n;@servfail ed1._domainkey".into(),
            true,
            "UNKNOWN",
            2,
        ),
        (
            "two records",
            format!("{NAME} IN TXT \"{head}\"\n{NAME} IN TXT \"{tail}\""),
            true,
            "SPLIT",
            2,
        ),
        (
            "quotes stored as text",
            format!("{NAME} IN TXT \"\\\"{head}\\\" \\\"{tail}\\\"\""),
            true,
            "DAMAGED",
            2,
        ),
        (
            "space inside p=",
            format!(
                "{NAME} IN TXT \"{} {}\"",
                &value[..value.len() - 10],
                &value[value.len() - 10..]
            ),
            true,
            "DAMAGED",
            1,
        ),
        (
            "v= not first",
            format!("{NAME} IN TXT \"k=ed25519; p={p}; v=DKIM1\""),
            true,
            "DAMAGED",
            2,
        ),
        (
            "revoked, signing",
            format!("{NAME} IN TXT \"v=DKIM1; k=ed25519; p=\""),
            true,
            "REVOKED",
            2,
        ),
        (
            "revoked, unused",
            format!("{NAME} IN TXT \"v=DKIM1; k=ed25519; p=\""),
            false,
            "REVOKED",
            0,
        ),
        (
            "testing",
            format!("{NAME} IN TXT \"v=DKIM1; k=ed25519; t=y; p={p}\""),
            true,
            "TESTING",
            1,
        ),
        (
            "k= missing",
            format!("{NAME} IN TXT \"v=DKIM1; p={p}\""),
            true,
            "KEY-TYPE",
            2,
        ),
        (
            "k=rsa",
            format!("{NAME} IN TXT \"v=DKIM1; k=rsa; p={p}\""),
            true,
            "KEY-TYPE",
            2,
        ),
        ("another key", other, true, "KEY-TYPE", 2),
        (
            "another ed25519 key",
            format!("{NAME} IN TXT \"v=DKIM1; k=ed25519; p=AAAA{}\"", &p[4..]),
            true,
            "MISMATCH",
            2,
        ),
    ];
    for (what, zone, signing, status, code) in cases {
        let cfg = config(dir.path(), "ed", "example.com", "ed1", &key, signing);
        let (out, got) = key_check(dir.path(), &cfg, &zone, &[]);
        let first = out.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!("ed1._domainkey.example.com: {status}"),
            "{what}:\n{out}"
        );
        assert_eq!(got, code, "{what}:\n{out}");
        if code == 2 && status != "UNKNOWN" && status != "REVOKED" {
            assert!(
                out.contains(&good),
                "{what}: the fix is keygen's record\n{out}"
            );
        }
    }
}

#[test]
fn rsa_key_sizes_and_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (from, to): the edit made to keygen's record; strings stay within 255 bytes.
    for (fixture, (from, to), status, code) in [
        ("dkim/rsa2048.pem", ("", ""), "OK", 0),
        ("dkim/rfc8463-rsa.pem", ("", ""), "WEAK", 1),
        ("dkim/rsa2048.pem", ("k=rsa; ", ""), "OK", 0),
        (
            "dkim/rsa2048.pem",
            ("v=DKIM1; k=rsa; ", "k=ed25519; "),
            "KEY-TYPE",
            2,
        ),
    ] {
        let key = private_key(dir.path(), fixture);
        let line = zone_line_for(&key, "r1");
        let line = if from.is_empty() {
            line
        } else {
            line.replace(from, to)
        };
        let zone_edit = format!("{from:?} -> {to:?}");
        let cfg = config(dir.path(), "r", "example.com", "r1", &key, true);
        let (out, got) = key_check(dir.path(), &cfg, &line, &[]);
        assert!(
            out.starts_with(&format!("r1._domainkey.example.com: {status}\n")),
            "{fixture} {zone_edit}:\n{out}"
        );
        assert_eq!(got, code, "{fixture} {zone_edit}:\n{out}");
    }
}

#[test]
fn quote_damage_that_hides_the_right_key_is_named_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, value) = keygen_ed25519(dir.path());
    let key = dir.path().join("ed1.example.com.key");
    let cfg = config(dir.path(), "ed", "example.com", "ed1", &key, true);
    let (head, tail) = value.split_at(30);
    let zone = format!("{NAME} IN TXT \"\\\"{head}\\\" \\\"{tail}\\\"\"");
    let (out, code) = key_check(dir.path(), &cfg, &zone, &[]);
    assert_eq!(code, 2);
    assert!(
        out.contains("your DNS panel stored the quotes as text"),
        "{out}"
    );
    assert!(out.contains("matches the private key"), "{out}");
    assert!(!out.contains("MISMATCH"), "{out}");
}

#[test]
fn author_domain_key_needs_domain_and_json_is_one_array() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (good, _) = keygen_ed25519(dir.path());
    let key = dir.path().join("ed1.example.com.key");
    let cfg = config(dir.path(), "any", "%", "ed1", &key, true);
    let (out, code) = key_check(dir.path(), &cfg, &good, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("key \"any\""), "{out}");
    assert!(out.contains("--domain"), "{out}");

    let (out, code) = key_check(
        dir.path(),
        &cfg,
        &good,
        &["--domain", "example.com", "--json"],
    );
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let keys = doc.as_array().expect("array");
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["domain"], "example.com");
    assert_eq!(k["selector"], "ed1");
    assert_eq!(k["status"], "ok");
    let findings = k["findings"].as_array().expect("findings");
    assert!(!findings.is_empty());
    for f in findings {
        assert_eq!(f["area"], "dkim");
        assert_eq!(f["level"], "ok");
        assert!(f["message"].is_string());
        assert!(f.get("fix").is_some());
    }

    let (out, code) = key_check(dir.path(), &cfg, "", &["--domain", "example.com", "--json"]);
    assert_eq!(code, 2, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc[0]["status"], "missing");
    assert_eq!(doc[0]["findings"][0]["level"], "error");
    assert!(
        doc[0]["findings"][0]["fix"]
            .as_str()
            .expect("fix")
            .contains(&good)
    );
}

//! `authgate check DOMAIN`: the binary against the zone files in
//! `tests/fixtures/check/` (one domain each, described at the top of each
//! file): every warning and error, an all-ok domain, the JSON shape, the
//! text output and the exit codes 0/1/2.

use super::support::{authgate, fixtures};

/// Runs `check` offline with one fixture zone; returns (stdout, exit code).
fn check(zone: &str, args: &[&str]) -> (String, i32) {
    let out = authgate()
        .arg("check")
        .args(args)
        .arg("--dns-zone")
        .arg(fixtures().join("check").join(zone))
        .env_remove("AUTHGATE_CONFIG")
        .output()
        .expect("run");
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    (stdout, out.status.code().unwrap_or(-1))
}

/// One finding: area, level, message, fix.
type Row = (String, String, String, Option<String>);

/// The findings of a `--json` run, and the exit code.
fn findings(zone: &str, args: &[&str]) -> (Vec<Row>, i32) {
    let mut all = args.to_vec();
    all.push("--json");
    let (stdout, code) = check(zone, &all);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    let list = doc["findings"].as_array().expect("findings array");
    let rows = list
        .iter()
        .map(|f| {
            (
                f["area"].as_str().expect("area").to_owned(),
                f["level"].as_str().expect("level").to_owned(),
                f["message"].as_str().expect("message").to_owned(),
                f["fix"].as_str().map(str::to_owned),
            )
        })
        .collect();
    (rows, code)
}

/// Asserts that a finding of `area` at `level` has `text` in its message
/// and, when `fix` is not empty, `fix` in its fix.
fn has(rows: &[Row], want: (&str, &str, &str, &str)) {
    let (area, level, text, fix) = want;
    assert!(
        rows.iter().any(|(a, l, m, f)| a == area
            && l == level
            && m.contains(text)
            && (fix.is_empty() || f.as_deref().is_some_and(|f| f.contains(fix)))),
        "no {area} {level} {text:?} (fix {fix:?}) in {rows:#?}"
    );
}

const GOOD_SELECTORS: [&str; 4] = ["--selector", "s2026", "--selector", "ed2026"];

#[test]
fn all_ok_domain_exits_0_with_ok_findings_in_every_area() {
    let mut args = vec!["good.example"];
    args.extend(GOOD_SELECTORS);
    let (rows, code) = findings("good.zone", &args);
    assert_eq!(code, 0, "{rows:#?}");
    assert!(
        rows.iter().all(|(_, l, _, f)| l == "ok" && f.is_none()),
        "{rows:#?}"
    );
    for area in [
        "spf",
        "dkim",
        "dmarc",
        "report-auth",
        "mx",
        "rdns",
        "mta-sts",
        "tls-rpt",
    ] {
        assert!(rows.iter().any(|(a, ..)| a == area), "{area}: {rows:#?}");
    }
    // The guides' `+a +mx -all` is explained, not flagged.
    has(&rows, ("spf", "ok", "\"+\" is the default qualifier", ""));
    has(&rows, ("spf", "ok", "every other host fails (-all)", ""));
    has(&rows, ("dkim", "ok", "2048-bit RSA key", ""));
    has(
        &rows,
        ("report-auth", "ok", "dmarc.example.net accepts reports", ""),
    );
    // Without --selector and configuration, the common selectors are tried.
    let (rows, code) = findings("good.zone", &["good.example"]);
    assert_eq!(code, 0, "{rows:#?}");
    has(&rows, ("dkim", "ok", "common selector names", ""));
    has(
        &rows,
        ("dkim", "ok", "selector1._domainkey.good.example", ""),
    );
}

#[test]
fn configured_selectors_are_checked_when_none_is_given() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("authgate.toml");
    std::fs::write(
        &config,
        "[[dkim.keys]]\nname = \"a\"\ndomain = \"good.example\"\nselector = \"s2026\"\nfile = \"/nonexistent\"\n\
         [[dkim.keys]]\nname = \"b\"\ndomain = \"other.example\"\nselector = \"other\"\nfile = \"/nonexistent\"\n",
    )
    .expect("config");
    let config = config.to_str().expect("path");
    let (rows, code) = findings("good.zone", &["good.example", "--config", config]);
    assert_eq!(code, 0, "{rows:#?}");
    has(
        &rows,
        (
            "dkim",
            "ok",
            "selectors checked (configured in [[dkim.keys]]): s2026.",
            "",
        ),
    );
}

#[test]
fn warnings_only_exit_1() {
    let args = [
        "warn.example",
        "-s",
        "t1024",
        "-s",
        "testing",
        "-s",
        "revoked",
        "-s",
        "spaced",
    ];
    let (rows, code) = findings("warn.zone", &args);
    assert_eq!(code, 1, "{rows:#?}");
    assert!(rows.iter().all(|(_, l, ..)| l != "error"), "{rows:#?}");
    for want in [
        (
            "spf",
            "warning",
            "?all",
            "warn.example. IN TXT \"v=spf1 a mx ptr a:gone.warn.example -all\"",
        ),
        (
            "spf",
            "warning",
            "\"ptr\"",
            "\"v=spf1 a mx a:gone.warn.example ?all\"",
        ),
        (
            "spf",
            "warning",
            "1 lookup(s) find nothing (a:gone.warn.example)",
            "",
        ),
        ("spf", "ok", "4 of 10 allowed DNS lookups", ""),
        (
            "dkim",
            "warning",
            "t1024._domainkey.warn.example: the RSA key has 1024 bits",
            "authgate keygen",
        ),
        (
            "dkim",
            "warning",
            "testing._domainkey.warn.example: the record has t=y",
            "testing._domainkey.warn.example. IN TXT \"v=DKIM1; k=ed25519; p=",
        ),
        (
            "dkim",
            "warning",
            "revoked._domainkey.warn.example: the key is revoked",
            "",
        ),
        (
            "dkim",
            "warning",
            "spaced._domainkey.warn.example: the public key (p=) contains spaces",
            "spaced._domainkey.warn.example. IN TXT \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"",
        ),
        (
            "dmarc",
            "warning",
            "p=none: monitoring only",
            "\"v=DMARC1; p=quarantine;",
        ),
        (
            "dmarc",
            "warning",
            "t=y (testing mode)",
            "\"v=DMARC1; p=none; pct=50; psd=y; foo=bar\"",
        ),
        (
            "dmarc",
            "warning",
            "psd=y declares warn.example a public suffix",
            "",
        ),
        ("dmarc", "warning", "pct= below 100", ""),
        ("dmarc", "warning", "unknown tag foo=", ""),
        (
            "dmarc",
            "warning",
            "no rua=",
            "rua=mailto:dmarc-reports@warn.example",
        ),
        (
            "rdns",
            "warning",
            "192.0.2.21 (MX host mx1.warn.example) has no PTR",
            "21.2.0.192.in-addr.arpa. IN PTR mx1.warn.example.",
        ),
        (
            "rdns",
            "warning",
            "has PTR host.isp.example, which does not resolve back",
            "22.2.0.192.in-addr.arpa. IN PTR mx2.warn.example.",
        ),
        (
            "mta-sts",
            "warning",
            "no MTA-STS record at _mta-sts.warn.example",
            "_mta-sts.warn.example. IN TXT \"v=STSv1; id=",
        ),
        (
            "tls-rpt",
            "warning",
            "no TLS-RPT record",
            "_smtp._tls.warn.example. IN TXT \"v=TLSRPTv1; rua=mailto:",
        ),
    ] {
        has(&rows, want);
    }
}

#[test]
fn missing_all_common_selectors_ruf_and_weaker_subdomain_policies() {
    let (rows, code) = findings("noall.zone", &["noall.example"]);
    assert_eq!(code, 1, "{rows:#?}");
    for want in [
        (
            "spf",
            "warning",
            "neither \"all\" nor \"redirect=\"",
            "noall.example. IN TXT \"v=spf1 mx -all\"",
        ),
        (
            "dkim",
            "warning",
            "no DKIM key found at the common selectors (default, selector1, selector2, google, k1, mail, dkim, s1, s2)",
            "",
        ),
        ("dmarc", "ok", "p=quarantine", ""),
        (
            "dmarc",
            "ok",
            "note: sp=none is weaker than p=quarantine",
            "",
        ),
        (
            "dmarc",
            "ok",
            "note: np=none is weaker than p=quarantine",
            "",
        ),
        (
            "dmarc",
            "warning",
            "ruf=https://reports.noall.example/ holds no usable mailto: address",
            "",
        ),
    ] {
        has(&rows, want);
    }
}

#[test]
fn inherited_dmarc_record_says_where_it_was_found() {
    let (rows, code) = findings("noall.zone", &["sub.noall.example"]);
    assert_eq!(code, 2, "no SPF record: {rows:#?}");
    has(
        &rows,
        (
            "dmarc",
            "ok",
            "the record of noall.example applies (found by the RFC 9989 tree walk at _dmarc.noall.example)",
            "",
        ),
    );
    has(
        &rows,
        (
            "dmarc",
            "warning",
            "sp=none: monitoring only",
            "sp=quarantine",
        ),
    );
    has(
        &rows,
        (
            "spf",
            "error",
            "no SPF record (v=spf1) is published at sub.noall.example",
            "sub.noall.example. IN TXT \"v=spf1 mx -all\"",
        ),
    );
    has(
        &rows,
        (
            "mx",
            "warning",
            "sub.noall.example has no MX record",
            "IN MX 0 .",
        ),
    );
}

#[test]
fn errors_exit_2() {
    let args = [
        "broken.example",
        "-s",
        "absent",
        "-s",
        "split",
        "-s",
        "quoted",
        "-s",
        "garbage",
        "-s",
        "weak",
        "-s",
        "dsa",
        "-s",
        "nok",
        "-s",
        "vlast",
    ];
    let (rows, code) = findings("broken.zone", &args);
    assert_eq!(code, 2, "{rows:#?}");
    for want in [
        (
            "spf",
            "error",
            "+all",
            "broken.example. IN TXT \"v=spf1 -all\"",
        ),
        ("spf", "ok", "every host on the internet (+all)", ""),
        (
            "dkim",
            "error",
            "absent._domainkey.broken.example: no TXT record",
            "authgate keygen --domain broken.example --selector absent",
        ),
        (
            "dkim",
            "error",
            "split._domainkey.broken.example: 2 separate TXT records",
            "",
        ),
        (
            "dkim",
            "error",
            "quoted._domainkey.broken.example: the record contains quote characters",
            "quoted._domainkey.broken.example. IN TXT \"v=DKIM1; k=ed25519; p=",
        ),
        (
            "dkim",
            "error",
            "garbage._domainkey.broken.example: the record is unusable",
            "",
        ),
        (
            "dkim",
            "error",
            "weak._domainkey.broken.example: the RSA key has 512 bits",
            "",
        ),
        (
            "dkim",
            "error",
            "dsa._domainkey.broken.example: the record names an unknown key type k=dsa",
            "",
        ),
        (
            "dkim",
            "error",
            "nok._domainkey.broken.example: the record has no k= tag",
            "\"v=DKIM1; k=ed25519; p=",
        ),
        (
            "dkim",
            "error",
            "vlast._domainkey.broken.example: v=DKIM1 is not the first tag",
            "vlast._domainkey.broken.example. IN TXT \"k=ed25519; p=",
        ),
        (
            "dmarc",
            "error",
            "2 DMARC records at _dmarc.broken.example",
            "",
        ),
        ("mx", "error", "null MX", "broken.example. IN MX 0 ."),
        ("mta-sts", "error", "has no valid id=", ""),
        ("tls-rpt", "error", "has no rua=", ""),
    ] {
        has(&rows, want);
    }
    let (rows, code) = findings("broken2.zone", &["broken2.example"]);
    assert_eq!(code, 2, "{rows:#?}");
    for want in [
        (
            "spf",
            "error",
            "2 SPF records are published at broken2.example",
            "",
        ),
        (
            "dmarc",
            "error",
            "no DMARC record at _dmarc.broken2.example nor above it",
            "_dmarc.broken2.example. IN TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@broken2.example\"",
        ),
        (
            "mx",
            "error",
            "MX host nowhere.broken2.example has no A or AAAA record",
            "",
        ),
        ("mta-sts", "error", "2 MTA-STS records", ""),
        ("tls-rpt", "error", "2 TLS-RPT records", ""),
    ] {
        has(&rows, want);
    }
}

#[test]
fn syntax_policy_report_authorisation_and_lookup_failures_are_errors() {
    let (rows, code) = findings("broken3.zone", &["broken3.example"]);
    assert_eq!(code, 2, "{rows:#?}");
    for want in [
        (
            "spf",
            "error",
            "has a syntax error (invalid IPv4 network '300.1.1.1')",
            "broken3.example. IN TXT \"v=spf1 mx -all\"",
        ),
        (
            "dmarc",
            "error",
            "p= has an invalid value",
            "\"v=DMARC1; p=none; sp=bogus; rua=mailto:reports@elsewhere.example.org\"",
        ),
        (
            "dmarc",
            "warning",
            "sp= has an invalid value and is ignored",
            "\"v=DMARC1; p=bogus; rua=mailto:reports@elsewhere.example.org\"",
        ),
        (
            "report-auth",
            "error",
            "elsewhere.example.org does not accept its reports",
            "broken3.example._report._dmarc.elsewhere.example.org. IN TXT \"v=DMARC1\"",
        ),
        ("mx", "warning", "broken3.example has no MX record", ""),
        (
            "mta-sts",
            "error",
            "could not check: the DNS lookup of _mta-sts.broken3.example failed",
            "",
        ),
    ] {
        has(&rows, want);
    }
}

#[test]
fn spf_lookup_limits_broken_includes_and_null_mx() {
    let (rows, code) = findings("broken4.zone", &["broken4.example"]);
    assert_eq!(code, 2, "{rows:#?}");
    for want in [
        ("spf", "error", "the record needs 12 DNS lookups", ""),
        ("spf", "error", "3 lookups find nothing", ""),
        (
            "spf",
            "error",
            "\"include:_spf2.broken4.example\" (in the record of broken4.example) is broken: it publishes no SPF record",
            "",
        ),
        (
            "spf",
            "warning",
            "terms after \"all\" are never evaluated",
            "",
        ),
        (
            "mx",
            "ok",
            "null MX (RFC 7505): broken4.example accepts no mail",
            "",
        ),
    ] {
        has(&rows, want);
    }
    assert!(!rows.iter().any(|(a, ..)| a == "rdns"), "{rows:#?}");
}

#[test]
fn a_domain_that_does_not_exist_is_an_error() {
    let (rows, code) = findings("good.zone", &["nosuch.example"]);
    assert_eq!(code, 2, "{rows:#?}");
    has(
        &rows,
        (
            "mx",
            "error",
            "nosuch.example does not exist (NXDOMAIN)",
            "",
        ),
    );
    has(&rows, ("spf", "error", "no SPF record", ""));
}

#[test]
fn json_shape_is_one_object_of_domain_and_findings() {
    let (stdout, code) = check("broken3.zone", &["Broken3.Example.", "--json"]);
    assert_eq!(code, 2);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let obj = doc.as_object().expect("object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["domain", "findings"]);
    assert_eq!(doc["domain"], "broken3.example");
    let areas = [
        "spf",
        "dkim",
        "dmarc",
        "mx",
        "rdns",
        "mta-sts",
        "tls-rpt",
        "report-auth",
    ];
    for f in doc["findings"].as_array().expect("array") {
        let f = f.as_object().expect("finding");
        assert_eq!(
            f.keys().collect::<Vec<_>>(),
            ["area", "fix", "level", "message"]
        );
        assert!(areas.contains(&f["area"].as_str().expect("area")), "{f:?}");
        let level = f["level"].as_str().expect("level");
        assert!(["ok", "warning", "error"].contains(&level), "{f:?}");
        assert!(f["fix"].is_null() || f["fix"].is_string(), "{f:?}");
        if level == "ok" {
            assert!(f["fix"].is_null(), "{f:?}");
        }
    }
}

#[test]
fn text_output_groups_by_area_with_fixes_indented() {
    let (text, code) = check("warn.zone", &["warn.example", "-s", "t1024"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = text.lines().collect();
    let spf = lines
        .iter()
        .position(|l| *l == "spf:")
        .expect("spf heading");
    let dkim = lines
        .iter()
        .position(|l| *l == "dkim:")
        .expect("dkim heading");
    assert!(spf < dkim, "{text}");
    assert!(
        lines[spf + 1].starts_with("  ok: SPF record: \"v=spf1 a mx ptr"),
        "{text}"
    );
    let all = lines
        .iter()
        .position(|l| l.contains("ends in ?all"))
        .expect("?all line");
    assert!(
        lines[all].starts_with("  warning: the record ends in ?all"),
        "{text}"
    );
    assert_eq!(
        lines[all + 1],
        "      warn.example. IN TXT \"v=spf1 a mx ptr a:gone.warn.example -all\""
    );
    assert_eq!(
        lines.last(),
        Some(&"warn.example: 0 errors, 14 warnings"),
        "{text}"
    );
}

#[test]
fn cannot_run_exits_2() {
    // No domain: clap's usage error.
    let out = authgate().arg("check").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    // A zone file that does not exist: the resolver cannot be set up.
    let out = authgate()
        .args(["check", "good.example", "--dns-zone", "/nonexistent/zone"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/zone"));
    // Not a domain name.
    let out = authgate()
        .args(["check", "not a domain", "--dns-zone"])
        .arg(fixtures().join("check/good.zone"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

//! RFC 9990 aggregate reports built from crafted rows: every document is
//! checked against the 2.0 schema with `xmllint` and read back with
//! parsedmarc (both installed by scripts/test; a missing one fails the test).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use authgate::report::aggregate::{self, Aggregate, Period, Reporter};
use authgate::report::{DkimRow, Row};
use mail_parser::MimeHeaders as _;
use serde_json::Value;

use crate::support::fixtures;

const DAY: Period = Period {
    begin: 1_796_601_600,
    end: 1_796_601_600 + 86_399,
};

fn reporter() -> Reporter {
    Reporter {
        org_name: "Receiver & Co <test>".into(),
        domain: "mx.receiver.example".into(),
        email: "dmarc-reports@receiver.example".into(),
        contact: Some("https://receiver.example/dmarc".into()),
        generator: "authgate 0.1.0".into(),
    }
}

fn dkim(domain: &str, selector: &str, result: &str, human: &str) -> DkimRow {
    DkimRow {
        domain: domain.into(),
        selector: selector.into(),
        result: result.into(),
        human: human.into(),
    }
}

/// A passing message from example.com's own server.
fn pass(ip: &str, time: i64) -> Row {
    Row {
        time,
        source_ip: ip.into(),
        env_from: "example.com".into(),
        env_to: "receiver.example".into(),
        header_from: "example.com".into(),
        policy_domain: "example.com".into(),
        p: "reject".into(),
        sp: "quarantine".into(),
        np: "reject".into(),
        adkim: "r".into(),
        aspf: "s".into(),
        psd: "n".into(),
        discovery: "treewalk".into(),
        dmarc: "pass".into(),
        dkim_aligned: true,
        spf_aligned: true,
        disposition: "none".into(),
        spf_domain: "example.com".into(),
        spf_scope: "mfrom".into(),
        spf_result: "pass".into(),
        dkim: vec![dkim("example.com", "s2026", "pass", "")],
        ..Row::default()
    }
}

/// A forged or forwarded message that failed DMARC.
fn fail(ip: &str, time: i64, applied: &str) -> Row {
    Row {
        env_from: "bounce.esp.example".into(),
        dmarc: "fail".into(),
        dkim_aligned: false,
        spf_aligned: false,
        disposition: applied.into(),
        spf_domain: "bounce.esp.example".into(),
        spf_result: "softfail".into(),
        dkim: vec![],
        ..pass(ip, time)
    }
}

/// A day of mixed traffic: grouping, IPv6, several signatures, overrides,
/// a subdomain, unicode and markup in human_result.
fn mixed_rows() -> Vec<Row> {
    let mut rows = vec![
        pass("192.0.2.10", 100),
        pass("192.0.2.10", 200),
        pass("192.0.2.10", 300),
        pass("2001:db8::25", 400),
        fail("198.51.100.7", 500, "reject"),
        fail("198.51.100.7", 510, "reject"),
        fail("203.0.113.9", 600, "quarantine"),
    ];
    // Forwarded through a list: two signatures, the author's broken.
    rows.push(Row {
        dkim: vec![
            dkim(
                "example.com",
                "s2026",
                "fail",
                "body hash did not verify: «ü» <b>&amp;</b> \"quoted\"",
            ),
            dkim("lists.example.org", "ml", "pass", ""),
        ],
        override_type: "mailing_list".into(),
        override_comment: "list lists.example.org, ARC chain trusted".into(),
        ..fail("2001:db8:1::9", 700, "none")
    });
    // Local policy: would be rejected, quarantined instead.
    rows.push(Row {
        override_type: "local_policy".into(),
        override_comment: "local policy: quarantine instead of reject".into(),
        ..fail("203.0.113.9", 800, "quarantine")
    });
    // A subdomain with no record of its own, null sender (HELO checked).
    rows.push(Row {
        header_from: "news.example.com".into(),
        env_from: String::new(),
        spf_domain: "mta.example.com".into(),
        spf_scope: "helo".into(),
        dkim: vec![
            dkim("news.example.com", "n1", "pass", ""),
            dkim("esp.example", "esp", "pass", ""),
            dkim("example.com", "old", "permerror", "key revoked"),
        ],
        ..pass("192.0.2.11", 900)
    });
    rows
}

fn build(rows: &[Row], dropped: (u64, &[String])) -> Aggregate {
    let id = aggregate::report_id("Receiver & Co <test>", "example.com", DAY.begin);
    aggregate::build(&reporter(), "example.com", DAY, rows, dropped, &id).expect("report")
}

/// `xmllint --noout --schema` against tests/fixtures/dmarc-2.0.xsd.
fn assert_schema_valid(xml_path: &Path) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(fixtures().join("dmarc-2.0.xsd"))
        .arg(xml_path)
        .output()
        .expect("xmllint (libxml2-utils) must be installed: scripts/test installs it");
    assert!(
        out.status.success(),
        "{} does not validate:\n{}\n{}",
        xml_path.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(xml_path).unwrap_or_default()
    );
}

/// What parsedmarc read from a report (an .xml.gz or a whole mail),
/// reduced to the facts we compare.
fn parsedmarc(path: &Path) -> Value {
    const SCRIPT: &str = r#"
import json, sys
import parsedmarc
with open(sys.argv[1], "rb") as f:
    data = f.read()
if sys.argv[2] == "mail":
    r = parsedmarc.parse_report_file(data, offline=True, always_use_local_files=True)
    assert r["report_type"] == "aggregate", r["report_type"]
    r = r["report"]
else:
    r = parsedmarc.parse_aggregate_report_file(data, offline=True, always_use_local_files=True)
print(json.dumps({
    "namespace": r["xml_namespace"],
    "org": r["report_metadata"]["org_name"],
    "report_id": r["report_metadata"]["report_id"],
    "errors": r["report_metadata"]["errors"],
    "generator": r["report_metadata"]["generator"],
    "policy": r["policy_published"],
    "records": [{
        "ip": x["source"]["ip_address"],
        "count": x["count"],
        "disposition": x["policy_evaluated"]["disposition"],
        "dkim": x["policy_evaluated"]["dkim"],
        "spf": x["policy_evaluated"]["spf"],
        "reasons": [o["type"] for o in x["policy_evaluated"]["policy_override_reasons"]],
        "header_from": x["identifiers"]["header_from"],
        "dkim_results": [[d["domain"], d["selector"], d["result"], d["human_result"]]
                         for d in x["auth_results"]["dkim"]],
        "spf_results": [[s["domain"], s["scope"], s["result"]]
                        for s in x["auth_results"]["spf"]],
    } for x in r["records"]],
}))
"#;
    let kind = if path.extension().is_some_and(|e| e == "eml") {
        "mail"
    } else {
        "gz"
    };
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(path)
        .arg(kind)
        .output()
        .expect("python3 with parsedmarc: scripts/test installs it");
    assert!(
        out.status.success(),
        "parsedmarc failed on {}:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parsedmarc JSON")
}

/// Writes the report as .xml and .xml.gz, checks both tools accept it and
/// returns what parsedmarc read.
fn check(agg: &Aggregate) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let xml = dir.path().join("report.xml");
    std::fs::write(&xml, &agg.xml).expect("write xml");
    assert_schema_valid(&xml);
    let gz = dir.path().join(&agg.file_name);
    std::fs::write(&gz, aggregate::gzip(&agg.xml)).expect("write gz");
    let got = parsedmarc(&gz);
    assert_eq!(got["namespace"], "urn:ietf:params:xml:ns:dmarc-2.0");
    assert_eq!(got["report_id"], agg.report_id.as_str());
    assert_eq!(got["policy"]["domain"], agg.domain.as_str());
    let total: u64 = records(&got)
        .iter()
        .map(|r| r["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(total, agg.messages);
    assert_eq!(records(&got).len(), agg.records);
    got
}

fn records(v: &Value) -> &Vec<Value> {
    v["records"].as_array().expect("records")
}

/// (ip, disposition) -> count, as parsedmarc saw it.
fn counts(v: &Value) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for r in records(v) {
        let key = (
            r["ip"].as_str().expect("ip").to_string(),
            r["disposition"].as_str().expect("disposition").to_string(),
        );
        *m.entry(key).or_default() += r["count"].as_u64().expect("count");
    }
    m
}

#[test]
fn mixed_day_validates_and_parsedmarc_reads_the_same_counts() {
    let agg = build(&mixed_rows(), (0, &[]));
    assert_eq!((agg.messages, agg.records), (10, 7));
    let got = check(&agg);

    let want: BTreeMap<(String, String), u64> = [
        (("192.0.2.10", "pass"), 3),
        (("192.0.2.11", "pass"), 1),
        (("198.51.100.7", "reject"), 2),
        (("2001:db8:1::9", "none"), 1),
        (("2001:db8::25", "pass"), 1),
        (("203.0.113.9", "quarantine"), 2),
    ]
    .into_iter()
    .map(|((ip, d), n)| ((ip.to_string(), d.to_string()), n))
    .collect();
    assert_eq!(counts(&got), want);

    assert_eq!(got["org"], "Receiver & Co <test>");
    assert_eq!(got["generator"], "authgate 0.1.0");
    assert_eq!(got["errors"], serde_json::json!([]));
    let policy = &got["policy"];
    for (field, want) in [
        ("p", "reject"),
        ("sp", "quarantine"),
        ("np", "reject"),
        ("adkim", "r"),
        ("aspf", "s"),
        ("testing", "n"),
        ("discovery_method", "treewalk"),
    ] {
        assert_eq!(policy[field], want, "policy_published {field}");
    }

    let by_ip =
        |ip: &str| -> Vec<&Value> { records(&got).iter().filter(|r| r["ip"] == ip).collect() };
    // The forwarded message: both signatures, the unicode and markup intact.
    let list = by_ip("2001:db8:1::9");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["reasons"], serde_json::json!(["mailing_list"]));
    assert_eq!(
        (list[0]["dkim"].as_str(), list[0]["spf"].as_str()),
        (Some("fail"), Some("fail"))
    );
    assert_eq!(
        list[0]["dkim_results"],
        serde_json::json!([
            ["lists.example.org", "ml", "pass", null],
            [
                "example.com",
                "s2026",
                "fail",
                "body hash did not verify: «ü» <b>&amp;</b> \"quoted\""
            ]
        ])
    );
    // 203.0.113.9: the plain quarantine and the local-policy one differ.
    let q = by_ip("203.0.113.9");
    assert_eq!(q.len(), 2);
    let mut reasons: Vec<String> = q.iter().map(|r| r["reasons"].to_string()).collect();
    reasons.sort();
    assert_eq!(reasons, ["[\"local_policy\"]", "[]"]);
    // The subdomain: its own header_from, three signatures, SPF on HELO.
    let news = by_ip("192.0.2.11");
    assert_eq!(news[0]["header_from"], "news.example.com");
    assert_eq!(
        news[0]["dkim_results"].as_array().map(Vec::len),
        Some(3),
        "{}",
        news[0]
    );
    assert_eq!(news[0]["spf_results"][0][0], "mta.example.com");
    assert_eq!(news[0]["spf_results"][0][2], "pass");
    // Plain passes: aligned both ways.
    for r in by_ip("192.0.2.10") {
        assert_eq!(
            (r["dkim"].as_str(), r["spf"].as_str()),
            (Some("pass"), Some("pass"))
        );
        assert_eq!(
            r["spf_results"],
            serde_json::json!([["example.com", "mfrom", "pass"]])
        );
    }
}

#[test]
fn testing_mode_and_psl_discovery() {
    let rows: Vec<Row> = (0..4)
        .map(|i| Row {
            testing: true,
            discovery: "psl".into(),
            p: "quarantine".into(),
            sp: String::new(),
            np: String::new(),
            override_type: "policy_test_mode".into(),
            override_comment: "testing mode t=y".into(),
            ..fail("192.0.2.77", i, "none")
        })
        .collect();
    let agg = build(&rows, (0, &[]));
    let got = check(&agg);
    assert_eq!(got["policy"]["testing"], "y");
    assert_eq!(got["policy"]["discovery_method"], "psl");
    assert_eq!(got["policy"]["p"], "quarantine");
    assert_eq!(records(&got)[0]["count"], 4);
    assert_eq!(
        records(&got)[0]["reasons"],
        serde_json::json!(["policy_test_mode"])
    );
}

#[test]
fn dropped_rows_make_the_report_say_it_is_incomplete() {
    let why = [
        "report queue full".to_string(),
        "store: disk full".to_string(),
    ];
    let mut rows = vec![pass("192.0.2.10", 1), pass("192.0.2.10", 2)];
    rows.push(Row {
        source_ip: String::new(),
        ..pass("", 3)
    });
    let agg = build(&rows, (7, &why));
    let got = check(&agg);
    let errors = got["errors"].to_string();
    assert!(errors.contains("7 message(s)"), "{errors}");
    assert!(
        errors.contains("report queue full; store: disk full"),
        "{errors}"
    );
    assert!(
        errors.contains("1 message(s) with no known client address"),
        "{errors}"
    );
    assert_eq!(agg.messages, 2);
}

#[test]
fn policy_changed_during_the_period_reports_the_latest() {
    let early = Row {
        p: "none".into(),
        adkim: "s".into(),
        ..pass("192.0.2.10", 10)
    };
    let late = Row {
        p: "quarantine".into(),
        adkim: "r".into(),
        ..pass("192.0.2.20", 20_000)
    };
    let got = check(&build(&[late, early], (0, &[])));
    assert_eq!(got["policy"]["p"], "quarantine");
    assert_eq!(got["policy"]["adkim"], "r");
}

#[test]
fn same_rows_give_the_same_bytes() {
    let rows = mixed_rows();
    let mut shuffled = rows.clone();
    shuffled.rotate_left(4);
    shuffled.swap(0, 3);
    let (a, b) = (build(&rows, (0, &[])), build(&shuffled, (0, &[])));
    assert_eq!(a.xml, b.xml);
    assert_eq!(aggregate::gzip(&a.xml), aggregate::gzip(&b.xml));
    assert_eq!(a.file_name, b.file_name);
}

#[test]
fn the_report_mail_carries_the_report() {
    let agg = build(&mixed_rows(), (0, &[]));
    let to = ["dmarc@example.com".to_string()];
    let mail = aggregate::compose(
        &agg,
        "dmarc-reports@receiver.example",
        &to,
        DAY.end + 3600,
        "receiver.example",
    );

    let msg = mail_parser::MessageParser::default()
        .parse(&mail)
        .expect("the mail parses");
    assert_eq!(msg.subject(), Some(agg.subject.as_str()));
    assert_eq!(
        msg.from().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("dmarc-reports@receiver.example")
    );
    assert_eq!(
        msg.message_id().map(str::to_string),
        Some(format!("{}@receiver.example", agg.report_id))
    );
    let att = msg.attachment(0).expect("one attachment");
    assert_eq!(att.attachment_name(), Some(agg.file_name.as_str()));
    let ct = att.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("application", Some("gzip")));
    assert_eq!(att.contents(), aggregate::gzip(&agg.xml).as_slice());

    // parsedmarc finds and reads the report inside the mail, too.
    let dir = tempfile::tempdir().expect("tempdir");
    let eml = dir.path().join("report.eml");
    std::fs::write(&eml, &mail).expect("write eml");
    let got = parsedmarc(&eml);
    assert_eq!(got["report_id"], agg.report_id.as_str());
    let total: u64 = records(&got)
        .iter()
        .map(|r| r["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(total, agg.messages);
}

/// An RFC 9991 failure report (AFRF) as parsedmarc reads it.
#[test]
fn parsedmarc_reads_our_failure_report() {
    use authgate::report::failure::{
        AuthFailure, DeliveryResult, DkimFailure, FailureInput, FailureReporter, compose_failure,
    };
    let input = FailureInput {
        auth_failure: AuthFailure::Dmarc,
        arrival: DAY.begin + 3_600,
        client_ip: Some("198.51.100.7".parse().expect("ip")),
        mail_from: Some("bounce@bounce.esp.example".into()),
        rcpt_to: Some("someone@receiver.example".into()),
        envelope_id: None,
        reported_domain: "example.com".into(),
        auth_results: "mx.receiver.example; dkim=fail header.d=example.com header.s=s2026; \
                       spf=softfail smtp.mailfrom=bounce.esp.example; dmarc=fail header.from=example.com"
            .into(),
        header: b"From: Someone <someone@example.com>\r\nTo: someone@receiver.example\r\n\
                  Subject: invoice\r\nDate: Mon, 7 Dec 2026 01:00:00 +0000\r\n\
                  Message-ID: <abc@example.com>\r\n\r\n"
            .to_vec(),
        delivery: Some(DeliveryResult::Reject),
        dkim_aligned_failed: true,
        spf_aligned_failed: false,
        dkim: Some(DkimFailure {
            domain: "example.com".into(),
            selector: "s2026".into(),
            identity: "@example.com".into(),
            ..DkimFailure::default()
        }),
        spf_dns: None,
    };
    let reporter = FailureReporter {
        from: "dmarc-failures@receiver.example".into(),
        to: vec!["ruf@example.com".into()],
        user_agent: "authgate/0.1.0".into(),
        message_id_host: "receiver.example".into(),
        redaction_key: None,
    };
    let mail = compose_failure(&input, &reporter, DAY.begin + 3_660).expect("composed");
    let dir = tempfile::tempdir().expect("tempdir");
    let eml = dir.path().join("failure.eml");
    std::fs::write(&eml, &mail).expect("write");
    const SCRIPT: &str = r#"
import json, sys
import parsedmarc
with open(sys.argv[1], "rb") as f:
    r = parsedmarc.parse_report_file(f.read(), offline=True, always_use_local_files=True)
rep = r["report"]
print(json.dumps({
    "type": r["report_type"],
    "feedback_type": rep.get("feedback_type"),
    "auth_failure": rep.get("auth_failure"),
    "ip": rep["source"]["ip_address"],
    "reported_domain": rep.get("reported_domain"),
    "mechanisms": rep.get("authentication_mechanisms"),
    "delivery_result": rep.get("delivery_result"),
    "dkim_domain": rep.get("dkim_domain"),
    "subject": rep["parsed_sample"]["subject"],
}, default=str))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&eml)
        .output()
        .expect("python3 with parsedmarc");
    assert!(
        out.status.success(),
        "parsedmarc failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&mail)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        got,
        serde_json::json!({
            "type": "failure",
            "feedback_type": "auth-failure",
            "auth_failure": ["dmarc"],
            "ip": "198.51.100.7",
            "reported_domain": "example.com",
            "mechanisms": ["dkim"],
            "delivery_result": "reject",
            "dkim_domain": "example.com",
            "subject": "invoice",
        })
    );
}

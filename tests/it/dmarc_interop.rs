//! DMARC interop: authgate in RFC 7489 / PSL mode (`[dmarc] use_psl = true`)
//! against authheaders (PyPI), an independent RFC 7489 implementation
//! (`tests/oracles/authheaders_oracle.py`).
//!
//! Each case runs `authgate verify --json` with a client IP, HELO and MAIL
//! FROM (authgate's own SPF gives the intended result, asserted first), then
//! hands that SPF result to the oracle as a previous Authentication-Results
//! field; both evaluate DKIM themselves. DNS for both comes from
//! `tests/fixtures/dmarc/interop.zone` plus `tests/fixtures/dkim/keys.zone`.
//!
//! Where authheaders deliberately or mistakenly differs, the case names the
//! oracle's answer and the RFC section authgate follows (`Diff`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::oracles::run_with_stdin;
use crate::support::{authgate, fixtures, private_key};

/// A client inside every test domain's SPF `ip4:192.0.2.0/24`.
const GOOD_IP: &str = "192.0.2.1";
/// A client outside it: SPF `fail` wherever the domain publishes `-all`.
const BAD_IP: &str = "198.51.100.9";

/// A deliberate difference: what authheaders answers, and why authgate
/// answers otherwise.
struct Diff {
    oracle: &'static str,
    why: &'static str,
}

struct Case {
    name: &'static str,
    /// The From header field(s), one per line, without `From: `.
    from: &'static [&'static str],
    /// DKIM-sign with `authgate sign -d D -s rsa2048`; `None`: unsigned.
    sign: Option<&'static str>,
    ip: &'static str,
    mail_from: &'static str,
    /// SPF result for MAIL FROM, asserted on authgate's output.
    spf: &'static str,
    /// authgate's DMARC result.
    dmarc: &'static str,
    /// authgate's policy (`p`, or `sp` for a subdomain), when it found a record.
    policy: Option<&'static str>,
    diff: Option<Diff>,
}

const fn case(
    name: &'static str,
    from: &'static [&'static str],
    sign: Option<&'static str>,
    (ip, mail_from, spf): (&'static str, &'static str, &'static str),
    (dmarc, policy): (&'static str, Option<&'static str>),
) -> Case {
    Case {
        name,
        from,
        sign,
        ip,
        mail_from,
        spf,
        dmarc,
        policy,
        diff: None,
    }
}

const fn differs(c: Case, oracle: &'static str, why: &'static str) -> Case {
    Case {
        diff: Some(Diff { oracle, why }),
        ..c
    }
}

/// Domains whose record has `sp=`, with its value. authheaders applies
/// `sp=` to the domain that publishes the record too (`dmarc_per_from` sets
/// `orgdomain = from_domain` when the record is at the From domain, then
/// takes `sp`); RFC 7489 §6.3 `sp` is for subdomains only, so authgate
/// applies `p=` there. Only the reported policy differs, not the result.
const SP_AT_ORG: &[(&str, &str)] = &[("example.com", "quarantine"), ("example.net", "none")];

fn cases() -> Vec<Case> {
    let com = Some("example.com");
    let org = Some("example.org");
    vec![
        // Relaxed alignment (example.com: p=reject, sp=quarantine).
        case(
            "spf_relaxed_subdomain_mail_from",
            &["a@example.com"],
            None,
            (GOOD_IP, "x@bounce.example.com", "pass"),
            ("pass", Some("reject")),
        ),
        case(
            "spf_fail_unsigned",
            &["a@example.com"],
            None,
            (BAD_IP, "a@example.com", "fail"),
            ("fail", Some("reject")),
        ),
        case(
            "spf_pass_for_an_unrelated_domain",
            &["a@example.com"],
            None,
            (GOOD_IP, "x@other.example", "pass"),
            ("fail", Some("reject")),
        ),
        case(
            "dkim_relaxed_parent_signs_for_subdomain_author",
            &["a@news.example.com"],
            com,
            (BAD_IP, "a@news.example.com", "fail"),
            ("pass", Some("quarantine")),
        ),
        case(
            "subdomain_author_unauthenticated_gets_sp",
            &["a@news.example.com"],
            None,
            (BAD_IP, "a@news.example.com", "fail"),
            ("fail", Some("quarantine")),
        ),
        case(
            "dkim_from_an_unrelated_domain",
            &["a@example.com"],
            org,
            (BAD_IP, "a@example.com", "fail"),
            ("fail", Some("reject")),
        ),
        case(
            "display_name_and_mixed_case",
            &["\"Alice\" <Alice@News.Example.COM>"],
            None,
            (GOOD_IP, "x@bounce.example.com", "pass"),
            ("pass", Some("quarantine")),
        ),
        // Strict alignment (example.org: adkim=s, aspf=s, p=quarantine).
        case(
            "spf_strict_exact_domain",
            &["a@example.org"],
            None,
            (GOOD_IP, "x@example.org", "pass"),
            ("pass", Some("quarantine")),
        ),
        case(
            "spf_strict_subdomain_mail_from",
            &["a@example.org"],
            None,
            (GOOD_IP, "x@bounce.example.org", "pass"),
            ("fail", Some("quarantine")),
        ),
        case(
            "dkim_strict_exact_domain",
            &["a@example.org"],
            org,
            (BAD_IP, "a@example.org", "fail"),
            ("pass", Some("quarantine")),
        ),
        case(
            "dkim_strict_parent_for_subdomain_author",
            &["a@news.example.org"],
            org,
            (BAD_IP, "a@news.example.org", "fail"),
            ("fail", Some("quarantine")),
        ),
        // shop.example.org's own relaxed p=none record wins over example.org's.
        case(
            "subdomain_record_relaxed_dkim",
            &["a@shop.example.org"],
            org,
            (BAD_IP, "a@shop.example.org", "fail"),
            ("pass", Some("none")),
        ),
        case(
            "subdomain_record_relaxed_spf",
            &["a@shop.example.org"],
            None,
            (GOOD_IP, "x@example.org", "pass"),
            ("pass", Some("none")),
        ),
        case(
            "subdomain_record_unauthenticated",
            &["a@shop.example.org"],
            None,
            (BAD_IP, "a@shop.example.org", "fail"),
            ("fail", Some("none")),
        ),
        // aspf=s only.
        case(
            "aspf_strict_only",
            &["a@aspf.example"],
            None,
            (GOOD_IP, "x@mail.aspf.example", "pass"),
            ("fail", Some("reject")),
        ),
        case(
            "aspf_strict_only_exact",
            &["a@aspf.example"],
            None,
            (GOOD_IP, "x@aspf.example", "pass"),
            ("pass", Some("reject")),
        ),
        // No record at the domain or its Organizational Domain.
        case(
            "no_record",
            &["a@nodmarc.example"],
            None,
            (GOOD_IP, "a@nodmarc.example", "pass"),
            ("none", None),
        ),
        case(
            "no_record_subdomain_signed_elsewhere",
            &["a@www.nodmarc.example"],
            com,
            (BAD_IP, "a@www.nodmarc.example", "fail"),
            ("none", None),
        ),
        // PSL: co.uk is a public suffix, so example.co.uk is the Org Domain.
        case(
            "psl_multi_label_suffix_relaxed",
            &["a@news.example.co.uk"],
            None,
            (GOOD_IP, "x@bounce.example.co.uk", "pass"),
            ("pass", Some("reject")),
        ),
        case(
            "psl_sibling_under_public_suffix",
            &["a@example.co.uk"],
            None,
            (GOOD_IP, "x@other.co.uk", "pass"),
            ("fail", Some("reject")),
        ),
        // sp=none under p=reject.
        case(
            "sp_none_for_subdomain",
            &["a@sub.example.net"],
            None,
            (GOOD_IP, "a@sub.example.net", "fail"),
            ("fail", Some("none")),
        ),
        case(
            "p_reject_at_the_org_domain_itself",
            &["a@example.net"],
            None,
            (GOOD_IP, "a@example.net", "fail"),
            ("fail", Some("reject")),
        ),
        // Several From fields / addresses ([dmarc] multi_domain_from = "strictest").
        case(
            "multi_from_both_fail",
            &["a@example.com", "b@example.org"],
            None,
            (BAD_IP, "a@example.com", "fail"),
            ("fail", Some("reject")),
        ),
        case(
            "multi_from_same_domain",
            &["a@example.com, b@example.com"],
            com,
            (BAD_IP, "a@example.com", "fail"),
            ("pass", Some("reject")),
        ),
        differs(
            case(
                "multi_from_one_passes_one_fails",
                &["a@example.com, b@example.org"],
                com,
                (BAD_IP, "a@example.com", "fail"),
                ("fail", Some("quarantine")),
            ),
            "pass",
            "RFC 7489 §6.6.1: with several Author Domains apply \"the most strict \
             policy selected among the checks that fail\"; authheaders returns the \
             result of the domain with the strictest p= (example.com, which passed) \
             and so lets example.org's failure through",
        ),
        differs(
            case(
                "unlisted_tld_org_domain",
                &["a@news.other.example"],
                None,
                (GOOD_IP, "x@other.example", "pass"),
                ("pass", Some("none")),
            ),
            "none",
            "RFC 7489 §3.2 with the PSL's default rule \"*\": news.other.example's \
             Organizational Domain is other.example; authheaders (publicsuffix2) \
             answers the bare TLD 'example', looks up _dmarc.example and finds nothing",
        ),
        // Records authheaders reads differently.
        differs(
            case(
                "no_p_tag_with_rua",
                &["a@nop.example"],
                None,
                (BAD_IP, "a@nop.example", "fail"),
                ("fail", Some("none")),
            ),
            "none",
            "RFC 7489 §6.6.3 (6.1): no valid p= but a valid rua= means act as \
             p=none and continue; authheaders requires p= and applies no DMARC",
        ),
        differs(
            case(
                "tag_without_value",
                &["a@junk.example"],
                None,
                (BAD_IP, "a@junk.example", "fail"),
                ("fail", Some("reject")),
            ),
            "permerror",
            "RFC 7489 §6.3: syntax errors in the remainder of the record SHOULD be \
             discarded (RFC 9989 §4.8: MUST); authheaders raises on a tag without \
             '=' and reports permerror",
        ),
        differs(
            case(
                "hyphen_in_author_domain",
                &["a@my-shop.example"],
                None,
                (BAD_IP, "a@my-shop.example", "fail"),
                ("fail", Some("reject")),
            ),
            "none",
            "RFC 5322 §3.4.1 / RFC 1035 §2.3.1 allow '-' in labels; authheaders \
             extracts the domain with @([a-z0-9.]+), reads my-shop.example as \
             'my' and finds no record",
        ),
    ]
}

fn zones() -> [PathBuf; 2] {
    [
        fixtures().join("dmarc/interop.zone"),
        fixtures().join("dkim/keys.zone"),
    ]
}

fn config(dir: &Path) -> PathBuf {
    let [a, b] = zones();
    let path = dir.join("interop.toml");
    let text = format!(
        "authserv_id = \"mx.example.net\"\n[dmarc]\nuse_psl = true\n\
         multi_domain_from = \"strictest\"\n[dns]\nzone_files = [\"{}\", \"{}\"]\n",
        a.display(),
        b.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn message(c: &Case, key: &Path) -> Vec<u8> {
    let mut msg = String::new();
    for f in c.from {
        msg.push_str(&format!("From: {f}\n"));
    }
    msg.push_str(&format!(
        "To: rcpt@example.net\nSubject: {}\nMessage-ID: <{}@interop.test>\n\nHello.\n",
        c.name, c.name
    ));
    let Some(d) = c.sign else {
        return msg.into_bytes();
    };
    authgate()
        .args(["sign", "-d", d, "-s", "rsa2048", "--key"])
        .arg(key)
        .write_stdin(msg)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone()
}

fn authgate_verdict(c: &Case, config: &Path, msg: &[u8]) -> serde_json::Value {
    let out = authgate()
        .args(["verify", "--json", "--config"])
        .arg(config)
        .args([
            "--ip",
            c.ip,
            "--helo",
            "mx.client.test",
            "--mail-from",
            c.mail_from,
        ])
        .write_stdin(msg)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// The oracle's one line: `dmarc=R [header.from=D] [policy.dmarc=P] dkim=R`.
fn oracle_line(c: &Case, msg: &[u8]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/authheaders_oracle.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    for z in zones() {
        cmd.arg("--zone").arg(z);
    }
    cmd.args(["--spf", c.spf, "--mail-from", c.mail_from]);
    String::from_utf8(run_with_stdin(cmd, msg))
        .unwrap()
        .trim()
        .to_owned()
}

fn word<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ').find_map(|w| w.strip_prefix(key))
}

#[test]
fn dmarc_results_match_authheaders() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path(), "dkim/rsa2048.pem");
    let config = config(dir.path());
    let mut failures = Vec::new();
    let mut diffs = 0;
    for c in cases() {
        let msg = message(&c, &key);
        let v = authgate_verdict(&c, &config, &msg);
        let got = (
            v["spf"]["result"].as_str().unwrap_or("?"),
            v["dmarc"]["result"].as_str().unwrap_or("?"),
            v["dmarc"]["policy"].as_str(),
        );
        if got != (c.spf, c.dmarc, c.policy) {
            failures.push(format!(
                "{}: authgate spf/dmarc/policy {got:?}, want {:?}\n{v}",
                c.name,
                (c.spf, c.dmarc, c.policy)
            ));
            continue;
        }
        if c.sign.is_some() {
            assert_eq!(v["dkim"][0]["result"], "pass", "{}: {v}", c.name);
        }
        let line = oracle_line(&c, &msg);
        let oracle = word(&line, "dmarc=").unwrap_or("?");
        let want = c.diff.as_ref().map_or(c.dmarc, |d| d.oracle);
        if oracle != want {
            failures.push(format!(
                "{}: authheaders says {line:?}, want dmarc={want}{}",
                c.name,
                c.diff
                    .as_ref()
                    .map_or(String::new(), |d| format!(" ({})", d.why))
            ));
            continue;
        }
        if c.sign.is_some() && word(&line, "dkim=") != Some("pass") {
            failures.push(format!("{}: authheaders DKIM: {line}", c.name));
        }
        // Where both found a record and agree, they agree on the policy too
        // (authheaders reports the sp= it applied to a subdomain as well),
        // but for its sp= quirk at the policy domain itself (see SP_AT_ORG).
        let author = v["dmarc"]["domain"].as_str().unwrap_or("?");
        let want_policy = match SP_AT_ORG.iter().find(|(d, _)| *d == author) {
            Some((_, sp)) if v["dmarc"]["policy_domain"] == author => Some(*sp),
            _ => c.policy,
        };
        if c.diff.is_none() && oracle != "none" && word(&line, "policy.dmarc=") != want_policy {
            failures.push(format!(
                "{}: authheaders says {line:?}, want policy.dmarc={want_policy:?}",
                c.name
            ));
        }
        diffs += usize::from(c.diff.is_some());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(diffs, 5, "every documented difference still holds");
}

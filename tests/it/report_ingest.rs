//! `authgate report ingest` and `report show`: the reports others send us
//! (tests/fixtures/reports/, built by its make.py from xml/), stored in a
//! temporary SQLite store, summarised as text, JSON, CSV and an HTML page
//! that a real headless Chromium renders.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{authgate, fixtures};

fn reports() -> PathBuf {
    fixtures().join("reports")
}

/// A temp dir with a config whose store is `<dir>/r.db`.
fn store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    let toml = format!(
        "[report]\nstore = \"sqlite:{}/r.db\"\n",
        dir.path().display()
    );
    std::fs::write(&config, toml).unwrap();
    (dir, config)
}

/// Runs `report ingest` on `paths` (stdin from `stdin`); returns the exit
/// code and the JSON lines.
fn ingest(config: &Path, paths: &[PathBuf], stdin: Option<&Path>) -> (i32, Vec<Value>) {
    let mut cmd = authgate();
    cmd.args(["report", "ingest", "-c"]).arg(config).args(paths);
    if let Some(f) = stdin {
        cmd.pipe_stdin(f).unwrap();
    }
    let out = cmd.output().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (out.status.code().unwrap(), lines)
}

/// Every fixture: four example.com reports, two example.org ones, their
/// duplicates, and the bad attachments.
fn all_fixtures() -> Vec<PathBuf> {
    [
        "google-example.com.eml",
        "outlook-example.com.eml",
        "yahoo-example.com.eml",
        "forwarded-rfc9990.eml",
        "maildir",
        "reports.mbox",
        "bare",
        "bad",
    ]
    .iter()
    .map(|f| reports().join(f))
    .collect()
}

fn ingested(config: &Path) {
    let (code, _) = ingest(config, &all_fixtures(), None);
    assert_eq!(code, 0);
}

fn show(config: &Path, args: &[&str]) -> String {
    let out = authgate()
        .args(["report", "show", "-c"])
        .arg(config)
        .arg("--dns-zone")
        .arg(reports().join("ptr.zone"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn find<'a>(lines: &'a [Value], file_end: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["file"].as_str().unwrap().contains(file_end))
        .collect()
}

#[test]
fn report_ingest_counts_each_report_once() {
    let (_dir, config) = store();
    let (code, lines) = ingest(&config, &all_fixtures(), None);
    assert_eq!(code, 0, "{lines:#?}");
    // (file, reporter, report id, domain, records, messages, status)
    for (file, reporter, id, domain, records, messages, status) in [
        (
            "google-example.com.eml",
            "google.com",
            "4417339902561277306",
            "example.com",
            2,
            13,
            "stored",
        ),
        (
            "outlook-example.com.eml",
            "Outlook.com",
            "3f1c9a7e0b5d4e2a8c6f1b9d7e3a5c20",
            "example.com",
            2,
            6,
            "stored",
        ),
        (
            "yahoo-example.com.eml",
            "Yahoo",
            "1796604017.638422",
            "example.com",
            2,
            7,
            "stored",
        ),
        (
            "forwarded-rfc9990.eml",
            "mx.example.net",
            "example.com-20261206-mx.example.net",
            "example.com",
            3,
            10,
            "stored",
        ),
        (
            "1796602000.M1P100.mx:2,S",
            "google.com",
            "9120348815230046611",
            "example.org",
            1,
            5,
            "stored",
        ),
        (
            "1796603000.M2P101.mx",
            "google.com",
            "4417339902561277306",
            "example.com",
            2,
            13,
            "duplicate",
        ),
        (
            "reports.mbox message 1",
            "Yahoo",
            "1796604018.102934",
            "example.org",
            2,
            3,
            "stored",
        ),
        (
            "reports.mbox message 2",
            "Outlook.com",
            "3f1c9a7e0b5d4e2a8c6f1b9d7e3a5c20",
            "example.com",
            2,
            6,
            "duplicate",
        ),
        (
            "bare/google.com!example.com",
            "google.com",
            "4417339902561277306",
            "example.com",
            2,
            13,
            "duplicate",
        ),
        (
            "bare/yahoo.com!example.com",
            "Yahoo",
            "1796604017.638422",
            "example.com",
            2,
            7,
            "duplicate",
        ),
    ] {
        let got = find(&lines, file);
        assert_eq!(got.len(), 1, "{file}: {lines:#?}");
        let l = got[0];
        assert_eq!(l["reporter"], reporter, "{l}");
        assert_eq!(l["report_id"], id, "{l}");
        assert_eq!(l["domain"], domain, "{l}");
        assert_eq!(l["records"], records, "{l}");
        assert_eq!(l["messages"], messages, "{l}");
        assert_eq!(l["status"], status, "{l}");
        assert!(l.get("error").is_none(), "{l}");
    }
    let google = find(&lines, "google-example.com.eml")[0];
    assert_eq!(
        (google["begin"].as_i64(), google["end"].as_i64()),
        (Some(1_796_428_800), Some(1_796_515_199))
    );
    assert_eq!(lines.iter().filter(|l| l["status"] == "stored").count(), 6);
    // Ingesting everything again stores nothing new.
    let (code, again) = ingest(&config, &all_fixtures(), None);
    assert_eq!(code, 0);
    assert_eq!(again.iter().filter(|l| l["status"] == "stored").count(), 0);
    assert_eq!(
        again.iter().filter(|l| l["status"] == "duplicate").count(),
        10
    );
}

#[test]
fn report_ingest_reports_bad_attachments_and_goes_on() {
    let (_dir, config) = store();
    let paths = [
        reports().join("bad/truncated-gzip.eml"),
        reports().join("bad/zip-bomb.eml"),
        reports().join("bad/not-xml.eml"),
        reports().join("google-example.com.eml"),
    ];
    let (code, lines) = ingest(&config, &paths, None);
    assert_eq!(code, 0, "bad attachments are not an I/O error: {lines:#?}");
    for (file, reason) in [
        (
            "truncated-gzip.eml: broken.example!example.com!1796428800!1796515199.xml.gz",
            "gzip: ",
        ),
        (
            "zip-bomb.eml: bomb.example!example.com!1796428800!1796515199.zip: report.xml",
            "decompresses to more than 50 MiB",
        ),
        (
            "not-xml.eml: report.xml",
            "not a report: neither gzip, zip nor XML",
        ),
        ("not-xml.eml: report.xml.gz", "gzip: the content is not XML"),
    ] {
        let got: Vec<&Value> = lines
            .iter()
            .filter(|l| l["file"].as_str().unwrap().ends_with(file))
            .collect();
        assert_eq!(got.len(), 1, "{file}: {lines:#?}");
        assert_eq!(got[0]["status"], "error");
        let error = got[0]["error"].as_str().unwrap();
        assert!(error.contains(file) && error.contains(reason), "{error}");
    }
    assert_eq!(
        find(&lines, "google-example.com.eml")[0]["status"],
        "stored"
    );
}

#[test]
fn report_ingest_reads_stdin_like_a_pipe_alias() {
    let (_dir, config) = store();
    let eml = reports().join("outlook-example.com.eml");
    let (code, lines) = ingest(&config, &[], Some(&eml));
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "stored");
    assert_eq!(lines[0]["messages"], 6);
    assert!(lines[0]["file"].as_str().unwrap().starts_with("-: "));
    let (_, lines) = ingest(&config, &[], Some(&eml));
    assert_eq!(lines[0]["status"], "duplicate");
    // A message with no report is one error line, and exit 0.
    let (code, lines) = ingest(&config, &[], Some(&fixtures().join("dkim/rfc8463.eml")));
    assert_eq!(code, 0);
    assert_eq!(
        lines[0]["error"],
        "-: no DMARC report attachment in the message"
    );
}

#[test]
fn report_ingest_exits_1_for_an_unreadable_file_after_the_rest() {
    let (dir, config) = store();
    let missing = dir.path().join("missing.eml");
    let (code, lines) = ingest(
        &config,
        &[missing, reports().join("yahoo-example.com.eml")],
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], "error");
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("missing.eml: No such file"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["status"], "stored");
}

#[test]
fn report_show_json_sums_the_fixtures() {
    let (_dir, config) = store();
    ingested(&config);
    let doc: Value = serde_json::from_str(&show(&config, &["--json"])).unwrap();
    let domains = doc.as_array().unwrap();
    assert_eq!(domains.len(), 2);
    let com = &domains[0];
    assert_eq!(com["domain"], "example.com");
    assert_eq!(
        (
            com["messages"].as_u64(),
            com["dmarc_pass"].as_u64(),
            com["dmarc_fail"].as_u64()
        ),
        (Some(36), Some(29), Some(7))
    );
    assert!((com["compliance"].as_f64().unwrap() - 29.0 / 36.0).abs() < 1e-9);
    assert_eq!(
        com["reporters"],
        serde_json::json!(["Outlook.com", "Yahoo", "google.com", "mx.example.net"])
    );
    let days: Vec<(&str, u64, u64)> = com["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap(),
                d["messages"].as_u64().unwrap(),
                d["dmarc_pass"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(days, [("2026-12-05", 19, 16), ("2026-12-06", 17, 13)]);
    // (ip, ptr, messages, dkim aligned pass, spf aligned pass, dmarc pass, reporters, failing, new)
    let want = [
        (
            "192.0.2.10",
            "mail.example.com",
            27,
            27,
            27,
            27,
            4,
            false,
            false,
        ),
        (
            "198.51.100.20",
            "host20.bulk.spammer.example",
            4,
            0,
            0,
            0,
            2,
            true,
            false,
        ),
        ("203.0.113.7", "", 3, 0, 0, 0, 2, true, true),
        ("192.0.2.11", "", 2, 2, 0, 2, 1, false, false),
    ];
    let sources = com["sources"].as_array().unwrap();
    assert_eq!(sources.len(), want.len());
    for (s, (ip, ptr, messages, dkim, spf, dmarc, reporters, failing, new)) in
        sources.iter().zip(want)
    {
        assert_eq!(s["ip"], ip);
        assert_eq!(s["ptr"], ptr, "{s}");
        assert_eq!(s["messages"], messages, "{s}");
        assert_eq!(s["dkim_aligned_pass"], dkim, "{s}");
        assert_eq!(s["spf_aligned_pass"], spf, "{s}");
        assert_eq!(s["dmarc_pass"], dmarc, "{s}");
        assert_eq!(s["reporters"].as_array().unwrap().len(), reporters, "{s}");
        assert_eq!(
            (s["failing"].as_bool(), s["new"].as_bool()),
            (Some(failing), Some(new)),
            "{s}"
        );
    }
    let org = &domains[1];
    assert_eq!(
        (
            org["domain"].as_str(),
            org["messages"].as_u64(),
            org["dmarc_pass"].as_u64()
        ),
        (Some("example.org"), Some(8), Some(7))
    );
    // The names were cached: a second run without the zone still has them.
    let out = authgate()
        .args(["report", "show", "--json", "-c"])
        .arg(&config)
        .arg("--dns-zone")
        .arg("/dev/null")
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again[0]["sources"][1]["ptr"], "host20.bulk.spammer.example");
}

#[test]
fn report_show_filters_by_domain_and_day() {
    let (_dir, config) = store();
    ingested(&config);
    let doc: Value = serde_json::from_str(&show(
        &config,
        &["--json", "--domain", "Example.COM", "--since", "2026-12-06"],
    ))
    .unwrap();
    assert_eq!(doc.as_array().unwrap().len(), 1);
    assert_eq!(doc[0]["messages"], 17);
    assert_eq!(doc[0]["days"].as_array().unwrap().len(), 1);
}

#[test]
fn report_show_text_names_failing_and_new_sources() {
    let (_dir, config) = store();
    ingested(&config);
    let text = show(&config, &[]);
    for want in [
        "example.com: 36 messages, 29 pass DMARC, 7 fail (80.6% compliant), 2026-12-05 .. 2026-12-06",
        "198.51.100.20 (host20.bulk.spammer.example): 4 of 4 messages failed",
        "new sources on 2026-12-06 (not seen before):\n    203.0.113.7 (no PTR): 3 messages",
        "example.org: 8 messages, 7 pass DMARC, 1 fail (87.5% compliant)",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}

#[test]
fn report_show_csv_has_a_line_per_domain_and_source() {
    let (_dir, config) = store();
    ingested(&config);
    let csv = show(&config, &["--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], authgate::report::show::CSV_HEADER);
    assert_eq!(lines.len(), 1 + 4 + 2);
    assert_eq!(
        lines[1],
        "example.com,192.0.2.10,mail.example.com,27,27,27,27,0,Outlook.com;Yahoo;google.com;mx.example.net,2026-12-05,false,false"
    );
    assert!(
        lines.contains(&"example.org,192.0.2.99,,1,0,0,0,1,Yahoo,2026-12-06,true,false"),
        "{csv}"
    );
}

/// Where test artefacts (the screenshot) are kept: `target/test-artefacts/`.
fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `page` with `args`; returns stdout.
fn chromium(profile: &Path, page: &Path, args: &[&str]) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the first element after `marker` in `dom`.
fn text_after<'a>(dom: &'a str, marker: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the page"));
    let rest = &dom[start + marker.len()..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    &rest[open..open + close]
}

#[test]
fn report_show_html_renders_the_numbers_in_chromium() {
    let (dir, config) = store();
    ingested(&config);
    let page = dir.path().join("report.html");
    show(&config, &["--html", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    for forbidden in ["http://", "https://", "<link", "src="] {
        assert!(
            !html.contains(forbidden),
            "the page must be self-contained: {forbidden}"
        );
    }
    let profile = dir.path().join("chromium");
    let dom = chromium(&profile, &page, &["--dump-dom"]);
    assert!(
        dom.contains("data-js=\"ran\""),
        "the page's script did not run"
    );
    let com = &dom[dom.find("data-domain=\"example.com\"").unwrap()
        ..dom.find("data-domain=\"example.org\"").unwrap()];
    for (field, want) in [
        ("messages", "36"),
        ("dmarc_pass", "29"),
        ("dmarc_fail", "7"),
        ("compliance", "80.6%"),
    ] {
        assert_eq!(
            text_after(com, &format!("<b data-field=\"{field}\"")),
            want,
            "{field}"
        );
    }
    // The totals row is filled in by the page's script from the table.
    let foot = &com[com.find("<tfoot>").unwrap()..];
    for (field, want) in [
        ("messages", "36"),
        ("dkim_aligned_pass", "29"),
        ("spf_aligned_pass", "27"),
        ("dmarc_pass", "29"),
        ("dmarc_fail", "7"),
    ] {
        assert_eq!(
            text_after(foot, &format!("data-field=\"{field}\"")),
            want,
            "total {field}"
        );
    }
    let row = &com[com
        .find("<tr class=\"failing new\" data-ip=\"203.0.113.7\"")
        .expect("failing new row")..];
    assert_eq!(text_after(row, "data-field=\"messages\""), "3");
    assert!(com.contains("<tr class=\"failing\" data-ip=\"198.51.100.20\""));
    assert!(com.contains("<tr class=\"\" data-ip=\"192.0.2.10\""));
    assert_eq!(
        text_after(
            com,
            "data-ip=\"192.0.2.10\"><td class=\"text ip\" data-field=\"ip\""
        ),
        "192.0.2.10"
    );
    assert!(com.contains("data-day=\"2026-12-05\" data-compliance=\"0.8421\""));
    assert!(com.contains("data-day=\"2026-12-06\" data-compliance=\"0.7647\""));
    // Sorting by a header (the #sort= address clicks it): ascending, then
    // descending by messages.
    let order = |hash: &str| -> Vec<String> {
        let dom = chromium(
            &profile,
            Path::new(&format!("{}{hash}", page.display())),
            &["--dump-dom"],
        );
        let com = &dom[dom.find("data-domain=\"example.com\"").unwrap()..];
        let body = &com[com.find("<tbody>").unwrap()..com.find("</tbody>").unwrap()];
        body.split("data-ip=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].to_string())
            .collect()
    };
    assert_eq!(
        order("#sort=messages"),
        ["192.0.2.11", "203.0.113.7", "198.51.100.20", "192.0.2.10"]
    );
    assert_eq!(
        order("#sort=messages-desc"),
        ["192.0.2.10", "198.51.100.20", "203.0.113.7", "192.0.2.11"]
    );
    assert_eq!(
        order("#sort=ip"),
        ["192.0.2.10", "192.0.2.11", "198.51.100.20", "203.0.113.7"]
    );
    let shot = artefacts().join("report-show.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &profile,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,900",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot {}",
        shot.display()
    );
}

/// The same ingest and summary with the shared PostgreSQL store (a real
/// server): the numbers equal the SQLite ones.
#[test]
fn report_ingest_and_show_on_postgres_give_the_sqlite_numbers() {
    let pg = crate::support::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authgate.toml");
    std::fs::write(&config, format!("[report]\nstore = \"{}\"\n", pg.url())).unwrap();
    let (lite_dir, lite) = store();
    let files = all_fixtures();
    let (code_pg, lines_pg) = ingest(&config, &files, None);
    let (code_lite, lines_lite) = ingest(&lite, &files, None);
    assert_eq!(code_pg, code_lite);
    assert_eq!(lines_pg, lines_lite);
    // Again: every report is a duplicate now.
    let (_, again) = ingest(&config, &files, None);
    assert!(
        again
            .iter()
            .filter(|l| l["status"] != "error")
            .all(|l| l["status"] == "duplicate")
    );
    let zone = reports().join("ptr.zone");
    let args = ["--json", "--dns-zone", zone.to_str().unwrap()];
    assert_eq!(show(&config, &args), show(&lite, &args));
    drop(lite_dir);
}

//! Table tests of the core over zone text (the CLI's fixtures are in
//! `tests/fixtures/check/`, run through the binary by `tests/it`).

use super::*;
use crate::dns::zone::ZoneResolver;

fn run(zone: &str, domain: &str, selectors: &Selectors) -> Vec<Finding> {
    let resolver = ZoneResolver::parse(zone, None).expect("zone");
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt")
        .block_on(check_domain(&resolver, domain, selectors))
}

fn find(findings: &[Finding], area: Area, level: Level, text: &str) -> bool {
    findings
        .iter()
        .any(|f| f.area == area && f.level == level && f.message.contains(text))
}

#[test]
fn spf_walk_findings() {
    for (zone, area, level, text) in [
        // redirect= stands in for all.
        (
            "d.example. TXT \"v=spf1 redirect=_spf.d.example\"\n_spf.d.example. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"",
            Area::Spf,
            Level::Ok,
            "1 of 10 allowed DNS lookups",
        ),
        (
            "d.example. TXT \"v=spf1 redirect=_spf.d.example\"",
            Area::Spf,
            Level::Error,
            "\"redirect=_spf.d.example\" (in the record of d.example) is broken",
        ),
        // Macros are counted, not followed.
        (
            "d.example. TXT \"v=spf1 exists:%{i}.x.d.example -all\"",
            Area::Spf,
            Level::Ok,
            "terms with macros (exists:%{i}.x.d.example)",
        ),
        // An include loop ends.
        (
            "d.example. TXT \"v=spf1 include:a.d.example -all\"\na.d.example. TXT \"v=spf1 include:d.example -all\"",
            Area::Spf,
            Level::Error,
            "\"include:d.example\" (in the record of a.d.example) is broken: it leads back to d.example (a loop",
        ),
        // The same include twice counts twice.
        (
            "d.example. TXT \"v=spf1 include:a.d.example include:a.d.example -all\"\na.d.example. TXT \"v=spf1 a:a.d.example -all\"\na.d.example. A 192.0.2.1",
            Area::Spf,
            Level::Ok,
            "4 of 10 allowed DNS lookups",
        ),
        (
            "d.example. TXT \"v=spf1 mx -all\"\nd.example. MX 1 a\nd.example. MX 2 b\nd.example. MX 3 c\nd.example. MX 4 d\nd.example. MX 5 e\nd.example. MX 6 f\nd.example. MX 7 g\nd.example. MX 8 h\nd.example. MX 9 i\nd.example. MX 10 j\nd.example. MX 11 k",
            Area::Spf,
            Level::Error,
            "has 11 MX records",
        ),
        // A literal's characters are its octets, '\' too (RFC 7208 §7.1
        // macro-literal): the zone writes that label `a\\b`.
        (
            r#"d.example. TXT "v=spf1 include:a\\b.d.example -all"
a\\b.d.example. TXT "v=spf1 a -all"
a\\b.d.example. A 192.0.2.1"#,
            Area::Spf,
            Level::Ok,
            "2 of 10 allowed DNS lookups",
        ),
        (
            ";@servfail d.example\n",
            Area::Spf,
            Level::Error,
            "could not check: the DNS lookup of d.example failed",
        ),
    ] {
        let got = run(zone, "d.example", &Selectors::Common);
        assert!(find(&got, area, level, text), "{text}: {got:#?}");
    }
}

#[test]
fn spf_salvage_drops_bad_terms_and_ends_with_all() {
    for (text, want) in [
        ("v=spf1 ip4:300.1.1.1 mx -all", "v=spf1 mx -all"),
        ("v=spf1 a foo:bar", "v=spf1 a ~all"),
        (
            "v=spf1 bogus redirect=_spf.example.com",
            "v=spf1 redirect=_spf.example.com",
        ),
    ] {
        assert_eq!(spf::salvage(text), want);
    }
}

#[test]
fn dkim_dmarc_mx_findings() {
    let ed = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let common = Selectors::Common;
    for (zone, selectors, area, level, text) in [
        // A revoked key at a guessed selector is information only.
        (
            "default._domainkey.d.example. TXT \"v=DKIM1; p=\"".to_owned(),
            &common,
            Area::Dkim,
            Level::Ok,
            "default._domainkey.d.example: the key is revoked",
        ),
        (
            format!("s1._domainkey.d.example. TXT \"v=DKIM1; k=ed25519; p={ed}\""),
            &common,
            Area::Dkim,
            Level::Ok,
            "s1._domainkey.d.example: the record publishes an Ed25519 key",
        ),
        (
            "_dmarc.d.example. TXT \"v=DMARC1; rua=mailto:r@d.example\"".to_owned(),
            &common,
            Area::Dmarc,
            Level::Warning,
            "no p= tag",
        ),
        // RFC 9989 §4.10.1: no p and no valid rua: the record is not used.
        (
            "_dmarc.d.example. TXT \"v=DMARC1\"".to_owned(),
            &common,
            Area::Dmarc,
            Level::Error,
            "no p= tag and no valid rua=",
        ),
        (
            "_dmarc.d.example. TXT \"v=DMARC1; p=reject; psd=n; rua=mailto:r@d.example\""
                .to_owned(),
            &common,
            Area::Dmarc,
            Level::Ok,
            "psd=n: d.example declares itself an organizational domain",
        ),
        // Same organisation: no authorisation needed, no finding.
        (
            "x.example. A 192.0.2.1".to_owned(),
            &common,
            Area::Mx,
            Level::Error,
            "d.example does not exist (NXDOMAIN)",
        ),
        (
            "d.example. MX 0 .".to_owned(),
            &common,
            Area::Mx,
            Level::Ok,
            "null MX (RFC 7505)",
        ),
        (
            "d.example. MX 5 .".to_owned(),
            &common,
            Area::Mx,
            Level::Error,
            "null MX",
        ),
    ] {
        let got = run(&zone, "d.example", selectors);
        assert!(find(&got, area, level, text), "{text}: {got:#?}");
    }
}

#[test]
fn same_organisation_report_destinations_need_no_authorisation() {
    let zone = "_dmarc.d.example. TXT \"v=DMARC1; p=reject; rua=mailto:r@reports.d.example\"";
    let got = run(zone, "d.example", &Selectors::Common);
    assert!(!got.iter().any(|f| f.area == Area::ReportAuth), "{got:#?}");
}

#[test]
fn findings_come_grouped_by_area_and_worst_is_the_exit_level() {
    let got = run("", "d.example", &Selectors::Common);
    let areas: Vec<Area> = got.iter().map(|f| f.area).collect();
    let mut sorted = areas.clone();
    sorted.sort();
    assert_eq!(areas, sorted);
    assert_eq!(worst(&got), Level::Error);
    assert_eq!(worst(&[]), Level::Ok);
}

//! DKIM key record check (`authgate key check`): compares the TXT answer at
//! `selector._domainkey.domain` with the public half of a configured private
//! key and says what is wrong and how to fix it. [`check_published`] gives
//! the same diagnosis without a private key (`authgate check DOMAIN`).
//!
//! Owns: the findings (missing, unknown, several records, quote/backslash or
//! whitespace damage from web panels, `v=` not first, revoked, wrong `k=`,
//! mismatch, `t=y`, RSA size per RFC 8301) and the fix for each, which is
//! the record as `authgate keygen` prints it ([`crate::keygen::DnsRecord`]).
//! Must not: read files, look anything up (the caller hands in the DNS
//! answer as [`crate::dns::Resolver::txt`] returns it) or print.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::dkim::key::{KeyRecord, KeyRecordError, KeyType};
use crate::dkim::tag::TagList;
use crate::dns::DnsError;
use crate::keygen::{DnsRecord, KeyAlgorithm, KeygenOptions};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing to do (or information only).
    Ok,
    /// Works, but should be fixed.
    Warning,
    /// Signatures with this key fail, or could not be checked.
    Error,
}

impl Level {
    /// `ok`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One thing found about a key's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Short status word: `ok`, `unused`, `missing`, `unknown`, `split`,
    /// `damaged`, `revoked`, `key-type`, `mismatch`, `invalid`, `testing`,
    /// `weak`, `unchecked`, `unreadable`.
    pub code: &'static str,
    /// Severity.
    pub level: Level,
    /// A plain sentence.
    pub message: String,
    /// What to do, if anything (often the TXT record to publish).
    pub fix: Option<String>,
}

/// All findings for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Findings in the order found; never empty.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst level of all findings.
    pub fn level(&self) -> Level {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Ok)
    }

    /// The code of the first finding at the worst level (at ok level the
    /// last one: `ok`, or `revoked` for an unused key).
    pub fn status(&self) -> &'static str {
        let worst = self.level();
        let mut at_worst = self.findings.iter().filter(|f| f.level == worst);
        // At ok level the last finding is the verdict ("unused" comes first).
        let pick = if worst == Level::Ok {
            at_worst.next_back()
        } else {
            at_worst.next()
        };
        pick.map_or("ok", |f| f.code)
    }

    /// A report of one finding (a key that could not be checked at all).
    pub fn single(code: &'static str, level: Level, message: String, fix: Option<String>) -> Self {
        Report {
            findings: vec![Finding {
                code,
                level,
                message,
                fix,
            }],
        }
    }
}

/// The configured key whose record is checked.
#[derive(Debug, Clone, Copy)]
pub struct KeyToCheck<'a> {
    /// The key's name in `[[dkim.keys]]`.
    pub name: &'a str,
    /// Signing domain (`d=`).
    pub domain: &'a str,
    /// Selector (`s=`).
    pub selector: &'a str,
    /// The private key's public half as published in `p=` (SPKI DER for RSA,
    /// raw 32 bytes for Ed25519).
    pub public_key: &'a [u8],
    /// Key type of the private key.
    pub key_type: KeyType,
    /// Whether the signing table uses this key.
    pub signing: bool,
}

/// RSA modulus size in bits of an SPKI or bare RSAPublicKey DER.
pub fn rsa_bits(der: &[u8]) -> Option<usize> {
    rsa_key(der).map(|k| rsa::traits::PublicKeyParts::size(&k) * 8)
}

fn rsa_key(der: &[u8]) -> Option<rsa::RsaPublicKey> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    rsa::RsaPublicKey::from_public_key_der(der)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_der(der))
        .ok()
}

/// Whether a published `p=` is the same key as ours (RSA: same modulus and
/// exponent, SPKI or bare RSAPublicKey alike).
fn same_key(key_type: KeyType, ours: &[u8], published: &[u8]) -> bool {
    match key_type {
        KeyType::Ed25519 => ours == published,
        KeyType::Rsa => match (rsa_key(ours), rsa_key(published)) {
            (Some(a), Some(b)) => a == b,
            _ => ours == published,
        },
    }
}

/// The record to publish, as `authgate keygen` prints its zone-file line.
pub fn record_to_publish(key: &KeyToCheck<'_>) -> String {
    let algorithm = match key.key_type {
        KeyType::Ed25519 => KeyAlgorithm::Ed25519,
        KeyType::Rsa => KeyAlgorithm::Rsa {
            bits: rsa_bits(key.public_key).unwrap_or(0),
        },
    };
    let opts = KeygenOptions {
        domain: key.domain.to_owned(),
        selector: key.selector.to_owned(),
        algorithm,
        testing: false,
    };
    match DnsRecord::new(&opts, key.public_key) {
        Ok(r) => format!("publish this TXT record (one record):\n{}", r.zone_line),
        Err(e) => format!("fix the key's domain or selector in the configuration: {e}"),
    }
}

/// Checks the TXT answer at `selector._domainkey.domain` against `key`.
pub fn check(key: &KeyToCheck<'_>, answer: &Result<Vec<Vec<u8>>, DnsError>) -> Report {
    let mut out = Vec::new();
    if !key.signing {
        out.push(finding(
            "unused",
            Level::Ok,
            format!(
                "key \"{}\" is not used by the signing table ([[dkim.signing_table]]).",
                key.name
            ),
            None,
        ));
    }
    check_answer(key, answer, &mut out);
    if out.iter().all(|f| f.level == Level::Ok) && !out.iter().any(|f| f.code == "revoked") {
        out.push(finding(
            "ok",
            Level::Ok,
            "the published record matches the private key.".into(),
            None,
        ));
    }
    Report { findings: out }
}

fn finding(code: &'static str, level: Level, message: String, fix: Option<String>) -> Finding {
    Finding {
        code,
        level,
        message,
        fix,
    }
}

fn check_answer(
    key: &KeyToCheck<'_>,
    answer: &Result<Vec<Vec<u8>>, DnsError>,
    out: &mut Vec<Finding>,
) {
    let record = || Some(record_to_publish(key));
    let records = match answer {
        Err(DnsError::Temporary(why)) => {
            out.push(finding(
                "unknown",
                Level::Error,
                format!("could not check: the DNS lookup failed ({why})."),
                Some("retry later; if it persists, check the resolver (--dns-server, [dns] servers) and the domain's name servers.".into()),
            ));
            return;
        }
        Err(DnsError::NxDomain | DnsError::NoData) => &Vec::new(),
        Ok(records) => records,
    };
    match records.as_slice() {
        [] => out.push(finding(
            "missing",
            Level::Error,
            "no TXT record is published at this name: receivers cannot verify signatures made with this key.".into(),
            record(),
        )),
        [one] => check_record(key, one, out),
        several => out.push(finding(
            "split",
            Level::Error,
            format!(
                "{} separate TXT records are published at this name: the value was split into several records instead of one record of several strings, so verifiers see no usable key.",
                several.len()
            ),
            Some(format!(
                "delete them all, then {}",
                record_to_publish(key)
            )),
        )),
    }
}

/// What a web panel did to the record, and the record with it undone.
struct Damage {
    problems: Vec<(Level, &'static str)>,
    cleaned: Vec<u8>,
}

fn undo_damage(raw: &[u8]) -> Damage {
    let mut problems = Vec::new();
    let text = String::from_utf8_lossy(raw);
    if text.contains('"') {
        problems.push((Level::Error, "the record contains quote characters: your DNS panel stored the quotes as text; paste the value without quotes"));
    }
    if text.contains('\\') {
        problems.push((Level::Error, "the record contains backslashes: your DNS panel stored escape characters as text; paste the value without backslashes"));
    }
    let unquoted: String = text.chars().filter(|&c| c != '"' && c != '\\').collect();
    let mut tags: Vec<(String, String)> = unquoted
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    if tags
        .iter()
        .any(|(n, v)| n == "p" && v.contains(char::is_whitespace))
        && !text.contains('"')
    {
        problems.push((Level::Warning, "the public key (p=) contains spaces: RFC 6376 allows them, but some verifiers fail such records; publish the key without spaces"));
    }
    if tags
        .iter()
        .position(|(n, _)| n == "v")
        .is_some_and(|i| i > 0)
    {
        problems.push((
            Level::Error,
            "v=DKIM1 is not the first tag: verifiers reject the record; put v=DKIM1 first",
        ));
        tags.retain(|(n, _)| n != "v");
    }
    for (n, v) in &mut tags {
        if n == "p" {
            v.retain(|c| !c.is_whitespace());
        }
    }
    let cleaned = tags
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    Damage {
        problems,
        cleaned: if text.contains(['"', '\\']) || cleaned_changed(&tags, &text) {
            cleaned.into_bytes()
        } else {
            raw.to_vec()
        },
    }
}

/// Whether removing a misplaced `v=` changed the tag list.
fn cleaned_changed(tags: &[(String, String)], text: &str) -> bool {
    text.split(';').filter(|t| t.contains('=')).count() != tags.len()
}

fn check_record(key: &KeyToCheck<'_>, raw: &[u8], out: &mut Vec<Finding>) {
    let record = || Some(record_to_publish(key));
    let damage = undo_damage(raw);
    let parsed = KeyRecord::parse(&damage.cleaned);
    let k_tag = TagList::parse(&damage.cleaned)
        .ok()
        .and_then(|t| t.get("k").map(str::to_ascii_lowercase));
    let rec = match parsed {
        Err(KeyRecordError::Revoked) if key.signing => {
            out.push(finding("revoked", Level::Error, "the record is revoked (empty p=), but this key is used for signing: every signature made with it fails.".into(), Some(format!("stop signing with this key (remove it from [[dkim.signing_table]]), or {}", record_to_publish(key)))));
            return;
        }
        Err(KeyRecordError::Revoked) => {
            out.push(finding(
                "revoked",
                Level::Ok,
                "revoked, not used for signing.".into(),
                None,
            ));
            return;
        }
        Err(KeyRecordError::UnknownKeyType(k)) => {
            out.push(finding(
                "key-type",
                Level::Error,
                format!("the record names an unknown key type k={k}."),
                record(),
            ));
            return;
        }
        Err(e) => {
            push_damage(&damage, out);
            out.push(finding(
                "invalid",
                Level::Error,
                format!("the record is unusable: {e}."),
                record(),
            ));
            return;
        }
        Ok(rec) => rec,
    };
    if !key_type_ok(key, &rec, k_tag.as_deref(), out) {
        return;
    }
    if !same_key(key.key_type, key.public_key, &rec.public_key) {
        push_damage(&damage, out);
        out.push(finding(
            "mismatch",
            Level::Error,
            format!(
                "the published public key (p={}...) is not the public half of this private key: signatures fail.",
                short_p(&rec.public_key)
            ),
            record(),
        ));
        return;
    }
    for (level, text) in &damage.problems {
        let tail = if *level == Level::Error {
            " With that undone, the record matches the private key."
        } else {
            ""
        };
        out.push(finding(
            "damaged",
            *level,
            format!("{text}.{tail}"),
            record(),
        ));
    }
    if rec.testing {
        out.push(finding(
            "testing",
            Level::Warning,
            TESTING.into(),
            Some(format!(
                "once signing works, drop t=y: {}",
                record_to_publish(key)
            )),
        ));
    }
    check_size(key, out);
}

/// The `t=y` finding's sentence.
const TESTING: &str = "the record has t=y (testing mode): receivers treat failed signatures as if the message were unsigned.";

fn push_damage(damage: &Damage, out: &mut Vec<Finding>) {
    for (level, text) in &damage.problems {
        out.push(finding("damaged", *level, format!("{text}."), None));
    }
}

fn short_p(p: &[u8]) -> String {
    STANDARD.encode(p).chars().take(12).collect()
}

/// `k=` against the private key's type; false when it is wrong.
fn key_type_ok(
    key: &KeyToCheck<'_>,
    rec: &KeyRecord,
    k_tag: Option<&str>,
    out: &mut Vec<Finding>,
) -> bool {
    let message = match (key.key_type, k_tag) {
        (KeyType::Ed25519, None) => "the record has no k= tag, so verifiers take it for an RSA key, but the private key is Ed25519: add k=ed25519.".to_string(),
        _ if rec.key_type != key.key_type => format!(
            "the record says k={} but the private key is {}.",
            rec.key_type_name(),
            match key.key_type {
                KeyType::Rsa => "RSA",
                KeyType::Ed25519 => "Ed25519",
            }
        ),
        _ => return true,
    };
    out.push(finding(
        "key-type",
        Level::Error,
        message,
        Some(record_to_publish(key)),
    ));
    false
}

fn check_size(key: &KeyToCheck<'_>, out: &mut Vec<Finding>) {
    if key.key_type != KeyType::Rsa {
        return;
    }
    size_findings(rsa_bits(key.public_key).unwrap_or(0), key.domain, out);
}

/// RFC 8301 §3.2 on an RSA key of `bits`: under 1024 an error, under 2048
/// a warning, each with the key rollover as the fix.
fn size_findings(bits: usize, domain: &str, out: &mut Vec<Finding>) {
    let fix = Some(format!(
        "generate a 2048-bit key under a new selector (authgate keygen --domain {domain} --selector NEW), publish it, switch the signing table to it, then revoke this one."
    ));
    if bits < 1024 {
        out.push(finding(
            "weak",
            Level::Error,
            format!("the RSA key has {bits} bits: verifiers following RFC 8301 fail keys under 1024 bits."),
            fix,
        ));
    } else if bits < 2048 {
        out.push(finding(
            "weak",
            Level::Warning,
            format!("the RSA key has {bits} bits: RFC 8301 recommends 2048; some verifiers already refuse smaller keys."),
            fix,
        ));
    }
}

/// Diagnoses the record at `selector._domainkey.domain` without the private
/// key (`authgate check`): missing, split, damaged, unusable, wrong `k=`,
/// revoked, `t=y`, RSA size. `expected`: the selector was named (given or
/// configured), so a missing or revoked record is worth a warning; for a
/// guessed selector a revoked record is only information.
pub fn check_published(
    domain: &str,
    selector: &str,
    answer: &Result<Vec<Vec<u8>>, DnsError>,
    expected: bool,
) -> Report {
    let mut out = Vec::new();
    let name = format!("{selector}._domainkey.{domain}.");
    let keygen = format!(
        "generate a key (authgate keygen --domain {domain} --selector {selector}) and publish the record it prints."
    );
    match answer {
        Err(DnsError::Temporary(why)) => out.push(finding(
            "unknown",
            Level::Error,
            format!("could not check: the DNS lookup failed ({why})."),
            Some("retry later; if it persists, check the resolver (--dns-server) and the domain's name servers.".into()),
        )),
        Err(DnsError::NxDomain | DnsError::NoData) => out.push(finding(
            "missing",
            Level::Error,
            "no TXT record is published at this name: receivers cannot verify signatures made with this selector.".into(),
            Some(keygen),
        )),
        Ok(records) => match records.as_slice() {
            [] => out.push(finding("missing", Level::Error, "no TXT record is published at this name.".into(), Some(keygen))),
            [one] => published_record(&name, domain, one, expected, &mut out),
            several => out.push(finding(
                "split",
                Level::Error,
                format!("{} separate TXT records are published at this name: verifiers see no usable key (a long value must be one record of several strings).", several.len()),
                Some(format!("delete them and publish one record, e.g. {}", crate::keygen::zone_line(&name, "v=DKIM1; k=rsa; p=..."))),
            )),
        },
    }
    Report { findings: out }
}

fn published_record(name: &str, domain: &str, raw: &[u8], expected: bool, out: &mut Vec<Finding>) {
    let damage = undo_damage(raw);
    let mut cleaned = String::from_utf8_lossy(&damage.cleaned).into_owned();
    let p = TagList::parse(cleaned.as_bytes())
        .ok()
        .and_then(|t| t.get("p").map(|p| p.replace(char::is_whitespace, "")));
    if let Some(p) = p {
        // The fix publishes p= without the spaces web panels add.
        cleaned = with_tag(&cleaned, "p", Some(&p));
    }
    let fix = |value: &str| Some(crate::keygen::zone_line(name, value));
    for (level, text) in &damage.problems {
        out.push(finding(
            "damaged",
            *level,
            format!("{text}."),
            fix(&cleaned),
        ));
    }
    let rec = match KeyRecord::parse(&damage.cleaned) {
        Err(KeyRecordError::Revoked) => {
            let level = if expected { Level::Warning } else { Level::Ok };
            out.push(finding("revoked", level, "the key is revoked (empty p=): signatures with this selector fail; fine once no mail signed with it is in transit.".into(), None));
            return;
        }
        Err(KeyRecordError::UnknownKeyType(k)) => {
            out.push(finding(
                "key-type",
                Level::Error,
                format!("the record names an unknown key type k={k}: use k=rsa or k=ed25519."),
                None,
            ));
            return;
        }
        Err(e) => {
            out.push(finding(
                "invalid",
                Level::Error,
                format!("the record is unusable: {e}."),
                None,
            ));
            return;
        }
        Ok(rec) => rec,
    };
    let k_given = TagList::parse(&damage.cleaned)
        .ok()
        .is_some_and(|t| t.get("k").is_some());
    let bits = rsa_bits(&rec.public_key);
    match (rec.key_type, bits) {
        (KeyType::Ed25519, _) if rec.public_key.len() != 32 => {
            out.push(finding(
                "key-type",
                Level::Error,
                "the record says k=ed25519 but p= is not a 32-byte Ed25519 key.".into(),
                None,
            ));
            return;
        }
        (KeyType::Rsa, None) if rec.public_key.len() == 32 => {
            let what = if k_given {
                "says k=rsa"
            } else {
                "has no k= tag (so verifiers take it for RSA)"
            };
            out.push(finding(
                "key-type",
                Level::Error,
                format!("the record {what} but p= is a 32-byte Ed25519 key: signatures fail."),
                fix(&with_tag(&cleaned, "k", Some("ed25519"))),
            ));
            return;
        }
        (KeyType::Rsa, None) => {
            out.push(finding(
                "invalid",
                Level::Error,
                "p= is not an RSA public key.".into(),
                None,
            ));
            return;
        }
        _ => {}
    }
    if rec.testing {
        out.push(finding(
            "testing",
            Level::Warning,
            TESTING.into(),
            fix(&with_tag(&cleaned, "t", None)),
        ));
    }
    if let Some(bits) = bits {
        size_findings(bits, domain, out);
    }
    if out.iter().all(|f| f.level == Level::Ok) {
        let key = bits.map_or_else(
            || "an Ed25519 key".to_owned(),
            |b| format!("a {b}-bit RSA key"),
        );
        out.push(finding(
            "ok",
            Level::Ok,
            format!("the record publishes {key}."),
            None,
        ));
    }
}

/// The tag list `value` with tag `name` set to `to` (appended when absent,
/// before `p=`), or dropped when `to` is `None`.
fn with_tag(value: &str, name: &str, to: Option<&str>) -> String {
    let mut tags: Vec<(String, String)> = value
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let at = tags.iter().position(|(n, _)| n.eq_ignore_ascii_case(name));
    match (at, to) {
        (Some(i), None) => {
            tags.remove(i);
        }
        (Some(i), Some(v)) => tags[i].1 = v.to_owned(),
        (None, Some(v)) => {
            let before_p = tags
                .iter()
                .position(|(n, _)| n == "p")
                .unwrap_or(tags.len());
            tags.insert(before_p, (name.to_owned(), v.to_owned()));
        }
        (None, None) => {}
    }
    tags.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The report for a key whose domain is `%` (the author's domain) when no
/// `--domain` was given.
pub fn author_domain_unchecked(name: &str, selector: &str) -> Report {
    Report::single(
        "unchecked",
        Level::Warning,
        format!(
            "key \"{name}\" (selector {selector}) signs for the author's domain (domain = \"%\"), so there is no single record to check."
        ),
        Some("run `authgate key check --domain DOMAIN` for each domain it signs for.".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Resolver;
    use crate::dns::zone::ZoneResolver;

    const ED_PUB: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    fn fixture_zone() -> ZoneResolver {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dkim/keycheck.zone");
        ZoneResolver::load(&[path]).expect("zone")
    }

    fn answer(name: &str) -> Result<Vec<Vec<u8>>, DnsError> {
        let z = fixture_zone();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt")
            .block_on(z.txt(&format!("{name}._domainkey.example.com")))
    }

    #[test]
    fn ed25519_findings_from_fixture_zone() {
        let public = STANDARD.decode(ED_PUB).expect("b64");
        for (selector, signing, status, level) in [
            ("good", true, "ok", Level::Ok),
            ("good", false, "ok", Level::Ok),
            ("absent", true, "missing", Level::Error),
            ("nodata", true, "missing", Level::Error),
            ("slow", true, "unknown", Level::Error),
            ("twice", true, "split", Level::Error),
            ("quoted", true, "damaged", Level::Error),
            ("backslash", true, "damaged", Level::Error),
            ("spaced", true, "damaged", Level::Warning),
            ("vlast", true, "damaged", Level::Error),
            ("revoked", true, "revoked", Level::Error),
            ("revoked", false, "revoked", Level::Ok),
            ("testing", true, "testing", Level::Warning),
            ("nok", true, "key-type", Level::Error),
            ("krsa", true, "key-type", Level::Error),
            ("other", true, "mismatch", Level::Error),
            ("garbage", true, "invalid", Level::Error),
        ] {
            let key = KeyToCheck {
                name: "k",
                domain: "example.com",
                selector,
                public_key: &public,
                key_type: KeyType::Ed25519,
                signing,
            };
            let report = check(&key, &answer(selector));
            assert_eq!(
                (report.status(), report.level()),
                (status, level),
                "{selector}: {report:?}"
            );
            if !signing {
                assert_eq!(report.findings[0].code, "unused", "{selector}");
            }
        }
    }

    #[test]
    fn damage_that_hides_the_right_key_says_so() {
        let public = STANDARD.decode(ED_PUB).expect("b64");
        let key = KeyToCheck {
            name: "k",
            domain: "example.com",
            selector: "quoted",
            public_key: &public,
            key_type: KeyType::Ed25519,
            signing: true,
        };
        let report = check(&key, &answer("quoted"));
        let f = &report.findings[0];
        assert!(f.message.contains("quote characters"), "{f:?}");
        assert!(f.message.contains("matches the private key"), "{f:?}");
        let fix = f.fix.as_deref().expect("fix");
        assert!(
            fix.contains("quoted._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p="),
            "{fix}"
        );
    }

    #[test]
    fn rsa_sizes_and_types() {
        let fixture = |name: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/dkim")
                .join(name);
            let bytes = std::fs::read(path).expect("key");
            crate::dkim::key::SigningKey::parse(&bytes)
                .expect("parse")
                .public_key_bytes()
        };
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 512).expect("rsa");
        let small = rsa::pkcs8::EncodePublicKey::to_public_key_der(&small.to_public_key())
            .expect("der")
            .as_bytes()
            .to_vec();
        for (der, status, level) in [
            (small, "weak", Level::Error),
            (fixture("rfc8463-rsa.pem"), "weak", Level::Warning),
            (fixture("rsa2048.pem"), "ok", Level::Ok),
        ] {
            let bits = rsa_bits(&der);
            let p = STANDARD.encode(&der);
            let k = KeyToCheck {
                name: "k",
                domain: "example.com",
                selector: "s",
                public_key: &der,
                key_type: KeyType::Rsa,
                signing: true,
            };
            // k= may be left out for RSA; k=ed25519 is wrong.
            for (record, want) in [
                (format!("v=DKIM1; p={p}"), (status, level)),
                (format!("v=DKIM1; k=rsa; p={p}"), (status, level)),
                (
                    format!("v=DKIM1; k=ed25519; p={p}"),
                    ("key-type", Level::Error),
                ),
            ] {
                let report = check(&k, &Ok(vec![record.into_bytes()]));
                assert_eq!((report.status(), report.level()), want, "{bits:?}");
            }
        }
    }

    #[test]
    fn author_domain_key_is_a_warning_naming_the_key() {
        let r = author_domain_unchecked("any", "s1");
        assert_eq!((r.status(), r.level()), ("unchecked", Level::Warning));
        assert!(r.findings[0].message.contains("\"any\""));
    }
}

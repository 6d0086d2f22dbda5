//! The DMARC aggregate report (RFC 9990): the XML document for one policy
//! domain and one period, its file name, Subject and the mail carrying it.
//!
//! Owns: grouping stored [`Row`]s into `<record>`s, the XML itself (namespace
//! `urn:ietf:params:xml:ns:dmarc-2.0`, element order and vocabulary of the
//! RFC 9990 schema, Appendix A), the Report-ID, the file name and Subject of
//! RFC 9990's "Email" section, gzip, and the report mail. Must not: read the clock,
//! the store or the configuration, sign, or send. The same rows give
//! byte-identical output, so a report sent again is the same report.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use sha2::{Digest, Sha256};

use super::row::{DkimRow, Row};

/// RFC 9990's XML namespace.
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:dmarc-2.0";

/// RFC 9990, "DKIM Signatures in Aggregate Reports": "no more than 100
/// signatures for a given row".
const MAX_DKIM_PER_RECORD: usize = 100;

/// Who sends the report (`report_metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    /// `org_name`: the Reporting Organization.
    pub org_name: String,
    /// The Mail Receiver's domain: `receiver` in the file name and
    /// `Submitter:` in the Subject (both a domain-name in RFC 9990's "Email" section).
    pub domain: String,
    /// `email`: where the Domain Owner can reach us.
    pub email: String,
    /// `extra_contact_info`.
    pub contact: Option<String>,
    /// `generator`, e.g. `authgate 0.1.0`.
    pub generator: String,
}

/// The reporting period, seconds since the epoch (UTC), as written in
/// `date_range` and the file name (RFC 9990's example uses the day's first
/// and last second: `begin` .. `begin + 86399`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// `begin`.
    pub begin: i64,
    /// `end`.
    pub end: i64,
}

/// One built report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// The DMARC Policy Domain it is about.
    pub domain: String,
    /// The period it covers.
    pub period: Period,
    /// `report_id`, also in the Subject and the file name.
    pub report_id: String,
    /// The XML document.
    pub xml: String,
    /// `receiver!policy-domain!begin!end!unique-id.xml.gz` (no `/`).
    pub file_name: String,
    /// `Report Domain: ... Submitter: ... Report-ID: <...>`.
    pub subject: String,
    /// Messages listed (the sum of the `count`s).
    pub messages: u64,
    /// `<record>` elements.
    pub records: usize,
}

/// Why no report could be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AggregateError {
    /// RFC 9990 requires at least one `<record>`, and `policy_published`
    /// comes from the rows: no row of the domain with a client address.
    #[error("no message with a known client address to report for {0}")]
    NoRecords(String),
    /// The XML writer failed (it writes into memory, so it should not).
    #[error("writing the report XML: {0}")]
    Xml(String),
}

/// A Report-ID that is the same for the same (reporter, policy domain,
/// period), so a report sent again keeps its id and file name: the period's
/// start and 16 hex digits of SHA-256 over the three. Letters and digits
/// only, so it is both a Report-ID (`dot-atom-text`) and the file name's
/// `unique-id` (`1*(ALPHA / DIGIT)`), which RFC 9990 wants identical ("Unique Identifiers").
pub fn report_id(org_name: &str, domain: &str, begin: i64) -> String {
    let mut h = Sha256::new();
    h.update(org_name.as_bytes());
    h.update(b"|");
    h.update(domain.to_ascii_lowercase().as_bytes());
    h.update(b"|");
    h.update(begin.to_string().as_bytes());
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{begin}{hex}")
}

/// Build the report for `domain` over `period` from its rows. Rows of
/// another policy domain are ignored. `dropped` is how many messages of the
/// period were not recorded and why (full queue, store errors): the report
/// says so in `<error>` rather than pretending to be complete, and so it does
/// for rows without a client address, which cannot be a `<record>`.
pub fn build(
    reporter: &Reporter,
    domain: &str,
    period: Period,
    rows: &[Row],
    dropped: (u64, &[String]),
    report_id: &str,
) -> Result<Aggregate, AggregateError> {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.policy_domain.eq_ignore_ascii_case(domain))
        .collect();
    let no_ip = rows.iter().filter(|r| r.source_ip.is_empty()).count();
    let groups = group(&rows);
    // The published policy as last seen (RFC 9990, "Aggregate Reports": "note only the final
    // configuration observed during the period"); max_by_key keeps the last
    // of equal times.
    let latest = rows
        .iter()
        .filter(|r| !r.source_ip.is_empty())
        .max_by_key(|r| r.time)
        .ok_or_else(|| AggregateError::NoRecords(domain.to_string()))?;
    let error = error_text(dropped, no_ip);
    let doc = Doc {
        reporter,
        domain,
        period,
        report_id,
        error: error.as_deref(),
        policy: latest,
        groups: &groups,
    };
    let xml = doc
        .write()
        .map_err(|e| AggregateError::Xml(e.to_string()))?;
    Ok(Aggregate {
        domain: domain.to_string(),
        period,
        report_id: report_id.to_string(),
        xml,
        file_name: file_name(&reporter.domain, domain, period, report_id),
        subject: format!(
            "Report Domain: {domain} Submitter: {} Report-ID: <{report_id}>",
            reporter.domain
        ),
        messages: groups.iter().map(|(_, n)| n).sum(),
        records: groups.len(),
    })
}

/// The report gzipped (RFC 1952; no file name, mtime 0, so deterministic).
pub fn gzip(xml: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail; if it did, the empty result is no
    // report that anyone could mistake for one.
    enc.write_all(xml.as_bytes())
        .and_then(|()| enc.finish())
        .unwrap_or_default()
}

/// The report mail: From, To, Subject, and Date and Message-ID from the
/// arguments (`<report_id@message_id_host>`, the same when sent again, as
/// RFC 9990 allows), a text/plain part saying what it is, and the
/// `.xml.gz` as `application/gzip`. CRLF line ends; to be DKIM-signed by the
/// caller.
pub fn compose(
    agg: &Aggregate,
    from: &str,
    to: &[String],
    date: i64,
    message_id_host: &str,
) -> Vec<u8> {
    let text = format!(
        "This is a DMARC aggregate report (RFC 9990) for {}:\r\n\
         {} message(s) in {} record(s), from {} to {}\r\n\
         (seconds since 1970-01-01 UTC), in the attached .xml.gz file.\r\n",
        agg.domain, agg.messages, agg.records, agg.period.begin, agg.period.end
    );
    let body = MimePart::new(
        ContentType::new("multipart/mixed").attribute("boundary", boundary(&agg.report_id)),
        vec![
            MimePart::new("text/plain", text),
            attachment(&agg.file_name, gzip(&agg.xml)),
        ],
    );
    let to: Vec<Address<'_>> = to.iter().map(|a| Address::from(a.as_str())).collect();
    let mut out = Vec::new();
    MessageBuilder::new()
        .from(from)
        .to(Address::new_list(to))
        // Raw: mail-builder would RFC 2047-encode it, and RFC 9990's
        // dmarc-subject is plain text that processors match literally.
        .header("Subject", Raw::new(agg.subject.as_str()))
        .date(Date::new(date))
        .message_id(MessageId::new(format!(
            "{}@{message_id_host}",
            agg.report_id
        )))
        .body(body)
        .serialize(&mut out);
    out
}

/// The `.xml.gz` part. The parameters are written as plain quoted strings:
/// mail-builder would split a name this long into RFC 2231 continuations
/// (`filename*0=`), which some report processors do not join.
fn attachment(name: &str, gz: Vec<u8>) -> MimePart<'static> {
    MimePart {
        headers: vec![
            (
                "Content-Type".into(),
                Raw::new(format!("application/gzip; name=\"{name}\"")).into(),
            ),
            (
                "Content-Disposition".into(),
                Raw::new(format!("attachment; filename=\"{name}\"")).into(),
            ),
        ],
        contents: BodyPart::Binary(Cow::Owned(gz)),
    }
}

/// A MIME boundary that cannot occur in the parts: the text part has no
/// `=_` and the attachment is base64.
fn boundary(report_id: &str) -> String {
    let id: String = report_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("=_authgate_{id}")
}

/// RFC 9990 file name ("Email" section); characters that are not in a domain name become
/// `_`, and the unique-id is left out unless it is letters and digits.
fn file_name(receiver: &str, domain: &str, period: Period, report_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '_',
            })
            .collect()
    };
    let mut name = format!(
        "{}!{}!{}!{}",
        clean(receiver),
        clean(domain),
        period.begin,
        period.end
    );
    if !report_id.is_empty() && report_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        name.push('!');
        name.push_str(report_id);
    }
    name.push_str(".xml.gz");
    name
}

fn error_text(dropped: (u64, &[String]), no_ip: usize) -> Option<String> {
    let mut parts = Vec::new();
    if dropped.0 > 0 {
        let why = if dropped.1.is_empty() {
            "reason unknown".to_string()
        } else {
            dropped.1.join("; ")
        };
        parts.push(format!(
            "{} message(s) of this period were not recorded ({why}); this report is incomplete.",
            dropped.0
        ));
    }
    if no_ip > 0 {
        parts.push(format!(
            "{no_ip} message(s) with no known client address are not listed."
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// What makes two messages the same `<record>` (RFC 9990: "one record per
/// (IP, result, authentication identifiers) tuple").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a> {
    source_ip: &'a str,
    disposition: &'static str,
    dkim_aligned: bool,
    spf_aligned: bool,
    /// (type, comment) when the policy was overridden.
    reason: Option<(&'a str, &'a str)>,
    header_from: &'a str,
    env_from: &'a str,
    env_to: &'a str,
    /// (domain, selector, result, human), in report order.
    dkim: Vec<(&'a str, &'a str, &'static str, &'a str)>,
    /// (domain, scope, result) when SPF was checked.
    spf: Option<(&'a str, &'a str, &'static str)>,
}

/// The records with their counts: the biggest first, then by key, so the
/// order depends on nothing but the rows.
fn group<'a>(rows: &[&'a Row]) -> Vec<(Key<'a>, u64)> {
    let mut counts: BTreeMap<Key<'a>, u64> = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.source_ip.is_empty()) {
        *counts.entry(key(row)).or_default() += 1;
    }
    let mut groups: Vec<(Key<'a>, u64)> = counts.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    groups
}

fn key(row: &Row) -> Key<'_> {
    let reason = (!row.override_type.is_empty())
        .then_some((row.override_type.as_str(), row.override_comment.as_str()));
    let mut dkim: Vec<&DkimRow> = row.dkim.iter().collect();
    // RFC 9990's preference ("DKIM Signatures in Aggregate Reports"): aligned passes (strict, then relaxed), other
    // passes, then the rest; header order within each.
    dkim.sort_by_key(|d| dkim_rank(d, &row.header_from));
    dkim.truncate(MAX_DKIM_PER_RECORD);
    let spf = (!row.spf_result.is_empty()).then_some((
        row.spf_domain.as_str(),
        row.spf_scope.as_str(),
        spf_result(&row.spf_result),
    ));
    Key {
        source_ip: &row.source_ip,
        disposition: disposition(row),
        dkim_aligned: row.dkim_aligned,
        spf_aligned: row.spf_aligned,
        reason,
        header_from: &row.header_from,
        env_from: &row.env_from,
        env_to: &row.env_to,
        dkim: dkim
            .into_iter()
            .map(|d| {
                (
                    d.domain.as_str(),
                    d.selector.as_str(),
                    dkim_result(&d.result),
                    d.human.as_str(),
                )
            })
            .collect(),
        spf,
    }
}

/// 0: pass, same domain as From; 1: pass, parent or child of it (relaxed
/// alignment without the PSL, good enough for ordering); 2: other pass;
/// 3: not a pass.
fn dkim_rank(d: &DkimRow, header_from: &str) -> u8 {
    if d.result != "pass" {
        return 3;
    }
    let (a, b) = (
        d.domain.to_ascii_lowercase(),
        header_from.to_ascii_lowercase(),
    );
    if a == b {
        0
    } else if a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")) {
        1
    } else {
        2
    }
}

/// `ActionDispositionType`: what we did, or `pass` when DMARC passed and the
/// policy that applied asked for enforcement (so "none" would read as
/// "policy not applied").
fn disposition(row: &Row) -> &'static str {
    match row.disposition.as_str() {
        "quarantine" => "quarantine",
        "reject" => "reject",
        _ if row.dmarc == "pass" && enforcing(row) => "pass",
        _ => "none",
    }
}

fn enforcing(row: &Row) -> bool {
    let policy = if row.header_from.eq_ignore_ascii_case(&row.policy_domain) || row.sp.is_empty() {
        &row.p
    } else {
        &row.sp
    };
    matches!(policy.as_str(), "quarantine" | "reject")
}

/// The stored words are RFC 8601's already; anything else (a damaged
/// store) is reported as `permerror` so the document stays valid.
fn dkim_result(s: &str) -> &'static str {
    word(
        s,
        &[
            "none",
            "pass",
            "fail",
            "policy",
            "neutral",
            "temperror",
            "permerror",
        ],
    )
}

fn spf_result(s: &str) -> &'static str {
    word(
        s,
        &[
            "none",
            "pass",
            "fail",
            "softfail",
            "policy",
            "neutral",
            "temperror",
            "permerror",
        ],
    )
}

/// `s` as one of `words` (any case), else `permerror`.
fn word(s: &str, words: &[&'static str]) -> &'static str {
    words
        .iter()
        .copied()
        .find(|w| w.eq_ignore_ascii_case(s))
        .unwrap_or("permerror")
}

/// Everything the document is written from.
struct Doc<'a> {
    reporter: &'a Reporter,
    domain: &'a str,
    period: Period,
    report_id: &'a str,
    error: Option<&'a str>,
    policy: &'a Row,
    groups: &'a [(Key<'a>, u64)],
}

type W = Writer<Vec<u8>>;
type Io = std::io::Result<()>;

impl Doc<'_> {
    fn write(&self) -> Result<String, std::io::Error> {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("feedback")
            .with_attribute(("xmlns", NAMESPACE))
            .write_inner_content(|w| {
                leaf(w, "version", "1.0")?;
                self.metadata(w)?;
                self.policy_published(w)?;
                for (key, count) in self.groups {
                    record(w, key, *count)?;
                }
                Ok(())
            })?;
        let mut xml = String::from_utf8(w.into_inner())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        xml.push('\n');
        Ok(xml)
    }

    fn metadata(&self, w: &mut W) -> Io {
        let r = self.reporter;
        w.create_element("report_metadata")
            .write_inner_content(|w| {
                leaf(w, "org_name", &r.org_name)?;
                leaf(w, "email", &r.email)?;
                if let Some(c) = r.contact.as_deref().filter(|c| !c.is_empty()) {
                    leaf(w, "extra_contact_info", c)?;
                }
                leaf(w, "report_id", self.report_id)?;
                w.create_element("date_range").write_inner_content(|w| {
                    leaf(w, "begin", &self.period.begin.to_string())?;
                    leaf(w, "end", &self.period.end.to_string())
                })?;
                if let Some(e) = self.error {
                    leaf(w, "error", e)?;
                }
                if !r.generator.is_empty() {
                    leaf(w, "generator", &r.generator)?;
                }
                Ok(())
            })?;
        Ok(())
    }

    fn policy_published(&self, w: &mut W) -> Io {
        let p = self.policy;
        let policy = |s: &str| -> Option<&'static str> {
            ["none", "quarantine", "reject"]
                .into_iter()
                .find(|w| w.eq_ignore_ascii_case(s))
        };
        let align = |s: &str| -> Option<&'static str> {
            ["r", "s"].into_iter().find(|w| w.eq_ignore_ascii_case(s))
        };
        w.create_element("policy_published")
            .write_inner_content(|w| {
                leaf(w, "domain", self.domain)?;
                if let Some(d) = ["psl", "treewalk"].into_iter().find(|d| *d == p.discovery) {
                    leaf(w, "discovery_method", d)?;
                }
                // RFC 9989: a record without p= (but with rua=) counts as p=none.
                leaf(w, "p", policy(&p.p).unwrap_or("none"))?;
                for (name, value) in [("sp", policy(&p.sp)), ("np", policy(&p.np))] {
                    if let Some(v) = value {
                        leaf(w, name, v)?;
                    }
                }
                for (name, value) in [("adkim", align(&p.adkim)), ("aspf", align(&p.aspf))] {
                    if let Some(v) = value {
                        leaf(w, name, v)?;
                    }
                }
                leaf(w, "testing", if p.testing { "y" } else { "n" })
            })?;
        Ok(())
    }
}

fn record(w: &mut W, key: &Key<'_>, count: u64) -> Io {
    w.create_element("record").write_inner_content(|w| {
        w.create_element("row").write_inner_content(|w| {
            leaf(w, "source_ip", key.source_ip)?;
            leaf(w, "count", &count.to_string())?;
            policy_evaluated(w, key)
        })?;
        w.create_element("identifiers").write_inner_content(|w| {
            leaf(w, "header_from", key.header_from)?;
            // Present but empty for the null reverse-path (RFC 9990).
            leaf(w, "envelope_from", key.env_from)?;
            if !key.env_to.is_empty() {
                leaf(w, "envelope_to", key.env_to)?;
            }
            Ok(())
        })?;
        auth_results(w, key)
    })?;
    Ok(())
}

fn policy_evaluated(w: &mut W, key: &Key<'_>) -> Io {
    let word = |b: bool| if b { "pass" } else { "fail" };
    w.create_element("policy_evaluated")
        .write_inner_content(|w| {
            leaf(w, "disposition", key.disposition)?;
            leaf(w, "dkim", word(key.dkim_aligned))?;
            leaf(w, "spf", word(key.spf_aligned))?;
            if let Some((kind, comment)) = key.reason {
                w.create_element("reason").write_inner_content(|w| {
                    leaf(w, "type", override_type(kind))?;
                    if !comment.is_empty() {
                        leaf(w, "comment", comment)?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
    Ok(())
}

/// `PolicyOverrideType`; an unknown word (a damaged store) is `other`.
fn override_type(kind: &str) -> &'static str {
    [
        "local_policy",
        "mailing_list",
        "other",
        "policy_test_mode",
        "trusted_forwarder",
    ]
    .into_iter()
    .find(|w| *w == kind)
    .unwrap_or("other")
}

fn auth_results(w: &mut W, key: &Key<'_>) -> Io {
    w.create_element("auth_results").write_inner_content(|w| {
        for (domain, selector, result, human) in &key.dkim {
            w.create_element("dkim").write_inner_content(|w| {
                leaf(w, "domain", domain)?;
                leaf(w, "selector", selector)?;
                leaf(w, "result", result)?;
                if !human.is_empty() {
                    leaf(w, "human_result", human)?;
                }
                Ok(())
            })?;
        }
        if let Some((domain, scope, result)) = key.spf {
            w.create_element("spf").write_inner_content(|w| {
                leaf(w, "domain", domain)?;
                // "mfrom" is the only scope RFC 9990 allows; a HELO check
                // (null sender) is listed without one.
                if scope == "mfrom" {
                    leaf(w, "scope", "mfrom")?;
                }
                leaf(w, "result", result)
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

/// `<name>text</name>`, escaped, with the characters XML 1.0 cannot carry
/// at all (controls other than tab and line ends, U+FFFE/U+FFFF) replaced.
fn leaf(w: &mut W, name: &str, text: &str) -> Io {
    let text = xml_chars(text);
    w.write_event(Event::Start(BytesStart::new(name)))?;
    w.write_event(Event::Text(BytesText::new(&text)))?;
    w.write_event(Event::End(BytesStart::new(name).to_end()))
}

fn xml_chars(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    };
    if s.contains(bad) {
        Cow::Owned(
            s.chars()
                .map(|c| if bad(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> Reporter {
        Reporter {
            org_name: "Example Receiver".into(),
            domain: "mx.receiver.example".into(),
            email: "dmarc-reports@receiver.example".into(),
            contact: None,
            generator: "authgate 0.1.0".into(),
        }
    }

    fn row(ip: &str, time: i64) -> Row {
        Row {
            time,
            source_ip: ip.into(),
            env_from: "example.com".into(),
            env_to: "receiver.example".into(),
            header_from: "example.com".into(),
            policy_domain: "example.com".into(),
            p: "reject".into(),
            adkim: "r".into(),
            aspf: "r".into(),
            discovery: "treewalk".into(),
            dmarc: "pass".into(),
            dkim_aligned: true,
            spf_aligned: true,
            disposition: "none".into(),
            spf_domain: "example.com".into(),
            spf_scope: "mfrom".into(),
            spf_result: "pass".into(),
            dkim: vec![DkimRow {
                domain: "example.com".into(),
                selector: "s1".into(),
                result: "pass".into(),
                human: String::new(),
            }],
            ..Row::default()
        }
    }

    const DAY: Period = Period {
        begin: 1_796_601_600,
        end: 1_796_601_600 + 86_399,
    };

    fn build_rows(rows: &[Row]) -> Aggregate {
        let id = report_id("Example Receiver", "example.com", DAY.begin);
        build(&reporter(), "example.com", DAY, rows, (0, &[]), &id).expect("report")
    }

    #[test]
    fn report_id_is_stable_and_alphanumeric() {
        let a = report_id("Org", "Example.com", 100);
        assert_eq!(a, report_id("Org", "example.com", 100));
        assert_ne!(a, report_id("Org", "example.com", 86_500));
        assert_ne!(a, report_id("Org", "example.net", 100));
        assert_ne!(a, report_id("Other", "example.com", 100));
        assert!(a.starts_with("100") && a.len() == 19, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn same_rows_group_into_one_record() {
        let agg = build_rows(&[
            row("192.0.2.1", 1),
            row("192.0.2.1", 2),
            row("192.0.2.2", 3),
        ]);
        assert_eq!((agg.messages, agg.records), (3, 2));
        assert!(agg.xml.contains("<count>2</count>"), "{}", agg.xml);
        // The biggest record first.
        let first = agg.xml.find("192.0.2.1").expect("ip 1");
        let second = agg.xml.find("192.0.2.2").expect("ip 2");
        assert!(first < second);
    }

    #[test]
    fn output_is_deterministic_whatever_the_row_order() {
        let rows = [
            row("192.0.2.1", 1),
            row("2001:db8::1", 2),
            row("192.0.2.1", 3),
        ];
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(build_rows(&rows), build_rows(&reversed));
        assert_eq!(
            gzip(&build_rows(&rows).xml),
            gzip(&build_rows(&reversed).xml)
        );
    }

    #[test]
    fn file_name_and_subject_follow_rfc_9990() {
        let agg = build_rows(&[row("192.0.2.1", 1)]);
        assert_eq!(
            agg.file_name,
            format!(
                "mx.receiver.example!example.com!1796601600!1796687999!{}.xml.gz",
                agg.report_id
            )
        );
        assert_eq!(
            agg.subject,
            format!(
                "Report Domain: example.com Submitter: mx.receiver.example Report-ID: <{}>",
                agg.report_id
            )
        );
        assert_eq!(
            file_name("a/b", "x!y", DAY, "not alnum!"),
            "a_b!x_y!1796601600!1796687999.xml.gz"
        );
    }

    #[test]
    fn no_rows_is_an_error_not_an_invalid_report() {
        let err = build(&reporter(), "example.com", DAY, &[], (3, &[]), "x");
        assert_eq!(err, Err(AggregateError::NoRecords("example.com".into())));
        let other = Row {
            policy_domain: "example.net".into(),
            ..row("192.0.2.1", 1)
        };
        assert!(build(&reporter(), "example.com", DAY, &[other], (0, &[]), "x").is_err());
    }

    #[test]
    fn dropped_rows_and_rows_without_ip_are_said() {
        let reasons = ["queue full".to_string(), "store down".to_string()];
        let rows = [row("192.0.2.1", 1), row("", 2)];
        let agg =
            build(&reporter(), "example.com", DAY, &rows, (5, &reasons), "id1").expect("report");
        assert!(agg.xml.contains(
            "<error>5 message(s) of this period were not recorded (queue full; store down); \
             this report is incomplete. 1 message(s) with no known client address are not listed.</error>"
        ), "{}", agg.xml);
        assert_eq!(agg.messages, 1);
    }

    #[test]
    fn latest_row_gives_the_published_policy() {
        let old = Row {
            p: "none".into(),
            ..row("192.0.2.1", 1)
        };
        let new = Row {
            p: "quarantine".into(),
            sp: "reject".into(),
            testing: true,
            ..row("192.0.2.2", 9)
        };
        let agg = build_rows(&[new, old]);
        assert!(agg.xml.contains("<p>quarantine</p>"), "{}", agg.xml);
        assert!(agg.xml.contains("<sp>reject</sp>"));
        assert!(agg.xml.contains("<testing>y</testing>"));
    }

    #[test]
    fn disposition_words() {
        for (dmarc, applied, p, want) in [
            ("pass", "none", "reject", "pass"),
            ("pass", "none", "none", "none"),
            ("fail", "none", "reject", "none"),
            ("fail", "quarantine", "reject", "quarantine"),
            ("fail", "reject", "reject", "reject"),
        ] {
            let r = Row {
                dmarc: dmarc.into(),
                disposition: applied.into(),
                p: p.into(),
                ..row("192.0.2.1", 1)
            };
            assert_eq!(disposition(&r), want, "{dmarc} {applied} {p}");
        }
    }

    #[test]
    fn dkim_results_are_ordered_by_preference() {
        let d = |domain: &str, result: &str| DkimRow {
            domain: domain.into(),
            selector: "s".into(),
            result: result.into(),
            human: String::new(),
        };
        let r = Row {
            header_from: "mail.example.com".into(),
            dkim: vec![
                d("bad.example", "fail"),
                d("esp.example", "pass"),
                d("example.com", "pass"),
                d("mail.example.com", "pass"),
            ],
            ..row("192.0.2.1", 1)
        };
        let order: Vec<&str> = key(&r).dkim.iter().map(|t| t.0).collect();
        assert_eq!(
            order,
            [
                "mail.example.com",
                "example.com",
                "esp.example",
                "bad.example"
            ]
        );
    }

    #[test]
    fn text_is_escaped_and_controls_replaced() {
        let r = Row {
            dkim: vec![DkimRow {
                domain: "example.com".into(),
                selector: "s<1>".into(),
                result: "fail".into(),
                human: "body hash \"mismatch\" & <more>\u{1}".into(),
            }],
            ..row("192.0.2.1", 1)
        };
        let agg = build_rows(&[r]);
        assert!(
            agg.xml.contains("<selector>s&lt;1&gt;</selector>"),
            "{}",
            agg.xml
        );
        assert!(
            agg.xml
                .contains("&amp; &lt;more&gt;\u{FFFD}</human_result>")
        );
    }

    #[test]
    fn helo_scope_is_left_out() {
        let r = Row {
            env_from: String::new(),
            spf_domain: "mx.example.com".into(),
            spf_scope: "helo".into(),
            ..row("192.0.2.1", 1)
        };
        let agg = build_rows(&[r]);
        assert!(
            agg.xml.contains("<envelope_from></envelope_from>"),
            "{}",
            agg.xml
        );
        assert!(!agg.xml.contains("<scope>"));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let xml = build_rows(&[row("192.0.2.1", 1)]).xml;
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gzip(&xml)[..])
            .read_to_string(&mut out)
            .expect("gunzip");
        assert_eq!(out, xml);
    }

    #[test]
    fn compose_is_deterministic_with_the_given_headers() {
        let agg = build_rows(&[row("192.0.2.1", 1)]);
        let to = vec!["rua@example.com".to_string(), "b@example.org".to_string()];
        let mail = compose(
            &agg,
            "dmarc@receiver.example",
            &to,
            1_796_688_000,
            "receiver.example",
        );
        assert_eq!(
            mail,
            compose(
                &agg,
                "dmarc@receiver.example",
                &to,
                1_796_688_000,
                "receiver.example"
            )
        );
        let text = String::from_utf8(mail).expect("ascii");
        println!("{text}");
        assert!(
            text.contains("From: <dmarc@receiver.example>\r\n"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "Message-ID: <{}@receiver.example>\r\n",
            agg.report_id
        )));
        assert!(text.contains("Date: Tue, 8 Dec 2026 00:00:00 +0000\r\n"));
        assert!(text.contains("Content-Type: application/gzip"));
        assert!(text.contains(&format!("filename=\"{}\"", agg.file_name)));
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
        assert!(text.contains(&format!("Subject: {}", &agg.subject[..40])));
        assert!(!text.contains("quoted-printable"));
    }
}

//! DMARC aggregate report XML as others send it (RFC 7489 Appendix C,
//! RFC 9990 §3 and its schema `urn:ietf:params:xml:ns:dmarc-2.0`), read
//! leniently into a typed [`ReceivedReport`].
//!
//! ```text
//! feedback = [version] report_metadata policy_published 1*record
//! report_metadata = org_name email [extra_contact_info] report_id
//!                   date_range (begin end) *error
//! record = row (source_ip count policy_evaluated) identifiers auth_results
//! ```
//!
//! Lenient where reporters differ: any namespace or prefix (none, RFC 9990's,
//! Outlook.com's `http://dmarc.org/dmarc-xml/0.1`), a byte-order mark, a
//! declared Latin-1 encoding, whitespace around values, upper-case values,
//! missing optional elements, unknown extra elements. Strict where the
//! numbers come from: the reporter, report id, date range, policy domain and
//! every record's `<count>` must be there and make sense.
//!
//! Owns: bytes to [`ReceivedReport`]. Must not: read files, decompress, or
//! touch the store (that is `ingest` and `received`); it is pure.

use serde::{Deserialize, Serialize};

/// Elements nested deeper than this are refused (a report is 5 deep).
pub const MAX_DEPTH: usize = 64;

/// Why some XML is not a usable aggregate report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    /// The XML itself is broken.
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed, but the root is not `<feedback>`.
    #[error("not a DMARC aggregate report (root element <{0}>)")]
    NotFeedback(String),
    /// A required element is missing or empty.
    #[error("missing <{0}>")]
    Missing(&'static str),
    /// A number that is not one.
    #[error("<{element}> is not a number: {value:?}")]
    BadNumber {
        /// The element.
        element: &'static str,
        /// What it held.
        value: String,
    },
}

/// One aggregate report received from a reporter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceivedReport {
    /// `<version>` (empty for RFC 7489-era reports without one).
    pub version: String,
    /// `<report_metadata><org_name>`: who sent it.
    pub reporter: String,
    /// `<report_metadata><email>`.
    pub email: String,
    /// `<report_metadata><report_id>`, unique per reporter.
    pub report_id: String,
    /// `<date_range><begin>`, a Unix time.
    pub begin: i64,
    /// `<date_range><end>`, a Unix time.
    pub end: i64,
    /// `<report_metadata><error>` lines.
    pub errors: Vec<String>,
    /// `<policy_published>`.
    pub policy: PolicyPublished,
    /// The `<record>`s.
    pub records: Vec<ReceivedRecord>,
}

/// `<policy_published>`: the DMARC record the reporter found. Values are
/// as sent (lower-cased); absent ones are empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyPublished {
    /// `<domain>`: the domain the report is about.
    pub domain: String,
    /// `<adkim>` (`r`/`s`).
    pub adkim: String,
    /// `<aspf>` (`r`/`s`).
    pub aspf: String,
    /// `<p>`.
    pub p: String,
    /// `<sp>`.
    pub sp: String,
    /// `<np>` (RFC 9990).
    pub np: String,
    /// `<pct>` (RFC 7489).
    pub pct: String,
    /// `<fo>`.
    pub fo: String,
    /// `<testing>` (RFC 9990, `y`/`n`).
    pub testing: String,
    /// `<discovery_method>` (RFC 9990, `psl`/`treewalk`).
    pub discovery: String,
}

/// One `<record>`: messages from one source with one set of results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceivedRecord {
    /// `<row><source_ip>` (normalised when it parses as an address).
    pub source_ip: String,
    /// `<row><count>`: how many messages.
    pub count: u64,
    /// `<policy_evaluated><disposition>` (`none`/`quarantine`/`reject`).
    pub disposition: String,
    /// `<policy_evaluated><dkim>`: the DMARC-aligned DKIM result.
    pub dkim: String,
    /// `<policy_evaluated><spf>`: the DMARC-aligned SPF result.
    pub spf: String,
    /// `<identifiers><header_from>`.
    pub header_from: String,
    /// `<identifiers><envelope_from>`.
    pub env_from: String,
    /// `<identifiers><envelope_to>`.
    pub env_to: String,
    /// `<auth_results>` and the override reasons.
    pub auth: AuthResults,
}

impl ReceivedRecord {
    /// DMARC passed for these messages: aligned DKIM or aligned SPF passed.
    pub fn dmarc_pass(&self) -> bool {
        self.dkim == "pass" || self.spf == "pass"
    }
}

/// `<auth_results>`: the raw results (not necessarily aligned).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuthResults {
    /// `<dkim>` entries.
    #[serde(default)]
    pub dkim: Vec<DkimAuth>,
    /// `<spf>` entries.
    #[serde(default)]
    pub spf: Vec<SpfAuth>,
    /// `<policy_evaluated><reason><type>` values (`forwarded`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// One `<auth_results><dkim>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DkimAuth {
    /// `<domain>` (`d=`).
    pub domain: String,
    /// `<selector>` (`s=`).
    #[serde(default)]
    pub selector: String,
    /// `<result>`.
    pub result: String,
}

/// One `<auth_results><spf>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpfAuth {
    /// `<domain>`.
    pub domain: String,
    /// `<scope>` (`mfrom`/`helo`).
    #[serde(default)]
    pub scope: String,
    /// `<result>`.
    pub result: String,
}

impl ReceivedReport {
    /// Reads one report (RFC 9990 §3 / RFC 7489 Appendix C).
    pub fn parse(bytes: &[u8]) -> Result<ReceivedReport, FeedbackError> {
        let text = decode(bytes);
        let root = tree(&text)?;
        if root.name != "feedback" {
            return Err(FeedbackError::NotFeedback(root.name));
        }
        from_tree(&root)
    }

    /// The sum of the records' `<count>`.
    pub fn messages(&self) -> u64 {
        self.records
            .iter()
            .fold(0u64, |n, r| n.saturating_add(r.count))
    }
}

fn from_tree(root: &Node) -> Result<ReceivedReport, FeedbackError> {
    let meta = root.child("report_metadata");
    let range = meta.and_then(|m| m.child("date_range"));
    let policy = policy(root.child("policy_published"));
    let report = ReceivedReport {
        version: root.text_of("version"),
        reporter: required(meta, "org_name")?,
        email: meta.map(|m| m.text_of("email")).unwrap_or_default(),
        report_id: required(meta, "report_id")?,
        begin: number(&required(range, "begin")?, "begin")?,
        end: number(&required(range, "end")?, "end")?,
        errors: meta
            .map(|m| m.all("error").map(|e| e.value()).collect())
            .unwrap_or_default(),
        records: root.all("record").map(record).collect::<Result<_, _>>()?,
        policy,
    };
    if report.policy.domain.is_empty() {
        return Err(FeedbackError::Missing("policy_published><domain"));
    }
    Ok(report)
}

fn required(parent: Option<&Node>, name: &'static str) -> Result<String, FeedbackError> {
    parent
        .map(|p| p.text_of(name))
        .filter(|v| !v.is_empty())
        .ok_or(FeedbackError::Missing(name))
}

/// A Unix time or count; a few reporters write `1700000000.0`.
fn number(value: &str, element: &'static str) -> Result<i64, FeedbackError> {
    let whole = value.strip_suffix(".0").unwrap_or(value);
    whole
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| FeedbackError::BadNumber {
            element,
            value: value.to_string(),
        })
}

fn policy(node: Option<&Node>) -> PolicyPublished {
    let Some(n) = node else {
        return PolicyPublished::default();
    };
    let lower = |name| n.text_of(name).to_ascii_lowercase();
    PolicyPublished {
        domain: domain(&n.text_of("domain")),
        adkim: lower("adkim"),
        aspf: lower("aspf"),
        p: lower("p"),
        sp: lower("sp"),
        np: lower("np"),
        pct: n.text_of("pct"),
        fo: lower("fo"),
        testing: lower("testing"),
        discovery: lower("discovery_method"),
    }
}

fn record(node: &Node) -> Result<ReceivedRecord, FeedbackError> {
    let row = node.child("row").ok_or(FeedbackError::Missing("row"))?;
    let evaluated = row.child("policy_evaluated");
    let ids = node.child("identifiers");
    let eval = |name| {
        evaluated
            .map(|e| e.text_of(name).to_ascii_lowercase())
            .unwrap_or_default()
    };
    let id = |name| ids.map(|i| domain(&i.text_of(name))).unwrap_or_default();
    let count = number(&required(Some(row), "count")?, "count")?;
    Ok(ReceivedRecord {
        source_ip: source_ip(&required(Some(row), "source_ip")?),
        count: u64::try_from(count).unwrap_or(0),
        disposition: eval("disposition"),
        dkim: eval("dkim"),
        spf: eval("spf"),
        header_from: id("header_from"),
        env_from: id("envelope_from"),
        env_to: id("envelope_to"),
        auth: auth(node.child("auth_results"), evaluated),
    })
}

fn auth(node: Option<&Node>, evaluated: Option<&Node>) -> AuthResults {
    let lower = |n: &Node, name| n.text_of(name).to_ascii_lowercase();
    let reasons = evaluated
        .map(|e| e.all("reason").map(|r| lower(r, "type")).collect())
        .unwrap_or_default();
    let Some(a) = node else {
        return AuthResults {
            reasons,
            ..AuthResults::default()
        };
    };
    AuthResults {
        dkim: a
            .all("dkim")
            .map(|d| DkimAuth {
                domain: domain(&d.text_of("domain")),
                selector: d.text_of("selector"),
                result: lower(d, "result"),
            })
            .collect(),
        spf: a
            .all("spf")
            .map(|s| SpfAuth {
                domain: domain(&s.text_of("domain")),
                scope: lower(s, "scope"),
                result: lower(s, "result"),
            })
            .collect(),
        reasons,
    }
}

/// Domains compare lower-case and without the root dot.
fn domain(s: &str) -> String {
    s.trim_end_matches('.').to_ascii_lowercase()
}

/// The canonical form of an address (`2001:DB8::1` -> `2001:db8::1`), or
/// the trimmed text when it is not one.
fn source_ip(s: &str) -> String {
    s.parse::<std::net::IpAddr>()
        .map_or_else(|_| s.to_string(), |ip| ip.to_string())
}

/// The report as text: UTF-8 (a BOM dropped), UTF-16 with a BOM, else
/// Latin-1 (what `encoding="ISO-8859-1"` reporters send).
fn decode(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let utf16 = |le: bool, rest: &[u8]| {
        let units = rest.chunks_exact(2).map(|c| {
            let pair = [c[0], c.get(1).copied().unwrap_or(0)];
            if le {
                u16::from_le_bytes(pair)
            } else {
                u16::from_be_bytes(pair)
            }
        });
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect::<String>()
    };
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(true, rest);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(false, rest);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// An element: its local name (lower-case, prefix dropped), its text and
/// its children.
#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn value(&self) -> String {
        self.text.trim().to_string()
    }

    /// The trimmed text of the first child `name` (empty when absent).
    fn text_of(&self, name: &str) -> String {
        self.child(name).map(Node::value).unwrap_or_default()
    }
}

/// The local part of a qualified name, lower-case (`d:Feedback` ->
/// `feedback`).
fn local(name: &str) -> String {
    let local = name.rsplit(':').next().unwrap_or(name);
    local.to_ascii_lowercase()
}

/// Builds the element tree. End tags close the innermost element whatever
/// their name (lenient); the document must not end inside the root.
fn tree(text: &str) -> Result<Node, FeedbackError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = false;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| FeedbackError::Xml(format!("{e} at byte {}", reader.error_position())))?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    break;
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(FeedbackError::Xml(format!(
                        "nested deeper than {MAX_DEPTH}"
                    )));
                }
                stack.push(Node {
                    name: local(e.name().as_ref()),
                    ..Node::default()
                });
            }
            Event::Empty(e) => {
                let node = Node {
                    name: local(e.name().as_ref()),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => {}
                }
            }
            Event::End(_) => {
                if let Some(done) = stack.pop() {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => root = Some(done),
                    }
                }
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content()),
            Event::CData(t) => push_text(&mut stack, &t.xml10_content()),
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => named_entity(r.as_ref()),
                };
                if let Some(c) = c {
                    push_text(&mut stack, c.encode_utf8(&mut [0; 4]));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match (root, stack.first()) {
        (Some(root), _) => Ok(root),
        (None, Some(open)) => Err(FeedbackError::Xml(format!(
            "the document ends inside <{}>",
            open.name
        ))),
        (None, None) => Err(FeedbackError::Xml("no element".into())),
    }
}

fn push_text(stack: &mut [Node], s: &str) {
    if let Some(top) = stack.last_mut() {
        top.text.push_str(s);
    }
}

fn named_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7489: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>1234567890123456789</report_id>
    <date_range><begin>1796515200</begin><end>1796601599</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>example.com</domain><adkim>r</adkim><aspf>r</aspf>
    <p>none</p><sp>none</sp><pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>192.0.2.10</source_ip><count>3</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>
    </row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results>
      <dkim><domain>example.com</domain><result>pass</result><selector>s1</selector></dkim>
      <spf><domain>example.com</domain><result>pass</result></spf>
    </auth_results>
  </record>
</feedback>"#;

    #[test]
    fn rfc7489_report_without_namespace() {
        let r = ReceivedReport::parse(RFC7489.as_bytes()).unwrap();
        assert_eq!(r.reporter, "google.com");
        assert_eq!(r.report_id, "1234567890123456789");
        assert_eq!((r.begin, r.end), (1_796_515_200, 1_796_601_599));
        assert_eq!(r.policy.domain, "example.com");
        assert_eq!(r.policy.pct, "100");
        assert_eq!(r.version, "");
        assert_eq!(r.records.len(), 1);
        let rec = &r.records[0];
        assert_eq!((rec.count, rec.dmarc_pass()), (3, true));
        assert_eq!(rec.auth.dkim[0].selector, "s1");
        assert_eq!(rec.auth.spf[0].scope, "");
    }

    #[test]
    fn rfc9990_with_prefix_and_extras() {
        let xml = r#"<?xml version="1.0"?>
<d:feedback xmlns:d="urn:ietf:params:xml:ns:dmarc-2.0" xmlns:x="urn:example:ext">
 <d:version>1.0</d:version>
 <d:report_metadata>
  <d:org_name>Mail &amp; Co</d:org_name><d:email>r@mail.example</d:email>
  <d:report_id><![CDATA[id-1]]></d:report_id>
  <d:date_range><d:begin>100</d:begin><d:end>200</d:end></d:date_range>
  <d:error>one thing</d:error>
 </d:report_metadata>
 <d:policy_published><d:domain>Example.ORG.</d:domain><d:p>REJECT</d:p>
  <d:np>reject</d:np><d:testing>n</d:testing><d:discovery_method>treewalk</d:discovery_method>
 </d:policy_published>
 <d:record><d:row><d:source_ip>2001:DB8::1</d:source_ip><d:count>2</d:count>
  <d:policy_evaluated><d:disposition>reject</d:disposition><d:dkim>fail</d:dkim><d:spf>fail</d:spf>
   <d:reason><d:type>local_policy</d:type><d:comment>x</d:comment></d:reason></d:policy_evaluated></d:row>
  <d:identifiers><d:header_from>example.org</d:header_from><d:envelope_from/></d:identifiers>
  <d:auth_results><d:spf><d:domain>bad.example</d:domain><d:scope>mfrom</d:scope><d:result>FAIL</d:result>
   <d:human_result>no</d:human_result></d:spf></d:auth_results>
  <x:extension><x:whatever>1</x:whatever></x:extension>
 </d:record>
</d:feedback>"#;
        let r = ReceivedReport::parse(xml.as_bytes()).unwrap();
        assert_eq!(r.reporter, "Mail & Co");
        assert_eq!(r.report_id, "id-1");
        assert_eq!(r.version, "1.0");
        assert_eq!(r.errors, ["one thing"]);
        assert_eq!(r.policy.domain, "example.org");
        assert_eq!((r.policy.p.as_str(), r.policy.sp.as_str()), ("reject", ""));
        assert_eq!(r.policy.discovery, "treewalk");
        let rec = &r.records[0];
        assert_eq!(rec.source_ip, "2001:db8::1");
        assert!(!rec.dmarc_pass());
        assert_eq!(rec.auth.spf[0].result, "fail");
        assert_eq!(rec.auth.reasons, ["local_policy"]);
        assert_eq!(rec.env_from, "");
    }

    #[test]
    fn outlook_namespace_bom_and_sloppy_whitespace() {
        let xml = "\u{feff}<?xml version=\"1.0\"?>\r\n<feedback xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
            xmlns=\"http://dmarc.org/dmarc-xml/0.1\">\r\n<report_metadata><org_name>Outlook.com</org_name>\
            <email>dmarcreport@microsoft.com</email><report_id> abc </report_id>\
            <date_range><begin>\n 100 \n</begin><end>200.0</end></date_range></report_metadata>\
            <policy_published><domain> example.com </domain><adkim>r</adkim><aspf>r</aspf><p>QUARANTINE</p>\
            <sp>none</sp><pct>100</pct><fo>0</fo></policy_published>\
            <record><row><source_ip>198.51.100.7</source_ip><count>1</count><policy_evaluated>\
            <disposition>quarantine</disposition><dkim>fail</dkim><spf>PASS</spf></policy_evaluated></row>\
            <identifiers><envelope_to>outlook.com</envelope_to><envelope_from>example.com</envelope_from>\
            <header_from>example.com</header_from></identifiers><auth_results><spf><domain>example.com</domain>\
            <scope>mfrom</scope><result>pass</result></spf></auth_results></record></feedback>";
        let r = ReceivedReport::parse(xml.as_bytes()).unwrap();
        assert_eq!((r.report_id.as_str(), r.begin, r.end), ("abc", 100, 200));
        assert_eq!(r.policy.p, "quarantine");
        assert_eq!(r.policy.fo, "0");
        assert!(r.records[0].dmarc_pass());
        assert_eq!(r.records[0].env_to, "outlook.com");
    }

    #[test]
    fn latin1_declared_encoding_is_read() {
        let mut xml = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><feedback><report_metadata>\
            <org_name>Caf"
            .to_vec();
        xml.push(0xE9);
        xml.extend_from_slice(
            b"</org_name><report_id>1</report_id><date_range><begin>1</begin><end>2</end>\
            </date_range></report_metadata><policy_published><domain>a.example</domain>\
            </policy_published></feedback>",
        );
        let r = ReceivedReport::parse(&xml).unwrap();
        assert_eq!(r.reporter, "Caf\u{e9}");
        assert!(r.records.is_empty());
    }

    #[test]
    fn broken_and_foreign_documents_are_errors() {
        let cut = &RFC7489[..RFC7489.find("<record>").unwrap()];
        for (input, want) in [
            ("", "not well-formed XML: no element"),
            (
                "<html><body/></html>",
                "not a DMARC aggregate report (root element <html>)",
            ),
            (cut, "the document ends inside <feedback>"),
            (
                "<feedback><report_metadata/></feedback>",
                "missing <org_name>",
            ),
            (
                "<feedback><report_metadata><org_name>a</org_name><report_id>1</report_id>\
                 <date_range><begin>x</begin><end>2</end></date_range></report_metadata></feedback>",
                "<begin> is not a number: \"x\"",
            ),
            (
                "<feedback><report_metadata><org_name>a</org_name><report_id>1</report_id>\
                 <date_range><begin>1</begin><end>2</end></date_range></report_metadata></feedback>",
                "missing <policy_published><domain>",
            ),
        ] {
            let err = ReceivedReport::parse(input.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let xml = "<a>".repeat(MAX_DEPTH + 1);
        let err = ReceivedReport::parse(xml.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn fixture_reports_of_each_reporter_parse() {
        macro_rules! fixture {
            ($name:literal) => {
                include_bytes!(concat!("../../tests/fixtures/reports/xml/", $name)).as_slice()
            };
        }
        // (xml, reporter, version, domain, sp, records, messages, passing)
        for (xml, reporter, version, domain, sp, records, messages, passing) in [
            (
                fixture!("google-example.com.xml"),
                "google.com",
                "",
                "example.com",
                "none",
                2,
                13,
                10,
            ),
            (
                fixture!("google-example.org.xml"),
                "google.com",
                "",
                "example.org",
                "reject",
                1,
                5,
                5,
            ),
            (
                fixture!("outlook-example.com.xml"),
                "Outlook.com",
                "",
                "example.com",
                "none",
                2,
                6,
                6,
            ),
            (
                fixture!("yahoo-example.com.xml"),
                "Yahoo",
                "",
                "example.com",
                "",
                2,
                7,
                5,
            ),
            (
                fixture!("yahoo-example.org.xml"),
                "Yahoo",
                "",
                "example.org",
                "",
                2,
                3,
                2,
            ),
            (
                fixture!("rfc9990-example.com.xml"),
                "mx.example.net",
                "1.0",
                "example.com",
                "none",
                3,
                10,
                8,
            ),
        ] {
            let r = ReceivedReport::parse(xml).unwrap();
            assert_eq!(r.reporter, reporter);
            assert_eq!(r.version, version, "{reporter}");
            assert_eq!(r.policy.domain, domain, "{reporter}");
            assert_eq!(r.policy.sp, sp, "{reporter}");
            assert_eq!(
                (r.records.len(), r.messages()),
                (records, messages),
                "{reporter}"
            );
            let pass: u64 = r
                .records
                .iter()
                .filter(|x| x.dmarc_pass())
                .map(|x| x.count)
                .sum();
            assert_eq!(pass, passing, "{reporter}");
        }
    }

    #[test]
    fn records_sum_their_counts() {
        let xml = RFC7489.replace(
            "</feedback>",
            "<record><row><source_ip>192.0.2.11</source_ip><count> 4 </count>\
             <policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>fail</spf>\
             </policy_evaluated></row></record></feedback>",
        );
        let r = ReceivedReport::parse(xml.as_bytes()).unwrap();
        assert_eq!((r.records.len(), r.messages()), (2, 7));
        assert!(!r.records[1].dmarc_pass());
    }
}

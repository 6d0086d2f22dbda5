//! Failure reports: the DMARC failure report of RFC 9991 and the DKIM and
//! SPF ones of RFC 6651/6652, all in the Authentication Failure Reporting
//! Format (AFRF, RFC 6591) of the Abuse Reporting Format (ARF, RFC 5965),
//! with the redaction of RFC 6590; and when `fo=` asks for one.
//!
//! Owns: the report mail (`multipart/report; report-type=feedback-report`:
//! a text part, the `message/feedback-report` fields, the original header
//! block as `text/rfc822-headers`), the redaction of local-parts, and the
//! `fo=` decision. Must not: read the clock or the configuration, rate-limit,
//! verify external destinations, sign or send (the callers do).

use std::fmt::Write as _;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use sha2::{Digest, Sha256};

/// `Auth-Failure:` (RFC 6591 §3.1 and its registry; `dmarc` is RFC 9991's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// DMARC: no aligned pass (RFC 9991, "Reporting Format Update").
    Dmarc,
    /// SPF failed (RFC 6652).
    Spf,
    /// A DKIM signature did not verify (RFC 6651).
    Signature,
    /// A DKIM body hash did not match (RFC 6651).
    BodyHash,
    /// The DKIM key was revoked (empty `p=`, RFC 6651).
    Revoked,
}

impl AuthFailure {
    /// The field's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dmarc => "dmarc",
            Self::Spf => "spf",
            Self::Signature => "signature",
            Self::BodyHash => "bodyhash",
            Self::Revoked => "revoked",
        }
    }

    fn is_dkim(self) -> bool {
        matches!(self, Self::Signature | Self::BodyHash | Self::Revoked)
    }

    fn title(self) -> &'static str {
        match self {
            Self::Dmarc => "DMARC",
            Self::Spf => "SPF",
            _ => "DKIM",
        }
    }
}

/// `Delivery-Result:` (RFC 6591 §3.2): what became of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Delivered to the mailbox.
    Delivered,
    /// Delivered as spam (quarantine).
    Spam,
    /// Not delivered for a local policy reason.
    Policy,
    /// Rejected.
    Reject,
    /// Anything else.
    Other,
}

impl DeliveryResult {
    /// The field's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Spam => "spam",
            Self::Policy => "policy",
            Self::Reject => "reject",
            Self::Other => "other",
        }
    }
}

/// The DKIM signature a report is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkimFailure {
    /// `d=` (`DKIM-Domain`).
    pub domain: String,
    /// `s=` (`DKIM-Selector`).
    pub selector: String,
    /// `i=`, or `@` + `d=` when absent (`DKIM-Identity`).
    pub identity: String,
    /// The canonicalized header data the signature covered
    /// (`DKIM-Canonicalized-Header`, base64), when kept.
    pub canonicalized_header: Option<Vec<u8>>,
    /// The canonicalized body (`DKIM-Canonicalized-Body`), when kept.
    pub canonicalized_body: Option<Vec<u8>>,
}

/// What a finished message tells about its failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureInput {
    /// Why this report.
    pub auth_failure: AuthFailure,
    /// When the message arrived (`Arrival-Date`), seconds since the epoch.
    pub arrival: i64,
    /// The client (`Source-IP`).
    pub client_ip: Option<IpAddr>,
    /// MAIL FROM (`Original-Mail-From`); `Some("")` is the null sender.
    pub mail_from: Option<String>,
    /// The first recipient (`Original-Rcpt-To`).
    pub rcpt_to: Option<String>,
    /// The envelope id (`ENVID`, `Original-Envelope-Id`), when known.
    pub envelope_id: Option<String>,
    /// The domain the report is about (`Reported-Domain`): RFC5322.From's.
    pub reported_domain: String,
    /// The Authentication-Results field value we wrote.
    pub auth_results: String,
    /// The message's header block as received.
    pub header: Vec<u8>,
    /// What we did with it.
    pub delivery: Option<DeliveryResult>,
    /// DKIM had an aligned identifier that failed to authenticate
    /// (`Identity-Alignment`, RFC 9991, "Reporting Format Update").
    pub dkim_aligned_failed: bool,
    /// SPF had an aligned identifier that failed.
    pub spf_aligned_failed: bool,
    /// The failing signature: required for DKIM reports and for a DMARC
    /// report whose aligned DKIM identifier failed.
    pub dkim: Option<DkimFailure>,
    /// `SPF-DNS` (RFC 6591 §3.2: `txt : domain : "record"`), when kept.
    pub spf_dns: Option<String>,
}

/// Who sends the report and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReporter {
    /// `From:` (aligned with our DKIM signature, added by the caller).
    pub from: String,
    /// The `ruf=` addresses.
    pub to: Vec<String>,
    /// `User-Agent:` as `name/version` (RFC 5965 §3.1), e.g. `authgate/0.1.0`.
    pub user_agent: String,
    /// The right-hand side of the Message-ID.
    pub message_id_host: String,
    /// RFC 6590 redaction: `Some(secret)` replaces every local-part in the
    /// reported header and envelope by `redacted-` and 8 hex digits of
    /// SHA-256 over the secret and the local-part (stable, so the same
    /// sender redacts the same way; the secret stops dictionary guesses),
    /// and leaves out DKIM's canonicalized data.
    pub redaction_key: Option<Vec<u8>>,
}

/// Why no report could be composed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FailureError {
    /// A DKIM report (RFC 6651) without the signature it is about.
    #[error("a DKIM failure report needs the failing signature's d=, s= and i=")]
    MissingDkim,
}

/// Whether `fo=` asks for a failure report (RFC 9991 and RFC 9989
/// §4.7; RFC 7489 §6.3): a colon-separated list of `0` (every mechanism
/// failed to produce an aligned pass, the default), `1` (any did), `d` (a
/// DKIM signature failed, aligned or not), `s` (SPF failed, aligned or
/// not). Unknown options are ignored.
pub fn fo_wants(fo: Option<&str>, dkim_failed: bool, spf_failed: bool, dmarc_failed: bool) -> bool {
    let mut any_option = false;
    let mut wants = false;
    for opt in fo.unwrap_or("0").split(':').map(str::trim) {
        let hit = match opt.to_ascii_lowercase().as_str() {
            "0" => dmarc_failed || (dkim_failed && spf_failed),
            "1" => dkim_failed || spf_failed || dmarc_failed,
            "d" => dkim_failed,
            "s" => spf_failed,
            _ => continue,
        };
        any_option = true;
        wants |= hit;
    }
    if any_option {
        wants
    } else {
        // Nothing we know: the default, fo=0.
        dmarc_failed || (dkim_failed && spf_failed)
    }
}

/// The failure report mail, CRLF throughout, deterministic for the same
/// input (Message-ID and MIME boundary are derived from it).
pub fn compose_failure(
    input: &FailureInput,
    reporter: &FailureReporter,
    date: i64,
) -> Result<Vec<u8>, FailureError> {
    if input.auth_failure.is_dkim() && input.dkim.is_none() {
        return Err(FailureError::MissingDkim);
    }
    let redact = Redactor(reporter.redaction_key.as_deref());
    let id = fingerprint(input);
    let header = header_block(&input.header, &redact);
    let encoding = if header.is_ascii() { "7bit" } else { "8bit" };
    let body = MimePart::new(
        ContentType::new("multipart/report")
            .attribute("report-type", "feedback-report")
            .attribute("boundary", format!("=_authgate_afrf_{id}")),
        vec![
            MimePart::new("text/plain", human_text(input)).transfer_encoding("7bit"),
            MimePart::new(
                "message/feedback-report",
                feedback_fields(input, reporter, &redact).into_bytes(),
            )
            .transfer_encoding("7bit"),
            MimePart::new("text/rfc822-headers", header).transfer_encoding(encoding),
        ],
    );
    let to: Vec<Address<'_>> = reporter
        .to
        .iter()
        .map(|a| Address::from(a.as_str()))
        .collect();
    let subject = format!(
        "{} failure report for {}",
        input.auth_failure.title(),
        ascii_line(&input.reported_domain)
    );
    let mut out = Vec::new();
    MessageBuilder::new()
        .from(reporter.from.as_str())
        .to(Address::new_list(to))
        .header("Subject", Raw::new(subject))
        .date(Date::new(date))
        .message_id(MessageId::new(format!(
            "{}.{id}@{}",
            input.arrival, reporter.message_id_host
        )))
        .body(body)
        .serialize(&mut out);
    Ok(out)
}

/// 16 hex digits over what makes the report this report.
fn fingerprint(input: &FailureInput) -> String {
    let mut h = Sha256::new();
    h.update(input.arrival.to_string().as_bytes());
    h.update(input.auth_failure.as_str().as_bytes());
    h.update(input.reported_domain.as_bytes());
    h.update(&input.header);
    h.finalize()[..8].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn human_text(input: &FailureInput) -> String {
    let from_ip = input
        .client_ip
        .map(|ip| format!(" from {ip}"))
        .unwrap_or_default();
    format!(
        "This is an authentication failure report (Auth-Failure: {}) for a\r\n\
         message claiming to be from {}, received{from_ip}\r\n\
         on {}.\r\nThe report's fields and the message's header follow.\r\n",
        input.auth_failure.as_str(),
        ascii_line(&input.reported_domain),
        Date::new(input.arrival).to_rfc822()
    )
}

/// The `message/feedback-report` part: RFC 5965 §3.1's required fields
/// first, then RFC 6591 §3's and RFC 9991's ("Reporting Format Update").
fn feedback_fields(
    input: &FailureInput,
    reporter: &FailureReporter,
    redact: &Redactor<'_>,
) -> String {
    let mut f = Fields::default();
    f.add("Feedback-Type", "auth-failure");
    f.add("User-Agent", &reporter.user_agent);
    f.add("Version", "1");
    if let Some(id) = &input.envelope_id {
        f.add("Original-Envelope-Id", id);
    }
    if let Some(from) = &input.mail_from {
        f.add("Original-Mail-From", &format!("<{}>", redact.text(from)));
    }
    if let Some(rcpt) = &input.rcpt_to {
        f.add("Original-Rcpt-To", &format!("<{}>", redact.text(rcpt)));
    }
    f.add("Arrival-Date", &Date::new(input.arrival).to_rfc822());
    if let Some(ip) = input.client_ip {
        f.add("Source-IP", &ip.to_string());
    }
    f.add("Reported-Domain", &input.reported_domain);
    f.add_folded("Authentication-Results", &redact.text(&input.auth_results));
    f.add("Auth-Failure", input.auth_failure.as_str());
    if let Some(d) = input.delivery {
        f.add("Delivery-Result", d.as_str());
    }
    if input.auth_failure == AuthFailure::Dmarc {
        f.add("Identity-Alignment", identity_alignment(input));
    }
    if let Some(d) = &input.dkim {
        f.add("DKIM-Domain", &d.domain);
        f.add("DKIM-Identity", &redact.text(&d.identity));
        f.add("DKIM-Selector", &d.selector);
        // Canonicalized data cannot be redacted without losing its point
        // (comparing hashes), so a redacted report leaves it out.
        if redact.0.is_none() {
            if let Some(h) = &d.canonicalized_header {
                f.add_base64("DKIM-Canonicalized-Header", h);
            }
            if let Some(b) = &d.canonicalized_body {
                f.add_base64("DKIM-Canonicalized-Body", b);
            }
        }
    }
    if let Some(spf) = &input.spf_dns {
        f.add_folded("SPF-DNS", spf);
    }
    f.0
}

/// RFC 9991 ("Reporting Format Update"): the mechanisms that failed to authenticate an aligned
/// identifier, or `none`.
fn identity_alignment(input: &FailureInput) -> &'static str {
    match (input.dkim_aligned_failed, input.spf_aligned_failed) {
        (true, true) => "dkim, spf",
        (true, false) => "dkim",
        (false, true) => "spf",
        (false, false) => "none",
    }
}

/// Field lines with CRLF; values are made one ASCII line first, so nothing
/// from the message can start a field of its own.
#[derive(Default)]
struct Fields(String);

impl Fields {
    fn add(&mut self, name: &str, value: &str) {
        let _ = write!(self.0, "{name}: {}\r\n", ascii_line(value));
    }

    /// Folded after `;` (and at spaces) to keep lines under 78 characters.
    fn add_folded(&mut self, name: &str, value: &str) {
        let value = ascii_line(value);
        let mut line_len = name.len() + 1;
        self.0.push_str(name);
        self.0.push(':');
        for word in value.split(' ').filter(|w| !w.is_empty()) {
            if line_len + 1 + word.len() > 78 && line_len > name.len() + 1 {
                self.0.push_str("\r\n ");
                line_len = 1;
            } else {
                self.0.push(' ');
                line_len += 1;
            }
            self.0.push_str(word);
            line_len += word.len();
        }
        self.0.push_str("\r\n");
    }

    fn add_base64(&mut self, name: &str, data: &[u8]) {
        let b64 = STANDARD.encode(data);
        let _ = write!(self.0, "{name}:");
        for chunk in b64.as_bytes().chunks(72) {
            self.0.push_str("\r\n ");
            self.0.push_str(&String::from_utf8_lossy(chunk));
        }
        self.0.push_str("\r\n");
    }
}

/// One line of printable ASCII: line breaks and tabs become spaces, other
/// controls and non-ASCII become `?` (the part is 7bit).
fn ascii_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\r' | '\n' | '\t' => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.trim().to_string()
}

/// The header block for `text/rfc822-headers`: CRLF line ends, no blank
/// line at the end, local-parts redacted when asked (except in the
/// message-id fields, which hold no mailbox).
fn header_block(raw: &[u8], redact: &Redactor<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    let mut field: Vec<u8> = Vec::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            // The end of the header block (or of the input).
            break;
        }
        if !matches!(line[0], b' ' | b'\t') && !field.is_empty() {
            out.extend(redact.field(&field));
            field.clear();
        }
        // A bare CR inside a line would read as a line end to some.
        field.extend(line.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
        field.extend_from_slice(b"\r\n");
    }
    if !field.is_empty() {
        out.extend(redact.field(&field));
    }
    out
}

/// RFC 6590 redaction of local-parts, off when there is no key.
struct Redactor<'a>(Option<&'a [u8]>);

impl Redactor<'_> {
    fn text(&self, s: &str) -> String {
        match self.0 {
            None => s.to_string(),
            Some(key) => String::from_utf8_lossy(&redact_bytes(s.as_bytes(), key)).into_owned(),
        }
    }

    fn field(&self, field: &[u8]) -> Vec<u8> {
        let Some(key) = self.0 else {
            return field.to_vec();
        };
        let name_end = field.iter().position(|&b| b == b':').unwrap_or(0);
        let name = String::from_utf8_lossy(&field[..name_end])
            .trim()
            .to_ascii_lowercase();
        const IDS: [&str; 5] = [
            "message-id",
            "in-reply-to",
            "references",
            "content-id",
            "resent-message-id",
        ];
        if IDS.contains(&name.as_str()) {
            field.to_vec()
        } else {
            let mut out = field[..name_end].to_vec();
            out.extend(redact_bytes(&field[name_end..], key));
            out
        }
    }
}

/// Every `local@domain` in `text` with its local-part replaced by
/// `redacted-` and 8 hex digits of SHA-256(key, 0, local-part).
fn redact_bytes(text: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    for at in text
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'@')
        .map(|(i, _)| i)
    {
        let domain_ok = text
            .get(at + 1)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'[' || *b >= 0x80);
        let start = local_start(text, at).max(copied);
        if !domain_ok || start >= at {
            continue;
        }
        out.extend_from_slice(&text[copied..start]);
        out.extend_from_slice(redacted(&text[start..at], key).as_bytes());
        copied = at;
    }
    out.extend_from_slice(&text[copied..]);
    out
}

/// Where the local-part ending just before `at` starts: a quoted string,
/// or a run of atext and dots (and UTF-8, RFC 6532).
fn local_start(text: &[u8], at: usize) -> usize {
    if at > 0
        && text[at - 1] == b'"'
        && let Some(open) = text[..at - 1].iter().rposition(|&b| b == b'"')
    {
        return open;
    }
    let atext =
        |b: u8| b.is_ascii_alphanumeric() || b >= 0x80 || b"!#$%&'*+-/=?^_`{|}~.".contains(&b);
    let mut start = at;
    while start > 0 && atext(text[start - 1]) {
        start -= 1;
    }
    // `=` is atext (SRS and VERP addresses have it), but in `i=user@` or
    // `smtp.mailfrom=user@` it ends a tag name, which stays.
    const TAGS: [&str; 9] = [
        "i",
        "header.i",
        "header.from",
        "header.sender",
        "smtp.mailfrom",
        "smtp.rcptto",
        "envelope-from",
        "envelope-to",
        "receiver",
    ];
    if let Some(eq) = text[start..at].iter().position(|&b| b == b'=') {
        let tag = String::from_utf8_lossy(&text[start..start + eq]).to_ascii_lowercase();
        if TAGS.contains(&tag.as_str()) {
            start += eq + 1;
        }
    }
    start
}

fn redacted(local: &[u8], key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(key);
    h.update([0]);
    h.update(local);
    let hex = h.finalize()[..4].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    format!("redacted-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fo_options() {
        // (fo, dkim_failed, spf_failed, dmarc_failed, want)
        for (fo, d, s, m, want) in [
            (None, true, true, true, true),
            (None, true, false, false, false),
            (Some("0"), false, true, false, false),
            (Some("1"), false, true, false, true),
            (Some("1"), false, false, false, false),
            (Some("d"), true, false, false, true),
            (Some("d"), false, true, true, false),
            (Some("s"), false, true, false, true),
            (Some("d:s"), false, true, false, true),
            (Some(" D : S "), true, false, false, true),
            (Some("0:d"), true, false, false, true),
            (Some("x"), true, true, true, true),
            (Some("x"), true, false, false, false),
            (Some(""), true, true, true, true),
        ] {
            assert_eq!(fo_wants(fo, d, s, m), want, "{fo:?} {d} {s} {m}");
        }
    }

    #[test]
    fn local_parts_are_redacted_stably_and_domains_kept() {
        let key = b"secret".as_slice();
        let text = b"From: \"Ann\" <ann.lee@example.com>, bob+x@EXAMPLE.org; i=@example.com";
        let out = String::from_utf8(redact_bytes(text, key)).expect("utf8");
        let ann = redacted(b"ann.lee", key);
        let bob = redacted(b"bob+x", key);
        assert_eq!(
            out,
            format!("From: \"Ann\" <{ann}@example.com>, {bob}@EXAMPLE.org; i=@example.com")
        );
        assert_eq!(ann, redacted(b"ann.lee", key));
        assert_ne!(ann, redacted(b"ann.lee", b"other"));
        assert!(ann.len() == "redacted-".len() + 8);
        let tags = redact_bytes(
            b"i=u@example.com; smtp.mailfrom=SRS0=x=y=example.com=ann@fwd.example",
            key,
        );
        assert_eq!(
            String::from_utf8(tags).expect("utf8"),
            format!(
                "i={}@example.com; smtp.mailfrom={}@fwd.example",
                redacted(b"u", key),
                redacted(b"SRS0=x=y=example.com=ann", key)
            )
        );
        let quoted = String::from_utf8(redact_bytes(b"<\"a b\"@example.com>", key)).expect("utf8");
        assert_eq!(
            quoted,
            format!("<{}@example.com>", redacted(b"\"a b\"", key))
        );
    }

    #[test]
    fn header_block_gets_crlf_and_keeps_message_ids() {
        let raw = b"From: a@example.com\nMessage-ID: <x1@example.com>\nTo: b@example.org,\n c@example.org\n\nbody a@b.c\n";
        let plain = header_block(raw, &Redactor(None));
        assert_eq!(
            plain,
            b"From: a@example.com\r\nMessage-ID: <x1@example.com>\r\nTo: b@example.org,\r\n c@example.org\r\n"
        );
        let key = b"k".as_slice();
        let red = String::from_utf8(header_block(raw, &Redactor(Some(key)))).expect("utf8");
        assert!(red.contains("Message-ID: <x1@example.com>"), "{red}");
        assert!(red.contains(&format!("From: {}@example.com", redacted(b"a", key))));
        assert!(red.contains(&format!(" {}@example.org\r\n", redacted(b"c", key))));
        assert!(!red.contains("body"));
        assert_eq!(
            header_block(b"Subject: a\rb\r\n", &Redactor(None)),
            b"Subject: a b\r\n"
        );
    }

    #[test]
    fn values_cannot_inject_fields() {
        let mut f = Fields::default();
        f.add("Reported-Domain", "example.com\r\nAuth-Failure: spf");
        f.add_folded("Authentication-Results", "mx; dmarc=fail\r\nX: y");
        assert_eq!(f.0.matches("\r\n").count(), 2, "{}", f.0);
        assert!(!f.0.contains("\r\nAuth-Failure"));
    }

    #[test]
    fn long_values_fold_under_78() {
        let mut f = Fields::default();
        let ar = "mx.receiver.example; dkim=fail (signature did not verify) header.d=example.com header.s=s2026 header.b=abcdefgh; spf=softfail smtp.mailfrom=bounce.esp.example; dmarc=fail header.from=example.com";
        f.add_folded("Authentication-Results", ar);
        for line in f.0.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
        }
        let unfolded = f.0.replace("\r\n ", " ");
        assert_eq!(unfolded, format!("Authentication-Results: {ar}\r\n"));
        let mut b = Fields::default();
        b.add_base64("DKIM-Canonicalized-Header", &[7u8; 200]);
        assert!(b.0.split("\r\n").all(|l| l.len() <= 78));
    }

    const HEADER: &[u8] =
        b"Received: from mail.forwarder.example (mail.forwarder.example [192.0.2.2])\r\n\
        \tby mx.receiver.example with ESMTPS for <rcpt.one@receiver.example>\r\n\
        DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s2026; i=author@example.com;\r\n\
        \th=from:to:subject; bh=abc=; b=def=\r\n\
        From: Author <author@example.com>\r\n\
        To: users@forwarder.example\r\n\
        Subject: hello\r\n\
        Message-ID: <id.1@example.com>\r\n\
        \r\n";

    fn input(kind: AuthFailure) -> FailureInput {
        FailureInput {
            auth_failure: kind,
            arrival: 1_796_640_000,
            client_ip: Some("2001:db8::23ac".parse().expect("ip")),
            mail_from: Some("SRS0=ab=cd=example.com=author@forwarder.example".into()),
            rcpt_to: Some("rcpt.one@receiver.example".into()),
            envelope_id: Some("65E1A3F0A0".into()),
            reported_domain: "example.com".into(),
            auth_results: "mx.receiver.example; dkim=fail (body hash did not verify) header.d=example.com header.s=s2026 header.i=author@example.com; spf=pass smtp.mailfrom=SRS0=ab=cd=example.com=author@forwarder.example; dmarc=fail header.from=example.com".into(),
            header: HEADER.to_vec(),
            delivery: Some(DeliveryResult::Spam),
            dkim_aligned_failed: true,
            spf_aligned_failed: false,
            dkim: Some(DkimFailure {
                domain: "example.com".into(),
                selector: "s2026".into(),
                identity: "author@example.com".into(),
                canonicalized_header: Some(b"from:Author <author@example.com>\r\n".to_vec()),
                canonicalized_body: None,
            }),
            spf_dns: None,
        }
    }

    fn reporter(redact: bool) -> FailureReporter {
        FailureReporter {
            from: "dmarc-failures@receiver.example".into(),
            to: vec!["ruf@example.com".into()],
            user_agent: "authgate/0.1.0".into(),
            message_id_host: "receiver.example".into(),
            redaction_key: redact.then(|| b"per-install secret".to_vec()),
        }
    }

    /// The parts of a composed report: (content types, feedback fields,
    /// header part).
    fn parse(mail: &[u8]) -> (Vec<String>, Vec<(String, String)>, String) {
        use mail_parser::{MessageParser, MimeHeaders as _};
        let msg = MessageParser::default().parse(mail).expect("parses");
        let root = msg.root_part();
        let ct = root.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("feedback-report"));
        let kids = root.sub_parts().expect("multipart");
        assert_eq!(kids.len(), 3);
        let parts: Vec<_> = kids.iter().map(|&i| msg.part(i).expect("part")).collect();
        let types = parts
            .iter()
            .map(|p| {
                let ct = p.content_type().expect("ct");
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect();
        let feedback = String::from_utf8(parts[1].contents().to_vec()).expect("ascii");
        let fields = feedback
            .replace("\r\n ", " ")
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("field");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let header = String::from_utf8(parts[2].contents().to_vec()).expect("utf8");
        (types, fields, header)
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn dmarc_failure_report_has_the_afrf_parts_and_fields() {
        let mail = compose_failure(&input(AuthFailure::Dmarc), &reporter(false), 1_796_640_060)
            .expect("composed");
        assert_eq!(
            mail,
            compose_failure(&input(AuthFailure::Dmarc), &reporter(false), 1_796_640_060)
                .expect("again"),
            "deterministic"
        );
        let (types, fields, header) = parse(&mail);
        assert_eq!(
            types,
            [
                "text/plain",
                "message/feedback-report",
                "text/rfc822-headers"
            ]
        );
        for (name, want) in [
            ("Feedback-Type", "auth-failure"),
            ("User-Agent", "authgate/0.1.0"),
            ("Version", "1"),
            ("Original-Envelope-Id", "65E1A3F0A0"),
            (
                "Original-Mail-From",
                "<SRS0=ab=cd=example.com=author@forwarder.example>",
            ),
            ("Original-Rcpt-To", "<rcpt.one@receiver.example>"),
            ("Arrival-Date", "Mon, 7 Dec 2026 10:40:00 +0000"),
            ("Source-IP", "2001:db8::23ac"),
            ("Reported-Domain", "example.com"),
            ("Auth-Failure", "dmarc"),
            ("Delivery-Result", "spam"),
            ("Identity-Alignment", "dkim"),
            ("DKIM-Domain", "example.com"),
            ("DKIM-Identity", "author@example.com"),
            ("DKIM-Selector", "s2026"),
        ] {
            assert_eq!(field(&fields, name), Some(want), "{name}");
        }
        assert_eq!(
            field(&fields, "Authentication-Results"),
            Some(input(AuthFailure::Dmarc).auth_results.as_str())
        );
        assert_eq!(
            field(&fields, "DKIM-Canonicalized-Header")
                .map(|v| STANDARD.decode(v.replace(' ', "")).expect("base64")),
            Some(b"from:Author <author@example.com>\r\n".to_vec())
        );
        assert_eq!(fields[0].0, "Feedback-Type");
        assert!(header.starts_with("Received: from mail.forwarder.example"));
        assert!(header.contains("From: Author <author@example.com>\r\n"));
        assert!(header.ends_with("Message-ID: <id.1@example.com>\r\n"));
        let text = String::from_utf8_lossy(&mail);
        assert!(text.contains("Subject: DMARC failure report for example.com\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
        for line in text.split("\r\n") {
            assert!(line.len() <= 998, "{line}");
        }
    }

    #[test]
    fn redaction_replaces_local_parts_everywhere_but_keeps_domains() {
        let plain =
            compose_failure(&input(AuthFailure::Dmarc), &reporter(false), 0).expect("plain");
        let mail =
            compose_failure(&input(AuthFailure::Dmarc), &reporter(true), 0).expect("redacted");
        let (_, fields, header) = parse(&mail);
        let key = b"per-install secret".as_slice();
        let author = redacted(b"author", key);
        let srs = redacted(b"SRS0=ab=cd=example.com=author", key);
        assert_eq!(
            field(&fields, "Original-Mail-From").map(str::to_string),
            Some(format!("<{srs}@forwarder.example>"))
        );
        assert_eq!(
            field(&fields, "Original-Rcpt-To").map(str::to_string),
            Some(format!("<{}@receiver.example>", redacted(b"rcpt.one", key)))
        );
        assert_eq!(
            field(&fields, "DKIM-Identity").map(str::to_string),
            Some(format!("{author}@example.com"))
        );
        let ar = field(&fields, "Authentication-Results").expect("A-R");
        assert!(
            ar.contains(&format!("header.i={author}@example.com")),
            "{ar}"
        );
        assert!(
            ar.contains(&format!("smtp.mailfrom={srs}@forwarder.example")),
            "{ar}"
        );
        assert!(
            header.contains(&format!("From: Author <{author}@example.com>")),
            "{header}"
        );
        assert!(
            header.contains(&format!("i={author}@example.com;")),
            "{header}"
        );
        assert!(header.contains(&format!(
            "for <{}@receiver.example>",
            redacted(b"rcpt.one", key)
        )));
        assert!(
            header.contains("Message-ID: <id.1@example.com>"),
            "message ids are kept"
        );
        // No local-part is left anywhere but in the message id.
        let all = String::from_utf8_lossy(&mail).replace("<id.1@example.com>", "");
        for local in ["author@", "users@", "rcpt.one@", "=author@"] {
            assert!(!all.contains(local), "{local} left in\n{all}");
        }
        assert_eq!(field(&fields, "DKIM-Canonicalized-Header"), None);
        assert_ne!(plain, mail);
    }

    #[test]
    fn dkim_report_variant_needs_the_signature() {
        let mut dkim = input(AuthFailure::BodyHash);
        let mail = compose_failure(&dkim, &reporter(false), 0).expect("composed");
        let (_, fields, _) = parse(&mail);
        assert_eq!(field(&fields, "Auth-Failure"), Some("bodyhash"));
        assert_eq!(field(&fields, "DKIM-Selector"), Some("s2026"));
        assert_eq!(
            field(&fields, "Identity-Alignment"),
            None,
            "DMARC reports only"
        );
        assert!(
            String::from_utf8_lossy(&mail).contains("Subject: DKIM failure report for example.com")
        );
        dkim.dkim = None;
        assert_eq!(
            compose_failure(&dkim, &reporter(false), 0),
            Err(FailureError::MissingDkim)
        );
    }

    #[test]
    fn identity_alignment_words() {
        for (d, s, want) in [
            (true, true, "dkim, spf"),
            (true, false, "dkim"),
            (false, true, "spf"),
            (false, false, "none"),
        ] {
            let i = FailureInput {
                dkim_aligned_failed: d,
                spf_aligned_failed: s,
                ..input(AuthFailure::Dmarc)
            };
            assert_eq!(identity_alignment(&i), want);
        }
    }

    proptest::proptest! {
        /// Hostile header bytes and field values: CRLF only, and the MIME
        /// boundary only where we put it (Content-Type, three delimiters,
        /// the close), so nothing from the message ends or starts a part.
        #[test]
        fn hostile_input_keeps_the_mime_structure(
            header in proptest::collection::vec(proptest::sample::select(
                b"From:To<>@a.\r\n \t\"=-_;\xe9".to_vec()), 0..300),
            value in "[ -~\r\n\u{e9}@=;]{0,80}",
            redact in proptest::bool::ANY,
        ) {
            let mut i = input(AuthFailure::Dmarc);
            i.header = header;
            i.auth_results = value.clone();
            i.mail_from = Some(value.clone());
            i.reported_domain = value;
            let mail = compose_failure(&i, &reporter(redact), 0).expect("composed");
            for (n, &b) in mail.iter().enumerate() {
                if b == b'\n' {
                    proptest::prop_assert_eq!(n.checked_sub(1).map(|j| mail[j]), Some(b'\r'));
                }
            }
            let text = String::from_utf8_lossy(&mail);
            let boundary = format!("=_authgate_afrf_{}", fingerprint(&i));
            proptest::prop_assert_eq!(text.matches(&boundary).count(), 5);
            let (types, fields, _) = parse(&mail);
            proptest::prop_assert_eq!(types.len(), 3);
            proptest::prop_assert_eq!(field(&fields, "Feedback-Type"), Some("auth-failure"));
        }
    }
}

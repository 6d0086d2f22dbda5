//! The DKIM-Signature header field (RFC 6376 §3.5): parse and emit.
//!
//! Owns: the typed [`Signature`], its validation rules (required tags,
//! `i=`/`d=` relation, `h=` containing From, `x=` after `t=`), and writing a
//! folded signature header. Must not: look up keys or hash anything.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::canon::Canon;
use super::tag::{TagError, TagList, strip_fws};

/// A signing algorithm (`a=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `rsa-sha256` (RFC 6376).
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519Sha256,
    /// `rsa-sha1`: parsed so the result can say why it is refused (RFC 8301).
    RsaSha1,
}

impl Algorithm {
    /// The name as written in `a=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
            Algorithm::RsaSha1 => "rsa-sha1",
        }
    }

    /// Parses `a=` (case-insensitive).
    pub fn parse(s: &str) -> Option<Algorithm> {
        [
            Algorithm::RsaSha256,
            Algorithm::Ed25519Sha256,
            Algorithm::RsaSha1,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    /// The key type (`k=`) this algorithm needs.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Ed25519Sha256 => "ed25519",
            _ => "rsa",
        }
    }
}

/// Why a DKIM-Signature is unusable (all are `permerror`, RFC 6376 §6.1.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The tag list itself is malformed.
    #[error("malformed signature: {0}")]
    Tags(#[from] TagError),
    /// A required tag is absent.
    #[error("signature has no {0}= tag")]
    MissingTag(&'static str),
    /// `v=` is not 1.
    #[error("unsupported signature version v={0}")]
    Version(String),
    /// `a=` names an unknown algorithm.
    #[error("unknown algorithm a={0}")]
    UnknownAlgorithm(String),
    /// `c=` names an unknown canonicalization.
    #[error("unknown canonicalization c={0}")]
    Canonicalization(String),
    /// A tag value has the wrong syntax.
    #[error("invalid {0}= value")]
    BadValue(&'static str),
    /// `h=` does not include From (RFC 6376 §5.4).
    #[error("From is not signed (h= lacks from)")]
    FromNotSigned,
    /// `i=` is not in `d=` or a subdomain of it (RFC 6376 §3.5).
    #[error("i= domain is not d= or a subdomain of it")]
    IdentityNotInDomain,
    /// `q=` has no method we support.
    #[error("unsupported query method q={0}")]
    QueryMethod(String),
    /// `x=` is not later than `t=`.
    #[error("x= is not after t=")]
    ExpiresBeforeSigned,
}

/// A parsed DKIM-Signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Signing algorithm (`a=`).
    pub algorithm: Algorithm,
    /// Signature value (`b=`), decoded.
    pub signature: Vec<u8>,
    /// Body hash (`bh=`), decoded.
    pub body_hash: Vec<u8>,
    /// Header canonicalization (`c=`, first part).
    pub header_canon: Canon,
    /// Body canonicalization (`c=`, second part).
    pub body_canon: Canon,
    /// Signing domain (`d=`), as written.
    pub domain: String,
    /// Signed header field names (`h=`), in order, as written.
    pub signed_headers: Vec<String>,
    /// Agent or user identifier (`i=`), decoded; `None` means `@d`.
    pub identity: Option<String>,
    /// Body length count (`l=`).
    pub body_length: Option<u64>,
    /// Selector (`s=`).
    pub selector: String,
    /// Signature timestamp (`t=`), seconds since the epoch.
    pub timestamp: Option<u64>,
    /// Signature expiration (`x=`), seconds since the epoch.
    pub expiration: Option<u64>,
    /// Copied header fields (`z=`), decoded.
    pub copied_headers: Option<Vec<String>>,
}

/// The tags a report can show even for a broken signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureSummary {
    /// `d=` as written, if any.
    pub domain: Option<String>,
    /// `s=` as written, if any.
    pub selector: Option<String>,
    /// `a=` as written, if any.
    pub algorithm: Option<String>,
    /// `i=` as written, if any.
    pub identity: Option<String>,
    /// `b=` without whitespace, if any.
    pub b: Option<String>,
    /// `r=y`: the signer asks for failure reports (RFC 6651 §3.1).
    pub reports: bool,
}

impl SignatureSummary {
    /// The same as [`SignatureSummary::of`] for a tag list that parsed
    /// (where every tag occurs once).
    fn from_tags(tags: &TagList) -> SignatureSummary {
        let get = |name| tags.get(name).map(|v| strip_fws(v.trim()).into_owned());
        SignatureSummary {
            domain: get("d"),
            selector: get("s"),
            algorithm: get("a"),
            identity: get("i"),
            b: get("b"),
            reports: tags.get("r").is_some_and(|r| strip_fws(r.trim()) == "y"),
        }
    }

    /// Best-effort extraction from a header value that may not parse.
    pub fn of(value: &[u8]) -> SignatureSummary {
        // Split as leniently as possible; the first occurrence of a tag wins.
        const NAMES: [&str; 6] = ["d", "s", "a", "i", "b", "r"];
        let mut found: [Option<String>; 6] = Default::default();
        let text = String::from_utf8_lossy(value);
        for spec in text.split(';') {
            let Some((k, v)) = spec.split_once('=') else {
                continue;
            };
            if let Some(slot) = NAMES.iter().position(|n| *n == k.trim())
                && found[slot].is_none()
            {
                found[slot] = Some(strip_fws(v.trim()).into_owned());
            }
        }
        let [domain, selector, algorithm, identity, b, r] = found;
        SignatureSummary {
            domain,
            selector,
            algorithm,
            identity,
            b,
            reports: r.as_deref() == Some("y"),
        }
    }
}

/// `b=` and `bh=`: base64string needs at least one character (RFC 6376
/// §2.4, §3.5), so an empty value is as good as a missing tag.
fn b64(tags: &TagList, name: &'static str) -> Result<Vec<u8>, SignatureError> {
    let v = required(tags, name)?;
    STANDARD
        .decode(strip_fws(v).as_bytes())
        .map_err(|_| SignatureError::BadValue(name))
}

fn number(
    tags: &TagList,
    name: &'static str,
    max_digits: usize,
) -> Result<Option<u64>, SignatureError> {
    let Some(v) = tags.get(name) else {
        return Ok(None);
    };
    if v.is_empty() || v.len() > max_digits || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadValue(name));
    }
    // l= may have up to 76 digits; anything past u64 is longer than any body.
    Ok(Some(v.parse::<u64>().unwrap_or(u64::MAX)))
}

fn canonicalization(tags: &TagList) -> Result<(Canon, Canon), SignatureError> {
    let Some(c) = tags.get("c") else {
        return Ok((Canon::Simple, Canon::Simple));
    };
    let (h, b) = c.split_once('/').unwrap_or((c, "simple"));
    let bad = || SignatureError::Canonicalization(c.to_string());
    Ok((
        Canon::parse(h.trim()).ok_or_else(bad)?,
        Canon::parse(b.trim()).ok_or_else(bad)?,
    ))
}

/// Decodes `dkim-quoted-printable` (RFC 6376 §2.11): `=XX` escapes, FWS dropped.
pub fn decode_qp(s: &str) -> Option<String> {
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Whether `sub` is `parent` or a subdomain of it (ASCII case-insensitive).
pub fn is_same_or_subdomain(sub: &str, parent: &str) -> bool {
    let (sub, parent) = (sub.trim_end_matches('.'), parent.trim_end_matches('.'));
    if sub.eq_ignore_ascii_case(parent) {
        return true;
    }
    sub.len() > parent.len()
        && sub.as_bytes()[sub.len() - parent.len() - 1] == b'.'
        && sub[sub.len() - parent.len()..].eq_ignore_ascii_case(parent)
}

fn required<'a>(tags: &'a TagList, name: &'static str) -> Result<&'a str, SignatureError> {
    match tags.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(SignatureError::MissingTag(name)),
    }
}

impl Signature {
    /// Parses the value of a DKIM-Signature field (RFC 6376 §3.5, §6.1.1).
    pub fn parse(value: &[u8]) -> Result<Signature, SignatureError> {
        Signature::from_tags(&TagList::parse(value)?)
    }

    /// [`Signature::parse`] and [`SignatureSummary::of`] with one parse of
    /// the tag list (the verifier needs both for every signature).
    pub fn parse_summarized(value: &[u8]) -> (SignatureSummary, Result<Signature, SignatureError>) {
        match TagList::parse(value) {
            Ok(tags) => (
                SignatureSummary::from_tags(&tags),
                Signature::from_tags(&tags),
            ),
            Err(e) => (SignatureSummary::of(value), Err(e.into())),
        }
    }

    fn from_tags(tags: &TagList) -> Result<Signature, SignatureError> {
        let version = required(tags, "v")?;
        if version != "1" {
            return Err(SignatureError::Version(version.to_string()));
        }
        let a = required(tags, "a")?;
        let algorithm =
            Algorithm::parse(a).ok_or_else(|| SignatureError::UnknownAlgorithm(a.to_string()))?;
        let (header_canon, body_canon) = canonicalization(tags)?;
        let domain = required(tags, "d")?.to_string();
        let selector = required(tags, "s")?.to_string();
        let signed_headers = parse_h(required(tags, "h")?)?;
        let identity = parse_identity(tags, &domain)?;
        check_query_methods(tags)?;
        let timestamp = number(tags, "t", 12)?;
        let expiration = number(tags, "x", 12)?;
        if let (Some(t), Some(x)) = (timestamp, expiration)
            && x <= t
        {
            return Err(SignatureError::ExpiresBeforeSigned);
        }
        let copied_headers = tags
            .get("z")
            .map(|z| {
                z.split('|')
                    .map(|p| decode_qp(p).ok_or(SignatureError::BadValue("z")))
                    .collect()
            })
            .transpose()?;
        Ok(Signature {
            algorithm,
            signature: b64(tags, "b")?,
            body_hash: b64(tags, "bh")?,
            header_canon,
            body_canon,
            domain,
            signed_headers,
            identity,
            body_length: number(tags, "l", 76)?,
            selector,
            timestamp,
            expiration,
            copied_headers,
        })
    }

    /// The DNS name of the key record: `selector._domainkey.domain`.
    pub fn key_name(&self) -> String {
        format!(
            "{}._domainkey.{}",
            self.selector.trim_end_matches('.'),
            self.domain.trim_end_matches('.')
        )
    }

    /// The domain part of the identity (`i=`, default `d=`).
    pub fn identity_domain(&self) -> &str {
        match &self.identity {
            Some(i) => i.rsplit_once('@').map_or(i.as_str(), |(_, d)| d),
            None => &self.domain,
        }
    }

    /// Writes the header value folded to lines of at most 78 characters,
    /// with `b=` last (empty when `self.signature` is empty), CRLF folding.
    pub fn to_header_value(&self) -> String {
        let mut f = Folder::new("DKIM-Signature:".len());
        f.tag("v", "1");
        f.tag("a", self.algorithm.as_str());
        f.tag(
            "c",
            &format!(
                "{}/{}",
                self.header_canon.as_str(),
                self.body_canon.as_str()
            ),
        );
        f.tag("d", &self.domain);
        if let Some(i) = &self.identity {
            f.tag("i", &encode_qp(i));
        }
        f.tag("s", &self.selector);
        if let Some(t) = self.timestamp {
            f.tag("t", &t.to_string());
        }
        if let Some(x) = self.expiration {
            f.tag("x", &x.to_string());
        }
        if let Some(l) = self.body_length {
            f.tag("l", &l.to_string());
        }
        f.list("h", &self.signed_headers);
        if let Some(z) = &self.copied_headers {
            let z: Vec<String> = z.iter().map(|h| encode_qp(h)).collect();
            f.list_with("z", &z, '|');
        }
        f.breakable("bh", &STANDARD.encode(&self.body_hash), true);
        f.breakable("b", &STANDARD.encode(&self.signature), false);
        f.out
    }
}

/// `sig-h-tag = %x68 [FWS] "=" [FWS] hdr-name *( [FWS] ":" [FWS] hdr-name )`
/// (RFC 6376 §3.5): FWS only around the colons; a name is 1*ftext, so
/// whitespace inside one makes the tag invalid rather than joining it up.
fn parse_h(h: &str) -> Result<Vec<String>, SignatureError> {
    let names: Vec<String> = h
        .split(':')
        .map(|n| n.trim_matches([' ', '\t', '\r', '\n']).to_string())
        .collect();
    if names
        .iter()
        .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
    {
        return Err(SignatureError::BadValue("h"));
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case("from")) {
        return Err(SignatureError::FromNotSigned);
    }
    Ok(names)
}

fn parse_identity(tags: &TagList, domain: &str) -> Result<Option<String>, SignatureError> {
    let Some(raw) = tags.get("i") else {
        return Ok(None);
    };
    let i = decode_qp(raw).ok_or(SignatureError::BadValue("i"))?;
    let Some((_, idomain)) = i.rsplit_once('@') else {
        return Err(SignatureError::BadValue("i"));
    };
    if !is_same_or_subdomain(idomain, domain) {
        return Err(SignatureError::IdentityNotInDomain);
    }
    Ok(Some(i))
}

fn check_query_methods(tags: &TagList) -> Result<(), SignatureError> {
    let Some(q) = tags.get("q") else {
        return Ok(());
    };
    let ok = q.split(':').any(|m| {
        let m = strip_fws(m);
        let method = m.split('/').next().unwrap_or("");
        method.eq_ignore_ascii_case("dns")
            && m.split('/')
                .nth(1)
                .is_none_or(|f| f.eq_ignore_ascii_case("txt"))
    });
    if ok {
        Ok(())
    } else {
        Err(SignatureError::QueryMethod(q.to_string()))
    }
}

/// Encodes for `dkim-quoted-printable`: `;`, `=`, `|`, WSP, controls and 8-bit escaped.
fn encode_qp(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && !matches!(b, b';' | b'=' | b'|' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Builds a tag list folded at 78 columns with CRLF TAB continuation.
struct Folder {
    out: String,
    col: usize,
}

const WIDTH: usize = 78;

impl Folder {
    fn new(col: usize) -> Self {
        Folder {
            out: String::new(),
            col,
        }
    }

    fn newline(&mut self) {
        self.out.push_str("\r\n\t");
        self.col = 1;
    }

    /// Adds `text` after a space, or on a new line if it would pass the width.
    fn word(&mut self, text: &str) {
        if self.col + 1 + text.len() > WIDTH && self.col > 1 {
            self.newline();
        } else {
            self.out.push(' ');
            self.col += 1;
        }
        self.out.push_str(text);
        self.col += text.len();
    }

    fn tag(&mut self, name: &str, value: &str) {
        self.word(&format!("{name}={value};"));
    }

    fn list(&mut self, name: &str, items: &[String]) {
        self.list_with(name, items, ':');
    }

    /// A list whose separator allows folding after it.
    fn list_with(&mut self, name: &str, items: &[String], sep: char) {
        let mut pieces: Vec<String> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let head = if i == 0 {
                format!("{name}=")
            } else {
                String::new()
            };
            let tail = if i + 1 == items.len() {
                ";".to_string()
            } else {
                sep.to_string()
            };
            pieces.push(format!("{head}{item}{tail}"));
        }
        let Some((first, rest)) = pieces.split_first() else {
            return;
        };
        self.word(first);
        for p in rest {
            if self.col + p.len() > WIDTH {
                self.newline();
            }
            self.out.push_str(p);
            self.col += p.len();
        }
    }

    /// A base64 value that may be folded anywhere (FWS is allowed inside).
    fn breakable(&mut self, name: &str, value: &str, semicolon: bool) {
        let head = format!("{name}=");
        if self.col + 1 + head.len() + 4 > WIDTH {
            self.newline();
        } else {
            self.out.push(' ');
            self.col += 1;
        }
        self.out.push_str(&head);
        self.col += head.len();
        let mut rest = value;
        while !rest.is_empty() {
            let room = WIDTH.saturating_sub(self.col).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.out.push_str(now);
            self.col += now.len();
            rest = later;
            if !rest.is_empty() {
                self.newline();
            }
        }
        if semicolon {
            if self.col + 1 > WIDTH {
                self.newline();
            }
            self.out.push(';');
            self.col += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verifier takes the summary from the one tag-list parse; it must
    /// say what the lenient reading says.
    #[test]
    fn summary_from_the_parse_equals_the_lenient_one() {
        for value in [
            &b"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA; b=AB CD\r\n\tEF"[..],
            b" v = 1 ;a=ed25519-sha256;d= example.org ;s=s1;i=@mail.example.org;h=From:To;bh=x;b=y;r=y",
            b"v=1; a=RSA-SHA256; d=e.example; s=s; h=from; bh=a; b=; r= n ;",
            b"d=only.example; s=x",
            b"v=1; a=rsa-sha256; d=a.example; d=b.example; s=s",
            b"garbage",
        ] {
            let (summary, _) = Signature::parse_summarized(value);
            assert_eq!(summary, SignatureSummary::of(value), "{}", String::from_utf8_lossy(value));
        }
    }

    fn sample() -> Signature {
        Signature {
            algorithm: Algorithm::RsaSha256,
            signature: vec![7u8; 256],
            body_hash: vec![9u8; 32],
            header_canon: Canon::Relaxed,
            body_canon: Canon::Simple,
            domain: "example.com".into(),
            signed_headers: [
                "from",
                "to",
                "subject",
                "date",
                "message-id",
                "from",
                "list-unsubscribe-post",
            ]
            .map(String::from)
            .to_vec(),
            identity: Some("joe;x@sub.example.com".into()),
            body_length: Some(1234),
            selector: "sel".into(),
            timestamp: Some(1_700_000_000),
            expiration: Some(1_800_000_000),
            copied_headers: Some(vec!["From:a b@c".into(), "To:x|y".into()]),
        }
    }

    #[test]
    fn emitted_signature_is_folded_and_parses_back() {
        let sig = sample();
        let value = sig.to_header_value();
        for (i, line) in format!("DKIM-Signature:{value}").split("\r\n").enumerate() {
            assert!(line.len() <= 78, "line {i} too long: {line:?}");
        }
        assert_eq!(Signature::parse(value.as_bytes()).unwrap(), sig);
    }

    #[test]
    fn rejects_invalid_signatures() {
        let base = "v=1; a=rsa-sha256; d=example.com; s=s; h=from:to; bh=AAAA; b=AAAA";
        assert!(Signature::parse(base.as_bytes()).is_ok());
        for (input, want) in [
            (
                base.replace("v=1", "v=2"),
                SignatureError::Version("2".into()),
            ),
            (
                base.replace("a=rsa-sha256", "a=rsa-md5"),
                SignatureError::UnknownAlgorithm("rsa-md5".into()),
            ),
            (
                base.replace("h=from:to", "h=to"),
                SignatureError::FromNotSigned,
            ),
            (
                base.replace("d=example.com;", ""),
                SignatureError::MissingTag("d"),
            ),
            (
                format!("{base}; i=@other.com"),
                SignatureError::IdentityNotInDomain,
            ),
            (
                format!("{base}; i=@badexample.com"),
                SignatureError::IdentityNotInDomain,
            ),
            (
                format!("{base}; t=10; x=5"),
                SignatureError::ExpiresBeforeSigned,
            ),
            (
                format!("{base}; q=http"),
                SignatureError::QueryMethod("http".into()),
            ),
            (
                format!("{base}; c=fancy"),
                SignatureError::Canonicalization("fancy".into()),
            ),
            (format!("{base}; l=x"), SignatureError::BadValue("l")),
            (
                base.replace("b=AAAA", "b="),
                SignatureError::MissingTag("b"),
            ),
            (
                base.replace("bh=AAAA", "bh= \r\n "),
                SignatureError::MissingTag("bh"),
            ),
            (
                format!("{base}; d=x.org"),
                SignatureError::Tags(TagError::Duplicate("d".into())),
            ),
        ] {
            assert_eq!(Signature::parse(input.as_bytes()), Err(want), "{input}");
        }
    }

    const BASE: &str = "v=1; a=rsa-sha256; d=example.com; s=s; h=from:to; bh=AAAA; b=AAAA";

    /// RFC 6376 §3.5 names v, a, b, bh, d, h and s REQUIRED; §6.1.1:
    /// "Verifiers MUST return PERMFAIL (signature missing required tag)".
    #[test]
    fn each_required_tag_missing_or_empty_is_refused() {
        for tag in ["v", "a", "b", "bh", "d", "h", "s"] {
            let specs: Vec<&str> = BASE.split("; ").collect();
            let without: Vec<&str> = specs
                .iter()
                .copied()
                .filter(|t| !t.starts_with(&format!("{tag}=")))
                .collect();
            let emptied: Vec<String> = specs
                .iter()
                .map(|t| {
                    if t.starts_with(&format!("{tag}=")) {
                        format!("{tag}=")
                    } else {
                        t.to_string()
                    }
                })
                .collect();
            for input in [without.join("; "), emptied.join("; ")] {
                let got = Signature::parse(input.as_bytes());
                assert!(
                    matches!(got, Err(SignatureError::MissingTag(t)) if t == tag),
                    "{input}: {got:?}"
                );
            }
        }
    }

    /// RFC 6376 §3.2: "Unrecognized tags MUST be ignored"; tag names are
    /// case-sensitive, so `D=` is an unknown tag, not a second `d=`.
    #[test]
    fn unknown_tags_are_ignored() {
        let input = format!("{BASE}; foo=bar baz; D=other.example; zz=; x9_y=1");
        let sig = Signature::parse(input.as_bytes()).unwrap();
        assert_eq!(sig.domain, "example.com");
    }

    /// RFC 6376 §3.5 h=: FWS may stand on either side of a colon, names
    /// compare case-insensitively, and the list must not be empty; a name
    /// is 1*ftext, so whitespace inside one is a syntax error.
    #[test]
    fn h_tag_syntax() {
        for (h, want) in [
            ("From:To", Ok(vec!["From", "To"])),
            ("FROM \r\n\t: subject", Ok(vec!["FROM", "subject"])),
            (" from ", Ok(vec!["from"])),
            ("fr om:to", Err(SignatureError::BadValue("h"))),
            ("from::to", Err(SignatureError::BadValue("h"))),
            ("from:to:", Err(SignatureError::BadValue("h"))),
            ("to:subject", Err(SignatureError::FromNotSigned)),
            ("from-x:x-from", Err(SignatureError::FromNotSigned)),
        ] {
            let input = BASE.replace("h=from:to", &format!("h={h}"));
            let got = Signature::parse(input.as_bytes()).map(|s| s.signed_headers);
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "h={h:?}");
        }
    }

    /// RFC 6376 §3.5 x=: "the value of the x= tag MUST be greater than the
    /// value of the t= tag if both are present"; equal is not greater.
    #[test]
    fn expiry_equal_to_timestamp_is_invalid() {
        let at = |t: u64, x: u64| Signature::parse(format!("{BASE}; t={t}; x={x}").as_bytes());
        assert_eq!(at(10, 10), Err(SignatureError::ExpiresBeforeSigned));
        assert_eq!(at(10, 11).map(|s| s.expiration), Ok(Some(11)));
    }

    /// RFC 6376 §3.5 q=: "Unrecognized query mechanisms MUST be ignored";
    /// only a list with no dns/txt at all leaves no way to get the key.
    #[test]
    fn query_methods_other_than_dns_txt_are_skipped() {
        for (q, ok) in [
            ("dns/txt", true),
            ("http/well-known:dns/txt", true),
            ("dns", true),
            ("dns/srv", false),
            ("http", false),
        ] {
            let got = Signature::parse(format!("{BASE}; q={q}").as_bytes());
            assert_eq!(got.is_ok(), ok, "q={q}: {got:?}");
        }
    }

    /// RFC 6376 §3.5 c=: `header/body`, "simple" or "relaxed" each; with
    /// only one named it is the header's and the body is "simple"; absent,
    /// both are "simple". Anything else is an unusable signature.
    #[test]
    fn canonicalization_tag_values() {
        use Canon::{Relaxed, Simple};
        for (c, want) in [
            (None, Some((Simple, Simple))),
            (Some("relaxed"), Some((Relaxed, Simple))),
            (Some("simple/relaxed"), Some((Simple, Relaxed))),
            (Some("relaxed/relaxed"), Some((Relaxed, Relaxed))),
            (Some("relaxed/"), None),
            (Some("/relaxed"), None),
            (Some("relaxed/simple/simple"), None),
            (Some("nofws"), None),
        ] {
            let input = match c {
                Some(c) => format!("{BASE}; c={c}"),
                None => BASE.to_string(),
            };
            let got = Signature::parse(input.as_bytes())
                .ok()
                .map(|s| (s.header_canon, s.body_canon));
            assert_eq!(got, want, "c={c:?}");
        }
    }

    /// RFC 6376 §3.5 i=: `[ Local-part ] "@" domain-name`, its domain the
    /// same as or a subdomain of d= (compared case-insensitively).
    #[test]
    fn identity_syntax_and_domain() {
        for (i, want) in [
            ("@example.com", Ok(())),
            ("joe@MAIL.Example.COM", Ok(())),
            ("joe=40x@example.com", Ok(())),
            ("example.com", Err(SignatureError::BadValue("i"))),
            ("joe@com", Err(SignatureError::IdentityNotInDomain)),
            (
                "joe@example.com.evil",
                Err(SignatureError::IdentityNotInDomain),
            ),
        ] {
            let got = Signature::parse(format!("{BASE}; i={i}").as_bytes()).map(|_| ());
            assert_eq!(got, want, "i={i}");
        }
    }

    #[test]
    fn defaults_and_subdomain_identity() {
        let s = Signature::parse(b"v=1; a=ed25519-sha256; d=Example.com; s=s; h=From; bh=AA==; b=AA==; i=a@Sub.EXAMPLE.com; c=relaxed").unwrap();
        assert_eq!(
            (s.header_canon, s.body_canon),
            (Canon::Relaxed, Canon::Simple)
        );
        assert_eq!(s.identity_domain(), "Sub.EXAMPLE.com");
        assert_eq!(s.key_name(), "s._domainkey.Example.com");
    }

    proptest::proptest! {
        #[test]
        fn parse_emit_parse_is_identity(
            domain in "[a-z]{1,20}(\\.[a-z]{2,10}){1,3}",
            selector in "[a-z0-9]{1,30}",
            headers in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,25}", 0..30),
            b in proptest::collection::vec(proptest::num::u8::ANY, 1..600),
            bh in proptest::collection::vec(proptest::num::u8::ANY, 32..33),
            l in proptest::option::of(proptest::num::u64::ANY),
            t in proptest::option::of(0u64..999_999_999_999),
            relaxed in proptest::bool::ANY,
        ) {
            let mut signed_headers = vec!["from".to_string()];
            signed_headers.extend(headers);
            let sig = Signature {
                algorithm: if relaxed { Algorithm::Ed25519Sha256 } else { Algorithm::RsaSha256 },
                signature: b, body_hash: bh,
                header_canon: if relaxed { Canon::Relaxed } else { Canon::Simple },
                body_canon: Canon::Relaxed,
                domain: domain.clone(), signed_headers,
                identity: Some(format!("u@{domain}")),
                body_length: l, selector, timestamp: t, expiration: t.map(|t| t + 1),
                copied_headers: None,
            };
            let value = sig.to_header_value();
            for line in format!("DKIM-Signature:{value}").split("\r\n") {
                proptest::prop_assert!(line.len() <= 78);
            }
            let back = Signature::parse(value.as_bytes()).unwrap();
            proptest::prop_assert_eq!(back.to_header_value(), value);
            proptest::prop_assert_eq!(back, sig);
        }
    }
}

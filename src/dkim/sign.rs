//! DKIM signing (RFC 6376 §5, RFC 8463) and the signing table.
//!
//! Owns: choosing the header fields to sign (RFC 6376 §5.4.1 plus
//! oversigning), building the folded DKIM-Signature field and computing `b=`
//! over it as written, and matching author addresses against the signing
//! table. Must not: read key files or the clock.

use std::sync::Arc;

use super::canon::{BodyHash, Canon, canon_header};
use super::key::SigningKey;
use super::signature::Signature;
use super::verify::select_headers;
use crate::message::headers::Header;

/// Header fields signed by default when present (RFC 6376 §5.4.1's list,
/// plus Message-ID, Sender, MIME fields and RFC 8058's List-Unsubscribe-Post).
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

/// Fields signed once more than they occur, so none can be added later.
pub const DEFAULT_OVERSIGNED_HEADERS: &[&str] = &[
    "from",
    "subject",
    "date",
    "to",
    "cc",
    "reply-to",
    "message-id",
];

/// Builds `h=`: each listed field as many times as it occurs, oversigned
/// fields once more (an absent oversigned field is listed once).
pub fn choose_headers(headers: &[Header], list: &[String], oversign: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in list {
        let count = headers.iter().filter(|h| h.is(name)).count();
        let extra = usize::from(oversign.iter().any(|o| o.eq_ignore_ascii_case(name)));
        out.extend(std::iter::repeat_n(
            name.to_ascii_lowercase(),
            count + extra,
        ));
    }
    for name in oversign {
        if !list.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            let count = headers.iter().filter(|h| h.is(name)).count();
            out.extend(std::iter::repeat_n(name.to_ascii_lowercase(), count + 1));
        }
    }
    if !out.iter().any(|n| n == "from") {
        out.insert(0, "from".to_string());
    }
    out
}

/// One signature to add.
#[derive(Debug, Clone)]
pub struct SignSpec {
    /// The private key (its type picks the algorithm).
    pub key: Arc<SigningKey>,
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `c=` header part.
    pub header_canon: Canon,
    /// `c=` body part.
    pub body_canon: Canon,
    /// `h=` names, already chosen.
    pub signed_headers: Vec<String>,
    /// `t=`.
    pub timestamp: u64,
    /// `x=`, if the signature should expire.
    pub expiration: Option<u64>,
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The crypto library refused to sign.
    #[error("signing with the {0} key for {1} failed")]
    Crypto(String, String),
}

/// Signs `headers` and returns the DKIM-Signature field, written with `eol`.
/// `body` must be the body hash for `spec.body_canon` without a limit.
pub fn sign(
    headers: &[Header],
    spec: &SignSpec,
    body: &BodyHash,
    eol: &[u8],
) -> Result<Header, SignError> {
    let mut sig = Signature {
        algorithm: spec.key.algorithm(),
        signature: Vec::new(),
        body_hash: body.digest.to_vec(),
        header_canon: spec.header_canon,
        body_canon: spec.body_canon,
        domain: spec.domain.clone(),
        signed_headers: spec.signed_headers.clone(),
        identity: None,
        body_length: None,
        selector: spec.selector.clone(),
        timestamp: Some(spec.timestamp),
        expiration: spec.expiration,
        copied_headers: None,
    };
    // The field as it will be written, b= empty: exactly what verifiers hash.
    let unsigned = Header::new("DKIM-Signature", &sig.to_header_value(), eol);
    let mut data = select_headers(headers, None, &spec.signed_headers, spec.header_canon);
    canon_header(&unsigned, spec.header_canon, &mut data);
    data.truncate(data.len().saturating_sub(2));
    let crypto_err = || SignError::Crypto(sig.algorithm.as_str().to_string(), spec.domain.clone());
    sig.signature = spec.key.sign(&data).ok_or_else(crypto_err)?;
    Ok(Header::new("DKIM-Signature", &sig.to_header_value(), eol))
}

/// Case-insensitive glob match where `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Whether a signing-table pattern matches an author address. A pattern
/// without `@` names a domain and matches every address at exactly it.
pub fn pattern_matches(pattern: &str, address: &str) -> bool {
    if pattern.contains('@') || pattern == "*" {
        return glob_match(pattern, address);
    }
    address
        .rsplit_once('@')
        .is_some_and(|(_, domain)| glob_match(pattern, domain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::headers::split_fields;

    #[test]
    fn glob_patterns_match_like_opendkim_signing_tables() {
        for (pattern, addr, want) in [
            ("*@example.com", "joe@example.com", true),
            ("*@example.com", "joe@sub.example.com", false),
            ("*@*.example.com", "joe@sub.example.com", true),
            ("*@*.example.com", "joe@example.com", false),
            ("*", "anyone@anywhere.org", true),
            ("Joe@EXAMPLE.com", "joe@example.com", true),
            ("example.com", "joe@example.com", true),
            ("example.com", "joe@example.community", false),
            ("*.example.com", "x@a.b.example.com", true),
        ] {
            assert_eq!(pattern_matches(pattern, addr), want, "{pattern} vs {addr}");
        }
    }

    /// RFC 6376 §5.4: "The From header field MUST be signed", whatever the
    /// configured list says; names match header fields case-insensitively;
    /// a listed field the message lacks is left out of h= unless it is
    /// oversigned, where it is named once (a null string, §5.4 "Signers MAY
    /// claim to have signed header fields that do not exist") so it cannot
    /// be added later; §5.4.2: a field present n times is named n times.
    #[test]
    fn from_is_always_signed_and_absent_fields_only_when_oversigned() {
        let headers = split_fields(b"SUBJECT: s\r\nfrom: a@x\r\nX-A: 1\r\nx-a: 2\r\n");
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (signed, over, want) in [
            (&["Subject"][..], &[][..], &["from", "subject"][..]),
            (
                &["subject", "x-a", "reply-to"],
                &[],
                &["from", "subject", "x-a", "x-a"],
            ),
            (&["from", "reply-to"], &["Reply-To"], &["from", "reply-to"]),
            (
                &["from"],
                &["from", "x-a"],
                &["from", "from", "x-a", "x-a", "x-a"],
            ),
        ] {
            let h = choose_headers(&headers, &list(signed), &list(over));
            assert_eq!(h, list(want), "{signed:?} {over:?}");
        }
    }

    #[test]
    fn oversigns_identity_headers() {
        let headers =
            split_fields(b"From: a@x\r\nTo: b@y\r\nTo: c@y\r\nSubject: s\r\nReceived: z\r\n");
        let list: Vec<String> = DEFAULT_SIGNED_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let over: Vec<String> = DEFAULT_OVERSIGNED_HEADERS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let h = choose_headers(&headers, &list, &over);
        let count = |n: &str| h.iter().filter(|x| *x == n).count();
        assert_eq!(
            (count("from"), count("to"), count("subject"), count("cc")),
            (2, 3, 2, 1)
        );
        assert_eq!(count("received"), 0);
        assert_eq!(count("list-id"), 0);
    }
}

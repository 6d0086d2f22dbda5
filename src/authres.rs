//! Authentication-Results (RFC 8601): write ours, recognise forged ones.
//!
//! Owns: building the one A-R field we add (results, reason comments,
//! properties quoted where the grammar needs it) and reading the
//! authserv-id of existing A-R fields so forgeries of ours can be removed
//! (RFC 8601 §5). Must not: trust anything it reads from the message.

use crate::dkim::verify::{DkimOutcome, DkimResult};

/// One `method=result` entry with its comment and properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Method, e.g. `dkim`.
    pub method: String,
    /// Result keyword, e.g. `pass`.
    pub result: String,
    /// Human comment; written as an RFC 5322 comment.
    pub comment: Option<String>,
    /// `ptype.property=value` pairs, e.g. (`header.d`, `example.com`).
    pub props: Vec<(String, String)>,
    /// A comment written after the properties (iprev's host name).
    pub trailing: Option<String>,
}

impl Entry {
    /// The entry for one DKIM signature outcome (RFC 8601 §2.7.1, RFC 6008).
    pub fn dkim(o: &DkimOutcome) -> Entry {
        let mut comment = (!o.reason.is_empty()).then(|| o.reason.clone());
        if o.testing {
            comment = Some(match comment {
                Some(c) => format!("{c}; key in testing mode"),
                None => "key in testing mode".to_string(),
            });
        }
        let mut props = Vec::new();
        let mut add = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                props.push((k.to_string(), v.clone()));
            }
        };
        add("header.d", &o.domain);
        add(
            "header.i",
            &o.identity
                .clone()
                .or_else(|| o.domain.as_ref().map(|d| format!("@{d}"))),
        );
        add("header.s", &o.selector);
        add("header.a", &o.algorithm);
        add(
            "header.b",
            &o.b.as_ref().map(|b| b.chars().take(8).collect()),
        );
        Entry {
            method: "dkim".into(),
            result: o.result.as_str().into(),
            comment,
            props,
            trailing: None,
        }
    }

    /// The iprev entry: `iprev=pass policy.iprev=192.0.2.1 (mail.example.com)`.
    pub fn iprev(o: &crate::iprev::IprevOutcome) -> Entry {
        let comment = match (&o.name, o.reason.is_empty()) {
            (Some(name), true) => name.clone(),
            (Some(name), false) => format!("{name}: {}", o.reason),
            (None, _) => o.reason.clone(),
        };
        Entry {
            method: "iprev".into(),
            result: o.result.as_str().into(),
            comment: None,
            props: vec![("policy.iprev".into(), o.ip.to_string())],
            trailing: (!comment.is_empty()).then_some(comment),
        }
    }

    /// `dkim=none` for an unsigned message.
    pub fn dkim_none() -> Entry {
        Entry {
            method: "dkim".into(),
            result: DkimResult::None.as_str().into(),
            comment: None,
            props: Vec::new(),
            trailing: None,
        }
    }

    fn write(&self, out: &mut String) {
        out.push_str(&self.method);
        out.push('=');
        out.push_str(&self.result);
        if let Some(c) = &self.comment {
            out.push_str(" (");
            out.push_str(&comment_text(c));
            out.push(')');
        }
        for (k, v) in &self.props {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            out.push_str(&value(v));
        }
        if let Some(c) = &self.trailing {
            out.push_str(" (");
            out.push_str(&comment_text(c));
            out.push(')');
        }
    }
}

/// Builds the value of our A-R field (folded with CRLF TAB), e.g.
/// ` mx.example.org;\r\n\tdkim=pass header.d=example.com ...`.
pub fn build(authserv_id: &str, entries: &[Entry]) -> String {
    let mut out = format!(" {}", value(authserv_id));
    if entries.is_empty() {
        out.push_str("; none");
        return out;
    }
    for e in entries {
        out.push_str(";\r\n\t");
        e.write(&mut out);
    }
    out
}

/// RFC 2045 token characters: anything printable but SP and tspecials.
fn is_token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// A property value: bare when it is a token or an `[local@]domain` of
/// tokens (RFC 8601 `pvalue`), otherwise a quoted-string.
pub fn value(v: &str) -> String {
    let bare = !v.is_empty()
        && v.split('@').count() <= 2
        && v.split('@').enumerate().all(|(i, part)| {
            (i == 0 || !part.is_empty()) && part.chars().all(|c| is_token_char(c) || c == '.')
        });
    if bare {
        return v.to_string();
    }
    let mut q = String::with_capacity(v.len() + 2);
    q.push('"');
    for c in v.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Comment text with parentheses and backslashes escaped, controls removed.
fn comment_text(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    for ch in c.chars().filter(|c| !c.is_control()) {
        if matches!(ch, '(' | ')' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The authserv-id of an existing A-R field value (RFC 8601 §2.2): the first
/// token after optional CFWS, unquoted. `None` if there is none.
pub fn authserv_id(field_value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(field_value);
    let mut chars = text.chars().peekable();
    let mut depth = 0usize;
    let mut id = String::new();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted || depth > 0 => {
                let n = chars.next();
                if quoted {
                    id.extend(n);
                }
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            '"' => {
                if quoted {
                    break;
                }
                quoted = true;
            }
            _ if quoted => id.push(c),
            c if c.is_whitespace() && id.is_empty() => {}
            c if c.is_whitespace() || c == ';' || c == '(' => break,
            c => id.push(c),
        }
    }
    (!id.is_empty()).then_some(id)
}

/// Whether an A-R field value claims `our_id` (case-insensitive), i.e. is a
/// forgery of ours when it arrives from outside.
pub fn claims(field_value: &[u8], our_id: &str) -> bool {
    authserv_id(field_value).is_some_and(|id| id.eq_ignore_ascii_case(our_id))
}

/// Parses the results of an A-R field value (RFC 8601 §2.2) leniently:
/// one [`Entry`] per `method=result`, with its properties; comments dropped.
/// Used only for A-R fields from trusted authserv-ids.
pub fn parse_results(value: &str) -> Vec<Entry> {
    let text = strip_comments(value);
    let mut parts = text.split(';');
    parts.next(); // authserv-id [version]
    parts
        .filter_map(|resinfo| {
            let mut tokens = resinfo.split_whitespace();
            let (method, result) = tokens.next()?.split_once('=')?;
            let method = method
                .split('/')
                .next()
                .unwrap_or(method)
                .to_ascii_lowercase();
            let props = tokens
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_string()))
                .collect();
            Some(Entry {
                method,
                result: result.to_ascii_lowercase(),
                props,
                ..Entry::default()
            })
        })
        .collect()
}

/// Removes RFC 5322 comments (nested, with quoted-pairs), keeping quoted strings.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (mut depth, mut quoted) = (0usize, false);
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 || quoted => {
                let next = chars.next();
                if depth == 0 {
                    out.push(c);
                    out.extend(next);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                out.push(' ');
            }
            _ if depth > 0 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_authserv_id_through_comments_and_quotes() {
        for (v, want) in [
            (" mx.example.org; dkim=pass", Some("mx.example.org")),
            (" (comment) mx.example.org 1; none", Some("mx.example.org")),
            ("\r\n\tMX.Example.org;spf=pass", Some("MX.Example.org")),
            (" \"quoted.id\"; none", Some("quoted.id")),
            ("  ", None),
        ] {
            assert_eq!(authserv_id(v.as_bytes()).as_deref(), want, "{v:?}");
        }
        assert!(claims(b" MX.example.ORG; none", "mx.example.org"));
        assert!(!claims(b" other.example; none", "mx.example.org"));
    }

    #[test]
    fn values_are_quoted_when_needed() {
        for (v, want) in [
            ("example.com", "example.com"),
            ("@example.com", "@example.com"),
            ("user@example.com", "user@example.com"),
            ("ab/c+=", "\"ab/c+=\""),
            ("evil; dkim=pass", "\"evil; dkim=pass\""),
            ("a\"b\\", "\"a\\\"b\\\\\""),
            ("a\r\nb", "\"ab\""),
        ] {
            assert_eq!(value(v), want);
        }
    }

    #[test]
    fn builds_folded_field() {
        let e = Entry {
            method: "dkim".into(),
            result: "fail".into(),
            comment: Some("body hash (did not) verify".into()),
            props: vec![("header.d".into(), "example.com".into())],
            trailing: None,
        };
        assert_eq!(
            build("mx.example.org", &[e]),
            " mx.example.org;\r\n\tdkim=fail (body hash \\(did not\\) verify) header.d=example.com"
        );
        assert_eq!(build("mx", &[]), " mx; none");
    }

    #[test]
    fn parses_trusted_results() {
        let v = " mx.up.example (comment; with semicolon) 1; spf=pass (sender ok) smtp.mailfrom=a@example.org;\r\n\tdkim=fail reason=\"bad sig\" header.d=example.org; dmarc=none";
        let got = parse_results(v);
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].method.as_str(), got[0].result.as_str()),
            ("spf", "pass")
        );
        assert_eq!(
            got[0].props,
            vec![("smtp.mailfrom".to_string(), "a@example.org".to_string())]
        );
        assert_eq!(
            got[1].props[1],
            ("header.d".to_string(), "example.org".to_string())
        );
        assert!(parse_results(" id; none").is_empty());
    }
}

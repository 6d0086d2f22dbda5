//! The SMTP envelope (client address, HELO, MAIL FROM) recovered from the
//! trace headers an MTA wrote itself, for pipe mode.
//!
//! Exim 4.96+ refuses tainted variables such as `$sender_address` in
//! `transport_filter` arguments, so a filter cannot always be told the
//! envelope on its command line. The MTA does record it: `Return-path:`
//! (Exim `return_path_add`, Postfix `pipe` flag `R`) and the topmost
//! `Received:` field, which our own host wrote. Owns: reading those two,
//! only from a `Received:` whose `by` host is trusted. Must not: believe a
//! `Received:` written by anybody else.

use std::net::IpAddr;

use super::headers::Header;

/// What the trace headers say about the SMTP session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceEnvelope {
    /// Connecting client address.
    pub client_ip: Option<IpAddr>,
    /// HELO/EHLO name.
    pub helo: Option<String>,
    /// MAIL FROM (empty string = null sender `<>`).
    pub mail_from: Option<String>,
}

/// Reads the envelope from the first `Return-Path` field and the topmost
/// `Received` field, used only if its `by` host is one of `trusted_by`.
pub fn from_trace_headers(headers: &[Header], trusted_by: &[String]) -> TraceEnvelope {
    let mut env = TraceEnvelope {
        mail_from: headers
            .iter()
            .find(|h| h.is("Return-Path"))
            .map(|h| return_path(&h.value_str())),
        ..TraceEnvelope::default()
    };
    let Some(received) = headers.iter().find(|h| h.is("Received")) else {
        return env;
    };
    let parsed = parse_received(&received.value_str());
    let trusted = parsed.by.as_deref().is_some_and(|by| {
        trusted_by
            .iter()
            .any(|t| t.eq_ignore_ascii_case(by.trim_end_matches('.')))
    });
    if trusted {
        env.client_ip = parsed.ip;
        env.helo = parsed.helo;
    }
    env
}

/// `<addr>` → `addr`; `<>` → empty (null sender).
fn return_path(value: &str) -> String {
    let v = value.trim();
    let inner = v
        .strip_prefix('<')
        .and_then(|s| s.split('>').next())
        .unwrap_or(v);
    inner.trim().to_string()
}

/// The parts of a `Received:` field we use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// The first IP literal of the `from` clause.
    pub ip: Option<IpAddr>,
    /// `helo=NAME` (Exim) or the `from` host name (Postfix writes the HELO there).
    pub helo: Option<String>,
    /// The `by` host.
    pub by: Option<String>,
}

/// Parses the Exim and Postfix forms:
/// `from helo.example (rdns.example [192.0.2.1]) by mx.example ...` (Postfix),
/// `from rdns.example ([192.0.2.1] helo=helo.example) by mx.example ...` and
/// `from [192.0.2.1] (helo=helo.example) by mx.example ...` (Exim).
pub fn parse_received(value: &str) -> Received {
    let lower = value.to_ascii_lowercase();
    let from_at = word_at(&lower, "from");
    let by_at = word_at(&lower, "by");
    let from_clause = match (from_at, by_at) {
        (Some(f), Some(b)) if b > f => &value[f + 4..b],
        (Some(f), None) => &value[f + 4..],
        _ => "",
    };
    let by = by_at
        .and_then(|b| value[b + 2..].split_whitespace().next())
        .map(|s| s.trim_end_matches(';').to_string());
    let ip = ip_literal(from_clause);
    let helo = helo_param(from_clause).or_else(|| {
        let first = from_clause.split_whitespace().next()?;
        (!first.starts_with('[') && !first.starts_with('(')).then(|| first.to_string())
    });
    Received { ip, helo, by }
}

/// Byte offset of `word` as a whole word (case already folded).
fn word_at(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    text.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = i == 0 || bytes[i - 1].is_ascii_whitespace();
        let after = bytes
            .get(i + word.len())
            .is_none_or(|b| b.is_ascii_whitespace());
        before && after
    })
}

fn ip_literal(clause: &str) -> Option<IpAddr> {
    let mut rest = clause;
    while let Some(open) = rest.find('[') {
        let tail = &rest[open + 1..];
        let close = tail.find(']')?;
        let lit = &tail[..close];
        let lit = lit
            .strip_prefix("IPv6:")
            .or_else(|| lit.strip_prefix("ipv6:"))
            .unwrap_or(lit);
        if let Ok(ip) = lit.parse() {
            return Some(ip);
        }
        rest = &tail[close + 1..];
    }
    None
}

fn helo_param(clause: &str) -> Option<String> {
    let at = clause.to_ascii_lowercase().find("helo=")?;
    let name: String = clause[at + 5..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ')')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::headers::split_fields;

    #[test]
    fn parses_exim_and_postfix_received_fields() {
        for (value, ip, helo, by) in [
            (
                "from mail.example.org ([192.0.2.1] helo=smtp.example.org)\n\tby mx.example.com with esmtps (Exim 4.96)\n\t(envelope-from <a@example.org>)\n\tid 1x; Mon, 30 Nov 2026 10:00:00 +0000",
                Some("192.0.2.1"),
                Some("smtp.example.org"),
                Some("mx.example.com"),
            ),
            (
                "from [2001:db8::5] (helo=client.example) by mx.example.com with esmtp",
                Some("2001:db8::5"),
                Some("client.example"),
                Some("mx.example.com"),
            ),
            (
                "from client.example (unknown [IPv6:2001:db8::7]) by mx.example.com (Postfix) with ESMTP id 1",
                Some("2001:db8::7"),
                Some("client.example"),
                Some("mx.example.com"),
            ),
            (
                "from mail.example.org ([192.0.2.9]) by mx.example.com",
                Some("192.0.2.9"),
                Some("mail.example.org"),
                Some("mx.example.com"),
            ),
            (
                "by mx.example.com with local",
                None,
                None,
                Some("mx.example.com"),
            ),
            ("garbage (((", None, None, None),
        ] {
            let r = parse_received(value);
            assert_eq!(r.ip, ip.map(|i| i.parse().unwrap()), "{value}");
            assert_eq!(r.helo.as_deref(), helo, "{value}");
            assert_eq!(r.by.as_deref(), by, "{value}");
        }
    }

    #[test]
    fn trusts_only_our_own_received_field() {
        let block = b"Return-path: <bounce@example.org>\nReceived: from x ([192.0.2.1] helo=h.example) by mx.example.com with esmtp\nReceived: from evil ([198.51.100.1]) by mx.example.com\n";
        let headers = split_fields(block);
        let env = from_trace_headers(&headers, &["MX.example.com".to_string()]);
        assert_eq!(env.client_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(env.helo.as_deref(), Some("h.example"));
        assert_eq!(env.mail_from.as_deref(), Some("bounce@example.org"));
        let env = from_trace_headers(&headers, &["other.example".to_string()]);
        assert_eq!((env.client_ip, env.helo), (None, None));
        let null = split_fields(b"Return-Path: <>\n");
        assert_eq!(
            from_trace_headers(&null, &[]).mail_from.as_deref(),
            Some("")
        );
    }
}

//! XFORWARD and XCLIENT (Postfix extensions smtp-proto does not know).
//!
//! Owns: parsing `XFORWARD NAME=… ADDR=… …` / `XCLIENT …` attribute lists
//! (xtext-decoded, RFC 3461 §4), the client facts they carry, and writing
//! XFORWARD for the next hop. Must not: decide who may send them.

use std::net::IpAddr;

/// XFORWARD attributes we pass on (Postfix XFORWARD_README).
pub const XFORWARD_ATTRS: &[&str] = &["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"];

/// A command attribute list we cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AttrError(&'static str);

/// Attributes in command order, names upper-cased, values xtext-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs(pub Vec<(String, String)>);

impl Attrs {
    /// Parses the text after the verb.
    pub fn parse(args: &str) -> Result<Attrs, AttrError> {
        let mut out = Vec::new();
        for word in args.split_ascii_whitespace() {
            let (name, value) = word
                .split_once('=')
                .ok_or(AttrError("expected NAME=VALUE"))?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(AttrError("bad attribute name"));
            }
            out.push((name.to_ascii_uppercase(), xtext_decode(value)?));
        }
        if out.is_empty() {
            return Err(AttrError("no attributes"));
        }
        Ok(Attrs(out))
    }

    /// The last value given for `name`, unless Postfix says it is unknown.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.starts_with('[') || !v.ends_with(']') || v.parse::<IpAddr>().is_ok())
    }

    /// Adds or replaces attributes from a later command.
    pub fn merge(&mut self, other: &Attrs) {
        for (n, v) in &other.0 {
            self.0.retain(|(m, _)| m != n);
            self.0.push((n.clone(), v.clone()));
        }
    }

    /// `ADDR`, as Postfix writes it (`IPV6:` prefix for IPv6).
    pub fn addr(&self) -> Option<IpAddr> {
        let a = self.get("ADDR")?;
        let a = a
            .strip_prefix("IPV6:")
            .or_else(|| a.strip_prefix("ipv6:"))
            .unwrap_or(a);
        a.parse().ok()
    }

    /// The XFORWARD command lines for a next hop that advertised `supported`
    /// attribute names (Postfix limits each command to 512 bytes, so the
    /// attributes are spread over several lines).
    pub fn xforward_commands(&self, supported: &[String]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut line = String::from("XFORWARD");
        for (n, v) in &self.0 {
            if !XFORWARD_ATTRS.contains(&n.as_str()) || !supported.iter().any(|s| s == n) {
                continue;
            }
            let item = format!(" {n}={}", xtext_encode(v));
            if line.len() + item.len() > 500 && line.len() > 8 {
                out.push(std::mem::replace(&mut line, String::from("XFORWARD")));
            }
            line.push_str(&item);
        }
        if line.len() > 8 {
            out.push(line);
        }
        out.into_iter()
            .map(|mut l| {
                l.push_str("\r\n");
                l.into_bytes()
            })
            .collect()
    }
}

/// RFC 3461 §4 xtext: `+XX` hex escapes.
pub fn xtext_decode(s: &str) -> Result<String, AttrError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let hex = b
                .get(i + 1..i + 3)
                .ok_or(AttrError("truncated xtext escape"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| AttrError("bad xtext escape"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| AttrError("bad xtext escape"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AttrError("xtext is not UTF-8"))
}

/// RFC 3461 §4 xtext encoding.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The attribute names of an `XFORWARD` line in a next hop's EHLO reply.
pub fn advertised(ehlo_lines: &[String], keyword: &str) -> Option<Vec<String>> {
    ehlo_lines.iter().find_map(|l| {
        let mut words = l.split_ascii_whitespace();
        words
            .next()
            .filter(|w| w.eq_ignore_ascii_case(keyword))
            .map(|_| words.map(|w| w.to_ascii_uppercase()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postfix_sends() {
        let a = Attrs::parse(
            "NAME=mail.example.org ADDR=IPV6:2001:db8::25 PORT=41234 PROTO=ESMTP HELO=client.example.org IDENT=4ABC1234 SOURCE=REMOTE",
        )
        .unwrap();
        assert_eq!(a.addr(), Some("2001:db8::25".parse().unwrap()));
        assert_eq!(a.get("IDENT"), Some("4ABC1234"));
        let a = Attrs::parse("NAME=[UNAVAILABLE] ADDR=192.0.2.1").unwrap();
        assert_eq!(a.get("NAME"), None);
        assert_eq!(a.addr(), Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn xtext_round_trips_and_rejects_garbage() {
        assert_eq!(xtext_decode("a+2Bb+3Dc").unwrap(), "a+b=c");
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
        for bad in ["+", "+4", "+ZZ", "+FF"] {
            assert!(xtext_decode(bad).is_err(), "{bad}");
        }
        assert!(Attrs::parse("").is_err());
        assert!(Attrs::parse("NAME").is_err());
        assert!(Attrs::parse("N4ME=x").is_err());
    }

    #[test]
    fn writes_only_what_the_next_hop_supports() {
        let a = Attrs::parse("NAME=a.example ADDR=192.0.2.1 LOGIN=bob IDENT=Q1").unwrap();
        let supported = advertised(&["XFORWARD NAME ADDR PROTO HELO".into()], "XFORWARD").unwrap();
        let cmds = a.xforward_commands(&supported);
        assert_eq!(
            cmds,
            [b"XFORWARD NAME=a.example ADDR=192.0.2.1\r\n".to_vec()]
        );
    }

    #[test]
    fn long_attribute_lists_are_split() {
        let long = "h".repeat(300);
        let a = Attrs::parse(&format!("NAME={long} HELO={long}")).unwrap();
        let cmds = a.xforward_commands(&["NAME".into(), "HELO".into()]);
        assert_eq!(cmds.len(), 2);
        assert!(cmds.iter().all(|c| c.len() <= 512));
    }
}

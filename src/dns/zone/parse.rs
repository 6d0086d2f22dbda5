//! Master-file records (RFC 1035 §5.1, RFC 2308 §4 for `$TTL`).
//!
//! Owns the step from lexical [`Entry`]s to [`ZoneRecord`]s: control
//! entries, owner / TTL / class / type fields, and the RDATA of the types
//! [`super`] serves. It does not decide what a lookup returns.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::lex::{Entry, Token, entries, unescape_word};
use super::{FailMode, Soa, ZoneData, ZoneRecord};
use crate::dns::{Mx, name};

/// TTL used when the file sets neither `$TTL` nor an explicit TTL.
const FALLBACK_TTL: u32 = 3600;

/// What a file contributes: its records and its failure directives.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub records: Vec<ZoneRecord>,
    pub failures: Vec<(String, FailMode)>,
}

/// A parse error at a 1-based line.
#[derive(Debug)]
pub(super) struct LineError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole master file.
pub(super) fn parse(text: &str, default_origin: Option<&str>) -> Result<Parsed, LineError> {
    let entries = entries(text).map_err(|e| LineError {
        line: e.line,
        message: e.message,
    })?;
    let origin = match default_origin {
        Some(text) => Some(
            name::parse(text)
                .map_err(|e| LineError {
                    line: 0,
                    message: format!("default origin {text}: {e}"),
                })?
                .labels,
        ),
        None => None,
    };
    let mut state = State {
        origin,
        ..State::default()
    };
    let mut out = Parsed::default();
    let mut cnames = CnameCheck::default();
    for entry in &entries {
        let before = out.records.len();
        state
            .entry(entry, &mut out)
            .and_then(|()| cnames.check(&out.records[before..]))
            .map_err(|message| LineError {
                line: entry.line,
                message,
            })?;
    }
    Ok(out)
}

/// RFC 1034 §3.6.2 and RFC 2181 §10.1: a CNAME is alone at its name.
#[derive(Default)]
struct CnameCheck {
    /// Per owner: does it have a CNAME, does it have other data.
    seen: std::collections::HashMap<String, (bool, bool)>,
}

impl CnameCheck {
    fn check(&mut self, new: &[ZoneRecord]) -> Result<(), String> {
        for record in new {
            let is_cname = matches!(record.data, ZoneData::Cname(_));
            let (cname, other) = self.seen.entry(record.name.clone()).or_default();
            if *cname || (is_cname && *other) {
                return Err(format!(
                    "{} has a CNAME and other records (RFC 1034 §3.6.2)",
                    record.name
                ));
            }
            *cname |= is_cname;
            *other |= !is_cname;
        }
        Ok(())
    }
}

#[derive(Default)]
struct State {
    /// `$ORIGIN` (or the default origin), as labels of raw octets.
    origin: Option<Vec<Vec<u8>>>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    last_owner: Option<String>,
}

impl State {
    fn entry(&mut self, entry: &Entry, out: &mut Parsed) -> Result<(), String> {
        if let Some(words) = &entry.directive {
            return self.directive(words, out);
        }
        let mut fields = Fields(entry.tokens.iter());
        if let Some(Token::Word(w)) = entry.tokens.first()
            && w.starts_with('$')
        {
            fields.next_word()?;
            return self.control(w, &mut fields);
        }
        let record = self.record(entry.blank_owner, &mut fields)?;
        out.records.push(record);
        Ok(())
    }

    /// `;@servfail NAME`, `;@refused NAME`, `;@timeout NAME` (see [`super`]).
    fn directive(&self, words: &[String], out: &mut Parsed) -> Result<(), String> {
        let mode = match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            Some("servfail") => FailMode::ServFail,
            Some("refused") => FailMode::Refused,
            Some("timeout") => FailMode::Timeout,
            // Any other `;@` comment is an ordinary comment.
            _ => return Ok(()),
        };
        let [_, name] = words else {
            return Err(format!(
                "directive ;@{} takes exactly one name",
                words.join(" ")
            ));
        };
        out.failures.push((self.name(name)?, mode));
        Ok(())
    }

    /// `$ORIGIN` (RFC 1035 §5.1) and `$TTL` (RFC 2308 §4).
    fn control(&mut self, keyword: &str, fields: &mut Fields<'_>) -> Result<(), String> {
        match keyword.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let word = fields.next_word()?;
                let parsed = name::parse(word).map_err(|e| format!("{e} in name {word}"))?;
                if !parsed.absolute {
                    return Err(format!("$ORIGIN {word} must be absolute (end with '.')"));
                }
                name::check(&parsed.labels).map_err(|e| format!("{e} in name {word}"))?;
                self.origin = Some(parsed.labels);
            }
            "$TTL" => self.default_ttl = Some(ttl(fields.next_word()?)?),
            "$INCLUDE" => {
                return Err("$INCLUDE is not supported; list the file in zone_files".into());
            }
            other => return Err(format!("unknown control entry {other}")),
        }
        fields.end()
    }

    /// `<owner> [<TTL>] [<class>] <type> <RDATA>` with TTL and class in
    /// either order (RFC 1035 §5.1).
    fn record(&mut self, blank_owner: bool, fields: &mut Fields<'_>) -> Result<ZoneRecord, String> {
        let name = if blank_owner {
            self.last_owner
                .clone()
                .ok_or("no previous owner name to repeat")?
        } else {
            self.name(fields.next_word()?)?
        };
        self.last_owner = Some(name.clone());
        let mut explicit_ttl = None;
        let rtype = loop {
            let word = fields.next_word()?;
            if word.starts_with(|c: char| c.is_ascii_digit()) && explicit_ttl.is_none() {
                explicit_ttl = Some(ttl(word)?);
            } else if is_class(word) {
                if !word.eq_ignore_ascii_case("IN") {
                    return Err(format!("class {word} is not supported, only IN"));
                }
            } else {
                break word.to_ascii_uppercase();
            }
        };
        if explicit_ttl.is_some() {
            self.last_ttl = explicit_ttl;
        }
        let ttl = explicit_ttl
            .or(self.default_ttl)
            .or(self.last_ttl)
            .unwrap_or(FALLBACK_TTL);
        let data = self.rdata(&rtype, fields)?;
        Ok(ZoneRecord { name, ttl, data })
    }

    fn rdata(&self, rtype: &str, fields: &mut Fields<'_>) -> Result<ZoneData, String> {
        let data = match rtype {
            "A" => ZoneData::A(parse_ip::<Ipv4Addr>(fields.next_word()?)?),
            "AAAA" => ZoneData::Aaaa(parse_ip::<Ipv6Addr>(fields.next_word()?)?),
            "MX" => ZoneData::Mx(Mx {
                preference: number(fields.next_word()?, "MX preference")?,
                exchange: self.name(fields.next_word()?)?,
            }),
            "TXT" => ZoneData::Txt(fields.character_strings()?),
            "PTR" => ZoneData::Ptr(self.name(fields.next_word()?)?),
            "CNAME" => ZoneData::Cname(self.name(fields.next_word()?)?),
            "NS" => ZoneData::Ns(self.name(fields.next_word()?)?),
            "SOA" => ZoneData::Soa(self.soa(fields)?),
            other if is_type_mnemonic(other) => {
                // Parsed for existence only (the name then answers NODATA).
                fields.by_ref().for_each(drop);
                return Ok(ZoneData::Other(other.to_owned()));
            }
            other => return Err(format!("unknown record type {other}")),
        };
        fields.end()?;
        Ok(data)
    }

    /// SOA RDATA (RFC 1035 §3.3.13).
    fn soa(&self, fields: &mut Fields<'_>) -> Result<Soa, String> {
        Ok(Soa {
            mname: self.name(fields.next_word()?)?,
            rname: self.name(fields.next_word()?)?,
            serial: number(fields.next_word()?, "SOA serial")?,
            refresh: ttl(fields.next_word()?)?,
            retry: ttl(fields.next_word()?)?,
            expire: ttl(fields.next_word()?)?,
            minimum: ttl(fields.next_word()?)?,
        })
    }

    /// Makes `word` absolute against `$ORIGIN` and returns its canonical
    /// text ([`name::canonical`]): escapes decoded (RFC 1035 §5.1: `\X`,
    /// `\DDD`, `\.` inside a label), ASCII lower-cased. Without an origin,
    /// relative names are taken as absolute. Labels must be 1–63 octets and
    /// the name at most 255 on the wire.
    fn name(&self, word: &str) -> Result<String, String> {
        let bad = |e: name::NameError| format!("{e} in name {word}");
        let mut labels = if word == "@" {
            self.origin
                .clone()
                .ok_or_else(|| "'@' used without $ORIGIN".to_owned())?
        } else {
            let parsed = name::parse(word).map_err(bad)?;
            let mut labels = parsed.labels;
            if !parsed.absolute {
                labels.extend(self.origin.iter().flatten().cloned());
            }
            labels
        };
        name::check(&labels).map_err(bad)?;
        labels.iter_mut().for_each(|l| l.make_ascii_lowercase());
        Ok(name::render(&labels))
    }
}

/// The remaining tokens of an entry.
struct Fields<'a>(std::slice::Iter<'a, Token>);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a Token;
    fn next(&mut self) -> Option<&'a Token> {
        self.0.next()
    }
}

impl<'a> Fields<'a> {
    fn next_word(&mut self) -> Result<&'a str, String> {
        match self.0.next() {
            Some(Token::Word(w)) => Ok(w),
            Some(Token::Quoted(_)) => Err("unexpected quoted string".into()),
            None => Err("entry ends too early".into()),
        }
    }

    fn end(&mut self) -> Result<(), String> {
        match self.0.next() {
            None => Ok(()),
            Some(_) => Err("unexpected data at end of entry".into()),
        }
    }

    /// One or more `<character-string>`s, each at most 255 bytes
    /// (RFC 1035 §3.3, §3.3.14).
    fn character_strings(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let strings = self
            .0
            .by_ref()
            .map(|t| match t {
                Token::Quoted(q) => Ok(q.clone()),
                Token::Word(w) => unescape_word(w),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if strings.is_empty() {
            return Err("TXT needs at least one character-string".into());
        }
        if let Some(long) = strings.iter().find(|s| s.len() > 255) {
            return Err(format!(
                "character-string of {} bytes exceeds 255; split it into several quoted strings",
                long.len()
            ));
        }
        Ok(strings)
    }
}

fn is_class(word: &str) -> bool {
    ["IN", "CH", "CS", "HS"]
        .iter()
        .any(|c| word.eq_ignore_ascii_case(c))
}

fn is_type_mnemonic(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn parse_ip<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse().map_err(|_| format!("invalid address {word}"))
}

fn number<T: std::str::FromStr>(word: &str, what: &str) -> Result<T, String> {
    word.parse().map_err(|_| format!("invalid {what} {word}"))
}

/// A TTL: seconds, or BIND-style units (`1h30m`, `2d`, `1w`).
fn ttl(word: &str) -> Result<u32, String> {
    let bad = || format!("invalid TTL {word}");
    if let Ok(secs) = word.parse::<u32>() {
        return Ok(secs);
    }
    let mut total: u32 = 0;
    let mut digits = String::new();
    for c in word.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u32 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u32 = digits.parse().map_err(|_| bad())?;
        let add = n.checked_mul(unit).ok_or_else(bad)?;
        total = total.checked_add(add).ok_or_else(bad)?;
        digits.clear();
    }
    if digits.is_empty() {
        Ok(total)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> ZoneRecord {
        let mut p = parse(text, Some("example.com")).unwrap();
        assert_eq!(p.records.len(), 1, "{text}");
        p.records.remove(0)
    }

    #[test]
    fn owner_forms_resolve_against_origin() {
        for (text, want) in [
            ("@ A 192.0.2.1", "example.com"),
            ("www A 192.0.2.1", "www.example.com"),
            ("WWW.Other.ORG. A 192.0.2.1", "www.other.org"),
            (
                "$ORIGIN sub.example.net.\nx A 192.0.2.1",
                "x.sub.example.net",
            ),
        ] {
            assert_eq!(one(text).name, want, "{text}");
        }
    }

    #[test]
    fn owner_escapes_follow_rfc_1035_section_5_1() {
        // Names are stored as the canonical text of their octets
        // (crate::dns::name::render): printable ASCII as is, `\.` and `\\`
        // for dot and backslash, `\DDD` for every other octet.
        for (text, want) in [
            // \X (X not a digit) is X literally.
            (r"\a\B\-c A 192.0.2.1", "ab-c.example.com"),
            (r"a\;b A 192.0.2.1", "a;b.example.com"),
            // \DDD is a decimal octet (not octal: \065 is 'A', then folded).
            (r"\065\066 A 192.0.2.1", "ab.example.com"),
            (r"x\200y A 192.0.2.1", r"x\200y.example.com"),
            // \. is a dot inside one label, not a separator.
            (r"a\.b A 192.0.2.1", r"a\.b.example.com"),
            (r"a\.b.other. A 192.0.2.1", r"a\.b.other"),
            (r"a\046b A 192.0.2.1", r"a\.b.example.com"),
            // \ and a space: a space in the owner, which stays one word.
            (r"a\ b A 192.0.2.1", r"a\032b.example.com"),
            (r"a\032b A 192.0.2.1", r"a\032b.example.com"),
            // Other octets stand for themselves.
            ("a%b:c/d_e=f A 192.0.2.1", "a%b:c/d_e=f.example.com"),
            (r"a\\b A 192.0.2.1", r"a\\b.example.com"),
            // A final escaped dot is part of the label: the name is relative.
            (r"x\. A 192.0.2.1", r"x\..example.com"),
            // ASCII letters fold, other octets do not (É stays É).
            ("É A 192.0.2.1", r"\195\137.example.com"),
        ] {
            assert_eq!(one(text).name, want, "{text}");
        }
        let r = one(r"a CNAME t\ 1.Other.");
        assert_eq!(r.data, ZoneData::Cname(r"t\0321.other".into()));
        let p = parse("$ORIGIN s\\.p.example.\nx A 192.0.2.1\n", None).unwrap();
        assert_eq!(p.records[0].name, r"x.s\.p.example");
        let p = parse(";@servfail a\\ b\n", Some("example.com")).unwrap();
        assert_eq!(p.failures[0].0, r"a\032b.example.com");
    }

    #[test]
    fn character_strings_take_escapes_quoted_or_not() {
        for (text, want) in [
            (r#"a TXT "say \"hi\"""#, vec![&br#"say "hi""#[..]]),
            (r#"a TXT "\;\ \065\\""#, vec![br"; A\"]),
            (r#"a TXT x\ y \"z\""#, vec![b"x y", br#""z""#]),
            (r#"a TXT "\000\255""#, vec![b"\x00\xff"]),
        ] {
            let want: Vec<Vec<u8>> = want.into_iter().map(<[u8]>::to_vec).collect();
            assert_eq!(one(text).data, ZoneData::Txt(want), "{text}");
        }
    }

    #[test]
    fn name_limits_count_octets() {
        let l63 = "x".repeat(63);
        assert!(parse(&format!("{l63}.example. A 192.0.2.1"), None).is_ok());
        let escaped = format!("{}.example. A 192.0.2.1", r"\032".repeat(63));
        assert!(parse(&escaped, None).is_ok());
        let name_253 = format!("{}x.example.", "a.".repeat(122));
        assert!(parse(&format!("{name_253} A 192.0.2.1"), None).is_ok());
        for (text, needle) in [
            (format!("x{l63}.example. A 192.0.2.1"), "label of 64 octets"),
            (format!("a{name_253} A 192.0.2.1"), "exceeds 255"),
            (format!("a CNAME x{l63}."), "label of 64"),
        ] {
            let err = parse(&text, None).unwrap_err();
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        }
    }

    #[test]
    fn ttl_and_class_come_in_either_order() {
        for (text, want) in [
            ("a 300 IN A 192.0.2.1", 300),
            ("a IN 300 A 192.0.2.1", 300),
            ("a IN A 192.0.2.1", FALLBACK_TTL),
            ("$TTL 1h\na A 192.0.2.1", 3600),
            ("$TTL 60\na 1d2h IN A 192.0.2.1", 93_600),
        ] {
            assert_eq!(one(text).ttl, want, "{text}");
        }
    }

    #[test]
    fn blank_owner_repeats_previous_and_last_ttl_carries() {
        let p = parse("a 120 A 192.0.2.1\n  TXT \"x\"\n", None).unwrap();
        assert_eq!(p.records[1].name, "a");
        assert_eq!(p.records[1].ttl, 120);
    }

    #[test]
    fn rdata_of_each_type() {
        for (text, want) in [
            (
                "a AAAA 2001:db8::1",
                ZoneData::Aaaa("2001:db8::1".parse().unwrap()),
            ),
            (
                "a MX 10 mail",
                ZoneData::Mx(Mx {
                    preference: 10,
                    exchange: "mail.example.com".into(),
                }),
            ),
            (
                "a TXT \"v=spf1 \" \"-all\" bare",
                ZoneData::Txt(vec![
                    b"v=spf1 ".to_vec(),
                    b"-all".to_vec(),
                    b"bare".to_vec(),
                ]),
            ),
            ("a PTR host.example.", ZoneData::Ptr("host.example".into())),
            ("a CNAME b", ZoneData::Cname("b.example.com".into())),
            ("a SRV 0 5 5060 sip", ZoneData::Other("SRV".into())),
        ] {
            assert_eq!(one(text).data, want, "{text}");
        }
    }

    #[test]
    fn soa_spans_lines() {
        let r = one("@ IN SOA ns hostmaster (\n 1 ; serial\n 2h 1h 1w\n 300 )");
        let ZoneData::Soa(soa) = r.data else {
            panic!("not SOA")
        };
        assert_eq!((soa.serial, soa.refresh, soa.minimum), (1, 7200, 300));
    }

    #[test]
    fn directives_name_failing_names() {
        let p = parse(
            ";@servfail bad\n;@timeout slow.other.\n;@refused @\n",
            Some("example.com"),
        )
        .unwrap();
        assert_eq!(
            p.failures,
            [
                ("bad.example.com".to_owned(), FailMode::ServFail),
                ("slow.other".to_owned(), FailMode::Timeout),
                ("example.com".to_owned(), FailMode::Refused),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            ("a A 192.0.2.1\nb A 300.1.1.1", 2, "invalid address"),
            ("a A 192.0.2.1\n\nb CH A 192.0.2.1", 3, "class CH"),
            ("  A 192.0.2.1", 1, "no previous owner"),
            ("a MX 10", 1, "ends too early"),
            ("a A 192.0.2.1 extra", 1, "unexpected data"),
            ("$INCLUDE x", 1, "$INCLUDE"),
            ("a TXT", 1, "at least one"),
            ("a B@D x", 1, "unknown record type"),
            ("e.. N", 1, "empty label"),
            ("a..b A 192.0.2.1", 1, "empty label"),
            (".a A 192.0.2.1", 1, "empty label"),
            ("a CNAME b..", 1, "empty label"),
            ("$ORIGIN a..\n", 1, "empty label"),
            (";@servfail x..y\n", 1, "empty label"),
            // RFC 1035 §5.1 escapes gone wrong.
            ("a A 192.0.2.1\nb\\256 A 192.0.2.1", 2, "above 255"),
            ("a\\1 A 192.0.2.1", 1, "three digits"),
            ("a TXT x\\300", 1, "above 255"),
            ("a TXT \"\\999\"", 1, "above 255"),
            ("a A 192.0.2.1\n\nb TXT x\\", 3, "backslash at end"),
            ("a A 192.0.2.1\nb\\\n A 192.0.2.2", 2, "backslash at end"),
            ("$ORIGIN x\\.\n", 1, "must be absolute"),
            (";@servfail x\\\n", 1, "backslash at end of name"),
            ("a MX 10 m\\256.example.", 1, "above 255"),
        ] {
            let err = parse(text, None).unwrap_err();
            assert_eq!(err.line, line, "{text}");
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        }
    }

    #[test]
    fn cname_beside_other_data_is_rejected_at_its_line() {
        for text in [
            "a CNAME b\nx A 192.0.2.9\na A 192.0.2.1",
            "a A 192.0.2.1\nx A 192.0.2.9\na CNAME b",
            "a CNAME b\nx A 192.0.2.9\na CNAME c",
        ] {
            let err = parse(text, None).unwrap_err();
            assert_eq!(err.line, 3, "{text}");
            assert!(err.message.contains("CNAME and other"), "{text}");
        }
    }

    /// Writes `bytes` as a quoted character-string, escaping what must be.
    fn quote(bytes: &[u8]) -> String {
        let mut out = String::from("\"");
        for &b in bytes {
            match b {
                b'"' | b'\\' => out.extend(['\\', char::from(b)]),
                0x21..=0x7e | b' ' => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #[test]
        fn any_txt_bytes_survive_quoting(strings in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..=255), 1..4)
        ) {
            let quoted: Vec<String> = strings.iter().map(|s| quote(s)).collect();
            let text = format!("a.example. TXT ( {} )", quoted.join("\n  "));
            let record = parse(&text, None).unwrap().records.remove(0);
            proptest::prop_assert_eq!(record.data, ZoneData::Txt(strings));
        }
    }

    #[test]
    fn long_character_string_is_rejected() {
        let text = format!("a TXT \"{}\"", "x".repeat(256));
        assert!(parse(&text, None).unwrap_err().message.contains("255"));
    }
}

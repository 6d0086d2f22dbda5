//! DNS names as text, and their labels of raw octets.
//!
//! Owns the one text form of a name that every resolver in [`super`] takes
//! and gives back, and the conversions to and from labels:
//!
//! - `.` separates labels; one final `.` (absolute name) is allowed; `.`
//!   alone, and the empty text, are the root.
//! - `\` escapes as in RFC 1035 §5.1: `\DDD` is the octet of decimal value
//!   DDD (three digits, at most 255), `\X` for any other X is X itself, so
//!   `\.` is a dot inside a label and `\\` a backslash.
//! - Every other character stands for its own octets (its UTF-8 encoding):
//!   a space, `%`, `:`, `/`, `_`, `=` or `é` in a label is sent as is. SPF
//!   macros expand to such names (RFC 7208 §7.3, §4.8), and DNS labels are
//!   arbitrary octets (RFC 2181 §11).
//!
//! A name that is queried must fit the wire: labels of 1 to 63 octets and
//! at most 255 octets in all (RFC 1035 §2.3.4, §3.1), which is 253 octets of
//! text for a name without escapes or final dot. Case is compared for ASCII
//! letters only (RFC 4343).
//!
//! [`render`] writes labels back in the presentation form: printable ASCII
//! as is, `\.` and `\\` for dot and backslash, `\DDD` for every other octet
//! (space, control and non-ASCII octets), so a name from the wire or a zone
//! file can be shown and parsed back to the same octets.

use std::borrow::Cow;

/// Longest name on the wire, root label included (RFC 1035 §2.3.4).
pub const MAX_WIRE_LEN: usize = 255;

/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a text is not a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Two dots in a row, or a dot at the start (RFC 1035 §3.1: only the
    /// root label is empty).
    #[error("empty label")]
    EmptyLabel,
    /// A backslash with nothing after it.
    #[error("backslash at end of name")]
    TrailingBackslash,
    /// `\` followed by one or two digits only.
    #[error("\\DDD escape needs three digits")]
    ShortEscape,
    /// `\DDD` above 255.
    #[error("escape \\{0} is above 255")]
    EscapeAbove255(u32),
    /// A label of more than 63 octets.
    #[error("label of {0} octets exceeds 63")]
    LabelTooLong(usize),
    /// More than 255 octets on the wire.
    #[error("name of {0} octets exceeds 255")]
    NameTooLong(usize),
}

/// A parsed name: its labels (root excluded) and whether the text ended in
/// an unescaped `.`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels {
    /// The labels, leftmost first, each of raw octets.
    pub labels: Vec<Vec<u8>>,
    /// The text ended in an unescaped `.` (or was `.`).
    pub absolute: bool,
}

/// Decodes the escape after a backslash (RFC 1035 §5.1): the octet and how
/// many bytes of `rest` it used.
pub(crate) fn decode_escape(rest: &[u8]) -> Result<(u8, usize), NameError> {
    match rest {
        [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let value = u32::from(a - b'0') * 100 + u32::from(b - b'0') * 10 + u32::from(c - b'0');
            let byte = u8::try_from(value).map_err(|_| NameError::EscapeAbove255(value))?;
            Ok((byte, 3))
        }
        [a, ..] if a.is_ascii_digit() => Err(NameError::ShortEscape),
        [x, ..] => Ok((*x, 1)),
        [] => Err(NameError::TrailingBackslash),
    }
}

/// Splits `text` into labels of raw octets, decoding escapes. Does not
/// check lengths (see [`check`]).
pub fn parse(text: &str) -> Result<Labels, NameError> {
    let mut out = Labels::default();
    if text == "." {
        out.absolute = true;
        return Ok(out);
    }
    let bytes = text.as_bytes();
    let mut label = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'.' => {
                if label.is_empty() {
                    return Err(NameError::EmptyLabel);
                }
                out.labels.push(std::mem::take(&mut label));
                i += 1;
                if i == bytes.len() {
                    out.absolute = true;
                }
            }
            b'\\' => {
                let (octet, used) = decode_escape(bytes.get(i + 1..).unwrap_or_default())?;
                label.push(octet);
                i += 1 + used;
            }
            _ => {
                label.push(b);
                i += 1;
            }
        }
    }
    if !label.is_empty() {
        out.labels.push(label);
    }
    Ok(out)
}

/// Checks the wire limits: labels of 1–63 octets, at most 255 octets.
pub fn check(labels: &[Vec<u8>]) -> Result<(), NameError> {
    if let Some(long) = labels.iter().find(|l| l.len() > MAX_LABEL_LEN) {
        return Err(NameError::LabelTooLong(long.len()));
    }
    if labels.iter().any(Vec::is_empty) {
        return Err(NameError::EmptyLabel);
    }
    let wire = labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
    if wire > MAX_WIRE_LEN {
        return Err(NameError::NameTooLong(wire));
    }
    Ok(())
}

/// The labels of `text` when it is a name that can be queried: parses and
/// passes [`check`]; `None` otherwise (no server can hold it).
pub fn wire_labels(text: &str) -> Option<Vec<Vec<u8>>> {
    let parsed = parse(text).ok()?;
    check(&parsed.labels).ok()?;
    Some(parsed.labels)
}

/// Writes labels in presentation form (see the module docs), without a
/// final dot; the root is the empty text.
pub fn render<L: AsRef<[u8]>>(labels: impl IntoIterator<Item = L>) -> String {
    let mut out = String::new();
    for (i, label) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label.as_ref() {
            match b {
                b'.' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
    }
    out
}

/// The canonical text of a name: parsed, ASCII letters lower-cased,
/// rendered without final dot. `None` when `text` does not parse.
pub fn canonical(text: &str) -> Option<String> {
    let parsed = parse(text).ok()?;
    Some(render(parsed.labels.iter().map(|l| l.to_ascii_lowercase())))
}

/// A name of raw text (labels separated by `.`, every other character its
/// own octets, as SPF macros expand) in the escaped form the resolvers
/// take: only `\` needs escaping.
pub fn escape_raw(raw: &str) -> Cow<'_, str> {
    if raw.contains('\\') {
        Cow::Owned(raw.replace('\\', "\\\\"))
    } else {
        Cow::Borrowed(raw)
    }
}

/// The raw text of a name (the inverse of [`escape_raw`]): labels joined
/// by `.`. `None` when a label holds a `.` or the octets are not UTF-8, as
/// raw text cannot say that.
pub fn to_raw(text: &str) -> Option<String> {
    let parsed = parse(text).ok()?;
    if parsed.labels.iter().any(|l| l.contains(&b'.')) {
        return None;
    }
    String::from_utf8(parsed.labels.join(&b'.')).ok()
}

/// The proper ancestors of a rendered name (the text after each unescaped
/// `.`), nearest first, root excluded.
pub(crate) fn ancestors(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while let Some(&b) = bytes.get(i) {
            i += 1;
            match b {
                b'\\' => i += 1,
                b'.' => {
                    if let Some(rest) = text.get(i..).filter(|r| !r.is_empty()) {
                        return Some(rest);
                    }
                }
                _ => {}
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<Vec<u8>> {
        parse(text).unwrap().labels
    }

    #[test]
    fn escapes_follow_rfc_1035_section_5_1() {
        for (text, want) in [
            // \X with X not a digit is X literally.
            (r"a\bc.example", vec![&b"abc"[..], b"example"]),
            (r"\;x.example", vec![b";x", b"example"]),
            // \DDD is a decimal octet.
            (r"\065\066.example", vec![b"AB", b"example"]),
            (r"\000\255.x", vec![b"\x00\xff", b"x"]),
            // \. is a dot inside a label, \\ a backslash.
            (r"a\.b.example", vec![b"a.b", b"example"]),
            (r"a\\b.example", vec![b"a\\b", b"example"]),
            // \ followed by a space: a space in the label.
            (r"a\ b.example", vec![b"a b", b"example"]),
            // Raw octets stand for themselves.
            ("a b.x", vec![b"a b", b"x"]),
            ("a%b:c/d_e=f.x", vec![b"a%b:c/d_e=f", b"x"]),
            ("é.x", vec!["é".as_bytes(), b"x"]),
        ] {
            assert_eq!(labels(text), want, "{text}");
        }
    }

    #[test]
    fn bad_names_are_named() {
        for (text, want) in [
            ("a..b", NameError::EmptyLabel),
            (".a", NameError::EmptyLabel),
            ("a..", NameError::EmptyLabel),
            (r"a\", NameError::TrailingBackslash),
            (r"a\256", NameError::EscapeAbove255(256)),
            (r"a\999", NameError::EscapeAbove255(999)),
            (r"a\1", NameError::ShortEscape),
            (r"a\12b", NameError::ShortEscape),
        ] {
            assert_eq!(parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn root_and_absolute_names() {
        assert_eq!(
            parse(".").unwrap(),
            Labels {
                labels: vec![],
                absolute: true
            }
        );
        assert_eq!(parse("").unwrap(), Labels::default());
        assert!(parse("a.b.").unwrap().absolute);
        assert!(!parse(r"a.b\.").unwrap().absolute);
        assert_eq!(labels(r"a.b\."), [&b"a"[..], b"b."]);
    }

    #[test]
    fn wire_limits_count_octets_not_text() {
        let l63 = "x".repeat(63);
        assert!(wire_labels(&format!("{l63}.example")).is_some());
        assert!(wire_labels(&format!("x{l63}.example")).is_none());
        // 63 escaped octets are 252 characters but one 63-octet label.
        assert!(wire_labels(&format!("{}.example", r"\032".repeat(63))).is_some());
        let name_253 = format!("{}x.example", "a.".repeat(122));
        assert_eq!(name_253.len(), 253);
        assert!(wire_labels(&name_253).is_some());
        assert!(wire_labels(&format!("{name_253}.")).is_some());
        assert!(wire_labels(&format!("a{name_253}")).is_none());
        assert!(wire_labels("a..b").is_none());
    }

    #[test]
    fn render_round_trips_any_octets() {
        let all: Vec<u8> = (0..=255u8).collect();
        let chunks: Vec<Vec<u8>> = all.chunks(63).map(<[u8]>::to_vec).collect();
        for chunk in &chunks {
            let text = render([chunk]);
            assert_eq!(labels(&text), std::slice::from_ref(chunk), "{text}");
        }
        assert_eq!(render([&b"a b"[..], b"x.y", b"c\\d"]), r"a\032b.x\.y.c\\d");
        assert_eq!(render(["é"]), r"\195\169");
        assert_eq!(render(Vec::<Vec<u8>>::new()), "");
    }

    #[test]
    fn canonical_lowercases_ascii_only() {
        assert_eq!(canonical("Example.COM.").unwrap(), "example.com");
        assert_eq!(canonical("A B.X").unwrap(), r"a\032b.x");
        assert_eq!(canonical(r"a\032b.x"), canonical("a b.x"));
        assert_eq!(canonical(r"\097"), canonical("A"));
        // Non-ASCII octets keep their case: É is not é.
        assert_ne!(canonical("É.x"), canonical("é.x"));
        assert_eq!(canonical("a..b"), None);
    }

    #[test]
    fn raw_text_round_trips() {
        for raw in ["a b.x.example", r"a\b.x", "a%b.x", "é.x", "a:b/c.x"] {
            assert_eq!(to_raw(&escape_raw(raw)).as_deref(), Some(raw), "{raw}");
            assert_eq!(
                canonical(&escape_raw(raw)),
                canonical(&render(labels(&escape_raw(raw))))
            );
        }
        assert_eq!(to_raw(r"a\.b.x"), None);
        assert_eq!(to_raw(r"\200.x"), None);
    }

    #[test]
    fn ancestors_skip_escaped_dots() {
        let got: Vec<&str> = ancestors(r"a\.b.c\\.d").collect();
        assert_eq!(got, [r"c\\.d", "d"]);
        let got: Vec<&str> = ancestors(r"x\046y.z").collect();
        assert_eq!(got, ["z"]);
        assert_eq!(ancestors("").count(), 0);
    }
}

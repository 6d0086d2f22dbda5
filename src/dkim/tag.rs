//! DKIM tag=value lists (RFC 6376 §3.2), shared by signatures and key records.
//!
//! ```text
//! tag-list  =  tag-spec *( ";" tag-spec ) [ ";" ]
//! tag-spec  =  [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
//! tag-name  =  ALPHA *ALNUMPUNC
//! tag-value =  [ tval *( 1*(WSP / FWS) tval ) ]
//! ```
//! Owns: splitting, duplicate detection, and locating the `b=` value in raw
//! header bytes. Must not: interpret tag values.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

/// Why a tag list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// A tag-spec without `=`.
    #[error("tag without '=': {0:?}")]
    MissingEquals(String),
    /// A tag name that is not `ALPHA *ALNUMPUNC`.
    #[error("invalid tag name {0:?}")]
    BadName(String),
    /// The same tag twice (RFC 6376 §3.2: invalid).
    #[error("duplicate tag {0}=")]
    Duplicate(String),
}

fn is_fws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_fws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_fws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_fws(b)).map_or(start, |p| p + 1);
    &s[start..end]
}

fn valid_name(name: &[u8]) -> bool {
    matches!(name.first(), Some(b) if b.is_ascii_alphabetic())
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A parsed tag list: names in order with their values (FWS trimmed at both
/// ends, inner FWS kept).
///
/// The input is converted to text once (lossily; tag names and separators are
/// ASCII, so this equals converting each piece) and tags are ranges into it.
#[derive(Debug, Clone, Default)]
pub struct TagList {
    text: String,
    tags: Vec<(Range<usize>, Range<usize>)>,
}

impl PartialEq for TagList {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for TagList {}

/// The range of `part` (a subslice of `whole`) within `whole`.
fn range_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

impl TagList {
    /// Parses a tag list. Empty tag-specs (`;;`, trailing `;`) are tolerated.
    pub fn parse(input: &[u8]) -> Result<TagList, TagError> {
        /// Tag lists up to this long find duplicates by comparison.
        const SMALL: usize = 24;
        // Checked first: a valid (nearly always ASCII) value is copied as it
        // is, without the lossy decoder's walk over it.
        let text = match std::str::from_utf8(input) {
            Ok(valid) => valid.to_owned(),
            Err(_) => String::from_utf8_lossy(input).into_owned(),
        };
        let bytes = text.as_bytes();
        let mut tags: Vec<(Range<usize>, Range<usize>)> = Vec::with_capacity(16);
        // Names seen: compared with those before while there are few (a real
        // signature has about a dozen tags: no hashing, no allocation), in a
        // set past that, since a hostile field may carry 100 000 tags and
        // comparing each with all before it was quadratic (tests/hostile).
        let mut seen: HashSet<&[u8]> = HashSet::new();
        for spec in bytes.split(|&b| b == b';') {
            let spec = trim_fws(spec);
            if spec.is_empty() {
                continue;
            }
            let Some(eq) = spec.iter().position(|&b| b == b'=') else {
                return Err(TagError::MissingEquals(lossy(spec)));
            };
            let name = trim_fws(&spec[..eq]);
            if !valid_name(name) {
                return Err(TagError::BadName(lossy(name)));
            }
            let duplicate = if tags.len() < SMALL {
                tags.iter().any(|(n, _)| bytes.get(n.clone()) == Some(name))
            } else {
                if seen.is_empty() {
                    seen.extend(tags.iter().filter_map(|(n, _)| bytes.get(n.clone())));
                }
                !seen.insert(name)
            };
            if duplicate {
                return Err(TagError::Duplicate(lossy(name)));
            }
            let value = trim_fws(&spec[eq + 1..]);
            tags.push((range_in(bytes, name), range_in(bytes, value)));
        }
        Ok(TagList { text, tags })
    }

    fn str(&self, r: &Range<usize>) -> &str {
        // Ranges end at ASCII bytes or at the ends of the text, so they lie on
        // character boundaries.
        self.text.get(r.clone()).unwrap_or("")
    }

    /// The value of tag `name` (case-sensitive, as RFC 6376 §3.2 says).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(n, _)| self.str(n) == name)
            .map(|(_, v)| self.str(v))
    }

    /// Tags in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tags.iter().map(|(n, v)| (self.str(n), self.str(v)))
    }

    /// The first tag's name, if any.
    pub fn first_name(&self) -> Option<&str> {
        self.tags.first().map(|(n, _)| self.str(n))
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Removes every FWS character (for base64 values, RFC 6376 §2.4 / §3.5);
/// borrows when there is none.
pub fn strip_fws(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(is_fws) {
        return Cow::Borrowed(s);
    }
    // Byte by byte: a four-character pattern in `str::split` walks chars
    // through a searcher, several times slower on a folded 344-byte b=.
    let kept: Vec<u8> = s.bytes().filter(|&b| !is_fws(b)).collect();
    // Only ASCII bytes were taken out of valid UTF-8, so this cannot fail.
    Cow::Owned(String::from_utf8(kept).unwrap_or_default())
}

/// Returns `raw` (a whole DKIM-Signature field, name included) with the value
/// of its `b=` tag deleted, surrounding whitespace included (RFC 6376 §3.7).
/// Returns the input unchanged when there is no `b=` tag.
pub fn without_b_value(raw: &[u8]) -> Vec<u8> {
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return raw.to_vec();
    };
    let eol_start = value_end(raw);
    let mut pos = colon + 1;
    while pos < eol_start {
        let spec_end = raw[pos..eol_start]
            .iter()
            .position(|&b| b == b';')
            .map_or(eol_start, |p| pos + p);
        let spec = &raw[pos..spec_end];
        if let Some(eq) = spec.iter().position(|&b| b == b'=')
            && trim_fws(&spec[..eq]) == b"b"
        {
            let mut out = Vec::with_capacity(raw.len());
            out.extend_from_slice(&raw[..pos + eq + 1]);
            out.extend_from_slice(&raw[spec_end..]);
            return out;
        }
        pos = spec_end + 1;
    }
    raw.to_vec()
}

/// Index where the final line ending of a raw field starts.
fn value_end(raw: &[u8]) -> usize {
    let mut end = raw.len();
    if end > 0 && raw[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_fws_and_trailing_semicolon() {
        let t = TagList::parse(b" v = 1 ;\r\n\ta=rsa-sha256; b=ab\r\n cd;").unwrap();
        assert_eq!(t.get("v"), Some("1"));
        assert_eq!(t.get("a"), Some("rsa-sha256"));
        assert_eq!(t.get("b"), Some("ab\r\n cd"));
        assert_eq!(t.first_name(), Some("v"));
    }

    #[test]
    fn duplicates_are_found_on_both_sides_of_the_small_list_limit() {
        for n in [1, 23, 24, 25, 30] {
            let list: String = (0..n).map(|i| format!("t{i}=v;")).collect();
            for dup in [0, n - 1] {
                let text = format!("{list}t{dup}=again");
                assert_eq!(
                    TagList::parse(text.as_bytes()),
                    Err(TagError::Duplicate(format!("t{dup}"))),
                    "{n} tags, duplicate of t{dup}"
                );
            }
        }
    }

    #[test]
    fn many_tags_and_a_late_duplicate() {
        let mut list: String = (0..50_000).map(|i| format!("t{i}=v;")).collect();
        assert_eq!(
            TagList::parse(list.as_bytes()).map(|t| t.iter().count()),
            Ok(50_000)
        );
        list.push_str("t0=again");
        assert_eq!(
            TagList::parse(list.as_bytes()),
            Err(TagError::Duplicate("t0".into()))
        );
    }

    #[test]
    fn rejects_bad_lists() {
        for (input, want) in [
            (&b"a=1; a=2"[..], TagError::Duplicate("a".into())),
            (b"a=1; noequals", TagError::MissingEquals("noequals".into())),
            (b"1a=1", TagError::BadName("1a".into())),
            (b"=x", TagError::BadName(String::new())),
        ] {
            assert_eq!(TagList::parse(input), Err(want));
        }
    }

    #[test]
    fn strip_fws_removes_only_fws() {
        for (input, want) in [
            ("abc", "abc"),
            ("a b\r\n\tc ", "abc"),
            ("\u{e9} x\u{2003}y", "\u{e9}x\u{2003}y"),
            ("", ""),
        ] {
            assert_eq!(strip_fws(input), want);
        }
    }

    #[test]
    fn tag_names_are_case_sensitive() {
        let t = TagList::parse(b"V=1").unwrap();
        assert_eq!(t.get("v"), None);
    }

    #[test]
    fn b_value_removed_but_bh_kept() {
        let raw = b"DKIM-Signature: v=1; bh=abc; b=XYZ\r\n  123; d=x\r\n";
        assert_eq!(
            without_b_value(raw),
            b"DKIM-Signature: v=1; bh=abc; b=; d=x\r\n".to_vec()
        );
        let raw = b"DKIM-Signature: v=1; b = XYZ \r\n";
        assert_eq!(
            without_b_value(raw),
            b"DKIM-Signature: v=1; b =\r\n".to_vec()
        );
        let raw = b"DKIM-Signature: v=1; d=x\n";
        assert_eq!(without_b_value(raw), raw.to_vec());
    }
}

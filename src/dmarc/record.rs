//! DMARC Policy Records (RFC 9989 §4.7, §4.8): parse one TXT string.
//!
//! Owns: recognising a DMARC Policy Record (`v=DMARC1` first), splitting
//! its tag list and typing the values. Must not: do DNS or decide which
//! record applies (that is [`super::orgdomain`]) or what a policy means for
//! a message (that is [`super::eval`]).
//!
//! RFC 9989 §4.8 makes the parser lenient: unknown tags are ignored and
//! "syntax errors in the remainder of the record MUST be discarded in favor
//! of default values (if any) or ignored outright". The only hard error is
//! a string that is not a DMARC record at all ([`RecordError::NotDmarc`]).
//! Invalid (or empty) `p`/`sp`/`np` values are kept as a flag because
//! §4.10.1 gives them their own rule, which also covers a missing `p`: act
//! as `p=none` when `rua` is usable, else no DMARC processing (see
//! [`DmarcRecord::lacks_valid_policy`]). An `fo` that is not a `dmarc-fo`
//! is dropped for its default `0`.
//!
//! ```text
//! dmarc-record  = dmarc-version *(dmarc-sep dmarc-tag) [dmarc-sep]
//! dmarc-version = "v" equals %s"DMARC1"      ; value case sensitive
//! dmarc-sep     = *WSP ";" *WSP
//! equals        = *WSP "=" *WSP
//! dmarc-tag     = 1*ALPHA equals 1*dmarc-value
//! dmarc-value   = %x20-3A / %x3C-7E          ; printing chars but ";"
//! dmarc-request = "none" / "quarantine" / "reject"   ; p, sp, np
//! dmarc-yorn    = "y" / "n"                  ; t
//! dmarc-psd     = "y" / "n" / "u"            ; psd
//! dmarc-rors    = "r" / "s"                  ; adkim, aspf
//! dmarc-urilist = dmarc-uri *(*WSP "," *WSP dmarc-uri)   ; rua, ruf
//! ```

use std::fmt;

/// Why a TXT string is not a usable DMARC record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The first tag is not `v=DMARC1` (RFC 9989 §4.7 `v`): the string
    /// "MUST be ignored".
    #[error("not a DMARC record (must start with v=DMARC1)")]
    NotDmarc,
}

/// A Domain Owner Assessment Policy (`p=`, `sp=`, `np=`; RFC 9989 §4.7).
///
/// ```text
/// dmarc-request = "none" / "quarantine" / "reject"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Policy {
    /// `none`: no expression of preference (monitoring mode).
    None,
    /// `quarantine`: failing mail is suspicious.
    Quarantine,
    /// `reject`: failing mail is not a valid use of the domain.
    Reject,
}

impl Policy {
    /// Parses a `dmarc-request` value (ABNF strings are case-insensitive).
    pub fn parse(value: &str) -> Option<Policy> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }

    /// The keyword as written in records and A-R comments.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }

    /// One level below: what `t=y` asks for (RFC 9989 §4.7 `t`), and what
    /// RFC 7489 §6.6.4 applied to messages outside the `pct` sample.
    pub fn one_level_below(self) -> Policy {
        match self {
            Policy::Reject => Policy::Quarantine,
            Policy::Quarantine | Policy::None => Policy::None,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifier alignment mode (`adkim=`, `aspf=`; RFC 9989 §4.4, §4.7).
///
/// ```text
/// dmarc-rors = "r" / "s"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alignment {
    /// `r` (default): same Organizational Domain.
    #[default]
    Relaxed,
    /// `s`: identical domains.
    Strict,
}

/// The `psd=` flag (RFC 9989 §4.7).
///
/// ```text
/// dmarc-psd = "y" / "n" / "u"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Psd {
    /// `y`: the domain is a Public Suffix Domain.
    Yes,
    /// `n`: not a PSD, and the Organizational Domain of itself and below.
    No,
    /// `u` (default): not a PSD; the tree walk decides.
    #[default]
    Unknown,
}

/// A parsed DMARC Policy Record (RFC 9989 §4.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DmarcRecord {
    /// `p=`: policy for the domain itself; `None` when the tag is absent
    /// or invalid (both take the rule of RFC 9989 §4.10.1, see
    /// [`DmarcRecord::lacks_valid_policy`]).
    pub policy: Option<Policy>,
    /// `sp=`: policy for existing subdomains; absent or invalid gives `None`.
    pub subdomain_policy: Option<Policy>,
    /// `np=`: policy for non-existent subdomains; absent or invalid gives `None`.
    pub np: Option<Policy>,
    /// `adkim=` (default relaxed).
    pub adkim: Alignment,
    /// `aspf=` (default relaxed).
    pub aspf: Alignment,
    /// `t=y`: testing mode (RFC 9989 §4.7, Appendix A.6).
    pub testing: bool,
    /// `psd=`.
    pub psd: Psd,
    /// `pct=` (RFC 7489 §6.3; removed by RFC 9989 but still honoured in
    /// PSL mode). `None` when absent or not an integer 0..=100.
    pub pct: Option<u8>,
    /// `rua=` as written.
    pub rua: Option<String>,
    /// `ruf=` as written.
    pub ruf: Option<String>,
    /// `fo=` as written (failure reporting options, RFC 9991 §3.1); `None`
    /// (meaning the default `0`) when absent or not a valid `dmarc-fo`.
    pub fo: Option<String>,
    /// `p`, `sp` or `np` tags present with a value that is not a
    /// `dmarc-request` (RFC 9989 §4.10.1 has a rule for these).
    pub invalid_policy_tags: Vec<String>,
    /// Pieces ignored under RFC 9989 §4.8 (unknown tags, bad values,
    /// duplicates), for diagnostics.
    pub ignored: Vec<String>,
}

/// Whether `txt` starts with the `v=DMARC1` tag (RFC 9989 §4.10 step 2).
///
/// Whitespace before `v` is allowed: the §4.8 ABNF has none there, but §4.7
/// says records "follow the extensible tag-value syntax" of DKIM, whose
/// `tag-spec` (RFC 6376 §3.2) admits it, and the tag is still the first.
pub fn is_dmarc_record(txt: &[u8]) -> bool {
    let text = String::from_utf8_lossy(txt);
    let first = text.split(';').next().unwrap_or_default();
    matches!(split_spec(first), Some((name, value)) if name.eq_ignore_ascii_case("v") && value == "DMARC1")
}

/// Splits one tag-spec into trimmed name and value; `None` without `=`.
fn split_spec(spec: &str) -> Option<(&str, &str)> {
    let (name, value) = spec.split_once('=')?;
    Some((name.trim(), value.trim()))
}

fn valid_tag_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic())
}

impl DmarcRecord {
    /// Parses one DMARC TXT string (RFC 9989 §4.8); lenient past `v=DMARC1`.
    pub fn parse(txt: &[u8]) -> Result<DmarcRecord, RecordError> {
        if !is_dmarc_record(txt) {
            return Err(RecordError::NotDmarc);
        }
        let text = String::from_utf8_lossy(txt);
        let mut record = DmarcRecord::default();
        let mut seen: Vec<String> = Vec::new();
        for spec in text.split(';').skip(1) {
            if spec.trim().is_empty() {
                continue;
            }
            match split_spec(spec) {
                Some((name, value)) if valid_tag_name(name) => {
                    let name = name.to_ascii_lowercase();
                    if seen.contains(&name) {
                        record.ignored.push(format!("duplicate {name}= ignored"));
                        continue;
                    }
                    seen.push(name.clone());
                    // `p=`, `sp=`, `np=` with no value are tags "that are
                    // not valid" (§4.10.1), not absent ones: they take the
                    // invalid-policy rule. Other empty values are ignored.
                    if value.is_empty() && !matches!(name.as_str(), "p" | "sp" | "np") {
                        record.ignored.push(format!("empty {name}= ignored"));
                        continue;
                    }
                    record.apply(&name, value);
                }
                _ => record
                    .ignored
                    .push(format!("malformed tag {:?}", spec.trim())),
            }
        }
        Ok(record)
    }

    /// Stores one tag's value; bad values fall back to defaults (§4.8).
    fn apply(&mut self, name: &str, value: &str) {
        match name {
            "p" | "sp" | "np" => self.apply_policy(name, value),
            "adkim" => self.adkim = self.alignment(name, value),
            "aspf" => self.aspf = self.alignment(name, value),
            "t" => self.testing = self.yes_no(name, value),
            "psd" => self.psd = self.psd_flag(value),
            "pct" => self.pct = self.percent(value),
            "rua" => self.rua = Some(value.to_string()),
            "ruf" => self.ruf = Some(value.to_string()),
            "fo" => self.fo = self.failure_options(value),
            "v" => self.ignored.push("v= not first".into()),
            _ => self.ignored.push(format!("unknown tag {name}=")),
        }
    }

    fn apply_policy(&mut self, name: &str, value: &str) {
        let parsed = Policy::parse(value);
        if parsed.is_none() {
            self.invalid_policy_tags.push(name.to_string());
        }
        match name {
            "p" => self.policy = parsed,
            "sp" => self.subdomain_policy = parsed,
            _ => self.np = parsed,
        }
    }

    fn alignment(&mut self, name: &str, value: &str) -> Alignment {
        match value.to_ascii_lowercase().as_str() {
            "s" => Alignment::Strict,
            "r" => Alignment::Relaxed,
            _ => {
                self.ignored.push(format!("bad {name}= value, using r"));
                Alignment::Relaxed
            }
        }
    }

    fn yes_no(&mut self, name: &str, value: &str) -> bool {
        match value.to_ascii_lowercase().as_str() {
            "y" => true,
            "n" => false,
            _ => {
                self.ignored.push(format!("bad {name}= value, using n"));
                false
            }
        }
    }

    fn psd_flag(&mut self, value: &str) -> Psd {
        match value.to_ascii_lowercase().as_str() {
            "y" => Psd::Yes,
            "n" => Psd::No,
            "u" => Psd::Unknown,
            _ => {
                self.ignored.push("bad psd= value, using u".into());
                Psd::Unknown
            }
        }
    }

    /// `fo=` when it matches `dmarc-fo` (RFC 9989 §4.8): a colon list of
    /// `0`, `1`, `d`, `s`, each at most once, `0` and `1` not together.
    /// Anything else is a syntax error, discarded for the default `0`.
    fn failure_options(&mut self, value: &str) -> Option<String> {
        let mut seen: Vec<String> = Vec::new();
        for option in value.split(':').map(|o| o.trim().to_ascii_lowercase()) {
            let known = matches!(option.as_str(), "0" | "1" | "d" | "s");
            if !known || seen.contains(&option) {
                seen.clear();
                break;
            }
            seen.push(option);
        }
        let both = seen.iter().any(|o| o == "0") && seen.iter().any(|o| o == "1");
        if seen.is_empty() || both {
            self.ignored.push("bad fo= value, using 0".into());
            return None;
        }
        Some(value.to_string())
    }

    fn percent(&mut self, value: &str) -> Option<u8> {
        let pct = value.parse::<u8>().ok().filter(|p| *p <= 100);
        if pct.is_none() {
            self.ignored.push("bad pct= value".into());
        }
        pct
    }

    /// Whether the record lacks a valid `p` or has an invalid `sp`/`np`:
    /// the condition of RFC 9989 §4.10.1 under which the receiver acts as
    /// `p=none` (with a usable `rua`) or applies no DMARC processing.
    ///
    /// A record with no `p=` at all is included. §4.7 says such a record
    /// "is treated as if it included p=none (see Section 4.10.1)", and
    /// §4.10.1 says what happens to a record that "does not contain a
    /// valid p tag": `p=none` only when `rua` holds a valid URI. We read
    /// §4.7 as pointing to that rule, not as overriding it, since one that
    /// has no `p` does not contain a valid one.
    pub fn lacks_valid_policy(&self) -> bool {
        self.policy.is_none() || !self.invalid_policy_tags.is_empty()
    }

    /// Whether `rua=` holds at least one syntactically valid URI (the
    /// condition of RFC 9989 §4.10.1 for invalid policy tags).
    pub fn has_valid_rua(&self) -> bool {
        self.rua
            .as_deref()
            .is_some_and(|list| list.split(',').any(|u| valid_uri(u.trim())))
    }
}

/// A loose RFC 3986 check: `scheme ":" rest`, with an optional obsolete
/// `!size` suffix (RFC 9989 §4.8 `obs-dmarc-uri`) and no spaces.
fn valid_uri(uri: &str) -> bool {
    let uri = uri.split('!').next().unwrap_or_default();
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !rest.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> DmarcRecord {
        DmarcRecord::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn version_must_come_first_and_match_exactly() {
        for (txt, ok) in [
            ("v=DMARC1; p=reject", true),
            ("v = DMARC1 ;p=none", true),
            // Leading whitespace: DKIM's tag-spec reading (see is_dmarc_record).
            (" v=DMARC1; p=none", true),
            ("v=DMARC1 p=none", false),
            ("V=DMARC1", true),
            ("v=DMARC1", true),
            ("v=dmarc1; p=reject", false),
            ("p=reject; v=DMARC1", false),
            ("v=DMARC2; p=reject", false),
            ("", false),
            ("v=spf1 -all", false),
            ("v=DMARC1x; p=none", false),
        ] {
            assert_eq!(is_dmarc_record(txt.as_bytes()), ok, "{txt}");
            assert_eq!(DmarcRecord::parse(txt.as_bytes()).is_ok(), ok, "{txt}");
        }
    }

    #[test]
    fn tags_are_typed_and_p_need_not_be_second() {
        let r = parse(
            "v=DMARC1; adkim=s; aspf=S; t=y; psd=n; p=Quarantine; sp=reject; np=none; pct=50; rua=mailto:a@example.com",
        );
        assert_eq!(r.policy, Some(Policy::Quarantine));
        assert_eq!(r.subdomain_policy, Some(Policy::Reject));
        assert_eq!(r.np, Some(Policy::None));
        assert_eq!((r.adkim, r.aspf), (Alignment::Strict, Alignment::Strict));
        assert!(r.testing);
        assert_eq!(r.psd, Psd::No);
        assert_eq!(r.pct, Some(50));
        assert!(r.has_valid_rua());
        assert!(r.invalid_policy_tags.is_empty());
    }

    #[test]
    fn defaults_apply_when_tags_are_absent() {
        let r = parse("v=DMARC1");
        assert_eq!(r.policy, None);
        assert_eq!((r.adkim, r.aspf), (Alignment::Relaxed, Alignment::Relaxed));
        assert!(!r.testing);
        assert_eq!(r.psd, Psd::Unknown);
        assert_eq!(r.pct, None);
    }

    #[test]
    fn syntax_errors_in_the_remainder_are_ignored() {
        let r =
            parse("v=DMARC1; p=reject; foo=bar; junk; 9x=1; adkim=q; t=maybe; psd=x; pct=101;;");
        assert_eq!(r.policy, Some(Policy::Reject));
        assert_eq!(r.adkim, Alignment::Relaxed);
        assert!(!r.testing);
        assert_eq!(r.psd, Psd::Unknown);
        assert_eq!(r.pct, None);
        assert_eq!(r.ignored.len(), 7, "{:?}", r.ignored);
    }

    #[test]
    fn duplicate_tags_keep_the_first_value() {
        let r = parse("v=DMARC1; p=none; p=reject");
        assert_eq!(r.policy, Some(Policy::None));
        assert_eq!(r.ignored, vec!["duplicate p= ignored".to_string()]);
    }

    #[test]
    fn invalid_policy_values_are_flagged() {
        let r = parse("v=DMARC1; p=rejected; sp=quarantin; np=reject");
        assert_eq!(r.policy, None);
        assert_eq!(r.invalid_policy_tags, vec!["p", "sp"]);
        assert_eq!(r.np, Some(Policy::Reject));
    }

    #[test]
    fn rua_needs_one_syntactically_valid_uri() {
        for (rua, ok) in [
            ("mailto:d@example.com", true),
            ("bogus, mailto:d@example.com!10m", true),
            ("https://r.example/x", true),
            ("d@example.com", false),
            ("mailto:", false),
            ("1x:abc", false),
        ] {
            let r = parse(&format!("v=DMARC1; p=bad; rua={rua}"));
            assert_eq!(r.has_valid_rua(), ok, "{rua}");
        }
    }

    // RFC 9989 §4.7 p and §4.10.1: a missing p, or a p/sp/np with no value,
    // is a record that "does not contain a valid p tag" (or an sp/np "that
    // is not valid"); the evaluator then needs a valid rua.
    #[test]
    fn missing_or_empty_policy_tags_lack_a_valid_policy() {
        for (txt, lacks) in [
            ("v=DMARC1; p=reject", false),
            ("v=DMARC1; p=none; sp=reject; np=quarantine", false),
            ("v=DMARC1", true),
            ("v=DMARC1; rua=mailto:a@example.com", true),
            ("v=DMARC1; p=", true),
            ("v=DMARC1; p=reject; sp=", true),
            ("v=DMARC1; p=reject; np= ", true),
            ("v=DMARC1; p=reject; sp=bogus", true),
        ] {
            assert_eq!(parse(txt).lacks_valid_policy(), lacks, "{txt}");
        }
        assert_eq!(parse("v=DMARC1; sp=").invalid_policy_tags, vec!["sp"]);
    }

    // RFC 9989 §4.8: "Syntax errors in the remainder of the record MUST be
    // discarded in favor of default values": fo= that is not a dmarc-fo
    // (unknown option, repeated option, 0 and 1 together) means fo=0.
    #[test]
    fn invalid_fo_falls_back_to_the_default() {
        for (fo, kept) in [
            ("0", true),
            ("1", true),
            ("d", true),
            ("d:s", true),
            ("1:d:s", true),
            ("s:0", true),
            ("d:1:s", true),
            ("D:S", true),
            ("0:1", false),
            ("1:1", false),
            ("d:d", false),
            ("x", false),
            ("1:x", false),
            ("1,d", false),
            ("1:", false),
        ] {
            let r = parse(&format!("v=DMARC1; p=none; fo={fo}"));
            assert_eq!(r.fo.is_some(), kept, "{fo}");
        }
    }

    // RFC 9989 §4.7: "unknown tags MUST be ignored"; pct, rf and ri are
    // not in the registry any more, so they change nothing but pct (which
    // RFC 7489 mode still reads).
    #[test]
    fn removed_tags_change_nothing() {
        let plain = parse("v=DMARC1; p=reject");
        let r = parse("v=DMARC1; p=reject; rf=afrf; ri=86400; pct=20");
        assert_eq!(
            DmarcRecord {
                pct: None,
                ignored: Vec::new(),
                ..r
            },
            plain
        );
        let r = parse("v=DMARC1; p=reject; rf=; ri=x");
        assert_eq!(
            DmarcRecord {
                ignored: Vec::new(),
                ..r
            },
            plain
        );
    }

    // RFC 9989 §4.8: dmarc-sep = *WSP ";" *WSP, equals = *WSP "=" *WSP,
    // and the record may end in one separator.
    #[test]
    fn whitespace_and_a_trailing_separator_are_allowed() {
        for txt in [
            "v=DMARC1;p=reject;adkim=s;",
            "v=DMARC1 ; p = reject ; adkim = s ;",
            "v=DMARC1\t;\tp=reject\t; adkim=s",
            "v=DMARC1; p=reject; adkim=s; ",
        ] {
            let r = parse(txt);
            assert_eq!(r.policy, Some(Policy::Reject), "{txt:?}");
            assert_eq!(r.adkim, Alignment::Strict, "{txt:?}");
            assert!(r.ignored.is_empty(), "{txt:?} {:?}", r.ignored);
        }
    }

    // RFC 9989 §4.8: other empty values are syntax errors: the default.
    #[test]
    fn empty_values_of_other_tags_take_defaults() {
        let r = parse("v=DMARC1; p=reject; adkim=; t=; psd=; fo=");
        assert_eq!(r.adkim, Alignment::Relaxed);
        assert!(!r.testing);
        assert_eq!(r.psd, Psd::Unknown);
        assert_eq!(r.fo, None);
        assert!(!r.lacks_valid_policy());
    }

    #[test]
    fn one_level_below_follows_t_tag_text() {
        assert_eq!(Policy::Reject.one_level_below(), Policy::Quarantine);
        assert_eq!(Policy::Quarantine.one_level_below(), Policy::None);
        assert_eq!(Policy::None.one_level_below(), Policy::None);
    }
}

//! SPF macro strings (RFC 7208 §7): parsing and expansion.
//!
//! Owns: the [`MacroString`] token list, its parser (syntax errors are typed
//! [`MacroError`]s that the record parser turns into `permerror`), and the
//! pure, synchronous expansion against a [`MacroContext`]. Must not: do DNS.
//! The `p` letter needs a PTR walk (§5.5); the evaluator does it and hands
//! the validated name in through [`MacroContext::validated_ptr`].
//!
//! ```text
//! domain-spec      = macro-string domain-end
//! domain-end       = ( "." toplabel [ "." ] ) / macro-expand
//! toplabel         = ( *alphanum ALPHA *alphanum ) /
//!                    ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
//! explain-string   = *( macro-string / SP )
//! macro-string     = *( macro-expand / macro-literal )
//! macro-expand     = ( "%{" macro-letter transformers *delimiter "}" )
//!                    / "%%" / "%_" / "%-"
//! macro-literal    = %x21-24 / %x26-7E
//! macro-letter     = "s" / "l" / "o" / "d" / "i" / "p" / "h" /
//!                    "c" / "r" / "t" / "v"
//! transformers     = *DIGIT [ "r" ]
//! delimiter        = "." / "-" / "+" / "," / "/" / "_" / "="
//! ```

use std::fmt;
use std::net::IpAddr;

/// Longest domain name a query may use after expansion (RFC 7208 §7.3).
pub const MAX_DOMAIN_LEN: usize = 253;

/// A macro-string syntax error (RFC 7208 §7.1); always a `permerror`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacroError {
    /// `%` followed by something other than `{`, `%`, `_` or `-`.
    #[error("'%' must be followed by '{{', '%', '_' or '-'")]
    BadPercent,
    /// `%{` without a closing `}`.
    #[error("unterminated macro")]
    Unterminated,
    /// Not one of the macro letters.
    #[error("unknown macro letter {0:?}")]
    UnknownLetter(char),
    /// `c`, `r` or `t` outside an `exp=` explanation (§7.2).
    #[error("macro letter {0:?} is only allowed in explanations")]
    ExplanationOnly(char),
    /// A zero digit transformer (§7.3: the value MUST be nonzero).
    #[error("macro digit transformer must be nonzero")]
    ZeroDigits,
    /// Trailing garbage inside the braces.
    #[error("invalid character {0:?} in macro")]
    BadTransformer(char),
    /// A character outside `macro-literal` (control, space, non-ASCII).
    #[error("invalid character {0:?} in macro-string")]
    BadLiteral(char),
    /// A domain-spec that does not end in a top label or a macro.
    #[error("domain-spec must end in a macro or a valid top label")]
    BadDomainEnd,
}

/// A macro letter (RFC 7208 §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Letter {
    /// `s`: the sender.
    Sender,
    /// `l`: local-part of the sender.
    Local,
    /// `o`: domain of the sender.
    SenderDomain,
    /// `d`: the current domain.
    Domain,
    /// `i`: the IP, dotted (nibbles for IPv6).
    Ip,
    /// `p`: the validated domain name of the IP.
    Ptr,
    /// `v`: `in-addr` or `ip6`.
    IpVersion,
    /// `h`: the HELO/EHLO domain.
    Helo,
    /// `c`: the readable client IP (explanations only).
    ClientIp,
    /// `r`: the receiving host (explanations only).
    Receiver,
    /// `t`: the current time (explanations only).
    Timestamp,
}

impl Letter {
    fn from_char(c: char) -> Option<Self> {
        Some(match c.to_ascii_lowercase() {
            's' => Self::Sender,
            'l' => Self::Local,
            'o' => Self::SenderDomain,
            'd' => Self::Domain,
            'i' => Self::Ip,
            'p' => Self::Ptr,
            'v' => Self::IpVersion,
            'h' => Self::Helo,
            'c' => Self::ClientIp,
            'r' => Self::Receiver,
            't' => Self::Timestamp,
            _ => return None,
        })
    }

    /// The lower-case letter.
    pub fn as_char(self) -> char {
        match self {
            Self::Sender => 's',
            Self::Local => 'l',
            Self::SenderDomain => 'o',
            Self::Domain => 'd',
            Self::Ip => 'i',
            Self::Ptr => 'p',
            Self::IpVersion => 'v',
            Self::Helo => 'h',
            Self::ClientIp => 'c',
            Self::Receiver => 'r',
            Self::Timestamp => 't',
        }
    }

    fn explanation_only(self) -> bool {
        matches!(self, Self::ClientIp | Self::Receiver | Self::Timestamp)
    }
}

/// One `%{...}` expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macro {
    /// Which value.
    pub letter: Letter,
    /// Upper-case letter: URL-escape the result (§7.3).
    pub url_escape: bool,
    /// Keep only this many right-hand parts (nonzero).
    pub keep: Option<u32>,
    /// `r`: reverse the parts before keeping.
    pub reverse: bool,
    /// Characters to split on; empty means `.`.
    pub delimiters: String,
}

/// One piece of a macro-string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Text copied as is.
    Literal(String),
    /// A macro to expand.
    Macro(Macro),
}

/// A parsed macro-string (or explain-string).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MacroString {
    /// The pieces, in order; adjacent literals are merged.
    pub tokens: Vec<Token>,
}

/// What the macro letters expand to (RFC 7208 §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroContext<'a> {
    /// `s`: the sender (`local@domain`).
    pub sender: &'a str,
    /// `l`: its local-part (`postmaster` when it has none).
    pub local: &'a str,
    /// `o`: its domain.
    pub sender_domain: &'a str,
    /// `d`: the current domain.
    pub domain: &'a str,
    /// The client IP (`i`, `c`, `v`); IPv4-mapped addresses already unmapped.
    pub ip: IpAddr,
    /// `p`: the validated PTR name, or `None` for `unknown`.
    pub validated_ptr: Option<&'a str>,
    /// `h`: the HELO/EHLO domain.
    pub helo: &'a str,
    /// `r`: the receiving host.
    pub receiver: &'a str,
    /// `t`: seconds since the Unix epoch.
    pub now: u64,
}

impl MacroString {
    /// Parses a macro-string; `explain` allows SP and the letters `c r t`.
    pub fn parse(s: &str, explain: bool) -> Result<Self, MacroError> {
        let mut out = MacroString::default();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            if c == '%' {
                rest = out.parse_percent(&rest[1..], explain)?;
            } else {
                check_literal(c, explain)?;
                out.push_literal(&rest[..c.len_utf8()]);
                rest = &rest[c.len_utf8()..];
            }
        }
        Ok(out)
    }

    /// Parses a domain-spec: a macro-string that ends in a macro or in
    /// `"." toplabel ["."]` (RFC 7208 §7.1).
    pub fn parse_domain_spec(s: &str) -> Result<Self, MacroError> {
        let spec = Self::parse(s, false)?;
        match spec.tokens.last() {
            Some(Token::Macro(_)) => Ok(spec),
            Some(Token::Literal(tail)) if valid_domain_end(tail) => Ok(spec),
            _ => Err(MacroError::BadDomainEnd),
        }
    }

    /// True when the string uses `letter` anywhere.
    pub fn uses(&self, letter: Letter) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::Macro(m) if m.letter == letter))
    }

    fn push_literal(&mut self, s: &str) {
        if let Some(Token::Literal(last)) = self.tokens.last_mut() {
            last.push_str(s);
        } else {
            self.tokens.push(Token::Literal(s.to_owned()));
        }
    }

    /// Handles what follows a `%`; returns the rest of the input.
    fn parse_percent<'s>(&mut self, rest: &'s str, explain: bool) -> Result<&'s str, MacroError> {
        let after = rest.get(1..).unwrap_or("");
        match rest.chars().next() {
            Some('%') => self.push_literal("%"),
            Some('_') => self.push_literal(" "),
            Some('-') => self.push_literal("%20"),
            Some('{') => {
                let end = after.find('}').ok_or(MacroError::Unterminated)?;
                let m = parse_macro_body(&after[..end], explain)?;
                self.tokens.push(Token::Macro(m));
                return Ok(&after[end + 1..]);
            }
            _ => return Err(MacroError::BadPercent),
        }
        Ok(after)
    }

    /// Expands the string (RFC 7208 §7.3). Never fails: every value is
    /// known once `ctx` is built.
    pub fn expand(&self, ctx: &MacroContext<'_>) -> String {
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Literal(s) => out.push_str(s),
                Token::Macro(m) => out.push_str(&expand_macro(m, ctx)),
            }
        }
        out
    }

    /// Expands a domain-spec and truncates it to [`MAX_DOMAIN_LEN`] by
    /// dropping labels from the left (§7.3).
    pub fn expand_domain(&self, ctx: &MacroContext<'_>) -> String {
        truncate_domain(&self.expand(ctx))
    }
}

impl fmt::Display for MacroString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.tokens {
            match token {
                Token::Literal(s) => f.write_str(&escape_literal(s))?,
                Token::Macro(m) => write!(f, "{m}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Macro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.letter.as_char();
        let c = if self.url_escape {
            c.to_ascii_uppercase()
        } else {
            c
        };
        write!(f, "%{{{c}")?;
        if let Some(n) = self.keep {
            write!(f, "{n}")?;
        }
        if self.reverse {
            f.write_str("r")?;
        }
        write!(f, "{}}}", self.delimiters)
    }
}

/// `%` and space written back as `%%` and `%_`.
fn escape_literal(s: &str) -> String {
    s.replace('%', "%%").replace(' ', "%_")
}

fn check_literal(c: char, explain: bool) -> Result<(), MacroError> {
    let ok = matches!(c, '\x21'..='\x24' | '\x26'..='\x7e') || (explain && c == ' ');
    if ok {
        Ok(())
    } else {
        Err(MacroError::BadLiteral(c))
    }
}

/// `macro-letter transformers *delimiter` between the braces.
fn parse_macro_body(body: &str, explain: bool) -> Result<Macro, MacroError> {
    let mut chars = body.chars().peekable();
    let first = chars.next().ok_or(MacroError::UnknownLetter('}'))?;
    let letter = Letter::from_char(first).ok_or(MacroError::UnknownLetter(first))?;
    if letter.explanation_only() && !explain {
        return Err(MacroError::ExplanationOnly(letter.as_char()));
    }
    let mut keep: Option<u32> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        // Saturate: any count above the number of parts keeps them all.
        keep = Some(keep.unwrap_or(0).saturating_mul(10).saturating_add(d));
        chars.next();
    }
    if keep == Some(0) {
        return Err(MacroError::ZeroDigits);
    }
    let reverse = chars.next_if(|c| c.eq_ignore_ascii_case(&'r')).is_some();
    let delimiters: String = chars.collect();
    if let Some(bad) = delimiters.chars().find(|c| !".-+,/_=".contains(*c)) {
        return Err(MacroError::BadTransformer(bad));
    }
    Ok(Macro {
        letter,
        url_escape: first.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters,
    })
}

/// `"." toplabel ["."]` at the end of the trailing literal.
fn valid_domain_end(tail: &str) -> bool {
    let tail = tail.strip_suffix('.').unwrap_or(tail);
    match tail.rsplit_once('.') {
        Some((_, top)) => is_toplabel(top),
        None => false,
    }
}

/// `toplabel` (RFC 7208 §7.1): alphanumerics and inner hyphens, not all
/// digits.
pub fn is_toplabel(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.iter().any(u8::is_ascii_alphabetic)
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// The raw value of one letter, before transformers.
fn letter_value(letter: Letter, ctx: &MacroContext<'_>) -> String {
    match letter {
        Letter::Sender => ctx.sender.to_owned(),
        Letter::Local => ctx.local.to_owned(),
        Letter::SenderDomain => ctx.sender_domain.to_owned(),
        Letter::Domain => ctx.domain.to_owned(),
        Letter::Ip => dotted_ip(ctx.ip),
        Letter::Ptr => ctx.validated_ptr.unwrap_or("unknown").to_owned(),
        Letter::IpVersion => match ctx.ip {
            IpAddr::V4(_) => "in-addr".to_owned(),
            IpAddr::V6(_) => "ip6".to_owned(),
        },
        Letter::Helo => ctx.helo.to_owned(),
        Letter::ClientIp => ctx.ip.to_string(),
        Letter::Receiver => ctx.receiver.to_owned(),
        Letter::Timestamp => ctx.now.to_string(),
    }
}

/// `i`: dotted quad, or 32 dot-separated nibbles for IPv6 (§7.3).
pub fn dotted_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let nibbles: Vec<String> = v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0x0f])
                .map(|n| format!("{n:x}"))
                .collect();
            nibbles.join(".")
        }
    }
}

fn expand_macro(m: &Macro, ctx: &MacroContext<'_>) -> String {
    let value = letter_value(m.letter, ctx);
    let delimiters = if m.delimiters.is_empty() {
        "."
    } else {
        m.delimiters.as_str()
    };
    let mut parts: Vec<&str> = value.split(|c| delimiters.contains(c)).collect();
    if m.reverse {
        parts.reverse();
    }
    let keep = m.keep.map_or(parts.len(), |n| {
        usize::try_from(n).unwrap_or(usize::MAX).min(parts.len())
    });
    let joined = parts[parts.len().saturating_sub(keep)..].join(".");
    if m.url_escape {
        url_escape(&joined)
    } else {
        joined
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Drops labels from the left until the name fits in [`MAX_DOMAIN_LEN`]
/// (§7.3). A trailing dot is not counted.
pub fn truncate_domain(name: &str) -> String {
    let mut rest = name;
    while rest.strip_suffix('.').unwrap_or(rest).len() > MAX_DOMAIN_LEN {
        match rest.split_once('.') {
            Some((_, tail)) => rest = tail,
            None => return String::new(),
        }
    }
    rest.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 7208 §7.4 context.
    fn rfc_ctx(ip: &str) -> MacroContext<'static> {
        MacroContext {
            sender: "strong-bad@email.example.com",
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            validated_ptr: Some("mx.example.org"),
            helo: "mx.example.org",
            receiver: "mx.example.net",
            now: 1_000_000_000,
        }
    }

    fn expand(s: &str, ip: &str) -> String {
        MacroString::parse(s, true).unwrap().expand(&rfc_ctx(ip))
    }

    #[test]
    fn rfc7208_section_7_4_examples_expand_as_listed() {
        for (input, want) in [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
        ] {
            assert_eq!(expand(input, "192.0.2.3"), want, "{input}");
        }
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01"),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
    }

    #[test]
    fn every_letter_expands() {
        for (input, want) in [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{l}", "strong-bad"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{i}", "192.0.2.3"),
            ("%{p}", "mx.example.org"),
            ("%{v}", "in-addr"),
            ("%{h}", "mx.example.org"),
            ("%{c}", "192.0.2.3"),
            ("%{r}", "mx.example.net"),
            ("%{t}", "1000000000"),
        ] {
            assert_eq!(expand(input, "192.0.2.3"), want, "{input}");
        }
        assert_eq!(expand("%{c}", "2001:db8::cb01"), "2001:db8::cb01");
        assert_eq!(expand("%{v}", "2001:db8::1"), "ip6");
    }

    #[test]
    fn p_without_validated_name_is_unknown() {
        let mut ctx = rfc_ctx("192.0.2.3");
        ctx.validated_ptr = None;
        let m = MacroString::parse("%{p}", false).unwrap();
        assert_eq!(m.expand(&ctx), "unknown");
    }

    #[test]
    fn escapes_delimiters_and_url_encoding() {
        for (input, want) in [
            ("%%", "%"),
            ("%_", " "),
            ("%-", "%20"),
            ("a%%b%_c%-d", "a%b c%20d"),
            ("%{S}", "strong-bad%40email.example.com"),
            ("%{L}", "strong-bad"),
            ("%{s.}", "strong-bad@email.example.com"),
            ("%{s@}", "__err__"),
        ] {
            if want == "__err__" {
                assert!(MacroString::parse(input, true).is_err(), "{input}");
                continue;
            }
            assert_eq!(expand(input, "192.0.2.3"), want, "{input}");
        }
        let ctx = MacroContext {
            local: "a+b,c/d_e=f-g.h",
            ..rfc_ctx("192.0.2.3")
        };
        for (input, want) in [
            ("%{l+}", "a.b,c/d_e=f-g.h"),
            ("%{l,}", "a+b.c/d_e=f-g.h"),
            ("%{l/}", "a+b,c.d_e=f-g.h"),
            ("%{l_}", "a+b,c/d.e=f-g.h"),
            ("%{l=}", "a+b,c/d_e.f-g.h"),
            ("%{l-}", "a+b,c/d_e=f.g.h"),
            ("%{l.}", "a+b,c/d_e=f-g.h"),
            ("%{l+,/_=-.}", "a.b.c.d.e.f.g.h"),
            ("%{l2r+,/_=-.}", "b.a"),
            ("%{l99999999999999999999}", "a+b,c/d_e=f-g.h"),
            ("%{L}", "a%2Bb%2Cc%2Fd_e%3Df-g.h"),
        ] {
            let got = MacroString::parse(input, false).unwrap().expand(&ctx);
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn syntax_errors_are_typed() {
        for (input, explain, want) in [
            ("%", false, MacroError::BadPercent),
            ("%x", false, MacroError::BadPercent),
            ("%{d", false, MacroError::Unterminated),
            ("%{x}", false, MacroError::UnknownLetter('x')),
            ("%{}", false, MacroError::UnknownLetter('}')),
            ("%{c}", false, MacroError::ExplanationOnly('c')),
            ("%{r}", false, MacroError::ExplanationOnly('r')),
            ("%{t}", false, MacroError::ExplanationOnly('t')),
            ("%{d0}", false, MacroError::ZeroDigits),
            ("%{d1x}", false, MacroError::BadTransformer('x')),
            ("a b", false, MacroError::BadLiteral(' ')),
            ("é", true, MacroError::BadLiteral('é')),
        ] {
            assert_eq!(MacroString::parse(input, explain), Err(want), "{input}");
        }
        assert!(MacroString::parse("%{c} %{r} %{t}", true).is_ok());
    }

    #[test]
    fn domain_spec_must_end_in_toplabel_or_macro() {
        for (input, ok) in [
            ("example.com", true),
            ("example.com.", true),
            ("%{d}", true),
            ("foo.%{d}", true),
            ("%{d}.com", true),
            ("%{d}com", false),
            ("museum", false),
            ("museum.", false),
            ("example.123", false),
            ("example.-com", false),
            ("example.c-om", true),
            ("", false),
        ] {
            assert_eq!(MacroString::parse_domain_spec(input).is_ok(), ok, "{input}");
        }
    }

    #[test]
    fn long_expansions_drop_left_labels() {
        let long = format!("{}.example.com", ["abcdefghij"; 30].join("."));
        let got = truncate_domain(&long);
        assert!(got.len() <= MAX_DOMAIN_LEN);
        assert!(got.ends_with(".example.com"));
        assert!(long.ends_with(&got));
        assert!(!got.starts_with('.'));
        assert_eq!(truncate_domain(&"x".repeat(300)), "");
    }

    #[test]
    fn display_round_trips() {
        for s in ["%{d}", "a%%b%_c", "%{L2r+-}.x", "%{ir}.%{v}._spf.%{d2}"] {
            let m = MacroString::parse(s, true).unwrap();
            assert_eq!(MacroString::parse(&m.to_string(), true).unwrap(), m);
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_and_expand_never_panic(s in "\\PC{0,40}|[%{}a-zA-Z0-9.+,/_=-]{0,40}") {
            if let Ok(m) = MacroString::parse(&s, true) {
                let _ = m.expand_domain(&rfc_ctx("2001:db8::1"));
                let again = MacroString::parse(&m.to_string(), true);
                proptest::prop_assert_eq!(again, Ok(m));
            }
        }
    }
}

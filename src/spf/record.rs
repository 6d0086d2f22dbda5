//! SPF records (RFC 7208 §4.5, §4.6, §5, §6, §12): parse a TXT record into
//! terms.
//!
//! Owns: recognising `v=spf1` records and parsing them, whole, into a typed
//! [`Record`]; any syntax error is a typed [`ParseError`] that the evaluator
//! reports as `permerror` (§4.6: a record with a syntax error anywhere is
//! not evaluated at all). Must not: do DNS or expand macros.
//!
//! ```text
//! record           = version terms *SP
//! version          = "v=spf1"
//! terms            = *( 1*SP ( directive / modifier ) )
//! directive        = [ qualifier ] mechanism
//! qualifier        = "+" / "-" / "?" / "~"
//! mechanism        = ( all / include / a / mx / ptr / ip4 / ip6 / exists )
//! all              = "all"
//! include          = "include"  ":" domain-spec
//! a                = "a"      [ ":" domain-spec ] [ dual-cidr-length ]
//! mx               = "mx"     [ ":" domain-spec ] [ dual-cidr-length ]
//! ptr              = "ptr"    [ ":" domain-spec ]
//! ip4              = "ip4"      ":" ip4-network   [ ip4-cidr-length ]
//! ip6              = "ip6"      ":" ip6-network   [ ip6-cidr-length ]
//! exists           = "exists"   ":" domain-spec
//! modifier         = redirect / explanation / unknown-modifier
//! redirect         = "redirect" "=" domain-spec
//! explanation      = "exp" "=" domain-spec
//! unknown-modifier = name "=" macro-string
//! name             = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
//! ip4-cidr-length  = "/" ("0" / %x31-39 0*1DIGIT) ; value range 0-32
//! ip6-cidr-length  = "/" ("0" / %x31-39 0*2DIGIT) ; value range 0-128
//! dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ]
//! ip4-network      = qnum "." qnum "." qnum "." qnum
//! ip6-network      = <as per RFC 4291, Section 2.2>
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::macros::{MacroError, MacroString};

/// Why a TXT record is not a valid SPF record; evaluated as `permerror`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The record does not start with `v=spf1` followed by SP or its end.
    #[error("not an SPF record (no v=spf1)")]
    NotSpf,
    /// A byte outside printable ASCII and SP (§3.1, §4.6.1).
    #[error("invalid character 0x{0:02x} in record")]
    BadByte(u8),
    /// A term whose name is no mechanism (§4.6.1).
    #[error("unknown mechanism '{0}'")]
    UnknownMechanism(String),
    /// A mechanism that takes no argument has one, or a required one is
    /// missing.
    #[error("bad argument for '{0}'")]
    BadArgument(String),
    /// A bad CIDR prefix length (§5.6).
    #[error("invalid CIDR length in '{0}'")]
    BadCidr(String),
    /// An `ip4:` network that is not a dotted quad (§5.6).
    #[error("invalid IPv4 network '{0}'")]
    BadIp4(String),
    /// An `ip6:` network that is not an RFC 4291 address (§5.6).
    #[error("invalid IPv6 network '{0}'")]
    BadIp6(String),
    /// `redirect=` or `exp=` given twice (§6).
    #[error("modifier '{0}' appears more than once")]
    DuplicateModifier(&'static str),
    /// A macro-string or domain-spec syntax error (§7.1).
    #[error("in '{term}': {error}")]
    Macro {
        /// The offending term.
        term: String,
        /// What is wrong with it.
        error: MacroError,
    },
}

/// A directive's qualifier (§4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// `+` (default): pass.
    Pass,
    /// `-`: fail.
    Fail,
    /// `~`: softfail.
    SoftFail,
    /// `?`: neutral.
    Neutral,
}

impl Qualifier {
    fn from_char(c: char) -> Option<Self> {
        Some(match c {
            '+' => Self::Pass,
            '-' => Self::Fail,
            '~' => Self::SoftFail,
            '?' => Self::Neutral,
            _ => return None,
        })
    }

    fn as_char(self) -> char {
        match self {
            Self::Pass => '+',
            Self::Fail => '-',
            Self::SoftFail => '~',
            Self::Neutral => '?',
        }
    }
}

/// Prefix lengths for `a` and `mx` (`dual-cidr-length`, §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DualCidr {
    /// IPv4 prefix length, 0–32 (default 32).
    pub v4: u8,
    /// IPv6 prefix length, 0–128 (default 128).
    pub v6: u8,
}

impl Default for DualCidr {
    fn default() -> Self {
        Self { v4: 32, v6: 128 }
    }
}

/// A mechanism (§5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// `all` (§5.1).
    All,
    /// `include:domain-spec` (§5.2).
    Include(MacroString),
    /// `a[:domain-spec][/v4][//v6]` (§5.3).
    A(Option<MacroString>, DualCidr),
    /// `mx[:domain-spec][/v4][//v6]` (§5.4).
    Mx(Option<MacroString>, DualCidr),
    /// `ptr[:domain-spec]` (§5.5).
    Ptr(Option<MacroString>),
    /// `ip4:network[/len]` (§5.6).
    Ip4(Ipv4Addr, u8),
    /// `ip6:network[/len]` (§5.6).
    Ip6(Ipv6Addr, u8),
    /// `exists:domain-spec` (§5.7).
    Exists(MacroString),
}

impl Mechanism {
    /// True for the mechanisms that count against the DNS lookup limit
    /// (§4.6.4).
    pub fn queries_dns(&self) -> bool {
        !matches!(self, Self::All | Self::Ip4(..) | Self::Ip6(..))
    }
}

/// A qualifier and a mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The result when the mechanism matches.
    pub qualifier: Qualifier,
    /// What to match.
    pub mechanism: Mechanism,
}

/// A parsed `v=spf1` record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The directives, in order.
    pub directives: Vec<Directive>,
    /// `redirect=` (§6.1).
    pub redirect: Option<MacroString>,
    /// `exp=` (§6.2).
    pub explanation: Option<MacroString>,
    /// Other modifiers, syntax-checked and otherwise ignored (§6).
    pub unknown: Vec<(String, MacroString)>,
}

/// True when `txt` is an SPF version 1 record: `v=spf1` (any case)
/// followed by SP or the end (§4.5).
pub fn is_spf_record(txt: &[u8]) -> bool {
    txt.len() >= 6
        && txt[..6].eq_ignore_ascii_case(b"v=spf1")
        && txt.get(6).is_none_or(|b| *b == b' ')
}

impl Record {
    /// Parses one TXT record (strings already joined, §3.3).
    pub fn parse(txt: &[u8]) -> Result<Self, ParseError> {
        if !is_spf_record(txt) {
            return Err(ParseError::NotSpf);
        }
        if let Some(&b) = txt.iter().find(|b| !(b' '..=b'~').contains(*b)) {
            return Err(ParseError::BadByte(b));
        }
        // Checked above: printable ASCII only.
        let text = std::str::from_utf8(&txt[6..]).map_err(|_| ParseError::NotSpf)?;
        let mut record = Record::default();
        for term in text.split(' ').filter(|t| !t.is_empty()) {
            record.add_term(term)?;
        }
        Ok(record)
    }

    fn add_term(&mut self, term: &str) -> Result<(), ParseError> {
        match modifier_split(term) {
            Some((name, value)) => self.add_modifier(term, name, value),
            None => {
                self.directives.push(parse_directive(term)?);
                Ok(())
            }
        }
    }

    fn add_modifier(&mut self, term: &str, name: &str, value: &str) -> Result<(), ParseError> {
        let macro_err = |error| ParseError::Macro {
            term: term.to_owned(),
            error,
        };
        let (slot, key) = if name.eq_ignore_ascii_case("redirect") {
            (&mut self.redirect, "redirect")
        } else if name.eq_ignore_ascii_case("exp") {
            (&mut self.explanation, "exp")
        } else {
            let value = MacroString::parse(value, false).map_err(macro_err)?;
            self.unknown.push((name.to_owned(), value));
            return Ok(());
        };
        if slot.is_some() {
            return Err(ParseError::DuplicateModifier(key));
        }
        *slot = Some(MacroString::parse_domain_spec(value).map_err(macro_err)?);
        Ok(())
    }
}

/// `name "=" value` when the term is a modifier.
fn modifier_split(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (first_ok && rest_ok).then_some((name, value))
}

fn parse_directive(term: &str) -> Result<Directive, ParseError> {
    let (qualifier, body) = match term.chars().next().and_then(Qualifier::from_char) {
        Some(q) => (q, &term[1..]),
        None => (Qualifier::Pass, term),
    };
    let name_end = body.find([':', '/']).unwrap_or(body.len());
    let (name, arg) = body.split_at(name_end);
    Ok(Directive {
        qualifier,
        mechanism: parse_mechanism(term, &name.to_ascii_lowercase(), arg)?,
    })
}

fn parse_mechanism(term: &str, name: &str, arg: &str) -> Result<Mechanism, ParseError> {
    let bad = || ParseError::BadArgument(term.to_owned());
    let domain = |spec: &str| {
        MacroString::parse_domain_spec(spec).map_err(|error| ParseError::Macro {
            term: term.to_owned(),
            error,
        })
    };
    Ok(match name {
        "all" if arg.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(domain(arg.strip_prefix(':').ok_or_else(bad)?)?),
        "exists" => Mechanism::Exists(domain(arg.strip_prefix(':').ok_or_else(bad)?)?),
        "ptr" => Mechanism::Ptr(optional_domain(arg, term)?.map(domain).transpose()?),
        "a" | "mx" => {
            let (spec, cidr) = split_dual_cidr(arg, term)?;
            let spec = optional_domain(spec, term)?.map(domain).transpose()?;
            if name == "a" {
                Mechanism::A(spec, cidr)
            } else {
                Mechanism::Mx(spec, cidr)
            }
        }
        "ip4" => parse_ip4(term, arg.strip_prefix(':').ok_or_else(bad)?)?,
        "ip6" => parse_ip6(term, arg.strip_prefix(':').ok_or_else(bad)?)?,
        "all" => return Err(bad()),
        _ => return Err(ParseError::UnknownMechanism(term.to_owned())),
    })
}

/// `[ ":" domain-spec ]`: empty, or a colon and a non-empty spec.
fn optional_domain<'a>(arg: &'a str, term: &str) -> Result<Option<&'a str>, ParseError> {
    if arg.is_empty() {
        return Ok(None);
    }
    match arg.strip_prefix(':') {
        Some(spec) => Ok(Some(spec)),
        None => Err(ParseError::BadArgument(term.to_owned())),
    }
}

/// Splits `[":" domain-spec] [dual-cidr-length]`: the CIDR part is only
/// a trailing `/digits`, `//digits` or `/digits//digits`, because a
/// domain-spec may itself contain `/` (§7.1: any visible character but `%`).
fn split_dual_cidr<'a>(arg: &'a str, term: &str) -> Result<(&'a str, DualCidr), ParseError> {
    let bad = || ParseError::BadCidr(term.to_owned());
    let mut cidr = DualCidr::default();
    let Some((head, digits)) = trailing_number(arg) else {
        return Ok((arg, cidr));
    };
    let Some(head_v6) = head.strip_suffix('/') else {
        cidr.v4 = parse_prefix(digits, 32).ok_or_else(bad)?;
        return Ok((head, cidr));
    };
    cidr.v6 = parse_prefix(digits, 128).ok_or_else(bad)?;
    match trailing_number(head_v6) {
        Some((spec, v4)) => {
            cidr.v4 = parse_prefix(v4, 32).ok_or_else(bad)?;
            Ok((spec, cidr))
        }
        None => Ok((head_v6, cidr)),
    }
}

/// `(head, digits)` when `s` ends in `/` and one or more digits.
fn trailing_number(s: &str) -> Option<(&str, &str)> {
    let (head, digits) = s.rsplit_once('/')?;
    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    numeric.then_some((head, digits))
}

/// A prefix length without leading zeros, at most `max`.
fn parse_prefix(digits: &str, max: u8) -> Option<u8> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && digits.len() <= 3;
    let n: u8 = if canonical {
        digits.parse().ok()?
    } else {
        None?
    };
    (n <= max).then_some(n)
}

fn parse_ip4(term: &str, arg: &str) -> Result<Mechanism, ParseError> {
    let (addr, len) = match arg.split_once('/') {
        Some((a, l)) => (
            a,
            parse_prefix(l, 32).ok_or(ParseError::BadCidr(term.into()))?,
        ),
        None => (arg, 32),
    };
    let ip = addr
        .parse::<Ipv4Addr>()
        .map_err(|_| ParseError::BadIp4(addr.into()))?;
    Ok(Mechanism::Ip4(ip, len))
}

fn parse_ip6(term: &str, arg: &str) -> Result<Mechanism, ParseError> {
    let (addr, len) = match arg.split_once('/') {
        Some((a, l)) => (
            a,
            parse_prefix(l, 128).ok_or(ParseError::BadCidr(term.into()))?,
        ),
        None => (arg, 128),
    };
    let ip = addr
        .parse::<Ipv6Addr>()
        .map_err(|_| ParseError::BadIp6(addr.into()))?;
    Ok(Mechanism::Ip6(ip, len))
}

impl fmt::Display for DualCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v4 != 32 {
            write!(f, "/{}", self.v4)?;
        }
        if self.v6 != 128 {
            write!(f, "//{}", self.v6)?;
        }
        Ok(())
    }
}

fn write_opt_domain(f: &mut fmt::Formatter<'_>, d: &Option<MacroString>) -> fmt::Result {
    match d {
        Some(d) => write!(f, ":{d}"),
        None => Ok(()),
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Include(d) => write!(f, "include:{d}"),
            Self::A(d, c) => {
                f.write_str("a")?;
                write_opt_domain(f, d)?;
                write!(f, "{c}")
            }
            Self::Mx(d, c) => {
                f.write_str("mx")?;
                write_opt_domain(f, d)?;
                write!(f, "{c}")
            }
            Self::Ptr(d) => {
                f.write_str("ptr")?;
                write_opt_domain(f, d)
            }
            Self::Ip4(ip, len) => write!(f, "ip4:{ip}/{len}"),
            Self::Ip6(ip, len) => write!(f, "ip6:{ip}/{len}"),
            Self::Exists(d) => write!(f, "exists:{d}"),
        }
    }
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.qualifier != Qualifier::Pass {
            write!(f, "{}", self.qualifier.as_char())?;
        }
        write!(f, "{}", self.mechanism)
    }
}

impl fmt::Display for Record {
    /// Writes the record back in canonical form (`v=spf1 ...`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=spf1")?;
        for d in &self.directives {
            write!(f, " {d}")?;
        }
        if let Some(r) = &self.redirect {
            write!(f, " redirect={r}")?;
        }
        if let Some(e) = &self.explanation {
            write!(f, " exp={e}")?;
        }
        for (name, value) in &self.unknown {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Record, ParseError> {
        Record::parse(s.as_bytes())
    }

    fn ds(s: &str) -> MacroString {
        MacroString::parse_domain_spec(s).unwrap()
    }

    #[test]
    fn version_is_case_insensitive_and_needs_space_or_end() {
        for (input, spf) in [
            ("v=spf1", true),
            ("V=SPF1 -all", true),
            ("v=spf1 ", true),
            ("v=spf10 -all", false),
            ("v=spf1-all", false),
            ("v=spf", false),
            ("spf2.0/pra -all", false),
            ("", false),
        ] {
            assert_eq!(is_spf_record(input.as_bytes()), spf, "{input}");
        }
        assert_eq!(parse("v=spf10"), Err(ParseError::NotSpf));
    }

    #[test]
    fn every_mechanism_and_qualifier_parses() {
        let r = parse(
            "v=spf1 +all -include:example.com ~a ?a:%{d}/24//64 mx mx:mail.example.com//64 \
             ptr ptr:example.com ip4:192.0.2.0/24 ip6:2001:db8::/32 ip4:192.0.2.1 exists:%{i}.x.example",
        )
        .unwrap();
        let want = vec![
            (Qualifier::Pass, Mechanism::All),
            (Qualifier::Fail, Mechanism::Include(ds("example.com"))),
            (Qualifier::SoftFail, Mechanism::A(None, DualCidr::default())),
            (
                Qualifier::Neutral,
                Mechanism::A(Some(ds("%{d}")), DualCidr { v4: 24, v6: 64 }),
            ),
            (Qualifier::Pass, Mechanism::Mx(None, DualCidr::default())),
            (
                Qualifier::Pass,
                Mechanism::Mx(Some(ds("mail.example.com")), DualCidr { v4: 32, v6: 64 }),
            ),
            (Qualifier::Pass, Mechanism::Ptr(None)),
            (Qualifier::Pass, Mechanism::Ptr(Some(ds("example.com")))),
            (
                Qualifier::Pass,
                Mechanism::Ip4("192.0.2.0".parse().unwrap(), 24),
            ),
            (
                Qualifier::Pass,
                Mechanism::Ip6("2001:db8::".parse().unwrap(), 32),
            ),
            (
                Qualifier::Pass,
                Mechanism::Ip4("192.0.2.1".parse().unwrap(), 32),
            ),
            (Qualifier::Pass, Mechanism::Exists(ds("%{i}.x.example"))),
        ];
        let got: Vec<_> = r
            .directives
            .into_iter()
            .map(|d| (d.qualifier, d.mechanism))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn mechanism_names_are_case_insensitive() {
        let r = parse("v=spf1 A MX/24 IP4:192.0.2.1 Include:example.com ALL").unwrap();
        assert_eq!(r.directives.len(), 5);
    }

    #[test]
    fn modifiers_redirect_exp_and_unknown() {
        let r = parse("v=spf1 -all redirect=_spf.example.com exp=explain.%{d} foo.bar-1=%{l}x")
            .unwrap();
        assert_eq!(r.redirect, Some(ds("_spf.example.com")));
        assert_eq!(r.explanation, Some(ds("explain.%{d}")));
        assert_eq!(r.unknown.len(), 1);
        assert!(parse("v=spf1 moo=bar moo=baz").is_ok());
    }

    #[test]
    fn syntax_errors_are_permerrors() {
        for (input, want) in [
            ("v=spf1 foo", "UnknownMechanism"),
            ("v=spf1 all:x", "BadArgument"),
            ("v=spf1 all/24", "BadArgument"),
            ("v=spf1 include", "BadArgument"),
            ("v=spf1 include:", "Macro"),
            ("v=spf1 exists", "BadArgument"),
            ("v=spf1 a:", "Macro"),
            ("v=spf1 a:museum", "Macro"),
            ("v=spf1 a/33", "BadCidr"),
            ("v=spf1 a//129", "BadCidr"),
            ("v=spf1 a/024", "BadCidr"),
            ("v=spf1 a/", "BadArgument"),
            ("v=spf1 a:example.com/", "Macro"),
            ("v=spf1 mx/24/64", "BadCidr"),
            ("v=spf1 ptr/24", "BadArgument"),
            ("v=spf1 ip4:192.0.2.256", "BadIp4"),
            ("v=spf1 ip4:192.0.2", "BadIp4"),
            ("v=spf1 ip4:192.0.2.1/33", "BadCidr"),
            ("v=spf1 ip4", "BadArgument"),
            ("v=spf1 ip6:2001:db8::/129", "BadCidr"),
            ("v=spf1 ip6:192.0.2.1", "BadIp6"),
            ("v=spf1 ip6:2001:db8::g", "BadIp6"),
            (
                "v=spf1 redirect=a.example redirect=b.example",
                "DuplicateModifier",
            ),
            ("v=spf1 exp=a.example exp=b.example", "DuplicateModifier"),
            ("v=spf1 redirect=", "Macro"),
            ("v=spf1 exp=%{c}.example.com", "Macro"),
            ("v=spf1 exists:%{x}.example.com", "Macro"),
            ("v=spf1 moo=%", "Macro"),
            ("v=spf1 1foo=bar", "UnknownMechanism"),
            ("v=spf1 -all\t", "BadByte"),
            ("v=spf1 a:ex\u{e9}.com", "BadByte"),
            ("v=spf1 =x", "UnknownMechanism"),
            ("v=spf1 +", "UnknownMechanism"),
        ] {
            let err = parse(input).expect_err(input);
            assert!(format!("{err:?}").starts_with(want), "{input}: {err:?}");
        }
    }

    #[test]
    fn multiple_spaces_and_trailing_space_are_fine() {
        assert_eq!(parse("v=spf1  a   -all  ").unwrap().directives.len(), 2);
        assert!(parse("v=spf1").unwrap().directives.is_empty());
    }

    #[test]
    fn slash_inside_macro_is_a_delimiter_not_a_cidr() {
        let r = parse("v=spf1 a:%{l/}.example.com/24").unwrap();
        assert_eq!(
            r.directives[0].mechanism,
            Mechanism::A(Some(ds("%{l/}.example.com")), DualCidr { v4: 24, v6: 128 })
        );
    }

    #[test]
    fn domain_spec_may_contain_colon_and_slash() {
        let r =
            parse("v=spf1 a:foo:bar/baz.example.com mx:foo:bar/baz.example.com/24//64").unwrap();
        assert_eq!(
            r.directives[0].mechanism,
            Mechanism::A(Some(ds("foo:bar/baz.example.com")), DualCidr::default())
        );
        assert_eq!(
            r.directives[1].mechanism,
            Mechanism::Mx(
                Some(ds("foo:bar/baz.example.com")),
                DualCidr { v4: 24, v6: 64 }
            )
        );
    }

    #[test]
    fn display_round_trips() {
        let s = "v=spf1 -a:%{d}/24//64 ~mx//0 ?ptr ip4:10.0.0.0/8 ip6:::1/128 include:x.example \
                 exists:%{ir}.x.example redirect=r.example exp=e.example x=%%";
        let r = parse(s).unwrap();
        assert_eq!(parse(&r.to_string()).unwrap(), r);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics_and_round_trips(
            s in "v=spf1( [-+~?]?(all|a|mx|ptr|ip4|ip6|include|exists|redirect|exp|x)[:=/]?[a-z0-9.%{}/:-]{0,12}){0,6}"
        ) {
            if let Ok(r) = parse(&s) {
                proptest::prop_assert_eq!(parse(&r.to_string()), Ok(r));
            }
        }

        #[test]
        fn parser_never_panics_on_bytes(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut txt = b"v=spf1 ".to_vec();
            txt.extend(b);
            let _ = Record::parse(&txt);
        }
    }
}

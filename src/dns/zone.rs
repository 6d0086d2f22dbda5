//! Offline resolver from RFC 1035 master files (`zone_files`, tests).
//!
//! Owns: loading master files ([`ZoneResolver::load`], [`ZoneResolver::parse`],
//! [`ZoneResolver::merge`]) and answering from them with the semantics of an
//! authoritative server: NXDOMAIN for absent names, NODATA (RFC 2308 §2.2)
//! for names that exist with other types or as empty non-terminals
//! (RFC 8020), CNAME chains followed (RFC 1034 §3.6.2, at most
//! [`MAX_CNAME_HOPS`] hops; longer chains and loops are temporary errors).
//! It does no I/O besides reading the files at load time.
//!
//! # Syntax (RFC 1035 §5.1)
//!
//! `$ORIGIN`, `$TTL` (RFC 2308 §4; BIND units such as `1h` allowed), `@`,
//! relative and absolute names, an omitted owner (line starts with blank
//! space) repeating the previous one, optional TTL and class `IN` in either
//! order, parentheses spanning lines, `;` comments, quoted strings. Escapes
//! work in names and character-strings alike: `\X` is X literally (X not a
//! digit: `\ ` a space, `\.` a dot inside a label, `\"` a quote, `\;`),
//! `\DDD` the octet of decimal value DDD. Names are stored as their octets
//! ([`super::name`]), so a lookup of `a b.example` finds `a\ b.example.` or
//! `a\032b.example.`; case is folded for ASCII letters only. Labels are at
//! most 63 octets and names 255 on the wire. TXT records may hold several
//! strings (joined without separator on lookup) and a name may hold
//! several TXT records. A, AAAA, MX, TXT, PTR, CNAME, NS and SOA are
//! parsed; any other type is accepted and only makes its name exist.
//! Without `$ORIGIN` (and without a default origin), relative names are
//! taken as absolute. A record without TTL takes `$TTL`, else the last
//! explicit TTL, else 3600. `$INCLUDE` is refused (list the file instead).
//!
//! # Simulated failures
//!
//! A comment line of the form `;@servfail NAME`, `;@refused NAME` or
//! `;@timeout NAME` (NAME relative to the current `$ORIGIN`) makes every
//! lookup at NAME fail with [`DnsError::Temporary`]. The loopback test server
//! answers such names with SERVFAIL, REFUSED, or not at all. Being comments,
//! these lines are ignored by other zone-file tools.
//!
//! # Empty non-terminals
//!
//! Every ancestor of an owner name exists (answers NODATA), but when the
//! files contain SOA records only ancestors at or below an SOA owner do, so
//! `com` stays NXDOMAIN when the file holds `example.com`.
//!
//! # Wildcards
//!
//! A `*` owner answers for names that do not exist below its parent
//! (RFC 4592 §3.3.1, see [`ZoneResolver::resolve`]); `*.example.com` does
//! not answer for `example.com` itself nor below a name that exists.

mod lex;
mod parse;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::{Answer, DnsError, Lookup, Mx, RecordType, Records, normalize_name};

/// Longest CNAME chain followed before giving up.
pub const MAX_CNAME_HOPS: usize = 8;

/// Error loading a master file; always names the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// Path of the file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's content is invalid.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// Path of the file, or `<text>` for [`ZoneResolver::parse`].
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Two files clash (a CNAME in one, other data at the name in another).
    #[error("zone files conflict: {0}")]
    Conflict(String),
}

/// How a name marked by a `;@` directive fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// `;@servfail`: RCODE 2.
    ServFail,
    /// `;@refused`: RCODE 5.
    Refused,
    /// `;@timeout`: no answer at all.
    Timeout,
}

/// SOA RDATA (RFC 1035 §3.3.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Primary name server.
    pub mname: String,
    /// Mailbox of the person responsible.
    pub rname: String,
    /// Serial number.
    pub serial: u32,
    /// Refresh interval, seconds.
    pub refresh: u32,
    /// Retry interval, seconds.
    pub retry: u32,
    /// Expiry, seconds.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308 §4).
    pub minimum: u32,
}

/// RDATA of one zone record. TXT keeps its character-strings apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Mail exchange.
    Mx(Mx),
    /// Character-strings, as written.
    Txt(Vec<Vec<u8>>),
    /// Reverse pointer target.
    Ptr(String),
    /// Alias target.
    Cname(String),
    /// Name server.
    Ns(String),
    /// Start of authority.
    Soa(Soa),
    /// Any other type, kept by mnemonic only.
    Other(String),
}

impl ZoneData {
    fn matches(&self, rtype: RecordType) -> bool {
        matches!(
            (self, rtype),
            (Self::A(_), RecordType::A)
                | (Self::Aaaa(_), RecordType::Aaaa)
                | (Self::Mx(_), RecordType::Mx)
                | (Self::Txt(_), RecordType::Txt)
                | (Self::Ptr(_), RecordType::Ptr)
        )
    }
}

/// One record of a zone: owner name in canonical text
/// ([`super::name::canonical`]: escapes written one way, ASCII lower case,
/// no trailing dot), TTL and data. Names in the data are canonical too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    /// Owner name.
    pub name: String,
    /// Time to live, seconds.
    pub ttl: u32,
    /// The data.
    pub data: ZoneData,
}

/// The outcome of resolving one query in the zone, with the CNAMEs crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The name where resolution ended (the query name, or the last CNAME
    /// target), in canonical text.
    pub name: String,
    /// CNAME records followed, in order.
    pub aliases: Vec<ZoneRecord>,
    /// Where the chain ended.
    pub outcome: Outcome,
}

impl Resolution {
    /// The smallest TTL of the CNAMEs followed (`u32::MAX` when none): an
    /// answer reached through them may not be cached longer.
    pub fn alias_ttl(&self) -> u32 {
        self.aliases.iter().map(|r| r.ttl).min().unwrap_or(u32::MAX)
    }
}

/// Where a [`Resolution`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Records of the asked type (never empty).
    Found(Vec<ZoneRecord>),
    /// The (final) name does not exist in the zone.
    NxDomain,
    /// The (final) name exists without records of the asked type.
    NoData,
    /// The name is marked failing with a `;@` directive.
    Failed(FailMode),
    /// The CNAME chain loops or is longer than [`MAX_CNAME_HOPS`].
    ChainTooLong,
}

/// An offline resolver over the records of one or more master files.
#[derive(Debug, Clone, Default)]
pub struct ZoneResolver {
    records: HashMap<String, Vec<ZoneRecord>>,
    failures: HashMap<String, FailMode>,
    empty_non_terminals: HashSet<String>,
}

impl ZoneResolver {
    /// Loads and merges master files (each starts without an origin unless
    /// it sets `$ORIGIN`).
    pub fn load(paths: &[PathBuf]) -> Result<Self, ZoneError> {
        let mut zone = Self::default();
        for path in paths {
            zone.merge(Self::load_file(path)?)?;
        }
        Ok(zone)
    }

    fn load_file(path: &Path) -> Result<Self, ZoneError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse_named(&text, None, &file)
    }

    /// Parses master-file text; errors name the file `<text>`.
    pub fn parse(text: &str, default_origin: Option<&str>) -> Result<Self, ZoneError> {
        Self::parse_named(text, default_origin, "<text>")
    }

    /// Parses master-file text; errors name `file`.
    pub fn parse_named(
        text: &str,
        default_origin: Option<&str>,
        file: &str,
    ) -> Result<Self, ZoneError> {
        let syntax = |line, message| ZoneError::Syntax {
            file: file.to_owned(),
            line,
            message,
        };
        let parsed = parse::parse(text, default_origin).map_err(|e| syntax(e.line, e.message))?;
        let mut zone = Self::default();
        for record in parsed.records {
            zone.records
                .entry(record.name.clone())
                .or_default()
                .push(record);
        }
        zone.failures.extend(parsed.failures);
        zone.check_cnames().map_err(|m| syntax(0, m))?;
        zone.index_empty_non_terminals();
        Ok(zone)
    }

    /// Adds the records and directives of `other` (from another file).
    pub fn merge(&mut self, other: Self) -> Result<(), ZoneError> {
        for (name, records) in other.records {
            self.records.entry(name).or_default().extend(records);
        }
        self.failures.extend(other.failures);
        self.check_cnames().map_err(ZoneError::Conflict)?;
        self.index_empty_non_terminals();
        Ok(())
    }

    /// RFC 1034 §3.6.2 and RFC 2181 §10.1: a CNAME is alone at its name,
    /// also across files.
    fn check_cnames(&self) -> Result<(), String> {
        for (name, records) in &self.records {
            let cnames = records
                .iter()
                .filter(|r| matches!(r.data, ZoneData::Cname(_)))
                .count();
            if cnames > 0 && records.len() > 1 {
                return Err(format!(
                    "{name} has a CNAME and other records (RFC 1034 §3.6.2)"
                ));
            }
        }
        Ok(())
    }

    fn index_empty_non_terminals(&mut self) {
        let apexes: Vec<&str> = self
            .records
            .values()
            .flatten()
            .filter(|r| matches!(r.data, ZoneData::Soa(_)))
            .map(|r| r.name.as_str())
            .collect();
        let mut ents = HashSet::new();
        for name in self.records.keys().chain(self.failures.keys()) {
            for ancestor in ancestors(name) {
                if apexes.is_empty() || apexes.iter().any(|apex| is_at_or_below(ancestor, apex)) {
                    ents.insert(ancestor.to_owned());
                }
            }
        }
        self.empty_non_terminals = ents;
    }

    /// True when `name` owns records or a failure directive (not merely an
    /// empty non-terminal). The overlay answers such names from the zone.
    pub fn owns(&self, name: &str) -> bool {
        self.owns_normalized(&normalize_name(name))
    }

    /// [`Self::owns`] for a name already normalized (saves parsing it
    /// twice).
    fn owns_normalized(&self, name: &str) -> bool {
        self.records.contains_key(name) || self.failures.contains_key(name)
    }

    /// True when `name` exists in the zone at all (owner or empty
    /// non-terminal).
    pub fn exists(&self, name: &str) -> bool {
        let name = normalize_name(name);
        self.owns_normalized(&name) || self.empty_non_terminals.contains(&name)
    }

    /// Number of owner names with records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the zone holds no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Resolves a query like an authoritative server would (RFC 1034
    /// §4.3.2), following CNAMEs inside the zone.
    pub fn resolve(&self, name: &str, rtype: RecordType) -> Resolution {
        let mut aliases = Vec::new();
        let Some(mut current) = lookup_key(name) else {
            // No query can carry it (a label over 63 octets, more than 255,
            // an empty label); and the ancestor walks below are quadratic in
            // its labels (a 90 KB From domain took 34 s).
            return Resolution {
                name: normalize_name(name),
                aliases,
                outcome: Outcome::NxDomain,
            };
        };
        for _ in 0..=MAX_CNAME_HOPS {
            let outcome = match self.step(&current, rtype) {
                Step::Done(outcome) => outcome,
                Step::Alias(cname) => {
                    current = cname_target(&cname);
                    aliases.push(cname);
                    continue;
                }
            };
            return Resolution {
                name: current,
                aliases,
                outcome,
            };
        }
        Resolution {
            name: current,
            aliases,
            outcome: Outcome::ChainTooLong,
        }
    }

    fn step(&self, name: &str, rtype: RecordType) -> Step {
        if let Some(mode) = self.failures.get(name) {
            return Step::Done(Outcome::Failed(*mode));
        }
        let wildcard;
        let records = match self.records.get(name) {
            Some(r) => r,
            None if self.empty_non_terminals.contains(name) => return Step::Done(Outcome::NoData),
            None => match self.wildcard(name) {
                Some(r) => {
                    wildcard = r;
                    &wildcard
                }
                None => return Step::Done(Outcome::NxDomain),
            },
        };
        if let Some(cname) = records
            .iter()
            .find(|r| matches!(r.data, ZoneData::Cname(_)))
        {
            return Step::Alias(cname.clone());
        }
        let found: Vec<ZoneRecord> = records
            .iter()
            .filter(|r| r.data.matches(rtype))
            .cloned()
            .collect();
        Step::Done(if found.is_empty() {
            Outcome::NoData
        } else {
            Outcome::Found(found)
        })
    }

    /// The records a wildcard synthesises for `name`, which does not exist
    /// (RFC 4592 §3.3.1): `*.` the closest encloser (the nearest ancestor
    /// that exists), owned by `name`. An existing ancestor without a
    /// wildcard below it means no match.
    fn wildcard(&self, name: &str) -> Option<Vec<ZoneRecord>> {
        let encloser = ancestors(name)
            .find(|a| self.records.contains_key(*a) || self.empty_non_terminals.contains(*a));
        // A wildcard's parent always exists (as an owner or an empty
        // non-terminal), so no existing ancestor means no wildcard.
        let star = format!("*.{}", encloser?);
        self.records.get(&star).map(|r| owned_by(r, name))
    }

    /// The SOA record of the closest enclosing zone apex of `name`, for the
    /// authority section of negative answers (RFC 2308 §3).
    pub fn soa_for(&self, name: &str) -> Option<&ZoneRecord> {
        let name = lookup_key(name)?;
        std::iter::once(name.as_str())
            .chain(ancestors(&name))
            .filter_map(|n| self.records.get(n))
            .flatten()
            .find(|r| matches!(r.data, ZoneData::Soa(_)))
    }

    /// The negative TTL for `name`: `min(SOA TTL, SOA MINIMUM)` (RFC 2308
    /// §5), 0 without an SOA.
    pub fn negative_ttl(&self, name: &str) -> u32 {
        match self.soa_for(name) {
            Some(ZoneRecord {
                ttl,
                data: ZoneData::Soa(soa),
                ..
            }) => (*ttl).min(soa.minimum),
            _ => 0,
        }
    }

    /// Turns a [`Resolution`] into an [`Answer`]; a chain leaving the zone is
    /// NXDOMAIN here (the overlay forwards it instead).
    pub fn answer(&self, resolution: &Resolution, rtype: RecordType) -> Answer {
        let alias_ttl = resolution.alias_ttl();
        let negative =
            |err| Answer::new(Err(err), self.negative_ttl(&resolution.name).min(alias_ttl));
        match &resolution.outcome {
            Outcome::Found(records) => {
                let ttl = records
                    .iter()
                    .map(|r| r.ttl)
                    .min()
                    .unwrap_or(0)
                    .min(alias_ttl);
                Answer::new(Ok(to_records(records, rtype)), ttl)
            }
            Outcome::NxDomain => negative(DnsError::NxDomain),
            Outcome::NoData => negative(DnsError::NoData),
            Outcome::Failed(mode) => Answer::temporary(format!("zone file marks name as {mode:?}")),
            Outcome::ChainTooLong => Answer::temporary("CNAME chain loops or is too long"),
        }
    }
}

enum Step {
    Done(Outcome),
    Alias(ZoneRecord),
}

/// The target of a CNAME record (empty for other records).
pub fn cname_target(record: &ZoneRecord) -> String {
    match &record.data {
        ZoneData::Cname(target) => target.clone(),
        _ => String::new(),
    }
}

fn to_records(records: &[ZoneRecord], rtype: RecordType) -> Records {
    let data = records.iter().map(|r| &r.data);
    match rtype {
        RecordType::A => Records::A(
            data.filter_map(|d| {
                if let ZoneData::A(a) = d {
                    Some(*a)
                } else {
                    None
                }
            })
            .collect(),
        ),
        RecordType::Aaaa => Records::Aaaa(
            data.filter_map(|d| {
                if let ZoneData::Aaaa(a) = d {
                    Some(*a)
                } else {
                    None
                }
            })
            .collect(),
        ),
        RecordType::Mx => Records::Mx(
            data.filter_map(|d| {
                if let ZoneData::Mx(m) = d {
                    Some(m.clone())
                } else {
                    None
                }
            })
            .collect(),
        ),
        RecordType::Txt => Records::Txt(
            data.filter_map(|d| {
                if let ZoneData::Txt(t) = d {
                    Some(t.concat())
                } else {
                    None
                }
            })
            .collect(),
        ),
        RecordType::Ptr => Records::Ptr(
            data.filter_map(|d| {
                if let ZoneData::Ptr(p) = d {
                    Some(p.clone())
                } else {
                    None
                }
            })
            .collect(),
        ),
    }
}

/// `records` as if owned by `name` (a wildcard's synthesised answer).
fn owned_by(records: &[ZoneRecord], name: &str) -> Vec<ZoneRecord> {
    records
        .iter()
        .map(|r| ZoneRecord {
            name: name.to_string(),
            ..r.clone()
        })
        .collect()
}

/// Proper ancestors of a canonical name, nearest first, root excluded
/// (escaped dots stay inside their labels).
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    super::name::ancestors(name)
}

fn is_at_or_below(name: &str, apex: &str) -> bool {
    apex.is_empty() || name == apex || ancestors(name).any(|a| a == apex)
}

/// The canonical key of a name that can be queried (wire limits kept),
/// `None` for text that cannot be a name on the wire.
fn lookup_key(name: &str) -> Option<String> {
    let labels = super::name::wire_labels(name)?;
    Some(super::name::render(
        labels.iter().map(|l| l.to_ascii_lowercase()),
    ))
}

impl Lookup for ZoneResolver {
    async fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        let resolution = self.resolve(name, rtype);
        self.answer(&resolution, rtype)
    }
}

super::resolver_via_lookup!(for ZoneResolver);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Resolver;

    const ZONE: &str = r#"
$ORIGIN example.com.
$TTL 300
@        IN SOA ns hostmaster 1 7200 3600 604800 60
         IN NS  ns
         IN A   192.0.2.1
         IN MX  10 mail
         IN TXT "v=spf1 " "ip4:192.0.2.0/24 " "-all"
mail     IN A   192.0.2.25
Mail2    IN AAAA 2001:db8::25
multi    IN TXT "first"
multi    IN TXT "second"
escaped  IN TXT "say \"hi\" \\ \065"
a.b.deep IN TXT "leaf"
alias    IN CNAME mail
alias2   60 IN CNAME alias
outside  IN CNAME elsewhere.example.net.
loop1    IN CNAME loop2
loop2    IN CNAME loop1
1.2.0.192.in-addr.arpa. IN PTR mail
;@servfail broken
;@timeout slow
"#;

    fn zone() -> ZoneResolver {
        ZoneResolver::parse(ZONE, None).unwrap()
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn txt_strings_concatenate_and_records_stay_apart() {
        let z = zone();
        block(async {
            assert_eq!(
                z.txt("example.com").await.unwrap(),
                [b"v=spf1 ip4:192.0.2.0/24 -all".to_vec()]
            );
            assert_eq!(
                z.txt("MULTI.example.com.").await.unwrap(),
                [b"first".to_vec(), b"second".to_vec()]
            );
            assert_eq!(
                z.txt("escaped.example.com").await.unwrap(),
                [br#"say "hi" \ A"#.to_vec()]
            );
        });
    }

    #[test]
    fn nxdomain_nodata_and_empty_non_terminals() {
        let z = zone();
        block(async {
            for (name, want) in [
                ("nope.example.com", DnsError::NxDomain),
                ("mail.example.com", DnsError::NoData),
                ("b.deep.example.com", DnsError::NoData),
                ("deep.example.com", DnsError::NoData),
                ("com", DnsError::NxDomain),
            ] {
                assert_eq!(z.txt(name).await.unwrap_err(), want, "{name}");
            }
        });
    }

    #[test]
    fn names_past_253_octets_do_not_exist() {
        let z = ZoneResolver::parse("$ORIGIN example.\n*.w IN TXT \"wild\"\n", None).unwrap();
        let long = format!("{}w.example", "a.".repeat(123));
        assert_eq!(long.len(), 255);
        assert_eq!(z.resolve(&long, RecordType::Txt).outcome, Outcome::NxDomain);
        assert!(z.soa_for(&long).is_none());
        let fits = format!("{}w.example", "a.".repeat(122));
        assert!(matches!(
            z.resolve(&fits, RecordType::Txt).outcome,
            Outcome::Found(_)
        ));
    }

    #[test]
    fn exists_agrees_with_resolve_for_names_with_two_final_dots() {
        // Found by the zone_file fuzz target: `exists` normalized twice, so
        // `x..` existed although no lookup of it could find anything.
        let z = ZoneResolver::parse("x.example. A 192.0.2.1\n", None).unwrap();
        for name in [
            "x.example",
            "X.example.",
            "x.example..",
            "example..",
            "y.example",
        ] {
            let found = z.resolve(name, RecordType::A).outcome != Outcome::NxDomain;
            assert_eq!(z.exists(name), found, "{name}");
            assert!(!z.owns(name) || z.exists(name), "{name}");
        }
    }

    #[test]
    fn wildcards_answer_for_names_that_do_not_exist_rfc4592() {
        let z = ZoneResolver::parse(
            "$ORIGIN example.\n*._report._dmarc.rcv IN TXT \"v=DMARC1\"\n\
             host.rcv IN A 192.0.2.9\n*.w IN TXT \"wild\"\nsub.w IN TXT \"own\"\n",
            None,
        )
        .unwrap();
        block(async {
            // RFC 4592 §2.2.1's cases: synthesised below the closest encloser,
            assert_eq!(
                z.txt("example.org._report._dmarc.rcv.example")
                    .await
                    .unwrap(),
                [b"v=DMARC1".to_vec()]
            );
            assert_eq!(z.txt("a.b.w.example").await.unwrap(), [b"wild".to_vec()]);
            // not for names that exist (own data or none of the type),
            assert_eq!(z.txt("sub.w.example").await.unwrap(), [b"own".to_vec()]);
            assert_eq!(z.a("x.w.example").await.unwrap_err(), DnsError::NoData);
            // and not below an existing name without a wildcard of its own.
            assert_eq!(
                z.txt("x.sub.w.example").await.unwrap_err(),
                DnsError::NxDomain
            );
            assert_eq!(
                z.txt("x.host.rcv.example").await.unwrap_err(),
                DnsError::NxDomain
            );
        });
    }

    #[test]
    fn escaped_owners_answer_lookups_of_their_raw_octets() {
        let z = ZoneResolver::parse(
            r#"$ORIGIN x.example.
a\ b     TXT "space"
a%b      TXT "percent"
a/b      TXT "slash"
a:b      TXT "colon"
\195\169 TXT "e-acute"
a\.b     TXT "dot inside"
a\\b     TXT "backslash"
*.w\ c   TXT "wild"
"#,
            None,
        )
        .unwrap();
        block(async {
            for (name, want) in [
                ("a b.x.example", &b"space"[..]),
                ("A B.X.example.", b"space"),
                (r"a\032b.x.example", b"space"),
                ("a%b.x.example", b"percent"),
                ("a/b.x.example", b"slash"),
                ("a:b.x.example", b"colon"),
                ("é.x.example", b"e-acute"),
                (r"a\.b.x.example", b"dot inside"),
                (r"a\\b.x.example", b"backslash"),
                ("q r.w c.x.example", b"wild"),
            ] {
                assert_eq!(z.txt(name).await.unwrap(), [want.to_vec()], "{name}");
            }
            // The escaped dot is no label boundary: `b.x.example` is not an
            // ancestor of `a\.b`, so it does not exist, nor `a.b.x.example`.
            for name in ["b.x.example", "a.b.x.example", "É.x.example"] {
                assert_eq!(z.txt(name).await.unwrap_err(), DnsError::NxDomain, "{name}");
            }
            assert_eq!(z.txt("w c.x.example").await.unwrap_err(), DnsError::NoData);
        });
        assert!(z.owns("a b.x.example") && z.exists("w c.x.example"));
    }

    #[test]
    fn typed_lookups() {
        let z = zone();
        block(async {
            assert_eq!(
                z.a("example.com").await.unwrap(),
                [Ipv4Addr::new(192, 0, 2, 1)]
            );
            assert_eq!(
                z.aaaa("mail2.example.com").await.unwrap(),
                ["2001:db8::25".parse::<Ipv6Addr>().unwrap()]
            );
            let mx = z.mx("example.com").await.unwrap();
            assert_eq!(
                (mx[0].preference, mx[0].exchange.as_str()),
                (10, "mail.example.com")
            );
            let ptr = z.ptr("192.0.2.1".parse().unwrap()).await.unwrap();
            assert_eq!(ptr, ["mail.example.com"]);
        });
    }

    #[test]
    fn cname_chains_are_followed_and_ttl_is_the_minimum() {
        let z = zone();
        let answer = block(z.lookup("alias2.example.com", RecordType::A));
        assert_eq!(
            answer.result,
            Ok(Records::A(vec![Ipv4Addr::new(192, 0, 2, 25)]))
        );
        assert_eq!(answer.ttl, 60);
        assert_eq!(
            z.resolve("alias2.example.com", RecordType::A).aliases.len(),
            2
        );
    }

    #[test]
    fn cname_loops_and_failures_are_temporary() {
        let z = zone();
        block(async {
            for name in [
                "loop1.example.com",
                "broken.example.com",
                "slow.example.com",
            ] {
                assert!(
                    matches!(z.txt(name).await, Err(DnsError::Temporary(_))),
                    "{name}"
                );
            }
        });
    }

    #[test]
    fn chain_leaving_the_zone_is_nxdomain_offline() {
        let z = zone();
        let r = z.resolve("outside.example.com", RecordType::Txt);
        assert_eq!(r.outcome, Outcome::NxDomain);
        assert_eq!(block(z.txt("outside.example.com")), Err(DnsError::NxDomain));
    }

    #[test]
    fn negative_ttl_is_min_of_soa_ttl_and_minimum() {
        let z = zone();
        assert_eq!(z.negative_ttl("nope.example.com"), 60);
        assert_eq!(block(z.lookup("nope.example.com", RecordType::A)).ttl, 60);
    }

    #[test]
    fn cname_with_other_data_is_rejected() {
        let err = ZoneResolver::parse(
            "a.example. CNAME b.example.\na.example. A 192.0.2.1\n",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("CNAME and other"), "{err}");
    }

    #[test]
    fn load_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.zone");
        let bad = dir.path().join("bad.zone");
        std::fs::write(&good, "a.example. A 192.0.2.1\n").unwrap();
        std::fs::write(&bad, "b.example. A 192.0.2.2\nc.example. A nope\n").unwrap();
        let err = ZoneResolver::load(&[good.clone(), bad.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}:2:", bad.display())), "{err}");
        let missing = ZoneResolver::load(&[dir.path().join("missing.zone")]).unwrap_err();
        assert!(matches!(missing, ZoneError::Io { .. }));
    }

    #[test]
    fn merge_combines_files() {
        let mut z = ZoneResolver::parse("a.example. TXT \"1\"\n", None).unwrap();
        z.merge(
            ZoneResolver::parse("a.example. TXT \"2\"\nb.example. A 192.0.2.2\n", None).unwrap(),
        )
        .unwrap();
        assert_eq!(block(z.txt("a.example")).unwrap().len(), 2);
        assert!(z.owns("b.example") && !z.owns("example") && z.exists("example"));
    }
}

//! OpenDKIM's table formats (opendkim.conf(5) "DATA SETS", KeyTable,
//! SigningTable, InternalHosts): shared by `authgate import opendkim`, which
//! copies them into TOML, and the `dkim.opendkim_*` settings, which read
//! them in place.
//!
//! Owns: the text of the tables (comments, blank lines, CRLF, tabs), what a
//! good line is, the SigningTable's lookup order as authgate signing-table
//! patterns, and which host-list entries are usable. Must not: read files,
//! log or know the configuration (the callers say where a line came from).

use std::net::IpAddr;

/// A table line that cannot be used: its 1-based number and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Line number in the file.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One KeyTable line: `NAME DOMAIN:SELECTOR:KEYPATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// Line number in the file.
    pub line: usize,
    /// Key name (the SigningTable's right column).
    pub name: String,
    /// `d=`; `%` = the author's domain.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// Private key file.
    pub file: String,
}

/// One SigningTable line: `PATTERN NAME [SIGNER]` (the signer, `i=`, is
/// not used: authgate signs without `i=`, which verifiers read as `@d=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLine {
    /// Line number in the file.
    pub line: usize,
    /// Address pattern (glob with `refile:`, else an address or domain).
    pub pattern: String,
    /// KeyTable name.
    pub key: String,
}

/// Where a dataset's entries are (opendkim.conf(5) "DATA SETS").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dataset<'a> {
    /// `file:` or a path: one entry per line.
    File(&'a str),
    /// `refile:`: one glob per line.
    Refile(&'a str),
    /// `csl:` or a bare value: comma-separated entries.
    Inline(Vec<&'a str>),
    /// `db:`, `dsn:`, `ldap:`, `lua:`, ...: not readable here.
    Other,
}

/// The dataset a configuration value names.
pub fn dataset(value: &str) -> Dataset<'_> {
    if let Some(p) = value.strip_prefix("refile:") {
        return Dataset::Refile(p);
    }
    if let Some(p) = value.strip_prefix("file:") {
        return Dataset::File(p);
    }
    if value.starts_with('/') {
        return Dataset::File(value);
    }
    let value = value.strip_prefix("csl:").unwrap_or(value);
    const OTHER: [&str; 11] = [
        "db:",
        "dsn:",
        "ldap:",
        "ldaps:",
        "ldapi:",
        "lua:",
        "memcache:",
        "redis:",
        "mdb:",
        "erlang:",
        "odbc:",
    ];
    if OTHER.iter().any(|p| value.starts_with(p)) {
        return Dataset::Other;
    }
    Dataset::Inline(
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Numbered content lines of a table: comments, blank lines and CR gone.
pub fn table_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.split('#').next().unwrap_or("").trim();
        (!l.is_empty()).then_some((i + 1, l))
    })
}

/// Parses a KeyTable. KEYPATH must be absolute: OpenDKIM reads a value
/// that does not start with `/` as the key data itself.
pub fn parse_key_table(text: &str) -> (Vec<KeyLine>, Vec<LineError>) {
    let (mut keys, mut errors) = (Vec::new(), Vec::new());
    for (n, line) in table_lines(text) {
        let mut cols = line.split_whitespace();
        let (name, value) = match (cols.next(), cols.next(), cols.next()) {
            (Some(name), Some(value), None) => (name, value),
            _ => (line, ""),
        };
        let parts: Vec<&str> = value.splitn(3, ':').collect();
        match parts.as_slice() {
            [d, s, f] if !d.is_empty() && !s.is_empty() && f.starts_with('/') => {
                keys.push(KeyLine {
                    line: n,
                    name: name.into(),
                    domain: (*d).into(),
                    selector: (*s).into(),
                    file: (*f).into(),
                })
            }
            [d, s, f] if !d.is_empty() && !s.is_empty() && !f.is_empty() => {
                errors.push(LineError {
                    line: n,
                    message: format!(
                        "KEYPATH must be an absolute path to the key file, found {f:?} \
                         (OpenDKIM reads anything else as the key data itself; \
                         put the key in a file with mode 0600)"
                    ),
                })
            }
            _ => errors.push(LineError {
                line: n,
                message: format!("expected NAME DOMAIN:SELECTOR:KEYPATH, found {line:?}"),
            }),
        }
    }
    (keys, errors)
}

/// Parses a SigningTable.
pub fn parse_signing_table(text: &str) -> (Vec<TableLine>, Vec<LineError>) {
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for (n, line) in table_lines(text) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        match cols.as_slice() {
            [pattern, key] | [pattern, key, _] => rows.push(TableLine {
                line: n,
                pattern: (*pattern).into(),
                key: (*key).into(),
            }),
            _ => errors.push(LineError {
                line: n,
                message: format!("expected PATTERN KEYNAME [SIGNER], found {line:?}"),
            }),
        }
    }
    (rows, errors)
}

/// One authgate signing-table row made from SigningTable lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningRow {
    /// The first line that gave this pattern.
    pub line: usize,
    /// An authgate signing-table pattern (see `dkim::sign::pattern_matches`).
    pub pattern: String,
    /// Key names, in file order.
    pub keys: Vec<String>,
}

/// SigningTable lines as authgate rows, first match wins, matching what
/// OpenDKIM would pick.
///
/// With `refile:` (`refile` true) the patterns are globs tried in file
/// order, kept as they are. Otherwise OpenDKIM looks keys up in a fixed
/// order, whatever the order of the file: `user@host`, `host`,
/// `user@.parent` and `.parent` (nearest parent first), `user@*`, `*`;
/// the rows are sorted that way and written as globs (`.example.com` →
/// `*@*.example.com`, `user@.example.com` → `user@*.example.com`).
/// Lines with the same pattern become one row with all their keys: that
/// is what two lines for one pattern are for (OpenDKIM's
/// `MultipleSignatures`, RSA and Ed25519 side by side).
pub fn signing_rows(lines: Vec<TableLine>, refile: bool) -> Vec<SigningRow> {
    let mut lines = lines;
    if !refile {
        // A stable sort keeps file order among equals.
        lines.sort_by_key(|l| plain_rank(&l.pattern));
    }
    let mut rows: Vec<SigningRow> = Vec::new();
    for l in lines {
        let pattern = if refile {
            l.pattern
        } else {
            plain_pattern(&l.pattern)
        };
        match rows.iter_mut().find(|r| r.pattern == pattern) {
            Some(r) => r.keys.push(l.key),
            None => rows.push(SigningRow {
                line: l.line,
                pattern,
                keys: vec![l.key],
            }),
        }
    }
    rows
}

/// Where a plain SigningTable key comes in OpenDKIM's lookup order: its
/// class, then (for the parent-domain classes) nearest parent first.
fn plain_rank(key: &str) -> (u8, std::cmp::Reverse<usize>) {
    let labels = |d: &str| std::cmp::Reverse(d.split('.').count());
    match key.split_once('@') {
        _ if key == "*" => (5, labels("")),
        Some((_, "*")) => (4, labels("")),
        None if key.starts_with('.') => (3, labels(key)),
        Some((_, d)) if d.starts_with('.') => (2, labels(d)),
        None => (1, labels("")),
        Some(_) => (0, labels("")),
    }
}

/// A plain (not `refile:`) SigningTable key as a glob: `.parent` means any
/// domain under it.
fn plain_pattern(key: &str) -> String {
    match (key.strip_prefix('.'), key.split_once("@.")) {
        (Some(parent), _) => format!("*@*.{parent}"),
        (None, Some((user, parent))) => format!("{user}@*.{parent}"),
        (None, None) => key.to_string(),
    }
}

/// A host-list entry authgate can use (an address or CIDR), or why not.
/// Negations (`!ADDR`) are for [`trusted_nets`]; here they are refused.
pub fn host_entry(entry: &str) -> Result<ipnet::IpNet, &'static str> {
    if entry.starts_with('!') {
        return Err("negated entries have no equivalent: internal_hosts only adds");
    }
    if let Ok(net) = entry.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    if entry.contains(['*', '?', '[']) {
        return Err("a host name pattern: trust.internal_hosts takes addresses and CIDRs only");
    }
    Err("a host name: trust.internal_hosts takes addresses and CIDRs only (add its addresses)")
}

/// The addresses a host list trusts, as CIDRs: OpenDKIM's rule is that the
/// most specific entry matching a client wins, so `!192.0.2.5` inside
/// `192.0.2.0/24` leaves .5 out and a positive entry inside a negated
/// range is trusted again. Each positive entry loses the negated ranges
/// inside it (or equal to it).
pub fn trusted_nets(positive: &[ipnet::IpNet], negative: &[ipnet::IpNet]) -> Vec<ipnet::IpNet> {
    let mut out: Vec<ipnet::IpNet> = Vec::new();
    for p in positive {
        let mut parts = vec![*p];
        for n in negative.iter().filter(|n| p.contains(*n)) {
            parts = parts.into_iter().flat_map(|x| subtract(x, *n)).collect();
        }
        for x in parts {
            if !out.contains(&x) {
                out.push(x);
            }
        }
    }
    out
}

/// `net` without `hole`, as the fewest CIDRs.
fn subtract(net: ipnet::IpNet, hole: ipnet::IpNet) -> Vec<ipnet::IpNet> {
    if hole.contains(&net) {
        return Vec::new();
    }
    if !net.contains(&hole) {
        return vec![net];
    }
    match net.subnets(net.prefix_len().saturating_add(1)) {
        Ok(halves) => halves.flat_map(|h| subtract(h, hole)).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table_lines_parse_with_comments_blanks_crlf_and_tabs() {
        let text = "# keys\r\n\r\nk1 example.com:mail:/k/1.private\r\nk2\t%:sel:/k/2.private  # both\n  \t\n";
        let (keys, errors) = parse_key_table(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(keys.len(), 2);
        assert_eq!((keys[0].line, keys[0].file.as_str()), (3, "/k/1.private"));
        assert_eq!(keys[1].domain, "%");
        assert_eq!(keys[1].selector, "sel");
    }

    #[test]
    fn bad_key_table_lines_name_their_line() {
        for (text, want) in [
            (
                "a b:c:/d\n\nbroken\n",
                "line 3: expected NAME DOMAIN:SELECTOR:KEYPATH",
            ),
            ("# x\nk example.com:mail\n", "line 2: expected"),
            ("k example.com::/k\n", "line 1: expected"),
            ("k a:b:/c extra\n", "line 1: expected"),
            (
                "k a:b:MIIEvQIBADANBg\n",
                "line 1: KEYPATH must be an absolute",
            ),
        ] {
            let (_, errors) = parse_key_table(text);
            assert!(
                errors[0].to_string().starts_with(want),
                "{text:?}: {errors:?}"
            );
        }
    }

    #[test]
    fn signing_table_lines_parse_and_bad_ones_name_their_line() {
        let (rows, errors) =
            parse_signing_table("*@example.com\tk1\r\nuser@x.org k2 user@x.org\nlonely\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].key, "k2");
        assert_eq!(
            errors[0].to_string(),
            "line 3: expected PATTERN KEYNAME [SIGNER], found \"lonely\""
        );
    }

    fn rows(text: &str, refile: bool) -> Vec<(String, Vec<String>)> {
        let (lines, errors) = parse_signing_table(text);
        assert!(errors.is_empty());
        signing_rows(lines, refile)
            .into_iter()
            .map(|r| (r.pattern, r.keys))
            .collect()
    }

    #[test]
    fn refile_rows_keep_file_order_and_merge_same_patterns() {
        let got = rows(
            "*@*.example.com sub\n*@example.com rsa\n*@example.com ed\n",
            true,
        );
        let want = [
            ("*@*.example.com", vec!["sub"]),
            ("*@example.com", vec!["rsa", "ed"]),
        ];
        assert_eq!(got.len(), want.len());
        for ((p, k), (wp, wk)) in got.iter().zip(want) {
            assert_eq!(
                (p.as_str(), k.clone()),
                (wp, wk.iter().map(|s| s.to_string()).collect())
            );
        }
    }

    #[test]
    fn plain_rows_follow_opendkims_lookup_order() {
        let got = rows(
            "* any\nuser@* anyuser\n.com com\n.example.com parent\njoe@.com joecom\n\
             joe@.example.com joeparent\nexample.com domain\njoe@example.com joe\n",
            false,
        );
        let patterns: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            patterns,
            [
                "joe@example.com",
                "example.com",
                "joe@*.example.com",
                "joe@*.com",
                "*@*.example.com",
                "*@*.com",
                "user@*",
                "*",
            ]
        );
    }

    #[test]
    fn host_entries_map_addresses_and_cidrs_only() {
        for (entry, want) in [
            ("127.0.0.1", Some("127.0.0.1/32")),
            ("192.168.0.1/24", Some("192.168.0.0/24")),
            ("::1", Some("::1/128")),
            ("2001:db8::/32", Some("2001:db8::/32")),
            ("localhost", None),
            ("*.example.com", None),
            ("!10.0.0.1", None),
        ] {
            assert_eq!(
                host_entry(entry).ok().map(|n| n.to_string()).as_deref(),
                want,
                "{entry}"
            );
        }
    }

    #[test]
    fn negations_cut_holes_and_the_most_specific_entry_wins() {
        let nets =
            |s: &[&str]| -> Vec<ipnet::IpNet> { s.iter().map(|n| n.parse().unwrap()).collect() };
        let got = trusted_nets(
            &nets(&["192.0.2.0/24", "10.0.0.0/8", "10.1.2.0/24"]),
            &nets(&["192.0.2.5/32", "10.1.0.0/16"]),
        );
        let inside = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            got.iter().any(|n| n.contains(&ip))
        };
        for (ip, want) in [
            ("192.0.2.4", true),
            ("192.0.2.5", false),
            ("192.0.2.6", true),
            ("10.2.0.1", true),
            ("10.1.3.1", false),
            ("10.1.2.9", true),
            ("172.16.0.1", false),
        ] {
            assert_eq!(inside(ip), want, "{ip} in {got:?}");
        }
    }
}

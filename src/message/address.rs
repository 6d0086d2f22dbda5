//! Addresses in From, Sender and similar fields (RFC 5322 §3.4), leniently.
//!
//! Owns: pulling addr-specs out of an address-list with display names,
//! comments, quoted strings, angle brackets and groups. Must not: fail —
//! anything unrecognisable simply yields no address.

/// Splits an address-list field value into its addr-specs, in order.
/// Display names, comments and group syntax are removed; obsolete routes
/// (`<@a,@b:x@y>`) are dropped.
pub fn parse_addresses(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut out = Vec::new();
    for element in split_top_level(&text) {
        if let Some(addr) = element_address(&element) {
            out.push(addr);
        }
    }
    out
}

/// The first address of a field value, if any.
pub fn first_address(value: &[u8]) -> Option<String> {
    parse_addresses(value).into_iter().next()
}

/// The domain of an address (after the last `@`), lower-cased, without a
/// trailing dot or brackets.
pub fn domain_of(address: &str) -> Option<String> {
    let (_, d) = address.rsplit_once('@')?;
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty()).then_some(d)
}

/// Splits on top-level `,` and group `:`/`;`, keeping quoted strings,
/// comments and angle-addrs intact. Comments are removed here.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut depth, mut angle) = (false, 0usize, false);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted || depth > 0 => {
                let next = chars.next();
                if depth == 0 {
                    cur.push(c);
                    cur.extend(next);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                cur.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            '<' if !quoted => {
                angle = true;
                cur.push(c);
            }
            '>' if !quoted => {
                angle = false;
                cur.push(c);
            }
            ':' if !quoted && !angle => cur.clear(),
            ',' | ';' if !quoted && !angle => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

fn element_address(element: &str) -> Option<String> {
    // The innermost angle-addr: from the last `<` to the first `>` after
    // it. (First `<` to last `>` read "<<a@bank.example>>" as the domain
    // "bank.example>", which has no DMARC policy: a bypass; tests/hostile.)
    let inner = match element.rfind('<') {
        Some(open) => {
            let rest = &element[open + 1..];
            rest.find('>').map_or(rest, |close| &rest[..close])
        }
        None => element,
    };
    // Obsolete source route: "@a,@b:user@host".
    let inner = match inner.rfind(':') {
        Some(colon) if inner.trim_start().starts_with('@') => &inner[colon + 1..],
        _ => inner,
    };
    let addr: String = inner.split_whitespace().collect::<Vec<_>>().join("");
    (addr.contains('@') || (!addr.is_empty() && element.contains('<'))).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_addresses_from_common_forms() {
        for (value, want) in [
            ("joe@example.com", vec!["joe@example.com"]),
            ("Joe <joe@example.com>", vec!["joe@example.com"]),
            (
                "\"Doe, Joe\" <joe@example.com>, ann@example.org",
                vec!["joe@example.com", "ann@example.org"],
            ),
            ("joe@example.com (Joe, the <man>)", vec!["joe@example.com"]),
            (
                "team: a@x.org, b@y.org;, c@z.org",
                vec!["a@x.org", "b@y.org", "c@z.org"],
            ),
            ("<@relay.org:joe@example.com>", vec!["joe@example.com"]),
            ("\"a@b\" <real@example.net>", vec!["real@example.net"]),
            ("undisclosed-recipients:;", vec![]),
            ("", vec![]),
            ("broken <joe@example.com", vec!["joe@example.com"]),
            ("<<joe@example.com>>", vec!["joe@example.com"]),
            ("Joe <<<joe@example.com>> >", vec!["joe@example.com"]),
            ("\"x <y\" <joe@example.com>", vec!["joe@example.com"]),
        ] {
            assert_eq!(parse_addresses(value.as_bytes()), want, "{value}");
        }
        assert_eq!(domain_of("Joe@Example.COM."), Some("example.com".into()));
        assert_eq!(domain_of("nodomain@"), None);
    }
}

//! The report destinations a DMARC record asks for: the `rua=` and `ruf=`
//! tag values (RFC 7489 §6.2, RFC 9989 §4.7, RFC 9990 "Report Delivery").
//!
//! Owns: splitting a URI list, keeping the `mailto:` ones, their optional
//! size limit and the percent-decoding of the address. Must not: check
//! that a destination is willing to receive reports (RFC 9990 "Verifying External Destinations", that
//! needs DNS), or send anything.
//!
//! ```text
//! dmarc-uri = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]
//!             ; "," and "!" inside URI are percent-encoded (%2C, %21)
//! ```

/// One `mailto:` report destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportUri {
    /// The address, percent-decoded (`dmarc@example.com`).
    pub address: String,
    /// Its domain, lower-cased (`example.com`).
    pub domain: String,
    /// The size limit in bytes (`!10m`), when given.
    pub max_size: Option<u64>,
}

/// The `mailto:` destinations of a `rua=`/`ruf=` value, in the order given.
/// Other schemes and malformed URIs are skipped (RFC 9990, "Report Delivery": "If any of
/// the URIs are malformed, they SHOULD be ignored").
pub fn parse_uris(list: &str) -> Vec<ReportUri> {
    list.split(',').filter_map(parse_one).collect()
}

fn parse_one(item: &str) -> Option<ReportUri> {
    let item = item.trim();
    let (uri, max_size) = match item.rsplit_once('!') {
        Some((uri, size)) => (uri, Some(parse_size(size)?)),
        None => (item, None),
    };
    let scheme_len = "mailto:".len();
    let scheme = uri.get(..scheme_len)?;
    if !scheme.eq_ignore_ascii_case("mailto:") {
        return None;
    }
    // hfields (`?subject=...`) are not part of the address.
    let rest = uri.get(scheme_len..)?;
    let raw = rest.split_once('?').map_or(rest, |(addr, _)| addr);
    let address = percent_decode(raw)?;
    let (local, domain) = address.rsplit_once('@')?;
    let valid_domain = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '_');
    if local.is_empty() || !valid_domain || address.chars().any(char::is_whitespace) {
        return None;
    }
    let domain = domain.to_ascii_lowercase();
    Some(ReportUri {
        address,
        domain,
        max_size,
    })
}

/// `1*DIGIT [ "k" / "m" / "g" / "t" ]`, units in powers of two (RFC 7489
/// §6.2: "k" is kibibytes and so on).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last()?.to_ascii_lowercase() {
        b'k' => (&s[..s.len() - 1], 10),
        b'm' => (&s[..s.len() - 1], 20),
        b'g' => (&s[..s.len() - 1], 30),
        b't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// `%XX` to bytes; `None` on a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(address: &str, domain: &str, max_size: Option<u64>) -> ReportUri {
        ReportUri {
            address: address.into(),
            domain: domain.into(),
            max_size,
        }
    }

    #[test]
    fn mailto_list_with_sizes() {
        for (input, want) in [
            (
                "mailto:dmarc@example.com",
                vec![uri("dmarc@example.com", "example.com", None)],
            ),
            (
                "mailto:a@example.com!10m, mailto:b@Example.NET!50k",
                vec![
                    uri("a@example.com", "example.com", Some(10 << 20)),
                    uri("b@Example.NET", "example.net", Some(50 << 10)),
                ],
            ),
            (
                "MAILTO:a@example.com!100",
                vec![uri("a@example.com", "example.com", Some(100))],
            ),
            (
                "mailto:a@example.com!1T",
                vec![uri("a@example.com", "example.com", Some(1 << 40))],
            ),
        ] {
            assert_eq!(parse_uris(input), want, "{input}");
        }
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(
            parse_uris("mailto:a%2Cb%21c@example.com!2m"),
            vec![uri("a,b!c@example.com", "example.com", Some(2 << 20))]
        );
    }

    #[test]
    fn other_schemes_and_malformed_uris_are_skipped() {
        for input in [
            "https://example.com/dmarc",
            "mailto:",
            "mailto:nobody",
            "mailto:@example.com",
            "mailto:a@",
            "mailto:a@example.com!x",
            "mailto:a@example.com!",
            "mailto:a@example.com!99999999999999999999t",
            "mailto:a%2@example.com",
            "mailto:a%ff@example.com",
            "mailtö:a@example.com",
            "mailt\u{e9}",
            "",
            " , ",
        ] {
            assert_eq!(parse_uris(input), vec![], "{input}");
        }
        assert_eq!(
            parse_uris("https://x.example/r, mailto:r@example.org?subject=hi"),
            vec![uri("r@example.org", "example.org", None)]
        );
    }

    proptest::proptest! {
        /// Any text: no more URIs than items, each an address whose domain
        /// field is its own domain.
        #[test]
        fn any_list_gives_well_formed_uris(list in "[ -~\u{e9}\u{fc}]{0,80}|(mailto:[a-z%!,@.0-9]{0,20}){1,4}") {
            let uris = parse_uris(&list);
            proptest::prop_assert!(uris.len() <= list.split(',').count());
            for u in uris {
                let (local, domain) = u.address.rsplit_once('@').expect("an address");
                proptest::prop_assert!(!local.is_empty());
                proptest::prop_assert_eq!(u.domain, domain.to_ascii_lowercase());
            }
        }
    }
}

//! DNS names as text (`authgate::dns::name`): what SPF macros expand to and
//! what zone files and answers hold, parsed into labels of raw octets.
//!
//! Input: lossily UTF-8 text. Asserts: no panic; a name that parses renders
//! back to text that parses to the same labels; the canonical text is
//! stable (canonical of canonical is itself) and case-insensitive for ASCII
//! letters only; `wire_labels` gives labels only within the wire limits
//! (1..=63 octets each, 255 in all) and agrees with `parse` + `check`;
//! raw text escaped with `escape_raw` parses back to the same octets.
#![no_main]

use authgate::dns::name::{canonical, check, escape_raw, parse, render, wire_labels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse(&text);
    if let Ok(name) = &parsed {
        let shown = render(&name.labels);
        let again = parse(&shown).expect("rendered names parse");
        assert_eq!(again.labels, name.labels, "{text:?} -> {shown:?}");
        let c = canonical(&text).expect("parsed names have a canonical text");
        assert_eq!(canonical(&c).as_deref(), Some(c.as_str()), "{text:?}");
        assert_eq!(
            canonical(&text.to_ascii_uppercase()).map(|u| u.to_ascii_lowercase()),
            Some(c.to_ascii_lowercase()),
            "{text:?}"
        );
    }
    match wire_labels(&text) {
        Some(labels) => {
            assert!(
                labels.iter().all(|l| (1..=63).contains(&l.len())),
                "{text:?}"
            );
            assert!(
                labels.iter().map(|l| l.len() + 1).sum::<usize>() < 256,
                "{text:?}"
            );
            assert_eq!(parsed.as_ref().map(|p| &p.labels), Ok(&labels));
        }
        None => assert!(parsed.as_ref().map_or(true, |p| check(&p.labels).is_err())),
    }
    let raw = escape_raw(&text);
    if let Ok(name) = parse(&raw) {
        let joined: Vec<u8> = name.labels.join(&b'.');
        let trimmed = text.trim_end_matches('.');
        if !trimmed.split('.').any(str::is_empty) || trimmed.is_empty() {
            assert_eq!(joined, trimmed.as_bytes(), "{text:?} -> {raw:?}");
        }
    }
});

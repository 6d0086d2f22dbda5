//! DKIM tag=value lists (RFC 6376 §3.2) and removing the `b=` value (§3.7).
//!
//! Asserts: when the field value parses, removing `b=` leaves a list that
//! still parses, with `b=` empty and every other tag unchanged.
#![no_main]

use authgate::dkim::tag::{TagList, without_b_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = TagList::parse(data);
    let mut raw = b"DKIM-Signature:".to_vec();
    raw.extend_from_slice(data);
    let stripped = without_b_value(&raw);
    assert!(stripped.len() <= raw.len());
    assert!(stripped.starts_with(b"DKIM-Signature:"));
    let Ok(tags) = parsed else {
        return;
    };
    if tags.get("b").is_none() {
        assert_eq!(stripped, raw, "no b= tag, nothing removed");
        return;
    }
    let after = TagList::parse(&stripped[b"DKIM-Signature:".len()..])
        .unwrap_or_else(|e| panic!("stripped list does not parse: {e}"));
    assert_eq!(after.get("b"), Some(""));
    let others = |t: &TagList| -> Vec<(String, String)> {
        t.iter()
            .filter(|(n, _)| *n != "b")
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(others(&after), others(&tags), "other tags changed");
});

//! SPF records (RFC 7208 §4.5, §4.6, §5, §6): parse, emit, parse.
//!
//! Asserts: whatever parses is written back by `Display` in a form that
//! parses to an equal record and re-emits identically.
#![no_main]

use authgate::spf::record::{Record, is_spf_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::parse(data) else {
        return;
    };
    assert!(is_spf_record(data));
    let _ = record
        .directives
        .iter()
        .map(|d| d.mechanism.queries_dns())
        .count();
    let text = record.to_string();
    let back = Record::parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("emitted record does not parse: {e}\n{text}"));
    assert_eq!(back, record, "round trip changed the record\n{text}");
    assert_eq!(back.to_string(), text, "re-emit differs");
});

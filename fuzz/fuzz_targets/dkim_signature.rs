//! DKIM-Signature parsing (RFC 6376 §3.5) and the emit round trip.
//!
//! Asserts: whatever parses is emitted by `to_header_value` in a form that
//! parses back to the same signature, and re-emits identically.
#![no_main]

use authgate::dkim::signature::{Signature, SignatureSummary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SignatureSummary::of(data);
    let Ok(sig) = Signature::parse(data) else {
        return;
    };
    let _ = (sig.key_name(), sig.identity_domain());
    let value = sig.to_header_value();
    let back = Signature::parse(value.as_bytes())
        .unwrap_or_else(|e| panic!("emitted signature does not parse: {e}\n{value}"));
    assert_eq!(back, sig, "round trip changed the signature\n{value}");
    assert_eq!(back.to_header_value(), value, "re-emit differs");
});

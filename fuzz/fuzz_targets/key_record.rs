//! DKIM key records (RFC 6376 §3.6.1, RFC 8463): parse, then build verifiers.
//!
//! Must not panic, whatever `p=` holds; a built verifier must survive a
//! bogus signature too.
#![no_main]

use authgate::dkim::key::KeyRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = KeyRecord::parse(data) else {
        return;
    };
    let _ = format!("{record:?}");
    for key_type in ["rsa", "ed25519"] {
        if let Ok(key) = record.verifier(key_type, 1024) {
            assert!(!key.verify(b"data", &[0u8; 64]));
        }
    }
});

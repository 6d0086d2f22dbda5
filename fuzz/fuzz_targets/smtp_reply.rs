//! A next hop's replies: framing (`complete_reply_len`) and parsing
//! (smtp-proto's `ResponseReceiver` under `Reply::parse`) over arbitrary
//! bytes. Asserts: no panic; the framed length is within the input; a
//! parsed reply writes back to bytes that parse to the same code and status.
#![no_main]

use authgate::smtp::reply::{Reply, complete_reply_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some(n) = complete_reply_len(rest) {
        assert!(n > 0 && n <= rest.len());
        let (one, tail) = rest.split_at(n);
        if let Ok(r) = Reply::parse(one) {
            let again = Reply::parse(&r.to_bytes()).expect("our own reply parses");
            assert_eq!(again.code, r.code);
        }
        rest = tail;
    }
});

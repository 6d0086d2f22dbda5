//! `rua=`/`ruf=` URI lists (RFC 7489 §6.2, RFC 9989 §4.7): `parse_uris` on
//! whatever a DMARC record holds.
//!
//! Asserts: never more URIs than comma-separated items, and each is an
//! address with a non-empty local-part whose domain field is its domain,
//! lower-cased.
#![no_main]

use authgate::report::uri::parse_uris;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let list = String::from_utf8_lossy(data);
    let uris = parse_uris(&list);
    assert!(uris.len() <= list.split(',').count());
    for u in &uris {
        let Some((local, domain)) = u.address.rsplit_once('@') else {
            panic!("no @ in {:?}", u.address);
        };
        assert!(!local.is_empty(), "{u:?}");
        assert_eq!(u.domain, domain.to_ascii_lowercase(), "{u:?}");
    }
});

//! DMARC Policy Records (RFC 9989 §4.7, §4.8): the lenient parser.
//!
//! Asserts the documented contract of `authgate::dmarc::record`: the only
//! hard error is `NotDmarc`, so `parse` succeeds exactly when
//! `is_dmarc_record` says the string starts with `v=DMARC1`.
#![no_main]

use authgate::dmarc::record::{DmarcRecord, RecordError, is_dmarc_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = DmarcRecord::parse(data);
    assert_eq!(
        is_dmarc_record(data),
        parsed.is_ok(),
        "is_dmarc_record disagrees with parse: {parsed:?}"
    );
    match parsed {
        Ok(record) => {
            let _ = record.has_valid_rua();
            if let Some(p) = record.policy {
                assert_eq!(authgate::dmarc::record::Policy::parse(p.as_str()), Some(p));
            }
        }
        Err(RecordError::NotDmarc) => {}
    }
});

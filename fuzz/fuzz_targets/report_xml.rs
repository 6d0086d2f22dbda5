//! DMARC aggregate report XML as others send it (RFC 9990 §3, RFC 7489
//! Appendix C): the lenient `report::feedback` parser behind `report ingest`.
//!
//! Asserts the documented contract: no panic on any bytes, and a report
//! that parses has what `report ingest` prints and stores: a reporter, a
//! report id, a policy domain, and counts that sum without overflow.
#![no_main]

use authgate::report::feedback::ReceivedReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = ReceivedReport::parse(data) else {
        return;
    };
    assert!(!report.reporter.is_empty(), "{report:?}");
    assert!(!report.report_id.is_empty(), "{report:?}");
    assert!(!report.policy.domain.is_empty(), "{report:?}");
    assert!(report.begin >= 0 && report.end >= 0, "{report:?}");
    let sum = report
        .records
        .iter()
        .fold(0u64, |n, r| n.saturating_add(r.count));
    assert_eq!(report.messages(), sum);
    for r in &report.records {
        assert_eq!(r.dmarc_pass(), r.dkim == "pass" || r.spf == "pass");
    }
});

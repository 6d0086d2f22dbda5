//! A whole message through verification: header split, `find_signatures`,
//! streaming body hashes, `evaluate` with a key record chosen by the input
//! (no DNS). Must not panic; every signature gets exactly one outcome.
//!
//! Input: byte 0 picks the key answer, the rest is the message.
#![no_main]

use authgate::dkim::canon::BodyHashes;
use authgate::dkim::verify::{KeyCache, VerifyOptions, evaluate, find_signatures};
use authgate::dns::DnsError;
use authgate::message::headers::split_fields;
use authgate::message::{HeaderSplitter, Split};
use libfuzzer_sys::fuzz_target;

/// RFC 8463 Appendix A.2 records (tests/fixtures/dkim/rfc8463.zone).
const ED_KEY: &[u8] = b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const RSA_KEY: &[u8] = b"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
/// The RFC 8463 signing time, so its example passes.
const NOW: u64 = 1_528_637_909;

fn answer(pick: u8) -> Result<Vec<Vec<u8>>, DnsError> {
    match pick % 6 {
        0 => Ok(vec![ED_KEY.to_vec()]),
        1 => Ok(vec![RSA_KEY.to_vec()]),
        2 => Ok(vec![b"v=DKIM1; p=".to_vec(), ED_KEY.to_vec()]),
        3 => Ok(vec![]),
        4 => Err(DnsError::NxDomain),
        _ => Err(DnsError::Temporary("timeout".into())),
    }
}

fuzz_target!(|data: &[u8]| {
    let [pick, msg @ ..] = data else {
        return;
    };
    let mut splitter = HeaderSplitter::new(1 << 20);
    let body = match splitter.push(msg) {
        Split::Done { body_start } => &msg[body_start..],
        _ => &[][..],
    };
    let headers = split_fields(splitter.block());
    let opts = VerifyOptions::default();
    let candidates = find_signatures(&headers, &opts, NOW);
    let mut hashes = BodyHashes::new(candidates.iter().filter_map(|c| c.body_spec()));
    hashes.update(body);
    let bodies = hashes.finish();
    let key = answer(*pick);
    let keys = KeyCache::default();
    for (i, c) in candidates.iter().enumerate() {
        let _ = c.key_name();
        let looked_up = (i % 2 == 0 || *pick >= 128).then_some(&key);
        let _ = evaluate(c, &headers, looked_up, &bodies, &opts, &keys);
    }
});

//! Streaming body canonicalization + hashing (RFC 6376 §3.4.3-3.4.4, §3.5 l=).
//!
//! Input: byte 0 = flags (bit 0: map the body onto the whitespace-heavy
//! alphabet that matters to canonicalization), bytes 1-2 = `l=` limit, byte 3
//! = chunking seed, the rest is the body. Asserts: the hashes of all four
//! specs fed together over an arbitrary split equal each spec hashed alone
//! over the whole body.
#![no_main]

use authgate::dkim::canon::{BodyHashes, BodySpec, Canon};
use libfuzzer_sys::fuzz_target;

const ALPHABET: &[u8] = b"a \t\r\n\r\nx \xe9.";

fuzz_target!(|data: &[u8]| {
    let [flags, l_hi, l_lo, chunk_seed, rest @ ..] = data else {
        return;
    };
    let body: Vec<u8> = if flags & 1 == 1 {
        rest.iter()
            .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
            .collect()
    } else {
        rest.to_vec()
    };
    let limit = u64::from(u16::from_be_bytes([*l_hi, *l_lo]));
    let specs: Vec<BodySpec> = [Canon::Simple, Canon::Relaxed]
        .into_iter()
        .flat_map(|canon| {
            [None, Some(limit)]
                .into_iter()
                .map(move |limit| BodySpec { canon, limit })
        })
        .collect();

    let mut together = BodyHashes::new(specs.iter().copied());
    let mut offset = 0;
    let mut step = usize::from(*chunk_seed) % 13;
    while offset < body.len() {
        let end = (offset + step).min(body.len());
        together.update(&body[offset..end]);
        offset = end;
        step = (step * 5 + 1) % 31;
    }
    let together = together.finish();
    assert_eq!(together.len(), specs.len());

    for (spec, hash) in &together {
        let mut alone = BodyHashes::new([*spec]);
        alone.update(&body);
        let (alone_spec, whole) = alone.finish().remove(0);
        assert_eq!(alone_spec, *spec);
        assert_eq!(&whole, hash, "chunked differs from whole for {spec:?}");
    }
    // l= truncates what is hashed, never the counted canonical length.
    for (spec, hash) in &together {
        let unlimited = together
            .iter()
            .find(|(s, _)| s.canon == spec.canon && s.limit.is_none());
        if let Some((_, full)) = unlimited {
            assert_eq!(hash.canonical_len, full.canonical_len);
        }
    }
});

//! Header block: `HeaderSplitter` over arbitrary chunking, then `split_fields`
//! and `parse_addresses` on every field.
//!
//! Input: byte 0 picks the mode (bit 0: map the rest onto a header/address
//! alphabet), byte 1 seeds the chunk sizes, the rest is the message.
//! Asserts: the block plus separator are exactly the input's prefix, the body
//! starts right after it, and the fields' raw bytes concatenate to the block.
#![no_main]

use authgate::message::address::{domain_of, parse_addresses};
use authgate::message::headers::split_fields;
use authgate::message::{HeaderSplitter, Split};
use libfuzzer_sys::fuzz_target;

const ALPHABET: &[u8] = b"From:To\r\n \t<>@,;()\"\\.ab:\r\n";

fn map(data: &[u8], on: bool) -> Vec<u8> {
    if on {
        data.iter()
            .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
            .collect()
    } else {
        data.to_vec()
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, chunk_seed, rest @ ..] = data else {
        return;
    };
    let msg = map(rest, mode & 1 == 1);
    let mut splitter = HeaderSplitter::new(usize::MAX / 2);
    let mut offset = 0;
    let mut step = usize::from(*chunk_seed) % 17 + 1;
    let mut body_at = None;
    while offset < msg.len() {
        let end = (offset + step).min(msg.len());
        match splitter.push(&msg[offset..end]) {
            Split::Done { body_start } => {
                assert!(body_start <= end - offset);
                body_at = Some(offset + body_start);
                break;
            }
            Split::NeedMore => {}
            Split::TooLarge => unreachable!("limit is larger than any input"),
        }
        offset = end;
        step = (step * 7 + 3) % 23 + 1;
    }
    let block = splitter.block().to_vec();
    match body_at {
        Some(at) => {
            let mut head = block.clone();
            head.extend_from_slice(splitter.separator());
            assert_eq!(head, msg[..at], "block + separator is the input prefix");
        }
        None => assert_eq!(block, msg, "an unfinished block holds all input"),
    }
    let fields = split_fields(&block);
    let joined: Vec<u8> = fields.iter().flat_map(|h| h.raw().to_vec()).collect();
    assert_eq!(joined, block, "fields concatenate back to the block");
    for h in &fields {
        let _ = (h.name(), h.value_str(), h.is_well_formed());
        for addr in parse_addresses(h.value()) {
            let _ = domain_of(&addr);
        }
    }
});

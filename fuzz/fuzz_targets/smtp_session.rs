//! An SMTP/LMTP client from the network: every line through the proxy's
//! session state machine (smtp-proto parsing, XFORWARD/XCLIENT attributes),
//! forwarded commands answered by a next hop whose reply code comes from the
//! input, and DATA through the dot-unstuffing decoder.
//!
//! Input: byte 0 picks LMTP (bit 0) and trusted XFORWARD (bit 1); the rest
//! is the client's byte stream. Asserts: no panic; the decoder never claims
//! more bytes than it was given; replies are framed (one CRLF per line);
//! forwarded commands are the client's (at most shortened by a dropped SIZE=).
#![no_main]

use authgate::smtp::data::DotDecoder;
use authgate::smtp::reply::Reply;
use authgate::smtp::session::{HopCaps, Session, SessionConfig, Step};
use libfuzzer_sys::fuzz_target;

fn check_framing(r: &Reply) {
    let bytes = r.to_bytes();
    let lines = bytes.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(lines, r.lines.len().max(1));
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut s = Session::new(SessionConfig {
        lmtp: flags & 1 == 1,
        hostname: "fuzz.example".into(),
        max_message_size: 10_000,
        max_recipients: 5,
        hop: HopCaps {
            xforward: Some(vec!["NAME".into(), "ADDR".into(), "HELO".into()]),
            ..HopCaps::default()
        },
        trusted: flags & 2 == 2,
        peer_ip: None,
    });
    check_framing(&s.greeting());
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let (line, tail) = rest.split_at(nl + 1);
        rest = tail;
        match s.command(line) {
            Step::Reply(r) | Step::Quit(r) | Step::ResetThenReply(r) => check_framing(&r),
            Step::Forward { prelude, command } => {
                assert!(prelude.iter().all(|p| p.ends_with(b"\r\n")));
                // Verbatim, or with SIZE= dropped for a next hop without SIZE.
                assert!(command.len() <= line.len());
                assert_eq!(command.get(..4), line.get(..4));
                let code = 200 + u16::from(line.len() as u8) % 4 * 100 + 50;
                check_framing(&s.forwarded(Reply::new(code, "", "hop")));
            }
            Step::Data => {
                let mut out = Vec::new();
                let mut dec = DotDecoder::default();
                match dec.push(rest, &mut out) {
                    Some(n) => {
                        assert!(n <= rest.len());
                        assert!(out.len() <= n);
                        rest = &rest[n..];
                    }
                    None => rest = &[],
                }
                let replies = s.data_replies(vec![Reply::new(250, "2.0.0", "ok")]);
                replies.iter().for_each(check_framing);
            }
            Step::Chunk { size, last, refuse } => {
                rest = &rest[size.min(rest.len())..];
                match refuse {
                    Some(r) => check_framing(&r),
                    None if last => {
                        s.data_failed(Reply::new(451, "4.3.0", "x"));
                    }
                    None => check_framing(&s.chunk_received(size)),
                }
            }
        }
        let _ = (s.client_ip(), s.client_helo(), s.queue_id(), s.login());
    }
});

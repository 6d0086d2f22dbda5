//! Milter packets from a hostile MTA: `codec::decode` over arbitrary bytes,
//! and every decoded command through `session::Session`.
//!
//! Input: byte 0 picks the mode. Bit 0 clear: the rest is the raw stream.
//! Bit 0 set: the rest is a list of `(command selector, length, data)`
//! triples framed into well-formed packets after an option negotiation, so
//! the session (not only the framing) gets exercised.
//! Asserts: decode never claims more bytes than it was given; an oversized
//! length is refused from the 4 length bytes alone; every reply the session
//! produces encodes to a packet that decodes back.
#![no_main]

use authgate::message::HeaderSplitter;
use authgate::milter::codec::{self, CodecError, MAX_PACKET};
use authgate::milter::session::{Action, Session, Settings};
use authgate::outcome::{Fate, Front, Meta, Refusal};
use authgate::pipeline::{Edits, Finished, Verdict};
use authgate::role::{MilterQuarantine, Role};
use libfuzzer_sys::fuzz_target;

const COMMANDS: &[u8] = b"ODCHMRTLNBEAQKUZ";

fn framed(rest: &[u8]) -> Vec<u8> {
    let mut opt = Vec::new();
    for v in [6u32, 0x1ff, 0x1f_ffff] {
        opt.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = codec::encode_command(b'O', &opt);
    let mut i = 0;
    while i + 1 < rest.len() {
        let cmd = COMMANDS[usize::from(rest[i]) % COMMANDS.len()];
        let len = usize::from(rest[i + 1]);
        let data = &rest[(i + 2).min(rest.len())..(i + 2 + len).min(rest.len())];
        out.extend(codec::encode_command(cmd, data));
        i += 2 + len;
    }
    out
}

fn settings() -> Settings {
    Settings {
        role: Role::Auto,
        outbound_daemons: vec!["ORIGINATING".into()],
        internal_hosts: vec![],
        sign_local_submissions: true,
        quarantine: MilterQuarantine::Hold,
    }
}

fn check_reply(r: &codec::Response) {
    let mut out = Vec::new();
    codec::encode(r, &mut out);
    let (_, _, used) = codec::decode_reply(&out)
        .expect("our replies decode")
        .expect("complete");
    assert_eq!(used, out.len());
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let stream = if mode & 1 == 1 {
        framed(rest)
    } else {
        rest.to_vec()
    };
    let mut session = Session::new(settings());
    let mut buf = &stream[..];
    loop {
        match codec::decode(buf) {
            Ok(None) => break,
            Ok(Some((cmd, used))) => {
                assert!(used >= 5 && used <= buf.len());
                buf = &buf[used..];
                let Ok(actions) = session.handle(cmd) else {
                    break;
                };
                for a in actions {
                    match a {
                        Action::Reply(r) => check_reply(&r),
                        Action::Finish(_) => {
                            let fate = if buf.len() % 2 == 0 {
                                let why = Refusal::Failed("fuzz".into());
                                Fate::refused(
                                    Front::Milter,
                                    Meta::default(),
                                    Default::default(),
                                    why,
                                )
                            } else {
                                let done = Finished::new(
                                    Verdict::default(),
                                    Edits::default(),
                                    Vec::new(),
                                    HeaderSplitter::new(0),
                                );
                                let start = std::time::Instant::now();
                                Fate::decided(
                                    Front::Milter,
                                    Meta::default(),
                                    done,
                                    start,
                                    Default::default(),
                                )
                            };
                            for r in session.end_of_message(&fate) {
                                check_reply(&r);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(CodecError::TooLarge(n)) => {
                assert!(n > MAX_PACKET);
                break;
            }
            Err(_) => break,
        }
    }
});

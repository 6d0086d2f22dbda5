//! XFORWARD/XCLIENT attribute lists (Postfix extensions) as the SMTP proxy
//! reads them from a trusted client: [`Attrs::parse`] with RFC 3461 xtext
//! decoding, the lookups the session makes (`get`, `addr`), `merge` of a
//! later command, and the XFORWARD lines written for the next hop.
//!
//! Input: lines; each is one attribute list (lossily UTF-8, as the session
//! reads them). Asserts: no panic; parsed names are upper-case letters;
//! `get` returns the last value given; every XFORWARD line written is at
//! most 512 bytes unless a single attribute is longer, ends in CRLF, holds
//! no other CR or LF, and reads back (minus the verb) to the attributes the
//! next hop supports, values intact.
#![no_main]

use authgate::smtp::xforward::{Attrs, XFORWARD_ATTRS, xtext_decode, xtext_encode};
use libfuzzer_sys::fuzz_target;

fn check_commands(attrs: &Attrs) {
    let supported: Vec<String> = XFORWARD_ATTRS.iter().map(|s| s.to_string()).collect();
    let mut read_back = Attrs::default();
    for cmd in attrs.xforward_commands(&supported) {
        let text = std::str::from_utf8(&cmd).expect("XFORWARD lines are UTF-8");
        let body = text.strip_suffix("\r\n").expect("CRLF-terminated");
        assert!(!body.contains(['\r', '\n']), "{text:?}");
        let args = body.strip_prefix("XFORWARD ").expect("verb");
        let longest = attrs
            .0
            .iter()
            .map(|(n, v)| n.len() + xtext_encode(v).len() + 2);
        assert!(
            cmd.len() <= 512 || longest.max().unwrap_or(0) + 10 > 500,
            "{text:?}"
        );
        let line = Attrs::parse(args).expect("our own XFORWARD line parses");
        read_back.0.extend(line.0);
    }
    let want: Vec<_> = attrs
        .0
        .iter()
        .filter(|(n, _)| XFORWARD_ATTRS.contains(&n.as_str()))
        .cloned()
        .collect();
    assert_eq!(read_back.0, want);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut session = Attrs::default();
    for line in text.split('\n').take(32) {
        let args = line.trim();
        if let Ok(v) = xtext_decode(args) {
            assert_eq!(xtext_decode(&xtext_encode(&v)).as_deref(), Ok(v.as_str()));
        }
        let Ok(attrs) = Attrs::parse(args) else {
            continue;
        };
        for (name, value) in &attrs.0 {
            assert!(name.bytes().all(|b| b.is_ascii_uppercase()), "{name:?}");
            let last = attrs
                .0
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v);
            if let Some(got) = attrs.get(name) {
                assert_eq!(Some(got), last.map(String::as_str), "{value:?}");
            }
        }
        let _ = attrs.addr();
        check_commands(&attrs);
        session.merge(&attrs);
        let mut names: Vec<&str> = session.0.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "merge keeps one value per name");
        let _ = (session.addr(), session.get("HELO"), session.get("LOGIN"));
    }
});

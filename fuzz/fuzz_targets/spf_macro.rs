//! SPF macro strings (RFC 7208 §7): parse, emit, parse, then expand.
//!
//! The first byte picks macro-string (even) or explain-string (odd)
//! syntax; the rest is the string. Asserts: what parses re-parses equal
//! from its `Display` form; expansion never panics, for an IPv4 and an
//! IPv6 client; `expand_domain` stays within RFC 7208 §7.3's 253 octets.
#![no_main]

use authgate::spf::macros::{Letter, MacroContext, MacroString};
use libfuzzer_sys::fuzz_target;

fn context(ip: &str) -> MacroContext<'static> {
    MacroContext {
        sender: "strong-bad@email.example.com",
        local: "strong-bad",
        sender_domain: "email.example.com",
        domain: "email.example.com",
        ip: ip.parse().expect("fixed IP"),
        validated_ptr: Some("mx.example.org"),
        helo: "mx.example.org",
        receiver: "mx.example.net",
        now: 1_000_000_000,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let explain = mode & 1 == 1;
    let Ok(ms) = MacroString::parse(s, explain) else {
        return;
    };
    let text = ms.to_string();
    let back = MacroString::parse(&text, explain)
        .unwrap_or_else(|e| panic!("emitted macro-string does not parse: {e}\n{text}"));
    assert_eq!(back, ms, "round trip changed the macro-string\n{text}");
    let _ = ms.uses(Letter::Ptr);

    for ip in ["192.0.2.3", "2001:db8::cb01"] {
        let ctx = context(ip);
        let _ = ms.expand(&ctx);
        let domain = ms.expand_domain(&ctx);
        let len = domain.strip_suffix('.').unwrap_or(&domain).len();
        assert!(len <= 253, "expand_domain gave {len} octets: {domain}");
    }
    if let Ok(spec) = MacroString::parse_domain_spec(s) {
        assert_eq!(spec, ms, "domain-spec parses differently");
    }
});

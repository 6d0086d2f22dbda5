//! Authentication-Results (RFC 8601): reading the authserv-id of untrusted
//! fields, and quoting what we write.
//!
//! Asserts: `value()` never lets CR, LF or an unescaped quote through; a
//! non-empty id survives `build` then `authserv_id`; comments (before and
//! after the properties) and property values from hostile reasons cannot
//! break out of the field (the only CR/LF in `build` output are its own
//! CRLF TAB folds).
#![no_main]

use authgate::authres::{Entry, authserv_id, build, claims, value};
use libfuzzer_sys::fuzz_target;

/// Checks `v` is a bare pvalue or a well-formed quoted-string.
fn assert_safe(v: &str) {
    assert!(!v.contains(['\r', '\n']), "CR/LF in {v:?}");
    let Some(inner) = v.strip_prefix('"') else {
        assert!(!v.contains(['"', '\\', ';', ' ', '(']), "bare {v:?}");
        return;
    };
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            Some('\\') => assert!(chars.next().is_some(), "dangling escape in {v:?}"),
            Some('"') => {
                assert_eq!(chars.next(), None, "text after closing quote in {v:?}");
                return;
            }
            Some(_) => {}
            None => panic!("unterminated quoted-string {v:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(id) = authserv_id(data) {
        assert!(!id.is_empty());
        assert!(claims(data, &id));
    }
    let text = String::from_utf8_lossy(data);
    let v = value(&text);
    assert_safe(&v);

    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    let field = build(&text, &[]);
    if !clean.is_empty() {
        assert_eq!(
            authserv_id(field.as_bytes()),
            Some(clean.clone()),
            "{field:?}"
        );
    }

    let entry = Entry {
        method: "dkim".into(),
        result: "fail".into(),
        comment: Some(text.to_string()),
        props: vec![("header.d".into(), text.to_string())],
        trailing: Some(text.to_string()),
    };
    let field = build("mx.example.org", &[entry]);
    let unfolded = field.replace("\r\n\t", " ");
    assert!(!unfolded.contains(['\r', '\n']), "CR/LF in {field:?}");
    assert_eq!(
        authserv_id(field.as_bytes()).as_deref(),
        Some("mx.example.org")
    );
});

//! Case inputs as templates, so that a 100 KB line or 10 000 headers are
//! one line of a manifest, and the 10× variant is the same template with
//! its counts multiplied.
//!
//! - `{{rep:COUNT:BODY}}`: BODY COUNT × scale times (the counts that scale);
//! - `{{fixed:COUNT:BODY}}`: BODY COUNT times whatever the scale;
//! - `{{i}}`, `{{next}}`: the innermost repetition's index and index + 1;
//! - `{{hex:HEX}}`: raw bytes (invalid UTF-8, NUL), whitespace ignored;
//! - `{{pkt:C:BODY}}`: a milter packet, its length computed;
//! - `{{be32:N}}`: a 4-byte big-endian number (a length that lies).

/// Expands `t` at `scale` (1 or 10).
pub fn expand(t: &str, scale: usize) -> Vec<u8> {
    let mut out = Vec::new();
    expand_into(t, scale, 0, &mut out);
    out
}

fn expand_into(t: &str, scale: usize, index: usize, out: &mut Vec<u8>) {
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let end = start + closing(&rest[start..]);
        let inner = &rest[start + 2..end - 2];
        directive(inner, scale, index, out);
        rest = &rest[end..];
    }
    out.extend_from_slice(rest.as_bytes());
}

/// Length of the `{{...}}` at the start of `s`, nested ones included.
fn closing(s: &str) -> usize {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i + 1 < b.len() {
        if &b[i..i + 2] == b"{{" {
            depth += 1;
            i += 2;
        } else if &b[i..i + 2] == b"}}" {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    panic!("unclosed {{{{ in template: {s:.60}");
}

fn directive(inner: &str, scale: usize, index: usize, out: &mut Vec<u8>) {
    let (name, arg) = inner.split_once(':').unwrap_or((inner, ""));
    match name {
        "i" => out.extend_from_slice(index.to_string().as_bytes()),
        "next" => out.extend_from_slice((index + 1).to_string().as_bytes()),
        "rep" | "fixed" => {
            let (count, body) = arg.split_once(':').expect("rep:COUNT:BODY");
            let count: usize = count.parse().expect("a count");
            let n = if name == "rep" { count * scale } else { count };
            for i in 0..n {
                expand_into(body, scale, i, out);
            }
        }
        "hex" => {
            let digits: Vec<u8> = arg.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            for pair in digits.chunks(2) {
                let s = std::str::from_utf8(pair).unwrap();
                out.push(u8::from_str_radix(s, 16).expect("hex"));
            }
        }
        "pkt" => {
            let (cmd, body) = arg.split_once(':').unwrap_or((arg, ""));
            let mut data = Vec::new();
            expand_into(body, scale, index, &mut data);
            let len = u32::try_from(data.len() + 1).unwrap();
            out.extend_from_slice(&len.to_be_bytes());
            out.push(cmd.as_bytes()[0]);
            out.extend_from_slice(&data);
        }
        "be32" => {
            let n: u32 = arg.parse().expect("a number");
            out.extend_from_slice(&n.to_be_bytes());
        }
        other => panic!("unknown template directive {other:?}"),
    }
}

/// Checks the template language itself (run first by the corpus test, not a
/// test of its own: no other test may run beside the allocation counter).
pub fn self_test() {
    assert_eq!(expand("a{{rep:2:<{{i}}>}}b", 1), b"a<0><1>b");
    assert_eq!(expand("{{rep:1:x}}", 10), b"xxxxxxxxxx");
    assert_eq!(expand("{{fixed:2:x}}", 10), b"xx");
    assert_eq!(expand("{{hex:00 ff}}", 1), b"\x00\xff");
    assert_eq!(expand("{{pkt:Q}}", 1), b"\x00\x00\x00\x01Q");
    assert_eq!(expand("{{rep:2:{{rep:2:y}}}}", 1), b"yyyy");
}

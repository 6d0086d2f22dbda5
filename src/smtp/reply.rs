//! SMTP replies: the ones we write and the ones a next hop sends us.
//!
//! Owns: parsing a complete reply (through smtp-proto's `ResponseReceiver`)
//! and writing one, multi-line included, with or without an enhanced status
//! code. Must not: decide which reply to give.

use std::fmt;

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit code.
    pub code: u16,
    /// Enhanced status code (RFC 3463), if any.
    pub status: Option<[u8; 3]>,
    /// Text lines (without code, status or CRLF); at least one.
    pub lines: Vec<String>,
}

/// A next hop's reply we cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply from next hop: {0}")]
pub struct ReplyError(String);

impl From<&crate::outcome::Answer> for Reply {
    fn from(a: &crate::outcome::Answer) -> Reply {
        Reply::new(a.code, a.enhanced, a.text.clone())
    }
}

impl Reply {
    /// A one-line reply; `status` like `"2.0.0"` or `""` for none.
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: parse_status(status),
            lines: vec![text.into()],
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The bytes on the wire, CRLF-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        out
    }

    /// Appends the wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map_or("", String::as_str);
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some([a, b, c]) = self.status {
                out.extend_from_slice(format!("{a}.{b}.{c} ").as_bytes());
            }
            // Never let text break the framing.
            out.extend(text.bytes().filter(|&b| b != b'\r' && b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Parses one complete reply (all its lines, CRLF or LF terminated).
    pub fn parse(bytes: &[u8]) -> Result<Reply, ReplyError> {
        let mut receiver = smtp_proto::response::parser::ResponseReceiver::default();
        let resp = receiver
            .parse(&mut bytes.iter())
            .map_err(|e| ReplyError(format!("{e:?}: {:?}", String::from_utf8_lossy(bytes))))?;
        if !(200..600).contains(&resp.code) {
            return Err(ReplyError(format!("code {}", resp.code)));
        }
        let status = (resp.esc[0] != 0).then_some(resp.esc);
        let lines = resp
            .message
            .split('\n')
            .map(|l| printable(l.trim_end_matches('\r')))
            .collect();
        Ok(Reply {
            code: resp.code,
            status,
            lines,
        })
    }
}

/// Reply text as relayed: bytes that were not UTF-8 (decoded as U+FFFD, 3
/// bytes each) and control characters become `?`, so the text never grows
/// past what the next hop sent (smtp-proto refuses replies over 4096 bytes)
/// and carries no NUL or escape to the client.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c == char::REPLACEMENT_CHARACTER || (c.is_control() && c != '\t') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn parse_status(s: &str) -> Option<[u8; 3]> {
    let mut parts = s.split('.').map(|p| p.parse::<u8>().ok());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some([a, b, c]),
        _ => None,
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some([a, b, c]) = self.status {
            write!(f, " {a}.{b}.{c}")?;
        }
        write!(f, " {}", self.lines.join(" / "))
    }
}

/// Splits complete replies off the front of `buf`: returns the length of
/// the first complete reply, if one is there (its last line has a space or
/// nothing after the code).
pub fn complete_reply_len(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(nl) = memchr::memchr(b'\n', &buf[start..]) {
        let line = &buf[start..start + nl];
        let end = start + nl + 1;
        if line.len() < 4 || line[3] != b'-' {
            return Some(end);
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz `smtp_reply`, 2026-12-08: 0xff bytes in a long reply grew to
    /// U+FFFD (3 bytes each), and the relayed reply no longer parsed
    /// (ResponseTooLong). Minimised from the crash input.
    #[test]
    fn non_utf8_text_is_relayed_without_growing() {
        let mut wire = b"250-".to_vec();
        wire.extend(std::iter::repeat_n(0xffu8, 2000));
        wire.extend_from_slice(b"\0\x1b\r\n250 XF54 \xc3go\r\n");
        let r = Reply::parse(&wire).unwrap();
        let again = r.to_bytes();
        assert!(
            again.len() <= wire.len(),
            "{} > {}",
            again.len(),
            wire.len()
        );
        let r2 = Reply::parse(&again).unwrap();
        assert_eq!(r2.code, 250);
        assert_eq!(r2.lines, r.lines);
        assert!(r.lines[0].bytes().all(|b| b == b'?'));
        assert_eq!(r.lines[1], "XF54 ?go");
    }

    #[test]
    fn parses_single_and_multi_line_replies() {
        let r = Reply::parse(b"250 2.0.0 Ok: queued as 4ABC\r\n").unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.status, Some([2, 0, 0]));
        assert_eq!(r.lines, ["Ok: queued as 4ABC"]);
        let r = Reply::parse(b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n").unwrap();
        assert_eq!(r.lines, ["mx.example", "PIPELINING", "8BITMIME"]);
        assert_eq!(r.status, None);
        let r = Reply::parse(b"452 4.2.2 <bob@example.test> Quota exceeded\r\n").unwrap();
        assert!((400..500).contains(&r.code));
    }

    #[test]
    fn writes_what_it_parses() {
        for wire in [
            &b"250 2.1.0 Ok\r\n"[..],
            b"550 5.1.1 <x@example.test>: Recipient address rejected\r\n",
            b"250-a\r\n250-b\r\n250 c\r\n",
            b"220 mx ESMTP\r\n",
        ] {
            assert_eq!(Reply::parse(wire).unwrap().to_bytes(), wire);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"hello\r\n"[..],
            b"9999 x\r\n",
            b"\r\n",
            b"12\r\n",
            b"100 x\r\n",
        ] {
            assert!(Reply::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn finds_the_end_of_a_reply() {
        assert_eq!(complete_reply_len(b"250-a\r\n250 b\r\nxx"), Some(14));
        assert_eq!(complete_reply_len(b"250-a\r\n250-b\r\n"), None);
        assert_eq!(complete_reply_len(b"250 ok"), None);
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(550, "5.7.1", "bad\r\n250 ok");
        assert_eq!(r.to_bytes(), b"550 5.7.1 bad250 ok\r\n");
    }
}

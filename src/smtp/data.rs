//! The DATA phase on the wire: removing and adding dot-stuffing
//! (RFC 5321 §4.5.2) as the bytes stream, finding the final `.`.
//!
//! Owns: transparency in both directions and the longest-line measurement.
//! Must not: buffer the message (callers pass chunks through).

/// Removes dot-stuffing from DATA bytes and finds the terminating line.
///
/// A bare LF ends a line (for dot-stuffing and line lengths), but only
/// `<CRLF>.<CRLF>` ends the data (RFC 5321 §4.1.1.4): a `.` line that a bare
/// LF precedes or ends is content. Treating `<LF>.<LF>` (or `<CRLF>.<LF>`,
/// `<LF>.<CRLF>`) as the end would let a client smuggle a second
/// transaction past a server that sees one message (SMTP smuggling,
/// CVE-2023-51764/51765/51766); Postfix's `smtpd_forbid_bare_newline =
/// normalize` draws the same line.
#[derive(Debug, Clone)]
pub struct DotDecoder {
    line_start: bool,
    /// The current line began after a CRLF (or at the start of the data).
    after_crlf: bool,
    /// The last byte seen was a CR (it may have come in an earlier chunk).
    prev_cr: bool,
    dot: Dot,
    line_len: usize,
    longest: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dot {
    None,
    /// A `.` at the start of a line.
    Seen,
    /// `.` then CR at the start of a line.
    SeenCr,
}

impl Default for DotDecoder {
    fn default() -> Self {
        DotDecoder {
            line_start: true,
            after_crlf: true,
            prev_cr: false,
            dot: Dot::None,
            line_len: 0,
            longest: 0,
        }
    }
}

impl DotDecoder {
    /// Decodes `input` into `out`. Returns `Some(n)` when the terminating
    /// `.` line ends at `input[..n]` (bytes after it are the client's next
    /// commands), `None` when more data is needed.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        self.push_with(input, |piece| out.extend_from_slice(piece))
    }

    /// [`DotDecoder::push`] without a copy: the decoded bytes are handed to
    /// `emit` as slices of `input` (as few as the stuffed dots allow: runs
    /// of lines go out as one slice).
    pub fn push_with(&mut self, input: &[u8], mut emit: impl FnMut(&[u8])) -> Option<usize> {
        // Start of the bytes decoded but not yet emitted.
        let mut run = 0;
        let mut i = 0;
        let flush = |emit: &mut dyn FnMut(&[u8]), from: usize, to: usize| {
            if to > from {
                emit(&input[from..to]);
            }
        };
        while i < input.len() {
            let b = input[i];
            match self.dot {
                Dot::Seen => match b {
                    b'\r' => {
                        self.dot = Dot::SeenCr;
                        i += 1;
                        run = i;
                        continue;
                    }
                    b'\n' => {
                        // "." then a bare LF: a line holding one dot.
                        self.dot_line_is_content();
                        emit(b".");
                        continue;
                    }
                    _ => {
                        // ".x": the stuffed dot goes, the line goes on.
                        self.dot = Dot::None;
                        self.line_start = false;
                        self.line_len = 0;
                        self.prev_cr = false;
                        continue;
                    }
                },
                Dot::SeenCr => {
                    if b == b'\n' && self.after_crlf {
                        return Some(i + 1);
                    }
                    if b == b'\n' {
                        // ".<CRLF>" after a bare LF: content, the dot kept.
                        self.dot_line_is_content();
                        emit(b".");
                    } else {
                        self.dot = Dot::None;
                        self.line_start = false;
                    }
                    self.line_len += 1;
                    self.prev_cr = true;
                    // The CR after the dot may have come in an earlier chunk.
                    emit(b"\r");
                    continue;
                }
                Dot::None => {}
            }
            if self.line_start && b == b'.' {
                flush(&mut emit, run, i);
                self.dot = Dot::Seen;
                i += 1;
                run = i;
                continue;
            }
            let rest = &input[i..];
            match memchr::memchr(b'\n', rest) {
                Some(nl) => {
                    let cr = if nl > 0 {
                        rest[nl - 1] == b'\r'
                    } else {
                        self.prev_cr
                    };
                    self.end_line(self.line_len + nl, cr);
                    i += nl + 1;
                }
                None => {
                    self.line_start = false;
                    self.line_len += rest.len();
                    self.longest = self.longest.max(self.line_len);
                    self.prev_cr = rest.last() == Some(&b'\r');
                    i = input.len();
                }
            }
        }
        flush(&mut emit, run, i);
        None
    }

    /// A `.` line that does not end the data (a bare LF precedes or ends
    /// it): its dot is content, and the line goes on to its LF.
    fn dot_line_is_content(&mut self) {
        self.dot = Dot::None;
        self.line_start = false;
        self.line_len = 1;
        self.prev_cr = false;
    }

    fn end_line(&mut self, len_with_cr: usize, crlf: bool) {
        self.longest = self.longest.max(len_with_cr.saturating_sub(1));
        self.line_start = true;
        self.after_crlf = crlf;
        self.prev_cr = false;
        self.line_len = 0;
    }

    /// The longest line so far, without its line ending (CR counted out).
    pub fn longest_line(&self) -> usize {
        self.longest
    }
}

/// Adds dot-stuffing to message bytes on their way to a next hop.
#[derive(Debug, Clone)]
pub struct DotEncoder {
    line_start: bool,
    last: u8,
}

impl Default for DotEncoder {
    fn default() -> Self {
        DotEncoder {
            line_start: true,
            last: b'\n',
        }
    }
}

impl DotEncoder {
    /// Appends `input`, stuffed, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() {
            if self.line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            match memchr::memchr(b'\n', rest) {
                Some(nl) => {
                    out.extend_from_slice(&rest[..=nl]);
                    self.line_start = true;
                    rest = &rest[nl + 1..];
                }
                None => {
                    out.extend_from_slice(rest);
                    self.line_start = false;
                    rest = &[];
                }
            }
        }
        if let Some(&b) = input.last() {
            self.last = b;
        }
    }

    /// The terminating line (with a CRLF first if the message lacked one).
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.last != b'\n' {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(wire: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut d = DotDecoder::default();
        let mut out = Vec::new();
        let end = d.push(wire, &mut out);
        (out, end)
    }

    #[test]
    fn unstuffs_and_finds_the_end() {
        let (out, end) = decode_all(b"Subject: x\r\n\r\n..leading\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"Subject: x\r\n\r\n.leading\r\n");
        assert_eq!(end, Some(28));
        let (out, end) = decode_all(b".\r\n");
        assert!(out.is_empty());
        assert_eq!(end, Some(3));
        let (out, end) = decode_all(b"a\r\n.x\r\n");
        assert_eq!(out, b"a\r\nx\r\n");
        assert_eq!(end, None);
    }

    #[test]
    fn only_crlf_dot_crlf_ends_the_data() {
        // SMTP smuggling: each of these dot lines is content, and the data
        // ends only at the CRLF . CRLF after it.
        for (wire, content) in [
            (&b"a\n.\nMAIL\r\n.\r\n"[..], &b"a\n.\nMAIL\r\n"[..]),
            (b"a\r\n.\nMAIL\r\n.\r\n", b"a\r\n.\nMAIL\r\n"),
            (b"a\n.\r\nMAIL\r\n.\r\n", b"a\n.\r\nMAIL\r\n"),
            (b".\nMAIL\r\n.\r\n", b".\nMAIL\r\n"),
        ] {
            let (out, end) = decode_all(wire);
            assert_eq!(out, content, "{:?}", String::from_utf8_lossy(wire));
            assert_eq!(end, Some(wire.len()), "{:?}", String::from_utf8_lossy(wire));
        }
        // Split between the CR and the LF before the dot.
        let mut d = DotDecoder::default();
        let mut out = Vec::new();
        assert_eq!(d.push(b"a\r", &mut out), None);
        assert_eq!(d.push(b"\n.\r\n", &mut out), Some(4));
        assert_eq!(out, b"a\r\n");
    }

    #[test]
    fn measures_lines() {
        let mut d = DotDecoder::default();
        let mut out = Vec::new();
        d.push(b"abc\r\n12345", &mut out);
        d.push(b"678\r\n.\r\n", &mut out);
        assert_eq!(d.longest_line(), 8);
    }

    #[test]
    fn stuffing_adds_dots_and_the_final_line() {
        let mut e = DotEncoder::default();
        let mut out = Vec::new();
        e.push(b".a\r\nb\r", &mut out);
        e.push(b"\n.", &mut out);
        e.push(b"c", &mut out);
        e.finish(&mut out);
        assert_eq!(out, b"..a\r\nb\r\n..c\r\n.\r\n");
    }

    /// The byte-by-byte decoder `push_with` replaced (copying every line):
    /// the reference the slicing decoder must match on any input.
    #[derive(Default)]
    struct Reference(DotDecoder);

    impl Reference {
        fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
            let mut i = 0;
            while i < input.len() {
                let b = input[i];
                match self.0.dot {
                    Dot::Seen => match b {
                        b'\r' => {
                            self.0.dot = Dot::SeenCr;
                            i += 1;
                            continue;
                        }
                        b'\n' => {
                            self.0.dot_line_is_content();
                            out.push(b'.');
                            continue;
                        }
                        _ => {
                            // ".x": the stuffed dot goes, the line goes on.
                            self.0.dot = Dot::None;
                            self.0.line_start = false;
                            self.0.line_len = 0;
                            self.0.prev_cr = false;
                            continue;
                        }
                    },
                    Dot::SeenCr => {
                        if b == b'\n' && self.0.after_crlf {
                            return Some(i + 1);
                        }
                        if b == b'\n' {
                            self.0.dot_line_is_content();
                            out.push(b'.');
                        } else {
                            self.0.dot = Dot::None;
                            self.0.line_start = false;
                        }
                        self.0.line_len += 1;
                        self.0.prev_cr = true;
                        out.push(b'\r');
                        continue;
                    }
                    Dot::None => {}
                }
                if self.0.line_start && b == b'.' {
                    self.0.dot = Dot::Seen;
                    i += 1;
                    continue;
                }
                let rest = &input[i..];
                match memchr::memchr(b'\n', rest) {
                    Some(nl) => {
                        out.extend_from_slice(&rest[..=nl]);
                        let cr = if nl > 0 {
                            rest[nl - 1] == b'\r'
                        } else {
                            self.0.prev_cr
                        };
                        self.0.end_line(self.0.line_len + nl, cr);
                        i += nl + 1;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        self.0.line_start = false;
                        self.0.line_len += rest.len();
                        self.0.longest = self.0.longest.max(self.0.line_len);
                        self.0.prev_cr = rest.last() == Some(&b'\r');
                        i = input.len();
                    }
                }
            }
            None
        }
    }

    proptest! {
        #[test]
        fn slices_match_the_copying_decoder(
            wire in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= wire.len()).collect();
            cuts.sort_unstable();
            let (mut new, mut old) = (DotDecoder::default(), Reference::default());
            let (mut got, mut want) = (Vec::new(), Vec::new());
            let mut prev = 0;
            for cut in cuts.into_iter().chain([wire.len()]) {
                let piece = &wire[prev..cut.max(prev)];
                let end = new.push_with(piece, |p| {
                    assert!(!p.is_empty());
                    got.extend_from_slice(p);
                });
                prop_assert_eq!(end, old.push(piece, &mut want));
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(new.longest_line(), old.0.longest_line());
                if end.is_some() {
                    break;
                }
                prev = cut.max(prev);
            }
        }

        #[test]
        fn any_split_decodes_what_was_encoded(
            msg in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
            cuts in proptest::collection::vec(0usize..220, 0..6),
        ) {
            // Canonical CRLF message, as an MTA hands it over.
            let text = String::from_utf8(msg).unwrap().replace('\r', "").replace('\n', "\r\n");
            let mut msg = text.into_bytes();
            if !msg.is_empty() && !msg.ends_with(b"\r\n") {
                msg.extend_from_slice(b"\r\n");
            }
            let mut enc = DotEncoder::default();
            let mut wire = Vec::new();
            enc.push(&msg, &mut wire);
            enc.finish(&mut wire);
            wire.extend_from_slice(b"RSET\r\n");
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= wire.len()).collect();
            cuts.sort_unstable();
            let mut d = DotDecoder::default();
            let mut out = Vec::new();
            let mut prev = 0;
            let mut end = None;
            for cut in cuts.into_iter().chain([wire.len()]) {
                if cut < prev { continue; }
                if let Some(n) = d.push(&wire[prev..cut], &mut out) {
                    end = Some(prev + n);
                    break;
                }
                prev = cut;
            }
            prop_assert_eq!(out, msg);
            prop_assert_eq!(end, Some(wire.len() - 6));
        }
    }
}

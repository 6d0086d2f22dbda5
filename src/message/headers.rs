//! The RFC 5322 header block: split into fields, tolerant of anything.
//!
//! Owns: splitting a header block into [`Header`]s, keeping each field's exact
//! bytes (folding, line endings, 8-bit content) so output can reproduce the
//! input byte for byte. Must not: reject a message, allocate per byte, or
//! interpret field bodies (that is the job of `dkim/`, `authres`).

/// One header field exactly as it appeared, including its line ending(s).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    raw: Vec<u8>,
    colon: Option<usize>,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Header({:?})", String::from_utf8_lossy(&self.raw))
    }
}

impl Header {
    /// Wraps raw field bytes (`Name: value` plus its line ending and any
    /// continuation lines). A line without a colon is kept as a malformed
    /// field whose name is the whole line.
    pub fn from_raw(raw: Vec<u8>) -> Self {
        let colon = raw.iter().position(|&b| b == b':');
        Header { raw, colon }
    }

    /// Builds a field from a name and an already folded value. `eol` is the
    /// line ending to use (`\r\n` or `\n`); `value` uses CRLF internally and is
    /// converted.
    pub fn new(name: &str, value: &str, eol: &[u8]) -> Self {
        let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.push(b':');
        for (i, line) in value.split("\r\n").enumerate() {
            if i > 0 {
                raw.extend_from_slice(eol);
            }
            raw.extend_from_slice(line.as_bytes());
        }
        raw.extend_from_slice(eol);
        Self::from_raw(raw)
    }

    /// The exact bytes, line endings included.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The field name (bytes before the colon), trailing whitespace removed.
    pub fn name(&self) -> &[u8] {
        match self.colon {
            Some(c) => trim_end_wsp(&self.raw[..c]),
            None => trim_eol(&self.raw),
        }
    }

    /// Whether the name equals `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.colon.is_some() && self.name().eq_ignore_ascii_case(name.as_bytes())
    }

    /// The unparsed value after the colon, line ending removed (folding kept).
    pub fn value(&self) -> &[u8] {
        match self.colon {
            Some(c) => trim_eol(&self.raw[c + 1..]),
            None => &[],
        }
    }

    /// The value unfolded (CR and LF removed) and trimmed, lossily decoded.
    pub fn value_str(&self) -> String {
        let unfolded: Vec<u8> = self
            .value()
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        let text = match String::from_utf8(unfolded) {
            Ok(valid) => valid,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let trimmed = text.trim();
        if trimmed.len() == text.len() {
            text
        } else {
            trimmed.to_owned()
        }
    }

    /// Whether the field was well formed (has a colon and a non-empty name).
    pub fn is_well_formed(&self) -> bool {
        self.colon.is_some() && !self.name().is_empty()
    }
}

fn trim_end_wsp(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |p| p + 1);
    &b[..end]
}

fn trim_eol(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    if end > 0 && b[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && b[end - 1] == b'\r' {
            end -= 1;
        }
    }
    &b[..end]
}

/// Splits a complete header block (without the blank separator line) into
/// fields. Continuation lines (starting with SP or HTAB) join the previous
/// field; a continuation before any field starts a malformed field of its own.
pub fn split_fields(block: &[u8]) -> Vec<Header> {
    let mut fields: Vec<Header> = Vec::with_capacity(32);
    // Start of the field being collected; each field is copied once, whole.
    let mut start = 0;
    let mut pos = 0;
    while pos < block.len() {
        let continuation = matches!(block[pos], b' ' | b'\t');
        if !continuation && pos > start {
            fields.push(Header::from_raw(block[start..pos].to_vec()));
            start = pos;
        }
        pos = memchr::memchr(b'\n', &block[pos..]).map_or(block.len(), |p| pos + p + 1);
    }
    if pos > start {
        fields.push(Header::from_raw(block[start..pos].to_vec()));
    }
    fields
}

/// Canonical CRLF form of raw bytes: every LF not preceded by CR becomes CRLF.
pub fn to_crlf(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let needs = raw
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'));
    if !needs {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_folded_fields_and_keeps_bytes() {
        let block = b"From: a@b\r\nSubject: one\r\n two\r\nX: \xff\xfe\r\n";
        let f = split_fields(block);
        assert_eq!(f.len(), 3);
        assert!(f[1].is("subject"));
        assert_eq!(f[1].value(), b" one\r\n two");
        assert_eq!(f[1].value_str(), "one two");
        let joined: Vec<u8> = f.iter().flat_map(|h| h.raw().to_vec()).collect();
        assert_eq!(joined, block.to_vec());
    }

    #[test]
    fn malformed_lines_are_kept_not_rejected() {
        for block in [
            &b"no colon here\nFrom: x\n"[..],
            b" leading fold\nA: b\n",
            b"A: b",
        ] {
            let f = split_fields(block);
            let joined: Vec<u8> = f.iter().flat_map(|h| h.raw().to_vec()).collect();
            assert_eq!(joined, block.to_vec());
        }
        assert!(!split_fields(b"no colon\n")[0].is_well_formed());
        // A fold before any field is a field of its own; an empty block has none.
        assert_eq!(split_fields(b" leading fold\n\tmore\nA: b\n").len(), 2);
        assert!(split_fields(b"").is_empty());
    }

    #[test]
    fn name_ignores_space_before_colon() {
        let h = Header::from_raw(b"Subject : hi\n".to_vec());
        assert!(h.is("subject"));
        assert_eq!(h.value(), b" hi");
    }

    #[test]
    fn lf_becomes_crlf_once() {
        assert_eq!(&*to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert!(matches!(to_crlf(b"a\r\n"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn new_header_uses_requested_eol() {
        let h = Header::new("X-A", " one\r\n\ttwo", b"\n");
        assert_eq!(h.raw(), b"X-A: one\n\ttwo\n");
    }
}

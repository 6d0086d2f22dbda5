//! DKIM canonicalization (RFC 6376 §3.4) and streaming body hashing.
//!
//! Owns: the `simple` and `relaxed` algorithms for header fields and bodies,
//! and [`BodyHashes`], which feeds one pass over the body into every body hash
//! a message needs (one per distinct canonicalization and `l=`). Input may
//! use CRLF or bare LF; the canonical form is always CRLF. Must not: keep the
//! body — only hash state and at most one partial line are held.

use sha2::{Digest, Sha256};

use crate::message::headers::Header;

/// A canonicalization algorithm (RFC 6376 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Canon {
    /// `simple`: (almost) no changes tolerated.
    Simple,
    /// `relaxed`: tolerates whitespace changes and header re-folding.
    Relaxed,
}

impl Canon {
    /// The name as written in `c=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Canon::Simple => "simple",
            Canon::Relaxed => "relaxed",
        }
    }

    /// Parses one side of `c=` (case-insensitive).
    pub fn parse(s: &str) -> Option<Canon> {
        if s.eq_ignore_ascii_case("simple") {
            Some(Canon::Simple)
        } else if s.eq_ignore_ascii_case("relaxed") {
            Some(Canon::Relaxed)
        } else {
            None
        }
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Appends the canonical form of one header field, CRLF-terminated, to `out`.
pub fn canon_header(h: &Header, canon: Canon, out: &mut Vec<u8>) {
    match canon {
        Canon::Simple => out.extend_from_slice(&crate::message::headers::to_crlf(h.raw())),
        Canon::Relaxed => relaxed_header(h.name(), h.value(), out),
    }
}

/// RFC 6376 §3.4.2: lower-case name, unfold, collapse WSP, trim, `name:value`.
fn relaxed_header(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let mut pending_space = false;
    let mut started = false;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        i += 1;
        if b == b'\r' && value.get(i) == Some(&b'\n') {
            continue;
        }
        if b == b'\n' {
            continue;
        }
        if is_wsp(b) {
            pending_space = started;
            continue;
        }
        if pending_space {
            out.push(b' ');
            pending_space = false;
        }
        started = true;
        out.push(b);
    }
    out.extend_from_slice(b"\r\n");
}

/// What one body hash covers: canonicalization and optional `l=` limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BodySpec {
    /// Body canonicalization.
    pub canon: Canon,
    /// `l=`: number of canonical body octets hashed; `None` = whole body.
    pub limit: Option<u64>,
}

/// A finished body hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyHash {
    /// SHA-256 of the (possibly truncated) canonical body.
    pub digest: [u8; 32],
    /// Length of the whole canonical body, whatever the limit.
    pub canonical_len: u64,
}

/// Size of the block gathered before hashing.
const BLOCK: usize = 16 * 1024;

/// One streaming body hasher fed with lines (content without line ending).
#[derive(Clone)]
struct LineHasher {
    spec: BodySpec,
    sha: Sha256,
    /// Canonical bytes not yet hashed: many small `update` calls are slow,
    /// so pieces of lines are gathered into blocks first.
    buf: Vec<u8>,
    /// Reused buffer for rewriting a relaxed line.
    scratch: Vec<u8>,
    /// Empty lines seen but not yet hashed: trailing ones are dropped.
    pending_empty: u64,
    total: u64,
    emitted_any: bool,
    /// Lines of the current chunk that are already canonical including their
    /// CRLF and not yet hashed: `start..end` of that chunk.
    span: Option<(usize, usize)>,
    /// Finds a double space (a WSP run relaxed canonicalization rewrites).
    double_space: memchr::memmem::Finder<'static>,
}

impl LineHasher {
    fn new(spec: BodySpec) -> Self {
        LineHasher {
            spec,
            sha: Sha256::new(),
            buf: Vec::with_capacity(BLOCK),
            scratch: Vec::new(),
            pending_empty: 0,
            total: 0,
            emitted_any: false,
            span: None,
            double_space: memchr::memmem::Finder::new(b"  "),
        }
    }

    /// Whether `content` (a line without its CRLF) is hashed unchanged, CRLF
    /// included, with nothing held back before it.
    /// `no_wsp_run`: the line holds no TAB and no double space.
    fn takes_unchanged(&self, content: &[u8], no_wsp_run: bool) -> bool {
        if self.spec.limit.is_some() || self.pending_empty > 0 {
            return false;
        }
        let Some(&last) = content.last() else {
            return false;
        };
        match self.spec.canon {
            Canon::Simple => true,
            Canon::Relaxed => no_wsp_run && !is_wsp(last),
        }
    }

    /// One complete line of `chunk` at `start..end` (`end` past its LF).
    /// Lines already canonical join a pending span; others flush it first.
    fn chunk_line(&mut self, chunk: &[u8], start: usize, end: usize, no_wsp_run: bool) {
        let line = &chunk[start..end - 1];
        if let Some(content) = line.strip_suffix(b"\r")
            && self.takes_unchanged(content, no_wsp_run)
        {
            self.emitted_any = true;
            self.span = match self.span {
                Some((s, e)) if e == start => Some((s, end)),
                Some(_) => {
                    self.flush_span(chunk);
                    Some((start, end))
                }
                None => Some((start, end)),
            };
            return;
        }
        self.flush_span(chunk);
        self.line(line.strip_suffix(b"\r").unwrap_or(line));
    }

    /// Hashes the pending span of `chunk` (after any buffered bytes).
    fn flush_span(&mut self, chunk: &[u8]) {
        if let Some((s, e)) = self.span.take() {
            self.emit(&chunk[s..e]);
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        let before = self.total;
        self.total = self.total.saturating_add(bytes.len() as u64);
        let take = match self.spec.limit {
            None => bytes.len(),
            Some(limit) if before >= limit => 0,
            Some(limit) => {
                usize::try_from(limit - before).map_or(bytes.len(), |n| n.min(bytes.len()))
            }
        };
        if take == 0 {
            return;
        }
        let piece = &bytes[..take];
        if self.buf.len() + piece.len() > BLOCK {
            self.sha.update(&self.buf);
            self.buf.clear();
        }
        if piece.len() >= BLOCK {
            self.sha.update(piece);
        } else {
            self.buf.extend_from_slice(piece);
        }
    }

    fn flush_pending(&mut self) {
        while self.pending_empty > 0 {
            self.pending_empty -= 1;
            self.emit(b"\r\n");
        }
        self.emitted_any = true;
    }

    fn line(&mut self, content: &[u8]) {
        match self.spec.canon {
            Canon::Simple => {
                if content.is_empty() {
                    self.pending_empty += 1;
                    return;
                }
                self.flush_pending();
                self.emit(content);
            }
            Canon::Relaxed => {
                let end = content
                    .iter()
                    .rposition(|&b| !is_wsp(b))
                    .map_or(0, |p| p + 1);
                if end == 0 {
                    self.pending_empty += 1;
                    return;
                }
                self.flush_pending();
                self.relaxed_content(&content[..end]);
            }
        }
        self.emit(b"\r\n");
    }

    /// Hashes a line with no trailing WSP, collapsing inner WSP runs to one SP.
    fn relaxed_content(&mut self, line: &[u8]) {
        // Lines without TAB or double space (most text) need no rewriting.
        if memchr::memchr(b'\t', line).is_none() && self.double_space.find(line).is_none() {
            self.emit(line);
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let mut in_wsp = false;
        for &b in line {
            if is_wsp(b) {
                in_wsp = true;
            } else {
                if in_wsp {
                    scratch.push(b' ');
                    in_wsp = false;
                }
                scratch.push(b);
            }
        }
        self.emit(&scratch);
        self.scratch = scratch;
    }

    fn finish(mut self) -> BodyHash {
        if !self.emitted_any && self.spec.canon == Canon::Simple {
            // RFC 6376 §3.4.3: an empty body is canonicalized as one CRLF.
            self.emit(b"\r\n");
        }
        self.sha.update(&self.buf);
        BodyHash {
            digest: self.sha.finalize().into(),
            canonical_len: self.total,
        }
    }
}

/// Every body hash a message needs, fed in one streaming pass.
///
/// Chunks may split anywhere (inside a line or a CRLF); the result is the
/// same as hashing the whole body at once.
#[derive(Clone)]
pub struct BodyHashes {
    hashers: Vec<LineHasher>,
    partial: Vec<u8>,
    double_space: memchr::memmem::Finder<'static>,
}

/// The next TAB and the next double space at or after some position of a
/// chunk, found lazily: one scan covers many lines of base64 or plain text.
#[derive(Default)]
struct WspRuns {
    /// Position of the next TAB (`None`: not searched yet; `usize::MAX`: none).
    tab: Option<usize>,
    /// Position of the next double space, likewise.
    double_space: Option<usize>,
}

impl WspRuns {
    /// Whether `chunk[start..end]` holds no TAB and no double space.
    fn none_in(
        &mut self,
        chunk: &[u8],
        start: usize,
        end: usize,
        finder: &memchr::memmem::Finder<'_>,
    ) -> bool {
        // A double space found before `end` lies wholly inside the line, since
        // `chunk[end]` is the LF.
        next_at(&mut self.tab, chunk, start, |rest| {
            memchr::memchr(b'\t', rest)
        }) >= end
            && next_at(&mut self.double_space, chunk, start, |rest| {
                finder.find(rest)
            }) >= end
    }
}

/// The cached position if it is still ahead of `start`, else a new search.
fn next_at(
    cache: &mut Option<usize>,
    chunk: &[u8],
    start: usize,
    find: impl Fn(&[u8]) -> Option<usize>,
) -> usize {
    match *cache {
        Some(p) if p >= start => p,
        _ => {
            let p = find(&chunk[start..]).map_or(usize::MAX, |p| p + start);
            *cache = Some(p);
            p
        }
    }
}

impl BodyHashes {
    /// A hasher set for the given specs (duplicates are merged).
    pub fn new(specs: impl IntoIterator<Item = BodySpec>) -> Self {
        let mut list: Vec<BodySpec> = specs.into_iter().collect();
        list.sort();
        list.dedup();
        BodyHashes {
            hashers: list.into_iter().map(LineHasher::new).collect(),
            partial: Vec::new(),
            double_space: memchr::memmem::Finder::new(b"  "),
        }
    }

    /// Whether no hash is wanted (the body can then be skipped).
    pub fn is_empty(&self) -> bool {
        self.hashers.is_empty()
    }

    fn line(&mut self, line: &[u8]) {
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        for h in &mut self.hashers {
            h.line(content);
        }
    }

    /// Feeds the next chunk of the body (raw, CRLF or LF line endings).
    pub fn update(&mut self, mut chunk: &[u8]) {
        if self.hashers.is_empty() {
            return;
        }
        if !self.partial.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', chunk) else {
                self.partial.extend_from_slice(chunk);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&chunk[..nl]);
            self.line(&line);
            line.clear();
            self.partial = line;
            chunk = &chunk[nl + 1..];
        }
        // Complete lines are handed over as positions in `chunk`, so that runs
        // of already-canonical lines are hashed with one update.
        let mut start = 0;
        let mut runs = WspRuns::default();
        for nl in memchr::memchr_iter(b'\n', chunk) {
            let no_wsp_run = runs.none_in(chunk, start, nl, &self.double_space);
            for h in &mut self.hashers {
                h.chunk_line(chunk, start, nl + 1, no_wsp_run);
            }
            start = nl + 1;
        }
        for h in &mut self.hashers {
            h.flush_span(chunk);
        }
        self.partial.extend_from_slice(&chunk[start..]);
    }

    /// Ends the body and returns each spec with its hash.
    pub fn finish(mut self) -> Vec<(BodySpec, BodyHash)> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            // A final line without line ending: its bytes count, a CRLF is added.
            for h in &mut self.hashers {
                h.line(&line);
            }
        }
        self.hashers
            .into_iter()
            .map(|h| (h.spec, h.finish()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon_body(canon: Canon, body: &[u8]) -> Vec<u8> {
        // Reference implementation straight from the RFC text, on whole bodies.
        let text = body.to_vec();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut cur = Vec::new();
        let mut i = 0;
        while i < text.len() {
            if text[i] == b'\n' {
                if cur.last() == Some(&b'\r') {
                    cur.pop();
                }
                lines.push(std::mem::take(&mut cur));
            } else {
                cur.push(text[i]);
            }
            i += 1;
        }
        if !cur.is_empty() {
            lines.push(cur);
        }
        if canon == Canon::Relaxed {
            for l in &mut lines {
                let mut out = Vec::new();
                let mut ws = false;
                for &b in l.iter() {
                    if b == b' ' || b == b'\t' {
                        ws = true;
                    } else {
                        if ws {
                            out.push(b' ');
                        }
                        ws = false;
                        out.push(b);
                    }
                }
                *l = out;
            }
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
        if out.is_empty() && canon == Canon::Simple {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn hash_whole(spec: BodySpec, body: &[u8]) -> BodyHash {
        let mut h = BodyHashes::new([spec]);
        h.update(body);
        h.finish().remove(0).1
    }

    #[test]
    fn rfc6376_section_3_4_5_examples() {
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        let relaxed = canon_body(Canon::Relaxed, body);
        assert_eq!(relaxed, b" C\r\nD E\r\n");
        let simple = canon_body(Canon::Simple, body);
        assert_eq!(simple, b" C \r\nD \t E\r\n");
        for (canon, want) in [(Canon::Relaxed, relaxed), (Canon::Simple, simple)] {
            let got = hash_whole(BodySpec { canon, limit: None }, body);
            assert_eq!(got.digest.to_vec(), Sha256::digest(&want).to_vec());
        }
        let mut out = Vec::new();
        let h = Header::from_raw(b"A: X\r\n".to_vec());
        canon_header(&h, Canon::Relaxed, &mut out);
        let h = Header::from_raw(b"B : Y\t\r\n\tZ  \r\n".to_vec());
        canon_header(&h, Canon::Relaxed, &mut out);
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
    }

    #[test]
    fn empty_body_hashes_per_rfc() {
        let simple = hash_whole(
            BodySpec {
                canon: Canon::Simple,
                limit: None,
            },
            b"",
        );
        assert_eq!(simple.digest.to_vec(), Sha256::digest(b"\r\n").to_vec());
        let relaxed = hash_whole(
            BodySpec {
                canon: Canon::Relaxed,
                limit: None,
            },
            b"\r\n \r\n",
        );
        assert_eq!(relaxed.digest.to_vec(), Sha256::digest(b"").to_vec());
    }

    #[test]
    fn lf_and_crlf_bodies_hash_alike() {
        for canon in [Canon::Simple, Canon::Relaxed] {
            let spec = BodySpec { canon, limit: None };
            assert_eq!(
                hash_whole(spec, b"a b\nc\n\n"),
                hash_whole(spec, b"a b\r\nc\r\n\r\n")
            );
        }
    }

    #[test]
    fn limit_truncates_hash_but_counts_length() {
        let spec = BodySpec {
            canon: Canon::Simple,
            limit: Some(3),
        };
        let got = hash_whole(spec, b"hello\r\n");
        assert_eq!(got.digest.to_vec(), Sha256::digest(b"hel").to_vec());
        assert_eq!(got.canonical_len, 7);
    }

    #[test]
    fn missing_final_newline_gets_crlf() {
        for canon in [Canon::Simple, Canon::Relaxed] {
            let spec = BodySpec { canon, limit: None };
            assert_eq!(hash_whole(spec, b"abc"), hash_whole(spec, b"abc\r\n"));
        }
    }

    proptest::proptest! {
        #[test]
        fn chunked_hash_equals_whole_and_reference(
            body in proptest::collection::vec(proptest::sample::select(vec![b'a', b' ', b'\t', b'\r', b'\n', b'x', 0xe9]), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            limit in proptest::option::of(0u64..400),
        ) {
            for canon in [Canon::Simple, Canon::Relaxed] {
                let spec = BodySpec { canon, limit };
                let whole = hash_whole(spec, &body);
                let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(body.len())).collect();
                cuts.sort();
                let mut h = BodyHashes::new([spec]);
                let mut last = 0;
                for c in cuts {
                    h.update(&body[last..c]);
                    last = c;
                }
                h.update(&body[last..]);
                let chunked = h.finish().remove(0).1;
                proptest::prop_assert_eq!(&chunked, &whole);
                let reference = canon_body(canon, &body);
                let cut = limit.map_or(reference.len(), |l| (l as usize).min(reference.len()));
                proptest::prop_assert_eq!(whole.digest.to_vec(), Sha256::digest(&reference[..cut]).to_vec());
                proptest::prop_assert_eq!(whole.canonical_len, reference.len() as u64);
            }
        }

        #[test]
        fn chunked_line_bodies_equal_reference_for_all_specs_at_once(
            lines in proptest::collection::vec((0usize..9, proptest::bool::ANY), 0..60),
            cuts in proptest::collection::vec(0usize..600, 0..8),
            limit in proptest::option::of(0u64..600),
        ) {
            // Whole lines (mostly already canonical, CRLF or LF), so that spans
            // of several lines form and are broken by every kind of line.
            const LINES: [&[u8]; 9] = [b"abc", b"a b", b"a  b", b"a\tb", b"", b" ", b"x ", b"x\r", b"0123456789"];
            let mut body = Vec::new();
            for (i, crlf) in lines {
                body.extend_from_slice(LINES[i]);
                body.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            let specs = [Canon::Simple, Canon::Relaxed]
                .into_iter()
                .flat_map(|canon| [BodySpec { canon, limit: None }, BodySpec { canon, limit }]);
            let mut h = BodyHashes::new(specs);
            let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(body.len())).collect();
            cuts.sort();
            let mut last = 0;
            for c in cuts {
                h.update(&body[last..c]);
                last = c;
            }
            h.update(&body[last..]);
            for (spec, got) in h.finish() {
                let reference = canon_body(spec.canon, &body);
                let cut = spec.limit.map_or(reference.len(), |l| (l as usize).min(reference.len()));
                proptest::prop_assert_eq!(got.digest.to_vec(), Sha256::digest(&reference[..cut]).to_vec());
                proptest::prop_assert_eq!(got.canonical_len, reference.len() as u64);
            }
        }
    }
}

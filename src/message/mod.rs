//! The message model: the header block split from the body as bytes stream in.
//!
//! Owns: finding the end of the header block in a stream of chunks, noticing
//! which line ending the message uses, author address extraction, and the body
//! spool. Must not: interpret authentication data.

pub mod address;
pub mod body;
pub mod envelope;
pub mod headers;

/// Line-ending convention of a message, taken from its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// CRLF, as on the wire.
    Crlf,
    /// Bare LF, as Exim hands transport filters messages.
    Lf,
}

impl LineEnding {
    /// The bytes of one line ending.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::Crlf => b"\r\n",
            LineEnding::Lf => b"\n",
        }
    }
}

/// What [`HeaderSplitter::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// Still inside the header block.
    NeedMore,
    /// The header block ended; `body_start` is the offset in the pushed chunk
    /// where the body begins.
    Done {
        /// Offset of the first body byte in the last chunk.
        body_start: usize,
    },
    /// The header block passed the size limit.
    TooLarge,
}

/// Accumulates the header block of a streamed message.
#[derive(Debug)]
pub struct HeaderSplitter {
    buf: Vec<u8>,
    /// Offset in `buf` where the current (unfinished) line starts.
    line_start: usize,
    limit: usize,
    ending: Option<LineEnding>,
    separator: Vec<u8>,
}

impl HeaderSplitter {
    /// A splitter that gives up past `limit` header bytes.
    pub fn new(limit: usize) -> Self {
        HeaderSplitter {
            buf: Vec::new(),
            line_start: 0,
            limit,
            ending: None,
            separator: Vec::new(),
        }
    }

    /// Feeds the next chunk. After `Done`, the header block is in
    /// [`Self::block`] and the rest of the chunk is body.
    pub fn push(&mut self, chunk: &[u8]) -> Split {
        let scan_from = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let mut pos = scan_from;
        while let Some(nl) = memchr::memchr(b'\n', &self.buf[pos..]) {
            let end = pos + nl + 1;
            let line = &self.buf[self.line_start..end];
            if self.ending.is_none() {
                self.ending = Some(if line.ends_with(b"\r\n") {
                    LineEnding::Crlf
                } else {
                    LineEnding::Lf
                });
            }
            if line == b"\r\n" || line == b"\n" {
                self.separator = line.to_vec();
                let body_start = end - scan_from;
                self.buf.truncate(self.line_start);
                return Split::Done { body_start };
            }
            self.line_start = end;
            pos = end;
        }
        if self.buf.len() > self.limit {
            Split::TooLarge
        } else {
            Split::NeedMore
        }
    }

    /// The header block so far (complete after `Done`), separator excluded.
    pub fn block(&self) -> &[u8] {
        &self.buf
    }

    /// The blank line that ended the block (empty if the input ended first).
    pub fn separator(&self) -> &[u8] {
        &self.separator
    }

    /// The message's line ending (CRLF when nothing was seen yet).
    pub fn ending(&self) -> LineEnding {
        self.ending.unwrap_or(LineEnding::Crlf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_block_end_across_chunks() {
        let msg = b"A: 1\r\nB: 2\r\n fold\r\n\r\nbody\r\n";
        for cut in 0..msg.len() {
            let mut s = HeaderSplitter::new(1000);
            let first = s.push(&msg[..cut]);
            let (res, offset) = match first {
                Split::Done { body_start } => (Split::Done { body_start }, 0),
                _ => (s.push(&msg[cut..]), cut),
            };
            let Split::Done { body_start } = res else {
                panic!("cut {cut}: {res:?}")
            };
            assert_eq!(s.block(), b"A: 1\r\nB: 2\r\n fold\r\n");
            assert_eq!(&msg[offset + body_start..], b"body\r\n");
            assert_eq!(s.ending(), LineEnding::Crlf);
        }
    }

    #[test]
    fn lf_messages_and_empty_header_blocks() {
        let mut s = HeaderSplitter::new(100);
        assert_eq!(s.push(b"A: 1\n\nx"), Split::Done { body_start: 6 });
        assert_eq!(s.ending(), LineEnding::Lf);
        let mut s = HeaderSplitter::new(100);
        assert_eq!(s.push(b"\r\nbody"), Split::Done { body_start: 2 });
        assert_eq!(s.block(), b"");
        let mut s = HeaderSplitter::new(4);
        assert_eq!(s.push(b"A: 123456"), Split::TooLarge);
    }
}

//! The body spool: memory up to a threshold, then an unlinked temp file.
//!
//! Owns: holding the original body bytes of a message we must write back
//! out (pipe mode, proxy mode) with flat memory whatever the message size.
//! Must not: change the bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Body bytes kept in memory up to `threshold`, then spooled to disk.
#[derive(Debug)]
pub struct Spool {
    mem: Vec<u8>,
    file: Option<File>,
    threshold: usize,
    dir: Option<PathBuf>,
    len: u64,
}

/// The spooled bytes, read from the start.
#[derive(Debug)]
pub enum SpoolReader<'a> {
    /// Still in memory.
    Mem(&'a [u8]),
    /// On disk.
    File(&'a mut File),
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SpoolReader::Mem(m) => m.read(buf),
            SpoolReader::File(f) => f.read(buf),
        }
    }
}

impl Spool {
    /// A spool that moves to a temp file (in `dir`, or the system temp dir)
    /// once more than `threshold` bytes are held.
    pub fn new(threshold: usize, dir: Option<PathBuf>) -> Self {
        Spool {
            mem: Vec::new(),
            file: None,
            threshold,
            dir,
            len: 0,
        }
    }

    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.len += data.len() as u64;
        if let Some(f) = &mut self.file {
            return f.write_all(data);
        }
        if self.mem.len() + data.len() <= self.threshold {
            self.mem.extend_from_slice(data);
            return Ok(());
        }
        let mut f = match &self.dir {
            Some(d) => tempfile::tempfile_in(d)?,
            None => tempfile::tempfile()?,
        };
        f.write_all(&self.mem)?;
        f.write_all(data)?;
        self.mem = Vec::new();
        self.file = Some(f);
        Ok(())
    }

    /// Total bytes written.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads everything written, from the start, in pieces (the proxy
    /// writes it to the next hop between reads).
    pub fn reader(&mut self) -> io::Result<SpoolReader<'_>> {
        match &mut self.file {
            None => Ok(SpoolReader::Mem(&self.mem)),
            Some(f) => {
                f.flush()?;
                f.seek(SeekFrom::Start(0))?;
                Ok(SpoolReader::File(f))
            }
        }
    }

    /// Copies everything written to `out`.
    pub fn copy_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        match &mut self.file {
            None => out.write_all(&self.mem),
            Some(f) => {
                f.flush()?;
                f.seek(SeekFrom::Start(0))?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.write_all(&buf[..n])?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_to_disk_past_threshold_and_reads_back() {
        let mut s = Spool::new(10, None);
        s.write(b"hello").unwrap();
        assert!(s.file.is_none());
        s.write(b" big world").unwrap();
        assert!(s.file.is_some());
        s.write(b"!").unwrap();
        let mut out = Vec::new();
        s.copy_to(&mut out).unwrap();
        assert_eq!(out, b"hello big world!");
        assert_eq!(s.len(), 16);
    }
}

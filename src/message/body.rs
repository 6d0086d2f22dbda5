//! The body spool: memory up to a threshold, then an unlinked temp file.
//!
//! Owns: holding the original body bytes of a message we must write back
//! out (pipe mode, proxy mode) with flat memory whatever the message size.
//! Must not: change the bytes, or know about the async runtime: the file
//! I/O here is blocking; the synchronous pipe front calls it directly, the
//! proxy keeps only [`Spool::hold`] (memory) on its runtime thread and runs
//! the rest on tokio's blocking pool.

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

/// The spooled bytes, owned (see [`Spool::into_body`]).
#[derive(Debug)]
pub enum SpoolBody {
    /// Still in memory.
    Mem(Vec<u8>),
    /// On disk, at an unknown offset (rewind before reading).
    File(File),
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

    /// Appends `data` if that touches no file: the spool is still in
    /// memory and stays within its threshold. `false`: nothing was done,
    /// [`Spool::write`] (file I/O) must take `data`.
    pub fn hold(&mut self, data: &[u8]) -> bool {
        if self.file.is_some() || self.mem.len() + data.len() > self.threshold {
            return false;
        }
        self.len += data.len() as u64;
        self.mem.extend_from_slice(data);
        true
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

    /// Everything written, for a reader that does its own I/O (the proxy
    /// reads the file off its runtime thread).
    pub fn into_body(self) -> SpoolBody {
        match self.file {
            None => SpoolBody::Mem(self.mem),
            Some(f) => SpoolBody::File(f),
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

    #[test]
    fn hold_keeps_bytes_in_memory_only_within_the_threshold() {
        let mut s = Spool::new(10, None);
        assert!(s.hold(b"hello"));
        assert!(!s.hold(b" big world"), "past the threshold");
        assert_eq!(s.len(), 5);
        s.write(b" big world").unwrap();
        assert!(!s.hold(b"!"), "on disk now");
        s.write(b"!").unwrap();
        let SpoolBody::File(mut f) = s.into_body() else {
            panic!("on disk")
        };
        let mut out = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello big world!");
    }
}

//! Filter mode: message on an input stream, filtered message on an output
//! stream (Exim `transport_filter`, Postfix `pipe(8)`, `authgate sign`).
//!
//! Owns: reading the message in chunks into the pipeline while spooling the
//! body, and writing the result only once it is complete, so a failure never
//! leaves half a message for the MTA to deliver. Must not: decide policy.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::dns::Resolver;
use crate::message::body::Spool;
use crate::pipeline::{Context, MessageJob, Options, PipelineError, Pushed, Verdict};

/// Exit status asking the MTA to retry later (sysexits.h `EX_TEMPFAIL`).
pub const EX_TEMPFAIL: u8 = 75;

/// Default exit status for a refused message (sysexits.h `EX_NOPERM`):
/// Postfix `pipe(8)` bounces it, Exim's `pipe` transport treats it as a
/// permanent failure.
pub const EX_NOPERM: u8 = 77;

/// Read size per chunk.
const CHUNK: usize = 64 * 1024;

/// Where the body spool lives.
#[derive(Debug, Clone, Default)]
pub struct SpoolSettings {
    /// Bytes kept in memory before moving to a temp file.
    pub threshold: usize,
    /// Directory for the temp file (`None`: system temp dir).
    pub dir: Option<PathBuf>,
}

/// Why the filter could not produce its output (all mean: exit 75).
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// Reading input, spooling, or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// The result of filtering one message.
#[derive(Debug)]
pub struct Filtered {
    /// What the pipeline decided.
    pub verdict: Verdict,
    /// Input size in bytes.
    pub size: u64,
}

/// Feeds `input` through a job; body bytes go to `spool` when given.
/// Runs on the calling thread; key lookups run on `rt` meanwhile.
fn feed<R: Resolver + 'static>(
    rt: &tokio::runtime::Runtime,
    job: &mut MessageJob<R>,
    input: &mut impl Read,
    mut spool: Option<&mut Spool>,
) -> Result<u64, PipeError> {
    let _enter = rt.enter();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        size += n as u64;
        if let (Pushed::Body { from }, Some(s)) = (job.push(&buf[..n]), spool.as_deref_mut()) {
            s.write(&buf[from..n])?;
        }
    }
}

/// Filters one message from `input` to `output`. Nothing is written unless
/// the whole result is ready.
pub fn filter<R: Resolver + 'static>(
    rt: &tokio::runtime::Runtime,
    ctx: Arc<Context>,
    resolver: Arc<R>,
    opts: Options,
    spool: &SpoolSettings,
    input: &mut impl Read,
    output: &mut impl Write,
) -> Result<Filtered, PipeError> {
    let mut job = MessageJob::new(ctx, resolver, opts);
    let mut body = Spool::new(spool.threshold, spool.dir.clone());
    let size = feed(rt, &mut job, input, Some(&mut body))?;
    let finished = rt.block_on(job.finish())?;
    // A refused message is not written at all: the caller exits with the
    // reject status and the MTA never sees half a message.
    if finished.verdict.reject.is_none() && finished.verdict.tempfail.is_none() {
        let mut head = Vec::with_capacity(4096);
        finished.write_head(&mut head);
        output.write_all(&head)?;
        body.copy_to(output)?;
        output.flush()?;
    }
    Ok(Filtered {
        verdict: finished.verdict,
        size,
    })
}

/// Verifies one message without keeping its body.
pub fn check<R: Resolver + 'static>(
    rt: &tokio::runtime::Runtime,
    ctx: Arc<Context>,
    resolver: Arc<R>,
    opts: Options,
    input: &mut impl Read,
) -> Result<Filtered, PipeError> {
    let mut job = MessageJob::new(ctx, resolver, opts);
    let size = feed(rt, &mut job, input, None)?;
    let verdict = rt.block_on(job.finish())?.verdict;
    Ok(Filtered { verdict, size })
}

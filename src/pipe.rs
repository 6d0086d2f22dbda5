//! Filter mode: message on an input stream, filtered message on an output
//! stream (Exim `transport_filter`, Postfix `pipe(8)`, `authgate sign`).
//!
//! Owns: reading the message in chunks into the pipeline while spooling the
//! body, and writing the result only once it is complete, so a failure never
//! leaves half a message for the MTA to deliver. Must not: decide policy.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::dns::Lookup;
use crate::message::body::Spool;
use crate::outcome::{Fate, InFlight, Meta};
use crate::pipeline::Pushed;

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

/// Why the filter could not produce its output (exit 75).
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// Reading input, spooling, or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Feeds `input` into the message; body bytes go to `spool` when given.
/// Runs on the calling thread; lookups run on `rt` meanwhile.
fn feed<R: Lookup + 'static>(
    rt: &tokio::runtime::Runtime,
    msg: &mut InFlight<R>,
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
        if let (Pushed::Body { from }, Some(s)) = (msg.push(&buf[..n]), spool.as_deref_mut()) {
            s.write(&buf[from..n])?;
        }
    }
}

/// Filters one message from `input` to `output`: the message is written
/// (with its header edits) only when its fate delivers it, and only once
/// the whole result is ready, so the MTA never sees half a message.
pub fn filter<R: Lookup + 'static>(
    rt: &tokio::runtime::Runtime,
    msg: InFlight<R>,
    spool: &SpoolSettings,
    input: &mut impl Read,
    output: &mut impl Write,
) -> Result<Fate, PipeError> {
    filter_if(rt, msg, spool, input, output, |_| true)
}

/// [`filter`], writing the message only when `write` also agrees with its
/// fate (`authgate sign` writes nothing for a message it could not sign).
pub fn filter_if<R: Lookup + 'static>(
    rt: &tokio::runtime::Runtime,
    mut msg: InFlight<R>,
    spool: &SpoolSettings,
    input: &mut impl Read,
    output: &mut impl Write,
    write: impl FnOnce(&Fate) -> bool,
) -> Result<Fate, PipeError> {
    let mut body = Spool::new(spool.threshold, spool.dir.clone());
    let size = feed(rt, &mut msg, input, Some(&mut body))?;
    let meta = Meta {
        size,
        ..Meta::default()
    };
    let fate = rt.block_on(msg.finish(meta));
    if let (true, Some(m)) = (fate.delivers() && write(&fate), &fate.message) {
        let mut head = Vec::with_capacity(4096);
        m.write_head(&mut head);
        output.write_all(&head)?;
        body.copy_to(output)?;
        output.flush()?;
    }
    Ok(fate)
}

/// Verifies one message without keeping its body.
pub fn check<R: Lookup + 'static>(
    rt: &tokio::runtime::Runtime,
    mut msg: InFlight<R>,
    input: &mut impl Read,
) -> Result<Fate, PipeError> {
    let size = feed(rt, &mut msg, input, None)?;
    let meta = Meta {
        size,
        ..Meta::default()
    };
    Ok(rt.block_on(msg.finish(meta)))
}

/// `pipe --reinject`: the filtered message goes back to the MTA through its
/// `sendmail` command (Postfix FILTER_README, "simple content filter"), run
/// as `sendmail -G -i -f SENDER -- RECIPIENT...`.
#[derive(Debug, Clone)]
pub struct Reinject {
    /// The sendmail program (`[pipe] sendmail`, `--sendmail`).
    pub sendmail: PathBuf,
    /// Envelope sender, passed on as given (Postfix `${sender}`).
    pub sender: String,
    /// Envelope recipients (Postfix `${recipient}`).
    pub recipients: Vec<String>,
}

/// Why reinjection failed (all mean: exit 75, the MTA retries).
#[derive(Debug, thiserror::Error)]
pub enum ReinjectError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The sendmail path.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for it failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The sendmail path.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It ran and failed (non-zero exit or killed by a signal).
    #[error("{program} failed: {status}")]
    Failed {
        /// The sendmail path.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

impl Reinject {
    /// The argument list after the program name. `-G`: a relayed message,
    /// not a new submission (no address rewriting); `-i`: a line with a
    /// lone dot does not end the message; `--`: no recipient is an option.
    pub fn args(&self) -> Vec<&str> {
        let mut args = vec!["-G", "-i", "-f", self.sender.as_str(), "--"];
        args.extend(self.recipients.iter().map(String::as_str));
        args
    }

    /// Runs sendmail with `message` (rewound to its start) on its stdin and
    /// waits for it. Its stdout goes to our stderr, which the MTA logs; the
    /// stdout of `pipe` stays empty.
    pub fn send(&self, mut message: std::fs::File) -> Result<(), ReinjectError> {
        use std::io::Seek;
        use std::os::fd::AsFd;
        let program = self.sendmail.display().to_string();
        let spawn_err = |source| ReinjectError::Spawn {
            program: program.clone(),
            source,
        };
        message
            .seek(std::io::SeekFrom::Start(0))
            .map_err(spawn_err)?;
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(spawn_err)?;
        let mut child = std::process::Command::new(&self.sendmail)
            .args(self.args())
            .stdin(message)
            .stdout(stdout)
            .spawn()
            .map_err(spawn_err)?;
        let status = child.wait().map_err(|source| ReinjectError::Wait {
            program: program.clone(),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(ReinjectError::Failed { program, status })
        }
    }
}

/// A temp file for the filtered message, in the spool directory.
pub fn output_file(spool: &SpoolSettings) -> std::io::Result<std::fs::File> {
    match &spool.dir {
        Some(d) => tempfile::tempfile_in(d),
        None => tempfile::tempfile(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reinject_args_end_options_before_the_recipients() {
        let r = Reinject {
            sendmail: PathBuf::from("/usr/sbin/sendmail"),
            sender: "a@example.org".into(),
            recipients: vec!["-oi@example.test".into(), "b@example.test".into()],
        };
        assert_eq!(
            r.args(),
            [
                "-G",
                "-i",
                "-f",
                "a@example.org",
                "--",
                "-oi@example.test",
                "b@example.test"
            ]
        );
    }
}

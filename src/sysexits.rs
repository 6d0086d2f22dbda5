//! Process exit codes from sysexits.h that the MTAs act on, shared by the
//! configuration (the default `pipe.reject_exit_code`), the pipe front and
//! the CLI.
//!
//! Owns: the numbers. Must not: import anything from this crate; it sits at
//! the bottom of the module graph.

/// Exit status asking the MTA to retry later (sysexits.h `EX_TEMPFAIL`).
pub const EX_TEMPFAIL: u8 = 75;

/// Default exit status for a refused message (sysexits.h `EX_NOPERM`):
/// Postfix `pipe(8)` bounces it, Exim's `pipe` transport treats it as a
/// permanent failure.
pub const EX_NOPERM: u8 = 77;

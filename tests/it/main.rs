//! Integration tests: one binary (see STYLE.md §6).

// Test helpers outside #[test] fns (oracles.rs, interop.rs): a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dns;
mod interop;
mod keygen;
mod oracles;

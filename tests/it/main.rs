//! Integration tests: one binary (see STYLE.md §6).

// Test helpers outside #[test] functions may panic on setup failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod dns;
mod dns_server;
mod support;

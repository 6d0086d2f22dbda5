//! Integration tests: one binary (see STYLE.md §6).

// Test helpers outside #[test] fns (support.rs, oracles.rs): a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod check_domain;
mod cli;
mod config_errors;
mod dmarc;
mod dmarc_interop;
mod dns;
mod dns_server;
mod import;
mod interop;
mod keycheck;
mod keygen;
mod metrics;
mod milter;
mod opendkim_tables;
mod oracles;
mod proxy_io;
mod relay;
mod report_ingest;
mod report_send;
mod report_store;
mod report_xml;
mod rotation;
mod serve;
mod sessions;
mod spf;
mod spf_suite;
mod support;

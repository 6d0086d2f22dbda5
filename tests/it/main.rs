//! Integration tests: one binary (see STYLE.md §6).

mod cli;
mod dns;
mod dns_server;
mod support;

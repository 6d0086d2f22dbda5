//! Integration tests: one binary (see STYLE.md §6).

mod dns;
mod dns_server;

//! authgate: a mail-authentication gate.
//!
//! The library holds all logic; `main.rs` only calls [`cli::run`]. Protocol
//! cores (`message`, `dkim`, `authres`) are pure and synchronous; DNS comes
//! through the [`dns::Resolver`] trait; I/O lives in `pipe` and `cli`.

pub mod authres;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dkim;
pub mod dmarc;
pub mod dns;
pub mod dnsbl;
pub mod iprev;
pub mod keyfile;
pub mod keygen;
pub mod message;
pub mod milter;
pub mod pipe;
pub mod pipeline;
pub mod policy;
pub mod report;
pub mod role;
pub mod server;
pub mod smtp;
pub mod sockaddr;
pub mod spf;
pub mod sysexits;

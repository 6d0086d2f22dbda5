//! authgate: a mail-authentication gate.
//!
//! The library holds all logic; `main.rs` only calls [`cli::run`]. Imports
//! run one way, down this list: the fronts (`cli`, `daemon`, `smtp`,
//! `milter`, `pipe`) → [`server`] (sockets, limits, reload; handed a
//! [`server::run::Service`] per listener, knows no front) → [`outcome`] (a
//! finished message's fate, decided once for every front: disposition, the
//! one SMTP reply per case, header edits, the per-message record) →
//! `config` (with [`keyfile`] beside it) → [`pipeline`] (one message in
//! steps: streaming job, client checks, assessment, rendering) → `policy`
//! (the one `decide`) → the pure cores (`spf`, `dmarc`, `dkim`, `authres`,
//! `iprev`, `dnsbl`, `keygen`) → `message`, `dns` and the shared vocabulary
//! ([`sockaddr`], [`role`], [`sysexits`]). The pure cores read no files,
//! spawn no tasks, log nothing and never see the configuration; DNS comes
//! through the [`dns::Resolver`] trait. [`keycheck`] and [`domaincheck`]
//! are the diagnoses behind `key check` and `check`: pure as well, DNS
//! through the same trait. `log` sets up logging.

#![forbid(unsafe_code)]

pub mod authres;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dkim;
pub mod dmarc;
pub mod dns;
pub mod dnsbl;
pub mod domaincheck;
pub mod import;
pub mod iprev;
pub mod keycheck;
pub mod keyfile;
pub mod keygen;
pub mod log;
pub mod message;
pub mod metrics;
pub mod milter;
pub mod opendkim;
pub mod outcome;
pub mod pipe;
pub mod pipeline;
pub mod policy;
pub mod report;
pub mod role;
pub mod rotation;
pub mod server;
pub mod smtp;
pub mod sockaddr;
pub mod spf;
pub mod sysexits;

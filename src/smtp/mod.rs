//! The SMTP/LMTP proxy (`authgate serve`): Postfix `content_filter`,
//! `smtpd_proxy_filter`, or a front for Dovecot LMTP.
//!
//! `session` is the pure protocol state machine, `data` the DATA-phase
//! transparency, `reply` and `xforward` the wire pieces smtp-proto lacks,
//! `proxy` the tokio code that moves bytes between them.

pub mod data;
pub mod proxy;
pub mod reply;
pub mod session;
pub mod xforward;

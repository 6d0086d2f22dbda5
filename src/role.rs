//! The vocabulary listeners are described in: what a socket speaks, what the
//! next hop speaks, which way mail flows, where the filter sits relative to
//! the MTA's queue, and what a milter quarantine does. The configuration
//! reads these from the file; the server, the fronts and the pure milter
//! state machine act on them.
//!
//! Owns: the enums and their names in the configuration file (serde).
//! Must not: import anything from this crate; it sits at the bottom of the
//! module graph so the fronts and the milter session need not import the
//! configuration to name a role.

use serde::{Deserialize, Serialize};

/// What a listener's socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenProtocol {
    /// SMTP (RFC 5321), e.g. Postfix `content_filter` over `smtp`.
    Smtp,
    /// LMTP (RFC 2033): one reply per recipient after DATA.
    Lmtp,
    /// The Sendmail/Postfix milter protocol.
    Milter,
}

/// What the next hop speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HopProtocol {
    /// SMTP (e.g. Postfix's reinjection smtpd on :10026).
    Smtp,
    /// LMTP (e.g. Dovecot).
    Lmtp,
}

/// Which way mail on a listener flows (OpenDKIM `Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sign mail from internal or authenticated clients, verify the rest.
    Auto,
    /// Verify and apply policy; never sign.
    Inbound,
    /// Sign everything the signing table matches; never verify.
    Outbound,
    /// Sign and verify in one pass (OpenDKIM `Mode sv`).
    Both,
}

/// Where the listener sits relative to the MTA's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterMode {
    /// Postfix `content_filter`: the message is already queued, so a DMARC
    /// reject would bounce to a possibly forged sender; rejects become
    /// quarantine unless `server.after_queue_reject` says otherwise.
    AfterQueue,
    /// Postfix `smtpd_proxy_filter` or a milter: a reject reaches the
    /// sending client as a real 550.
    BeforeQueue,
}

/// What a DMARC quarantine does to a message that came in over milter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterQuarantine {
    /// Add the quarantine header only (Sieve or header_checks file it).
    Header,
    /// Also put the message in Postfix's HOLD queue (`SMFIR_QUARANTINE`).
    Hold,
}

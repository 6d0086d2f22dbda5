//! The long-running fronts' shared plumbing: sockets, the configuration
//! snapshot sessions run under, session limits, shutdown and reload.
//!
//! Owns: what a session gets when it starts ([`Snapshot`]: config, policy
//! context, the process-wide DNS cache), the per-mode policy adjustment
//! (after-queue rejects become quarantine), and running a [`run::Service`]
//! per listener. Must not: speak SMTP or milter, or import a front: it is
//! handed what to run per connection (`crate::daemon` picks the fronts and
//! handles signals).

pub mod listen;
pub mod run;

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::dns::SystemResolver;
use crate::pipeline::Context;
use crate::role::FilterMode;

/// Everything sessions need, replaced as a whole on reload. Sessions keep
/// the snapshot they started with, so a reload never changes a message
/// half-way.
#[derive(Debug)]
pub struct Snapshot {
    /// The validated configuration.
    pub config: Config,
    /// Policy for before-queue listeners (milter, `smtpd_proxy_filter`).
    pub before_queue: Arc<Context>,
    /// Policy for after-queue listeners: rejects turned into quarantine
    /// unless `server.after_queue_reject`.
    pub after_queue: Arc<Context>,
    /// The process-wide cached resolver.
    pub resolver: Arc<SystemResolver>,
    /// Our name in greetings, EHLO and replies: `server.hostname`, else
    /// the system host name, read once when the snapshot is built (a
    /// reload reads it again), never per connection.
    pub hostname: String,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Settings or keys.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// DNS set-up.
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsSetupError),
}

impl Snapshot {
    /// Validates `config`, loads keys and builds the resolver.
    pub fn build(config: Config) -> Result<Snapshot, SnapshotError> {
        let resolver = Arc::new(crate::dns::build(&config.dns)?);
        Snapshot::with_resolver(config, resolver)
    }

    /// Like [`Snapshot::build`] but keeps an existing resolver (and its
    /// cache) when the DNS settings did not change.
    pub fn with_resolver(
        config: Config,
        resolver: Arc<SystemResolver>,
    ) -> Result<Snapshot, SnapshotError> {
        let before = config.context()?;
        let after = before.after_queue(config.server.after_queue_reject);
        let hostname = match config.server.hostname.as_str() {
            "" => crate::config::system_hostname(),
            name => name.to_string(),
        };
        Ok(Snapshot {
            hostname,
            before_queue: Arc::new(before),
            after_queue: Arc::new(after),
            resolver,
            config,
        })
    }

    /// The policy for a listener in `mode`.
    pub fn context(&self, mode: FilterMode) -> &Arc<Context> {
        match mode {
            FilterMode::BeforeQueue => &self.before_queue,
            FilterMode::AfterQueue => &self.after_queue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{RejectAction, SpfFailAction};

    #[test]
    fn after_queue_turns_rejects_into_quarantine_unless_told() {
        let mut config = Config::default();
        config.spf.fail_action = SpfFailAction::Reject;
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("z.zone");
        std::fs::write(&zone, "a.example. TXT \"x\"\n").unwrap();
        config.dns.zone_files = vec![zone];
        let s = Snapshot::build(config.clone()).unwrap();
        assert_eq!(s.before_queue.actions.dmarc_reject, RejectAction::Reject);
        assert_eq!(s.after_queue.actions.dmarc_reject, RejectAction::Quarantine);
        assert_eq!(s.after_queue.actions.spf_fail, SpfFailAction::Quarantine);
        config.server.after_queue_reject = true;
        let s = Snapshot::with_resolver(config, Arc::clone(&s.resolver)).unwrap();
        assert_eq!(s.after_queue.actions.dmarc_reject, RejectAction::Reject);
    }

    #[test]
    fn the_snapshot_carries_the_host_name_resolved_once() {
        let mut config = Config::default();
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("z.zone");
        std::fs::write(&zone, "a.example. TXT \"x\"\n").unwrap();
        config.dns.zone_files = vec![zone];
        let s = Snapshot::build(config.clone()).unwrap();
        assert_eq!(s.hostname, crate::config::system_hostname());
        assert!(!s.hostname.is_empty());
        config.server.hostname = "filter.example.test".into();
        let s = Snapshot::with_resolver(config, Arc::clone(&s.resolver)).unwrap();
        assert_eq!(s.hostname, "filter.example.test");
    }
}

//! The checks of the connecting client: SPF (MAIL FROM and HELO), iprev,
//! DNSBL.
//!
//! Owns: starting them as soon as the envelope is known (the fronts create
//! the job at MAIL FROM, so their lookups overlap RCPT, DATA and the
//! transfer; in pipe mode the envelope may come from trace headers at the
//! end of the header block) and collecting their results. Must not: decide
//! what a result means ([`crate::policy::decide`] does).

use std::sync::Arc;

use super::{Context, Envelope, PipelineError, Task, Verdict};
use crate::dns::Resolver;
use crate::dnsbl::DnsblOutcome;
use crate::iprev::IprevOutcome;
use crate::spf::{SpfOptions, SpfOutcome};

/// Results of the checks that need only the envelope.
#[derive(Debug, Default)]
pub struct ClientResults {
    /// iprev (RFC 8601 §3).
    pub iprev: Option<IprevOutcome>,
    /// One outcome per configured DNSBL zone.
    pub dnsbl: Vec<DnsblOutcome>,
    /// SPF for MAIL FROM.
    pub spf_mailfrom: Option<SpfOutcome>,
    /// SPF for HELO.
    pub spf_helo: Option<SpfOutcome>,
}

impl ClientResults {
    /// Moves the results into the message's verdict.
    pub fn into_verdict(self, v: &mut Verdict) {
        v.iprev = self.iprev;
        v.dnsbl = self.dnsbl;
        v.spf_mailfrom = self.spf_mailfrom;
        v.spf_helo = self.spf_helo;
    }
}

/// The client checks of one message: not started, or started (finished at
/// once from the cache, or running).
#[derive(Default)]
pub struct ClientCheck(Option<Box<Task<ClientResults>>>);

/// Whether `env` lets any configured check run.
fn wanted(ctx: &Context, env: &Envelope) -> bool {
    let c = &ctx.client_checks;
    env.client_ip.is_some() && (c.iprev || c.spf || !c.dnsbl.is_empty())
}

impl ClientCheck {
    /// Starts the checks unless they run already or `env` has no client
    /// address yet (outside a runtime they run at [`ClientCheck::results`]).
    pub fn start<R: Resolver + 'static>(
        &mut self,
        ctx: &Arc<Context>,
        resolver: &Arc<R>,
        env: &Envelope,
        now: u64,
    ) {
        if self.0.is_some() || !wanted(ctx, env) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (ctx, resolver, env) = (Arc::clone(ctx), Arc::clone(resolver), env.clone());
        self.0 = Some(Box::new(Task::start(&handle, async move {
            run(&ctx, &*resolver, &env, now).await
        })));
    }

    /// The results: those of the started checks, or of checks run now.
    pub async fn results<R: Resolver + 'static>(
        self,
        ctx: &Context,
        resolver: &Arc<R>,
        env: &Envelope,
        now: u64,
    ) -> Result<ClientResults, PipelineError> {
        match self.0 {
            Some(task) => task.join().await,
            None if wanted(ctx, env) => Ok(run(ctx, &**resolver, env, now).await),
            None => Ok(ClientResults::default()),
        }
    }
}

/// iprev, DNSBL and SPF for the envelope, concurrently.
async fn run<R: Resolver>(ctx: &Context, resolver: &R, env: &Envelope, now: u64) -> ClientResults {
    let Some(ip) = env.client_ip else {
        return ClientResults::default();
    };
    let checks = &ctx.client_checks;
    let iprev = async {
        if checks.iprev {
            Some(crate::iprev::check(resolver, ip).await)
        } else {
            None
        }
    };
    let dnsbl = crate::dnsbl::check(resolver, ip, &checks.dnsbl);
    let opts = SpfOptions {
        receiver: ctx.authserv_id.clone(),
        now,
        ..SpfOptions::default()
    };
    let helo = env.helo.clone().unwrap_or_default();
    let spf_mailfrom = async {
        match &env.mail_from {
            Some(from) if checks.spf && (!from.is_empty() || !helo.is_empty()) => {
                Some(crate::spf::verify_mail_from(resolver, ip, from, &helo, &opts).await)
            }
            _ => None,
        }
    };
    let spf_helo = async {
        if checks.spf && checks.spf_helo && !helo.is_empty() {
            Some(crate::spf::verify_helo(resolver, ip, &helo, &opts).await)
        } else {
            None
        }
    };
    let (iprev, dnsbl, spf_mailfrom, spf_helo) = tokio::join!(iprev, dnsbl, spf_mailfrom, spf_helo);
    for o in &dnsbl {
        if let crate::dnsbl::DnsblStatus::NotChecked { reason } = &o.status {
            tracing::warn!(zone = %o.zone, %ip, %reason, "DNSBL not checked");
        }
    }
    ClientResults {
        iprev,
        dnsbl,
        spf_mailfrom,
        spf_helo,
    }
}

//! From the results to the decision: DMARC over the DKIM and SPF results,
//! the exemption of our own clients, then [`crate::policy::decide`].
//!
//! Owns: which SPF result DMARC uses (ours, else a trusted upstream A-R's),
//! the DKIM domains that passed, and why a message is exempt from
//! enforcement. Must not: say reject or quarantine itself (only
//! `policy::decide` does) or write header fields.

use super::{Context, Envelope, Verdict};
use crate::dkim::verify::DkimResult;
use crate::dmarc::SpfVerdict;
use crate::dns::Resolver;
use crate::message::address::domain_of;
use crate::message::headers::Header;
use crate::policy::{Exemption, Inputs, decide, is_internal};
use crate::spf::SpfResult;

/// Evaluates DMARC (when configured) and sets `verdict.dmarc` and
/// `verdict.decision` from the results already in `verdict`.
pub async fn assess<R: Resolver>(
    ctx: &Context,
    resolver: &R,
    headers: &[Header],
    env: &Envelope,
    verdict: &mut Verdict,
) {
    let spf = spf_for_dmarc(ctx, headers, env, verdict);
    let mut from_problems = Vec::new();
    if let Some(opts) = &ctx.dmarc {
        let passing: Vec<String> = verdict
            .dkim
            .iter()
            .filter(|d| d.result == DkimResult::Pass)
            .filter_map(|d| d.domain.clone())
            .collect();
        let spf_ref = spf.as_ref().map(|(v, d)| (*v, d.as_str()));
        let v = crate::dmarc::check(resolver, headers, spf_ref, &passing, opts).await;
        from_problems = v.from_problems;
        verdict.dmarc = Some(v.outcome);
    }
    let inputs = Inputs {
        dmarc: verdict.dmarc.as_ref(),
        from_problems: &from_problems,
        spf: verdict.spf_mailfrom.as_ref(),
        dnsbl: &verdict.dnsbl,
        exemption: exemption(ctx, env, spf.is_some()),
    };
    verdict.decision = decide(&ctx.actions, &inputs);
}

/// Why the message is exempt from enforcement, if it is.
pub fn exemption(ctx: &Context, env: &Envelope, spf_known: bool) -> Option<Exemption> {
    if env.authenticated {
        Some(Exemption::AuthenticatedClient)
    } else if env
        .client_ip
        .is_some_and(|ip| is_internal(ip, &ctx.internal_hosts))
    {
        Some(Exemption::TrustedHost)
    } else if !spf_known {
        Some(Exemption::NoEnvelope)
    } else {
        None
    }
}

/// The SPF result DMARC uses: ours, else a trusted upstream A-R's.
fn spf_for_dmarc(
    ctx: &Context,
    headers: &[Header],
    env: &Envelope,
    verdict: &Verdict,
) -> Option<(SpfVerdict, String)> {
    if let Some(o) = &verdict.spf_mailfrom {
        let mail_from = env.mail_from.as_deref().unwrap_or_default();
        let domain = domain_of(mail_from).or_else(|| env.helo.clone())?;
        return Some((spf_verdict(o.result), domain));
    }
    crate::policy::trusted_results(headers, &ctx.trusted_authserv_ids)
        .into_iter()
        .find(|e| e.method == "spf" && e.props.iter().any(|(k, _)| k == "smtp.mailfrom"))
        .and_then(|e| {
            let from = e
                .props
                .iter()
                .find(|(k, _)| k == "smtp.mailfrom")
                .map(|(_, v)| v.clone())?;
            let domain = domain_of(&from).unwrap_or(from);
            Some((spf_verdict_str(&e.result), domain))
        })
}

/// The SPF result in DMARC's terms.
fn spf_verdict(r: SpfResult) -> SpfVerdict {
    match r {
        SpfResult::Pass => SpfVerdict::Pass,
        SpfResult::Fail => SpfVerdict::Fail,
        SpfResult::SoftFail => SpfVerdict::SoftFail,
        SpfResult::Neutral => SpfVerdict::Neutral,
        SpfResult::None => SpfVerdict::None,
        SpfResult::TempError => SpfVerdict::TempError,
        SpfResult::PermError => SpfVerdict::PermError,
    }
}

/// An upstream A-R `spf=` keyword in DMARC's terms (unknown = none).
fn spf_verdict_str(r: &str) -> SpfVerdict {
    match r {
        "pass" => SpfVerdict::Pass,
        "fail" => SpfVerdict::Fail,
        "softfail" => SpfVerdict::SoftFail,
        "neutral" => SpfVerdict::Neutral,
        "temperror" => SpfVerdict::TempError,
        "permerror" => SpfVerdict::PermError,
        _ => SpfVerdict::None,
    }
}

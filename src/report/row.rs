//! One stored row per finished message that DMARC evaluated against a
//! published policy: what an RFC 9990 aggregate report is made of.
//!
//! Owns: turning a [`Fate`] into a [`Row`] (pure), and the words each field
//! is stored as (`pass`, `mfrom`, `local_policy`, ...), which are the
//! report's own vocabulary. Must not: touch the store or the network.

use serde::{Deserialize, Serialize};

use crate::dmarc::{Alignment, DmarcResult, Psd};
use crate::message::address::domain_of;
use crate::outcome::Fate;

/// One DKIM signature's result as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimRow {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `pass`, `fail`, `neutral`, `policy`, `temperror`, `permerror`.
    pub result: String,
    /// Why, when it did not pass (`human_result`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub human: String,
}

/// One message's DMARC facts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    /// When the message was finished, seconds since the epoch (UTC).
    pub time: i64,
    /// The connecting client's address (`""` when unknown).
    pub source_ip: String,
    /// RFC5321.MailFrom domain (`""`: null sender or unknown).
    pub env_from: String,
    /// The first recipient's domain (`""` when unknown).
    pub env_to: String,
    /// RFC5322.From domain.
    pub header_from: String,
    /// Where the policy record was found.
    pub policy_domain: String,
    /// `p=` as published (`""` when absent).
    pub p: String,
    /// `sp=` as published.
    pub sp: String,
    /// `np=` as published.
    pub np: String,
    /// `r` or `s`.
    pub adkim: String,
    /// `r` or `s`.
    pub aspf: String,
    /// `t=y`.
    pub testing: bool,
    /// `y`, `n` or `u`.
    pub psd: String,
    /// `treewalk` or `psl`.
    pub discovery: String,
    /// The DMARC result (`pass`, `fail`, `temperror`, `permerror`).
    pub dmarc: String,
    /// An aligned DKIM pass.
    pub dkim_aligned: bool,
    /// An aligned SPF pass.
    pub spf_aligned: bool,
    /// What we applied: `none`, `quarantine`, `reject`.
    pub disposition: String,
    /// RFC 9990 PolicyOverrideType when we applied something other than the
    /// policy asked (`""` when not).
    pub override_type: String,
    /// The override's comment.
    pub override_comment: String,
    /// The domain SPF was checked for.
    pub spf_domain: String,
    /// `mfrom` or `helo`.
    pub spf_scope: String,
    /// The SPF result (`""` when SPF was not checked).
    pub spf_result: String,
    /// Every DKIM signature, in header order.
    pub dkim: Vec<DkimRow>,
    /// The message is itself a report (aggregate or failure): never the
    /// subject of a failure report (no loops).
    pub is_report: bool,
}

impl Row {
    /// The row for a finished message, when there is one to report: DMARC
    /// evaluated and a policy record found, and the message delivered,
    /// quarantined or rejected (a tempfailed one comes back and is counted
    /// then; `authgate verify` is a diagnosis, not mail).
    pub fn from_fate(fate: &Fate, now: i64) -> Option<Row> {
        if fate.disposition == crate::outcome::Disposition::Tempfail
            || fate.front == crate::outcome::Front::Verify
        {
            return None;
        }
        let v = fate.verdict()?;
        let o = v.dmarc.as_ref()?;
        let policy_domain = o.policy_domain.clone()?;
        let rec = o.record.as_deref()?;
        let env = &fate.envelope;
        let mail_from = env.mail_from.as_deref().unwrap_or_default();
        let env_from = domain_of(mail_from).unwrap_or_default();
        let (spf_domain, spf_scope, spf_result) = match (&v.spf_mailfrom, &v.spf_helo) {
            (Some(s), _) if !env_from.is_empty() => (env_from.clone(), "mfrom", s.result.as_str()),
            (Some(s), _) => (
                env.helo.clone().unwrap_or_default(),
                "helo",
                s.result.as_str(),
            ),
            (None, Some(s)) => (
                env.helo.clone().unwrap_or_default(),
                "helo",
                s.result.as_str(),
            ),
            (None, None) => (String::new(), "mfrom", ""),
        };
        let applied = v.decision.applied;
        let (override_type, override_comment) = match &v.decision.override_reason {
            Some(why) if o.result == DmarcResult::Fail => {
                (override_type(why).to_string(), why.clone())
            }
            _ => (String::new(), String::new()),
        };
        Some(Row {
            time: now,
            source_ip: env.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            env_from,
            env_to: fate.meta.rcpt_domain.clone().unwrap_or_default(),
            header_from: o.domain.clone(),
            policy_domain,
            p: rec
                .policy
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            sp: rec
                .subdomain_policy
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            np: rec.np.map(|p| p.as_str().to_string()).unwrap_or_default(),
            adkim: alignment(rec.adkim).into(),
            aspf: alignment(rec.aspf).into(),
            testing: rec.testing,
            psd: match rec.psd {
                Psd::Yes => "y",
                Psd::No => "n",
                Psd::Unknown => "u",
            }
            .into(),
            discovery: if o.treewalk { "treewalk" } else { "psl" }.into(),
            dmarc: o.result.as_str().into(),
            dkim_aligned: o.dkim_aligned,
            spf_aligned: o.spf_aligned,
            disposition: applied.as_str().into(),
            override_type,
            override_comment,
            spf_domain,
            spf_scope: spf_scope.into(),
            spf_result: spf_result.into(),
            dkim: v
                .dkim
                .iter()
                .filter_map(|d| {
                    Some(DkimRow {
                        domain: d.domain.clone()?,
                        selector: d.selector.clone().unwrap_or_default(),
                        result: d.result.as_str().into(),
                        human: d.reason.clone(),
                    })
                })
                .collect(),
            is_report: fate.message.as_ref().is_some_and(|m| m.is_report()),
        })
    }
}

fn alignment(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "r",
        Alignment::Strict => "s",
    }
}

/// RFC 9990 `PolicyOverrideType` for our override reasons
/// ([`crate::policy::Decision::override_reason`]).
pub fn override_type(why: &str) -> &'static str {
    if why.starts_with("testing mode") {
        "policy_test_mode"
    } else if why == crate::policy::Exemption::TrustedHost.as_str() {
        "trusted_forwarder"
    } else if why.starts_with("local policy")
        || why == crate::policy::Exemption::AuthenticatedClient.as_str()
    {
        "local_policy"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_reasons_map_to_the_rfc_words() {
        assert_eq!(override_type("testing mode t=y"), "policy_test_mode");
        assert_eq!(override_type("trusted host"), "trusted_forwarder");
        assert_eq!(override_type("authenticated client"), "local_policy");
        assert_eq!(
            override_type("local policy: quarantine instead of reject"),
            "local_policy"
        );
        assert_eq!(override_type("SPF not checked: no envelope"), "other");
    }
}

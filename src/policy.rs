//! Receiver policy: what the SPF and DMARC results make us do, locally.
//!
//! Owns: the configured actions (DMARC reject → reject / quarantine /
//! header only; quarantine → header; SPF fail → nothing by default; "never
//! block"), the trust exemptions (internal hosts, authenticated clients),
//! and reading results from upstream Authentication-Results we trust. Must
//! not: evaluate SPF or DMARC itself (that is `spf/` and `dmarc/`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::dmarc::{Disposition, DmarcOutcome, DmarcResult, FromProblem};
use crate::dnsbl::{DnsblAction, DnsblOutcome};
use crate::spf::{SpfOutcome, SpfResult};

/// What a DMARC `p=reject` failure makes us do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectAction {
    /// Refuse the message (550 5.7.1 in the proxy, exit status in pipe mode).
    Reject,
    /// Deliver with the quarantine header.
    Quarantine,
    /// Deliver; only the A-R header tells.
    Header,
}

/// What a DMARC `p=quarantine` failure makes us do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineAction {
    /// Add the quarantine header (Sieve / header_checks file it).
    Quarantine,
    /// Only the A-R header tells.
    Header,
}

/// What an SPF `fail` makes us do (independently of DMARC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfFailAction {
    /// Nothing beyond the headers (default; DMARC decides).
    None,
    /// Add the quarantine header.
    Quarantine,
    /// Refuse the message.
    Reject,
}

/// What a temporary error (DNS) in DMARC evaluation makes us do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TempErrorAction {
    /// Deliver with `dmarc=temperror` in the headers.
    Accept,
    /// Ask the MTA to retry (451 / exit 75).
    Tempfail,
}

/// The local policy knobs.
#[derive(Debug, Clone)]
pub struct Actions {
    /// DMARC `p=reject` failures.
    pub dmarc_reject: RejectAction,
    /// DMARC `p=quarantine` failures.
    pub dmarc_quarantine: QuarantineAction,
    /// DMARC temporary errors.
    pub dmarc_temperror: TempErrorAction,
    /// SPF `fail` on MAIL FROM.
    pub spf_fail: SpfFailAction,
    /// Headers only: no result ever rejects, quarantines or tempfails (Plesk's "never block").
    pub never_block: bool,
    /// Refuse mail whose From gives no single usable author (OpenDMARC RequiredHeaders).
    pub require_valid_from: bool,
    /// `Name: value` of the quarantine header.
    pub quarantine_header: (String, String),
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            dmarc_reject: RejectAction::Reject,
            dmarc_quarantine: QuarantineAction::Quarantine,
            dmarc_temperror: TempErrorAction::Accept,
            spf_fail: SpfFailAction::None,
            never_block: false,
            require_valid_from: false,
            quarantine_header: ("X-Authgate-Quarantine".into(), "dmarc".into()),
        }
    }
}

/// Why a message is exempt from enforcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    /// The client is in `internal_hosts`.
    TrustedHost,
    /// The client authenticated (SMTP AUTH).
    AuthenticatedClient,
    /// No envelope was known, so SPF could not be checked: a DMARC fail
    /// may only mean "no DKIM", and enforcing it would refuse good mail.
    NoEnvelope,
}

impl Exemption {
    /// Words for the A-R comment and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Exemption::TrustedHost => "trusted host",
            Exemption::AuthenticatedClient => "authenticated client",
            Exemption::NoEnvelope => "SPF not checked: no envelope",
        }
    }
}

/// Whether `ip` is in one of the `nets`. IPv4-mapped IPv6 counts as IPv4.
pub fn is_internal(ip: IpAddr, nets: &[ipnet::IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

/// What we do with the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The disposition we apply (`dis=` in the A-R comment).
    pub applied: Disposition,
    /// Refuse, with this reason.
    pub reject: Option<String>,
    /// Retry later, with this reason.
    pub tempfail: Option<String>,
    /// Add the quarantine header.
    pub quarantine: bool,
    /// Why the applied disposition differs from the requested one.
    pub override_reason: Option<String>,
}

/// What [`decide`] looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    /// The DMARC outcome, when evaluated.
    pub dmarc: Option<&'a DmarcOutcome>,
    /// Problems with the From header field.
    pub from_problems: &'a [FromProblem],
    /// SPF for MAIL FROM, when checked.
    pub spf: Option<&'a SpfOutcome>,
    /// The DNSBL outcomes.
    pub dnsbl: &'a [DnsblOutcome],
    /// Why the message is exempt from enforcement, if it is.
    pub exemption: Option<Exemption>,
}

/// Applies the local actions to the results: the one place that says
/// reject, quarantine or tempfail. In order: DMARC (with `t=y` and the
/// configured reject/quarantine/temperror actions), an unusable From
/// (`require_valid_from`), SPF `fail`; an exemption or `never_block` waives
/// all of these. A DNSBL listing with action `reject` refuses before any of
/// them; only our own clients (internal hosts, SMTP AUTH) and `never_block`
/// waive it (a missing envelope does not: the client address is known).
pub fn decide(actions: &Actions, i: &Inputs<'_>) -> Decision {
    let mut d = Decision::default();
    if let Some(o) = i.dmarc {
        dmarc_decision(actions, o, &mut d);
    }
    if actions.require_valid_from && !i.from_problems.is_empty() {
        d.reject.get_or_insert(format!(
            "unusable From header field ({})",
            describe(i.from_problems)
        ));
    }
    if i.spf.is_some_and(|s| s.result == SpfResult::Fail) {
        match actions.spf_fail {
            SpfFailAction::None => {}
            SpfFailAction::Quarantine => d.quarantine = true,
            SpfFailAction::Reject => {
                d.reject
                    .get_or_insert("SPF fail for the envelope sender".into());
            }
        }
    }
    let waived = if let Some(ex) = i.exemption {
        Some(ex.as_str().to_string())
    } else if actions.never_block {
        Some("local policy: never block".to_string())
    } else {
        None
    };
    if let Some(why) = waived {
        if d.reject.is_some() || d.tempfail.is_some() || d.quarantine {
            d.override_reason = Some(why);
        }
        d.reject = None;
        d.tempfail = None;
        d.quarantine = false;
        d.applied = Disposition::None;
    }
    let ours = matches!(
        i.exemption,
        Some(Exemption::TrustedHost | Exemption::AuthenticatedClient)
    );
    if let Some(hit) = i
        .dnsbl
        .iter()
        .find(|o| o.listed() && o.action == DnsblAction::Reject)
        && !ours
        && !actions.never_block
    {
        d.reject = Some(format!("client listed in {}", hit.zone));
    }
    d
}

fn dmarc_decision(actions: &Actions, o: &DmarcOutcome, d: &mut Decision) {
    match o.result {
        DmarcResult::Fail => {}
        DmarcResult::TempError if actions.dmarc_temperror == TempErrorAction::Tempfail => {
            d.tempfail = Some(format!("DMARC temporary error for {}", o.domain));
            return;
        }
        _ => return,
    }
    if o.testing {
        d.override_reason = Some("testing mode t=y".into());
    }
    match o.disposition {
        Disposition::None => {}
        Disposition::Quarantine => quarantine(actions, d),
        Disposition::Reject => match actions.dmarc_reject {
            RejectAction::Reject => {
                d.applied = Disposition::Reject;
                d.reject = Some(format!("DMARC policy of {} says reject", o.domain));
            }
            RejectAction::Quarantine => {
                d.override_reason = Some("local policy: quarantine instead of reject".into());
                quarantine(actions, d);
            }
            RejectAction::Header => d.override_reason = Some("local policy: headers only".into()),
        },
    }
}

fn quarantine(actions: &Actions, d: &mut Decision) {
    if actions.dmarc_quarantine == QuarantineAction::Quarantine {
        d.applied = Disposition::Quarantine;
        d.quarantine = true;
    }
}

fn describe(problems: &[FromProblem]) -> String {
    let words: Vec<String> = problems
        .iter()
        .map(|p| match p {
            FromProblem::Missing => "missing".to_string(),
            FromProblem::MultipleFields(n) => format!("{n} From fields"),
            FromProblem::NoAddress => "no address".to_string(),
            FromProblem::AddressWithoutDomain(a) => format!("address without domain {a:?}"),
            FromProblem::MultipleDomains(ds) => format!("several domains {}", ds.join(", ")),
        })
        .collect();
    words.join("; ")
}

/// The `method=result` pairs and properties of the A-R fields that claim
/// one of `trusted` authserv-ids (OpenDMARC TrustedAuthservIDs); every other
/// A-R field is ignored.
pub fn trusted_results(
    headers: &[crate::message::headers::Header],
    trusted: &[String],
) -> Vec<crate::authres::Entry> {
    headers
        .iter()
        .filter(|h| h.is("Authentication-Results"))
        .filter(|h| {
            crate::authres::authserv_id(h.value())
                .is_some_and(|id| trusted.iter().any(|t| t.eq_ignore_ascii_case(&id)))
        })
        .flat_map(|h| crate::authres::parse_results(&h.value_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmarc::record::Policy;
    use crate::dnsbl::DnsblStatus;

    /// [`decide`] without DNSBL results.
    fn dec(
        a: &Actions,
        dmarc: Option<&DmarcOutcome>,
        from_problems: &[FromProblem],
        spf: Option<&SpfOutcome>,
        exemption: Option<Exemption>,
    ) -> Decision {
        let i = Inputs {
            dmarc,
            from_problems,
            spf,
            dnsbl: &[],
            exemption,
        };
        decide(a, &i)
    }

    #[test]
    fn one_decision_from_every_result_in_a_fixed_order() {
        let listed = |action| DnsblOutcome {
            zone: "bl.example".into(),
            action,
            status: DnsblStatus::Listed {
                codes: vec![std::net::Ipv4Addr::new(127, 0, 0, 2)],
            },
        };
        let clean = DnsblOutcome {
            status: DnsblStatus::NotListed,
            ..listed(DnsblAction::Reject)
        };
        let reject = failing(Policy::Reject, false);
        let quarantine = failing(Policy::Quarantine, false);
        let mut temp = DmarcOutcome::bare(DmarcResult::TempError, "example.com", "SERVFAIL");
        temp.policy = None;
        let spf_fail = SpfOutcome {
            result: SpfResult::Fail,
            explanation: None,
            reason: String::new(),
            mechanism: None,
        };
        let strict = Actions {
            dmarc_temperror: TempErrorAction::Tempfail,
            spf_fail: SpfFailAction::Reject,
            require_valid_from: true,
            ..Actions::default()
        };
        let never = Actions {
            never_block: true,
            ..strict.clone()
        };
        let (trusted, auth, no_env) = (
            Some(Exemption::TrustedHost),
            Some(Exemption::AuthenticatedClient),
            Some(Exemption::NoEnvelope),
        );
        let bl = [listed(DnsblAction::Reject)];
        let bl_header = [listed(DnsblAction::Header)];
        let bl_clean = [clean];
        let missing = [FromProblem::Missing];
        type Want<'a> = (Option<&'a str>, Option<&'a str>, bool, Disposition);
        type Case<'a> = (
            &'a Actions,
            Option<&'a DmarcOutcome>,
            &'a [FromProblem],
            Option<&'a SpfOutcome>,
            &'a [DnsblOutcome],
            Option<Exemption>,
            Want<'a>,
        );
        let none: Want = (None, None, false, Disposition::None);
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            (&strict, None, &[], None, &[], None, none),
            (&strict, Some(&reject), &[], None, &[], None,
                (Some("DMARC policy of example.com says reject"), None, false, Disposition::Reject)),
            (&strict, Some(&quarantine), &[], None, &[], None, (None, None, true, Disposition::Quarantine)),
            (&strict, Some(&temp), &[], None, &[], None,
                (None, Some("DMARC temporary error for example.com"), false, Disposition::None)),
            // DMARC's reason comes before From's and SPF's.
            (&strict, Some(&reject), &missing, Some(&spf_fail), &[], None,
                (Some("DMARC policy of example.com says reject"), None, false, Disposition::Reject)),
            (&strict, None, &missing, Some(&spf_fail), &[], None,
                (Some("unusable From header field (missing)"), None, false, Disposition::None)),
            (&strict, None, &[], Some(&spf_fail), &[], None,
                (Some("SPF fail for the envelope sender"), None, false, Disposition::None)),
            // A DNSBL reject comes first; a listing with action header refuses nothing.
            (&strict, Some(&reject), &[], None, &bl, None,
                (Some("client listed in bl.example"), None, false, Disposition::Reject)),
            (&strict, None, &[], None, &bl_header, None, none),
            (&strict, None, &[], None, &bl_clean, None, none),
            // Exemptions waive DMARC/From/SPF; only our own clients waive DNSBL.
            (&strict, Some(&reject), &missing, Some(&spf_fail), &[], trusted, none),
            (&strict, Some(&quarantine), &[], None, &bl, auth, none),
            (&strict, Some(&reject), &[], None, &bl, no_env,
                (Some("client listed in bl.example"), None, false, Disposition::None)),
            (&never, Some(&reject), &missing, Some(&spf_fail), &bl, None, none),
            (&never, Some(&temp), &[], None, &[], None, none),
        ];
        for (n, (a, dmarc, from_problems, spf, dnsbl, exemption, want)) in
            cases.into_iter().enumerate()
        {
            let i = Inputs {
                dmarc,
                from_problems,
                spf,
                dnsbl,
                exemption,
            };
            let d = decide(a, &i);
            let got = (
                d.reject.as_deref(),
                d.tempfail.as_deref(),
                d.quarantine,
                d.applied,
            );
            assert_eq!(got, want, "case {n}: {d:?}");
        }
    }

    fn failing(policy: Policy, testing: bool) -> DmarcOutcome {
        let mut o = DmarcOutcome::bare(DmarcResult::Fail, "example.com", "no aligned identifier");
        o.policy = Some(policy);
        o.disposition = if testing {
            Disposition::Quarantine.min(Disposition::from(policy))
        } else {
            policy.into()
        };
        o.testing = testing;
        o
    }

    #[test]
    fn reject_and_quarantine_follow_the_configured_actions() {
        let a = Actions::default();
        let d = dec(&a, Some(&failing(Policy::Reject, false)), &[], None, None);
        assert_eq!((d.applied, d.reject.is_some()), (Disposition::Reject, true));
        let a2 = Actions {
            dmarc_reject: RejectAction::Quarantine,
            ..Actions::default()
        };
        let d = dec(&a2, Some(&failing(Policy::Reject, false)), &[], None, None);
        assert_eq!(
            (d.applied, d.reject, d.quarantine),
            (Disposition::Quarantine, None, true)
        );
        let d = dec(
            &a,
            Some(&failing(Policy::Quarantine, false)),
            &[],
            None,
            None,
        );
        assert!(d.quarantine && d.reject.is_none());
        let e = crate::dmarc::authres_entry(
            &failing(Policy::Reject, false),
            d.applied,
            d.override_reason.as_deref(),
        );
        assert_eq!(
            e.comment.as_deref(),
            Some("p=reject dis=quarantine no aligned identifier")
        );
    }

    #[test]
    fn exemptions_and_never_block_waive_enforcement() {
        let a = Actions::default();
        let d = dec(
            &a,
            Some(&failing(Policy::Reject, false)),
            &[],
            None,
            Some(Exemption::TrustedHost),
        );
        assert_eq!(
            (d.applied, d.reject, d.override_reason.as_deref()),
            (Disposition::None, None, Some("trusted host"))
        );
        let nb = Actions {
            never_block: true,
            require_valid_from: true,
            ..Actions::default()
        };
        let d = dec(
            &nb,
            Some(&failing(Policy::Reject, false)),
            &[FromProblem::Missing],
            None,
            None,
        );
        assert_eq!((d.reject, d.quarantine), (None, false));
    }

    #[test]
    fn required_from_and_spf_fail_actions() {
        let a = Actions {
            require_valid_from: true,
            spf_fail: SpfFailAction::Reject,
            ..Actions::default()
        };
        let d = dec(&a, None, &[FromProblem::MultipleFields(2)], None, None);
        assert_eq!(
            d.reject.as_deref(),
            Some("unusable From header field (2 From fields)")
        );
        let spf = SpfOutcome {
            result: SpfResult::Fail,
            explanation: None,
            reason: String::new(),
            mechanism: None,
        };
        let d = dec(&a, None, &[], Some(&spf), None);
        assert!(d.reject.is_some());
        assert!(
            dec(&Actions::default(), None, &[], Some(&spf), None)
                .reject
                .is_none(),
            "SPF fail alone does nothing by default"
        );
    }

    #[test]
    fn internal_hosts_match_mapped_addresses() {
        let nets: Vec<ipnet::IpNet> = vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        for (ip, want) in [
            ("192.0.2.7", true),
            ("::ffff:192.0.2.7", true),
            ("2001:db8::1", true),
            ("198.51.100.1", false),
        ] {
            assert_eq!(is_internal(ip.parse().unwrap(), &nets), want, "{ip}");
        }
    }
}

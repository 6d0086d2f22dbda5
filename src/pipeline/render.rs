//! The header edits of a message, in the one order written down here.
//!
//! Owns: which fields we add and remove, and their order. Added fields go
//! on top, first = topmost:
//!
//! 1. `Authentication-Results` (ours, one field; RFC 8601 §5 puts it above
//!    the fields it reports on);
//! 2. `Received-SPF` (RFC 7208 §9.1, when configured and SPF ran);
//! 3. each `DKIM-Signature` we added, in signing-table order;
//! 4. the DNSBL header, when a list that is not ignored lists the client;
//! 5. the quarantine header, when the decision is to quarantine.
//!
//! Removed: every `Authentication-Results` field that claims our
//! authserv-id (a forgery, or a copy from an earlier pass). Must not: decide
//! anything (the [`Verdict`]'s decision is final here) or do I/O.

use super::{Context, Verdict};
use crate::authres::{self, Entry};
use crate::dkim::verify::DkimResult;
use crate::dnsbl::DnsblAction;
use crate::message::headers::Header;
use crate::spf::Identity;

/// Fields to add and remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// Fields to add at the top, in order (first = topmost).
    pub add: Vec<Header>,
    /// Indices (into the original header list) of fields to remove.
    pub remove: Vec<usize>,
}

impl Edits {
    /// The `Authentication-Results` field we add, if any.
    pub fn authentication_results(&self) -> Option<&Header> {
        self.add.iter().find(|h| h.is("Authentication-Results"))
    }
}

/// The edits for `v`, with our results when the message was verified.
/// `headers` are the message's original fields, `eol` its line ending.
pub fn edits(ctx: &Context, v: &Verdict, headers: &[Header], verified: bool, eol: &[u8]) -> Edits {
    let mut add = Vec::new();
    if verified {
        add.push(Header::new(
            "Authentication-Results",
            &authentication_results(ctx, v),
            eol,
        ));
        add.extend(received_spf(ctx, v, eol));
    }
    add.extend(v.signatures.iter().cloned());
    let listed = v
        .dnsbl
        .iter()
        .any(|o| o.listed() && o.action != DnsblAction::Ignore);
    let dnsbl_header = &ctx.client_checks.dnsbl_header;
    if listed && !dnsbl_header.is_empty() {
        let value = crate::dnsbl::header_value(&v.dnsbl);
        add.push(Header::new(dnsbl_header, &value, eol));
    }
    if v.decision.quarantine {
        let (name, value) = &ctx.actions.quarantine_header;
        add.push(Header::new(name, &format!(" {value}"), eol));
    }
    let remove = if verified && v.unparsed.is_none() {
        headers
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                h.is("Authentication-Results") && authres::claims(h.value(), &ctx.authserv_id)
            })
            .map(|(i, _)| i)
            .collect()
    } else {
        Vec::new()
    };
    Edits { add, remove }
}

/// Our A-R value: SPF (MAIL FROM, HELO), DKIM (one per signature, or
/// `none`), DMARC, iprev — or `dkim=permerror` for an unparsed message.
fn authentication_results(ctx: &Context, v: &Verdict) -> String {
    if let Some(why) = &v.unparsed {
        let entry = Entry {
            method: "dkim".into(),
            result: DkimResult::PermError.as_str().into(),
            comment: Some(why.clone()),
            props: Vec::new(),
            trailing: None,
        };
        return authres::build(&ctx.authserv_id, &[entry]);
    }
    let env = &v.envelope;
    let mail_from = env.mail_from.as_deref().unwrap_or_default();
    let helo = env.helo.as_deref().unwrap_or_default();
    let mut entries: Vec<Entry> = Vec::new();
    if let Some(o) = &v.spf_mailfrom {
        entries.push(crate::spf::authres_entry(
            o,
            Identity::MailFrom,
            mail_from,
            helo,
        ));
    }
    if let Some(o) = &v.spf_helo {
        entries.push(crate::spf::authres_entry(
            o,
            Identity::Helo,
            mail_from,
            helo,
        ));
    }
    if v.dkim.is_empty() {
        entries.push(Entry::dkim_none());
    }
    entries.extend(v.dkim.iter().map(Entry::dkim));
    entries.extend(v.dmarc.as_ref().map(|o| {
        let d = &v.decision;
        crate::dmarc::authres_entry(o, d.applied, d.override_reason.as_deref())
    }));
    entries.extend(v.iprev.as_ref().map(Entry::iprev));
    authres::build(&ctx.authserv_id, &entries)
}

/// `Received-SPF:` for MAIL FROM, else HELO (RFC 7208 §9.1).
fn received_spf(ctx: &Context, v: &Verdict, eol: &[u8]) -> Option<Header> {
    if !ctx.client_checks.received_spf || v.unparsed.is_some() {
        return None;
    }
    let ip = v.envelope.client_ip?;
    let (o, identity) = v
        .spf_mailfrom
        .as_ref()
        .map(|o| (o, Identity::MailFrom))
        .or_else(|| v.spf_helo.as_ref().map(|o| (o, Identity::Helo)))?;
    let env = &v.envelope;
    let line = crate::spf::received_spf_header(
        o,
        identity,
        ip,
        env.helo.as_deref().unwrap_or_default(),
        env.mail_from.as_deref().unwrap_or_default(),
        &ctx.authserv_id,
    );
    let value = line.split_once(':').map_or(line.as_str(), |(_, v)| v);
    Some(Header::new("Received-SPF", value, eol))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmarc::{DmarcOutcome, DmarcResult};
    use crate::dnsbl::{DnsblOutcome, DnsblStatus};
    use crate::spf::{SpfOutcome, SpfResult};

    fn ctx() -> Context {
        Context {
            authserv_id: "mx.example.net".into(),
            verify: Default::default(),
            signing: None,
            max_header_bytes: 1 << 20,
            client_checks: crate::pipeline::ClientChecks {
                received_spf: true,
                dnsbl_header: "X-DNSBL".into(),
                ..Default::default()
            },
            dmarc: None,
            actions: Default::default(),
            internal_hosts: Vec::new(),
            trusted_authserv_ids: Vec::new(),
            trusted_received_by: Vec::new(),
            dkim_keys: Default::default(),
        }
    }

    fn h(raw: &str) -> Header {
        Header::from_raw(raw.as_bytes().to_vec())
    }

    /// Every result there is, so every field we can add is added.
    fn everything() -> Verdict {
        let mut v = Verdict {
            signatures: vec![h("DKIM-Signature: a\r\n"), h("DKIM-Signature: b\r\n")],
            spf_mailfrom: Some(SpfOutcome {
                result: SpfResult::Pass,
                explanation: None,
                reason: String::new(),
                mechanism: None,
            }),
            dmarc: Some(DmarcOutcome::bare(DmarcResult::Pass, "example.org", "")),
            dnsbl: vec![DnsblOutcome {
                zone: "bl.example".into(),
                action: DnsblAction::Header,
                status: DnsblStatus::Listed {
                    codes: vec![std::net::Ipv4Addr::new(127, 0, 0, 2)],
                },
            }],
            ..Verdict::default()
        };
        v.envelope.client_ip = Some([192, 0, 2, 1].into());
        v.envelope.mail_from = Some("a@example.org".into());
        v.decision.quarantine = true;
        v
    }

    fn names(e: &Edits) -> Vec<String> {
        e.add
            .iter()
            .map(|h| String::from_utf8_lossy(h.name()).into_owned())
            .collect()
    }

    #[test]
    fn fields_are_added_in_the_one_order_and_forged_results_removed() {
        let c = ctx();
        let original = vec![
            h("Authentication-Results: mx.example.net; dkim=pass\r\n"),
            h("From: a@example.org\r\n"),
            h("Authentication-Results: other.example; dkim=pass\r\n"),
            h("authentication-results: MX.example.net; spf=pass\r\n"),
        ];
        let full = everything();
        let unparsed = Verdict {
            unparsed: Some("header block too large".into()),
            ..Verdict::default()
        };
        let plain = Verdict::default();
        let ar = "Authentication-Results";
        let q = "X-Authgate-Quarantine";
        let sig = "DKIM-Signature";
        for (v, verified, want, removed) in [
            (
                &full,
                true,
                vec![ar, "Received-SPF", sig, sig, "X-DNSBL", q],
                vec![0, 3],
            ),
            // Signing only: our signatures; the DNSBL and quarantine fields
            // follow the results, which a signing-only pass has none of.
            (&full, false, vec![sig, sig, "X-DNSBL", q], vec![]),
            (&plain, true, vec![ar], vec![0, 3]),
            (&plain, false, vec![], vec![]),
            (&unparsed, true, vec![ar], vec![]),
        ] {
            let e = edits(&c, v, &original, verified, b"\r\n");
            assert_eq!(names(&e), want, "{v:?}");
            assert_eq!(e.remove, removed);
        }
        let e = edits(&c, &full, &original, true, b"\r\n");
        let value =
            String::from_utf8_lossy(e.authentication_results().unwrap().value()).into_owned();
        assert_eq!(
            value,
            " mx.example.net;\r\n\tspf=pass smtp.mailfrom=a@example.org;\r\n\tdkim=none;\r\n\tdmarc=pass header.from=example.org"
        );
        let e = edits(&c, &unparsed, &original, true, b"\n");
        assert_eq!(
            e.add[0].raw(),
            b"Authentication-Results: mx.example.net;\n\tdkim=permerror (header block too large)\n"
        );
    }
}

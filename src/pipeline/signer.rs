//! Our signatures: which keys sign a message, and signing it.
//!
//! Owns: the signing identity (From, then Sender, then the envelope
//! sender), the signing-table match (first row wins, `%` = the author's
//! domain), and one DKIM-Signature per key of that row over the body hash
//! the job computed. A message that cannot carry a valid signature (no From
//! field, or several: RFC 6376 §5.4, RFC 5322 §3.6) is left unsigned with
//! the reason, never signed over a missing From and never held back. Must
//! not: hash the body or write the header block.

use std::sync::Arc;

use super::{Context, KeyEntry, PipelineError};
use crate::dkim::canon::{BodyHash, BodySpec};
use crate::dkim::sign::{SignSpec, choose_headers, pattern_matches, sign};
use crate::message::address::{domain_of, first_address};
use crate::message::headers::Header;

struct Planned {
    key: KeyEntry,
    domain: String,
}

/// The signatures planned for one message (none by default).
#[derive(Default)]
pub struct Signer {
    planned: Vec<Planned>,
    /// Why a message the signing table matched is not signed.
    refused: Option<String>,
}

/// The added DKIM-Signature fields and the `d=`/`s=`/`a=` of each.
pub type Signed = (Vec<Header>, Vec<(String, String, String)>);

/// Why a message cannot be signed at all, whoever signs it. RFC 6376 §5.4:
/// "The From header field MUST be signed"; a message without one would get
/// a signature over the null string, which proves nothing about an author
/// (and RFC 5322 §3.6 makes From required). RFC 5322 §3.6 allows one From:
/// with two, which one a reader sees is up to the reader, and a signature
/// over both would lend our domain to the other (RFC 6376 §8, "Attacks
/// Involving Extra Header Fields").
pub fn unsignable(headers: &[Header]) -> Option<String> {
    match headers.iter().filter(|h| h.is("From")).count() {
        1 => None,
        0 => Some("no From header field (RFC 6376 §5.4: From must be signed)".into()),
        n => Some(format!("{n} From header fields (RFC 5322 §3.6 allows one)")),
    }
}

/// The signing identity: From, then Sender, then the envelope sender.
fn author(headers: &[Header], mail_from: Option<&str>) -> Option<String> {
    ["From", "Sender"]
        .iter()
        .find_map(|name| {
            headers
                .iter()
                .find(|h| h.is(name))
                .and_then(|h| first_address(h.value()))
        })
        .or_else(|| mail_from.filter(|s| s.contains('@')).map(str::to_string))
}

/// The author's domain as a DKIM `d=`: RFC 6376 §3.5 `domain-name` (LDH
/// labels, A-labels for an internationalized name, as RFC 8616 §4 has
/// it), or `None` when it cannot be one (an address literal, a stray
/// character): a d= like that would give every verifier a permerror.
fn signing_domain(domain: &str) -> Option<String> {
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let ldh = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (ascii.contains('.') && ascii.split('.').all(ldh)).then_some(ascii)
}

impl Signer {
    /// Plans the signatures for a message with these header fields.
    pub fn plan(ctx: &Context, headers: &[Header], mail_from: Option<&str>) -> Signer {
        let Some(signing) = &ctx.signing else {
            return Signer::default();
        };
        // No author at all still matches the pattern "*".
        let author = author(headers, mail_from).unwrap_or_default();
        let Some(row) = signing
            .table
            .iter()
            .find(|r| pattern_matches(&r.pattern, &author))
        else {
            return Signer::default();
        };
        if let Some(why) = unsignable(headers) {
            return Signer {
                planned: Vec::new(),
                refused: Some(why),
            };
        }
        let author_domain = domain_of(&author)
            .and_then(|d| signing_domain(&d))
            .unwrap_or_default();
        let planned: Vec<Planned> = row
            .keys
            .iter()
            .map(|k| Planned {
                key: k.clone(),
                domain: if k.domain == "%" {
                    author_domain.clone()
                } else {
                    k.domain.clone()
                },
            })
            .filter(|p| !p.domain.is_empty())
            .collect();
        // d=% with no usable author domain to put there: say so rather
        // than silently sending the message unsigned.
        let refused = (planned.is_empty() && !row.keys.is_empty()).then(|| {
            format!(
                "no author domain for d=% (signing-table row {:?})",
                row.pattern
            )
        });
        Signer { planned, refused }
    }

    /// Why the signing table matched but the message is not signed.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// The body hash the signatures need, if any signs.
    pub fn body_spec(&self, ctx: &Context) -> Option<BodySpec> {
        let s = ctx.signing.as_ref()?;
        (!self.planned.is_empty()).then_some(BodySpec {
            canon: s.body_canon,
            limit: None,
        })
    }

    /// Signs with every planned key, written with `eol`.
    pub fn sign(
        &self,
        ctx: &Context,
        headers: &[Header],
        bodies: &[(BodySpec, BodyHash)],
        now: u64,
        eol: &[u8],
    ) -> Result<Signed, PipelineError> {
        let mut out: Signed = (Vec::new(), Vec::new());
        let Some(signing) = &ctx.signing else {
            return Ok(out);
        };
        let spec = BodySpec {
            canon: signing.body_canon,
            limit: None,
        };
        let Some((_, body)) = bodies.iter().find(|(s, _)| *s == spec) else {
            return Ok(out);
        };
        let names = choose_headers(headers, &signing.headers, &signing.oversign);
        for p in &self.planned {
            let spec = SignSpec {
                key: Arc::clone(&p.key.key),
                domain: p.domain.clone(),
                selector: p.key.selector.clone(),
                header_canon: signing.header_canon,
                body_canon: signing.body_canon,
                signed_headers: names.clone(),
                timestamp: now,
                expiration: signing.expire_after.map(|x| now.saturating_add(x)),
            };
            out.0.push(sign(headers, &spec, body, eol)?);
            let alg = p.key.key.algorithm().as_str().to_string();
            out.1.push((p.domain.clone(), p.key.selector.clone(), alg));
        }
        Ok(out)
    }
}

//! Our signatures: which keys sign a message, and signing it.
//!
//! Owns: the signing identity (From, then Sender, then the envelope
//! sender), the signing-table match (first row wins, `%` = the author's
//! domain), and one DKIM-Signature per key of that row over the body hash
//! the job computed. Must not: hash the body or write the header block.

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
}

/// The added DKIM-Signature fields and the `d=`/`s=`/`a=` of each.
pub type Signed = (Vec<Header>, Vec<(String, String, String)>);

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
        let author_domain = domain_of(&author).unwrap_or_default();
        let planned = row
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
        Signer { planned }
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

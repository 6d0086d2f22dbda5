//! MTA-STS and TLS-RPT findings: the `_mta-sts` TXT record (RFC 8461
//! §3.1) and the `_smtp._tls` TXT record (RFC 8460 §3). The MTA-STS
//! policy file is served over HTTPS and is not fetched here.
//!
//! Owns: the MTA-STS and TLS-RPT findings. Must not: fetch the policy or
//! send anything.

use super::{Area, Finding, Level, add, txt_line, txt_starting, unchecked};
use crate::dns::Resolver;

pub(super) async fn check<R: Resolver>(r: &R, domain: &str, out: &mut Vec<Finding>) {
    mta_sts(r, domain, out).await;
    tls_rpt(r, domain, out).await;
}

async fn mta_sts<R: Resolver>(r: &R, domain: &str, out: &mut Vec<Finding>) {
    const A: Area = Area::MtaSts;
    let name = format!("_mta-sts.{domain}");
    let example = txt_line(&name, "v=STSv1; id=20260101T000000");
    let records = match txt_starting(r, &name, "v=STSv1").await {
        Ok(r) => r,
        Err(why) => return unchecked(out, A, &name, &why),
    };
    match records.as_slice() {
        [] => add(
            out,
            A,
            Level::Warning,
            format!(
                "no MTA-STS record at {name}: senders may deliver to {domain} without TLS or to a forged MX; publish the record and a policy at https://mta-sts.{domain}/.well-known/mta-sts.txt (RFC 8461)."
            ),
            Some(example),
        ),
        [one] if sts_id(one).is_some() => add(
            out,
            A,
            Level::Ok,
            format!(
                "MTA-STS record: \"{one}\". The policy at https://mta-sts.{domain}/.well-known/mta-sts.txt was not fetched (this check uses DNS only)."
            ),
            None,
        ),
        [one] => add(
            out,
            A,
            Level::Error,
            format!(
                "the MTA-STS record \"{one}\" has no valid id= (1 to 32 letters and digits): senders ignore it (RFC 8461 §3.1)."
            ),
            Some(example),
        ),
        several => add(
            out,
            A,
            Level::Error,
            format!(
                "{} MTA-STS records at {name}: senders act as if there were none (RFC 8461 §3.1); keep one.",
                several.len()
            ),
            Some(example),
        ),
    }
}

/// The `id=` of an STSv1 record: 1*32(ALPHA / DIGIT).
fn sts_id(record: &str) -> Option<&str> {
    record
        .split(';')
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| k.trim() == "id")
        .map(|(_, v)| v.trim())
        .filter(|v| (1..=32).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric()))
}

async fn tls_rpt<R: Resolver>(r: &R, domain: &str, out: &mut Vec<Finding>) {
    const A: Area = Area::TlsRpt;
    let name = format!("_smtp._tls.{domain}");
    let example = txt_line(
        &name,
        &format!("v=TLSRPTv1; rua=mailto:tls-reports@{domain}"),
    );
    let records = match txt_starting(r, &name, "v=TLSRPTv1").await {
        Ok(r) => r,
        Err(why) => return unchecked(out, A, &name, &why),
    };
    let has_rua = |rec: &str| {
        rec.split(';')
            .filter_map(|f| f.split_once('='))
            .any(|(k, v)| k.trim() == "rua" && !v.trim().is_empty())
    };
    match records.as_slice() {
        [] => add(
            out,
            A,
            Level::Warning,
            format!(
                "no TLS-RPT record at {name}: senders cannot tell you when TLS to your MX fails (RFC 8460)."
            ),
            Some(example),
        ),
        [one] if has_rua(one) => add(
            out,
            A,
            Level::Ok,
            format!("TLS-RPT record: \"{one}\"."),
            None,
        ),
        [one] => add(
            out,
            A,
            Level::Error,
            format!(
                "the TLS-RPT record \"{one}\" has no rua=: reports have nowhere to go (RFC 8460 §3)."
            ),
            Some(example),
        ),
        several => add(
            out,
            A,
            Level::Error,
            format!(
                "{} TLS-RPT records at {name}: senders ignore them all (RFC 8460 §3); keep one.",
                several.len()
            ),
            Some(example),
        ),
    }
}

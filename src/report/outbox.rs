//! Failure reports (RFC 9991, AFRF): which failing messages the domain
//! asked about, the outbox they wait in, and sending them rate-limited.
//!
//! Owns: the decision from a finished message (`ruf=`, `fo=`, `psd=y`
//! ignored, reports about reports never), the `fail_queue` table (so a
//! front never talks SMTP: the daemons' minute loop and `report send`
//! empty it), the per-destination-domain hourly limit, the redaction
//! secret. Must not: compose the AFRF itself (`failure`).

use serde::{Deserialize, Serialize};

use super::db::{Db, DbError};
use super::failure::{
    AuthFailure, DeliveryResult, DkimFailure, FailureInput, FailureReporter, compose_failure,
    fo_wants,
};
use super::send::{Sender, authorised, submit};
use super::uri::{ReportUri, parse_uris};
use crate::dkim::verify::DkimResult;
use crate::dmarc::{DmarcResult, Psd};
use crate::dns::{Lookup, Resolver};
use crate::outcome::{Disposition, Fate};
use crate::spf::SpfResult;

/// Header blocks larger than this are cut in the report.
const MAX_HEADER: usize = 64 * 1024;
/// A failure report not sent within this long is dropped: it is about a
/// message the domain owner needed to hear of then, not a day later.
const STALE: i64 = 86_400;

/// A failing message as queued for its report (what [`FailureInput`]
/// needs, in a form the store keeps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// `dmarc`, `spf`, `signature`, `bodyhash`.
    pub kind: String,
    /// Arrival, seconds since the epoch.
    pub arrival: i64,
    /// Client address.
    pub client_ip: String,
    /// MAIL FROM.
    pub mail_from: Option<String>,
    /// First recipient's domain (the address is not kept).
    pub rcpt_domain: Option<String>,
    /// RFC5322.From domain.
    pub reported_domain: String,
    /// Our A-R value.
    pub auth_results: String,
    /// The header block (lossless: Latin-1 mapping of the bytes).
    pub header: String,
    /// `delivered`, `spam`, `reject`.
    pub delivery: String,
    /// An aligned DKIM identifier failed.
    pub dkim_aligned_failed: bool,
    /// An aligned SPF identifier failed.
    pub spf_aligned_failed: bool,
    /// The failing signature (d, s, i).
    pub dkim: Option<(String, String, String)>,
    /// The policy domain's `ruf=` (empty for a DKIM report, which goes to
    /// the signer's `_report._domainkey` address).
    pub ruf: String,
    /// The policy domain.
    pub policy_domain: String,
}

/// The failure reports a finished message calls for: the DMARC one when
/// the policy asks, and with `dkim_reports` one per failing signature
/// that asks with `r=y` (RFC 6651).
pub fn pending_of(fate: &Fate, dkim_reports: bool) -> Vec<Pending> {
    let mut out: Vec<Pending> = dmarc_pending(fate).into_iter().collect();
    if dkim_reports {
        out.extend(dkim_pending(fate));
    }
    out
}

/// RFC 6651 reports: one per failing signature with `r=y`.
fn dkim_pending(fate: &Fate) -> Vec<Pending> {
    if fate.disposition == Disposition::Tempfail {
        return Vec::new();
    }
    let Some(m) = fate.message.as_ref().filter(|m| !m.is_report()) else {
        return Vec::new();
    };
    m.verdict
        .dkim
        .iter()
        .filter(|d| d.reports && matches!(d.result, DkimResult::Fail))
        .filter_map(|d| {
            let domain = d.domain.clone()?;
            let identity = d.identity.clone().unwrap_or_else(|| format!("@{domain}"));
            let mut p = base(fate, m, domain.clone());
            p.kind = dkim_kind(&d.reason).into();
            p.dkim = Some((domain, d.selector.clone().unwrap_or_default(), identity));
            Some(p)
        })
        .collect()
}

/// What every failure report of `fate` shares; the caller fills in the
/// kind, the domains, the alignment flags, the signature and `ruf`.
fn base(fate: &Fate, m: &crate::pipeline::Finished, reported_domain: String) -> Pending {
    let mut header: Vec<u8> = m.headers.iter().flat_map(|h| h.raw().to_vec()).collect();
    header.truncate(MAX_HEADER);
    Pending {
        kind: String::new(),
        arrival: i64::try_from(m.at).unwrap_or(0),
        client_ip: fate
            .envelope
            .client_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        mail_from: fate.envelope.mail_from.clone(),
        rcpt_domain: fate.meta.rcpt_domain.clone(),
        policy_domain: reported_domain.clone(),
        reported_domain,
        auth_results: m
            .edits
            .authentication_results()
            .map(|h| String::from_utf8_lossy(h.value()).trim().to_string())
            .unwrap_or_default(),
        header: header.iter().map(|&b| char::from(b)).collect(),
        delivery: match fate.disposition {
            Disposition::Reject => "reject",
            Disposition::Quarantine => "spam",
            _ => "delivered",
        }
        .into(),
        dkim_aligned_failed: false,
        spf_aligned_failed: false,
        dkim: None,
        ruf: String::new(),
    }
}

/// `signature` or `bodyhash` (RFC 6591 Auth-Failure) for a failed DKIM result.
fn dkim_kind(reason: &str) -> &'static str {
    if reason.contains("body hash") {
        "bodyhash"
    } else {
        "signature"
    }
}

/// The DMARC failure report, when the policy asks for one.
fn dmarc_pending(fate: &Fate) -> Option<Pending> {
    if fate.disposition == Disposition::Tempfail {
        return None;
    }
    let m = fate.message.as_ref()?;
    if m.is_report() {
        return None;
    }
    let v = &m.verdict;
    let o = v.dmarc.as_ref()?;
    let rec = o.record.as_deref()?;
    // RFC 9991 §3: no failure reports for PSD policies.
    if rec.psd == Psd::Yes {
        return None;
    }
    let ruf = rec.ruf.clone().filter(|r| !parse_uris(r).is_empty())?;
    let dkim_fail = v
        .dkim
        .iter()
        .find(|d| matches!(d.result, DkimResult::Fail | DkimResult::PermError));
    let spf_failed = v
        .spf_mailfrom
        .as_ref()
        .is_some_and(|s| matches!(s.result, SpfResult::Fail | SpfResult::SoftFail));
    let dmarc_failed = o.result == DmarcResult::Fail;
    if !fo_wants(
        rec.fo.as_deref(),
        dkim_fail.is_some(),
        spf_failed,
        dmarc_failed,
    ) {
        return None;
    }
    let kind = match (dmarc_failed, dkim_fail) {
        (true, _) => "dmarc",
        (false, Some(d)) => dkim_kind(&d.reason),
        (false, None) => "spf",
    };
    let aligned = |d: &str| {
        crate::dkim::signature::is_same_or_subdomain(d, &o.domain)
            || crate::dkim::signature::is_same_or_subdomain(&o.domain, d)
    };
    let mut p = base(fate, m, o.domain.clone());
    p.kind = kind.into();
    p.dkim_aligned_failed = dkim_fail.is_some_and(|d| d.domain.as_deref().is_some_and(aligned));
    p.spf_aligned_failed = spf_failed
        && fate
            .envelope
            .mail_from
            .as_deref()
            .and_then(crate::message::address::domain_of)
            .is_some_and(|d| aligned(&d));
    p.dkim = dkim_fail.map(|d| {
        let domain = d.domain.clone().unwrap_or_default();
        let identity = d.identity.clone().unwrap_or_else(|| format!("@{domain}"));
        (domain, d.selector.clone().unwrap_or_default(), identity)
    });
    p.ruf = ruf;
    p.policy_domain = o.policy_domain.clone().unwrap_or_else(|| o.domain.clone());
    Some(p)
}

impl Pending {
    fn input(&self) -> FailureInput {
        FailureInput {
            auth_failure: match self.kind.as_str() {
                "spf" => AuthFailure::Spf,
                "signature" => AuthFailure::Signature,
                "bodyhash" => AuthFailure::BodyHash,
                _ => AuthFailure::Dmarc,
            },
            arrival: self.arrival,
            client_ip: self.client_ip.parse().ok(),
            mail_from: self.mail_from.clone(),
            rcpt_to: None,
            envelope_id: None,
            reported_domain: self.reported_domain.clone(),
            auth_results: self.auth_results.clone(),
            header: self
                .header
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            delivery: Some(match self.delivery.as_str() {
                "reject" => DeliveryResult::Reject,
                "spam" => DeliveryResult::Spam,
                _ => DeliveryResult::Delivered,
            }),
            dkim_aligned_failed: self.dkim_aligned_failed,
            spf_aligned_failed: self.spf_aligned_failed,
            dkim: self.dkim.as_ref().map(|(d, s, i)| DkimFailure {
                domain: d.clone(),
                selector: s.clone(),
                identity: i.clone(),
                canonicalized_header: None,
                canonicalized_body: None,
            }),
            spf_dns: None,
        }
    }
}

/// Queues one failure report (one short transaction).
pub fn enqueue(db: &mut Db, p: &Pending) -> Result<(), DbError> {
    let json = serde_json::to_string(p).unwrap_or_default();
    db.execute(
        "INSERT INTO fail_queue (time, policy_domain, ruf, pending, state, updated) \
         VALUES ($1, $2, $3, $4, 'queued', $1)",
        &[
            p.arrival.into(),
            (&p.policy_domain).into(),
            (&p.ruf).into(),
            json.into(),
        ],
    )?;
    Ok(())
}

/// What one flush did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Flushed {
    /// Reports sent.
    pub sent: u64,
    /// Reports not sent for good (unauthorised, rate limit, stale).
    pub skipped: u64,
    /// Reports left for the next flush (submission failed).
    pub retry: u64,
}

/// The secret of RFC 6590 redaction: made once per store, shared by its
/// nodes, so a sender is redacted the same way by each.
fn redaction_secret(db: &mut Db) -> Result<Vec<u8>, DbError> {
    let found = db.query(
        "SELECT value FROM authgate_secret WHERE name = 'redaction'",
        &[],
    )?;
    if let Some(v) = found.first().and_then(|r| r.first()) {
        return Ok(v.text().into_bytes());
    }
    let mut bytes = [0u8; 24];
    let secret = match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        Err(_) => format!("{:?}", std::time::SystemTime::now()),
    };
    db.execute(
        "INSERT INTO authgate_secret (name, value) VALUES ('redaction', $1) ON CONFLICT DO NOTHING",
        &[secret.into()],
    )?;
    let found = db.query(
        "SELECT value FROM authgate_secret WHERE name = 'redaction'",
        &[],
    )?;
    Ok(found
        .first()
        .and_then(|r| r.first())
        .map(|v| v.text().into_bytes())
        .unwrap_or_default())
}

/// Sends what the outbox holds: each report once, at most
/// `rate_per_hour` per destination domain, external destinations only
/// when they accept reports for the domain.
pub fn flush<R: Resolver + Lookup + 'static>(
    sender: &Sender<R>,
    rt: &tokio::runtime::Runtime,
    db: &mut Db,
    rate_per_hour: u32,
    redact: bool,
    now: i64,
) -> Result<Flushed, DbError> {
    let mut done = Flushed::default();
    db.execute(
        "UPDATE fail_queue SET state = 'skipped' WHERE state = 'queued' AND time < $1",
        &[(now - STALE).into()],
    )?;
    // A flush killed mid-send: its claims go back to the queue (the
    // report may go twice then; it is never lost).
    db.execute(
        "UPDATE fail_queue SET state = 'queued' WHERE state = 'sending' AND updated < $1",
        &[(now - super::send::CLAIM_TTL).into()],
    )?;
    let secret = if redact {
        Some(redaction_secret(db)?)
    } else {
        None
    };
    let queued = db.query(
        "SELECT id, pending FROM fail_queue WHERE state = 'queued' ORDER BY time LIMIT 1000",
        &[],
    )?;
    for q in queued {
        let id = q[0].int();
        let Ok(p) = serde_json::from_str::<Pending>(&q[1].text()) else {
            set_state(db, id, "skipped", now)?;
            done.skipped += 1;
            continue;
        };
        // Claimed: a second flusher (another node) skips it.
        let claimed = db.execute(
            "UPDATE fail_queue SET state = 'sending', updated = $2 WHERE id = $1 AND state = 'queued'",
            &[id.into(), now.into()],
        )?;
        if claimed == 0 {
            continue;
        }
        let mut sent_any = false;
        let mut retry = false;
        let destinations = if p.ruf.is_empty() {
            rt.block_on(signer_destination(&*sender.resolver, &p))
                .into_iter()
                .collect()
        } else {
            parse_uris(&p.ruf)
        };
        for u in destinations {
            if !p.ruf.is_empty()
                && !rt
                    .block_on(authorised(&*sender.resolver, &p.policy_domain, &u.domain))
                    .unwrap_or(false)
            {
                tracing::info!(domain = %p.policy_domain, to = %u.address, "failure report skipped: destination does not accept reports for the domain");
                continue;
            }
            let recent = db.query(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM fail_sent WHERE destination = $1 AND time > $2",
                &[(&u.domain).into(), (now - 3600).into()],
            )?;
            if recent.first().map_or(0, |r| r[0].int()) >= i64::from(rate_per_hour) {
                tracing::info!(to = %u.address, "failure report skipped: {rate_per_hour} per hour to {} already sent", u.domain);
                continue;
            }
            let reporter = FailureReporter {
                from: sender.from.clone(),
                to: vec![u.address.clone()],
                user_agent: format!("authgate/{}", env!("CARGO_PKG_VERSION")),
                message_id_host: sender.host.clone(),
                redaction_key: secret.clone(),
            };
            let Ok(raw) = compose_failure(&p.input(), &reporter, now) else {
                continue;
            };
            if let Some(max) = u.max_size
                && raw.len() as u64 > max
            {
                continue;
            }
            let Ok(mail) = sender.sign_mail(rt, raw, now) else {
                retry = true;
                continue;
            };
            match rt.block_on(submit(&sender.submission, &sender.from, &u.address, &mail)) {
                Ok(()) => {
                    db.execute(
                        "INSERT INTO fail_sent (destination, time) VALUES ($1, $2)",
                        &[(&u.domain).into(), now.into()],
                    )?;
                    tracing::info!(domain = %p.policy_domain, to = %u.address, kind = %p.kind, "DMARC failure report sent");
                    sent_any = true;
                }
                Err(e) => {
                    tracing::warn!(to = %u.address, "failure report not sent, will retry: {e}");
                    retry = true;
                }
            }
        }
        if retry && !sent_any {
            set_state(db, id, "queued", now)?;
            done.retry += 1;
        } else if sent_any {
            set_state(db, id, "sent", now)?;
            done.sent += 1;
        } else {
            set_state(db, id, "skipped", now)?;
            done.skipped += 1;
        }
    }
    Ok(done)
}

/// Where an RFC 6651 report goes: `ra=` at the signing domain, from the
/// TXT record at `_report._domainkey.<d>`, when `rr=` asks for
/// verification failures (`all` or `v`) and the `rp=` sample takes it.
async fn signer_destination<R: Resolver>(resolver: &R, p: &Pending) -> Option<ReportUri> {
    let (domain, _, _) = p.dkim.as_ref()?;
    let txts = resolver
        .txt(&format!("_report._domainkey.{domain}"))
        .await
        .ok()?;
    let [txt] = txts.as_slice() else {
        return None;
    };
    let text = String::from_utf8_lossy(txt);
    let tag = |name: &str| {
        text.split(';')
            .filter_map(|t| t.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let ra = tag("ra").filter(|ra| !ra.is_empty() && !ra.contains(['@', ' ']))?;
    let wanted = tag("rr").is_none_or(|rr| rr.split(':').any(|t| matches!(t.trim(), "all" | "v")));
    let percent: u8 = tag("rp")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .min(100);
    let mut dice = [0u8; 1];
    let sampled = percent == 100
        || (aws_lc_rs::rand::fill(&mut dice).is_ok()
            && u32::from(dice[0]) * 100 < u32::from(percent) * 256);
    (wanted && sampled).then(|| ReportUri {
        address: format!("{ra}@{domain}"),
        domain: domain.clone(),
        max_size: None,
    })
}

fn set_state(db: &mut Db, id: i64, state: &str, now: i64) -> Result<(), DbError> {
    db.execute(
        "UPDATE fail_queue SET state = $2, updated = $3 WHERE id = $1",
        &[id.into(), state.into(), now.into()],
    )?;
    Ok(())
}

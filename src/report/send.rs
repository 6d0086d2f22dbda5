//! Sending aggregate reports (RFC 9990): which domains and days are due,
//! where each report may go, the mail, its signature and its submission,
//! and the state that makes a report go out once and keep its name.
//!
//! Owns: the send loop over the store (`agg_sent`), destination checks
//! (`rua=` as published now; third-party destinations authorised by
//! `<policy-domain>._report._dmarc.<destination>` TXT, RFC 9990 §3),
//! submission (lettre: STARTTLS, implicit TLS, SMTP AUTH, timeouts).
//! Must not: decide what the report says (`aggregate`) or run on a
//! runtime thread (the store blocks; callers use a thread of their own).
//!
//! Once, and nothing lost: rows are never deleted by sending (only by
//! retention), so a crash loses nothing. Before a report goes to a
//! destination its line in `agg_sent` is claimed (`sending`); after the
//! server's final 250 it is `sent`. A run that finds `sent` sends nothing;
//! one that finds `sending` older than [`CLAIM_TTL`] (a crash or kill
//! mid-send) sends again with the same report id and Message-ID, so the
//! only possible duplicate (a kill between the server's 250 and the
//! commit) is byte-identical and de-duplicated by report id at the
//! receiver; a younger `sending` belongs to a node working on it now.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::aggregate::{self, Aggregate, Period, Reporter};
use super::db::{Db, DbError, Value};
use super::store;
use super::uri::{ReportUri, parse_uris};
use super::{DAY, day_of};
use crate::config::{Config, ReportSettings};
use crate::dmarc::orgdomain::psl_org_domain;
use crate::dns::{Lookup, Resolver};

/// A claim older than this is a crashed send, taken over.
pub const CLAIM_TTL: i64 = 3600;
/// One SMTP conversation with the submission host, at most.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why reports could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The store.
    #[error(transparent)]
    Store(#[from] DbError),
    /// A file of the dry run.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Settings that cannot work.
    #[error("[report] {0}")]
    Config(String),
}

/// What was done (or would be, dry) for one policy domain and day: the
/// JSON line `report send` prints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    /// The policy domain.
    pub domain: String,
    /// The day (`YYYY-MM-DD`).
    pub day: String,
    /// Where the report went (or would go).
    pub destinations: Vec<String>,
    /// Where it did not, and why.
    pub skipped: Vec<Skipped>,
    /// The report id (also in the file name).
    pub report_id: String,
    /// Messages the report covers.
    pub messages: u64,
    /// The attachment's file name (dry run: the path written).
    pub file: String,
}

/// A destination not sent to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The `mailto:` address (or the whole `rua=` when there is none).
    pub address: String,
    /// Why.
    pub reason: String,
}

/// How the report mail leaves.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `starttls`, `tls` or `none`.
    pub tls: String,
    /// Extra CA certificates (PEM).
    pub ca: Option<Vec<u8>>,
    /// SMTP AUTH user and password.
    pub auth: Option<(String, String)>,
}

/// Everything a run needs besides the store.
pub struct Sender<R> {
    /// Who we are in the reports.
    pub reporter: Reporter,
    /// The report mail's From address.
    pub from: String,
    /// The Message-ID host.
    pub host: String,
    /// Where the mail goes.
    pub submission: Submission,
    /// DNS (destinations and their authorisation).
    pub resolver: Arc<R>,
    /// The signing configuration (the report mail is signed like any
    /// outbound mail, by the signing table).
    pub signing: Arc<crate::pipeline::Context>,
    /// The spool for signing.
    pub spool: crate::pipe::SpoolSettings,
}

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Run {
    /// Start of the first day (00:00 UTC).
    pub begin: i64,
    /// Only this policy domain.
    pub domain: Option<String>,
    /// Write the reports here instead of sending; mark nothing.
    pub dry_run: Option<PathBuf>,
    /// The clock.
    pub now: i64,
}

impl<R: Resolver + Lookup + 'static> Sender<R> {
    /// From the configuration.
    pub fn new(config: &Config, resolver: Arc<R>) -> Result<Sender<R>, SendError> {
        let r = &config.report;
        let host = if config.server.hostname.is_empty() {
            crate::config::system_hostname()
        } else {
            config.server.hostname.clone()
        };
        let org = if r.org_name.is_empty() {
            host.clone()
        } else {
            r.org_name.clone()
        };
        let from = if r.from.is_empty() {
            format!("dmarc-noreply@{host}")
        } else {
            r.from.clone()
        };
        Ok(Sender {
            reporter: Reporter {
                org_name: org,
                domain: crate::message::address::domain_of(&from).unwrap_or_else(|| host.clone()),
                email: from.clone(),
                contact: (!r.contact.is_empty()).then(|| r.contact.clone()),
                generator: format!("authgate {}", env!("CARGO_PKG_VERSION")),
            },
            from,
            host,
            submission: submission(config)?,
            resolver,
            signing: Arc::new(
                config
                    .context()
                    .map_err(|e| SendError::Config(e.to_string()))?,
            ),
            spool: crate::pipe::SpoolSettings {
                threshold: 1 << 20,
                dir: config.message.spool_dir.clone(),
            },
        })
    }

    /// Sends (or writes, dry) the reports of one day; one [`Sent`] per
    /// policy domain with rows.
    pub fn day(
        &self,
        rt: &tokio::runtime::Runtime,
        db: &mut Db,
        run: &Run,
    ) -> Result<Vec<Sent>, SendError> {
        // The XML's date_range is the day's first and last second.
        let period = Period {
            begin: run.begin,
            end: run.begin + DAY - 1,
        };
        let mut domains = store::domains_in(db, period.begin, period.begin + DAY)?;
        if let Some(d) = &run.domain {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            domains.retain(|x| *x == d);
        }
        let mut out = Vec::new();
        for domain in domains {
            out.push(self.one(rt, db, run, &domain, period)?);
        }
        Ok(out)
    }

    fn one(
        &self,
        rt: &tokio::runtime::Runtime,
        db: &mut Db,
        run: &Run,
        domain: &str,
        period: Period,
    ) -> Result<Sent, SendError> {
        let end = period.begin + DAY;
        let rows = store::rows_for(db, domain, period.begin, end)?;
        let (dropped, reasons) = store::dropped_in(db, period.begin, end)?;
        let id = aggregate::report_id(&self.reporter.org_name, domain, period.begin);
        let mut sent = Sent {
            domain: domain.to_string(),
            day: day_of(period.begin),
            destinations: Vec::new(),
            skipped: Vec::new(),
            report_id: id.clone(),
            messages: 0,
            file: String::new(),
        };
        let agg = match aggregate::build(
            &self.reporter,
            domain,
            period,
            &rows,
            (dropped, &reasons),
            &id,
        ) {
            Ok(a) => a,
            Err(e) => {
                sent.skipped.push(Skipped {
                    address: String::new(),
                    reason: e.to_string(),
                });
                return Ok(sent);
            }
        };
        let gz = aggregate::gzip(&agg.xml);
        sent.messages = agg.messages;
        sent.file = agg.file_name.clone();
        let uris = match rt.block_on(destinations(&*self.resolver, domain)) {
            Ok(u) => u,
            Err(why) => {
                sent.skipped.push(Skipped {
                    address: format!("_dmarc.{domain}"),
                    reason: why,
                });
                Vec::new()
            }
        };
        let mut ok = Vec::new();
        for u in uris {
            match rt.block_on(authorised(&*self.resolver, domain, &u.domain)) {
                Ok(true) => {}
                Ok(false) => {
                    sent.skipped.push(Skipped {
                        address: u.address.clone(),
                        reason: format!(
                            "{} does not accept reports for {domain} (no v=DMARC1 at {domain}._report._dmarc.{})",
                            u.domain, u.domain
                        ),
                    });
                    continue;
                }
                Err(e) => {
                    sent.skipped.push(Skipped {
                        address: u.address.clone(),
                        reason: format!("authorisation not checkable now: {e}"),
                    });
                    continue;
                }
            }
            if let Some(max) = u.max_size
                && gz.len() as u64 > max
            {
                sent.skipped.push(Skipped {
                    address: u.address.clone(),
                    reason: format!(
                        "report is {} bytes, the destination takes at most {max}",
                        gz.len()
                    ),
                });
                continue;
            }
            ok.push(u);
        }
        if let Some(dir) = &run.dry_run {
            let eml = self.mail(rt, &agg, &ok, run.now)?;
            let file = dir.join(&agg.file_name);
            write(&file, &gz)?;
            write(&dir.join(format!("{}.eml", agg.file_name)), &eml)?;
            sent.destinations = ok.iter().map(|u| u.address.clone()).collect();
            sent.file = file.display().to_string();
            return Ok(sent);
        }
        for u in &ok {
            match claim(db, domain, period, &u.address, &id, run.now)? {
                Claim::Done => {
                    sent.destinations.push(u.address.clone());
                    continue;
                }
                Claim::Busy => {
                    sent.skipped.push(Skipped {
                        address: u.address.clone(),
                        reason: "another run is sending it now".into(),
                    });
                    continue;
                }
                Claim::Mine => {}
            }
            let eml = self.mail(rt, &agg, std::slice::from_ref(u), run.now)?;
            match rt.block_on(submit(&self.submission, &self.from, &u.address, &eml)) {
                Ok(()) => {
                    mark(db, domain, period, &u.address, "sent", "", run.now)?;
                    tracing::info!(domain, day = %sent.day, to = %u.address, report_id = %id, messages = agg.messages, "DMARC aggregate report sent");
                    sent.destinations.push(u.address.clone());
                }
                Err(e) => {
                    // Released: the next run tries again.
                    release(db, domain, period, &u.address)?;
                    tracing::warn!(domain, to = %u.address, "DMARC aggregate report not sent: {e}");
                    sent.skipped.push(Skipped {
                        address: u.address.clone(),
                        reason: format!("not sent, will retry: {e}"),
                    });
                }
            }
        }
        for s in &sent.skipped {
            if !s.reason.starts_with("not sent") && !s.reason.starts_with("another run") {
                tracing::info!(domain, to = %s.address, "DMARC aggregate report skipped: {}", s.reason);
            }
        }
        Ok(sent)
    }

    /// The report mail for `to`, signed by the signing table.
    fn mail(
        &self,
        rt: &tokio::runtime::Runtime,
        agg: &Aggregate,
        to: &[ReportUri],
        date: i64,
    ) -> Result<Vec<u8>, SendError> {
        let to: Vec<String> = to.iter().map(|u| u.address.clone()).collect();
        let raw = aggregate::compose(agg, &self.from, &to, date, &self.host);
        self.sign_mail(rt, raw, date)
    }

    /// `raw` signed by the signing table (as any outbound mail of ours).
    pub fn sign_mail(
        &self,
        rt: &tokio::runtime::Runtime,
        raw: Vec<u8>,
        date: i64,
    ) -> Result<Vec<u8>, SendError> {
        use crate::outcome::{Front, InFlight, Origin, plan};
        let envelope = crate::pipeline::Envelope {
            mail_from: Some(self.from.clone()),
            ..Default::default()
        };
        let msg = InFlight::start(
            Front::Pipe,
            Arc::clone(&self.signing),
            Arc::clone(&self.resolver),
            plan(crate::role::Role::Outbound, &Origin::default()),
            envelope,
            u64::try_from(date).ok(),
        );
        let mut out = Vec::with_capacity(raw.len() + 1024);
        let fate = crate::pipe::filter(rt, msg, &self.spool, &mut raw.as_slice(), &mut out)
            .map_err(|e| SendError::Config(format!("cannot sign the report mail: {e}")))?;
        if fate.verdict().is_none_or(|v| v.signed.is_empty()) {
            tracing::warn!(from = %self.from, "report mail not DKIM-signed: no [[dkim.signing_table]] entry signs for its From; receivers' DMARC will fail it");
        }
        Ok(out)
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SendError> {
    std::fs::write(path, bytes).map_err(|source| SendError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The `rua=` destinations published now at `_dmarc.<domain>`.
pub async fn destinations<R: Resolver>(
    resolver: &R,
    domain: &str,
) -> Result<Vec<ReportUri>, String> {
    let name = format!("_dmarc.{domain}");
    let txts = match resolver.txt(&name).await {
        Ok(t) => t,
        Err(crate::dns::DnsError::NxDomain | crate::dns::DnsError::NoData) => {
            return Err(format!("no DMARC record at {name} any more"));
        }
        Err(e) => return Err(format!("no DMARC record readable at {name}: {e}")),
    };
    let records: Vec<_> = txts
        .iter()
        .filter(|t| crate::dmarc::record::is_dmarc_record(t))
        .collect();
    let [one] = records.as_slice() else {
        return Err(format!("{} DMARC records at {name}", records.len()));
    };
    let rec = crate::dmarc::DmarcRecord::parse(one).map_err(|e| format!("{name}: {e}"))?;
    let rua = rec.rua.unwrap_or_default();
    let uris = parse_uris(&rua);
    if uris.is_empty() {
        return Err(format!("no mailto: rua= at {name}"));
    }
    Ok(uris)
}

/// Whether `dest` may receive reports about `domain`: the same
/// organisation, or `domain._report._dmarc.dest` TXT `v=DMARC1`
/// (RFC 9990 §3, wildcards answered by DNS).
pub async fn authorised<R: Resolver>(
    resolver: &R,
    domain: &str,
    dest: &str,
) -> Result<bool, crate::dns::DnsError> {
    if psl_org_domain(domain) == psl_org_domain(dest) {
        return Ok(true);
    }
    let name = format!("{domain}._report._dmarc.{dest}");
    match resolver.txt(&name).await {
        Ok(txts) => Ok(txts
            .iter()
            .any(|t| crate::dmarc::record::is_dmarc_record(t))),
        Err(crate::dns::DnsError::NxDomain | crate::dns::DnsError::NoData) => Ok(false),
        Err(e) => Err(e),
    }
}

enum Claim {
    /// Ours to send.
    Mine,
    /// Already sent.
    Done,
    /// Someone is sending it now.
    Busy,
}

fn claim(
    db: &mut Db,
    domain: &str,
    period: Period,
    dest: &str,
    id: &str,
    now: i64,
) -> Result<Claim, DbError> {
    db.transaction(|db| {
        let n = db.execute(
            "INSERT INTO agg_sent (domain, period_begin, period_end, destination, report_id, state, \
             detail, updated) VALUES ($1, $2, $3, $4, $5, 'sending', '', $6) ON CONFLICT DO NOTHING",
            &[
                domain.into(),
                period.begin.into(),
                period.end.into(),
                dest.into(),
                id.into(),
                now.into(),
            ],
        )?;
        if n == 1 {
            return Ok(Claim::Mine);
        }
        let row = db.query(
            "SELECT state, updated FROM agg_sent WHERE domain = $1 AND period_begin = $2 AND destination = $3",
            &[domain.into(), period.begin.into(), dest.into()],
        )?;
        let (state, updated) = row
            .first()
            .map(|r| (r[0].text(), r[1].int()))
            .unwrap_or_default();
        match state.as_str() {
            "sent" => Ok(Claim::Done),
            "sending" if now - updated < CLAIM_TTL => Ok(Claim::Busy),
            _ => {
                db.execute(
                    "UPDATE agg_sent SET state = 'sending', updated = $4 WHERE domain = $1 AND \
                     period_begin = $2 AND destination = $3",
                    &[domain.into(), period.begin.into(), dest.into(), now.into()],
                )?;
                Ok(Claim::Mine)
            }
        }
    })
}

fn mark(
    db: &mut Db,
    domain: &str,
    period: Period,
    dest: &str,
    state: &str,
    detail: &str,
    now: i64,
) -> Result<(), DbError> {
    db.execute(
        "UPDATE agg_sent SET state = $4, detail = $5, updated = $6 WHERE domain = $1 AND \
         period_begin = $2 AND destination = $3",
        &[
            domain.into(),
            period.begin.into(),
            dest.into(),
            state.into(),
            detail.into(),
            now.into(),
        ],
    )?;
    Ok(())
}

fn release(db: &mut Db, domain: &str, period: Period, dest: &str) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM agg_sent WHERE domain = $1 AND period_begin = $2 AND destination = $3 AND \
         state = 'sending'",
        &[domain.into(), period.begin.into(), dest.into()],
    )?;
    Ok(())
}

/// The days with rows not yet fully reported, oldest first, from
/// `since` up to the day before `now`: the daily run sends these, so a
/// node that was down sends what it missed (no gaps), and a day with
/// every destination `sent` is not sent again (no overlaps).
pub fn due_days(db: &mut Db, since: i64, now: i64) -> Result<Vec<i64>, DbError> {
    let today = now.div_euclid(DAY) * DAY;
    let rows = db.query(
        "SELECT DISTINCT (time / 86400) * 86400 FROM agg_rows r WHERE time >= $1 AND time < $2 \
         AND NOT EXISTS (SELECT 1 FROM agg_sent s WHERE s.domain = r.policy_domain AND \
         s.period_begin = (r.time / 86400) * 86400 AND s.destination = '' AND s.state = 'done') \
         ORDER BY 1",
        &[since.into(), today.into()],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| r.first().map(Value::int))
        .collect())
}

/// Marks a domain's day as handled (every destination sent or skipped
/// for good), so the daily run does not look at it again.
pub fn mark_done(db: &mut Db, s: &Sent, begin: i64, now: i64) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO agg_sent (domain, period_begin, period_end, destination, report_id, state, \
         detail, updated) VALUES ($1, $2, $3, '', $4, 'done', $5, $6) ON CONFLICT DO NOTHING",
        &[
            s.domain.as_str().into(),
            begin.into(),
            (begin + DAY).into(),
            s.report_id.as_str().into(),
            serde_json::to_string(&s.skipped).unwrap_or_default().into(),
            now.into(),
        ],
    )?;
    Ok(())
}

/// A day is done for a domain when nothing is left to retry.
pub fn is_done(s: &Sent) -> bool {
    !s.skipped.iter().any(|k| {
        k.reason.starts_with("not sent")
            || k.reason.starts_with("another run")
            || k.reason.starts_with("authorisation not checkable")
            || k.reason.starts_with("no DMARC record readable")
    })
}

fn submission(config: &Config) -> Result<Submission, SendError> {
    let r: &ReportSettings = &config.report;
    let (host, port) = if r.submission.is_empty() {
        let hop = config
            .listeners()
            .ok()
            .and_then(|l| l.into_iter().next())
            .and_then(|l| match l.next_hop {
                crate::sockaddr::SocketAddress::Tcp(a) => Some((a.ip().to_string(), a.port())),
                crate::sockaddr::SocketAddress::Unix(_) => None,
            });
        hop.unwrap_or_else(|| ("127.0.0.1".into(), 25))
    } else {
        let (h, p) = r.submission.rsplit_once(':').ok_or_else(|| {
            SendError::Config(format!("submission = {:?}: use host:port", r.submission))
        })?;
        let port = p
            .parse()
            .map_err(|_| SendError::Config(format!("submission = {:?}: bad port", r.submission)))?;
        (h.trim_matches(['[', ']']).to_string(), port)
    };
    // Next-hop submission on loopback is plain SMTP unless configured.
    let tls = if r.submission.is_empty() {
        "none".to_string()
    } else {
        r.submission_tls.clone()
    };
    if !matches!(tls.as_str(), "starttls" | "tls" | "none") {
        return Err(SendError::Config(format!(
            "submission_tls = {tls:?}: use starttls, tls or none"
        )));
    }
    let ca = match &r.submission_ca {
        Some(p) => Some(std::fs::read(p).map_err(|source| SendError::Io {
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let auth = match (&r.submission_user, &r.submission_password_file) {
        (u, _) if u.is_empty() => None,
        (u, Some(p)) => Some((u.clone(), password(p)?)),
        (_, None) => {
            return Err(SendError::Config(
                "submission_user needs submission_password_file".into(),
            ));
        }
    };
    Ok(Submission {
        host,
        port,
        tls,
        ca,
        auth,
    })
}

/// The SMTP AUTH password: first line of a file nobody else may read.
fn password(path: &Path) -> Result<String, SendError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| SendError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.mode() & 0o077 != 0 {
        return Err(SendError::Config(format!(
            "submission_password_file {} is readable by group or others: chmod 600 it",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Hands one report mail to the submission host.
pub async fn submit(s: &Submission, from: &str, to: &str, mail: &[u8]) -> Result<(), String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let envelope = lettre::address::Envelope::new(
        Some(from.parse().map_err(|e| format!("From {from:?}: {e}"))?),
        vec![to.parse().map_err(|e| format!("destination {to:?}: {e}"))?],
    )
    .map_err(|e| e.to_string())?;
    let params = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(s.host.clone());
        if let Some(pem) = &s.ca {
            b = b.add_root_certificate(Certificate::from_pem(pem).map_err(|e| e.to_string())?);
        }
        b.build().map_err(|e| e.to_string())
    };
    let tls = match s.tls.as_str() {
        "tls" => Tls::Wrapper(params()?),
        "starttls" => Tls::Required(params()?),
        _ => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
        .port(s.port)
        .tls(tls)
        .timeout(Some(SUBMIT_TIMEOUT));
    if let Some((u, p)) = &s.auth {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let transport = b.build();
    let send = transport.send_raw(&envelope, mail);
    match tokio::time::timeout(SUBMIT_TIMEOUT, send).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer from {}:{} within {SUBMIT_TIMEOUT:?}",
            s.host, s.port
        )),
    }
}

//! The one log line per message every front writes, and log set-up.
//!
//! Owns: the field names admins grep (`queue_id`, `client`, `from`, `dkim`,
//! `spf`, `dmarc`, `disposition`, ...) so pipe, proxy and milter lines look
//! the same. Must not: decide anything.

use crate::dns::DnsStats;
use crate::pipeline::Verdict;

/// Output format of the log on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `key=value` text (journald/syslog friendly).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to stderr. `RUST_LOG` overrides the default level (`info`
/// for the daemons, `warn` for one-shot commands).
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// What the front knows about a message besides the verdict.
#[derive(Debug, Clone, Default)]
pub struct MessageInfo<'a> {
    /// The MTA's queue id (XFORWARD IDENT, milter `i` macro), if known.
    pub queue_id: Option<&'a str>,
    /// Recipients in the transaction.
    pub recipients: usize,
    /// Message size in bytes.
    pub size: u64,
    /// What happened to the message (e.g. "relayed 250", "rejected 550").
    pub outcome: &'a str,
}

fn dkim_summary(v: &Verdict) -> String {
    let parts: Vec<String> = v
        .dkim
        .iter()
        .map(|d| {
            format!(
                "{} d={} s={}",
                d.result.as_str(),
                d.domain.as_deref().unwrap_or("-"),
                d.selector.as_deref().unwrap_or("-"),
            )
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn dmarc_summary(v: &Verdict) -> String {
    match &v.dmarc {
        None => "-".into(),
        Some(o) => format!(
            "{} header.from={} p={} dis={}",
            o.result.as_str(),
            o.domain,
            o.policy.map_or("-", |p| p.as_str()),
            v.decision.applied.as_str()
        ),
    }
}

/// Writes the per-message line at info.
pub fn log_message(info: &MessageInfo<'_>, v: &Verdict, dns: &DnsStats) {
    let signed: Vec<String> = v
        .signed
        .iter()
        .map(|(d, s, alg)| format!("d={d} s={s} a={alg}"))
        .collect();
    let listed: Vec<&str> = v
        .dnsbl
        .iter()
        .filter(|o| o.listed())
        .map(|o| o.zone.as_str())
        .collect();
    let env = &v.envelope;
    tracing::info!(
        queue_id = %info.queue_id.unwrap_or("-"),
        client = %env.client_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        helo = %env.helo.as_deref().unwrap_or("-"),
        from = %env.mail_from.as_deref().map_or("-", |f| if f.is_empty() { "<>" } else { f }),
        rcpts = info.recipients,
        size = info.size,
        dkim = %dkim_summary(v),
        spf = %v.spf_mailfrom.as_ref().map_or("-", |o| o.result.as_str()),
        dmarc = %dmarc_summary(v),
        iprev = %v.iprev.as_ref().map_or("-", |o| o.result.as_str()),
        dnsbl_listed = %listed.join(","),
        signed = %signed.join(", "),
        reject = %v.reject.as_deref().unwrap_or("-"),
        tempfail = %v.tempfail.as_deref().unwrap_or("-"),
        unparsed = %v.unparsed.as_deref().unwrap_or("-"),
        outcome = %info.outcome,
        dns_queries = dns.queries,
        dns_cache_hits = dns.cache_hits,
        dns_wait_ms = dns.waited.as_millis() as u64,
        "message"
    );
}

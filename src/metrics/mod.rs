//! Prometheus metrics of `serve` and `milter`, and their `/metrics` endpoint.
//!
//! Owns: every metric's name (all prefixed `authgate_`), labels, help text
//! and histogram buckets; the [`Observer`] that counts each finished
//! message at [`Fate::emit`]; the per-front session gauge guards; the
//! report writer's row counts read at scrape time. The text is written by
//! `prometheus-client`, never by hand; `http.rs` serves it.
//!
//! Must not: block a front (the observer only touches atomics and the
//! metric families' short locks), decide anything about a message, or
//! answer anything but `GET /metrics`. The daemon starts the endpoint and
//! registers the observer; the fronts know nothing of metrics.

use std::sync::{Arc, LazyLock, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::outcome::{Fate, Front, Observer, TempfailCause};
use crate::report::writer::Counters;

mod http;
pub use http::{Endpoint, OPENMETRICS};

/// One label.
type Label = (&'static str, &'static str);

/// Reply latency buckets, in seconds: 1 ms to 1 min (a next hop's reply
/// to DATA is part of the proxy's latency).
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The name the observer is registered under ([`crate::outcome::observe`]).
const OBSERVER: &str = "metrics";

/// Every metric the process keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    messages: Family<[Label; 2], Counter>,
    dkim: Family<[Label; 1], Counter>,
    spf: Family<[Label; 1], Counter>,
    dmarc: Family<[Label; 1], Counter>,
    iprev: Family<[Label; 1], Counter>,
    tempfails: Family<[Label; 1], Counter>,
    dns_queries: Counter,
    dns_cache_hits: Counter,
    dns_timeouts: Counter,
    latency: Histogram,
    sessions: Family<[Label; 1], Gauge>,
    reloads: Family<[Label; 1], Counter>,
    report_rows: Arc<ReportRows>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics, registered under their names.
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let messages = Family::default();
        r.register(
            "authgate_messages",
            "Messages finished, by front (proxy, milter, pipe) and disposition (accept, quarantine, reject, tempfail)",
            messages.clone(),
        );
        let [dkim, spf, dmarc, iprev] = [(); 4].map(|()| Family::default());
        for (name, help, family) in [
            (
                "authgate_dkim_results",
                "DKIM results, one per signature verified",
                &dkim,
            ),
            (
                "authgate_spf_results",
                "SPF results for the MAIL FROM identity",
                &spf,
            ),
            ("authgate_dmarc_results", "DMARC results", &dmarc),
            (
                "authgate_iprev_results",
                "iprev results of the client address",
                &iprev,
            ),
        ] {
            r.register(name, help, family.clone());
        }
        let tempfails = Family::default();
        r.register(
            "authgate_tempfails",
            "Messages tempfailed, by cause: dns (a DNS temporary error with tempfail policy), spool, next_hop (unavailable or lost the message), internal (pipeline failure)",
            tempfails.clone(),
        );
        let [dns_queries, dns_cache_hits, dns_timeouts] = [(); 3].map(|()| Counter::default());
        for (name, help, c) in [
            (
                "authgate_dns_queries",
                "DNS lookups made for messages (cached or not)",
                &dns_queries,
            ),
            (
                "authgate_dns_cache_hits",
                "DNS lookups answered by the cache or shared with an identical query",
                &dns_cache_hits,
            ),
            (
                "authgate_dns_timeouts",
                "DNS lookups that timed out",
                &dns_timeouts,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        let latency = Histogram::new(LATENCY_BUCKETS);
        r.register(
            "authgate_reply_latency_seconds",
            "From the end of a message's data to its reply (the decision, and in the proxy the next hop's reply)",
            latency.clone(),
        );
        let sessions = Family::default();
        r.register(
            "authgate_sessions_open",
            "SMTP/LMTP (front=proxy) and milter (front=milter) sessions open",
            sessions.clone(),
        );
        let reloads = Family::default();
        r.register(
            "authgate_config_reloads",
            "Configuration reloads (SIGHUP), by result (ok, failed)",
            reloads.clone(),
        );
        let report_rows = Arc::new(ReportRows::default());
        r.register_collector(Box::new(Arc::clone(&report_rows)));
        Metrics {
            registry: r,
            messages,
            dkim,
            spf,
            dmarc,
            iprev,
            tempfails,
            dns_queries,
            dns_cache_hits,
            dns_timeouts,
            latency,
            sessions,
            reloads,
            report_rows,
        }
    }

    /// Counts one finished message.
    pub fn message(&self, fate: &Fate) {
        let labels = [
            ("front", fate.front.as_str()),
            ("disposition", fate.disposition.as_str()),
        ];
        self.messages.get_or_create(&labels).inc();
        if let Some(cause) = fate.tempfail_cause() {
            self.tempfail(cause);
        }
        if let Some(v) = fate.verdict() {
            let count = |f: &Family<[Label; 1], Counter>, result: &'static str| {
                f.get_or_create(&[("result", result)]).inc();
            };
            for d in &v.dkim {
                count(&self.dkim, d.result.as_str());
            }
            if let Some(o) = &v.spf_mailfrom {
                count(&self.spf, o.result.as_str());
            }
            if let Some(o) = &v.dmarc {
                count(&self.dmarc, o.result.as_str());
            }
            if let Some(o) = &v.iprev {
                count(&self.iprev, o.result.as_str());
            }
        }
        self.dns_queries.inc_by(fate.dns.queries);
        self.dns_cache_hits.inc_by(fate.dns.cache_hits);
        self.dns_timeouts.inc_by(fate.dns.timeouts);
        if let Some(end) = fate.end_of_data {
            self.latency.observe(end.elapsed().as_secs_f64());
        }
    }

    /// One tempfail for `cause`: a message's, or a whole session's refused
    /// before its first message ([`crate::outcome::session_refused`]).
    pub fn tempfail(&self, cause: TempfailCause) {
        self.tempfails
            .get_or_create(&[("cause", cause.as_str())])
            .inc();
    }

    /// One session of `front` open until the guard is dropped.
    pub fn session(&self, front: Front) -> SessionGuard {
        let gauge = self
            .sessions
            .get_or_create_owned(&[("front", front.as_str())]);
        gauge.inc();
        SessionGuard(gauge)
    }

    /// One configuration reload, applied or refused.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&[("result", result)]).inc();
    }

    /// The report writer now running (`None`: reports are off). Rows the
    /// previous writer counted stay in the totals.
    pub fn report_writer(&self, counters: Option<Arc<Counters>>) {
        self.report_rows.set(counters);
    }

    /// The exposition: OpenMetrics when `openmetrics`, else the Prometheus
    /// text format 0.0.4.
    pub fn encode(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8192);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        }
        Ok(out)
    }
}

/// Keeps a session counted in `authgate_sessions_open` while it lives.
#[derive(Debug)]
pub struct SessionGuard(Gauge);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process's metrics (counted whether or not the endpoint is on: a
/// handful of atomics; the per-message observer is registered only with
/// the endpoint).
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The per-message observer over [`global`] (registered by [`Endpoint::start`]).
struct Messages;

impl Observer for Messages {
    fn finished(&self, fate: &Fate) {
        global().message(fate);
    }

    fn session_refused(&self, cause: TempfailCause) {
        global().tempfail(cause);
    }
}

/// `authgate_report_rows_total{result}`: read from the report writer's
/// counters at scrape time.
#[derive(Debug, Default)]
struct ReportRows(Mutex<Rows>);

#[derive(Debug, Default)]
struct Rows {
    current: Option<Arc<Counters>>,
    /// What earlier writers (before a reload restarted it) counted.
    stored: u64,
    dropped: u64,
}

fn totals(c: &Counters) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let dropped = c.dropped_full.load(Relaxed) + c.dropped_store.load(Relaxed);
    (c.stored.load(Relaxed), dropped)
}

impl ReportRows {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, counters: Option<Arc<Counters>>) {
        let mut rows = self.lock();
        if let (Some(a), Some(b)) = (&rows.current, &counters)
            && Arc::ptr_eq(a, b)
        {
            return;
        }
        if let Some(old) = rows.current.take() {
            let (stored, dropped) = totals(&old);
            rows.stored += stored;
            rows.dropped += dropped;
        }
        rows.current = counters;
    }

    fn read(&self) -> (u64, u64) {
        let rows = self.lock();
        let (stored, dropped) = rows.current.as_deref().map_or((0, 0), totals);
        (rows.stored + stored, rows.dropped + dropped)
    }
}

impl Collector for ReportRows {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (stored, dropped) = self.read();
        let mut family = encoder.encode_descriptor(
            "authgate_report_rows",
            "DMARC report rows by result: stored, or dropped (writer queue full or store failing)",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (result, n) in [("stored", stored), ("dropped", dropped)] {
            let labels = [("result", result)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_every_name_is_prefixed_and_both_formats_encode() {
        let m = Metrics::new();
        m.reload(true);
        m.reload(false);
        let _s = m.session(Front::Milter);
        for openmetrics in [true, false] {
            let text = m.encode(openmetrics).unwrap();
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                assert!(line.starts_with("authgate_"), "{line}");
            }
            assert!(text.contains("authgate_config_reloads_total{result=\"failed\"} 1"));
            assert!(text.contains("authgate_sessions_open{front=\"milter\"} 1"));
            assert!(text.contains("authgate_report_rows_total{result=\"dropped\"} 0"));
            assert_eq!(text.ends_with("# EOF\n"), openmetrics);
        }
    }

    #[test]
    fn metrics_report_rows_survive_a_writer_restart() {
        use std::sync::atomic::Ordering::Relaxed;
        let m = Metrics::new();
        let first = Arc::new(Counters::default());
        first.stored.store(5, Relaxed);
        first.dropped_full.store(1, Relaxed);
        m.report_writer(Some(Arc::clone(&first)));
        m.report_writer(Some(Arc::clone(&first)));
        assert_eq!(m.report_rows.read(), (5, 1));
        let second = Arc::new(Counters::default());
        second.stored.store(2, Relaxed);
        second.dropped_store.store(3, Relaxed);
        m.report_writer(Some(second));
        assert_eq!(m.report_rows.read(), (7, 4));
        m.report_writer(None);
        assert_eq!(m.report_rows.read(), (7, 4));
    }

    #[test]
    fn metrics_session_guard_counts_while_it_lives() {
        let m = Metrics::new();
        let a = m.session(Front::Proxy);
        let b = m.session(Front::Proxy);
        drop(a);
        let text = m.encode(false).unwrap();
        assert!(
            text.contains("authgate_sessions_open{front=\"proxy\"} 1"),
            "{text}"
        );
        drop(b);
    }

    /// Every `expr` in the dashboard JSON, recursively.
    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        serde_json::Value::String(e) if k == "expr" => out.push(e.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn metrics_grafana_dashboard_parses_and_uses_only_exposed_names() {
        let json = include_str!("../../contrib/grafana/authgate.json");
        let dash: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut all = Vec::new();
        exprs(&dash, &mut all);
        assert!(all.len() >= 10, "{all:?}");
        // Families and their type, from the exposition itself.
        // Every family with a sample (empty families are not written).
        let m = Metrics::new();
        m.messages
            .get_or_create(&[("front", "proxy"), ("disposition", "accept")])
            .inc();
        for f in [&m.dkim, &m.spf, &m.dmarc, &m.iprev, &m.reloads] {
            f.get_or_create(&[("result", "pass")]).inc();
        }
        m.tempfails.get_or_create(&[("cause", "dns")]).inc();
        let _open = m.session(Front::Proxy);
        let text = m.encode(true).unwrap();
        let families: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let exposed = |name: &str| {
            families.iter().any(|(f, t)| {
                let suffixes: &[&str] = match t.as_str() {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                suffixes
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.as_str()))
            })
        };
        let mut used = std::collections::BTreeSet::new();
        for e in &all {
            let mut rest = e.as_str();
            while let Some(i) = rest.find("authgate_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(exposed(&name), "{name} (in {e}) is not exposed:\n{text}");
                rest = &rest[i + name.len()..];
                used.insert(name);
            }
        }
        // Every family is on the dashboard.
        for (f, _) in &families {
            assert!(used.iter().any(|u| u.starts_with(f.as_str())), "{f} unused");
        }
    }
}

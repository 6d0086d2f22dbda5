//! Reporting inside `serve` and `milter`: the writer registered for every
//! finished message, restarted when a reload changes `[report]`, and the
//! daily run that sends yesterday's aggregate reports.
//!
//! Owns: the lifetime of the writer and the daily task. Must not: block a
//! front.

use std::sync::Arc;
use std::time::Duration;

use super::writer::Recorder;
use crate::config::{Config, ReportSettings};
use crate::outcome;

/// The name the writer is registered under ([`outcome::observe`]).
const OBSERVER: &str = "report";

/// How long the writer may take to store what is queued at stop.
const FLUSH: Duration = Duration::from_secs(5);

/// Reporting as configured now.
#[derive(Debug, Default)]
pub struct Reporting {
    settings: Option<ReportSettings>,
    recorder: Option<Arc<Recorder>>,
    daily: Option<Daily>,
}

impl Reporting {
    /// Starts what `config` asks for (nothing unless `report.enabled`).
    pub fn start(config: &Config) -> Reporting {
        let mut r = Reporting::default();
        r.apply(config);
        r
    }

    /// A reload: restarts the writer when `[report]` changed, and the daily
    /// run whenever the configuration did (its keys, DNS, submission).
    pub fn apply(&mut self, config: &Config) {
        let settings = &config.report;
        if let Some(d) = self.daily.take() {
            d.stop();
        }
        if settings.enabled {
            self.daily = Daily::start(config);
        }
        if self.settings.as_ref() == Some(settings) {
            return;
        }
        self.stop_writer();
        self.settings = Some(settings.clone());
        if !settings.enabled {
            return;
        }
        match Recorder::start(
            &settings.store,
            settings.queue,
            settings.failure_reports,
            settings.dkim_failure_reports,
        ) {
            Ok(rec) => {
                outcome::observe(OBSERVER, Arc::clone(&rec) as Arc<dyn outcome::Observer>);
                tracing::info!(store = %super::db::redact(&settings.store), "DMARC report rows recorded");
                self.recorder = Some(rec);
            }
            Err(e) => tracing::error!("cannot start the report writer: {e}"),
        }
    }

    /// The writer, when recording.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref()
    }

    /// Stops recording and the daily run; what is queued is written first
    /// (bounded).
    pub fn stop(&mut self) {
        if let Some(d) = self.daily.take() {
            d.stop();
        }
        self.stop_writer();
    }

    fn stop_writer(&mut self) {
        if let Some(rec) = self.recorder.take() {
            outcome::unobserve(OBSERVER);
            rec.stop(FLUSH);
        }
        self.settings = None;
    }
}

/// The daily run: a thread that sends every day's reports after UTC
/// midnight plus `send_delay_minutes`, catching up on days missed while
/// the daemon was down, and prunes what is older than `keep_days`.
#[derive(Debug)]
struct Daily {
    stop: std::sync::mpsc::Sender<()>,
}

impl Daily {
    fn start(config: &Config) -> Option<Daily> {
        let (tx, rx) = std::sync::mpsc::channel();
        let config = config.clone();
        let spawned = std::thread::Builder::new()
            .name("report-daily".into())
            .spawn(move || daily(&config, &rx));
        match spawned {
            Ok(_) => Some(Daily { stop: tx }),
            Err(e) => {
                tracing::error!("cannot start the daily report run: {e}");
                None
            }
        }
    }

    /// Tells the thread to stop; a run in progress finishes its current
    /// report (each is bounded by the store's and SMTP's timeouts).
    fn stop(self) {
        let _ = self.stop.send(());
    }
}

fn daily(config: &Config, stop: &std::sync::mpsc::Receiver<()>) {
    use super::DAY;
    let delay = i64::from(config.report.send_delay_minutes) * 60;
    // A first look a minute after start: what was missed while down; then
    // every minute the failure-report outbox, and once a day the aggregates.
    let mut next_daily = 0i64;
    let mut prepared: Option<Prepared> = None;
    loop {
        match stop.recv_timeout(Duration::from_secs(60)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = i64::try_from(outcome::unix_now()).unwrap_or(i64::MAX);
        if config.report.failure_reports || config.report.dkim_failure_reports {
            // Keys, resolver and runtime once per configuration (a reload
            // restarts this thread), not once a minute.
            if prepared.is_none() {
                prepared = prepare(config)
                    .map_err(|e| tracing::warn!("DMARC failure reports: {e}"))
                    .ok();
            }
            if let Some((sender, rt)) = &prepared
                && let Err(e) = flush_with(config, sender, rt, now)
            {
                tracing::warn!("DMARC failure reports: {e}");
            }
        }
        if now >= next_daily {
            if let Err(e) = catch_up(config, now, delay) {
                tracing::warn!("daily DMARC report run: {e}");
            }
            // Next: the coming midnight plus the delay.
            next_daily = (now - delay).div_euclid(DAY) * DAY + DAY + delay;
        }
    }
}

/// Sends what the failure-report outbox holds.
pub fn flush_failures(config: &Config, now: i64) -> Result<super::outbox::Flushed, String> {
    let (sender, rt) = prepare(config)?;
    flush_with(config, &sender, &rt, now)
}

/// What sending needs, built once per configuration: the resolver, the
/// sender (its signing keys loaded) and a runtime for its DNS and SMTP.
type Prepared = (
    super::send::Sender<crate::dns::SystemResolver>,
    tokio::runtime::Runtime,
);

fn prepare(config: &Config) -> Result<Prepared, String> {
    let resolver = Arc::new(crate::dns::build(&config.dns).map_err(|e| e.to_string())?);
    let sender = super::send::Sender::new(config, resolver).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    Ok((sender, rt))
}

fn flush_with(
    config: &Config,
    sender: &super::send::Sender<crate::dns::SystemResolver>,
    rt: &tokio::runtime::Runtime,
    now: i64,
) -> Result<super::outbox::Flushed, String> {
    let mut db = super::Db::open(&config.report.store).map_err(|e| e.to_string())?;
    super::outbox::flush(
        sender,
        rt,
        &mut db,
        config.report.failure_rate_per_hour,
        config.report.failure_redact,
        now,
    )
    .map_err(|e| e.to_string())
}

/// Sends every due day before `(now - delay)`'s day and prunes.
pub fn catch_up(config: &Config, now: i64, delay: i64) -> Result<(), String> {
    use super::DAY;
    use super::send::{Run, Sender, due_days, is_done, mark_done};
    let keep = i64::from(config.report.keep_days) * DAY;
    let mut db = super::Db::open(&config.report.store).map_err(|e| e.to_string())?;
    let cutoff = (now - delay).div_euclid(DAY) * DAY;
    let days = due_days(&mut db, now - keep, cutoff + 1).map_err(|e| e.to_string())?;
    let days: Vec<i64> = days.into_iter().filter(|d| *d < cutoff).collect();
    if !days.is_empty() {
        let resolver = Arc::new(crate::dns::build(&config.dns).map_err(|e| e.to_string())?);
        let sender = Sender::new(config, resolver).map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        for begin in days {
            let run = Run {
                begin,
                domain: None,
                dry_run: None,
                now,
            };
            for s in sender.day(&rt, &mut db, &run).map_err(|e| e.to_string())? {
                if is_done(&s) {
                    mark_done(&mut db, &s, begin, now).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let pruned = super::store::prune(&mut db, now - keep).map_err(|e| e.to_string())?;
    if pruned > 0 {
        tracing::info!(rows = pruned, "report rows older than keep_days pruned");
    }
    Ok(())
}

impl Drop for Reporting {
    fn drop(&mut self) {
        self.stop();
    }
}

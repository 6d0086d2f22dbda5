//! Reporting inside `serve` and `milter`: the writer registered for every
//! finished message, restarted when a reload changes `[report]`, and the
//! daily run that sends yesterday's aggregate reports.
//!
//! Owns: the lifetime of the writer and the daily task. Must not: block a
//! front.

use std::sync::Arc;
use std::time::Duration;

use super::writer::Recorder;
use crate::config::ReportSettings;
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
}

impl Reporting {
    /// Starts what `settings` asks for (nothing unless `enabled`).
    pub fn start(settings: &ReportSettings) -> Reporting {
        let mut r = Reporting::default();
        r.apply(settings);
        r
    }

    /// A reload: restarts the writer when `[report]` changed.
    pub fn apply(&mut self, settings: &ReportSettings) {
        if self.settings.as_ref() == Some(settings) {
            return;
        }
        self.stop();
        self.settings = Some(settings.clone());
        if !settings.enabled {
            return;
        }
        match Recorder::start(&settings.store, settings.queue) {
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

    /// Stops recording; what is queued is written first (bounded).
    pub fn stop(&mut self) {
        if let Some(rec) = self.recorder.take() {
            outcome::unobserve(OBSERVER);
            rec.stop(FLUSH);
        }
        self.settings = None;
    }
}

impl Drop for Reporting {
    fn drop(&mut self) {
        self.stop();
    }
}

//! Getting rows into the store without ever slowing mail.
//!
//! Owns: the daemons' writer (a bounded queue and one thread that owns the
//! store connection, batches rows into short transactions, reconnects by
//! itself with backoff, and notes what it could not store so a report for
//! that period says so), and the one-shot write of `pipe`. Must not: block
//! the front (a full queue drops the row and counts it) or decide what is
//! reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::db::Db;
use super::outbox::{Pending, enqueue, pending_of};
use super::row::Row;
use super::store;
use crate::outcome::{Fate, Observer};

/// Rows written per transaction, at most.
const BATCH: usize = 512;
/// How long rows gather after the first before they are written: a
/// transaction (and a thread wake-up) per row cost the milter 40 % more CPU
/// at 280 messages/s; gathered, rows cost a few µs each.
const GATHER: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Counts the writer keeps (for logs, `report stats` and metrics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows stored.
    pub stored: AtomicU64,
    /// Rows dropped because the queue was full.
    pub dropped_full: AtomicU64,
    /// Rows dropped because the store failed.
    pub dropped_store: AtomicU64,
    /// The writer is asked to stop.
    pub stopping: std::sync::atomic::AtomicBool,
}

/// What the writer thread is told.
enum Msg {
    Item(Box<Item>),
    Stop,
}

/// What the writer stores.
#[derive(Debug)]
enum Item {
    /// An aggregate report row.
    Row(Row),
    /// A failure report to send (the outbox).
    Failure(Pending),
}

/// The daemons' recorder: [`Observer`] for every finished message.
pub struct Recorder {
    tx: SyncSender<Msg>,
    failure_reports: bool,
    dkim_reports: bool,
    counters: Arc<Counters>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("counters", &self.counters)
            .finish()
    }
}

impl Recorder {
    /// Starts the writer thread for `store` with room for `queue` rows.
    /// The store is opened by the thread: an unreachable store at start is
    /// the same as one lost later (rows counted, retried).
    /// With `failure_reports`, failing messages that ask for one also queue
    /// a failure report in the store's outbox.
    pub fn start(
        store: &str,
        queue: usize,
        failure_reports: bool,
        dkim_reports: bool,
    ) -> std::io::Result<Arc<Recorder>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let counters = Arc::new(Counters::default());
        let url = store.to_string();
        let c = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("report-writer".into())
            .spawn(move || run(&url, &rx, &c))?;
        Ok(Arc::new(Recorder {
            tx,
            failure_reports,
            dkim_reports,
            counters,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Queues one row; never waits.
    pub fn record(&self, row: Row) {
        self.queue(Item::Row(row));
    }

    fn queue(&self, item: Item) {
        match self.tx.try_send(Msg::Item(Box::new(item))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n + 1,
                        "report store queue full: row dropped (mail is not slowed)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped_store.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters, shared (the metrics read them at scrape time).
    pub fn shared_counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Writes what is queued and stops the thread (shutdown, reload),
    /// waiting at most `within`.
    pub fn stop(&self, within: Duration) {
        self.counters.stopping.store(true, Ordering::Relaxed);
        // Only a wake-up: the flag is what the writer obeys (a full queue
        // means it is busy and will see the flag anyway).
        let _ = self.tx.try_send(Msg::Stop);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let deadline = std::time::Instant::now() + within;
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Observer for Recorder {
    fn finished(&self, fate: &Fate) {
        if let Some(row) = row_of(fate) {
            self.record(row);
        }
        if self.failure_reports || self.dkim_reports {
            for p in pending_of(fate, self.dkim_reports) {
                if p.ruf.is_empty() || self.failure_reports {
                    self.queue(Item::Failure(p));
                }
            }
        }
    }
}

/// The row of a finished message, stamped with the message's clock.
pub fn row_of(fate: &Fate) -> Option<Row> {
    let at = fate.message.as_ref().map_or(0, |m| m.at);
    Row::from_fate(fate, i64::try_from(at).unwrap_or(i64::MAX))
}

/// The writer thread: connect, drain, batch, reconnect. While the store
/// is away the queue itself is the buffer: rows wait there (and a failed
/// batch waits here) until the store is back, so a short outage loses
/// nothing; only rows the full queue refuses are dropped, and they are
/// noted in the store once it is back.
fn run(url: &str, rx: &Receiver<Msg>, counters: &Counters) {
    let mut db: Option<Db> = None;
    let mut backoff = Duration::from_millis(250);
    let mut next_try = std::time::Instant::now();
    // Rows not stored since the last note: (first time, last time, count, why).
    let mut lost: Option<(i64, i64, u64, String)> = None;
    let mut noted_full = 0u64;
    let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
    let mut stopping = false;
    let mut failing = false;
    loop {
        stopping |= counters.stopping.load(Ordering::Relaxed);
        // Rows the queue refused are noted like rows the store refused.
        let full = counters.dropped_full.load(Ordering::Relaxed);
        if full > noted_full {
            let now = i64::try_from(crate::outcome::unix_now()).unwrap_or(i64::MAX);
            add_lost(&mut lost, now, now, full - noted_full, "report queue full");
            noted_full = full;
        }
        if db.is_none() {
            if std::time::Instant::now() >= next_try {
                match Db::open(url) {
                    Ok(d) => {
                        if failing {
                            tracing::info!(store = %d.describe(), "report store reachable again");
                            failing = false;
                        }
                        db = Some(d);
                        backoff = Duration::from_millis(250);
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!("report store unavailable, rows wait in the queue: {e}");
                        }
                        failing = true;
                        next_try = std::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            if db.is_none() {
                // The queue is left alone: it is the buffer.
                if stopping || counters.stopping.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let Some(d) = db.as_mut() else { continue };
        if let Some((from, to, n, why)) = &lost {
            if let Err(e) = store::note_dropped(d, *from, *to, *n, why) {
                tracing::warn!("report store failed, reconnecting: {e}");
                failing = true;
                db = None;
                continue;
            }
            tracing::warn!(rows = n, reason = %why, "rows that never reached the report store noted");
            lost = None;
        }
        if batch.is_empty() && !stopping {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(Msg::Item(r)) => {
                    batch.push(*r);
                    // Rows are not urgent: let the next ones gather in the
                    // queue (no wake-up per row, one transaction for all).
                    if !counters.stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(GATHER);
                    }
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(Msg::Item(r)) => batch.push(*r),
                Ok(Msg::Stop) => stopping = true,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            match write_items(d, &batch) {
                Ok(()) => {
                    counters
                        .stored
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                }
                Err(e) => {
                    // The batch is kept and written after reconnecting.
                    tracing::warn!("report store failed, reconnecting: {e}");
                    failing = true;
                    db = None;
                    continue;
                }
            }
        }
        if stopping && batch.is_empty() && rx_is_empty(rx, &mut batch) {
            break;
        }
    }
    // Stopping with the store away: what is left is lost; say how much.
    let mut left = batch.len() as u64;
    while let Ok(m) = rx.try_recv() {
        if let Msg::Item(_) = m {
            left += 1;
        }
    }
    if left > 0 {
        counters.dropped_store.fetch_add(left, Ordering::Relaxed);
    }
    let noted = lost.map_or(0, |(_, _, n, _)| n);
    if left + noted > 0 {
        tracing::warn!(
            rows = left + noted,
            "rows that never reached the report store (store unavailable at shutdown)"
        );
    }
}

/// Stores a batch in one transaction.
fn write_items(db: &mut Db, items: &[Item]) -> Result<(), super::DbError> {
    let rows: Vec<Row> = items
        .iter()
        .filter_map(|i| match i {
            Item::Row(r) => Some(r.clone()),
            Item::Failure(_) => None,
        })
        .collect();
    db.transaction(|db| {
        store::insert_rows_in(db, &rows)?;
        for i in items {
            if let Item::Failure(p) = i {
                enqueue(db, p)?;
            }
        }
        Ok(())
    })
}

/// Moves what is queued into `batch`; true when nothing was.
fn rx_is_empty(rx: &Receiver<Msg>, batch: &mut Vec<Item>) -> bool {
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(Msg::Item(r)) => batch.push(*r),
            Ok(Msg::Stop) => {}
            Err(_) => break,
        }
    }
    batch.is_empty()
}

fn add_lost(lost: &mut Option<(i64, i64, u64, String)>, from: i64, to: i64, n: u64, why: &str) {
    match lost {
        Some((f, t, c, _)) => {
            *f = (*f).min(from);
            *t = (*t).max(to);
            *c = c.saturating_add(n);
        }
        None => *lost = Some((from, to, n, why.to_string())),
    }
}

/// `pipe`'s one-shot write: one short transaction; a failing store is
/// logged and never changes what happens to the message.
pub fn record_once(store_url: &str, failure_reports: bool, dkim_reports: bool, fate: &Fate) {
    let mut items: Vec<Item> = row_of(fate).map(Item::Row).into_iter().collect();
    if failure_reports || dkim_reports {
        for p in pending_of(fate, dkim_reports) {
            if p.ruf.is_empty() || failure_reports {
                items.push(Item::Failure(p));
            }
        }
    }
    if items.is_empty() {
        return;
    }
    let result = Db::open(store_url).and_then(|mut db| write_items(&mut db, &items));
    if let Err(e) = result {
        tracing::warn!("report row dropped: {e}");
    }
}

/// `pipe`'s observer: [`record_once`] per message.
#[derive(Debug)]
pub struct OneShot {
    /// The store URL.
    pub store: String,
    /// Queue DMARC failure reports too.
    pub failure_reports: bool,
    /// Queue RFC 6651 DKIM failure reports too.
    pub dkim_reports: bool,
}

impl Observer for OneShot {
    fn finished(&self, fate: &Fate) {
        record_once(&self.store, self.failure_reports, self.dkim_reports, fate);
    }
}

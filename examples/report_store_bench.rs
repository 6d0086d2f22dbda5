//! How fast rows reach the report store (issue 17's "store write path").
//!
//!     cargo run --release --example report_store_bench -- STORE_URL [ROWS]
//!
//! Prints rows/s for: the daemons' writer (queue + one thread, batches of
//! 512) fed as fast as possible; batched transactions straight through the
//! store layer; one-row transactions, as each `pipe` process writes; and,
//! for SQLite, the bound beside them: the same rows inserted with bare
//! rusqlite in one prepared statement and one transaction.

// A measuring tool run by hand: a failure is a panic with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use authgate::report::row::{DkimRow, Row};
use authgate::report::writer::Recorder;
use authgate::report::{Db, store};

fn row(i: i64) -> Row {
    Row {
        time: 1_796_558_400 + i,
        source_ip: format!("192.0.2.{}", i % 250),
        env_from: "example.org".into(),
        env_to: "example.com".into(),
        header_from: "example.org".into(),
        policy_domain: "example.org".into(),
        p: "reject".into(),
        adkim: "r".into(),
        aspf: "r".into(),
        psd: "u".into(),
        discovery: "treewalk".into(),
        dmarc: "pass".into(),
        dkim_aligned: true,
        spf_aligned: true,
        disposition: "none".into(),
        spf_domain: "example.org".into(),
        spf_scope: "mfrom".into(),
        spf_result: "pass".into(),
        dkim: vec![DkimRow {
            domain: "example.org".into(),
            selector: "s2026".into(),
            result: "pass".into(),
            human: String::new(),
        }],
        ..Row::default()
    }
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>9.0} rows/s  ({:.1} µs/row)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64() * 1e6 / n as f64
    )
}

fn count(url: &str) -> i64 {
    let mut db = Db::open(url).expect("store");
    db.query("SELECT COUNT(*) FROM agg_rows", &[])
        .expect("count")[0][0]
        .int()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: report_store_bench STORE_URL [ROWS]");
    let n: usize = args.next().map_or(100_000, |a| a.parse().expect("ROWS"));
    let rows: Vec<Row> = (0..n as i64).map(row).collect();
    let mut db = Db::open(&url).expect("store");
    db.execute("DELETE FROM agg_rows", &[]).expect("clean");
    println!("store {} , {n} rows per case", db.describe());

    // The daemons' writer, fed flat out.
    let rec = Recorder::start(&url, 10_000, false, false).expect("writer");
    let t = Instant::now();
    for r in &rows {
        rec.record(r.clone());
    }
    rec.stop(Duration::from_secs(600));
    let d = t.elapsed();
    let c = rec.counters();
    let stored = c.stored.load(std::sync::atomic::Ordering::Relaxed) as usize;
    let dropped = c.dropped_full.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "writer (queue 10000, batches of 512): {}   stored {stored}, dropped (queue full) {dropped}",
        rate(stored.max(1), d)
    );
    assert_eq!(count(&url) as usize, stored);

    // Straight through the store layer, 512 rows per transaction.
    let mut db = Db::open(&url).expect("store");
    let t = Instant::now();
    for chunk in rows.chunks(512) {
        store::insert_rows(&mut db, chunk).expect("insert");
    }
    println!(
        "batched transactions of 512:        {}",
        rate(n, t.elapsed())
    );

    // One row per transaction and connection, as each pipe process does.
    let m = (n / 20).max(100);
    let t = Instant::now();
    for r in rows.iter().take(m) {
        let mut db = Db::open(&url).expect("store");
        store::insert_rows(&mut db, std::slice::from_ref(r)).expect("insert");
    }
    println!(
        "one-shot (open + 1-row transaction): {}   ({m} rows)",
        rate(m, t.elapsed())
    );

    if let Some(path) = url.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(path).expect("sqlite");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("sync");
        let t = Instant::now();
        let tx = conn.unchecked_transaction().expect("tx");
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO agg_rows VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,\
                     ?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25)",
                )
                .expect("prepare");
            for r in &rows {
                st.execute(rusqlite::params![
                    r.time,
                    r.source_ip,
                    r.env_from,
                    r.env_to,
                    r.header_from,
                    r.policy_domain,
                    r.p,
                    r.sp,
                    r.np,
                    r.adkim,
                    r.aspf,
                    r.testing,
                    r.psd,
                    r.discovery,
                    r.dmarc,
                    r.dkim_aligned,
                    r.spf_aligned,
                    r.disposition,
                    r.override_type,
                    r.override_comment,
                    r.spf_domain,
                    r.spf_scope,
                    r.spf_result,
                    "[{\"domain\":\"example.org\",\"selector\":\"s2026\",\"result\":\"pass\"}]",
                    r.is_report
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
        println!(
            "bound: bare rusqlite, 1 transaction: {}",
            rate(n, t.elapsed())
        );
    }
}

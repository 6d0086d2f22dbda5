//! What the report store holds for aggregate reports: the rows, the rows
//! that were dropped, and which report was sent where.
//!
//! Owns: the SQL over `agg_rows`, `agg_dropped` and `agg_sent`, retention.
//! Must not: decide what a report says (that is `aggregate`) or send it.

use super::db::{Db, DbError, Value};
use super::row::{DkimRow, Row};

const ROW_COLUMNS: &str = "time, source_ip, env_from, env_to, header_from, policy_domain, p, sp, np, \
     adkim, aspf, testing, psd, discovery, dmarc, dkim_aligned, spf_aligned, disposition, \
     override_type, override_comment, spf_domain, spf_scope, spf_result, dkim, is_report";

/// Appends rows in one transaction.
pub fn insert_rows(db: &mut Db, rows: &[Row]) -> Result<(), DbError> {
    db.transaction(|db| insert_rows_in(db, rows))
}

/// Appends rows inside the caller's transaction.
pub fn insert_rows_in(db: &mut Db, rows: &[Row]) -> Result<(), DbError> {
    // Up to ROWS_PER_INSERT rows per statement: one round trip to
    // PostgreSQL instead of one per row (1600 parameters, far below both
    // backends' limits).
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let groups: Vec<String> = (0..chunk.len())
            .map(|i| {
                let first = i * COLUMNS + 1;
                let params: Vec<String> =
                    (first..first + COLUMNS).map(|n| format!("${n}")).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO agg_rows ({ROW_COLUMNS}) VALUES {}",
            groups.join(", ")
        );
        let values: Vec<Value> = chunk.iter().flat_map(row_values).collect();
        db.execute(&sql, &values)?;
    }
    Ok(())
}

/// Columns of `agg_rows`.
const COLUMNS: usize = 25;
/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 64;

fn row_values(r: &Row) -> Vec<Value> {
    vec![
        r.time.into(),
        (&r.source_ip).into(),
        (&r.env_from).into(),
        (&r.env_to).into(),
        (&r.header_from).into(),
        (&r.policy_domain).into(),
        (&r.p).into(),
        (&r.sp).into(),
        (&r.np).into(),
        (&r.adkim).into(),
        (&r.aspf).into(),
        r.testing.into(),
        (&r.psd).into(),
        (&r.discovery).into(),
        (&r.dmarc).into(),
        r.dkim_aligned.into(),
        r.spf_aligned.into(),
        (&r.disposition).into(),
        (&r.override_type).into(),
        (&r.override_comment).into(),
        (&r.spf_domain).into(),
        (&r.spf_scope).into(),
        (&r.spf_result).into(),
        serde_json::to_string(&r.dkim)
            .unwrap_or_else(|_| "[]".into())
            .into(),
        r.is_report.into(),
    ]
}

fn row_from(v: &[Value]) -> Row {
    let t = |i: usize| v.get(i).map(Value::text).unwrap_or_default();
    let n = |i: usize| v.get(i).map_or(0, Value::int);
    Row {
        time: n(0),
        source_ip: t(1),
        env_from: t(2),
        env_to: t(3),
        header_from: t(4),
        policy_domain: t(5),
        p: t(6),
        sp: t(7),
        np: t(8),
        adkim: t(9),
        aspf: t(10),
        testing: n(11) != 0,
        psd: t(12),
        discovery: t(13),
        dmarc: t(14),
        dkim_aligned: n(15) != 0,
        spf_aligned: n(16) != 0,
        disposition: t(17),
        override_type: t(18),
        override_comment: t(19),
        spf_domain: t(20),
        spf_scope: t(21),
        spf_result: t(22),
        dkim: serde_json::from_str::<Vec<DkimRow>>(&t(23)).unwrap_or_default(),
        is_report: n(24) != 0,
    }
}

/// The rows of one policy domain with `begin <= time < end`, oldest first.
pub fn rows_for(db: &mut Db, domain: &str, begin: i64, end: i64) -> Result<Vec<Row>, DbError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM agg_rows WHERE policy_domain = $1 AND time >= $2 AND time < $3 \
         ORDER BY time"
    );
    Ok(db
        .query(&sql, &[domain.into(), begin.into(), end.into()])?
        .iter()
        .map(|r| row_from(r))
        .collect())
}

/// The policy domains with rows in `[begin, end)`.
pub fn domains_in(db: &mut Db, begin: i64, end: i64) -> Result<Vec<String>, DbError> {
    Ok(db
        .query(
            "SELECT DISTINCT policy_domain FROM agg_rows WHERE time >= $1 AND time < $2 \
             ORDER BY policy_domain",
            &[begin.into(), end.into()],
        )?
        .iter()
        .filter_map(|r| r.first().map(Value::text))
        .collect())
}

/// Notes rows that never reached the store.
pub fn note_dropped(
    db: &mut Db,
    from: i64,
    to: i64,
    count: u64,
    reason: &str,
) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO agg_dropped (time_from, time_to, count, reason) VALUES ($1, $2, $3, $4)",
        &[
            from.into(),
            to.into(),
            i64::try_from(count).unwrap_or(i64::MAX).into(),
            reason.into(),
        ],
    )?;
    Ok(())
}

/// Rows dropped in periods overlapping `[begin, end)`, with the reasons.
pub fn dropped_in(db: &mut Db, begin: i64, end: i64) -> Result<(u64, Vec<String>), DbError> {
    let rows = db.query(
        "SELECT count, reason FROM agg_dropped WHERE time_to >= $1 AND time_from < $2",
        &[begin.into(), end.into()],
    )?;
    let mut total = 0u64;
    let mut reasons: Vec<String> = Vec::new();
    for r in &rows {
        total = total.saturating_add(u64::try_from(r[0].int()).unwrap_or(0));
        let why = r[1].text();
        if !reasons.contains(&why) {
            reasons.push(why);
        }
    }
    Ok((total, reasons))
}

/// Deletes what is older than `before` (rows, drop notes, send states,
/// failure-report times); returns the rows deleted.
pub fn prune(db: &mut Db, before: i64) -> Result<u64, DbError> {
    db.transaction(|db| {
        let n = db.execute("DELETE FROM agg_rows WHERE time < $1", &[before.into()])?;
        db.execute(
            "DELETE FROM agg_dropped WHERE time_to < $1",
            &[before.into()],
        )?;
        db.execute(
            "DELETE FROM agg_sent WHERE period_end < $1",
            &[before.into()],
        )?;
        db.execute("DELETE FROM fail_sent WHERE time < $1", &[before.into()])?;
        db.execute("DELETE FROM fail_queue WHERE time < $1", &[before.into()])?;
        db.execute(
            "DELETE FROM rcv_records WHERE (reporter, report_id) IN \
             (SELECT reporter, report_id FROM rcv_reports WHERE end_time < $1)",
            &[before.into()],
        )?;
        db.execute(
            "DELETE FROM rcv_reports WHERE end_time < $1",
            &[before.into()],
        )?;
        Ok(n)
    })
}

/// What `report stats` prints: rows per day and policy domain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// The store, without a password.
    pub store: String,
    /// Rows stored.
    pub rows: i64,
    /// Oldest and newest row times.
    pub oldest: i64,
    /// Newest row time.
    pub newest: i64,
    /// Rows dropped (never stored), all time kept.
    pub dropped: i64,
    /// Policy domains with rows.
    pub domains: Vec<(String, i64)>,
    /// Aggregate reports sent, skipped, planned.
    pub reports: Vec<(String, i64)>,
    /// Reports received through `report ingest`.
    pub received: i64,
}

/// Counts for `report stats`.
pub fn stats(db: &mut Db) -> Result<Stats, DbError> {
    let one = |db: &mut Db, sql: &str| -> Result<Vec<Value>, DbError> {
        Ok(db.query(sql, &[])?.into_iter().next().unwrap_or_default())
    };
    let r = one(
        db,
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(MIN(time), 0) AS BIGINT), \
         CAST(COALESCE(MAX(time), 0) AS BIGINT) FROM agg_rows",
    )?;
    let d = one(
        db,
        "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM agg_dropped",
    )?;
    let domains = db
        .query(
            "SELECT policy_domain, CAST(COUNT(*) AS BIGINT) FROM agg_rows GROUP BY policy_domain \
             ORDER BY policy_domain",
            &[],
        )?
        .iter()
        .map(|r| (r[0].text(), r[1].int()))
        .collect();
    let reports = db
        .query(
            "SELECT state, CAST(COUNT(*) AS BIGINT) FROM agg_sent GROUP BY state ORDER BY state",
            &[],
        )?
        .iter()
        .map(|r| (r[0].text(), r[1].int()))
        .collect();
    let received = one(db, "SELECT CAST(COUNT(*) AS BIGINT) FROM rcv_reports")?;
    let at = |v: &[Value], i: usize| v.get(i).map_or(0, Value::int);
    Ok(Stats {
        store: db.describe(),
        rows: at(&r, 0),
        oldest: at(&r, 1),
        newest: at(&r, 2),
        dropped: at(&d, 0),
        domains,
        reports,
        received: at(&received, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(time: i64, domain: &str, ip: &str) -> Row {
        Row {
            time,
            source_ip: ip.into(),
            env_from: domain.into(),
            header_from: domain.into(),
            policy_domain: domain.into(),
            p: "reject".into(),
            adkim: "r".into(),
            aspf: "r".into(),
            psd: "u".into(),
            discovery: "treewalk".into(),
            dmarc: "pass".into(),
            dkim_aligned: true,
            disposition: "none".into(),
            spf_domain: domain.into(),
            spf_scope: "mfrom".into(),
            spf_result: "pass".into(),
            dkim: vec![DkimRow {
                domain: domain.into(),
                selector: "s1".into(),
                result: "pass".into(),
                human: String::new(),
            }],
            ..Row::default()
        }
    }

    #[test]
    fn rows_round_trip_per_domain_and_period_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&format!("sqlite:{}/r.db", dir.path().display())).unwrap();
        let rows = vec![
            sample(100, "a.example", "192.0.2.1"),
            sample(200, "b.example", "192.0.2.2"),
            sample(300, "a.example", "2001:db8::1"),
        ];
        insert_rows(&mut db, &rows).unwrap();
        assert_eq!(
            rows_for(&mut db, "a.example", 0, 1000).unwrap(),
            vec![rows[0].clone(), rows[2].clone()]
        );
        assert_eq!(rows_for(&mut db, "a.example", 101, 300).unwrap(), vec![]);
        assert_eq!(
            domains_in(&mut db, 0, 250).unwrap(),
            vec!["a.example", "b.example"]
        );
        note_dropped(&mut db, 150, 160, 3, "store unreachable").unwrap();
        assert_eq!(
            dropped_in(&mut db, 0, 200).unwrap(),
            (3, vec!["store unreachable".to_string()])
        );
        assert_eq!(dropped_in(&mut db, 200, 300).unwrap().0, 0);
        let s = stats(&mut db).unwrap();
        assert_eq!((s.rows, s.oldest, s.newest, s.dropped), (3, 100, 300, 3));
        assert_eq!(prune(&mut db, 250).unwrap(), 2);
        assert_eq!(stats(&mut db).unwrap().rows, 1);
    }
}

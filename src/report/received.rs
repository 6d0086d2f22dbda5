//! The reports others sent us, in the store: `rcv_reports` (one line per
//! reporter and report id), `rcv_records` (its records) and `ptr_cache`
//! (the reverse DNS names of their source addresses).
//!
//! Owns: the SQL over those three tables. Must not: parse reports (that is
//! `feedback`), look names up (the caller does, through its resolver) or
//! summarise (that is `show`).

use std::collections::HashMap;

use super::db::{Db, DbError, Value};
use super::feedback::ReceivedReport;

/// What storing a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// It was new and is now stored.
    New,
    /// The reporter had sent this report id already; nothing changed.
    Duplicate,
}

impl Stored {
    /// `stored` / `duplicate`, as `report ingest` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::New => "stored",
            Stored::Duplicate => "duplicate",
        }
    }
}

/// Stores one report and its records in one transaction, unless the
/// reporter (`<org_name>`) sent this `<report_id>` before.
pub fn store(db: &mut Db, report: &ReceivedReport, now: i64) -> Result<Stored, DbError> {
    let policy = serde_json::to_string(&report.policy).unwrap_or_else(|_| "{}".into());
    db.transaction(|db| {
        let n = db.execute(
            "INSERT INTO rcv_reports (reporter, report_id, domain, begin_time, end_time, email, \
             policy, received) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (reporter, report_id) DO NOTHING",
            &[
                (&report.reporter).into(),
                (&report.report_id).into(),
                (&report.policy.domain).into(),
                report.begin.into(),
                report.end.into(),
                (&report.email).into(),
                policy.into(),
                now.into(),
            ],
        )?;
        if n == 0 {
            return Ok(Stored::Duplicate);
        }
        for r in &report.records {
            let auth = serde_json::to_string(&r.auth).unwrap_or_else(|_| "{}".into());
            db.execute(
                "INSERT INTO rcv_records (reporter, report_id, source_ip, count, disposition, \
                 dkim_eval, spf_eval, header_from, env_from, env_to, auth) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    (&report.reporter).into(),
                    (&report.report_id).into(),
                    (&r.source_ip).into(),
                    i64::try_from(r.count).unwrap_or(i64::MAX).into(),
                    (&r.disposition).into(),
                    (&r.dkim).into(),
                    (&r.spf).into(),
                    (&r.header_from).into(),
                    (&r.env_from).into(),
                    (&r.env_to).into(),
                    auth.into(),
                ],
            )?;
        }
        Ok(Stored::New)
    })
}

/// One stored record with its report's reporter, domain and period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceivedRow {
    /// `<org_name>`.
    pub reporter: String,
    /// `<report_id>`.
    pub report_id: String,
    /// `<policy_published><domain>`.
    pub domain: String,
    /// `<date_range><begin>`.
    pub begin: i64,
    /// `<date_range><end>`.
    pub end: i64,
    /// `<source_ip>`.
    pub source_ip: String,
    /// `<count>`.
    pub count: u64,
    /// `<policy_evaluated><disposition>`.
    pub disposition: String,
    /// `<policy_evaluated><dkim>`.
    pub dkim: String,
    /// `<policy_evaluated><spf>`.
    pub spf: String,
    /// `<identifiers><header_from>`.
    pub header_from: String,
}

impl ReceivedRow {
    /// DMARC passed: aligned DKIM or aligned SPF passed.
    pub fn dmarc_pass(&self) -> bool {
        self.dkim == "pass" || self.spf == "pass"
    }
}

/// The records of reports ending after `since`, for one domain or all,
/// ordered by domain, report begin, source.
pub fn rows(db: &mut Db, domain: Option<&str>, since: i64) -> Result<Vec<ReceivedRow>, DbError> {
    let mut sql = String::from(
        "SELECT r.reporter, r.report_id, r.domain, r.begin_time, r.end_time, c.source_ip, \
         c.count, c.disposition, c.dkim_eval, c.spf_eval, c.header_from \
         FROM rcv_reports r JOIN rcv_records c \
         ON c.reporter = r.reporter AND c.report_id = r.report_id WHERE r.end_time > $1",
    );
    let mut params: Vec<Value> = vec![since.into()];
    if let Some(d) = domain {
        sql.push_str(" AND r.domain = $2");
        params.push(d.trim_end_matches('.').to_ascii_lowercase().into());
    }
    sql.push_str(" ORDER BY r.domain, r.begin_time, r.reporter, r.report_id, c.source_ip");
    Ok(db
        .query(&sql, &params)?
        .iter()
        .map(|v| row_from(v))
        .collect())
}

fn row_from(v: &[Value]) -> ReceivedRow {
    let t = |i: usize| v.get(i).map(Value::text).unwrap_or_default();
    let n = |i: usize| v.get(i).map_or(0, Value::int);
    ReceivedRow {
        reporter: t(0),
        report_id: t(1),
        domain: t(2),
        begin: n(3),
        end: n(4),
        source_ip: t(5),
        count: u64::try_from(n(6)).unwrap_or(0),
        disposition: t(7),
        dkim: t(8),
        spf: t(9),
        header_from: t(10),
    }
}

/// The cached reverse names of `ips` looked up at or after `fresh_since`
/// (an empty name: looked up, none found).
pub fn cached_ptrs(
    db: &mut Db,
    ips: &[String],
    fresh_since: i64,
) -> Result<HashMap<String, String>, DbError> {
    let mut out = HashMap::new();
    for ip in ips {
        let rows = db.query(
            "SELECT name FROM ptr_cache WHERE ip = $1 AND looked >= $2",
            &[ip.into(), fresh_since.into()],
        )?;
        if let Some(name) = rows.first().and_then(|r| r.first()) {
            out.insert(ip.clone(), name.text());
        }
    }
    Ok(out)
}

/// Remembers the reverse name of `ip` (empty: none).
pub fn cache_ptr(db: &mut Db, ip: &str, name: &str, now: i64) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO ptr_cache (ip, name, looked) VALUES ($1, $2, $3) \
         ON CONFLICT (ip) DO UPDATE SET name = excluded.name, looked = excluded.looked",
        &[ip.into(), name.into(), now.into()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, counts: &[(&str, u64, &str)]) -> ReceivedReport {
        let mut r = ReceivedReport {
            reporter: "google.com".into(),
            report_id: id.into(),
            begin: 86_400,
            end: 2 * 86_400 - 1,
            ..ReceivedReport::default()
        };
        r.policy.domain = "example.com".into();
        for (ip, count, dkim) in counts {
            r.records.push(crate::report::feedback::ReceivedRecord {
                source_ip: (*ip).into(),
                count: *count,
                dkim: (*dkim).into(),
                spf: "fail".into(),
                ..Default::default()
            });
        }
        r
    }

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}/r.db", dir.path().display())).unwrap();
        (dir, db)
    }

    #[test]
    fn reports_are_stored_once_per_reporter_and_id() {
        let (_dir, mut db) = db();
        let r = report("1", &[("192.0.2.1", 3, "pass"), ("192.0.2.2", 2, "fail")]);
        assert_eq!(store(&mut db, &r, 5).unwrap(), Stored::New);
        assert_eq!(store(&mut db, &r, 6).unwrap(), Stored::Duplicate);
        let mut other = r.clone();
        other.reporter = "yahoo.com".into();
        assert_eq!(store(&mut db, &other, 6).unwrap(), Stored::New);
        let rows = rows(&mut db, Some("EXAMPLE.com."), 0).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 10);
        assert_eq!(rows.iter().filter(|r| r.dmarc_pass()).count(), 2);
        assert!(super::rows(&mut db, None, 2 * 86_400).unwrap().is_empty());
    }

    #[test]
    fn ptr_names_are_cached_and_refreshed() {
        let (_dir, mut db) = db();
        cache_ptr(&mut db, "192.0.2.1", "mx.example", 10).unwrap();
        cache_ptr(&mut db, "192.0.2.2", "", 10).unwrap();
        let ips = [
            "192.0.2.1".to_string(),
            "192.0.2.2".into(),
            "192.0.2.3".into(),
        ];
        let got = cached_ptrs(&mut db, &ips, 0).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["192.0.2.1"], "mx.example");
        assert!(cached_ptrs(&mut db, &ips, 11).unwrap().is_empty());
        cache_ptr(&mut db, "192.0.2.1", "mx2.example", 20).unwrap();
        assert_eq!(
            cached_ptrs(&mut db, &ips, 11).unwrap()["192.0.2.1"],
            "mx2.example"
        );
    }
}

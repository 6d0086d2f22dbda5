//! DMARC reports, both ways (RFC 9990 aggregate, RFC 9991 failure): the
//! rows authgate records per message, the store they go to, the reports
//! sent from them, and the reports others send us.
//!
//! Owns: everything under `report`. Sits above `outcome` (a row is made
//! from a [`crate::outcome::Fate`]) and below `cli`/`daemon`, which start
//! the writer and the daily run.

pub mod aggregate;
pub mod db;
pub mod failure;
pub mod feedback;
pub mod ingest;
pub mod outbox;
pub mod received;
pub mod row;
pub mod send;
pub mod service;
pub mod show;
pub mod store;
pub mod uri;
pub mod writer;

pub use db::{Db, DbError, Value};
pub use row::{DkimRow, Row};

/// Seconds in a UTC day: reports cover whole UTC days.
pub const DAY: i64 = 86_400;

/// `YYYY-MM-DD` of a time (UTC).
pub fn day_of(time: i64) -> String {
    let (y, m, d) = civil_from_days(time.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The start (00:00 UTC) of a `YYYY-MM-DD` day.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Reject 2026-02-31 and the like: the day must come back the same.
    (civil_from_days(days) == (y, m, d)).then_some(days * DAY)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(parse_day("2026-12-07"), Some(1_796_601_600));
        assert_eq!(day_of(1_796_601_600 + 86_399), "2026-12-07");
        assert_eq!(
            parse_day("2024-02-29").map(day_of).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_day("2026-02-29"), None);
        assert_eq!(parse_day("yesterday"), None);
    }
}

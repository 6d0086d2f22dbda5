//! The report store's connection: SQLite (embedded, the default) or
//! PostgreSQL (several nodes, one store), behind one small API.
//!
//! Owns: opening a store URL (`sqlite:/path`, `postgres://...`), the schema
//! and its migrations, and running SQL written once for both: `$1`-style
//! placeholders, `BIGINT`/`TEXT` columns only, no NULLs, `ON CONFLICT`,
//! aggregates cast to `BIGINT` (PostgreSQL's `SUM` is `NUMERIC`). Every
//! operation is bounded: SQLite waits at most [`BUSY_TIMEOUT`] for a lock,
//! PostgreSQL connects within [`CONNECT_TIMEOUT`] and runs each statement
//! within [`STATEMENT_TIMEOUT`]. Must not: know what a row means (that is
//! `store`) or be called from the async runtime's threads (it blocks).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long SQLite waits for another process's lock (one-shot `pipe`
/// processes and the daemon share the file).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a PostgreSQL connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one PostgreSQL statement may run.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A value in or out of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `BIGINT`.
    Int(i64),
    /// `TEXT`.
    Text(String),
}

impl Value {
    /// The integer (0 for text that is not one).
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            Value::Text(t) => t.parse().unwrap_or(0),
        }
    }

    /// The text (the decimal form of an integer).
    pub fn text(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Text(t) => t.clone(),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres://`.
    #[error("report store {0:?}: use sqlite:/path/to/reports.db or postgres://user@host/db")]
    BadUrl(String),
    /// SQLite said no.
    #[error("report store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// PostgreSQL said no (or is unreachable).
    #[error("report store {url}: {source}")]
    Postgres {
        /// The URL without its password.
        url: String,
        /// What PostgreSQL said.
        source: postgres::Error,
    },
    /// The database directory could not be created.
    #[error("report store {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

enum Backend {
    Sqlite(rusqlite::Connection, PathBuf),
    Postgres(Box<postgres::Client>, String),
}

/// One open connection to the store.
pub struct Db {
    backend: Backend,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({})", self.describe())
    }
}

/// Bumped whenever [`SCHEMA`] changes.
const SCHEMA_VERSION: i64 = 2;

/// The schema, one statement per entry; every one is idempotent.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS agg_rows (
        time BIGINT NOT NULL, source_ip TEXT NOT NULL, env_from TEXT NOT NULL,
        env_to TEXT NOT NULL, header_from TEXT NOT NULL, policy_domain TEXT NOT NULL,
        p TEXT NOT NULL, sp TEXT NOT NULL, np TEXT NOT NULL, adkim TEXT NOT NULL,
        aspf TEXT NOT NULL, testing BIGINT NOT NULL, psd TEXT NOT NULL,
        discovery TEXT NOT NULL, dmarc TEXT NOT NULL, dkim_aligned BIGINT NOT NULL,
        spf_aligned BIGINT NOT NULL, disposition TEXT NOT NULL,
        override_type TEXT NOT NULL, override_comment TEXT NOT NULL,
        spf_domain TEXT NOT NULL, spf_scope TEXT NOT NULL, spf_result TEXT NOT NULL,
        dkim TEXT NOT NULL, is_report BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS agg_rows_domain_time ON agg_rows (policy_domain, time)",
    "CREATE INDEX IF NOT EXISTS agg_rows_time ON agg_rows (time)",
    // Rows that never reached the store, per period: a report for a period
    // with any says so in <error>.
    "CREATE TABLE IF NOT EXISTS agg_dropped (
        time_from BIGINT NOT NULL, time_to BIGINT NOT NULL, count BIGINT NOT NULL,
        reason TEXT NOT NULL)",
    // One line per policy domain, period and destination: the report id is
    // fixed when first planned; state goes planned -> sent (or skipped).
    "CREATE TABLE IF NOT EXISTS agg_sent (
        domain TEXT NOT NULL, period_begin BIGINT NOT NULL, period_end BIGINT NOT NULL,
        destination TEXT NOT NULL, report_id TEXT NOT NULL, state TEXT NOT NULL,
        detail TEXT NOT NULL, updated BIGINT NOT NULL,
        PRIMARY KEY (domain, period_begin, destination))",
    // Failure reports sent, for the per-destination rate limit.
    "CREATE TABLE IF NOT EXISTS fail_sent (
        destination TEXT NOT NULL, time BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS fail_sent_dest_time ON fail_sent (destination, time)",
    // Reports received from others (`report ingest`).
    "CREATE TABLE IF NOT EXISTS rcv_reports (
        reporter TEXT NOT NULL, report_id TEXT NOT NULL, domain TEXT NOT NULL,
        begin_time BIGINT NOT NULL, end_time BIGINT NOT NULL, email TEXT NOT NULL,
        policy TEXT NOT NULL, received BIGINT NOT NULL,
        PRIMARY KEY (reporter, report_id))",
    "CREATE TABLE IF NOT EXISTS rcv_records (
        reporter TEXT NOT NULL, report_id TEXT NOT NULL, source_ip TEXT NOT NULL,
        count BIGINT NOT NULL, disposition TEXT NOT NULL, dkim_eval TEXT NOT NULL,
        spf_eval TEXT NOT NULL, header_from TEXT NOT NULL, env_from TEXT NOT NULL,
        env_to TEXT NOT NULL, auth TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rcv_records_report ON rcv_records (reporter, report_id)",
    // Per-store secrets (RFC 6590 redaction), shared by the nodes.
    "CREATE TABLE IF NOT EXISTS authgate_secret (
        name TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ptr_cache (
        ip TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, looked BIGINT NOT NULL)",
];

impl Db {
    /// Opens (and creates, for SQLite) the store at `url` and makes sure the
    /// schema is there.
    pub fn open(url: &str) -> Result<Db, DbError> {
        let mut db = if let Some(path) = url.strip_prefix("sqlite:") {
            Db::open_sqlite(Path::new(path.trim_start_matches("//")))?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db::open_postgres(url)?
        } else {
            return Err(DbError::BadUrl(url.to_string()));
        };
        db.migrate()?;
        Ok(db)
    }

    /// Creates the schema unless it is there at this version. Several
    /// processes may open a new store at once (one-shot `pipe`s, nodes):
    /// PostgreSQL's `CREATE ... IF NOT EXISTS` is not safe against that, so
    /// the DDL runs under a transaction-wide advisory lock there (SQLite's
    /// `BEGIN IMMEDIATE` is the lock).
    fn migrate(&mut self) -> Result<(), DbError> {
        let current = self
            .query("SELECT value FROM authgate_meta WHERE name = 'schema'", &[])
            .ok()
            .and_then(|r| r.first().and_then(|r| r.first()).map(Value::int));
        if current == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        self.transaction(|db| {
            if db.is_postgres() {
                db.execute("SELECT pg_advisory_xact_lock(7271692026)", &[])?;
            }
            db.execute(
                "CREATE TABLE IF NOT EXISTS authgate_meta (name TEXT NOT NULL PRIMARY KEY, \
                 value BIGINT NOT NULL)",
                &[],
            )?;
            for stmt in SCHEMA {
                db.execute(stmt, &[])?;
            }
            // The one table with a generated key, spelled per backend.
            let id = if db.is_postgres() {
                "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
            } else {
                "id INTEGER PRIMARY KEY"
            };
            db.execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS fail_queue ({id}, time BIGINT NOT NULL, \
                     policy_domain TEXT NOT NULL, ruf TEXT NOT NULL, pending TEXT NOT NULL, \
                     state TEXT NOT NULL, updated BIGINT NOT NULL)"
                ),
                &[],
            )?;
            db.execute(
                "CREATE INDEX IF NOT EXISTS fail_queue_state ON fail_queue (state, time)",
                &[],
            )?;
            db.execute(
                "INSERT INTO authgate_meta (name, value) VALUES ('schema', $1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[SCHEMA_VERSION.into()],
            )?;
            Ok(())
        })
    }

    fn open_sqlite(path: &Path) -> Result<Db, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let err = |source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // WAL: readers never block the writer; NORMAL is durable at
        // checkpoints and safe against corruption.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        Ok(Db {
            backend: Backend::Sqlite(conn, path.to_path_buf()),
        })
    }

    fn open_postgres(url: &str) -> Result<Db, DbError> {
        let shown = redact(url);
        let err = |source| DbError::Postgres {
            url: shown.clone(),
            source,
        };
        let mut cfg: postgres::Config = url.parse().map_err(err)?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(CONNECT_TIMEOUT);
        }
        cfg.tcp_user_timeout(STATEMENT_TIMEOUT);
        cfg.keepalives(true);
        let options = format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis());
        cfg.options(&options);
        let client = cfg.connect(postgres::NoTls).map_err(err)?;
        Ok(Db {
            backend: Backend::Postgres(Box::new(client), shown),
        })
    }

    /// The store, for messages (a PostgreSQL password is never shown).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(_, p) => format!("sqlite:{}", p.display()),
            Backend::Postgres(_, u) => u.clone(),
        }
    }

    /// Whether this is the shared PostgreSQL store.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(..))
    }

    /// Runs one statement; returns the rows changed.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        match &mut self.backend {
            Backend::Sqlite(c, path) => {
                let sql = sqlite_sql(sql);
                let mut stmt = c.prepare_cached(&sql).map_err(|source| DbError::Sqlite {
                    path: path.clone(),
                    source,
                })?;
                let n = stmt
                    .execute(rusqlite::params_from_iter(params.iter().map(sqlite_value)))
                    .map_err(|source| DbError::Sqlite {
                        path: path.clone(),
                        source,
                    })?;
                Ok(n as u64)
            }
            Backend::Postgres(c, url) => {
                let refs = pg_params(params);
                c.execute(sql, &refs).map_err(|source| DbError::Postgres {
                    url: url.clone(),
                    source,
                })
            }
        }
    }

    /// Runs one query; every column must be `BIGINT` or `TEXT`.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError> {
        match &mut self.backend {
            Backend::Sqlite(c, path) => {
                let err = |source| DbError::Sqlite {
                    path: path.clone(),
                    source,
                };
                let sql = sqlite_sql(sql);
                let mut stmt = c.prepare_cached(&sql).map_err(err)?;
                let n = stmt.column_count();
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params.iter().map(sqlite_value)))
                    .map_err(err)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(err)? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        use rusqlite::types::ValueRef;
                        vals.push(match row.get_ref(i).map_err(err)? {
                            ValueRef::Integer(v) => Value::Int(v),
                            ValueRef::Real(v) => Value::Int(v as i64),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Null => Value::Int(0),
                        });
                    }
                    out.push(vals);
                }
                Ok(out)
            }
            Backend::Postgres(c, url) => {
                let err = |source| DbError::Postgres {
                    url: url.clone(),
                    source,
                };
                let refs = pg_params(params);
                let rows = c.query(sql, &refs).map_err(err)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let mut vals = Vec::with_capacity(row.len());
                    for (i, col) in row.columns().iter().enumerate() {
                        use postgres::types::Type;
                        let t = col.type_();
                        vals.push(if *t == Type::INT8 {
                            Value::Int(row.try_get::<_, Option<i64>>(i).map_err(err)?.unwrap_or(0))
                        } else if *t == Type::INT4 {
                            Value::Int(i64::from(
                                row.try_get::<_, Option<i32>>(i).map_err(err)?.unwrap_or(0),
                            ))
                        } else if *t == Type::BOOL {
                            Value::from(
                                row.try_get::<_, Option<bool>>(i)
                                    .map_err(err)?
                                    .unwrap_or(false),
                            )
                        } else {
                            Value::Text(
                                row.try_get::<_, Option<String>>(i)
                                    .map_err(err)?
                                    .unwrap_or_default(),
                            )
                        });
                    }
                    out.push(vals);
                }
                Ok(out)
            }
        }
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled
    /// back otherwise. SQLite takes the write lock at the start (`BEGIN
    /// IMMEDIATE`), so two writers wait rather than deadlock.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Db) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let begin = if self.is_postgres() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        };
        self.batch(begin)?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                // The error that matters is the first; a failed rollback
                // leaves the connection to be dropped by the caller.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match &mut self.backend {
            Backend::Sqlite(c, path) => c.execute_batch(sql).map_err(|source| DbError::Sqlite {
                path: path.clone(),
                source,
            }),
            Backend::Postgres(c, url) => c.batch_execute(sql).map_err(|source| DbError::Postgres {
                url: url.clone(),
                source,
            }),
        }
    }
}

/// `$1` placeholders as SQLite writes them (`?1`).
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

fn pg_params(params: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|v| match v {
            Value::Int(i) => i as &(dyn postgres::types::ToSql + Sync),
            Value::Text(t) => t as &(dyn postgres::types::ToSql + Sync),
        })
        .collect()
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://dmarc:s3cret@db.example/reports"),
            "postgres://dmarc:***@db.example/reports"
        );
        assert_eq!(redact("postgres://db/reports"), "postgres://db/reports");
    }

    #[test]
    fn sqlite_store_round_trips_and_bad_urls_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}/sub/r.db", dir.path().display());
        let mut db = Db::open(&url).unwrap();
        db.execute(
            "INSERT INTO ptr_cache (ip, name, looked) VALUES ($1, $2, $3)",
            &["192.0.2.1".into(), "mx.example".into(), 7i64.into()],
        )
        .unwrap();
        let rows = db
            .query(
                "SELECT name, looked FROM ptr_cache WHERE ip = $1",
                &["192.0.2.1".into()],
            )
            .unwrap();
        assert_eq!(rows, vec![vec![Value::from("mx.example"), Value::Int(7)]]);
        // Opening again keeps the data (the schema is idempotent).
        drop(db);
        let mut db = Db::open(&url).unwrap();
        assert_eq!(
            db.query("SELECT COUNT(*) FROM ptr_cache", &[]).unwrap()[0][0].int(),
            1
        );
        assert!(matches!(Db::open("mysql://x"), Err(DbError::BadUrl(_))));
    }
}

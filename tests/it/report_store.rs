//! The report store as the fronts fill it: a row per DMARC-evaluated
//! message, from `pipe` (one-shot writes) here; `serve`/`milter` and the
//! PostgreSQL store in the other report tests.

use crate::support::{authgate, fixtures};

/// A config answering DNS from the policy fixtures, recording into `store`.
fn config(dir: &std::path::Path, store: &str) -> std::path::PathBuf {
    let path = dir.join("report.toml");
    let text = format!(
        "authserv_id = \"mx.example.com\"\n[report]\nenabled = true\nstore = \"{store}\"\n\
         [dns]\nzone_files = [\"{}\", \"{}\"]\n",
        fixtures().join("policy/policy.zone").display(),
        fixtures().join("dkim/keys.zone").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

const MSG: &str = "From: CEO <ceo@example.org>\nTo: staff@example.com\nSubject: hi\n\nbody\n";

fn pipe(config: &std::path::Path, ip: &str, now: &str) -> i32 {
    authgate()
        .args(["pipe", "--config"])
        .arg(config)
        .args(["--client-ip", ip, "--helo", "mail.example.org"])
        .args(["--mail-from", "ceo@example.org", "--now", now])
        .write_stdin(MSG)
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

fn stats(config: &std::path::Path) -> serde_json::Value {
    let out = authgate()
        .args(["report", "stats", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pipe_records_one_row_per_delivered_or_rejected_message_and_none_when_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}/reports.db", dir.path().display());
    let cfg = config(dir.path(), &store);
    // 2026-12-06 12:00 UTC: a pass (delivered) and a spoof (rejected, 77).
    assert_eq!(pipe(&cfg, "192.0.2.1", "1796558400"), 0);
    assert_eq!(pipe(&cfg, "198.51.100.9", "1796558460"), 77);
    let s = stats(&cfg);
    assert_eq!(s["rows"], 2, "{s}");
    assert_eq!(s["oldest"], 1_796_558_400i64);
    assert_eq!(s["domains"][0][0], "example.org");
    // Turned off: nothing more is recorded.
    let off = dir.path().join("off.toml");
    std::fs::write(
        &off,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("enabled = true", "enabled = false"),
    )
    .unwrap();
    assert_eq!(pipe(&off, "192.0.2.1", "1796558500"), 0);
    assert_eq!(stats(&cfg)["rows"], 2);
}

#[test]
fn an_unusable_store_never_changes_what_happens_to_the_message() {
    let dir = tempfile::tempdir().unwrap();
    // A store path under a regular file: it can never be created.
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let store = format!("sqlite:{}/file/reports.db", dir.path().display());
    let cfg = config(dir.path(), &store);
    assert_eq!(pipe(&cfg, "192.0.2.1", "1796558400"), 0);
    assert_eq!(pipe(&cfg, "198.51.100.9", "1796558460"), 77);
}

#[test]
fn postgres_store_holds_the_rows_of_several_writers() {
    let pg = crate::support::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &pg.url());
    // Several one-shot writers at once (several nodes, one store).
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let cfg = cfg.clone();
            std::thread::spawn(move || pipe(&cfg, "192.0.2.1", &(1_796_558_400 + i).to_string()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 0);
    }
    let s = stats(&cfg);
    assert_eq!(s["rows"], 4, "{s}");
    assert!(s["store"].as_str().unwrap().starts_with("postgres://"));
    // Down: mail still flows; back: rows are stored again.
    pg.pause();
    assert_eq!(pipe(&cfg, "192.0.2.1", "1796558500"), 0);
    pg.resume();
    assert_eq!(pipe(&cfg, "192.0.2.1", "1796558600"), 0);
    assert_eq!(stats(&cfg)["rows"], 5);
}

#[test]
fn concurrent_pipe_processes_share_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}/reports.db", dir.path().display());
    let cfg = config(dir.path(), &store);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let cfg = cfg.clone();
            std::thread::spawn(move || pipe(&cfg, "192.0.2.1", &(1_796_558_400 + i).to_string()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 0);
    }
    assert_eq!(stats(&cfg)["rows"], 8);
}

#[test]
fn the_store_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}/env.db", dir.path().display());
    let out = authgate()
        .args(["report", "stats", "--json", "--config", "/dev/null"])
        .env("AUTHGATE_REPORT__STORE", &store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["store"],
        format!("sqlite:{}/env.db", dir.path().display())
    );
    // A bad URL is one clear line.
    let out = authgate()
        .args(["report", "stats", "--config", "/dev/null"])
        .env("AUTHGATE_REPORT__STORE", "mysql://db/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("use sqlite:/path/to/reports.db or postgres://"),
        "{err}"
    );
}

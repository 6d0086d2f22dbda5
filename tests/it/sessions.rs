//! The short, CI-sized version of the 500-session load run (RELIABILITY.md,
//! "500 concurrent sessions"): `bench/sessions/load.py` against the debug
//! binary, 100 sessions held open together against `server.max_sessions =
//! 20`, for `serve` (with its loopback sink) and for `milter`.
//!
//! The script asserts, and exits non-zero otherwise: no session hangs (every
//! read has a timeout), every session is either answered normally or refused
//! at the limit (421 4.3.2; the milter closes the connection), exactly 20 are
//! answered, each accepted message reaches the sink exactly once, and the
//! daemon's descriptor count returns to its start value. No timing is
//! asserted.

use std::path::Path;
use std::process::Command;

fn load(front: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/sessions/load.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--authgate", env!("CARGO_BIN_EXE_authgate")])
        .args(["--front", front])
        .args(["--sessions", "100", "--max-sessions", "20"])
        .args(["--timeout", "20"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("too many sessions; refusing"))
        .collect();
    assert!(
        out.status.success(),
        "{front}: {stdout}\n{}",
        problems.join("\n")
    );
    assert!(stdout.contains("\"answered\": 20,"), "{stdout}");
    assert!(stdout.contains("\"refused_at_limit\": 80,"), "{stdout}");
    assert!(stdout.contains("\"hangs\": 0,"), "{stdout}");
}

#[test]
fn a_hundred_sessions_against_a_limit_of_twenty_through_serve() {
    load("serve");
}

#[test]
fn a_hundred_sessions_against_a_limit_of_twenty_through_the_milter() {
    load("milter");
}

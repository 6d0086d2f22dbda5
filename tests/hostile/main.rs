//! The hostile and malformed input corpus (issue 18): every `*.toml`
//! manifest in `tests/hostile/` names cases, each with its input (literal or
//! a template whose `{{rep:..}}` counts scale) and its expected outcome. Each
//! case runs in-process against the library: messages (and the DKIM key, SPF
//! and DMARC records they need, from zone text) through the pipeline the way
//! `authgate pipe` drives one, SMTP dialogues through the proxy over
//! in-memory pipes, milter packets through the milter connection loop.
//!
//! Bounded work: a scalable case runs at 1× and at 10× its counts, and the
//! 10× run may cost at most [`SLACK`]× the allocations (calls and bytes)
//! plus a small constant, and for messages at most [`SLACK`]× the DNS
//! queries. A counting global allocator measures the work, not the clock
//! (one loose clock check remains for work that allocates nothing: see
//! [`bounded`]).
//! All cases run in one `#[test]` so that no other test shares the counter.
//!
//! `HOSTILE_RECORD=1` prints what every case did (to write expectations);
//! `HOSTILE_ONLY=name` runs the cases whose name contains `name`.

// Test helpers outside #[test] fns: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alloc;
mod manifest;
mod message;
mod milter;
mod smtp;
mod template;

use std::path::Path;
use std::time::Duration;

use manifest::{Case, Kind};

/// The 10× run may cost this many times the 1× run (plus [`SLACK_CALLS`]
/// allocation calls and [`SLACK_BYTES`] bytes for fixed costs that the
/// first run may or may not pay). Linear work passes with room; quadratic
/// work costs ~100× and fails.
pub const SLACK: u64 = 12;
/// Allocation calls allowed on top of `SLACK ×`.
pub const SLACK_CALLS: u64 = 5_000;
/// Allocated bytes allowed on top of `SLACK ×`.
pub const SLACK_BYTES: u64 = 4 << 20;

/// What one run of a case did, as `key = value` observations; a case's
/// `expect` table names a subset of them.
pub type Observed = std::collections::BTreeMap<String, toml::Value>;

/// Work one run cost.
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    calls: u64,
    bytes: u64,
    /// DNS queries, where the case makes any.
    queries: u64,
    /// Wall-clock time: see [`bounded`].
    time: Duration,
}

fn run(case: &Case, scale: usize, rt: &tokio::runtime::Runtime) -> (Observed, Work) {
    let clock = std::time::Instant::now();
    let before = alloc::snapshot();
    let observed = match case.kind {
        Kind::Message => message::run(case, scale, rt),
        Kind::Smtp => smtp::run(case, scale, rt),
        Kind::Milter => milter::run(case, scale, rt),
    };
    let after = alloc::snapshot();
    let queries = observed
        .get("dns_queries")
        .and_then(toml::Value::as_integer)
        .map_or(0, |q| q as u64);
    let work = Work {
        calls: after.0 - before.0,
        bytes: after.1 - before.1,
        queries,
        time: clock.elapsed(),
    };
    (observed, work)
}

/// Compares what a run did with what the case expects; one line per mismatch.
fn mismatches(case: &Case, observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    for (key, want) in &case.expect {
        if let Some(key) = key.strip_suffix("_contains") {
            let got = observed.get(key).map(value_text).unwrap_or_default();
            for s in as_strings(want) {
                if !got.contains(&s) {
                    out.push(format!("{key} lacks {s:?}: {got:?}"));
                }
            }
            continue;
        }
        if let Some(key) = key.strip_suffix("_lacks") {
            let got = observed.get(key).map(value_text).unwrap_or_default();
            for s in as_strings(want) {
                if got.contains(&s) {
                    out.push(format!("{key} has {s:?}: {got:?}"));
                }
            }
            continue;
        }
        if let Some(key) = key.strip_suffix("_max") {
            let got = observed.get(key).and_then(toml::Value::as_integer);
            if got.is_none_or(|g| Some(g) > want.as_integer()) {
                out.push(format!("{key} = {got:?}, want at most {want}"));
            }
            continue;
        }
        match observed.get(key) {
            Some(got) if got == want => {}
            got => out.push(format!("{key} = {got:?}, want {want}")),
        }
    }
    out
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn as_strings(v: &toml::Value) -> Vec<String> {
    match v {
        toml::Value::Array(a) => a.iter().map(value_text).collect(),
        other => vec![value_text(other)],
    }
}

fn bounded(small: Work, large: Work) -> Vec<String> {
    let mut out = Vec::new();
    // The one clock check, for work that allocates nothing (a quadratic
    // comparison loop): only when the 10x run took over 5 s and 50 times
    // as long as the 1x run, which linear work on a busy machine does not
    // do. Everything else compares counts.
    if large.time > Duration::from_secs(5) && large.time > small.time * 50 {
        out.push(format!(
            "10x took {:?}, 1x took {:?}: super-linear",
            large.time, small.time
        ));
    }
    if large.calls > SLACK * small.calls + SLACK_CALLS {
        out.push(format!(
            "10x made {} allocations, 1x made {} (limit {SLACK}x + {SLACK_CALLS})",
            large.calls, small.calls
        ));
    }
    if large.bytes > SLACK * small.bytes + SLACK_BYTES {
        out.push(format!(
            "10x allocated {} bytes, 1x {} (limit {SLACK}x + {SLACK_BYTES})",
            large.bytes, small.bytes
        ));
    }
    if large.queries > SLACK * small.queries + 2 {
        out.push(format!(
            "10x made {} DNS queries, 1x made {}",
            large.queries, small.queries
        ));
    }
    out
}

/// Runs one case (1×, then 10× when it scales); the problems found.
fn check(case: &Case, rt: &tokio::runtime::Runtime, record: bool) -> Vec<String> {
    let (observed, small) = run(case, 1, rt);
    let t1 = small.time;
    if record {
        println!("# {} ({} allocs)", case.name, small.calls);
        for (k, v) in &observed {
            if !matches!(
                k.as_str(),
                "dns_queries" | "ar" | "added" | "replies" | "reply_text"
            ) {
                println!("expect.{k} = {v}");
            }
        }
        for k in ["added", "replies", "reply_text"] {
            if let Some(v) = observed.get(k) {
                println!("  {k}: {v}");
            }
        }
    }
    let mut problems = mismatches(case, &observed);
    if case.scales() {
        let (_, large) = run(case, 10, rt);
        let t10 = large.time;
        if record {
            // Printed, never asserted: CPU-only super-linear work shows here.
            println!(
                "SUMMARY {} calls x{:.1} bytes x{:.1} time x{:.1} ({t10:?})",
                case.name,
                large.calls as f64 / small.calls.max(1) as f64,
                large.bytes as f64 / small.bytes.max(1) as f64,
                t10.as_secs_f64() / t1.as_secs_f64().max(1e-6)
            );
            println!(
                "  10x: {} / {} allocs, {} / {} bytes, {} / {} queries",
                large.calls, small.calls, large.bytes, small.bytes, large.queries, small.queries
            );
        }
        problems.extend(bounded(small, large));
    }
    problems
}

#[test]
fn hostile_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    template::self_test();
    let cases = manifest::load_all(&dir);
    let record = std::env::var_os("HOSTILE_RECORD").is_some();
    let only = std::env::var("HOSTILE_ONLY").ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let mut known = Vec::new();
    let mut ran = 0usize;
    for case in &cases {
        if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        ran += 1;
        let problems = check(case, &rt, record);
        match (&case.known_failure, problems.is_empty()) {
            (None, true) => {}
            (None, false) => failures.push(format!(
                "{} [{}: {}]: {}",
                case.name,
                case.file,
                case.about,
                problems.join("; ")
            )),
            (Some(why), false) => known.push(format!("{} ({why})", case.name)),
            (Some(_), true) => failures.push(format!(
                "{}: marked as a known failure but passes: remove the mark",
                case.name
            )),
        }
    }
    if only.is_none() {
        assert!(
            cases.len() >= 200,
            "the corpus has {} cases, fewer than 200",
            cases.len()
        );
    }
    for k in &known {
        eprintln!("known failure: {k}");
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} hostile cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

//! `authgate report ...`: the DMARC report commands.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::ops::Not;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use figment::Figment;
use serde::Serialize;

use super::CommonArgs;
use crate::dns::{DnsError, Resolver};
use crate::report::ingest::{self, Extracted, Input};
use crate::report::received;
use crate::report::{Db, show, store};

const EXAMPLES_INGEST: &str = "Examples:
  authgate report ingest < report.eml                 # one message (a Postfix alias or Exim pipe)
  authgate report ingest ~/Maildir/.dmarc reports.mbox google.zip
  # /etc/aliases:  dmarc-reports: \"|/usr/local/bin/authgate report ingest\"  (then newaliases)";

const EXAMPLES_SHOW: &str = "Examples:
  authgate report show                                # a table per domain
  authgate report show --domain example.com --since 2026-11-01 --json
  authgate report show --csv > sources.csv
  authgate report show --html /var/www/dmarc.html     # one self-contained page";

/// Cached reverse names are looked up again after this long.
const PTR_TTL: i64 = 7 * crate::report::DAY;
/// Reverse lookups run this many at a time.
const PTR_CONCURRENCY: usize = 16;

#[derive(Debug, Subcommand)]
pub(super) enum ReportCommand {
    /// What the report store holds: rows per policy domain, reports sent, reports received.
    Stats(StatsArgs),
    /// Send the RFC 9990 aggregate reports of one UTC day (default: yesterday).
    Send(SendArgs),
    /// Read the DMARC aggregate reports others send (mail, mbox, Maildir, .zip/.gz/.xml; stdin when none).
    #[command(after_help = EXAMPLES_INGEST)]
    Ingest(IngestArgs),
    /// Summarise the reports received: per domain, source address and day.
    #[command(after_help = EXAMPLES_SHOW)]
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub(super) struct SendArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The UTC day to report (YYYY-MM-DD; default: yesterday).
    #[arg(long)]
    day: Option<String>,
    /// Only this policy domain.
    #[arg(long, short = 'd')]
    domain: Option<String>,
    /// Send nothing, mark nothing: write each report mail and attachment to --out.
    #[arg(long, requires = "out")]
    dry_run: bool,
    /// Directory for --dry-run.
    #[arg(long, value_name = "DIR", requires = "dry_run")]
    out: Option<std::path::PathBuf>,
    /// The clock (UNIX seconds) instead of the system's.
    #[arg(long, hide = true)]
    now: Option<i64>,
}

#[derive(Debug, Args)]
pub(super) struct IngestArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Messages, mbox files, Maildir or other folders, report attachments; stdin when none.
    #[arg(value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct ShowArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only this policy domain.
    #[arg(long, short = 'd')]
    domain: Option<String>,
    /// Only reports ending after this day (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_since)]
    since: Option<i64>,
    /// One JSON document: an array with one object per domain.
    #[arg(long, conflicts_with_all = ["csv", "html"])]
    json: bool,
    /// One CSV line per domain and source address.
    #[arg(long, conflicts_with = "html")]
    csv: bool,
    /// Write one self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

fn parse_since(s: &str) -> Result<i64, String> {
    crate::report::parse_day(s).ok_or_else(|| format!("{s:?} is not a day (YYYY-MM-DD)"))
}

#[derive(Debug, Args)]
pub(super) struct StatsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Also delete what is older than report.keep_days.
    #[arg(long)]
    prune: bool,
}

pub(super) fn dispatch(command: ReportCommand) -> Result<ExitCode> {
    match command {
        ReportCommand::Stats(a) => stats(a),
        ReportCommand::Send(a) => send(a),
        ReportCommand::Ingest(a) => ingest_cmd(a),
        ReportCommand::Show(a) => show_cmd(a),
    }
}

fn stats(a: StatsArgs) -> Result<ExitCode> {
    let config = a.common.load(Figment::new())?;
    let mut db = Db::open(&config.report.store)?;
    if a.prune {
        let now = i64::try_from(crate::outcome::unix_now()).unwrap_or(i64::MAX);
        let before = now.saturating_sub(i64::from(config.report.keep_days) * crate::report::DAY);
        let n = store::prune(&mut db, before)?;
        eprintln!(
            "authgate: pruned {n} rows older than {} days",
            config.report.keep_days
        );
    }
    let s = store::stats(&mut db)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&s)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "store: {}", s.store)?;
    if s.rows == 0 {
        writeln!(out, "rows: 0")?;
    } else {
        writeln!(
            out,
            "rows: {} ({} .. {})",
            s.rows,
            crate::report::day_of(s.oldest),
            crate::report::day_of(s.newest)
        )?;
    }
    writeln!(out, "dropped (never stored): {}", s.dropped)?;
    for (d, n) in &s.domains {
        writeln!(out, "  {d}: {n} rows")?;
    }
    for (state, n) in &s.reports {
        writeln!(out, "aggregate reports {state}: {n}")?;
    }
    writeln!(out, "reports received: {}", s.received)?;
    Ok(ExitCode::SUCCESS)
}

fn send(a: SendArgs) -> Result<ExitCode> {
    use crate::report::send::{Run, Sender, is_done, mark_done};
    let config = a.common.load(Figment::new())?;
    let now = a
        .now
        .unwrap_or_else(|| i64::try_from(crate::outcome::unix_now()).unwrap_or(i64::MAX));
    let today = now.div_euclid(crate::report::DAY) * crate::report::DAY;
    let begin = match &a.day {
        Some(d) => crate::report::parse_day(d)
            .ok_or_else(|| anyhow::anyhow!("--day {d:?}: use YYYY-MM-DD"))?,
        None => today - crate::report::DAY,
    };
    if a.dry_run.not() && begin >= today {
        anyhow::bail!(
            "--day {}: the day is not over yet (UTC); only --dry-run may name it",
            crate::report::day_of(begin)
        );
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("--out {}: {e}", dir.display()))?;
    }
    let resolver = std::sync::Arc::new(crate::dns::build(&config.dns)?);
    let sender = Sender::new(&config, resolver)?;
    let rt = super::runtime()?;
    let mut db = Db::open(&config.report.store)?;
    let run = Run {
        begin,
        domain: a.domain.clone(),
        dry_run: a.out.clone(),
        now,
    };
    let results = sender.day(&rt, &mut db, &run)?;
    let mut out = std::io::stdout().lock();
    let mut retry = false;
    for s in &results {
        // A struct, not json!: the keys come out in the contract's order.
        #[derive(Serialize)]
        struct Line<'a> {
            domain: &'a str,
            destinations: &'a [String],
            skipped: &'a [crate::report::send::Skipped],
            report_id: &'a str,
            messages: u64,
            file: &'a str,
        }
        let line = serde_json::to_string(&Line {
            domain: &s.domain,
            destinations: &s.destinations,
            skipped: &s.skipped,
            report_id: &s.report_id,
            messages: s.messages,
            file: &s.file,
        })?;
        writeln!(out, "{line}")?;
        if a.dry_run {
            continue;
        }
        if is_done(s) {
            mark_done(&mut db, s, begin, now)?;
        } else {
            retry = true;
        }
    }
    if !a.dry_run && (config.report.failure_reports || config.report.dkim_failure_reports) {
        let f = crate::report::service::flush_failures(&config, now).map_err(anyhow::Error::msg)?;
        if f.sent + f.skipped + f.retry > 0 {
            eprintln!(
                "authgate: failure reports: {} sent, {} skipped, {} left to retry",
                f.sent, f.skipped, f.retry
            );
        }
        retry |= f.retry > 0;
    }
    Ok(if retry {
        ExitCode::from(75)
    } else {
        ExitCode::SUCCESS
    })
}
/// One line of `report ingest`'s output.
#[derive(Debug, Default, Serialize)]
struct IngestLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    reporter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    begin: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<u64>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    file: String,
}

impl IngestLine {
    fn failed(file: &str, why: &str) -> IngestLine {
        IngestLine {
            status: "error",
            error: Some(format!("{file}: {why}")),
            file: file.to_string(),
            ..IngestLine::default()
        }
    }
}

fn ingest_cmd(a: IngestArgs) -> Result<ExitCode> {
    let config = a.common.load(Figment::new())?;
    let mut db = Db::open(&config.report.store)?;
    let now = i64::try_from(crate::outcome::unix_now()).unwrap_or(i64::MAX);
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    if a.paths.is_empty() {
        let input = ingest::read_all("-", std::io::stdin().lock());
        ok &= ingest_input(&mut db, input, now, &mut out)?;
    }
    for path in &a.paths {
        match ingest::files(path) {
            Ok(files) => {
                for f in files {
                    ok &= ingest_input(&mut db, read_file(&f), now, &mut out)?;
                }
            }
            Err(e) => ok &= ingest_input(&mut db, Err(e), now, &mut out)?,
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_file(path: &std::path::Path) -> Result<Input, ingest::InputError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| ingest::InputError {
        path: name.clone(),
        reason: crate::keyfile::without_errno(&e.to_string()).to_string(),
    })?;
    ingest::read_all(&name, file)
}

/// Prints a line per report in `input`; false after an I/O or store error
/// (a bad attachment is only a line).
fn ingest_input(
    db: &mut Db,
    input: Result<Input, ingest::InputError>,
    now: i64,
    out: &mut impl Write,
) -> Result<bool> {
    let input = match input {
        Ok(i) => i,
        Err(e) => {
            let line = IngestLine::failed(&e.path, &e.reason);
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
            return Ok(false);
        }
    };
    let mut ok = true;
    for found in ingest::extract(&input) {
        let (line, stored) = ingest_one(db, found, now);
        ok &= stored;
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    Ok(ok)
}

/// The line for one report, and false when the store failed.
fn ingest_one(db: &mut Db, found: Extracted, now: i64) -> (IngestLine, bool) {
    let report = match found.report {
        Ok(r) => r,
        Err(why) => return (IngestLine::failed(&found.source, &why), true),
    };
    let (status, error) = match received::store(db, &report, now) {
        Ok(s) => (s.as_str(), None),
        Err(e) => ("error", Some(format!("{}: {e}", found.source))),
    };
    let stored = error.is_none();
    let line = IngestLine {
        reporter: Some(report.reporter.clone()),
        report_id: Some(report.report_id.clone()),
        domain: Some(report.policy.domain.clone()),
        begin: Some(report.begin),
        end: Some(report.end),
        records: Some(report.records.len()),
        messages: Some(report.messages()),
        status,
        error,
        file: found.source,
    };
    (line, stored)
}

fn show_cmd(a: ShowArgs) -> Result<ExitCode> {
    let config = a.common.load(Figment::new())?;
    let mut db = Db::open(&config.report.store)?;
    let now = i64::try_from(crate::outcome::unix_now()).unwrap_or(i64::MAX);
    let rows = received::rows(&mut db, a.domain.as_deref(), a.since.unwrap_or(0))?;
    let ptrs = reverse_names(&config, &mut db, &rows, now)?;
    let domains = show::summarise(&rows, &ptrs);
    if let Some(path) = &a.html {
        let mut page = Vec::new();
        show::write_html(&mut page, &domains, &generated(now))?;
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        show::write_json(&mut out, &domains)?;
    } else if a.csv {
        show::write_csv(&mut out, &domains)?;
    } else {
        show::write_text(&mut out, &domains)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn generated(now: i64) -> String {
    let secs = now.rem_euclid(crate::report::DAY);
    format!(
        "{} {:02}:{:02} UTC",
        crate::report::day_of(now),
        secs / 3600,
        secs / 60 % 60
    )
}

/// The reverse names of the rows' addresses: from `ptr_cache` when fresh,
/// else looked up (several at a time) and cached. A temporary DNS failure
/// gives an empty name that is not cached.
fn reverse_names(
    config: &crate::config::Config,
    db: &mut Db,
    rows: &[received::ReceivedRow],
    now: i64,
) -> Result<HashMap<String, String>> {
    let mut ips: Vec<String> = rows.iter().map(|r| r.source_ip.clone()).collect();
    ips.sort();
    ips.dedup();
    let mut names = received::cached_ptrs(db, &ips, now.saturating_sub(PTR_TTL))?;
    let missing: Vec<(String, IpAddr)> = ips
        .iter()
        .filter(|ip| !names.contains_key(*ip))
        .filter_map(|ip| ip.parse().ok().map(|a| (ip.clone(), a)))
        .collect();
    if missing.is_empty() {
        return Ok(names);
    }
    let resolver = crate::dns::build(&config.dns)?;
    let rt = super::runtime()?;
    for chunk in missing.chunks(PTR_CONCURRENCY) {
        let answers = rt.block_on(futures_util::future::join_all(
            chunk.iter().map(|(_, addr)| resolver.ptr(*addr)),
        ));
        for ((ip, _), answer) in chunk.iter().zip(answers) {
            let name = match answer {
                Ok(list) => list
                    .first()
                    .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                    .unwrap_or_default(),
                Err(DnsError::Temporary(_)) => {
                    names.insert(ip.clone(), String::new());
                    continue;
                }
                Err(_) => String::new(),
            };
            received::cache_ptr(db, ip, &name, now)?;
            names.insert(ip.clone(), name);
        }
    }
    Ok(names)
}

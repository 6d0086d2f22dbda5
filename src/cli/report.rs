//! `authgate report ...`: the DMARC report commands.

use std::io::Write;
use std::ops::Not;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use figment::Figment;

use super::CommonArgs;
use crate::report::{Db, store};

#[derive(Debug, Subcommand)]
pub(super) enum ReportCommand {
    /// What the report store holds: rows per policy domain, reports sent, reports received.
    Stats(StatsArgs),
    /// Send the RFC 9990 aggregate reports of one UTC day (default: yesterday).
    Send(SendArgs),
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
    writeln!(
        out,
        "rows: {} ({} .. {})",
        s.rows,
        crate::report::day_of(s.oldest),
        crate::report::day_of(s.newest)
    )?;
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
        let line = serde_json::json!({
            "domain": s.domain,
            "destinations": s.destinations,
            "skipped": s.skipped,
            "report_id": s.report_id,
            "messages": s.messages,
            "file": s.file,
        });
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
    if !a.dry_run && config.report.failure_reports {
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

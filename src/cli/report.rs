//! `authgate report ...`: the DMARC report commands.

use std::io::Write;
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

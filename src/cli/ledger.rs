//! `ledger check|migrate|prune`.

use super::open_ledger;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ledger::Ledger;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Verify every invariant (one state per job, end times exactly for
    /// ended jobs, no dependent submitted before its parents finished, ...).
    /// Exits non-zero on a violation.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Copy the configured ledger (SQLite or PostgreSQL) into an empty PostgreSQL database (every
    /// table, ids kept), then check row counts and the invariants there.
    /// Refuses a target that is not empty. Stop every worker first.
    Migrate {
        /// postgres://USER@HOST:PORT/DATABASE (password: in the URL,
        /// ledger_password_file or PGPASSWORD).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Delete what is older than a duration: inbox rows (raw event bodies)
    /// and the result files of jobs that ended before it, with their rows.
    /// A job that has not ended keeps everything; jobs and runs stay. The
    /// worker does the same every hour with `retention_days`.
    Prune {
        /// How old, e.g. 30d, 12h, 90m.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Duration,
        #[arg(long)]
        json: bool,
    },
}

/// A duration such as `30d`, `12h` or `90m` (humantime's syntax).
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}): write it as 30d, 12h or 90m"))
}

pub(super) async fn run(cfg: &Config, cmd: LedgerCommand) -> Result<()> {
    match cmd {
        LedgerCommand::Check { json } => {
            let ledger = open_ledger(cfg).await?;
            let (n, violations) = ledger.check().await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"jobs": n, "violations": violations})
                    )?
                );
            } else {
                for v in &violations {
                    println!("violation: {v}");
                }
            }
            if !violations.is_empty() {
                bail!(
                    "{} ledger invariant violations in {}",
                    violations.len(),
                    cfg.ledger_location()?
                );
            }
            if !json {
                println!("ledger ok: {n} jobs checked");
            }
        }
        LedgerCommand::Prune { older_than, json } => {
            let ledger = open_ledger(cfg).await?;
            let report = crate::worker::prune(&ledger, older_than, SystemClock.now_ms()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "pruned {} inbox rows and the results of {} jobs ({} files)",
                    report.events, report.jobs, report.files_deleted
                );
            }
        }
        LedgerCommand::Migrate { to } => migrate(cfg, &to).await?,
    }
    Ok(())
}

/// `ledger migrate --to URL`.
async fn migrate(cfg: &Config, to: &str) -> Result<()> {
    let target_at = crate::ledger::location::parse(to, cfg.ledger_password_file.as_deref(), |k| {
        std::env::var(k).ok()
    })?;
    if !matches!(target_at, crate::ledger::Location::Postgres { .. }) {
        bail!("--to {target_at} is not a postgres:// URL: the target of a migration is PostgreSQL");
    }
    // Any ledger, SQLite or PostgreSQL (to another server, a new version,
    // a check that a copy is whole); the target must be empty, so it is
    // never the source itself unless that is empty too.
    let source = open_ledger(cfg).await?;
    let target = Ledger::connect(&target_at, 2)
        .await
        .with_context(|| format!("cannot open the target ledger {target_at}"))?;
    let before = target.counts().await?;
    let busy: Vec<String> = before
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{t}: {n} rows"))
        .collect();
    if !busy.is_empty() {
        bail!(
            "the target ledger {target_at} is not empty ({}): migrate into an empty database",
            busy.join(", ")
        );
    }
    let dump = source.dump().await?;
    target.restore(&dump).await?;
    let (from, into) = (source.summaries().await?, target.summaries().await?);
    for (a, b) in from.iter().zip(&into) {
        println!(
            "{:<15} checksum {} {}, {:>8} rows copied, {:>8} in the target",
            a.table,
            b.checksum,
            if a == b { "(equal)" } else { "(DIFFERENT)" },
            a.rows,
            b.rows,
        );
        if a != b {
            bail!(
                "table {}: the source has {} rows (checksum {}) but the target {} (checksum {})",
                a.table,
                a.rows,
                a.checksum,
                b.rows,
                b.checksum
            );
        }
    }
    for t in crate::ledger::tables::TABLES.iter() {
        if let Some(why) = t.not_copied {
            println!("{:<15} not copied: {why}", t.name);
        }
    }
    let (n, violations) = target.check().await?;
    for v in &violations {
        println!("violation: {v}");
    }
    if !violations.is_empty() {
        bail!("{} invariant violations in the target", violations.len());
    }
    println!(
        "ledger migrated to {target_at}: {n} jobs, ledger check ok; set ledger = \"{target_at}\" \
         (with the password in ledger_password_file or PGPASSWORD) for every worker"
    );
    Ok(())
}

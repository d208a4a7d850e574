//! `runs list|show|cancel`.

use super::{open_ledger, render, stop_statements};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use anyhow::{bail, Context, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List pipeline runs, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a run: its state and each job's state, attempts, timings, rows.
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run: running statements are stopped with CancelStatement,
    /// waiting jobs are CANCELLED.
    Cancel { run: String },
}

pub(super) async fn run(cfg: &Config, cmd: RunsCommand) -> Result<()> {
    let ledger = open_ledger(cfg).await?;
    match cmd {
        RunsCommand::List { json } => {
            let runs = ledger.runs().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                let columns = [
                    render::left("RUN"),
                    render::left("STATE"),
                    render::left("PIPELINE"),
                    render::left("CREATED"),
                    render::left("ENDED"),
                ];
                let rows = runs.iter().map(|r| {
                    vec![
                        r.id.clone(),
                        r.state.to_string(),
                        r.pipeline.clone(),
                        render::time(Some(r.created_at)),
                        render::time(r.finished_at),
                    ]
                });
                println!("{}", render::table(&columns, rows));
            }
        }
        RunsCommand::Show { run, json } => {
            let r = ledger
                .run(&run)
                .await?
                .with_context(|| format!("no run {run} (see `redrelay runs list`)"))?;
            let jobs = ledger.jobs(None, Some(&run)).await?;
            let started_by = ledger.trigger_event_of_run(&run).await?;
            if json {
                let mut out = Vec::new();
                for j in &jobs {
                    let mut v = serde_json::to_value(j)?;
                    if let Some(o) = v.as_object_mut() {
                        o.insert(
                            "depends_on".into(),
                            serde_json::to_value(ledger.deps(j.id).await?)?,
                        );
                        o.insert(
                            "attempts".into(),
                            serde_json::to_value(ledger.attempts(j.id).await?)?,
                        );
                    }
                    out.push(v);
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"run": r, "jobs": out, "trigger_event": started_by})
                    )?
                );
            } else {
                println!("run       {}", r.id);
                println!("pipeline  {}", r.pipeline);
                println!("state     {}", r.state);
                println!("created   {}", render::time(Some(r.created_at)));
                println!("ended     {}", render::time(r.finished_at));
                if let Some(e) = &started_by {
                    println!(
                        "started by trigger {}: event {} (parameters {})",
                        e.trigger,
                        e.event_id.as_deref().unwrap_or(&e.dedupe_key),
                        e.params
                    );
                }
                let columns = [
                    render::right("JOB"),
                    render::left("NAME"),
                    render::left("STATE"),
                    render::right("ATTEMPT"),
                    render::right("SECONDS"),
                    render::right("ROWS"),
                    render::left("ERROR"),
                ];
                let rows = jobs.iter().map(|j| {
                    let secs = match (j.submitted_at, j.finished_at) {
                        (Some(a), Some(b)) => format!("{:.1}", (b - a) as f64 / 1000.0),
                        _ => "-".into(),
                    };
                    vec![
                        j.id.to_string(),
                        j.name.clone(),
                        j.state.as_str().to_string(),
                        format!("{}/{}", j.attempt, j.max_attempts),
                        secs,
                        render::or_dash(j.result_rows.or(j.rows)),
                        render::first_line(j.error.as_deref()).to_string(),
                    ]
                });
                println!("{}", render::table(&columns, rows));
            }
        }
        RunsCommand::Cancel { run } => {
            let (n, statements) = match ledger.cancel_run(&run, SystemClock.now_ms()).await {
                Ok(done) => done,
                Err(crate::ledger::LedgerError::RunConflict { found, .. }) => {
                    bail!("run {run} is already {found}: nothing to cancel")
                }
                Err(e) => return Err(e.into()),
            };
            stop_statements(cfg, statements).await?;
            println!("run {run} CANCELLED ({n} jobs cancelled)");
        }
    }
    Ok(())
}

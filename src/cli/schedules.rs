//! `redrelay schedules ...`: pipeline files with a `[schedule]` table,
//! stored in the ledger (every worker sees the same definition without a
//! shared file system) and fired by the leader.

use super::{open_ledger, render};
use crate::clock::{Clock, SystemClock};
use crate::ledger::ScheduleRow;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Validate a pipeline file with a [schedule] table (as `pipeline
    /// validate` does) and store it, with the SQL files it names, under its
    /// pipeline name. Adding the same name again replaces the definition.
    Add { file: PathBuf },
    /// Every schedule: cron, time zone, paused, last and next fire time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One schedule: its definition and its latest firings.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop firing (the times missed while paused are never caught up).
    Pause { name: String },
    /// Fire again from now.
    Resume { name: String },
    /// Delete a schedule (its runs stay).
    Remove { name: String },
    /// One run of the schedule's pipeline now (`:scheduled_time` = now).
    Trigger { name: String },
}

fn row(ledger_rows: Vec<ScheduleRow>, name: &str) -> Result<ScheduleRow> {
    ledger_rows
        .into_iter()
        .find(|s| s.name == name)
        .with_context(|| format!("no schedule {name:?} (see `redrelay schedules list`)"))
}

/// A row of `schedules list --json`.
fn describe(s: &ScheduleRow) -> Result<serde_json::Value> {
    Ok(serde_json::to_value(crate::ops::describe_schedule(
        s,
        SystemClock.now_ms(),
    )?)?)
}

pub(super) async fn run(cfg: &crate::config::Config, cmd: SchedulesCommand) -> Result<()> {
    let ledger = &open_ledger(cfg).await?;
    let now = SystemClock.now_ms();
    match cmd {
        SchedulesCommand::Add { file } => {
            let (p, text, files) = crate::pipeline::load_for_schedule(&file)?;
            if p.schedule.is_none() {
                bail!(
                    "{} has no [schedule] table: add one (cron = \"0 2 * * *\", see docs/pipelines.md), \
                     or run it with `redrelay pipeline run`",
                    file.display()
                );
            }
            // The jobs must be plannable with this configuration's targets.
            p.plan_run(&[], crate::clock::timestamp(now)?, &cfg.default_target())?;
            ledger
                .put_schedule(&p.name, &text, &serde_json::to_string(&files)?, now)
                .await?;
            let shown = describe(&row(ledger.schedules().await?, &p.name)?)?;
            println!(
                "schedule {} stored: {} ({}), next fire {}",
                p.name,
                shown["cron"].as_str().unwrap_or("-"),
                shown["timezone"].as_str().unwrap_or("-"),
                shown["next_fire_at"].as_str().unwrap_or("-")
            );
        }
        SchedulesCommand::List { json } => {
            let rows: Vec<serde_json::Value> = ledger
                .schedules()
                .await?
                .iter()
                .map(describe)
                .collect::<Result<_>>()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let columns = [
                    render::left("NAME"),
                    render::left("CRON"),
                    render::left("TIMEZONE"),
                    render::left("PAUSED"),
                    render::left("LAST"),
                    render::left("NEXT"),
                ];
                let text =
                    |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("-").to_string();
                let rows = rows.iter().map(|r| {
                    let cron = match r["error"].as_str() {
                        Some(_) => "(does not parse: see `schedules show`)".to_string(),
                        None => text(r, "cron"),
                    };
                    vec![
                        text(r, "name"),
                        cron,
                        text(r, "timezone"),
                        r["paused"].to_string(),
                        text(r, "last_fired_at"),
                        text(r, "next_fire_at"),
                    ]
                });
                println!("{}", render::table(&columns, rows));
            }
        }
        SchedulesCommand::Show { name, json } => {
            let s = row(ledger.schedules().await?, &name)?;
            let mut shown = describe(&s)?;
            let fires: Vec<serde_json::Value> = ledger
                .schedule_fires(&name, 20)
                .await?
                .into_iter()
                .map(|(t, run, note)| {
                    serde_json::json!({
                        "scheduled_time": crate::clock::timestamp(t).map(|t| t.to_string()).unwrap_or_default(),
                        "run": run,
                        "note": note,
                    })
                })
                .collect();
            if let Some(o) = shown.as_object_mut() {
                o.insert("fires".into(), serde_json::Value::from(fires));
                if !json {
                    o.insert("definition".into(), serde_json::Value::from(s.text.clone()));
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                for (k, v) in shown.as_object().into_iter().flatten() {
                    if k == "definition" || k == "fires" {
                        continue;
                    }
                    println!(
                        "{k:<14} {}",
                        v.as_str().map(str::to_string).unwrap_or(v.to_string())
                    );
                }
                println!("fires:");
                for f in shown["fires"].as_array().into_iter().flatten() {
                    println!(
                        "  {}  {}  {}",
                        f["scheduled_time"].as_str().unwrap_or("-"),
                        f["run"].as_str().unwrap_or("-"),
                        f["note"].as_str().unwrap_or("")
                    );
                }
                println!("definition:\n{}", s.text);
            }
        }
        SchedulesCommand::Pause { name } => {
            if !ledger.set_schedule_paused(&name, true, now).await? {
                bail!("no schedule {name:?} (see `redrelay schedules list`)");
            }
            println!("schedule {name} paused");
        }
        SchedulesCommand::Resume { name } => {
            if !ledger.set_schedule_paused(&name, false, now).await? {
                bail!("no schedule {name:?} (see `redrelay schedules list`)");
            }
            println!("schedule {name} resumed: it fires from now on");
        }
        SchedulesCommand::Remove { name } => {
            if !ledger.remove_schedule(&name).await? {
                bail!("no schedule {name:?} (see `redrelay schedules list`)");
            }
            println!("schedule {name} removed");
        }
        SchedulesCommand::Trigger { name } => {
            let s = row(ledger.schedules().await?, &name)?;
            println!(
                "{}",
                crate::ops::run_schedule_now(ledger, cfg, &s, &[], now).await?
            );
        }
    }
    Ok(())
}

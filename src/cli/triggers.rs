//! `redrelay triggers ...`: pipeline files with a `[trigger]` table, stored
//! in the ledger (every worker sees the same definition) and started by the
//! events that match their pattern.

use super::{open_ledger, render};
use crate::clock::{Clock, SystemClock};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum TriggersCommand {
    /// Validate a pipeline file with a [trigger] table (as `pipeline
    /// validate` does) and store it, with the SQL files it names, under its
    /// pipeline name. Adding the same name again replaces the definition.
    /// Then makes the triggers' EventBridge rules (one each, to the
    /// queue), as `redrelay setup` does.
    Add { file: PathBuf },
    /// Every trigger: its pattern, paused or not, and its events by state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One trigger: its definition and its latest events (what each
    /// started, or why it waits or was not started).
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop starting runs: events keep arriving and wait in the ledger (or
    /// are dropped, with `on_pause = "drop"`), and start on resume.
    Pause { name: String },
    /// Start runs again, first for the events that waited.
    Resume { name: String },
    /// Delete a trigger (its runs stay; its waiting events are dropped) and
    /// its EventBridge rule.
    Remove { name: String },
    /// One EventBridge pattern matching the events of every stored trigger
    /// (the $or of their patterns), for the CloudFormation stack's
    /// TriggerEventPattern.
    Pattern,
    /// Which run this event would start, with which parameters: nothing is
    /// recorded or started. FILE is a pipeline file with a [trigger] table.
    Test {
        file: PathBuf,
        /// The event, as EventBridge delivers it (a JSON file).
        #[arg(long)]
        event: PathBuf,
    },
}

fn describe(t: &crate::ledger::TriggerRow, counts: &[(String, i64)]) -> serde_json::Value {
    serde_json::to_value(crate::ops::describe_trigger(t, counts)).unwrap_or_default()
}

pub(super) async fn run(cfg: &crate::config::Config, cmd: TriggersCommand) -> Result<()> {
    if let TriggersCommand::Test { file, event } = &cmd {
        return test(cfg, file, event);
    }
    let ledger = &open_ledger(cfg).await?;
    let now = SystemClock.now_ms();
    let missing = |name: &str| format!("no trigger {name:?} (see `redrelay triggers list`)");
    match cmd {
        TriggersCommand::Add { file } => {
            let (p, text, files) = crate::pipeline::load_for_schedule(&file)?;
            if p.trigger.is_none() {
                bail!(
                    "{} has no [trigger] table: add one ([trigger.pattern] with source = [\"...\"], see docs/triggers.md), \
                     or run it with `redrelay pipeline run`",
                    file.display()
                );
            }
            ledger
                .put_trigger(&p.name, &text, &serde_json::to_string(&files)?, now)
                .await?;
            sync_rules(cfg, ledger, &format!("trigger {} stored", p.name)).await?;
        }
        TriggersCommand::List { json } => {
            let mut rows = Vec::new();
            for t in ledger.triggers().await? {
                let counts = ledger.trigger_event_counts(&t.name).await?;
                rows.push(describe(&t, &counts));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let columns = [
                    render::left("NAME"),
                    render::left("PAUSED"),
                    render::left("PATTERN"),
                    render::left("EVENTS"),
                ];
                let rows = rows.iter().map(|r| {
                    let pattern = match r["error"].as_str() {
                        Some(_) => "(does not parse: see `triggers show`)".to_string(),
                        None => r["pattern"].to_string(),
                    };
                    let events = r["events"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    vec![
                        r["name"].as_str().unwrap_or("-").to_string(),
                        r["paused"].to_string(),
                        pattern,
                        events,
                    ]
                });
                println!("{}", render::table(&columns, rows));
            }
        }
        TriggersCommand::Show { name, json } => {
            let t = ledger
                .triggers()
                .await?
                .into_iter()
                .find(|t| t.name == name)
                .with_context(|| missing(&name))?;
            let counts = ledger.trigger_event_counts(&name).await?;
            let mut shown = describe(&t, &counts);
            let events = ledger.trigger_events(Some(&name), 20).await?;
            shown["latest_events"] = serde_json::to_value(&events)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                for k in [
                    "name",
                    "paused",
                    "pipeline",
                    "overlap",
                    "max_active_runs",
                    "error",
                ] {
                    if !shown[k].is_null() {
                        println!("{k:<16} {}", shown[k]);
                    }
                }
                println!("{:<16} {}", "pattern", shown["pattern"]);
                println!("{:<16} {}", "params", shown["params"]);
                println!("{:<16} {}", "events", shown["events"]);
                println!("latest events:");
                for e in &events {
                    println!(
                        "  {}  {}  {}  {}  {}",
                        crate::clock::timestamp(e.received_at)
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                        e.state,
                        e.run_id.as_deref().unwrap_or("-"),
                        e.params,
                        e.note.as_deref().unwrap_or("")
                    );
                }
                println!("definition:\n{}", t.text);
            }
        }
        TriggersCommand::Pause { name } => {
            if !ledger.set_trigger_paused(&name, true, now).await? {
                bail!(missing(&name));
            }
            println!("trigger {name} paused: its events wait in the ledger until it is resumed");
        }
        TriggersCommand::Resume { name } => {
            if !ledger.set_trigger_paused(&name, false, now).await? {
                bail!(missing(&name));
            }
            println!("trigger {name} resumed: the events that waited start first");
        }
        TriggersCommand::Remove { name } => {
            if !ledger.remove_trigger(&name, now).await? {
                bail!(missing(&name));
            }
            sync_rules(cfg, ledger, &format!("trigger {name} removed")).await?;
        }
        TriggersCommand::Pattern => {
            let mut patterns: Vec<serde_json::Value> = crate::ops::trigger_patterns(ledger)
                .await?
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            let joined = match patterns.len() {
                0 => bail!("no triggers are stored (`redrelay triggers add FILE` stores one)"),
                1 => patterns.remove(0),
                _ => serde_json::json!({ "$or": patterns }),
            };
            println!("{joined}");
        }
        TriggersCommand::Test { .. } => {}
    }
    Ok(())
}

/// Makes the triggers' EventBridge rules match the stored triggers (as
/// `redrelay setup` does), after `done`.
async fn sync_rules(
    cfg: &crate::config::Config,
    ledger: &crate::ledger::Ledger,
    done: &str,
) -> Result<()> {
    match super::setup_with_triggers(cfg, ledger).await {
        Ok(report) => {
            println!(
                "{done}; EventBridge rules of triggers: {}",
                report
                    .trigger_rules
                    .iter()
                    .map(|r| r.rule_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Err(e) => bail!(
            "{done} in the ledger, but its EventBridge rule could not be made or removed: {}: \
             run `redrelay setup` once AWS answers",
            crate::ops::error_text(&e)
        ),
    }
}

/// `triggers test FILE --event EVENT.json`: what the event would do.
fn test(
    cfg: &crate::config::Config,
    file: &std::path::Path,
    event: &std::path::Path,
) -> Result<()> {
    let p = crate::pipeline::load(file)?;
    let Some(spec) = &p.trigger else {
        bail!("{} has no [trigger] table", file.display());
    };
    let text = std::fs::read_to_string(event)
        .with_context(|| format!("cannot read {}", event.display()))?;
    let ev: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", event.display()))?;
    if !spec.matches(&ev) {
        println!("no match: this event does not match the trigger's pattern; nothing would start");
        return Ok(());
    }
    let evaluated = spec.evaluate(&ev).map_err(|e| {
        anyhow::anyhow!("the event matches, but {e}: it would be recorded as FAILED")
    })?;
    let given: Vec<(String, String)> = evaluated
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let jobs = p.plan_run(
        &given,
        crate::clock::timestamp(SystemClock.now_ms())?,
        &cfg.default_target(),
    )?;
    println!("match: a run of pipeline {} ({} jobs)", p.name, jobs.len());
    for (k, v) in &evaluated.params {
        println!("  param {k} = {v}");
    }
    println!("  dedupe key {}", evaluated.dedupe_key);
    Ok(())
}

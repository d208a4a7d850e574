//! `events`: the inbox, the latest consumed messages and what became of
//! them.

use super::{open_ledger, render};
use crate::config::Config;
use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// How many of the latest messages to show.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Include the raw bodies.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(cfg: &Config, args: EventsArgs) -> Result<()> {
    let ledger = open_ledger(cfg).await?;
    let events = ledger.inbox(args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(());
    }
    let columns = [
        render::right("SEQ"),
        render::left("DISPOSITION"),
        render::right("JOB"),
        render::left("STATE"),
        render::left("STATEMENT"),
        render::left("REASON"),
    ];
    let rows = events.into_iter().map(|e| {
        vec![
            e.seq.to_string(),
            e.disposition.to_string(),
            e.job_id.map(|j| j.to_string()).unwrap_or_default(),
            e.state.unwrap_or_default(),
            e.statement_id.unwrap_or_default(),
            e.reason.unwrap_or_default(),
        ]
    });
    println!("{}", render::table(&columns, rows));
    Ok(())
}

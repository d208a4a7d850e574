//! `workers list`.

use super::{open_ledger, render};
use crate::config::Config;
use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Live workers (a heartbeat within the last 15 s): id, host, pid,
    /// start, last heartbeat, and which one is the leader.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(cfg: &Config, cmd: WorkersCommand) -> Result<()> {
    let WorkersCommand::List { json } = cmd;
    let ledger = open_ledger(cfg).await?;
    let workers = ledger.workers(crate::worker::LIVE_MS).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&workers)?);
        return Ok(());
    }
    let columns = [
        render::left("WORKER"),
        render::left("HOST"),
        render::right("PID"),
        render::left("STARTED"),
        render::left("HEARTBEAT"),
        render::left("LEADER"),
    ];
    let rows = workers.iter().map(|w| {
        vec![
            w.id.clone(),
            w.host.clone(),
            w.pid.to_string(),
            render::time(Some(w.started_at)),
            render::time(Some(w.heartbeat_at)),
            w.leader.to_string(),
        ]
    });
    println!("{}", render::table(&columns, rows));
    Ok(())
}

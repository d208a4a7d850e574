//! `jobs list|show|cancel|retry`.

use super::{open_ledger, render, stop_statements};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ledger::{Job, Ledger};
use crate::state::JobState;
use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, oldest first.
    List {
        /// Only jobs in this state (e.g. FAILED).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a job: state, statement id, attempts, timestamps, rows, results,
    /// error.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: a running statement is stopped with CancelStatement, a
    /// waiting job is CANCELLED; what depends on it is SKIPPED.
    Cancel { id: i64 },
    /// Give a FAILED, ABORTED, CANCELLED or SKIPPED job one more attempt,
    /// and revive the jobs it skipped.
    Retry { id: i64 },
}

pub(super) async fn run(cfg: &Config, cmd: JobsCommand) -> Result<()> {
    let ledger = open_ledger(cfg).await?;
    match cmd {
        JobsCommand::List { state, json } => {
            let state = state
                .map(|s| s.to_ascii_uppercase().parse::<JobState>())
                .transpose()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{e}; states are {}",
                        JobState::ALL.map(|s| s.as_str()).join(", ")
                    )
                })?;
            let jobs = ledger.jobs(state, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print_jobs(&jobs);
            }
        }
        JobsCommand::Show { id, json } => show_job(&ledger, id, json).await?,
        JobsCommand::Cancel { id } => {
            let (changed, statement) = ledger.cancel_job(id, SystemClock.now_ms()).await?;
            if !changed {
                let job = ledger.job(id).await?;
                bail!("job {id} is already {}: nothing to cancel", job.state);
            }
            stop_statements(cfg, statement.map(|s| (id, s)).into_iter().collect()).await?;
            println!("job {id} CANCELLED");
        }
        JobsCommand::Retry { id } => {
            let state = ledger.retry_job(id, SystemClock.now_ms()).await?;
            println!("job {id} is {state}: the worker will submit it");
        }
    }
    Ok(())
}

/// The jobs table (`jobs list`).
fn print_jobs(jobs: &[Job]) {
    let columns = [
        render::right("ID"),
        render::left("STATE"),
        render::left("NAME").at_most(24),
        render::right("ATTEMPT"),
        render::right("ROWS"),
        render::left("STATEMENT"),
        render::left("ERROR"),
    ];
    let rows = jobs.iter().map(|j| {
        vec![
            j.id.to_string(),
            j.state.as_str().to_string(),
            j.name.clone(),
            format!("{}/{}", j.attempt, j.max_attempts),
            render::or_dash(j.result_rows.or(j.rows)),
            render::or_dash(j.statement_id.as_deref()),
            render::first_line(j.error.as_deref()).to_string(),
        ]
    });
    println!("{}", render::table(&columns, rows));
}

async fn show_job(ledger: &Ledger, id: i64, json: bool) -> Result<()> {
    let job = ledger.job(id).await?;
    let deps = ledger.deps(id).await?;
    let attempts = ledger.attempts(id).await?;
    let results = ledger.results(id).await?;
    if json {
        let mut value = serde_json::to_value(&job)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("depends_on".into(), serde_json::to_value(&deps)?);
            obj.insert(
                "param_names".into(),
                serde_json::to_value(job.param_names())?,
            );
            obj.insert("attempts".into(), serde_json::to_value(&attempts)?);
            obj.insert("results".into(), serde_json::to_value(&results)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let target = job
        .workgroup
        .as_ref()
        .map(|w| format!("workgroup {w}"))
        .or_else(|| job.cluster.as_ref().map(|c| format!("cluster {c}")))
        .unwrap_or_else(|| "-".into());
    println!("job          {}", job.id);
    println!("name         {}", job.name);
    if let Some(run) = &job.run_id {
        println!("run          {run}");
    }
    println!("state        {}", job.state);
    println!(
        "target       {target}, database {}",
        job.database.as_deref().unwrap_or("-")
    );
    println!("attempt      {} of {}", job.attempt, job.max_attempts);
    println!(
        "statement    {}",
        job.statement_id.as_deref().unwrap_or("-")
    );
    if !deps.is_empty() {
        let d: Vec<String> = deps.iter().map(|d| d.to_string()).collect();
        println!("after        {}", d.join(", "));
    }
    if !job.params.is_empty() {
        println!("parameters   {}", job.param_names().join(", "));
    }
    println!("created      {}", render::time(Some(job.created_at)));
    println!("ready        {}", render::time(job.ready_at));
    println!("submitted    {}", render::time(job.submitted_at));
    println!("ended        {}", render::time(job.finished_at));
    println!("rows         {}", render::or_dash(job.rows));
    if let Some(rs) = &job.result_state {
        println!(
            "results      {}{}{}",
            rs,
            job.result_rows
                .map(|r| format!(", {r} rows"))
                .unwrap_or_default(),
            job.result_path
                .as_ref()
                .map(|p| format!(", in {p}"))
                .unwrap_or_default()
        );
    }
    if let Some(e) = &job.result_error {
        println!("result error {e}");
    }
    if let Some(e) = &job.error {
        println!("error        {e}");
    }
    for (i, sql) in job.sqls.iter().enumerate() {
        let label = if job.sqls.len() > 1 {
            format!("sql {}", i + 1)
        } else {
            "sql".into()
        };
        println!(
            "{label:<12} {}",
            sql.trim().replace('\n', "\n             ")
        );
    }
    if !attempts.is_empty() {
        println!("attempts:");
        for a in &attempts {
            println!(
                "  #{} {:<10} statement {}  submitted {}  ended {}{}",
                a.attempt,
                a.state,
                a.statement_id.as_deref().unwrap_or("-"),
                render::time(a.submitted_at),
                render::time(a.finished_at),
                a.error
                    .as_ref()
                    .map(|e| format!("  error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    for r in &results {
        let label = if r.sub == 0 {
            "result".to_string()
        } else {
            format!("result {}", r.sub)
        };
        let files: Vec<&str> = [r.csv_path.as_str(), r.jsonl_path.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        println!("{label:<12} {} rows in {}", r.rows, files.join(", "));
    }
    Ok(())
}

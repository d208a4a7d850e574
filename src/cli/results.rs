//! `results`: a job's fetched result.

use super::{open_ledger, render};
use crate::config::Config;
use crate::state::{JobState, ResultState};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResultFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Job id.
    pub id: i64,
    /// Which file to print: csv, or jsonl when the job kept JSON Lines
    /// (`result_formats`; the default keeps CSV only).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ResultFormat,
    /// For a batch: the sub-statement (1-based) whose result to print
    /// (default: the last one with a result set).
    #[arg(long)]
    pub statement: Option<i64>,
    /// Print where the result files are, as JSON, instead of their content.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(cfg: &Config, args: ResultsArgs) -> Result<()> {
    let ledger = open_ledger(cfg).await?;
    let job = ledger.job(args.id).await?;
    let files = ledger.results(args.id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&files)?);
        return Ok(());
    }
    if files.is_empty() {
        let why = match (job.state, job.result_state) {
            (_, _) if job.results_pruned_at.is_some() => format!(
                "its result files were deleted by retention at {}",
                render::time(job.results_pruned_at)
            ),
            (JobState::Finished, Some(ResultState::None)) => {
                "its statement returned no result set".to_string()
            }
            (JobState::Finished, Some(ResultState::Pending)) => {
                "its results are not fetched yet: is `redrelay worker` running?".to_string()
            }
            (JobState::Finished, Some(s)) => format!(
                "its results are {s}: {}",
                job.result_error.as_deref().unwrap_or("-")
            ),
            (state, _) => format!("it is {state}, not FINISHED"),
        };
        bail!("job {} has no result: {why}", args.id);
    }
    let file = match args.statement {
        Some(n) => files.iter().find(|f| f.sub == n).with_context(|| {
            let subs: Vec<String> = files.iter().map(|f| f.sub.to_string()).collect();
            format!(
                "job {} has no result for statement {n}; it has results for: {}",
                args.id,
                subs.join(", ")
            )
        })?,
        None => files.last().context("no result file")?,
    };
    let (path, name) = match args.format {
        ResultFormat::Csv => (&file.csv_path, "csv"),
        ResultFormat::Jsonl => (&file.jsonl_path, "jsonl"),
    };
    if path.is_empty() {
        bail!(
            "job {} kept its results as {} only, not {name} (result_formats); \
             run `redrelay results {} --format {}`, or give the job result_formats = \"csv,jsonl\"",
            args.id,
            if name == "csv" { "jsonl" } else { "csv" },
            args.id,
            if name == "csv" { "jsonl" } else { "csv" },
        );
    }
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    std::io::copy(&mut f, &mut std::io::stdout().lock())?;
    Ok(())
}

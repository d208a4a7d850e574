//! `pipeline validate|run|graph`.

use super::{open_ledger, submit::parse_param};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use anyhow::{bail, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Check a pipeline file: unknown keys, duplicate names, missing
    /// dependencies, cycles, SQL and parameter references. Submits nothing.
    Validate { file: PathBuf },
    /// Record a run of the pipeline (every job, in one transaction) and
    /// print its id; the worker submits the jobs as their dependencies
    /// finish.
    Run {
        file: PathBuf,
        /// A run-time parameter declared in the file's [params], as
        /// name=value. Repeatable.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Print the run and its jobs as JSON instead of the run id.
        #[arg(long)]
        json: bool,
    },
    /// Draw the job graph of a pipeline file, or of a run with each job's
    /// state.
    Graph {
        /// A pipeline file, or a run id.
        source: String,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: crate::pipeline::GraphFormat,
    },
}

pub(super) async fn run(cfg: &Config, cmd: PipelineCommand) -> Result<()> {
    match cmd {
        PipelineCommand::Validate { file } => {
            let p = crate::pipeline::load(&file)?;
            let names: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
            println!(
                "{}: valid pipeline {:?}: {} jobs ({})",
                file.display(),
                p.name,
                names.len(),
                names.join(", ")
            );
        }
        PipelineCommand::Run { file, params, json } => {
            let given = params
                .iter()
                .map(|p| parse_param(p).map(|p| (p.name, p.value)))
                .collect::<Result<Vec<_>>>()?;
            let p = crate::pipeline::load(&file)?;
            let now = SystemClock.now_ms();
            let jobs = p.plan_run(&given, crate::clock::timestamp(now)?, &cfg.default_target())?;
            let ledger = open_ledger(cfg).await?;
            let (run, ids) = ledger.create_run(&p.name, &jobs, now).await?;
            if json {
                let jobs = ledger.jobs(None, Some(&run)).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"run": run, "jobs": jobs}))?
                );
            } else {
                println!("{run}");
                eprintln!(
                    "run {run} of {:?}: {} jobs recorded; `redrelay worker` submits them",
                    p.name,
                    ids.len()
                );
            }
        }
        PipelineCommand::Graph { source, format } => {
            let path = PathBuf::from(&source);
            if path.exists() {
                let p = crate::pipeline::load(&path)?;
                print!("{}", p.graph(format, &Default::default()));
            } else {
                let ledger = open_ledger(cfg).await?;
                if ledger.run(&source).await?.is_none() {
                    bail!("{source} is neither a pipeline file nor a run id (see `redrelay runs list`)");
                }
                let jobs = ledger.jobs(None, Some(&source)).await?;
                let name_of: std::collections::HashMap<i64, &str> =
                    jobs.iter().map(|j| (j.id, j.name.as_str())).collect();
                let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
                let edges_raw = ledger.run_edges(&source).await?;
                let edges: Vec<(&str, &str)> = edges_raw
                    .iter()
                    .filter_map(|(job, dep)| Some((*name_of.get(dep)?, *name_of.get(job)?)))
                    .collect();
                let states = jobs
                    .iter()
                    .map(|j| (j.name.clone(), j.state.as_str().to_string()))
                    .collect();
                print!(
                    "{}",
                    crate::pipeline::graph(format, &names, &edges, &states)
                );
            }
        }
    }
    Ok(())
}

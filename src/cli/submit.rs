//! `submit`: record one job and submit it when there is room.

use super::open_ledger;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::dataapi::DataApi;
use crate::ledger::{NewJob, Param};
use crate::state::JobState;
use crate::worker::{self, Submitted};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// SQL to run. Repeat to run several statements as one batch
    /// (BatchExecuteStatement, one transaction).
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub sql: Vec<String>,
    /// File holding the SQL to run (one statement).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Name of the job (shown in listings and in the StatementName).
    #[arg(long)]
    pub name: Option<String>,
    /// A `:name` parameter of the SQL, as name=value. Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Redshift Serverless workgroup (default: `workgroup` in the config).
    #[arg(long, conflicts_with = "cluster")]
    pub workgroup: Option<String>,
    /// Provisioned cluster identifier (default: `cluster` in the config).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Database (default: `database` in the config).
    #[arg(long)]
    pub database: Option<String>,
    /// Database user, for a cluster with temporary credentials.
    #[arg(long)]
    pub db_user: Option<String>,
    /// Secrets Manager ARN holding the database credentials.
    #[arg(long)]
    pub secret_arn: Option<String>,
    /// Run only after this job has FINISHED. Repeatable.
    #[arg(long = "after", value_name = "JOB")]
    pub after: Vec<i64>,
    /// The files its results are written as: csv, jsonl or csv,jsonl
    /// (default: `result_formats` in the config, csv).
    #[arg(long, value_name = "FORMATS", value_parser = parse_formats)]
    pub result_formats: Option<crate::domain::ResultFormats>,
    /// Attempts in all (1 = no retry).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..=100))]
    pub max_attempts: i64,
    /// Print the job as JSON instead of its id.
    #[arg(long)]
    pub json: bool,
}

fn parse_formats(s: &str) -> Result<crate::domain::ResultFormats, String> {
    crate::domain::ResultFormats::parse(s)
}

pub(super) fn parse_param(s: &str) -> Result<Param> {
    let (name, value) = s
        .split_once('=')
        .with_context(|| format!("--param {s:?}: write it as name=value"))?;
    crate::domain::param(name, value).map_err(|e| anyhow::anyhow!("--param {s:?}: {e}"))
}

pub(super) async fn run(cfg: &Config, args: SubmitArgs) -> Result<()> {
    let sqls = match &args.file {
        Some(path) => vec![std::fs::read_to_string(path)
            .with_context(|| format!("cannot read SQL file {}", path.display()))?],
        None => args.sql.clone(),
    };
    if sqls.iter().any(|s| s.trim().is_empty()) {
        bail!("the SQL is empty: give it with --sql or --file");
    }
    crate::domain::check_batch_size(sqls.len()).map_err(anyhow::Error::msg)?;
    let params = args
        .params
        .iter()
        .map(|p| parse_param(p))
        .collect::<Result<Vec<_>>>()?;
    let target = crate::domain::Target {
        workgroup: args.workgroup.clone(),
        cluster: args.cluster.clone(),
        database: args.database.clone(),
        db_user: args.db_user.clone(),
        secret_arn: args.secret_arn.clone(),
    }
    .over(&cfg.default_target());
    target.check().map_err(anyhow::Error::msg)?;
    let name = args.name.clone().unwrap_or_else(|| "adhoc".to_string());

    let ledger = open_ledger(cfg).await?;
    let clock = SystemClock;
    let job = ledger
        .insert_job(
            &NewJob {
                name,
                sqls,
                params,
                target,
                depends_on: args.after.clone(),
                max_attempts: args.max_attempts,
                retry: None,
                timeout_secs: None,
                execution_mode: None,
                result_formats: args.result_formats,
                session_keep_alive_secs: None,
                run_id: None,
            },
            clock.now_ms(),
        )
        .await?;
    // Submitted now when there is room under the in-flight limits (counted
    // in the ledger, with the worker's statements), within the configured
    // rate limits; otherwise it stays READY and the worker submits it.
    if job.state == JobState::Ready {
        let sdk = crate::aws::sdk_config().await?;
        let api = DataApi::with_rate_scale(&sdk, cfg.api_rate_scale);
        let claimant = format!("cli-{}", std::process::id());
        match worker::submit_job(&ledger, &api, &clock, &job, cfg, &claimant, None).await? {
            Submitted::Statement(_) | Submitted::NotReady | Submitted::Waiting => {}
            Submitted::NoRoom(why) => eprintln!(
                "job {} is recorded READY: {why}; the worker submits it when a slot frees",
                job.id
            ),
            Submitted::Throttled(m) | Submitted::Transient(m) => eprintln!(
                "job {} is recorded but not submitted yet ({m}); the worker will submit it",
                job.id
            ),
            Submitted::Rejected(m) => bail!("job {} FAILED: {m}", job.id),
        }
    }
    let job = ledger.job(job.id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        println!("{}", job.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse() {
        assert_eq!(
            parse_param("day=2026-11-25").unwrap(),
            Param {
                name: "day".into(),
                value: "2026-11-25".into(),
                from: None,
            }
        );
        assert_eq!(parse_param(":n=a=b").unwrap().value, "a=b");
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("x=").is_err());
        assert!(parse_param("bad name=1").is_err());
    }
}

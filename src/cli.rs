//! The command line: argument parsing and the operator commands' output.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::dataapi::DataApi;
use crate::event::Origin;
use crate::ledger::{Job, Ledger, NewJob, Param};
use crate::state::{JobState, ResultState};
use crate::worker::{self, Submitted, Worker};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs SQL on Amazon Redshift through the Data API and reacts to the
/// statements' completion events (EventBridge -> SQS) instead of polling.
///
/// Endpoints, credentials and region come from the standard AWS
/// configuration chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_SQS,
/// AWS_ENDPOINT_URL_EVENTBRIDGE, AWS_ENDPOINT_URL_REDSHIFT_DATA, ...).
#[derive(Debug, Parser)]
#[command(name = "redrelay", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (default: ./redrelay.toml when it exists). Every
    /// key can be overridden by REDRELAY_<KEY>, e.g. REDRELAY_LEDGER.
    #[arg(long, global = true, env = "REDRELAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log lines on stderr as `text` (for people) or `json` (one object a
    /// line: time, level, message and fields such as job, run, statement).
    #[arg(
        long,
        global = true,
        env = "REDRELAY_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the SQS queue, its dead-letter queue, the queue policy and the
    /// EventBridge rule and target (idempotent). Prints what it made as JSON.
    Setup,
    /// Record a job and submit it (WithEvent=true) when the in-flight limits
    /// leave room (else the worker submits it), or leave it waiting on the
    /// jobs given with --after.
    Submit(SubmitArgs),
    /// Consume completion events, fetch results and submit waiting jobs.
    Worker(WorkerArgs),
    /// List and inspect jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Validate, run and draw pipeline files (a DAG of jobs in TOML).
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// List, inspect and cancel pipeline runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Print a job's fetched result.
    Results(ResultsArgs),
    /// Show the inbox: the latest consumed messages and what became of them.
    Events(EventsArgs),
    /// Check the ledger's invariants.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Look at and redrive the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The workers sharing the ledger.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// Pipelines that run by themselves: add, list, pause, resume, trigger.
    #[command(subcommand)]
    Schedules(crate::cli_schedules::SchedulesCommand),
    /// Run the local Redshift Data API emulator (SQL runs on a SQLite file).
    Emulator(Box<crate::emulator::EmulatorArgs>),
}

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
    /// Attempts in all (1 = no retry).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..=100))]
    pub max_attempts: i64,
    /// Print the job as JSON instead of its id.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Exit 0 once no job is waiting, in flight or awaiting its results.
    #[arg(long)]
    pub until_idle: bool,
    /// Seconds to let in-flight work finish after SIGINT or SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
}

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

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Verify every invariant (one state per job, end times exactly for
    /// ended jobs, no dependent submitted before its parents finished, ...).
    /// Exits non-zero on a violation.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Copy the configured ledger into an empty PostgreSQL database (every
    /// table, ids kept), then check row counts and the invariants there.
    /// Refuses a target that is not empty. Stop the worker first.
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

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Live workers (a heartbeat within the last 15 s): id, host, pid,
    /// start, last heartbeat, and which one is the leader.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show the messages in the dead-letter queue (they stay there).
    List {
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Move messages from the dead-letter queue back to the queue.
    Redrive {
        /// At most this many messages.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResultFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Job id.
    pub id: i64,
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

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// How many of the latest messages to show.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Include the raw bodies.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<()> {
    if let Command::Emulator(args) = cli.command {
        return crate::emulator::run(*args, shutdown).await;
    }
    let cfg = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())?;
    match cli.command {
        Command::Setup => {
            let sdk = crate::aws::sdk_config().await?;
            let report = crate::setup::run(&sdk, &cfg).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Submit(args) => submit(&cfg, args).await?,
        Command::Worker(args) => run_worker(cfg, args, shutdown).await?,
        Command::Jobs(JobsCommand::List { state, json }) => {
            let ledger = open_ledger(&cfg).await?;
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
        Command::Jobs(JobsCommand::Show { id, json }) => {
            let ledger = open_ledger(&cfg).await?;
            show_job(&ledger, id, json).await?;
        }
        Command::Jobs(JobsCommand::Cancel { id }) => {
            let ledger = open_ledger(&cfg).await?;
            let (changed, statement) = ledger.cancel_job(id, SystemClock.now_ms()).await?;
            if !changed {
                let job = ledger.job(id).await?;
                bail!("job {id} is already {}: nothing to cancel", job.state);
            }
            stop_statements(&cfg, statement.map(|s| (id, s)).into_iter().collect()).await?;
            println!("job {id} CANCELLED");
        }
        Command::Jobs(JobsCommand::Retry { id }) => {
            let ledger = open_ledger(&cfg).await?;
            let state = ledger.retry_job(id, SystemClock.now_ms()).await?;
            println!("job {id} is {state}: the worker will submit it");
        }
        Command::Ledger(LedgerCommand::Check { json }) => {
            let ledger = open_ledger(&cfg).await?;
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
        Command::Ledger(LedgerCommand::Prune { older_than, json }) => {
            let ledger = open_ledger(&cfg).await?;
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
        Command::Ledger(LedgerCommand::Migrate { to }) => migrate(&cfg, &to).await?,
        Command::Workers(WorkersCommand::List { json }) => {
            let ledger = open_ledger(&cfg).await?;
            let workers = ledger.workers(crate::worker::LIVE_MS).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&workers)?);
            } else {
                println!(
                    "{:<40}  {:<20}  {:>7}  {:<24}  {:<24}  LEADER",
                    "WORKER", "HOST", "PID", "STARTED", "HEARTBEAT"
                );
                for w in workers {
                    println!(
                        "{:<40}  {:<20}  {:>7}  {:<24}  {:<24}  {}",
                        w.id,
                        w.host,
                        w.pid,
                        fmt_time(Some(w.started_at)),
                        fmt_time(Some(w.heartbeat_at)),
                        w.leader
                    );
                }
            }
        }
        Command::Schedules(cmd) => {
            let ledger = open_ledger(&cfg).await?;
            crate::cli_schedules::run(&ledger, &cfg, cmd).await?;
        }
        Command::Dlq(cmd) => {
            let sdk = crate::aws::sdk_config().await?;
            crate::dlq::run(&sdk, &cfg, cmd).await?;
        }
        Command::Pipeline(cmd) => pipeline_command(&cfg, cmd).await?,
        Command::Runs(cmd) => runs_command(&cfg, cmd).await?,
        Command::Results(args) => results(&cfg, args).await?,
        Command::Events(args) => {
            let ledger = open_ledger(&cfg).await?;
            let events = ledger.events(args.limit).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&events)?);
            } else {
                println!(
                    "{:>6}  {:<11}  {:>5}  {:<9}  {:<38}  REASON",
                    "SEQ", "DISPOSITION", "JOB", "STATE", "STATEMENT"
                );
                for e in events {
                    println!(
                        "{:>6}  {:<11}  {:>5}  {:<9}  {:<38}  {}",
                        e.seq,
                        e.disposition,
                        e.job_id.map(|j| j.to_string()).unwrap_or_default(),
                        e.state.unwrap_or_default(),
                        e.statement_id.unwrap_or_default(),
                        e.reason.unwrap_or_default()
                    );
                }
            }
        }
        Command::Emulator(_) => unreachable!("handled above"),
    }
    Ok(())
}

/// Stops the running statements of cancelled jobs, within the configured
/// rate limits.
async fn stop_statements(cfg: &Config, statements: Vec<(i64, String)>) -> Result<()> {
    if !statements.is_empty() {
        let sdk = crate::aws::sdk_config().await?;
        let api = DataApi::with_rate_scale(&sdk, cfg.api_rate_scale);
        for (id, sid) in statements {
            match api.cancel(&sid).await {
                Ok(_) => eprintln!("job {id}: statement {sid} cancelled"),
                Err(e) => eprintln!("job {id}: statement {sid} could not be cancelled ({e}); it may have ended already"),
            }
        }
    }
    Ok(())
}

async fn pipeline_command(cfg: &Config, cmd: PipelineCommand) -> Result<()> {
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
            let p = crate::pipeline::load(&file).and_then(|p| p.with_run_params(&given))?;
            let jobs = plan_run(cfg, &p)?;
            let ledger = open_ledger(cfg).await?;
            let (run, ids) = ledger
                .create_run(&p.name, &jobs, SystemClock.now_ms())
                .await?;
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

/// The ledger records of a validated pipeline (see `Pipeline::plan`).
fn plan_run(cfg: &Config, p: &crate::pipeline::Pipeline) -> Result<Vec<crate::ledger::RunJob>> {
    p.plan(&cfg.default_target()).map_err(anyhow::Error::msg)
}

async fn runs_command(cfg: &Config, cmd: RunsCommand) -> Result<()> {
    let ledger = open_ledger(cfg).await?;
    match cmd {
        RunsCommand::List { json } => {
            let runs = ledger.runs().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "{:<14}  {:<10}  {:<24}  {:<24}  ENDED",
                    "RUN", "STATE", "PIPELINE", "CREATED"
                );
                for r in runs {
                    println!(
                        "{:<14}  {:<10}  {:<24}  {:<24}  {}",
                        r.id,
                        r.state,
                        r.pipeline,
                        fmt_time(Some(r.created_at)),
                        fmt_time(r.finished_at)
                    );
                }
            }
        }
        RunsCommand::Show { run, json } => {
            let r = ledger
                .run(&run)
                .await?
                .with_context(|| format!("no run {run} (see `redrelay runs list`)"))?;
            let jobs = ledger.jobs(None, Some(&run)).await?;
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
                    serde_json::to_string_pretty(&serde_json::json!({"run": r, "jobs": out}))?
                );
            } else {
                println!("run       {}", r.id);
                println!("pipeline  {}", r.pipeline);
                println!("state     {}", r.state);
                println!("created   {}", fmt_time(Some(r.created_at)));
                println!("ended     {}", fmt_time(r.finished_at));
                println!(
                    "{:>5}  {:<24}  {:<10}  {:>7}  {:>9}  {:>8}  ERROR",
                    "JOB", "NAME", "STATE", "ATTEMPT", "SECONDS", "ROWS"
                );
                for j in &jobs {
                    let secs = match (j.submitted_at, j.finished_at) {
                        (Some(a), Some(b)) => format!("{:.1}", (b - a) as f64 / 1000.0),
                        _ => "-".into(),
                    };
                    println!(
                        "{:>5}  {:<24}  {:<10}  {:>7}  {:>9}  {:>8}  {}",
                        j.id,
                        j.name,
                        j.state.as_str(),
                        format!("{}/{}", j.attempt, j.max_attempts),
                        secs,
                        j.result_rows
                            .or(j.rows)
                            .map(|r| r.to_string())
                            .unwrap_or_else(|| "-".into()),
                        j.error
                            .as_deref()
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                    );
                }
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

/// `ledger migrate --to URL`.
async fn migrate(cfg: &Config, to: &str) -> Result<()> {
    let target_at = crate::ledger::location::parse(to, cfg.ledger_password_file.as_deref(), |k| {
        std::env::var(k).ok()
    })?;
    if !matches!(target_at, crate::ledger::Location::Postgres { .. }) {
        bail!("--to {target_at} is not a postgres:// URL: the target of a migration is PostgreSQL");
    }
    let source = open_ledger(cfg).await?;
    if source.kind() == "postgres" {
        bail!("the configured ledger is already on PostgreSQL");
    }
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
    let (from, into) = (source.counts().await?, target.counts().await?);
    for ((table, a), (_, b)) in from.iter().zip(&into) {
        println!("{table:<10} {a:>8} rows copied, {b:>8} in the target");
        if a != b {
            bail!("table {table}: {a} rows in the source but {b} in the target");
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

async fn open_ledger(cfg: &Config) -> Result<Ledger> {
    crate::ledger::set_outbox(cfg.publish_events);
    let location = cfg.ledger_location()?;
    Ledger::connect(&location, cfg.ledger_max_connections)
        .await
        .with_context(|| format!("cannot open the ledger {location}"))
}

fn parse_param(s: &str) -> Result<Param> {
    let (name, value) = s
        .split_once('=')
        .with_context(|| format!("--param {s:?}: write it as name=value"))?;
    let name = name.trim().trim_start_matches(':');
    if let Err(e) = crate::domain::check_param_name(name) {
        bail!("--param {s:?}: {e}");
    }
    if value.is_empty() {
        bail!("--param {name}: the Data API does not accept an empty value");
    }
    Ok(Param {
        name: name.to_string(),
        value: value.to_string(),
        from: None,
    })
}

async fn submit(cfg: &Config, args: SubmitArgs) -> Result<()> {
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
        match worker::submit_job(
            &ledger,
            &api,
            &clock,
            &job,
            cfg.in_flight_limits(),
            &claimant,
            None,
        )
        .await?
        {
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

async fn run_worker(cfg: Config, args: WorkerArgs, shutdown: CancellationToken) -> Result<()> {
    let ledger = open_ledger(&cfg).await?;
    let sdk = crate::aws::sdk_config().await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = crate::setup::queue_url(&sqs, &cfg).await?;
    let origin = Origin {
        account: cfg.account.clone(),
        region: cfg
            .region
            .clone()
            .or_else(|| sdk.region().map(|r| r.to_string())),
    };
    let worker = Arc::new(Worker::new(
        ledger.clone(),
        DataApi::with_rate_scale(&sdk, cfg.api_rate_scale),
        sqs,
        aws_sdk_eventbridge::Client::new(&sdk),
        queue_url,
        cfg,
        origin,
        Arc::new(SystemClock),
    ));
    let res = worker
        .run(
            worker::Options {
                until_idle: args.until_idle,
                grace: Duration::from_secs(args.grace_secs),
            },
            shutdown,
        )
        .await;
    ledger.close().await;
    res
}

fn fmt_time(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => {
            let secs = ms.div_euclid(1000);
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3600,
                (rem / 60) % 60,
                rem % 60,
                ms.rem_euclid(1000)
            )
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn print_jobs(jobs: &[Job]) {
    println!(
        "{:>5}  {:<10}  {:<24}  {:>7}  {:>8}  {:<38}  ERROR",
        "ID", "STATE", "NAME", "ATTEMPT", "ROWS", "STATEMENT"
    );
    for j in jobs {
        let mut name = j.name.clone();
        if name.chars().count() > 24 {
            name = name.chars().take(23).collect::<String>() + "…";
        }
        println!(
            "{:>5}  {:<10}  {:<24}  {:>7}  {:>8}  {:<38}  {}",
            j.id,
            j.state.as_str(),
            name,
            format!("{}/{}", j.attempt, j.max_attempts),
            j.result_rows
                .or(j.rows)
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            j.statement_id.as_deref().unwrap_or("-"),
            j.error
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        );
    }
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
    println!("created      {}", fmt_time(Some(job.created_at)));
    println!("ready        {}", fmt_time(job.ready_at));
    println!("submitted    {}", fmt_time(job.submitted_at));
    println!("ended        {}", fmt_time(job.finished_at));
    println!(
        "rows         {}",
        job.rows
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into())
    );
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
                fmt_time(a.submitted_at),
                fmt_time(a.finished_at),
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
        println!(
            "{label:<12} {} rows in {}, {}",
            r.rows, r.csv_path, r.jsonl_path
        );
    }
    Ok(())
}

async fn results(cfg: &Config, args: ResultsArgs) -> Result<()> {
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
                fmt_time(job.results_pruned_at)
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
    let path = match args.format {
        ResultFormat::Csv => &file.csv_path,
        ResultFormat::Jsonl => &file.jsonl_path,
    };
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    std::io::copy(&mut f, &mut std::io::stdout().lock())?;
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

    #[test]
    fn times_format() {
        assert_eq!(fmt_time(Some(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            fmt_time(Some(1_764_031_721_005)),
            "2025-11-25T00:48:41.005Z"
        );
        assert_eq!(fmt_time(None), "-");
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

//! The command line: argument types (clap derives), dispatch, one module
//! per command group, and one renderer (`render`) for tables and times.
//!
//! Each group's module holds its argument types and what its commands do;
//! this file holds the top-level [`Cli`], the dispatch, and what several
//! groups share (opening the ledger, stopping statements).

mod console_url;
mod dlq;
mod events;
mod jobs;
mod ledger;
mod pipeline;
pub mod render;
mod results;
mod runs;
mod schedules;
mod submit;
mod triggers;
mod worker;
mod workers;

pub use console_url::ConsoleUrlArgs;
pub use dlq::DlqCommand;
pub use events::EventsArgs;
pub use jobs::JobsCommand;
pub use ledger::LedgerCommand;
pub use pipeline::PipelineCommand;
pub use results::{ResultFormat, ResultsArgs};
pub use runs::RunsCommand;
pub use schedules::SchedulesCommand;
pub use submit::SubmitArgs;
pub use triggers::TriggersCommand;
pub use worker::WorkerArgs;
pub use workers::WorkersCommand;

use crate::config::Config;
use crate::dataapi::DataApi;
use crate::ledger::Ledger;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Read;
use std::path::{Path, PathBuf};
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
    ///
    /// Its HTTP listener (`listen`, default 127.0.0.1:9464) serves the web
    /// console (/), the JSON API (/api/v1, described at /api/openapi.json;
    /// `Authorization: Bearer TOKEN`), /metrics, /healthz and /readyz.
    /// Without `api_token` the worker makes a random token, keeps it in a
    /// file of mode 0600 (`api_token_path`, default beside a SQLite ledger:
    /// LEDGER.api-token) and prints "Open the console at
    /// http://127.0.0.1:PORT/#token=..." on stdout; it then refuses a
    /// listen address that is not loopback. Requests must name the listener
    /// as their Host (or a name in `api_allowed_hosts`), and state changes
    /// must come from the same origin, as JSON.
    Worker(WorkerArgs),
    /// Print the web console's address with the API token
    /// (http://127.0.0.1:PORT/#token=...), one line per live worker with a
    /// listener: the token is `api_token`, else the one the worker made and
    /// keeps in `api_token_path`. The token is a secret: the address gives
    /// whoever has it the whole API.
    ConsoleUrl(ConsoleUrlArgs),
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
    Schedules(SchedulesCommand),
    /// Pipelines started by events (a file lands in S3, an application or
    /// another pipeline says so): add, list, show, pause, resume, remove, test.
    #[command(subcommand)]
    Triggers(TriggersCommand),
    /// Run the local Redshift Data API emulator (SQL runs on a SQLite file).
    #[cfg(feature = "emulator")]
    Emulator(Box<crate::emulator::EmulatorArgs>),
}

pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<()> {
    let command = cli.command;
    #[cfg(feature = "emulator")]
    let command = match command {
        Command::Emulator(args) => return crate::emulator::run(*args, shutdown).await,
        command => command,
    };
    let cfg = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())?;
    match command {
        Command::Setup => {
            // The triggers' rules too, when there is a ledger: a SQLite file
            // that does not exist yet holds no trigger (and is not made).
            let report = match cfg.ledger_location()? {
                crate::ledger::Location::Sqlite(path) if !path.exists() => {
                    let sdk = crate::aws::sdk_config().await?;
                    crate::setup::run(&sdk, &cfg, &[]).await?
                }
                _ => setup_with_triggers(&cfg, &open_ledger(&cfg).await?).await?,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Submit(args) => submit::run(&cfg, args).await?,
        Command::Worker(args) => worker::run(cfg, args, shutdown).await?,
        Command::ConsoleUrl(args) => console_url::run(&cfg, args).await?,
        Command::Jobs(cmd) => jobs::run(&cfg, cmd).await?,
        Command::Pipeline(cmd) => pipeline::run(&cfg, cmd).await?,
        Command::Runs(cmd) => runs::run(&cfg, cmd).await?,
        Command::Results(args) => results::run(&cfg, args).await?,
        Command::Events(args) => events::run(&cfg, args).await?,
        Command::Ledger(cmd) => ledger::run(&cfg, cmd).await?,
        Command::Dlq(cmd) => dlq::run(&cfg, cmd).await?,
        Command::Workers(cmd) => workers::run(&cfg, cmd).await?,
        Command::Schedules(cmd) => schedules::run(&cfg, cmd).await?,
        Command::Triggers(cmd) => triggers::run(&cfg, cmd).await?,
        #[cfg(feature = "emulator")]
        Command::Emulator(_) => unreachable!("the emulator returned above"),
    }
    Ok(())
}

/// Stops the running statements of cancelled jobs, within the configured
/// rate limits.
pub(crate) async fn stop_statements(cfg: &Config, statements: Vec<(i64, String)>) -> Result<()> {
    if !statements.is_empty() {
        let sdk = crate::aws::sdk_config().await?;
        let api = DataApi::with_rate_scale(&sdk, cfg.api_rate_scale);
        for line in crate::ops::stop_statements(&api, statements).await {
            eprintln!("{line}");
        }
    }
    Ok(())
}

/// `redrelay setup` with the stored triggers' rules: their events reach
/// the same queue.
pub(crate) async fn setup_with_triggers(
    cfg: &Config,
    ledger: &Ledger,
) -> Result<crate::setup::SetupReport> {
    let triggers = crate::ops::trigger_patterns(ledger).await?;
    let sdk = crate::aws::sdk_config().await?;
    crate::setup::run(&sdk, cfg, &triggers).await
}

pub(crate) async fn open_ledger(cfg: &Config) -> Result<Ledger> {
    let location = cfg.ledger_location()?;
    if let crate::ledger::Location::Sqlite(path) = &location {
        check_sqlite_path(path)?;
    }
    match Ledger::connect(&location, cfg.ledger_max_connections).await {
        Ok(ledger) => Ok(ledger),
        Err(crate::ledger::LedgerError::Db(sqlx::Error::Database(e)))
            if e.code().as_deref() == Some(SQLITE_NOTADB) =>
        {
            bail!(
                "{location} is not a redrelay ledger: SQLite says \"{}\"; {WHAT_TO_DO}",
                e.message()
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot open the ledger {location}")),
    }
}

/// SQLite's result code for "file is not a database".
const SQLITE_NOTADB: &str = "26";

/// What to do about a `ledger` setting that is not a ledger.
const WHAT_TO_DO: &str = "set `ledger` in the config file (or REDRELAY_LEDGER) to the \
     ledger's file, to a path that does not exist yet for a new ledger, or to a \
     postgres:// URL";

/// Refuses a SQLite ledger path that cannot be a ledger, before the driver
/// answers "file is not a database" with no word of what to do: a
/// directory, or a file that is not a SQLite database. A path that does not
/// exist (or an empty file) becomes a new ledger.
fn check_sqlite_path(path: &Path) -> Result<()> {
    const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if meta.is_dir() {
        bail!(
            "the ledger {} is a directory, not a ledger file: set `ledger` in the config \
             file (or REDRELAY_LEDGER) to a file in it, e.g. {}",
            path.display(),
            path.join("redrelay.db").display()
        );
    }
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    // Unreadable: the driver says why.
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(());
    };
    if file
        .take(SQLITE_HEADER.len() as u64)
        .read_to_end(&mut head)
        .is_err()
    {
        return Ok(());
    }
    if !head.is_empty() && head != SQLITE_HEADER {
        bail!(
            "{} is not a redrelay ledger: it is not a SQLite database; {WHAT_TO_DO}",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn a_file_that_is_not_a_ledger_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello\n").unwrap();
        let err = check_sqlite_path(&text).unwrap_err().to_string();
        assert!(err.contains("is not a redrelay ledger"), "{err}");
        assert!(err.contains("REDRELAY_LEDGER"), "{err}");
        let err = check_sqlite_path(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert!(check_sqlite_path(&dir.path().join("new.db")).is_ok());
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        assert!(check_sqlite_path(&empty).is_ok());
    }
}

//! The ledger: every job, attempt, dependency, run, consumed event and
//! result file. One API ([`Ledger`]) over two backends: SQLite (one file,
//! the embedded default, one worker) and PostgreSQL (several workers).
//! Each state change is one transaction whose UPDATE is guarded on the
//! expected old state; zero rows changed is a [`LedgerError::Conflict`],
//! never silence.
//!
//! - `types`: the rows and what the API takes; `names`: ClientTokens and
//!   StatementNames; `location`: where the ledger is (a path or a URL);
//! - `queries`: the SQL, written once for both backends (`$N` placeholders);
//! - `sqlite`, `postgres`: what differs (locks, notifications, DDL, clock);
//! - `check`: the invariants, a pure function over loaded rows.

mod check;
pub mod location;
pub mod names;
pub mod postgres;
pub(crate) mod queries;
pub mod sqlite;
mod types;

pub use crate::domain::{Param, ParamFrom, Target};
pub use location::Location;
pub use names::{client_token, parse_statement_name, statement_name};
pub use types::*;

use crate::event::StatusEvent;
use crate::state::{JobState, Outcome, RunState};
use std::collections::HashMap;

static OUTBOX: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether state changes write redrelay's own events to the outbox
/// (`publish_events`), for every ledger this process opens. Off, nothing
/// is written (and nothing waits to be published).
pub fn set_outbox(on: bool) {
    OUTBOX.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn outbox_on() -> bool {
    OUTBOX.load(std::sync::atomic::Ordering::Relaxed)
}

/// A worker whose heartbeat is older than this (ms) is not live: its
/// claims may be taken over, and it no longer counts for the rate share.
pub const LIVE_MS: i64 = 15_000;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the ledger file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("job {0} does not exist")]
    NoSuchJob(i64),
    #[error("run {0} does not exist (see `redrelay runs list`)")]
    NoSuchRun(String),
    #[error("run {run} is {found}, expected {expected}: nothing to change")]
    RunConflict {
        run: String,
        found: RunState,
        expected: RunState,
    },
    #[error("job {job} is {found}, expected {expected}: another process changed it first")]
    Conflict {
        job: i64,
        found: String,
        expected: String,
    },
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Location(String),
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Why an operator's retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryRefused {
    #[error("{0}")]
    Why(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<sqlx::Error> for RetryRefused {
    fn from(e: sqlx::Error) -> Self {
        RetryRefused::Ledger(e.into())
    }
}

pub(crate) fn conflict(
    job: i64,
    found: impl Into<String>,
    expected: impl Into<String>,
) -> LedgerError {
    LedgerError::Conflict {
        job,
        found: found.into(),
        expected: expected.into(),
    }
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Store),
    Postgres(postgres::Store),
}

/// The ledger, whichever its backend.
#[derive(Clone)]
pub struct Ledger {
    backend: Backend,
}

/// Forwards each method to the backend's store (same name, same arguments).
macro_rules! forward {
    ($( $(#[$doc:meta])* pub async fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        impl Ledger {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.backend {
                        Backend::Sqlite(s) => s.$name($($arg),*).await,
                        Backend::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

impl Ledger {
    /// Opens a SQLite ledger file (creating it, readable by its owner only).
    pub async fn open(path: &std::path::Path) -> Result<Self> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::Store::open(path).await?),
        })
    }

    /// Opens the ledger at `location` and runs its migrations.
    pub async fn connect(location: &Location, max_connections: u32) -> Result<Self> {
        Ok(Self {
            backend: match location {
                Location::Sqlite(path) => Backend::Sqlite(sqlite::Store::open(path).await?),
                Location::Postgres { options, .. } => Backend::Postgres(
                    postgres::Store::connect((**options).clone(), max_connections).await?,
                ),
            },
        })
    }

    /// "sqlite" or "postgres".
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL store, when the ledger is on PostgreSQL.
    pub fn postgres(&self) -> Option<&postgres::Store> {
        match &self.backend {
            Backend::Postgres(s) => Some(s),
            Backend::Sqlite(_) => None,
        }
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(s) => s.close().await,
        }
    }

    /// An operator's retry (see the backends' `retry_job`).
    pub async fn retry_job(&self, job_id: i64, now: i64) -> Result<JobState, RetryRefused> {
        match &self.backend {
            Backend::Sqlite(s) => s.retry_job(job_id, now).await,
            Backend::Postgres(s) => s.retry_job(job_id, now).await,
        }
    }
}

forward! {
    /// Records a job: READY, PENDING, or SKIPPED (a parent failed).
    pub async fn insert_job(&self, job: &NewJob, now: i64) -> Result<Job>;
    pub async fn job(&self, id: i64) -> Result<Job>;
    pub async fn jobs(&self, state: Option<JobState>, run: Option<&str>) -> Result<Vec<Job>>;
    /// The first row of a job's last result set.
    pub async fn first_row(&self, id: i64) -> Result<Option<serde_json::Map<String, serde_json::Value>>>;
    pub async fn deps(&self, id: i64) -> Result<Vec<i64>>;
    pub async fn attempts(&self, id: i64) -> Result<Vec<Attempt>>;
    pub async fn results(&self, id: i64) -> Result<Vec<ResultFile>>;
    pub async fn events(&self, limit: i64) -> Result<Vec<EventRow>>;
    /// READY jobs, oldest first.
    pub async fn ready_jobs(&self, limit: i64) -> Result<Vec<Job>>;
    /// Open attempts (statements running) submitted at or before `before`.
    pub async fn open_attempts_before(&self, before: i64) -> Result<Vec<(i64, i64, String)>>;
    pub async fn pending_fetches(&self) -> Result<Vec<Job>>;
    /// Takes the fetching of a job's results (false: another live worker has it).
    pub async fn claim_fetch(&self, job_id: i64, claimant: &str) -> Result<bool>;
    pub async fn is_idle(&self) -> Result<bool>;
    /// Jobs by state, and the oldest in-flight statement's submission time.
    pub async fn gauges(&self) -> Result<(Vec<(JobState, i64)>, Option<i64>)>;
    pub async fn promote_retries(&self, now: i64) -> Result<u64>;
    pub async fn next_retry_at(&self) -> Result<Option<i64>>;
    pub async fn owns_statement(&self, statement_id: &str) -> Result<bool>;
    pub async fn owns_event(&self, ev: &StatusEvent) -> Result<bool>;
    pub async fn in_flight(&self) -> Result<i64>;
    /// Starts or resumes the attempt of a READY job, without limits.
    pub async fn begin_attempt(&self, job_id: i64, now: i64) -> Result<Option<Ticket>>;
    /// Claims a READY job within in-flight limits.
    /// `claimant` is the worker's id.
    pub async fn claim(&self, job_id: i64, limits: Option<InFlightLimits>, claimant: &str, now: i64) -> Result<Claim>;
    /// Lets go of an attempt after a throttled or failed call.
    pub async fn release_claim(&self, job_id: i64, attempt: i64, claimant: &str) -> Result<()>;
    pub async fn mark_submitted(&self, job_id: i64, attempt: i64, accepted: &Accepted, result_formats: crate::results::ResultFormats, now: i64) -> Result<Vec<Disposition>>;
    pub async fn fail_submission(&self, job_id: i64, attempt: i64, error: &str, now: i64) -> Result<()>;
    pub async fn create_run(&self, pipeline: &str, jobs: &[RunJob], now: i64) -> Result<(String, Vec<i64>)>;
    pub async fn runs(&self) -> Result<Vec<Run>>;
    /// A page of runs, newest first.
    pub async fn runs_page(&self, filter: &RunsFilter) -> Result<Vec<Run>>;
    /// Jobs by state for each of `runs`.
    pub async fn run_job_counts(&self, runs: &[String]) -> Result<Vec<(String, JobState, i64)>>;
    /// A page of jobs, newest first.
    pub async fn jobs_page(&self, filter: &JobsFilter) -> Result<Vec<Job>>;
    /// The inbox's latest rows of one disposition (or all), newest first.
    pub async fn events_by(&self, disposition: Option<Disposition>, limit: i64) -> Result<Vec<EventRow>>;
    /// State changes after sequence number `after`, oldest first.
    pub async fn changes(&self, after: i64, run: Option<&str>, limit: i64) -> Result<Vec<Change>>;
    /// The latest change's sequence number (0: none).
    pub async fn last_change(&self) -> Result<i64>;
    /// Adds or replaces a schedule.
    pub async fn put_schedule(&self, name: &str, text: &str, sql_files: &str, now: i64) -> Result<()>;
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>>;
    pub async fn set_schedule_paused(&self, name: &str, paused: bool, now: i64) -> Result<bool>;
    pub async fn remove_schedule(&self, name: &str) -> Result<bool>;
    /// Fires a schedule once per fire time (see the backends).
    pub async fn fire_schedule(&self, name: &str, fire_time: i64, pipeline: &str, jobs: &[RunJob], skip_overlap: bool, now: i64) -> Result<Fired>;
    pub async fn schedule_fires(&self, name: &str, limit: i64) -> Result<Vec<(i64, Option<String>, Option<String>)>>;
    pub async fn run(&self, id: &str) -> Result<Option<Run>>;
    pub async fn run_edges(&self, run: &str) -> Result<Vec<(i64, i64)>>;
    pub async fn fail_ready(&self, job_id: i64, error: &str, now: i64) -> Result<()>;
    pub async fn cancel_job(&self, job_id: i64, now: i64) -> Result<(bool, Option<String>)>;
    pub async fn cancel_run(&self, run: &str, now: i64) -> Result<(usize, Vec<(i64, String)>)>;
    pub async fn timed_out(&self, now: i64) -> Result<Vec<Job>>;
    pub async fn mark_timed_out(&self, job_id: i64, attempt: i64, now: i64) -> Result<bool>;
    pub async fn in_flight_by_target(&self) -> Result<HashMap<String, i64>>;
    /// Retention (see the backends' `prune`).
    pub async fn prune(&self, cutoff: i64, now: i64) -> Result<Pruned>;
    /// The invariants: jobs checked, and one line per violation.
    pub async fn check(&self) -> Result<(usize, Vec<String>)>;
    pub async fn apply_event(&self, ev: &StatusEvent, error: Option<&str>, message_id: Option<&str>, body: &str, now: i64) -> Result<(Disposition, Option<i64>)>;
    /// Several events (an SQS batch) in one transaction.
    pub async fn apply_events(&self, events: &[(&StatusEvent, Option<&str>, Option<&str>, &str)], now: i64) -> Result<Vec<(Disposition, Option<i64>)>>;
    pub async fn quarantine(&self, message_id: Option<&str>, body: &str, reason: &str, now: i64) -> Result<()>;
    pub async fn apply_reconciled(&self, job_id: i64, statement_id: &str, outcome: &Outcome, now: i64) -> Result<Disposition>;
    pub async fn record_results(&self, job_id: i64, files: &[ResultFile], dir: Option<&str>, first_row: Option<&serde_json::Map<String, serde_json::Value>>, now: i64) -> Result<()>;
    pub async fn record_result_error(&self, job_id: i64, expired: bool, error: &str, now: i64) -> Result<()>;
    /// Unpublished outbox rows, oldest first: (seq, event id, detail type, detail).
    pub async fn outbox_pending(&self, limit: i64) -> Result<Vec<(i64, String, String, String)>>;
    /// Marks outbox rows published.
    pub async fn outbox_published(&self, seqs: &[i64], now: i64) -> Result<()>;
    /// Records a failed publication of outbox rows.
    pub async fn outbox_failed(&self, seqs: &[i64], error: &str) -> Result<()>;
    /// Registers a worker (or renews its heartbeat).
    pub async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()>;
    /// Removes a worker that stops (and its lease, if it held it).
    pub async fn deregister(&self, worker_id: &str) -> Result<()>;
    /// Takes or renews the leader's lease for `ttl_ms`; whether this worker leads.
    pub async fn try_lead(&self, worker_id: &str, ttl_ms: i64, take: bool) -> Result<bool>;
    /// Live workers (heartbeat within `live_ms`), the leader marked.
    pub async fn workers(&self, live_ms: i64) -> Result<Vec<WorkerRow>>;
    /// Every table's rows, for `ledger migrate`.
    pub async fn dump(&self) -> Result<Dump>;
    /// Writes a dump into this (empty) ledger, ids kept.
    pub async fn restore(&self, dump: &Dump) -> Result<()>;
    /// Rows per table.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>>;
}

#[allow(unused_imports)]
use RunState as _;

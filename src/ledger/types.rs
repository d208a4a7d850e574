//! The ledger's row types and what its API takes and returns, the same for
//! every backend.

use crate::state::{AttemptState, JobState, ResultState, RunState};
use serde::Serialize;
use sqlx::FromRow;

use crate::domain::{Param, Session, Target};

/// A pipeline run's summary.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Run {
    pub id: String,
    pub pipeline: String,
    pub state: RunState,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A job of a pipeline run, as [`Ledger::create_run`] records it.
#[derive(Debug, Clone)]
pub struct RunJob {
    pub job: NewJob,
    /// Indexes of earlier entries this job depends on.
    pub deps: Vec<usize>,
    /// (index of the parameter, index of the upstream entry, column).
    pub upstream: Vec<(usize, usize, String)>,
}

/// A job to record.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub name: String,
    pub sqls: Vec<String>,
    pub params: Vec<Param>,
    pub target: Target,
    pub depends_on: Vec<i64>,
    pub max_attempts: i64,
    pub retry: Option<serde_json::Value>,
    pub timeout_secs: Option<i64>,
    pub run_id: Option<String>,
    /// A batch's ExecutionMode: `Some("AUTO_COMMIT")`, or one transaction.
    pub execution_mode: Option<String>,
    /// The files its results are written as (None: the worker's
    /// `result_formats`).
    pub result_formats: Option<crate::domain::ResultFormats>,
    /// Runs in its run's session, kept this long between statements.
    pub session_keep_alive_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Job {
    pub id: i64,
    pub uid: String,
    pub run_id: Option<String>,
    pub name: String,
    #[sqlx(json)]
    pub sqls: Vec<String>,
    #[serde(skip)]
    #[sqlx(json)]
    pub params: Vec<Param>,
    pub workgroup: Option<String>,
    pub cluster: Option<String>,
    pub database: Option<String>,
    pub db_user: Option<String>,
    pub secret_arn: Option<String>,
    pub state: JobState,
    pub attempt: i64,
    pub max_attempts: i64,
    pub retry: Option<String>,
    pub not_before: Option<i64>,
    pub timeout_secs: Option<i64>,
    pub statement_id: Option<String>,
    pub rows: Option<i64>,
    pub error: Option<String>,
    pub result_state: Option<ResultState>,
    pub result_rows: Option<i64>,
    pub result_path: Option<String>,
    pub result_error: Option<String>,
    pub created_at: i64,
    pub ready_at: Option<i64>,
    pub submitted_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// When a timeout asked the Data API to cancel the current statement.
    pub timed_out_at: Option<i64>,
    /// When the statement's results expire (the event's expireAt).
    pub expire_at: Option<i64>,
    /// When retention removed the job's result files.
    pub results_pruned_at: Option<i64>,
    /// HasResultSet as the current attempt's ExecuteStatement answered it
    /// (None: the response did not say; DescribeStatement will).
    pub has_result_set: Option<bool>,
    /// A batch's ExecutionMode: `Some("AUTO_COMMIT")`, or one transaction.
    pub execution_mode: Option<String>,
    /// The files its results are written as (`csv`, `jsonl`, `csv,jsonl`):
    /// its own choice, else the submitting worker's `result_formats`.
    pub result_formats: Option<String>,
    /// Runs in its run's session (`session = true`), kept this long
    /// between statements.
    pub session_keep_alive_secs: Option<i64>,
}

impl Job {
    /// The files its results are written as: its own, else `default`.
    pub fn result_formats_or(
        &self,
        default: crate::domain::ResultFormats,
    ) -> crate::domain::ResultFormats {
        self.result_formats
            .as_deref()
            .and_then(|f| crate::domain::ResultFormats::parse(f).ok())
            .unwrap_or(default)
    }

    pub fn target(&self) -> Target {
        Target {
            workgroup: self.workgroup.clone(),
            cluster: self.cluster.clone(),
            database: self.database.clone(),
            db_user: self.db_user.clone(),
            secret_arn: self.secret_arn.clone(),
        }
    }

    /// Parameter names only: values never leave the ledger except to the
    /// Data API.
    pub fn param_names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: i64,
    pub client_token: String,
    pub statement_id: Option<String>,
    pub state: AttemptState,
    pub started_at: i64,
    pub submitted_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub rows: Option<i64>,
    pub error: Option<String>,
}

/// A row of a run's attempts or result files ([`Ledger::run_attempts`],
/// [`Ledger::run_results`]): the job's id beside the row.
#[derive(Debug, Clone, FromRow)]
pub struct OfJob<T> {
    pub job_id: i64,
    #[sqlx(flatten)]
    pub row: T,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct ResultFile {
    pub sub: i64,
    pub statement_id: String,
    pub rows: i64,
    /// The CSV file ("" when the job's result_formats left CSV out).
    pub csv_path: String,
    /// The JSON Lines file ("" when left out: the default keeps CSV only).
    pub jsonl_path: String,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct InboxRow {
    pub seq: i64,
    pub event_id: Option<String>,
    pub message_id: Option<String>,
    pub received_at: i64,
    pub statement_id: Option<String>,
    pub state: Option<String>,
    pub job_id: Option<i64>,
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub body: String,
}

/// What became of a consumed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Disposition {
    /// Changed the job's state.
    Applied,
    /// Seen before (same event id, or the statement already ended).
    Duplicate,
    /// For an attempt that is no longer the job's current one.
    Stale,
    /// Arrived before its statement id was recorded; applied when it is.
    Deferred,
    /// Not a statement of this ledger.
    Foreign,
    /// Not a valid event from the configured origin.
    Quarantined,
    /// Valid but nothing to do (a non-terminal state, a cancelled job).
    Ignored,
}

impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Disposition {
    pub const fn as_str(self) -> &'static str {
        match self {
            Disposition::Applied => "applied",
            Disposition::Duplicate => "duplicate",
            Disposition::Stale => "stale",
            Disposition::Deferred => "deferred",
            Disposition::Foreign => "foreign",
            Disposition::Quarantined => "quarantined",
            Disposition::Ignored => "ignored",
        }
    }
}

/// What [`Ledger::prune`] removed: inbox rows, jobs whose results went, and
/// the result files (and their folders, last) to delete.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pruned {
    pub events: u64,
    pub jobs: u64,
    pub files: Vec<String>,
}

/// The in-flight limits a claim honours (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct InFlightLimits {
    pub max_in_flight: u32,
    /// 0: only `max_in_flight` applies.
    pub per_target: u32,
}

/// What [`Ledger::claim`] got.
#[derive(Debug)]
pub enum Claim {
    /// The attempt to submit.
    Ticket(Box<Ticket>),
    /// The job is no longer READY (taken, or cancelled).
    NotReady,
    /// No room under the in-flight limits: the job stays READY.
    NoRoom(String),
}

impl Ticket {
    /// What the Data API is sent for this attempt.
    pub fn submission(&self) -> crate::domain::Submission<'_> {
        crate::domain::Submission {
            sqls: &self.job.sqls,
            params: &self.job.params,
            target: self.job.target(),
            statement_name: &self.statement_name,
            client_token: &self.client_token,
            session: self.session.as_ref(),
            execution_mode: self.job.execution_mode.as_deref(),
        }
    }
}

/// What the submitter needs to call the Data API for one attempt.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub job: Job,
    pub attempt: i64,
    pub client_token: String,
    pub statement_name: String,
    /// The attempt was begun before (a crash, a throttled call, another
    /// worker): its ClientToken is sent again.
    pub resumed: bool,
    /// The run's session, for a job of a `session = true` run.
    pub session: Option<Session>,
}

/// (job, attempt, state, statement id, started at, finished at)
pub type AttemptRow = (i64, i64, AttemptState, Option<String>, i64, Option<i64>);

/// A live worker, as `redrelay workers list` shows it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub leader: bool,
    /// Its HTTP listener's address (metrics, health), if it has one.
    pub listen: Option<String>,
}

/// What a worker registers about itself.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    /// The HTTP listener's bound address, once bound.
    pub listen: std::sync::Arc<std::sync::OnceLock<String>>,
}

/// Every copied table's rows, for `redrelay ledger migrate` (see
/// [`super::tables`]).
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub tables: Vec<(
        &'static super::tables::Table,
        Vec<Vec<super::driver::Value>>,
    )>,
}

/// A table's rows counted and checksummed ([`Ledger::summaries`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSummary {
    pub table: &'static str,
    pub rows: usize,
    pub checksum: String,
}

/// A stored trigger: a pipeline file (with a `[trigger]` table) and the
/// SQL files it names.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct TriggerRow {
    pub name: String,
    #[serde(skip)]
    pub text: String,
    /// JSON object: path as written in the file -> its SQL.
    #[serde(skip)]
    pub sql_files: String,
    pub paused: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An event a trigger took, and what became of it.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct TriggerEventRow {
    pub seq: i64,
    pub trigger: String,
    /// `id:EVENT_ID`, or a digest of the trigger's `dedupe` values.
    pub dedupe_key: String,
    pub event_id: Option<String>,
    /// The event as received.
    pub body: String,
    /// JSON object: the run's parameters taken from the event.
    pub params: String,
    /// WAITING, STARTED, SKIPPED, DROPPED or FAILED.
    pub state: String,
    pub run_id: Option<String>,
    pub note: Option<String>,
    pub received_at: i64,
    pub started_at: Option<i64>,
}

/// A stored schedule: a pipeline file's text and the SQL files it names.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ScheduleRow {
    pub name: String,
    #[serde(skip)]
    pub text: String,
    /// JSON object: path as written in the file -> its SQL.
    #[serde(skip)]
    pub sql_files: String,
    pub paused: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Firing counts from here (added, changed or resumed).
    pub effective_since: i64,
    pub last_fired_at: Option<i64>,
}

/// What firing a schedule did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// A run was created.
    Run(String),
    /// This fire time was fired before (by this or another leader).
    Already,
    /// Skipped: this run of the schedule is still RUNNING (overlap = skip).
    Skipped(String),
}

/// Which runs [`Ledger::runs_page`] lists (every `None` matches all).
#[derive(Debug, Clone, Default)]
pub struct RunsFilter {
    pub state: Option<RunState>,
    pub pipeline: Option<String>,
    /// Created at or after (ms).
    pub since: Option<i64>,
    /// Created before (ms).
    pub until: Option<i64>,
    /// The page starts after this run: (created_at, id).
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// Which jobs [`Ledger::jobs_page`] lists.
#[derive(Debug, Clone, Default)]
pub struct JobsFilter {
    pub state: Option<JobState>,
    pub run: Option<String>,
    pub name: Option<String>,
    /// The page starts below this job id.
    pub before: Option<i64>,
    pub limit: i64,
}

/// A state change of a job or a run (the `changes` table, written by
/// triggers), as the API's event stream sends it.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Change {
    pub seq: i64,
    /// `job` or `run`.
    pub kind: String,
    pub job_id: Option<i64>,
    pub run_id: Option<String>,
    pub state: String,
    pub attempt: Option<i64>,
    pub result_state: Option<String>,
    /// When (ms since the epoch).
    pub at: i64,
    /// The job's name.
    pub name: Option<String>,
}

//! The SQLite ledger: every job, attempt, dependency, consumed event and
//! result file. All SQL of redrelay lives here. Each state change is one
//! `BEGIN IMMEDIATE` transaction whose UPDATE is guarded on the expected old
//! state; zero rows changed is a [`LedgerError::Conflict`], never silence.

use crate::event::{StatementState, StatusEvent};
use crate::retry::{seed_of, RetryPolicy};
use crate::state::{after_attempt, AttemptState, JobState, Outcome, ResultState, RunState};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, Sqlite, SqlitePool, Transaction};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

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

pub use crate::domain::{Param, ParamFrom, Target};

/// A pipeline run's summary.
#[derive(Debug, Clone, Serialize, FromRow)]
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
}

#[derive(Debug, Clone, Serialize, FromRow)]
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
}

impl Job {
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

#[derive(Debug, Clone, Serialize, FromRow)]
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

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ResultFile {
    pub sub: i64,
    pub statement_id: String,
    pub rows: i64,
    pub csv_path: String,
    pub jsonl_path: String,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct EventRow {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
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

/// What the submitter needs to call the Data API for one attempt.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub job: Job,
    pub attempt: i64,
    pub client_token: String,
    pub statement_name: String,
}

/// The ClientToken of a job attempt: stable across crashes (a resubmission
/// of the same attempt is idempotent), unique across ledgers.
pub fn client_token(uid: &str, attempt: i64) -> String {
    format!("{uid}-{attempt}")
}

const NAME_PREFIX: &str = "redrelay/";

/// The StatementName of a job: `redrelay/<name>/<uid>`, the same for every
/// attempt. It names the job in the Redshift console and lets an event that
/// arrives before its statement id is recorded be matched to its job (only
/// one attempt of a job is ever being submitted at a time).
pub fn statement_name(name: &str, uid: &str) -> String {
    let mut short: String = name
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .take(200)
        .collect();
    if short.is_empty() {
        short.push('_');
    }
    format!("{NAME_PREFIX}{short}/{uid}")
}

/// The job uid in a StatementName made by [`statement_name`].
pub fn parse_statement_name(s: &str) -> Option<&str> {
    let rest = s.strip_prefix(NAME_PREFIX)?;
    let (_, uid) = rest.rsplit_once('/')?;
    (uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit())).then_some(uid)
}

#[derive(Clone)]
pub struct Ledger {
    pool: SqlitePool,
}

type Tx = Transaction<'static, Sqlite>;

/// (job, attempt, state, statement id, started at, finished at)
type AttemptRow = (i64, i64, AttemptState, Option<String>, i64, Option<i64>);

const JOB_COLUMNS: &str = "id, uid, run_id, name, sqls, params, workgroup, cluster, database, \
     db_user, secret_arn, state, attempt, max_attempts, retry, not_before, timeout_secs, \
     statement_id, rows, error, result_state, result_rows, result_path, result_error, \
     created_at, ready_at, submitted_at, finished_at, timed_out_at, expire_at, results_pruned_at";

fn conflict(job: i64, found: impl Into<String>, expected: impl Into<String>) -> LedgerError {
    LedgerError::Conflict {
        job,
        found: found.into(),
        expected: expected.into(),
    }
}

impl Ledger {
    /// Opens (creating, readable by its owner only) the ledger file and runs
    /// the migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let create_err = |source| LedgerError::Create {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(create_err)?;
        }
        match create_private(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(create_err(e)),
        }
        // Several processes (the worker, `redrelay submit`) may open a new
        // ledger at once: switching to WAL and migrating happen under an
        // exclusive lock on a side file.
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(create_err)?;
        let lock_file = tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file))
            .await
            .map_err(|e| create_err(std::io::Error::other(e)))?
            .map_err(create_err)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        // SQLite creates the WAL and shared-memory files with the umask's
        // mode; they hold ledger data too.
        #[cfg(unix)]
        for suffix in ["-wal", "-shm"] {
            use std::os::unix::fs::PermissionsExt;
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let _ = std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600));
        }
        drop(lock_file);
        Ok(Self { pool })
    }

    async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ----- jobs -------------------------------------------------------------

    /// Records a job. It is READY when every job it depends on has FINISHED,
    /// SKIPPED when one of them failed for good, PENDING otherwise.
    pub async fn insert_job(&self, job: &NewJob, now: i64) -> Result<Job> {
        let mut tx = self.begin().await?;
        let id = insert_job_tx(&mut tx, job, now).await?;
        tx.commit().await?;
        self.job(id).await
    }

    pub async fn job(&self, id: i64) -> Result<Job> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
        sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(LedgerError::NoSuchJob(id))
    }

    pub async fn jobs(&self, state: Option<JobState>, run: Option<&str>) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs \
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR run_id = ?2) ORDER BY id"
        );
        Ok(sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(run)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The first row of a job's last result set (upstream parameters read
    /// it here). `None` when it has none, or no results were fetched.
    pub async fn first_row(
        &self,
        id: i64,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT first_row FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let text = text.ok_or(LedgerError::NoSuchJob(id))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                LedgerError::Corrupt(format!("job {id}: its first result row is not JSON: {e}"))
            })
        })
        .transpose()
    }

    pub async fn deps(&self, id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT depends_on FROM job_deps WHERE job_id = ? ORDER BY depends_on",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn attempts(&self, id: i64) -> Result<Vec<Attempt>> {
        Ok(sqlx::query_as::<_, Attempt>(
            "SELECT attempt, client_token, statement_id, state, started_at, submitted_at, \
             finished_at, rows, error FROM attempts WHERE job_id = ? ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn results(&self, id: i64) -> Result<Vec<ResultFile>> {
        Ok(sqlx::query_as::<_, ResultFile>(
            "SELECT sub, statement_id, rows, csv_path, jsonl_path FROM results \
             WHERE job_id = ? ORDER BY sub",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn events(&self, limit: i64) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as::<_, EventRow>(
            "SELECT seq, event_id, message_id, received_at, statement_id, state, job_id, \
             disposition, reason, body FROM events ORDER BY seq DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// READY jobs in the order they became ready, oldest first.
    pub async fn ready_jobs(&self, limit: i64) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'READY' \
             ORDER BY ready_at, id LIMIT ?"
        );
        Ok(sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Attempts whose statement runs (SUBMITTED) since `before` or earlier,
    /// whatever their job's state (a cancelled job's statement may still
    /// commit): for the reconciler. (job, attempt, statement id).
    pub async fn open_attempts_before(&self, before: i64) -> Result<Vec<(i64, i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT job_id, attempt, statement_id FROM attempts \
             WHERE state = 'SUBMITTED' AND statement_id IS NOT NULL AND submitted_at <= ? \
             ORDER BY submitted_at, job_id",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?)
    }

    /// FINISHED jobs whose results are still to be fetched.
    pub async fn pending_fetches(&self) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'FINISHED' AND result_state = 'PENDING' \
             ORDER BY finished_at, id"
        );
        Ok(sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    /// True when no job is waiting, in flight, or has results to fetch.
    pub async fn is_idle(&self) -> Result<bool> {
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('PENDING', 'READY', 'SUBMITTED', 'RETRY_WAIT') \
             OR (state = 'FINISHED' AND result_state = 'PENDING')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(busy == 0)
    }

    /// Makes READY every RETRY_WAIT job whose backoff has elapsed. Returns
    /// how many.
    pub async fn promote_retries(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'READY', ready_at = ?1, not_before = NULL \
             WHERE state = 'RETRY_WAIT' AND not_before <= ?1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The earliest time a RETRY_WAIT job may go READY.
    pub async fn next_retry_at(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(not_before) FROM jobs WHERE state = 'RETRY_WAIT'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Whether a statement id belongs to an attempt of this ledger.
    pub async fn owns_statement(&self, statement_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE statement_id = ?")
            .bind(statement_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Number of statements in flight (SUBMITTED jobs).
    pub async fn in_flight(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'SUBMITTED'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    // ----- submission -------------------------------------------------------

    /// Starts (or resumes, after a crash) the attempt of a READY job: returns
    /// the ClientToken to submit with. Resuming reuses the token, so the Data
    /// API does not run the SQL twice. A new attempt closes any attempt the
    /// job left open, in the same transaction, and gets a new token. `None`
    /// if the job is no longer READY.
    pub async fn begin_attempt(&self, job_id: i64, now: i64) -> Result<Option<Ticket>> {
        Ok(match self.claim(job_id, None, now).await? {
            Claim::Ticket(t) => Some(*t),
            Claim::NotReady | Claim::NoRoom(_) => None,
        })
    }

    /// [`Ledger::begin_attempt`] within in-flight limits counted in the
    /// same transaction (statements SUBMITTED and attempts being
    /// submitted, by any process), so that every process that submits
    /// holds `max_in_flight` and the per-target limit together.
    pub async fn claim(
        &self,
        job_id: i64,
        limits: Option<InFlightLimits>,
        now: i64,
    ) -> Result<Claim> {
        let mut tx = self.begin().await?;
        let mut job = job_tx(&mut tx, job_id).await?;
        if job.state != JobState::Ready {
            return Ok(Claim::NotReady);
        }
        if let Some(limits) = limits {
            let (all, target): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(SUM(COALESCE(j.workgroup, j.cluster, '') = ?), 0) \
                 FROM jobs j WHERE j.id <> ? AND (j.state = 'SUBMITTED' OR (j.state = 'READY' \
                   AND EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = j.id \
                               AND a.attempt = j.attempt AND a.state = 'SUBMITTING')))",
            )
            .bind(job.target().name())
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
            if all >= i64::from(limits.max_in_flight) {
                return Ok(Claim::NoRoom(format!(
                    "{all} statements in flight (max_in_flight = {})",
                    limits.max_in_flight
                )));
            }
            if limits.per_target > 0 && target >= i64::from(limits.per_target) {
                return Ok(Claim::NoRoom(format!(
                    "{target} statements in flight on {} (max_in_flight_per_target = {})",
                    job.target().name(),
                    limits.per_target
                )));
            }
        }
        let open: Option<String> = sqlx::query_scalar(
            "SELECT client_token FROM attempts WHERE job_id = ? AND attempt = ? AND state = 'SUBMITTING'",
        )
        .bind(job_id)
        .bind(job.attempt)
        .fetch_optional(&mut *tx)
        .await?;
        let token = match open {
            Some(token) => token,
            None => {
                // A previous attempt still SUBMITTING (left by an earlier
                // version) is closed: its token is never used again.
                close_submitting(&mut tx, job_id, "superseded by a new attempt", now).await?;
                let attempt = job.attempt + 1;
                let token = client_token(&job.uid, attempt);
                sqlx::query(
                    "INSERT INTO attempts (job_id, attempt, client_token, state, started_at) \
                     VALUES (?, ?, ?, 'SUBMITTING', ?)",
                )
                .bind(job_id)
                .bind(attempt)
                .bind(&token)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let changed = sqlx::query(
                    "UPDATE jobs SET attempt = ? WHERE id = ? AND state = 'READY' AND attempt = ?",
                )
                .bind(attempt)
                .bind(job_id)
                .bind(job.attempt)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed != 1 {
                    return Err(conflict(job_id, job.state.as_str(), "READY"));
                }
                job.attempt = attempt;
                token
            }
        };
        tx.commit().await?;
        let statement_name = statement_name(&job.name, &job.uid);
        Ok(Claim::Ticket(Box::new(Ticket {
            attempt: job.attempt,
            job,
            client_token: token,
            statement_name,
        })))
    }

    /// Records that the Data API accepted an attempt, and applies any event
    /// for it that arrived first. Returns the dispositions of those events.
    pub async fn mark_submitted(
        &self,
        job_id: i64,
        attempt: i64,
        statement_id: &str,
        now: i64,
    ) -> Result<Vec<Disposition>> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE jobs SET state = 'SUBMITTED', statement_id = ?, submitted_at = ? \
             WHERE id = ? AND state = 'READY' AND attempt = ?",
        )
        .bind(statement_id)
        .bind(now)
        .bind(job_id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            let job = job_tx(&mut tx, job_id).await?;
            if job.state == JobState::Submitted
                && job.attempt == attempt
                && job.statement_id.as_deref() == Some(statement_id)
            {
                // Another process recorded the same idempotent submission.
                return Ok(Vec::new());
            }
            return Err(conflict(job_id, job.state.as_str(), "READY"));
        }
        sqlx::query(
            "UPDATE attempts SET state = 'SUBMITTED', statement_id = ?, submitted_at = ? \
             WHERE job_id = ? AND attempt = ? AND state = 'SUBMITTING'",
        )
        .bind(statement_id)
        .bind(now)
        .bind(job_id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
        let deferred: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, body FROM events WHERE disposition = 'deferred' AND statement_id = ? \
             ORDER BY seq",
        )
        .bind(statement_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::new();
        for (seq, body) in deferred {
            let Ok(ev) = crate::event::parse(&body, &crate::event::Origin::default()) else {
                continue;
            };
            let (disposition, reason) = apply_to_attempt(&mut tx, &ev, None, now).await?;
            sqlx::query("UPDATE events SET disposition = ?, reason = ? WHERE seq = ?")
                .bind(disposition)
                .bind(reason)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            out.push(disposition);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The Data API refused an attempt for good (a validation error): the
    /// job fails and its dependents are skipped.
    pub async fn fail_submission(
        &self,
        job_id: i64,
        attempt: i64,
        error: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE attempts SET state = 'FAILED', finished_at = ?, error = ? \
             WHERE job_id = ? AND attempt = ? AND state = 'SUBMITTING'",
        )
        .bind(now)
        .bind(error)
        .bind(job_id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
        let changed = sqlx::query(
            "UPDATE jobs SET state = 'FAILED', error = ?, finished_at = ? \
             WHERE id = ? AND state = 'READY' AND attempt = ?",
        )
        .bind(error)
        .bind(now)
        .bind(job_id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            let job = job_tx(&mut tx, job_id).await?;
            return Err(conflict(job_id, job.state.as_str(), "READY"));
        }
        skip_downstream(&mut tx, job_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- pipelines, cancel, retry ----------------------------------------

    /// Records a pipeline run and all its jobs in one transaction. `jobs`
    /// come in dependency order; each entry's dependencies and upstream
    /// parameters (param index, upstream index, column) refer to earlier
    /// entries by index. Returns the run id and the job ids.
    pub async fn create_run(
        &self,
        pipeline: &str,
        jobs: &[RunJob],
        now: i64,
    ) -> Result<(String, Vec<i64>)> {
        let run_id = format!("r{}", &new_uid()[..12]);
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO runs (id, pipeline, state, created_at) VALUES (?, ?, 'RUNNING', ?)",
        )
        .bind(&run_id)
        .bind(pipeline)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut ids: Vec<i64> = Vec::with_capacity(jobs.len());
        let earlier = |ids: &Vec<i64>, i: usize| {
            ids.get(i).copied().ok_or_else(|| {
                LedgerError::Corrupt(format!("job {i} of the run is not recorded yet"))
            })
        };
        for rj in jobs {
            let mut job = rj.job.clone();
            job.run_id = Some(run_id.clone());
            job.depends_on = rj
                .deps
                .iter()
                .map(|&i| earlier(&ids, i))
                .collect::<Result<_>>()?;
            for (param, from, column) in &rj.upstream {
                let from_id = earlier(&ids, *from)?;
                if let Some(p) = job.params.get_mut(*param) {
                    p.from = Some(ParamFrom {
                        job: from_id,
                        column: column.clone(),
                    });
                    p.value.clear();
                }
            }
            ids.push(insert_job_tx(&mut tx, &job, now).await?);
        }
        tx.commit().await?;
        Ok((run_id, ids))
    }

    pub async fn runs(&self) -> Result<Vec<Run>> {
        Ok(sqlx::query_as::<_, Run>(
            "SELECT id, pipeline, state, created_at, finished_at FROM runs ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn run(&self, id: &str) -> Result<Option<Run>> {
        Ok(sqlx::query_as::<_, Run>(
            "SELECT id, pipeline, state, created_at, finished_at FROM runs WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every dependency edge (job, depends_on) of a run.
    pub async fn run_edges(&self, run: &str) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT d.job_id, d.depends_on FROM job_deps d JOIN jobs j ON j.id = d.job_id \
             WHERE j.run_id = ? ORDER BY d.job_id, d.depends_on",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A READY job that cannot be submitted (a parameter could not be
    /// resolved): FAILED, its dependents SKIPPED.
    pub async fn fail_ready(&self, job_id: i64, error: &str, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let job = job_tx(&mut tx, job_id).await?;
        close_submitting(&mut tx, job_id, error, now).await?;
        let changed = sqlx::query(
            "UPDATE jobs SET state = 'FAILED', error = ?, finished_at = ? WHERE id = ? AND state = 'READY'",
        )
        .bind(error)
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(conflict(job_id, job.state.as_str(), "READY"));
        }
        skip_downstream(&mut tx, job_id, now).await?;
        if let Some(run) = &job.run_id {
            finish_run_if_done(&mut tx, run, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// An operator's cancel: a job that has not ended becomes CANCELLED and
    /// its dependents SKIPPED; an attempt being submitted is closed. Returns
    /// whether it changed, and the statement to stop with CancelStatement
    /// when the job was running.
    pub async fn cancel_job(&self, job_id: i64, now: i64) -> Result<(bool, Option<String>)> {
        let mut tx = self.begin().await?;
        let job = job_tx(&mut tx, job_id).await?;
        let statement = cancel_job_tx(&mut tx, &job, true, now).await?;
        if statement.is_none() && job.state.is_terminal() {
            return Ok((false, None));
        }
        if let Some(run) = &job.run_id {
            finish_run_if_done(&mut tx, run, now).await?;
        }
        tx.commit().await?;
        Ok((true, statement.flatten()))
    }

    /// An operator's cancel of a RUNNING run, in one transaction: the run
    /// becomes CANCELLED (never passing through FAILED) and each of its jobs
    /// that has not ended CANCELLED. Returns the number of jobs cancelled
    /// and the statements to stop with CancelStatement, as (job, statement).
    pub async fn cancel_run(&self, run: &str, now: i64) -> Result<(usize, Vec<(i64, String)>)> {
        let mut tx = self.begin().await?;
        let state: Option<RunState> = sqlx::query_scalar("SELECT state FROM runs WHERE id = ?")
            .bind(run)
            .fetch_optional(&mut *tx)
            .await?;
        let state = state.ok_or_else(|| LedgerError::NoSuchRun(run.to_string()))?;
        let changed = sqlx::query(
            "UPDATE runs SET state = 'CANCELLED', finished_at = ? WHERE id = ? AND state = 'RUNNING'",
        )
        .bind(now)
        .bind(run)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(LedgerError::RunConflict {
                run: run.to_string(),
                found: state,
                expected: RunState::Running,
            });
        }
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = ? AND state NOT IN ({}) ORDER BY id",
            JobState::sql_list(
                &JobState::ALL
                    .into_iter()
                    .filter(|s| s.is_terminal())
                    .collect::<Vec<_>>()
            )
        );
        let jobs = sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
            .bind(run)
            .fetch_all(&mut *tx)
            .await?;
        let mut cancelled = 0;
        let mut statements = Vec::new();
        for job in jobs {
            if let Some(statement) = cancel_job_tx(&mut tx, &job, false, now).await? {
                cancelled += 1;
                statements.extend(statement.map(|s| (job.id, s)));
            }
        }
        tx.commit().await?;
        Ok((cancelled, statements))
    }

    /// An operator's retry of a FAILED, ABORTED, CANCELLED or SKIPPED job:
    /// it gets one more attempt (READY, or PENDING while a parent has not
    /// finished), and the jobs it skipped are revived. Refused while a
    /// parent has failed: retry that one first.
    pub async fn retry_job(&self, job_id: i64, now: i64) -> Result<JobState, RetryRefused> {
        let mut tx = self.begin().await?;
        let job = job_tx(&mut tx, job_id).await?;
        if !job.state.can_be_revived_to(JobState::Ready) {
            return Err(RetryRefused::Why(format!(
                "job {job_id} is {}: only FAILED, ABORTED, CANCELLED or SKIPPED jobs can be retried",
                job.state
            )));
        }
        let failed_parent: Option<(i64, String)> = sqlx::query_as(
            "SELECT p.id, p.state FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
             WHERE d.job_id = ? AND p.state IN ('FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED') LIMIT 1",
        )
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((p, s)) = failed_parent {
            return Err(RetryRefused::Why(format!(
                "job {job_id} depends on job {p}, which is {s}: retry job {p} first"
            )));
        }
        // The previous statement may still commit: another attempt now could
        // run the SQL twice. Its end (event or DescribeStatement) closes it.
        let running: Option<String> = sqlx::query_scalar(
            "SELECT statement_id FROM attempts WHERE job_id = ? AND state = 'SUBMITTED' LIMIT 1",
        )
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(sid) = running {
            return Err(RetryRefused::Why(format!(
                "job {job_id}'s statement {sid} has not ended yet (it may still commit): \
                 retry once its end is recorded (`redrelay jobs show {job_id}`)"
            )));
        }
        let run_state: Option<RunState> = match &job.run_id {
            Some(run) => {
                sqlx::query_scalar("SELECT state FROM runs WHERE id = ?")
                    .bind(run)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        if run_state == Some(RunState::Cancelled) {
            return Err(RetryRefused::Why(format!(
                "job {job_id} belongs to run {}, which was CANCELLED: start a new run instead",
                job.run_id.as_deref().unwrap_or("-")
            )));
        }
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
             WHERE d.job_id = ? AND p.state <> 'FINISHED'",
        )
        .bind(job_id)
        .fetch_one(&mut *tx)
        .await?;
        let next = if waiting > 0 {
            JobState::Pending
        } else {
            JobState::Ready
        };
        let changed = sqlx::query(
            "UPDATE jobs SET state = ?, error = NULL, finished_at = NULL, not_before = NULL, \
             ready_at = ?, max_attempts = MAX(max_attempts, attempt + 1) WHERE id = ? AND state = ?",
        )
        .bind(next)
        .bind((next == JobState::Ready).then_some(now))
        .bind(job_id)
        .bind(job.state)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(conflict(job_id, "changed", job.state.as_str()).into());
        }
        // Revive what this job skipped, then skip again whatever still has
        // another failed parent.
        sqlx::query(
            "WITH RECURSIVE down(id) AS ( \
                 SELECT job_id FROM job_deps WHERE depends_on = ?1 \
                 UNION SELECT d.job_id FROM job_deps d JOIN down ON d.depends_on = down.id) \
             UPDATE jobs SET state = 'PENDING', finished_at = NULL, error = NULL \
             WHERE id IN (SELECT id FROM down) AND state = 'SKIPPED'",
        )
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        loop {
            let reskipped = sqlx::query(
                "UPDATE jobs SET state = 'SKIPPED', finished_at = ?, error = 'an upstream job did not finish' \
                 WHERE state = 'PENDING' AND EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
                   WHERE d.job_id = jobs.id AND p.state IN ('FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED'))",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if reskipped == 0 {
                break;
            }
        }
        if let (Some(run), Some(RunState::Failed)) = (&job.run_id, run_state) {
            let changed = sqlx::query(
                "UPDATE runs SET state = 'RUNNING', finished_at = NULL WHERE id = ? AND state = 'FAILED'",
            )
            .bind(run)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                return Err(RetryRefused::Ledger(LedgerError::RunConflict {
                    run: run.clone(),
                    found: RunState::Running,
                    expected: RunState::Failed,
                }));
            }
        }
        tx.commit().await?;
        Ok(next)
    }

    /// SUBMITTED jobs running past their timeout, not yet asked to stop.
    pub async fn timed_out(&self, now: i64) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'SUBMITTED' AND timeout_secs IS NOT NULL \
             AND timed_out_at IS NULL AND submitted_at + timeout_secs * 1000 <= ? ORDER BY submitted_at"
        );
        Ok(sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records that a timeout asked the Data API to cancel the current
    /// statement of a job (fenced by its attempt). The attempt stays open:
    /// it ends when the statement truly ends (an event or DescribeStatement),
    /// and a failure then reads "timed out". Returns false when the job had
    /// moved on already.
    pub async fn mark_timed_out(&self, job_id: i64, attempt: i64, now: i64) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE jobs SET timed_out_at = ? \
             WHERE id = ? AND state = 'SUBMITTED' AND attempt = ? AND timed_out_at IS NULL",
        )
        .bind(now)
        .bind(job_id)
        .bind(attempt)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Statements in flight per target (workgroup or cluster name).
    pub async fn in_flight_by_target(&self) -> Result<HashMap<String, i64>> {
        let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT COALESCE(workgroup, cluster), COUNT(*) FROM jobs WHERE state = 'SUBMITTED' GROUP BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(t, n)| (t.unwrap_or_default(), n))
            .collect())
    }

    // ----- retention --------------------------------------------------------

    /// Removes what is older than `cutoff` (epoch ms): inbox rows received
    /// before it (raw bodies), except an event deferred for a job that has
    /// not ended; and the result rows of jobs that ended before it, whose
    /// files the caller then deletes (returned). A job that has not ended
    /// keeps everything. The jobs themselves stay, with `results_pruned_at`.
    pub async fn prune(&self, cutoff: i64, now: i64) -> Result<Pruned> {
        let mut tx = self.begin().await?;
        let events = sqlx::query(
            "DELETE FROM events WHERE received_at < ? AND NOT (disposition = 'deferred' \
               AND job_id IN (SELECT id FROM jobs WHERE finished_at IS NULL))",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let jobs: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT id, result_path FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? \
             AND results_pruned_at IS NULL AND result_state = 'FETCHED' ORDER BY id",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let mut files = Vec::new();
        for (id, dir) in &jobs {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT csv_path, jsonl_path FROM results WHERE job_id = ?")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            for (csv, jsonl) in rows {
                files.push(csv);
                files.push(jsonl);
            }
            files.extend(dir.clone());
            sqlx::query("DELETE FROM results WHERE job_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE jobs SET results_pruned_at = ? WHERE id = ? AND finished_at IS NOT NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Pruned {
            events,
            jobs: jobs.len() as u64,
            files,
        })
    }

    // ----- invariants -------------------------------------------------------

    /// Checks the ledger's invariants; returns one line per violation.
    pub async fn check(&self) -> Result<(usize, Vec<String>)> {
        let mut v = Vec::new();
        let jobs = self.jobs(None, None).await?;
        let by_id: HashMap<i64, &Job> = jobs.iter().map(|j| (j.id, j)).collect();
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT job_id, attempt, state, statement_id, started_at, finished_at FROM attempts \
             ORDER BY job_id, attempt",
        )
        .fetch_all(&self.pool)
        .await?;
        let deps: Vec<(i64, i64)> = sqlx::query_as("SELECT job_id, depends_on FROM job_deps")
            .fetch_all(&self.pool)
            .await?;
        let mut parents: HashMap<i64, Vec<i64>> = HashMap::new();
        for (job, dep) in &deps {
            parents.entry(*job).or_default().push(*dep);
        }
        for j in &jobs {
            if j.state.is_terminal() != j.finished_at.is_some() {
                v.push(format!(
                    "job {}: state {} but finished_at is {}",
                    j.id,
                    j.state,
                    if j.finished_at.is_some() {
                        "set"
                    } else {
                        "not set"
                    }
                ));
            }
            if (j.state == JobState::Finished) != j.result_state.is_some() {
                v.push(format!(
                    "job {}: state {} with result_state {:?}",
                    j.id, j.state, j.result_state
                ));
            }
            if j.state == JobState::Submitted && j.statement_id.is_none() {
                v.push(format!("job {}: SUBMITTED without a statement id", j.id));
            }
            if j.state == JobState::RetryWait && j.not_before.is_none() {
                v.push(format!("job {}: RETRY_WAIT without a time to retry", j.id));
            }
            if j.attempt > j.max_attempts {
                v.push(format!(
                    "job {}: attempt {} of at most {}",
                    j.id, j.attempt, j.max_attempts
                ));
            }
            let ps = parents.get(&j.id).cloned().unwrap_or_default();
            if j.state == JobState::Ready || j.state == JobState::Submitted {
                for p in &ps {
                    if by_id.get(p).map(|p| p.state) != Some(JobState::Finished) {
                        v.push(format!(
                            "job {}: {} while its parent job {p} has not FINISHED",
                            j.id, j.state
                        ));
                    }
                }
            }
        }
        let mut current: HashMap<i64, i64> = HashMap::new();
        for (job_id, attempt, state, sid, started_at, finished_at) in &attempts {
            let Some(j) = by_id.get(job_id) else {
                v.push(format!("attempt {attempt} of missing job {job_id}"));
                continue;
            };
            *current.entry(*job_id).or_default() =
                (*attempt).max(current.get(job_id).copied().unwrap_or(0));
            if *attempt > j.attempt {
                v.push(format!(
                    "job {job_id}: attempt {attempt} recorded beyond its current attempt {}",
                    j.attempt
                ));
            }
            let ended = state.is_ended();
            if ended != finished_at.is_some() {
                v.push(format!(
                    "job {job_id}: attempt {attempt} is {state} but its end time is {:?}",
                    finished_at
                ));
            }
            if matches!(
                state,
                AttemptState::Submitted | AttemptState::Finished | AttemptState::Aborted
            ) && sid.is_none()
            {
                v.push(format!(
                    "job {job_id}: attempt {attempt} is {state} without a statement id"
                ));
            }
            if *state == AttemptState::Submitting
                && !(j.state == JobState::Ready && j.attempt == *attempt)
            {
                v.push(format!("job {job_id}: attempt {attempt} is SUBMITTING while the job is {} on attempt {}", j.state, j.attempt));
            }
            // No dependent submitted before its parents finished.
            for p in parents.get(job_id).cloned().unwrap_or_default() {
                match by_id.get(&p) {
                    Some(parent) if parent.state == JobState::Finished => {
                        if let Some(done) = parent.finished_at {
                            if *started_at < done {
                                v.push(format!(
                                    "job {job_id}: attempt {attempt} started at {started_at}, before its parent job {p} FINISHED at {done}"
                                ));
                            }
                        }
                    }
                    Some(parent) => v.push(format!(
                        "job {job_id}: attempt {attempt} exists while its parent job {p} is {}",
                        parent.state
                    )),
                    None => v.push(format!("job {job_id}: parent job {p} is missing")),
                }
            }
        }
        for j in &jobs {
            if j.attempt > 0 && current.get(&j.id).copied() != Some(j.attempt) {
                v.push(format!(
                    "job {}: current attempt {} has no attempt row",
                    j.id, j.attempt
                ));
            }
            if matches!(j.state, JobState::Submitted) {
                let row = attempts.iter().find(|a| a.0 == j.id && a.1 == j.attempt);
                match row {
                    Some(a) if a.2 == AttemptState::Submitted && a.3 == j.statement_id => {}
                    other => v.push(format!(
                        "job {}: SUBMITTED but its attempt {} is {:?}",
                        j.id,
                        j.attempt,
                        other.map(|a| a.2)
                    )),
                }
            }
        }
        let applied: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT statement_id, state, COUNT(*) FROM events WHERE disposition = 'applied' \
             GROUP BY statement_id, state HAVING COUNT(*) > 1",
        )
        .fetch_all(&self.pool)
        .await?;
        for (sid, state, n) in applied {
            v.push(format!("statement {sid}: {n} {state} events applied"));
        }
        let runs = self.runs().await?;
        for r in runs {
            let open = jobs
                .iter()
                .any(|j| j.run_id.as_deref() == Some(r.id.as_str()) && !j.state.is_terminal());
            if r.state == RunState::Running && !open {
                v.push(format!("run {}: RUNNING with no job left to run", r.id));
            }
            if matches!(r.state, RunState::Finished | RunState::Failed) && open {
                v.push(format!(
                    "run {}: {} while some of its jobs have not ended",
                    r.id, r.state
                ));
            }
        }
        Ok((jobs.len(), v))
    }

    // ----- events -----------------------------------------------------------

    /// Records a consumed status change event and, in the same transaction,
    /// the job's new state and its dependents'.
    /// `error` is the statement's error text from DescribeStatement, for a
    /// FAILED or ABORTED event (the event itself carries none).
    pub async fn apply_event(
        &self,
        ev: &StatusEvent,
        error: Option<&str>,
        message_id: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<(Disposition, Option<i64>)> {
        let mut tx = self.begin().await?;
        let seen: Option<Disposition> =
            sqlx::query_scalar("SELECT disposition FROM events WHERE event_id = ?")
                .bind(&ev.event_id)
                .fetch_optional(&mut *tx)
                .await?;
        match seen {
            // Still not ours: the same answer, so `on_foreign = "leave"`
            // leaves it again, until SQS moves it to the dead-letter queue.
            Some(Disposition::Foreign) => return Ok((Disposition::Foreign, None)),
            Some(_) => return Ok((Disposition::Duplicate, None)),
            None => {}
        }
        let sid = &ev.detail.statement_id;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT job_id FROM attempts WHERE statement_id = ?")
                .bind(sid)
                .fetch_optional(&mut *tx)
                .await?;
        let (disposition, reason, job_id) = match known {
            Some(job_id) => {
                let (d, r) = apply_to_attempt(&mut tx, ev, error, now).await?;
                (d, r, Some(job_id))
            }
            None => match deferrable_job(&mut tx, ev).await? {
                Some(job_id) => (
                    Disposition::Deferred,
                    Some("arrived before its statement id was recorded".to_string()),
                    Some(job_id),
                ),
                None => (
                    Disposition::Foreign,
                    Some(format!("statement {sid} is not a job of this ledger")),
                    None,
                ),
            },
        };
        sqlx::query(
            "INSERT INTO events (event_id, message_id, received_at, statement_id, state, job_id, \
             disposition, reason, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&ev.event_id)
        .bind(message_id)
        .bind(now)
        .bind(sid)
        .bind(ev.detail.state.as_str())
        .bind(job_id)
        .bind(disposition)
        .bind(reason)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((disposition, job_id))
    }

    /// Records a message that is not a valid event of the configured origin.
    /// Recorded once per SQS message id, however often it is received.
    pub async fn quarantine(
        &self,
        message_id: Option<&str>,
        body: &str,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO events (message_id, received_at, disposition, reason, body) \
             VALUES (?, ?, 'quarantined', ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(message_id)
        .bind(now)
        .bind(reason)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies an outcome found by DescribeStatement (the reconciler) through
    /// the same transition as an event.
    /// A statement that is no longer the job's current one only closes its
    /// attempt (history); one already closed is a duplicate.
    pub async fn apply_reconciled(
        &self,
        job_id: i64,
        statement_id: &str,
        outcome: &Outcome,
        now: i64,
    ) -> Result<Disposition> {
        let mut tx = self.begin().await?;
        let row: Option<(i64, AttemptState)> = sqlx::query_as(
            "SELECT attempt, state FROM attempts WHERE job_id = ? AND statement_id = ?",
        )
        .bind(job_id)
        .bind(statement_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((attempt, state)) = row else {
            return Ok(Disposition::Foreign);
        };
        if state != AttemptState::Submitted {
            return Ok(Disposition::Duplicate);
        }
        let job = job_tx(&mut tx, job_id).await?;
        let disposition = if job.state == JobState::Submitted && job.attempt == attempt {
            end_attempt(&mut tx, &job, outcome, now).await?;
            Disposition::Applied
        } else {
            finish_attempt_row(&mut tx, job_id, attempt, outcome, now).await?;
            Disposition::Stale
        };
        tx.commit().await?;
        Ok(disposition)
    }

    // ----- results ----------------------------------------------------------

    /// Records the result files of a FINISHED job (none: no result set).
    /// `first_row` is the first row of the last result set, as a JSON
    /// object: what an upstream parameter reads.
    pub async fn record_results(
        &self,
        job_id: i64,
        files: &[ResultFile],
        dir: Option<&str>,
        first_row: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let state = if files.is_empty() {
            ResultState::None
        } else {
            ResultState::Fetched
        };
        let total: i64 = files.iter().map(|f| f.rows).sum();
        let first_row = first_row
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        let changed = sqlx::query(
            "UPDATE jobs SET result_state = ?, result_rows = ?, result_path = ?, first_row = ? \
             WHERE id = ? AND state = 'FINISHED' AND result_state = 'PENDING'",
        )
        .bind(state)
        .bind(if files.is_empty() { None } else { Some(total) })
        .bind(dir)
        .bind(first_row)
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(conflict(job_id, "not awaiting results", "FINISHED/PENDING"));
        }
        sqlx::query("DELETE FROM results WHERE job_id = ?")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        for f in files {
            sqlx::query(
                "INSERT INTO results (job_id, sub, statement_id, rows, csv_path, jsonl_path) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(job_id)
            .bind(f.sub)
            .bind(&f.statement_id)
            .bind(f.rows)
            .bind(&f.csv_path)
            .bind(&f.jsonl_path)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that a FINISHED job's results could not be fetched for good
    /// (`EXPIRED` or `ERROR`). The job stays FINISHED.
    pub async fn record_result_error(&self, job_id: i64, expired: bool, error: &str) -> Result<()> {
        let changed = sqlx::query(
            "UPDATE jobs SET result_state = ?, result_error = ? \
             WHERE id = ? AND state = 'FINISHED' AND result_state = 'PENDING'",
        )
        .bind(if expired {
            ResultState::Expired
        } else {
            ResultState::Error
        })
        .bind(error)
        .bind(job_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(conflict(job_id, "not awaiting results", "FINISHED/PENDING"));
        }
        Ok(())
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
}

fn new_uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn job_tx(tx: &mut Tx, id: i64) -> Result<Job> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
    sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(LedgerError::NoSuchJob(id))
}

/// Closes an attempt of the job still SUBMITTING (no statement id known):
/// CANCELLED with `why`, so that its ClientToken is never used again.
async fn close_submitting(tx: &mut Tx, job_id: i64, why: &str, now: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE attempts SET state = 'CANCELLED', finished_at = ?, error = ? \
         WHERE job_id = ? AND state = 'SUBMITTING'",
    )
    .bind(now)
    .bind(why)
    .bind(job_id)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Cancels a job that has not ended (guarded on its state), closing an
/// attempt being submitted; with `skip`, its dependents are SKIPPED.
/// `None` when the job had already ended; otherwise the statement to stop.
async fn cancel_job_tx(
    tx: &mut Tx,
    job: &Job,
    skip: bool,
    now: i64,
) -> Result<Option<Option<String>>> {
    if !job.state.can_move_to(JobState::Cancelled) {
        return Ok(None);
    }
    let changed = sqlx::query(
        "UPDATE jobs SET state = 'CANCELLED', error = 'cancelled by an operator', \
         finished_at = ?, not_before = NULL WHERE id = ? AND state = ?",
    )
    .bind(now)
    .bind(job.id)
    .bind(job.state)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed != 1 {
        return Err(conflict(job.id, "changed", job.state.as_str()));
    }
    close_submitting(
        tx,
        job.id,
        "cancelled by an operator during submission",
        now,
    )
    .await?;
    if skip {
        skip_downstream(tx, job.id, now).await?;
    }
    Ok(Some(if job.state == JobState::Submitted {
        job.statement_id.clone()
    } else {
        None
    }))
}

pub(crate) async fn insert_job_tx(tx: &mut Tx, job: &NewJob, now: i64) -> Result<i64> {
    let mut state = JobState::Ready;
    let mut error = None;
    for dep in &job.depends_on {
        let s: Option<JobState> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
            .bind(dep)
            .fetch_optional(&mut **tx)
            .await?;
        let s = s.ok_or(LedgerError::NoSuchJob(*dep))?;
        if s.is_failure() {
            state = JobState::Skipped;
            error = Some(format!("upstream job {dep} is {s}"));
        } else if s != JobState::Finished && state == JobState::Ready {
            state = JobState::Pending;
        }
    }
    let sqls = serde_json::to_string(&job.sqls).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    let params =
        serde_json::to_string(&job.params).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    let retry = job.retry.as_ref().map(|r| r.to_string());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (uid, run_id, name, sqls, params, workgroup, cluster, database, db_user, \
         secret_arn, state, max_attempts, retry, timeout_secs, error, created_at, ready_at, finished_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(new_uid())
    .bind(&job.run_id)
    .bind(&job.name)
    .bind(sqls)
    .bind(params)
    .bind(&job.target.workgroup)
    .bind(&job.target.cluster)
    .bind(&job.target.database)
    .bind(&job.target.db_user)
    .bind(&job.target.secret_arn)
    .bind(state)
    .bind(job.max_attempts.max(1))
    .bind(retry)
    .bind(job.timeout_secs)
    .bind(error)
    .bind(now)
    .bind((state == JobState::Ready).then_some(now))
    .bind(state.is_terminal().then_some(now))
    .fetch_one(&mut **tx)
    .await?;
    for dep in &job.depends_on {
        sqlx::query("INSERT OR IGNORE INTO job_deps (job_id, depends_on) VALUES (?, ?)")
            .bind(id)
            .bind(dep)
            .execute(&mut **tx)
            .await?;
    }
    Ok(id)
}

/// An event whose statement id is unknown: if its StatementName names an
/// attempt of ours still being submitted, the job it belongs to.
async fn deferrable_job(tx: &mut Tx, ev: &StatusEvent) -> Result<Option<i64>> {
    let Some(uid) = ev
        .detail
        .statement_name
        .as_deref()
        .and_then(parse_statement_name)
    else {
        return Ok(None);
    };
    Ok(sqlx::query_scalar(
        "SELECT a.job_id FROM attempts a JOIN jobs j ON j.id = a.job_id \
         WHERE j.uid = ? AND a.attempt = j.attempt AND a.state = 'SUBMITTING'",
    )
    .bind(uid)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Applies an event to the attempt that owns its statement id.
async fn apply_to_attempt(
    tx: &mut Tx,
    ev: &StatusEvent,
    error: Option<&str>,
    now: i64,
) -> Result<(Disposition, Option<String>)> {
    let sid = &ev.detail.statement_id;
    let row: Option<(i64, i64, AttemptState)> =
        sqlx::query_as("SELECT job_id, attempt, state FROM attempts WHERE statement_id = ?")
            .bind(sid)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((job_id, attempt, attempt_state)) = row else {
        return Ok((
            Disposition::Foreign,
            Some(format!("statement {sid} is not a job of this ledger")),
        ));
    };
    let outcome = match &ev.detail.state {
        StatementState::Finished => Outcome::Finished {
            rows: ev.detail.rows,
        },
        StatementState::Failed => Outcome::Failed {
            error: error.unwrap_or("statement FAILED").to_string(),
        },
        StatementState::Aborted => Outcome::Aborted {
            error: error.unwrap_or("statement ABORTED").to_string(),
        },
        other => {
            return Ok((
                Disposition::Ignored,
                Some(format!("state {} is not an end state", other.as_str())),
            ))
        }
    };
    if attempt_state != AttemptState::Submitted {
        return Ok((
            Disposition::Duplicate,
            Some(format!(
                "attempt {attempt} already ended as {attempt_state}"
            )),
        ));
    }
    let job = job_tx(tx, job_id).await?;
    if job.attempt != attempt || job.state != JobState::Submitted {
        // History only: the attempt ended, the job has moved on.
        finish_attempt_row(tx, job_id, attempt, &outcome, now).await?;
        return Ok((
            Disposition::Stale,
            Some(format!(
                "attempt {attempt} is not current (job {job_id} is {} on attempt {})",
                job.state, job.attempt
            )),
        ));
    }
    end_attempt(tx, &job, &outcome, now).await?;
    if let (Outcome::Finished { .. }, Some(expire)) = (&outcome, ev.detail.expire_at) {
        sqlx::query("UPDATE jobs SET expire_at = ? WHERE id = ? AND state = 'FINISHED'")
            .bind(expire.saturating_mul(1000))
            .bind(job_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok((Disposition::Applied, None))
}

async fn finish_attempt_row(
    tx: &mut Tx,
    job_id: i64,
    attempt: i64,
    outcome: &Outcome,
    now: i64,
) -> Result<()> {
    let (rows, error) = match outcome {
        Outcome::Finished { rows } => (*rows, None),
        Outcome::Failed { error } | Outcome::Aborted { error } => (None, Some(error.as_str())),
    };
    sqlx::query(
        "UPDATE attempts SET state = ?, finished_at = ?, rows = ?, error = ? \
         WHERE job_id = ? AND attempt = ? AND state = 'SUBMITTED'",
    )
    .bind(outcome.attempt_state())
    .bind(now)
    .bind(rows)
    .bind(error)
    .bind(job_id)
    .bind(attempt)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends the current attempt of a SUBMITTED job: the job's new state, and in
/// the same transaction its dependents made READY (on FINISHED) or SKIPPED
/// (on a failure for good).
async fn end_attempt(tx: &mut Tx, job: &Job, outcome: &Outcome, now: i64) -> Result<()> {
    // The attempt keeps its statement's true end; for the job, a statement
    // aborted because it timed out is a failure (the timeout's).
    finish_attempt_row(tx, job.id, job.attempt, outcome, now).await?;
    let timed_out_abort;
    let outcome = match outcome {
        Outcome::Aborted { error } if job.timed_out_at.is_some() => {
            timed_out_abort = Outcome::Failed {
                error: error.clone(),
            };
            &timed_out_abort
        }
        other => other,
    };
    let next = after_attempt(outcome, job.attempt, job.max_attempts);
    if !job.state.can_move_to(next) {
        return Err(LedgerError::Corrupt(format!(
            "job {}: {} -> {next} is not a transition of the state machine",
            job.id, job.state
        )));
    }
    let (rows, error) = match outcome {
        Outcome::Finished { rows } => (*rows, None),
        Outcome::Failed { error } | Outcome::Aborted { error } => (None, Some(error.clone())),
    };
    let error = match (error, job.timed_out_at, job.timeout_secs) {
        (Some(e), Some(_), Some(secs)) => Some(format!(
            "timed out after {secs} s: the statement was cancelled ({e})"
        )),
        (e, _, _) => e,
    };
    let not_before = match next {
        JobState::RetryWait => {
            let policy = match job.retry.as_deref() {
                None => RetryPolicy::default(),
                Some(text) => serde_json::from_str::<RetryPolicy>(text).map_err(|e| {
                    LedgerError::Corrupt(format!(
                        "job {}: its retry policy {text:?} cannot be read: {e}",
                        job.id
                    ))
                })?,
            };
            Some(now + policy.delay_ms(job.attempt, seed_of(&job.uid)))
        }
        _ => None,
    };
    let changed = sqlx::query(
        "UPDATE jobs SET state = ?, rows = COALESCE(?, rows), error = ?, \
         finished_at = ?, result_state = ?, not_before = ?, timed_out_at = NULL \
         WHERE id = ? AND state = 'SUBMITTED' AND attempt = ?",
    )
    .bind(next)
    .bind(rows)
    .bind(error)
    .bind(next.is_terminal().then_some(now))
    .bind((next == JobState::Finished).then_some(ResultState::Pending))
    .bind(not_before)
    .bind(job.id)
    .bind(job.attempt)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed != 1 {
        return Err(conflict(job.id, job.state.as_str(), "SUBMITTED"));
    }
    match next {
        JobState::Finished => release_downstream(tx, job.id, now).await?,
        s if s.is_failure() => skip_downstream(tx, job.id, now).await?,
        _ => {}
    }
    if let Some(run) = &job.run_id {
        finish_run_if_done(tx, run, now).await?;
    }
    Ok(())
}

/// Makes READY every PENDING dependent of `parent` whose parents have all
/// FINISHED.
async fn release_downstream(tx: &mut Tx, parent: i64, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'READY', ready_at = ? \
         WHERE state = 'PENDING' \
           AND id IN (SELECT job_id FROM job_deps WHERE depends_on = ?) \
           AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
                           WHERE d.job_id = jobs.id AND p.state <> 'FINISHED')",
    )
    .bind(now)
    .bind(parent)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks SKIPPED every job downstream of `parent` (transitively) that has
/// not started: the states the state machine lets move to SKIPPED. An
/// attempt one of them was submitting is closed.
pub(crate) async fn skip_downstream(tx: &mut Tx, parent: i64, now: i64) -> Result<()> {
    let from = JobState::sql_list(&JobState::sources_of(JobState::Skipped));
    let sql = format!(
        "WITH RECURSIVE down(id) AS ( \
             SELECT job_id FROM job_deps WHERE depends_on = ?1 \
             UNION SELECT d.job_id FROM job_deps d JOIN down ON d.depends_on = down.id) \
         UPDATE jobs SET state = 'SKIPPED', finished_at = ?2, \
             error = 'upstream job ' || ?1 || ' did not finish' \
         WHERE id IN (SELECT id FROM down) AND state IN ({from}) RETURNING id"
    );
    let skipped: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(parent)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
    for id in skipped {
        close_submitting(tx, id, "an upstream job did not finish", now).await?;
    }
    Ok(())
}

/// Ends a pipeline run once none of its jobs can move any more.
pub(crate) async fn finish_run_if_done(tx: &mut Tx, run: &str, now: i64) -> Result<()> {
    let (open, failed): (i64, i64) = sqlx::query_as(
        "SELECT \
           COALESCE(SUM(state IN ('PENDING', 'READY', 'SUBMITTED', 'RETRY_WAIT')), 0), \
           COALESCE(SUM(state IN ('FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED')), 0) \
         FROM jobs WHERE run_id = ?",
    )
    .bind(run)
    .fetch_one(&mut **tx)
    .await?;
    if open == 0 {
        sqlx::query(
            "UPDATE runs SET state = ?, finished_at = ? WHERE id = ? AND state = 'RUNNING'",
        )
        .bind(if failed > 0 {
            RunState::Failed
        } else {
            RunState::Finished
        })
        .bind(now)
        .bind(run)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_names_round_trip() {
        let uid = new_uid();
        let name = statement_name("load/staging", &uid);
        assert_eq!(name, format!("redrelay/load/staging/{uid}"));
        assert_eq!(parse_statement_name(&name), Some(uid.as_str()));
        let long = statement_name(&"x".repeat(2000), &uid);
        assert!(long.len() <= 500);
        assert_eq!(parse_statement_name(&long), Some(uid.as_str()));
        assert_eq!(parse_statement_name("test.testtable"), None);
        assert_eq!(parse_statement_name("redrelay/a/nothex"), None);
        assert!(client_token(&uid, 40).len() <= 64);
    }
}

//! Jobs: recording them (READY, PENDING or SKIPPED from their parents),
//! reading them one at a time or by page, and the gauges over them.

use super::driver::{query, Tx};
use super::job_row::JOB_COLUMNS;
use super::outbox::job_event;
use super::*;
use crate::ledger::names::new_uid;
use crate::state::JobState;

impl Ledger {
    /// Records a job. It is READY when every job it depends on has FINISHED,
    /// SKIPPED when one of them failed for good, PENDING otherwise.
    pub async fn insert_job(&self, job: &NewJob, now: i64) -> Result<Job> {
        let mut tx = self.begin().await?;
        let id = insert_job_tx(&mut tx, job, now).await?;
        tx.commit().await?;
        self.job(id).await
    }

    pub async fn job(&self, id: i64) -> Result<Job> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        query(sql)
            .bind(id)
            .fetch_optional::<Job>(&self.pool)
            .await?
            .ok_or(LedgerError::NoSuchJob(id))
    }

    pub async fn jobs(&self, state: Option<JobState>, run: Option<&str>) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs \
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR run_id = $2) ORDER BY id"
        );
        query(sql)
            .binds((state, run))
            .fetch_all::<Job>(&self.pool)
            .await
    }

    /// The first row of a job's last result set (upstream parameters read
    /// it here). `None` when it has none, or no results were fetched.
    pub async fn first_row(
        &self,
        id: i64,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let text: Option<Option<String>> = query("SELECT first_row FROM jobs WHERE id = $1")
            .bind(id)
            .scalar_optional(&self.pool)
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
        query("SELECT depends_on FROM job_deps WHERE job_id = $1 ORDER BY depends_on")
            .bind(id)
            .scalars(&self.pool)
            .await
    }

    pub async fn attempts(&self, id: i64) -> Result<Vec<Attempt>> {
        query(
            "SELECT attempt, client_token, statement_id, state, started_at, submitted_at, \
                 finished_at, rows, error FROM attempts WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all::<Attempt>(&self.pool)
        .await
    }

    /// READY jobs in the order they became ready, oldest first.
    pub async fn ready_jobs(&self, limit: i64) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'READY' \
                 ORDER BY ready_at, id LIMIT $1"
        );
        query(sql).bind(limit).fetch_all::<Job>(&self.pool).await
    }

    /// Jobs by state, and when the oldest statement in flight was
    /// submitted (for the leader's gauges).
    pub async fn gauges(&self) -> Result<(Vec<(JobState, i64)>, Option<i64>)> {
        let by_state: Vec<(JobState, i64)> =
            query("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?;
        let oldest: Option<i64> =
            query("SELECT MIN(submitted_at) FROM jobs WHERE state = 'SUBMITTED'")
                .scalar(&self.pool)
                .await?;
        Ok((by_state, oldest))
    }

    /// True when no job is waiting, in flight, or has results to fetch.
    pub async fn is_idle(&self) -> Result<bool> {
        let busy: i64 = query(format!(
            "SELECT COUNT(*) FROM jobs WHERE state IN ({}) \
             OR (state = 'FINISHED' AND result_state = 'PENDING')",
            JobState::sql_where(JobState::is_open)
        ))
        .scalar(&self.pool)
        .await?;
        Ok(busy == 0)
    }

    /// A page of jobs, newest first, for the API (see [`JobsFilter`]).
    pub async fn jobs_page(&self, f: &JobsFilter) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs \
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR run_id = $2) \
                   AND ($3 IS NULL OR name = $3) AND ($4 IS NULL OR id < $4) \
                 ORDER BY id DESC LIMIT $5"
        );
        query(sql)
            .binds((
                f.state,
                f.run.as_deref(),
                f.name.as_deref(),
                f.before,
                f.limit,
            ))
            .fetch_all::<Job>(&self.pool)
            .await
    }
}

pub(super) async fn insert_job_tx(tx: &mut Tx, job: &NewJob, now: i64) -> Result<i64> {
    let mut state = JobState::Ready;
    let mut error = None;
    for dep in &job.depends_on {
        let s: Option<JobState> = query("SELECT state FROM jobs WHERE id = $1")
            .bind(dep)
            .scalar_optional(&mut *tx)
            .await?;
        let s = s.ok_or(LedgerError::NoSuchJob(*dep))?;
        if s.is_failure() {
            state = JobState::Skipped;
            error = Some(format!("upstream job {dep} is {s}"));
        } else if s != JobState::Finished && state == JobState::Ready {
            state = JobState::Pending;
        }
    }
    // JSON in both backends (TEXT in SQLite, JSONB in PostgreSQL).
    let sqls = sqlx::types::Json(&job.sqls);
    let params = sqlx::types::Json(&job.params);
    let retry = job.retry.as_ref().map(|r| r.to_string());
    let id: i64 = query(
            "INSERT INTO jobs (uid, run_id, name, sqls, params, workgroup, cluster, database, db_user, \
             secret_arn, state, max_attempts, retry, timeout_secs, error, created_at, ready_at, finished_at, \
             execution_mode, result_formats, session_keep_alive_secs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
             $20, $21) RETURNING id",
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
        .bind(&job.execution_mode)
        .bind(job.result_formats.map(|f| f.to_string()))
        .bind(job.session_keep_alive_secs)
        .scalar(&mut *tx)
        .await?;
    for dep in &job.depends_on {
        query("INSERT INTO job_deps (job_id, depends_on) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .binds((id, dep))
            .execute(&mut *tx)
            .await?;
    }
    if state == JobState::Ready {
        tx.notify_ready().await?;
    }
    if state == JobState::Skipped {
        job_event(tx, id, now).await?;
    }
    Ok(id)
}

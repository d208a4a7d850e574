//! Pipeline runs: created with all their jobs in one transaction,
//! listed, cancelled as a whole, and ended once none of their jobs can
//! move any more.

use super::driver::{query, Tx};
use super::job_row::JOB_COLUMNS;
use super::jobs::insert_job_tx;
use super::outbox::run_event;
use super::transitions::cancel_job_tx;
use super::*;
use crate::ledger::names::new_uid;
use crate::state::{JobState, RunState};

impl Ledger {
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
        let mut tx = self.begin().await?;
        let out = create_run_tx(&mut tx, pipeline, jobs, None, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// A page of runs, newest first, for the API (see [`RunsFilter`]).
    pub async fn runs_page(&self, f: &RunsFilter) -> Result<Vec<Run>> {
        let (after_at, after_id) = match &f.before {
            Some((at, id)) => (Some(*at), Some(id.clone())),
            None => (None, None),
        };
        query(
            "SELECT id, pipeline, state, created_at, finished_at FROM runs \
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR pipeline = $2) \
                   AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) \
                   AND ($5 IS NULL OR created_at < $5 OR (created_at = $5 AND id < $6)) \
                 ORDER BY created_at DESC, id DESC LIMIT $7",
        )
        .binds((
            f.state,
            f.pipeline.as_deref(),
            f.since,
            f.until,
            after_at,
            after_id,
            f.limit,
        ))
        .fetch_all::<Run>(&self.pool)
        .await
    }

    /// Jobs by state for each of `runs`.
    pub async fn run_job_counts(&self, runs: &[String]) -> Result<Vec<(String, JobState, i64)>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=runs.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT run_id, state, COUNT(*) FROM jobs WHERE run_id IN ({}) GROUP BY run_id, state",
            marks.join(", ")
        );
        let mut q = query(sql);
        for r in runs {
            q = q.bind(r);
        }
        q.fetch_all::<(String, JobState, i64)>(&self.pool).await
    }

    pub async fn runs(&self) -> Result<Vec<Run>> {
        query(
            "SELECT id, pipeline, state, created_at, finished_at FROM runs ORDER BY created_at, id",
        )
        .fetch_all::<Run>(&self.pool)
        .await
    }

    pub async fn run(&self, id: &str) -> Result<Option<Run>> {
        query("SELECT id, pipeline, state, created_at, finished_at FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional::<Run>(&self.pool)
            .await
    }

    /// Every attempt of a run's jobs, by job and attempt: a run's page in
    /// one query, not one per job.
    pub async fn run_attempts(&self, run: &str) -> Result<Vec<OfJob<Attempt>>> {
        query(
            "SELECT a.job_id, a.attempt, a.client_token, a.statement_id, a.state, a.started_at, \
             a.submitted_at, a.finished_at, a.rows, a.error FROM attempts a \
             JOIN jobs j ON j.id = a.job_id WHERE j.run_id = $1 ORDER BY a.job_id, a.attempt",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await
    }

    /// Every result file of a run's jobs, by job and sub-statement.
    pub async fn run_results(&self, run: &str) -> Result<Vec<OfJob<ResultFile>>> {
        query(
            "SELECT r.job_id, r.sub, r.statement_id, r.rows, r.csv_path, r.jsonl_path \
             FROM results r JOIN jobs j ON j.id = r.job_id WHERE j.run_id = $1 \
             ORDER BY r.job_id, r.sub",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await
    }

    /// Every dependency edge (job, depends_on) of a run.
    pub async fn run_edges(&self, run: &str) -> Result<Vec<(i64, i64)>> {
        query(
            "SELECT d.job_id, d.depends_on FROM job_deps d JOIN jobs j ON j.id = d.job_id \
                 WHERE j.run_id = $1 ORDER BY d.job_id, d.depends_on",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await
    }

    /// An operator's cancel of a RUNNING run, in one transaction: the run
    /// becomes CANCELLED (never passing through FAILED) and each of its jobs
    /// that has not ended CANCELLED. Returns the number of jobs cancelled
    /// and the statements to stop with CancelStatement, as (job, statement).
    pub async fn cancel_run(&self, run: &str, now: i64) -> Result<(usize, Vec<(i64, String)>)> {
        let mut tx = self.begin().await?;
        // PostgreSQL: the run's jobs, then the run, in the order an event
        // takes them (a job, its dependents by id, then its run), so that a
        // cancel during a busy run waits its turn instead of deadlocking.
        tx.lock_rows("SELECT id FROM jobs WHERE run_id = $1 ORDER BY id", run)
            .await?;
        tx.lock_rows("SELECT id FROM runs WHERE id = $1", run)
            .await?;
        let state: Option<RunState> = query("SELECT state FROM runs WHERE id = $1")
            .bind(run)
            .scalar_optional(&mut tx)
            .await?;
        let state = state.ok_or_else(|| LedgerError::NoSuchRun(run.to_string()))?;
        let changed = query(
                "UPDATE runs SET state = 'CANCELLED', finished_at = $1 WHERE id = $2 AND state = 'RUNNING'",
            )
            .binds((now, run))
            .execute(&mut tx)
            .await?;
        if changed != 1 {
            return Err(LedgerError::RunConflict {
                run: run.to_string(),
                found: state,
                expected: RunState::Running,
            });
        }
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = $1 AND state NOT IN ({}) ORDER BY id",
            JobState::sql_where(JobState::is_terminal)
        );
        let jobs = query(sql).bind(run).fetch_all::<Job>(&mut tx).await?;
        let mut cancelled = 0;
        let mut statements = Vec::new();
        for job in jobs {
            if let Some(statement) = cancel_job_tx(&mut tx, &job, false, now).await? {
                cancelled += 1;
                statements.extend(statement.map(|s| (job.id, s)));
            }
        }
        run_event(&mut tx, run, now).await?;
        tx.commit().await?;
        Ok((cancelled, statements))
    }
}

/// Records a run and all its jobs in the caller's transaction (see
/// `create_run`); `schedule` names the schedule that fired it.
pub(super) async fn create_run_tx(
    tx: &mut Tx,
    pipeline: &str,
    jobs: &[RunJob],
    schedule: Option<&str>,
    now: i64,
) -> Result<(String, Vec<i64>)> {
    let run_id = format!("r{}", &new_uid()[..12]);
    query(
            "INSERT INTO runs (id, pipeline, state, created_at, schedule) VALUES ($1, $2, 'RUNNING', $3, $4)",
        )
        .binds((&run_id, pipeline, now, schedule))
        .execute(&mut *tx)
        .await?;
    let mut ids: Vec<i64> = Vec::with_capacity(jobs.len());
    let earlier = |ids: &Vec<i64>, i: usize| {
        ids.get(i)
            .copied()
            .ok_or_else(|| LedgerError::Corrupt(format!("job {i} of the run is not recorded yet")))
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
        ids.push(insert_job_tx(tx, &job, now).await?);
    }
    Ok((run_id, ids))
}

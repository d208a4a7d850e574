//! Job transitions after submission: an attempt's end and what follows
//! in the same transaction (dependents READY or SKIPPED, the run's end),
//! cancels, operators' retries, timeouts and retry promotion. Each UPDATE
//! is guarded on the expected old state.

use super::driver::{query, Tx};
use super::job_row::{job_tx, JOB_COLUMNS};
use super::outbox::{job_event, run_event};
use super::*;
use crate::retry::{seed_of, RetryPolicy};
use crate::state::{after_attempt, JobState, Outcome, ResultState, RunState};

impl Ledger {
    /// Makes READY every RETRY_WAIT job whose backoff has elapsed. Returns
    /// how many.
    pub async fn promote_retries(&self, now: i64) -> Result<u64> {
        // A read first: most rounds promote nothing, and need no write.
        let due: Option<i64> =
            query("SELECT id FROM jobs WHERE state = 'RETRY_WAIT' AND not_before <= $1 LIMIT 1")
                .bind(now)
                .scalar_optional(&self.pool)
                .await?;
        if due.is_none() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let n = query(
            "UPDATE jobs SET state = 'READY', ready_at = $1, not_before = NULL \
                 WHERE state = 'RETRY_WAIT' AND not_before <= $1",
        )
        .bind(now)
        .execute(&mut tx)
        .await?;
        if n > 0 {
            tx.notify_ready().await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// The earliest time a RETRY_WAIT job may go READY.
    pub async fn next_retry_at(&self) -> Result<Option<i64>> {
        query("SELECT MIN(not_before) FROM jobs WHERE state = 'RETRY_WAIT'")
            .scalar(&self.pool)
            .await
    }

    /// A READY job that cannot be submitted (a parameter could not be
    /// resolved): FAILED, its dependents SKIPPED.
    pub async fn fail_ready(&self, job_id: i64, error: &str, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let job = job_tx(&mut tx, job_id).await?;
        close_submitting(&mut tx, job_id, error, now).await?;
        let changed = query(
                "UPDATE jobs SET state = 'FAILED', error = $1, finished_at = $2 WHERE id = $3 AND state = 'READY'",
            )
            .binds((error, now, job_id))
            .execute(&mut tx)
            .await?;
        if changed != 1 {
            return Err(conflict(job_id, job.state.as_str(), "READY"));
        }
        skip_downstream(&mut tx, job_id, now).await?;
        job_event(&mut tx, job_id, now).await?;
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
        let failed = JobState::sql_where(JobState::is_failure);
        let failed_parent: Option<(i64, String)> = query(format!(
            "SELECT p.id, p.state FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
             WHERE d.job_id = $1 AND p.state IN ({failed}) LIMIT 1"
        ))
        .bind(job_id)
        .fetch_optional(&mut tx)
        .await?;
        if let Some((p, s)) = failed_parent {
            return Err(RetryRefused::Why(format!(
                "job {job_id} depends on job {p}, which is {s}: retry job {p} first"
            )));
        }
        // The previous statement may still commit: another attempt now could
        // run the SQL twice. Its end (event or DescribeStatement) closes it.
        let running: Option<String> = query(
            "SELECT statement_id FROM attempts WHERE job_id = $1 AND state = 'SUBMITTED' LIMIT 1",
        )
        .bind(job_id)
        .scalar_optional(&mut tx)
        .await?;
        if let Some(sid) = running {
            return Err(RetryRefused::Why(format!(
                "job {job_id}'s statement {sid} has not ended yet (it may still commit): \
                     retry once its end is recorded (`redrelay jobs show {job_id}`)"
            )));
        }
        // A call under way (a live worker is submitting the attempt): its
        // answer is not known yet.
        let submitting: Option<String> = query(format!(
            "SELECT a.claimed_by FROM attempts a JOIN workers w ON w.id = a.claimed_by \
             WHERE a.job_id = $1 AND a.state = 'SUBMITTING' AND w.heartbeat_at >= {} - {}",
            tx.dialect().now_ms,
            crate::ledger::LIVE_MS
        ))
        .bind(job_id)
        .scalar_optional(&mut tx)
        .await?;
        if let Some(worker) = submitting {
            return Err(RetryRefused::Why(format!(
                "job {job_id}'s submission is under way on worker {worker} (the Data API has \
                 not answered yet): retry once its statement's end is recorded \
                 (`redrelay jobs show {job_id}`)"
            )));
        }
        let run_state: Option<RunState> = match &job.run_id {
            Some(run) => {
                query("SELECT state FROM runs WHERE id = $1")
                    .bind(run)
                    .scalar_optional(&mut tx)
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
        let waiting: i64 = query(
            "SELECT COUNT(*) FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
                 WHERE d.job_id = $1 AND p.state <> 'FINISHED'",
        )
        .bind(job_id)
        .scalar(&mut tx)
        .await?;
        let next = if waiting > 0 {
            JobState::Pending
        } else {
            JobState::Ready
        };
        let changed = query(
                "UPDATE jobs SET state = $1, error = NULL, finished_at = NULL, not_before = NULL, \
                 ready_at = $2, max_attempts = CASE WHEN max_attempts > attempt + 1 THEN max_attempts ELSE attempt + 1 END WHERE id = $3 AND state = $4",
            )
            .binds((next, (next == JobState::Ready).then_some(now), job_id, job.state))
            .execute(&mut tx)
            .await?;
        if changed != 1 {
            return Err(conflict(job_id, "changed", job.state.as_str()).into());
        }
        // Revive what this job skipped, then skip again whatever still has
        // another failed parent.
        query(
            "WITH RECURSIVE down(id) AS ( \
                     SELECT job_id FROM job_deps WHERE depends_on = $1 \
                     UNION SELECT d.job_id FROM job_deps d JOIN down ON d.depends_on = down.id) \
                 UPDATE jobs SET state = 'PENDING', finished_at = NULL, error = NULL \
                 WHERE id IN (SELECT id FROM down) AND state = 'SKIPPED'",
        )
        .bind(job_id)
        .execute(&mut tx)
        .await?;
        loop {
            let reskipped: Vec<i64> = query(format!(
                "UPDATE jobs SET state = 'SKIPPED', finished_at = $1, error = 'an upstream job did not finish' \
                 WHERE state = 'PENDING' AND EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
                   WHERE d.job_id = jobs.id AND p.state IN ({failed})) \
                 RETURNING id"
            ))
                .bind(now)
                .scalars(&mut tx)
                .await?;
            if reskipped.is_empty() {
                break;
            }
            for id in reskipped {
                job_event(&mut tx, id, now).await?;
            }
        }
        if let (Some(run), Some(RunState::Failed)) = (&job.run_id, run_state) {
            let changed = query(
                    "UPDATE runs SET state = 'RUNNING', finished_at = NULL WHERE id = $1 AND state = 'FAILED'",
                )
                .bind(run)
                .execute(&mut tx)
                .await?;
            if changed != 1 {
                return Err(RetryRefused::Ledger(LedgerError::RunConflict {
                    run: run.clone(),
                    found: RunState::Running,
                    expected: RunState::Failed,
                }));
            }
        }
        if next == JobState::Ready {
            tx.notify_ready().await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    /// SUBMITTED jobs running past their timeout, not yet asked to stop.
    pub async fn timed_out(&self, now: i64) -> Result<Vec<Job>> {
        let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'SUBMITTED' AND timeout_secs IS NOT NULL \
                 AND timed_out_at IS NULL AND submitted_at + timeout_secs * 1000 <= $1 ORDER BY submitted_at"
            );
        query(sql).bind(now).fetch_all::<Job>(&self.pool).await
    }

    /// Records that a timeout asked the Data API to cancel the current
    /// statement of a job (fenced by its attempt). The attempt stays open:
    /// it ends when the statement truly ends (an event or DescribeStatement),
    /// and a failure then reads "timed out". Returns false when the job had
    /// moved on already.
    pub async fn mark_timed_out(&self, job_id: i64, attempt: i64, now: i64) -> Result<bool> {
        Ok(query(
            "UPDATE jobs SET timed_out_at = $1 \
                 WHERE id = $2 AND state = 'SUBMITTED' AND attempt = $3 AND timed_out_at IS NULL",
        )
        .binds((now, job_id, attempt))
        .execute(&self.pool)
        .await?
            == 1)
    }
}

/// Closes an attempt of the job still SUBMITTING (no statement id known):
/// CANCELLED with `why`, so that its ClientToken is never used again.
pub(super) async fn close_submitting(tx: &mut Tx, job_id: i64, why: &str, now: i64) -> Result<u64> {
    query(
        "UPDATE attempts SET state = 'CANCELLED', finished_at = $1, error = $2 \
             WHERE job_id = $3 AND state = 'SUBMITTING'",
    )
    .binds((now, why, job_id))
    .execute(&mut *tx)
    .await
}

/// Cancels a job that has not ended (guarded on its state), closing an
/// attempt being submitted; with `skip`, its dependents are SKIPPED.
/// `None` when the job had already ended; otherwise the statement to stop.
pub(super) async fn cancel_job_tx(
    tx: &mut Tx,
    job: &Job,
    skip: bool,
    now: i64,
) -> Result<Option<Option<String>>> {
    if !job.state.can_move_to(JobState::Cancelled) {
        return Ok(None);
    }
    let changed = query(
        "UPDATE jobs SET state = 'CANCELLED', error = 'cancelled by an operator', \
             finished_at = $1, not_before = NULL WHERE id = $2 AND state = $3",
    )
    .binds((now, job.id, job.state))
    .execute(&mut *tx)
    .await?;
    if changed != 1 {
        return Err(conflict(job.id, "changed", job.state.as_str()));
    }
    // An attempt being submitted stays open: its ExecuteStatement may have
    // been (or be being) accepted. Its answer is recorded when it comes
    // (`mark_submitted`) and the statement stopped; a retry first waits for
    // that, then resumes the attempt with its ClientToken, so that the SQL
    // never runs twice.
    job_event(tx, job.id, now).await?;
    if skip {
        skip_downstream(tx, job.id, now).await?;
    }
    Ok(Some(if job.state == JobState::Submitted {
        job.statement_id.clone()
    } else {
        None
    }))
}

pub(super) async fn finish_attempt_row(
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
    query(
        "UPDATE attempts SET state = $1, finished_at = $2, rows = $3, error = $4 \
             WHERE job_id = $5 AND attempt = $6 AND state = 'SUBMITTED'",
    )
    .binds((outcome.attempt_state(), now, rows, error, job_id, attempt))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Ends the current attempt of a SUBMITTED job: the job's new state, and in
/// the same transaction its dependents made READY (on FINISHED) or SKIPPED
/// (on a failure for good).
pub(super) async fn end_attempt(tx: &mut Tx, job: &Job, outcome: &Outcome, now: i64) -> Result<()> {
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
    let changed = query(
        "UPDATE jobs SET state = $1, rows = COALESCE($2, rows), error = $3, \
             finished_at = $4, result_state = $5, not_before = $6, timed_out_at = NULL \
             WHERE id = $7 AND state = 'SUBMITTED' AND attempt = $8",
    )
    .binds((next, rows, error, next.is_terminal().then_some(now)))
    // Nothing to fetch when ExecuteStatement said there is no result set.
    .bind(
        (next == JobState::Finished).then_some(if job.has_result_set == Some(false) {
            ResultState::None
        } else {
            ResultState::Pending
        }),
    )
    .binds((not_before, job.id, job.attempt))
    .execute(&mut *tx)
    .await?;
    if changed != 1 {
        return Err(conflict(job.id, job.state.as_str(), "SUBMITTED"));
    }
    match next {
        JobState::Finished => {
            release_downstream(tx, job.id, now).await?;
            // With no result set there is nothing to fetch: the job's end is
            // now (with results, it is announced once they are recorded).
            if job.has_result_set == Some(false) {
                job_event(tx, job.id, now).await?;
            }
        }
        s if s.is_failure() => {
            job_event(tx, job.id, now).await?;
            skip_downstream(tx, job.id, now).await?
        }
        _ => {}
    }
    if let Some(run) = &job.run_id {
        finish_run_if_done(tx, run, now).await?;
    }
    Ok(())
}

/// Makes READY every PENDING dependent of `parent` whose parents have all
/// FINISHED.
pub(super) async fn release_downstream(tx: &mut Tx, parent: i64, now: i64) -> Result<()> {
    // PostgreSQL: the dependents' rows first (in id order), so that two
    // parents ending at once in two transactions take turns, and the
    // second sees the first FINISHED (else neither would release them).
    if tx.dialect().row_locks() {
        let lock = format!(
            "SELECT id FROM jobs WHERE id IN (SELECT job_id FROM job_deps WHERE depends_on = $1) \
                 ORDER BY id{}",
            tx.dialect().for_update
        );
        let _: Vec<i64> = query(lock).bind(parent).scalars(&mut *tx).await?;
    }
    let released = query(
        "UPDATE jobs SET state = 'READY', ready_at = $1 \
             WHERE state = 'PENDING' \
               AND id IN (SELECT job_id FROM job_deps WHERE depends_on = $2) \
               AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
                               WHERE d.job_id = jobs.id AND p.state <> 'FINISHED')",
    )
    .binds((now, parent))
    .execute(&mut *tx)
    .await?;
    if released > 0 {
        tx.notify_ready().await?;
    }
    Ok(())
}

/// Marks SKIPPED every job downstream of `parent` (transitively) that has
/// not started: the states the state machine lets move to SKIPPED. An
/// attempt one of them was submitting is closed.
pub(super) async fn skip_downstream(tx: &mut Tx, parent: i64, now: i64) -> Result<()> {
    let from = JobState::sql_list(&JobState::sources_of(JobState::Skipped));
    let sql = format!(
        "WITH RECURSIVE down(id) AS ( \
                 SELECT job_id FROM job_deps WHERE depends_on = $1 \
                 UNION SELECT d.job_id FROM job_deps d JOIN down ON d.depends_on = down.id) \
             UPDATE jobs SET state = 'SKIPPED', finished_at = $2, \
                 error = 'upstream job ' || CAST($1 AS TEXT) || ' did not finish' \
             WHERE id IN (SELECT id FROM down) AND state IN ({from}) RETURNING id"
    );
    let skipped: Vec<i64> = query(sql).bind(parent).bind(now).scalars(&mut *tx).await?;
    for id in skipped {
        close_submitting(tx, id, "an upstream job did not finish", now).await?;
        job_event(tx, id, now).await?;
    }
    Ok(())
}

/// Ends a pipeline run once none of its jobs can move any more.
pub(super) async fn finish_run_if_done(tx: &mut Tx, run: &str, now: i64) -> Result<()> {
    // PostgreSQL: the run's row first, so that the last two jobs ending
    // at once take turns and the second sees the run done.
    if tx.dialect().row_locks() {
        let lock = format!(
            "SELECT id FROM runs WHERE id = $1{}",
            tx.dialect().for_update
        );
        let _: Option<String> = query(lock).bind(run).scalar_optional(&mut *tx).await?;
    }
    let (open, failed): (i64, i64) = query(format!(
        "SELECT \
           CAST(COALESCE(SUM(CASE WHEN state IN ({open}) THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN state IN ({failed}) THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM jobs WHERE run_id = $1",
        open = JobState::sql_where(JobState::is_open),
        failed = JobState::sql_where(JobState::is_failure),
    ))
    .bind(run)
    .fetch_one(&mut *tx)
    .await?;
    if open == 0 {
        let ended = query(
            "UPDATE runs SET state = $1, finished_at = $2 WHERE id = $3 AND state = 'RUNNING'",
        )
        .bind(if failed > 0 {
            RunState::Failed
        } else {
            RunState::Finished
        })
        .binds((now, run))
        .execute(&mut *tx)
        .await?;
        if ended == 1 {
            run_event(tx, run, now).await?;
        }
    }
    Ok(())
}

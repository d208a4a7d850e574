//! Claims: a worker takes a READY job's attempt (with its ClientToken)
//! within the in-flight limits, records what the Data API answered, or
//! lets go after a throttled call. What counts as in flight is defined
//! once here ([`in_flight`]).

use super::driver::{query, Dialect};
use super::inbox::apply_to_attempt;
use super::job_row::{job_tx, JOB_COLUMNS};
use super::outbox::job_event;
use super::transitions::finish_run_if_done;
use super::transitions::{close_submitting, skip_downstream};
use super::*;
use crate::ledger::names::{client_token, statement_name};
use crate::state::JobState;
use std::collections::HashMap;

/// What counts as in flight, for a job row aliased `j`: its statement runs
/// (SUBMITTED), or a live worker is submitting its attempt (READY with a
/// SUBMITTING attempt claimed by a worker whose heartbeat is recent). An
/// attempt let go after a throttled call ([`Ledger::release_claim`]), or
/// left by a process that is gone, does not count: it waits to be resumed
/// with its ClientToken, and attempts waiting so never hold each other's
/// room. The one definition: the claim's limits, a session's one statement
/// at a time, the submitter's room and the gauges all count it.
fn in_flight(d: &Dialect) -> String {
    format!(
        "(j.state = 'SUBMITTED' OR (j.state = 'READY' AND EXISTS (SELECT 1 FROM attempts a \
         JOIN workers w ON w.id = a.claimed_by WHERE a.job_id = j.id AND a.attempt = j.attempt \
         AND a.state = 'SUBMITTING' AND w.heartbeat_at >= {} - {})))",
        d.now_ms,
        crate::ledger::LIVE_MS
    )
}

/// A job's target (workgroup or cluster) for the per-target limits.
const TARGET: &str = "COALESCE(j.workgroup, j.cluster, '')";

impl Ledger {
    /// Attempts whose statement runs (SUBMITTED) since `before` or earlier,
    /// whatever their job's state (a cancelled job's statement may still
    /// commit): for the reconciler. (job, attempt, statement id).
    pub async fn open_attempts_before(&self, before: i64) -> Result<Vec<(i64, i64, String)>> {
        query(
            "SELECT job_id, attempt, statement_id FROM attempts \
                 WHERE state = 'SUBMITTED' AND statement_id IS NOT NULL AND submitted_at <= $1 \
                 ORDER BY submitted_at, job_id",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await
    }

    /// Number of statements in flight ([`in_flight`]).
    pub async fn in_flight(&self) -> Result<i64> {
        query(format!(
            "SELECT COUNT(*) FROM jobs j WHERE {}",
            in_flight(self.pool.dialect())
        ))
        .scalar(&self.pool)
        .await
    }

    /// Starts (or resumes, after a crash) the attempt of a READY job: returns
    /// the ClientToken to submit with. Resuming reuses the token, so the Data
    /// API does not run the SQL twice. A new attempt closes any attempt the
    /// job left open, in the same transaction, and gets a new token. `None`
    /// if the job is no longer READY.
    pub async fn begin_attempt(&self, job_id: i64, now: i64) -> Result<Option<Ticket>> {
        Ok(match self.claim(job_id, None, "", now).await? {
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
        claimant: &str,
        now: i64,
    ) -> Result<Claim> {
        let mut tx = self.begin().await?;
        // The row, if READY and not being claimed by another process.
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND state = 'READY'{}",
            tx.dialect().skip_locked
        );
        let Some(mut job) = query(sql)
            .bind(job_id)
            .fetch_optional::<Job>(&mut tx)
            .await?
        else {
            return Ok(Claim::NotReady);
        };
        // An attempt a live worker is submitting stays its own (another
        // worker resumes it, with the same ClientToken, once that worker
        // is gone or has let it go after a throttled call).
        let held_sql = format!(
            "SELECT a.claimed_by FROM attempts a JOIN workers w ON w.id = a.claimed_by \
                 WHERE a.job_id = $1 AND a.attempt = $2 AND a.state = 'SUBMITTING' \
                   AND a.claimed_by <> $3 AND w.heartbeat_at >= {} - {}",
            self.pool.dialect().now_ms,
            crate::ledger::LIVE_MS
        );
        let held: Option<String> = if self.pool.dialect().claims_held {
            query(held_sql)
                .binds((job_id, job.attempt, claimant))
                .scalar_optional(&mut tx)
                .await?
        } else {
            None
        };
        if held.is_some() {
            return Ok(Claim::NotReady);
        }
        if let Some(limits) = limits {
            // Claims that count in-flight statements take turns.
            tx.serialize_claims().await?;
            let (all, target): (i64, i64) = query(format!(
                "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN {TARGET} = $1 THEN 1 ELSE 0 END), 0) \
                 AS BIGINT) FROM jobs j WHERE j.id <> $2 AND {}",
                in_flight(tx.dialect())
            ))
            .binds((job.target().name(), job_id))
            .fetch_one(&mut tx)
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
        // A run in one session: a session runs one statement at a time.
        let session = match (job.session_keep_alive_secs, &job.run_id) {
            (Some(keep_alive_secs), Some(run)) => {
                tx.serialize_claims().await?;
                let busy: i64 = query(format!(
                    "SELECT COUNT(*) FROM jobs j WHERE j.run_id = $1 AND j.id <> $2 AND {}",
                    in_flight(tx.dialect())
                ))
                .binds((run, job_id))
                .scalar(&mut tx)
                .await?;
                if busy > 0 {
                    return Ok(Claim::NoRoom(format!(
                        "its run's session runs one statement at a time ({busy} in flight)"
                    )));
                }
                let id: Option<String> = query("SELECT session_id FROM runs WHERE id = $1")
                    .bind(run)
                    .scalar_optional(&mut tx)
                    .await?
                    .flatten();
                Some(Session {
                    id,
                    keep_alive_secs,
                })
            }
            _ => None,
        };
        let open: Option<String> = query(
                "SELECT client_token FROM attempts WHERE job_id = $1 AND attempt = $2 AND state = 'SUBMITTING'",
            )
            .binds((job_id, job.attempt))
            .scalar_optional(&mut tx)
            .await?;
        let resumed = open.is_some();
        let token = match open {
            Some(token) => {
                query(
                    "UPDATE attempts SET claimed_by = $1 \
                         WHERE job_id = $2 AND attempt = $3 AND state = 'SUBMITTING'",
                )
                .binds((claimant, job_id, job.attempt))
                .execute(&mut tx)
                .await?;
                token
            }
            None => {
                // A previous attempt still SUBMITTING (left by an earlier
                // version) is closed: its token is never used again.
                close_submitting(&mut tx, job_id, "superseded by a new attempt", now).await?;
                let attempt = job.attempt + 1;
                let token = client_token(&job.uid, attempt);
                query(
                    "INSERT INTO attempts (job_id, attempt, client_token, state, started_at, \
                         claimed_by) VALUES ($1, $2, $3, 'SUBMITTING', $4, $5)",
                )
                .binds((job_id, attempt, &token, now, claimant))
                .execute(&mut tx)
                .await?;
                let changed = query(
                        "UPDATE jobs SET attempt = $1 WHERE id = $2 AND state = 'READY' AND attempt = $3",
                    )
                    .binds((attempt, job_id, job.attempt))
                    .execute(&mut tx)
                    .await?;
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
            resumed,
            session,
        })))
    }

    /// Lets go of an attempt whose call was throttled or failed for now:
    /// any worker may resume it (with its ClientToken), and it no longer
    /// counts as in flight.
    pub async fn release_claim(&self, job_id: i64, attempt: i64, claimant: &str) -> Result<()> {
        query(
            "UPDATE attempts SET claimed_by = NULL \
                 WHERE job_id = $1 AND attempt = $2 AND state = 'SUBMITTING' AND claimed_by = $3",
        )
        .binds((job_id, attempt, claimant))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that the Data API accepted an attempt, and applies any event
    /// for it that arrived first. Returns the dispositions of those events.
    pub async fn mark_submitted(
        &self,
        job_id: i64,
        attempt: i64,
        accepted: &Accepted,
        result_formats: crate::domain::ResultFormats,
        now: i64,
    ) -> Result<Vec<Disposition>> {
        let statement_id = accepted.id.as_str();
        let has_result_set = accepted.has_result_set;
        let mut tx = self.begin().await?;
        if let Some(session) = &accepted.session_id {
            // The run's session, opened by its first statement.
            query(
                "UPDATE runs SET session_id = $1 WHERE session_id IS NULL \
                     AND id = (SELECT run_id FROM jobs WHERE id = $2)",
            )
            .binds((session, job_id))
            .execute(&mut tx)
            .await?;
        }
        let changed = query(
            "UPDATE jobs SET state = 'SUBMITTED', statement_id = $1, submitted_at = $2, \
                 has_result_set = $5, result_formats = COALESCE(result_formats, $6) \
                 WHERE id = $3 AND state = 'READY' AND attempt = $4",
        )
        .binds((
            statement_id,
            now,
            job_id,
            attempt,
            has_result_set,
            result_formats.to_string(),
        ))
        .execute(&mut tx)
        .await?;
        let mut moved_on = None;
        if changed != 1 {
            let job = job_tx(&mut tx, job_id).await?;
            if job.state == JobState::Submitted
                && job.attempt == attempt
                && job.statement_id.as_deref() == Some(statement_id)
            {
                // Another process recorded the same idempotent submission.
                return Ok(Vec::new());
            }
            if job.attempt != attempt {
                return Err(conflict(job_id, job.state.as_str(), "READY"));
            }
            // The job moved on (an operator's cancel) while the call was
            // under way: the statement runs all the same. Its id is recorded
            // on the attempt, so that its end (event or DescribeStatement)
            // closes it and a retry waits for that; the caller stops it.
            moved_on = Some(conflict(job_id, job.state.as_str(), "READY"));
        }
        let set = "state = 'SUBMITTED', statement_id = $1, submitted_at = $2";
        update_submitting(&mut tx, set, (statement_id, now), job_id, attempt).await?;
        let deferred: Vec<(i64, String, Option<String>)> = query(
            "SELECT seq, body, error FROM events WHERE disposition = 'deferred' \
                 AND statement_id = $1 ORDER BY seq",
        )
        .bind(statement_id)
        .fetch_all(&mut tx)
        .await?;
        let mut out = Vec::new();
        for (seq, body, error) in deferred {
            let Ok(ev) = crate::event::parse(&body, &crate::event::Origin::default()) else {
                continue;
            };
            let (disposition, reason) =
                apply_to_attempt(&mut tx, &ev, error.as_deref(), now).await?;
            query("UPDATE events SET disposition = $1, reason = $2 WHERE seq = $3")
                .binds((disposition, reason, seq))
                .execute(&mut tx)
                .await?;
            out.push(disposition);
        }
        tx.commit().await?;
        match moved_on {
            Some(e) => Err(e),
            None => Ok(out),
        }
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
        let set = "state = 'FAILED', finished_at = $1, error = $2";
        update_submitting(&mut tx, set, (now, error), job_id, attempt).await?;
        let changed = query(
            "UPDATE jobs SET state = 'FAILED', error = $1, finished_at = $2 \
                 WHERE id = $3 AND state = 'READY' AND attempt = $4",
        )
        .binds((error, now, job_id, attempt))
        .execute(&mut tx)
        .await?;
        if changed != 1 {
            // The job moved on meanwhile (an operator's cancel): the
            // attempt's refusal is recorded all the same.
            let job = job_tx(&mut tx, job_id).await?;
            tx.commit().await?;
            return Err(conflict(job_id, job.state.as_str(), "READY"));
        }
        skip_downstream(&mut tx, job_id, now).await?;
        job_event(&mut tx, job_id, now).await?;
        let run: Option<String> = query("SELECT run_id FROM jobs WHERE id = $1")
            .bind(job_id)
            .scalar(&mut tx)
            .await?;
        if let Some(run) = run {
            finish_run_if_done(&mut tx, &run, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Statements in flight ([`in_flight`]) per target (workgroup or
    /// cluster name).
    pub async fn in_flight_by_target(&self) -> Result<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = query(format!(
            "SELECT {TARGET}, COUNT(*) FROM jobs j WHERE {} GROUP BY 1",
            in_flight(self.pool.dialect())
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }
}

/// Updates the attempt `attempt` of a job while it is being submitted:
/// `set` names its new columns with `$1` and `$2`, bound from `values`.
async fn update_submitting<'a>(
    tx: &mut Tx,
    set: &str,
    values: impl super::driver::Binds<'a>,
    job_id: i64,
    attempt: i64,
) -> Result<u64> {
    query(format!(
        "UPDATE attempts SET {set} WHERE job_id = $3 AND attempt = $4 AND state = 'SUBMITTING'"
    ))
    .binds(values)
    .binds((job_id, attempt))
    .execute(tx)
    .await
}

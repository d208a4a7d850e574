//! The ledger's SQL, written once for every backend: each backend module
//! invokes [`ledger_queries!`] with its own `Db`, `Tx`, `Store` (with a
//! `pool` and a `begin`) and `dialect` (row locks, claim serialisation,
//! notifications, the database's clock). Placeholders are `$N`, which both
//! SQLite and PostgreSQL take; only what differs lives in the backends.

macro_rules! ledger_queries {
    () => {
    use $crate::event::{StatementState, StatusEvent};
    use $crate::ledger::names::{client_token, new_uid, parse_statement_name, statement_name};
    use $crate::ledger::{
        conflict, AttemptRow, Attempt, Claim, Disposition, Dump, EventRow, Fired, InFlightLimits, Job, ScheduleRow,
        LedgerError, NewJob, ParamFrom, Pruned, ResultFile, Result, RetryRefused, Run, RunJob,
        Ticket, WorkerInfo, WorkerRow, Accepted, Session,
    };
    use $crate::retry::{seed_of, RetryPolicy};
    use $crate::state::{after_attempt, AttemptState, JobState, Outcome, ResultState, RunState};
    use std::collections::HashMap;

    /// Whether the backend takes row locks (PostgreSQL). SQLite's
    /// `BEGIN IMMEDIATE` already holds the write lock: its lock reads are
    /// skipped, off the hot path.
    const ROW_LOCKS: bool = !dialect::FOR_UPDATE.is_empty();

    const JOB_COLUMNS: &str = "id, uid, run_id, name, sqls, params, workgroup, cluster, database, \
         db_user, secret_arn, state, attempt, max_attempts, retry, not_before, timeout_secs, \
         statement_id, rows, error, result_state, result_rows, result_path, result_error, \
         created_at, ready_at, submitted_at, finished_at, timed_out_at, expire_at, results_pruned_at, \
         has_result_set, execution_mode, result_formats, session_keep_alive_secs";

    impl Store {
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
            let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
            sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(LedgerError::NoSuchJob(id))
        }

        pub async fn jobs(&self, state: Option<JobState>, run: Option<&str>) -> Result<Vec<Job>> {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs \
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR run_id = $2) ORDER BY id"
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
                sqlx::query_scalar("SELECT first_row FROM jobs WHERE id = $1")
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
                "SELECT depends_on FROM job_deps WHERE job_id = $1 ORDER BY depends_on",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
        }

        pub async fn attempts(&self, id: i64) -> Result<Vec<Attempt>> {
            Ok(sqlx::query_as::<_, Attempt>(
                "SELECT attempt, client_token, statement_id, state, started_at, submitted_at, \
                 finished_at, rows, error FROM attempts WHERE job_id = $1 ORDER BY attempt",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
        }

        pub async fn results(&self, id: i64) -> Result<Vec<ResultFile>> {
            Ok(sqlx::query_as::<_, ResultFile>(
                "SELECT sub, statement_id, rows, csv_path, jsonl_path FROM results \
                 WHERE job_id = $1 ORDER BY sub",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
        }

        pub async fn events(&self, limit: i64) -> Result<Vec<EventRow>> {
            Ok(sqlx::query_as::<_, EventRow>(
                "SELECT seq, event_id, message_id, received_at, statement_id, state, job_id, \
                 disposition, reason, body FROM events ORDER BY seq DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
        }

        /// READY jobs in the order they became ready, oldest first.
        pub async fn ready_jobs(&self, limit: i64) -> Result<Vec<Job>> {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'READY' \
                 ORDER BY ready_at, id LIMIT $1"
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
                 WHERE state = 'SUBMITTED' AND statement_id IS NOT NULL AND submitted_at <= $1 \
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

        /// Takes the fetching of a FINISHED job's results for `claimant`:
        /// false when another live worker is fetching them.
        pub async fn claim_fetch(&self, job_id: i64, claimant: &str) -> Result<bool> {
            let held = if dialect::CLAIMS_HELD {
                format!(
                    "AND (fetch_by IS NULL OR fetch_by = $1 OR NOT EXISTS (SELECT 1 FROM workers w \
                     WHERE w.id = jobs.fetch_by AND w.heartbeat_at >= {} - {}))",
                    dialect::NOW_MS,
                    $crate::ledger::LIVE_MS
                )
            } else {
                String::new()
            };
            let sql = format!(
                "UPDATE jobs SET fetch_by = $1 \
                 WHERE id = $2 AND state = 'FINISHED' AND result_state = 'PENDING' {held}"
            );
            Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(claimant)
                .bind(job_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1)
        }

        /// Jobs by state, and when the oldest statement in flight was
        /// submitted (for the leader's gauges).
        pub async fn gauges(&self) -> Result<(Vec<(JobState, i64)>, Option<i64>)> {
            let by_state: Vec<(JobState, i64)> =
                sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
                    .fetch_all(&self.pool)
                    .await?;
            let oldest: Option<i64> =
                sqlx::query_scalar("SELECT MIN(submitted_at) FROM jobs WHERE state = 'SUBMITTED'")
                    .fetch_one(&self.pool)
                    .await?;
            Ok((by_state, oldest))
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
            // A read first: most rounds promote nothing, and need no write.
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE state = 'RETRY_WAIT' AND not_before <= $1 LIMIT 1",
            )
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            if due.is_none() {
                return Ok(0);
            }
            let mut tx = self.begin().await?;
            let n = sqlx::query(
                "UPDATE jobs SET state = 'READY', ready_at = $1, not_before = NULL \
                 WHERE state = 'RETRY_WAIT' AND not_before <= $1",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                dialect::notify_ready(&mut tx).await?;
            }
            tx.commit().await?;
            Ok(n)
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
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE statement_id = $1")
                .bind(statement_id)
                .fetch_one(&self.pool)
                .await?;
            Ok(n > 0)
        }

        /// Whether an event is for a statement of ours: its statement id is
        /// recorded, or (an event that came before the id was recorded) its
        /// StatementName names one of our jobs.
        pub async fn owns_event(&self, ev: &StatusEvent) -> Result<bool> {
            if self.owns_statement(&ev.detail.statement_id).await? {
                return Ok(true);
            }
            let Some(uid) = ev
                .detail
                .statement_name
                .as_deref()
                .and_then(parse_statement_name)
            else {
                return Ok(false);
            };
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE uid = $1")
                .bind(uid)
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
                dialect::SKIP_LOCKED
            );
            let Some(mut job) = sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
                .bind(job_id)
                .fetch_optional(&mut *tx)
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
                dialect::NOW_MS,
                $crate::ledger::LIVE_MS
            );
            let held: Option<String> = if dialect::CLAIMS_HELD {
                sqlx::query_scalar(sqlx::AssertSqlSafe(held_sql))
                    .bind(job_id)
                    .bind(job.attempt)
                    .bind(claimant)
                    .fetch_optional(&mut *tx)
                    .await?
            } else {
                None
            };
            if held.is_some() {
                return Ok(Claim::NotReady);
            }
            if let Some(limits) = limits {
                // Claims that count in-flight statements take turns.
                dialect::serialize_claims(&mut tx).await?;
                let (all, target): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN COALESCE(j.workgroup, j.cluster, '') = $1 \
                     THEN 1 ELSE 0 END), 0) AS BIGINT) \
                     FROM jobs j WHERE j.id <> $2 AND (j.state = 'SUBMITTED' OR (j.state = 'READY' \
                       AND EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = j.id \
                                   AND a.attempt = j.attempt AND a.state = 'SUBMITTING' \
                                   AND a.claimed_by IS NOT NULL)))",
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
            // A run in one session: a session runs one statement at a time.
            let session = match (job.session_keep_alive_secs, &job.run_id) {
                (Some(keep_alive_secs), Some(run)) => {
                    dialect::serialize_claims(&mut tx).await?;
                    let busy: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM jobs j WHERE j.run_id = $1 AND j.id <> $2 \
                         AND (j.state = 'SUBMITTED' OR (j.state = 'READY' \
                           AND EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = j.id \
                                       AND a.attempt = j.attempt AND a.state = 'SUBMITTING')))",
                    )
                    .bind(run)
                    .bind(job_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if busy > 0 {
                        return Ok(Claim::NoRoom(format!(
                            "its run's session runs one statement at a time ({busy} in flight)"
                        )));
                    }
                    let id: Option<String> =
                        sqlx::query_scalar("SELECT session_id FROM runs WHERE id = $1")
                            .bind(run)
                            .fetch_optional(&mut *tx)
                            .await?
                            .flatten();
                    Some(Session { id, keep_alive_secs })
                }
                _ => None,
            };
            let open: Option<String> = sqlx::query_scalar(
                "SELECT client_token FROM attempts WHERE job_id = $1 AND attempt = $2 AND state = 'SUBMITTING'",
            )
            .bind(job_id)
            .bind(job.attempt)
            .fetch_optional(&mut *tx)
            .await?;
            let resumed = open.is_some();
            let token = match open {
                Some(token) => {
                    sqlx::query(
                        "UPDATE attempts SET claimed_by = $1 \
                         WHERE job_id = $2 AND attempt = $3 AND state = 'SUBMITTING'",
                    )
                    .bind(claimant)
                    .bind(job_id)
                    .bind(job.attempt)
                    .execute(&mut *tx)
                    .await?;
                    token
                }
                None => {
                    // A previous attempt still SUBMITTING (left by an earlier
                    // version) is closed: its token is never used again.
                    close_submitting(&mut tx, job_id, "superseded by a new attempt", now).await?;
                    let attempt = job.attempt + 1;
                    let token = client_token(&job.uid, attempt);
                    sqlx::query(
                        "INSERT INTO attempts (job_id, attempt, client_token, state, started_at, \
                         claimed_by) VALUES ($1, $2, $3, 'SUBMITTING', $4, $5)",
                    )
                    .bind(job_id)
                    .bind(attempt)
                    .bind(&token)
                    .bind(now)
                    .bind(claimant)
                    .execute(&mut *tx)
                    .await?;
                    let changed = sqlx::query(
                        "UPDATE jobs SET attempt = $1 WHERE id = $2 AND state = 'READY' AND attempt = $3",
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
                resumed,
                session,
            })))
        }

        /// Lets go of an attempt whose call was throttled or failed for now:
        /// any worker may resume it (with its ClientToken), and it no longer
        /// counts as in flight.
        pub async fn release_claim(&self, job_id: i64, attempt: i64, claimant: &str) -> Result<()> {
            sqlx::query(
                "UPDATE attempts SET claimed_by = NULL \
                 WHERE job_id = $1 AND attempt = $2 AND state = 'SUBMITTING' AND claimed_by = $3",
            )
            .bind(job_id)
            .bind(attempt)
            .bind(claimant)
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
            result_formats: crate::results::ResultFormats,
            now: i64,
        ) -> Result<Vec<Disposition>> {
            let statement_id = accepted.id.as_str();
            let has_result_set = accepted.has_result_set;
            let mut tx = self.begin().await?;
            if let Some(session) = &accepted.session_id {
                // The run's session, opened by its first statement.
                sqlx::query(
                    "UPDATE runs SET session_id = $1 WHERE session_id IS NULL \
                     AND id = (SELECT run_id FROM jobs WHERE id = $2)",
                )
                .bind(session)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            }
            let changed = sqlx::query(
                "UPDATE jobs SET state = 'SUBMITTED', statement_id = $1, submitted_at = $2, \
                 has_result_set = $5, result_formats = COALESCE(result_formats, $6) \
                 WHERE id = $3 AND state = 'READY' AND attempt = $4",
            )
            .bind(statement_id)
            .bind(now)
            .bind(job_id)
            .bind(attempt)
            .bind(has_result_set)
            .bind(result_formats.to_string())
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
                "UPDATE attempts SET state = 'SUBMITTED', statement_id = $1, submitted_at = $2 \
                 WHERE job_id = $3 AND attempt = $4 AND state = 'SUBMITTING'",
            )
            .bind(statement_id)
            .bind(now)
            .bind(job_id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
            let deferred: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                "SELECT seq, body, error FROM events WHERE disposition = 'deferred' \
                 AND statement_id = $1 ORDER BY seq",
            )
            .bind(statement_id)
            .fetch_all(&mut *tx)
            .await?;
            let mut out = Vec::new();
            for (seq, body, error) in deferred {
                let Ok(ev) = crate::event::parse(&body, &crate::event::Origin::default()) else {
                    continue;
                };
                let (disposition, reason) =
                    apply_to_attempt(&mut tx, &ev, error.as_deref(), now).await?;
                sqlx::query("UPDATE events SET disposition = $1, reason = $2 WHERE seq = $3")
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
                "UPDATE attempts SET state = 'FAILED', finished_at = $1, error = $2 \
                 WHERE job_id = $3 AND attempt = $4 AND state = 'SUBMITTING'",
            )
            .bind(now)
            .bind(error)
            .bind(job_id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
            let changed = sqlx::query(
                "UPDATE jobs SET state = 'FAILED', error = $1, finished_at = $2 \
                 WHERE id = $3 AND state = 'READY' AND attempt = $4",
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
            job_event(&mut tx, job_id, now).await?;
            let run: Option<String> = sqlx::query_scalar("SELECT run_id FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_one(&mut *tx)
                .await?;
            if let Some(run) = run {
                finish_run_if_done(&mut tx, &run, now).await?;
            }
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
            let mut tx = self.begin().await?;
            let out = create_run_tx(&mut tx, pipeline, jobs, None, now).await?;
            tx.commit().await?;
            Ok(out)
        }

        // ----- schedules -------------------------------------------------------

        /// Adds a schedule, or replaces its definition (firing counts from
        /// now; a paused one stays paused).
        pub async fn put_schedule(
            &self,
            name: &str,
            text: &str,
            sql_files: &str,
            now: i64,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO schedules (name, text, sql_files, created_at, updated_at, effective_since) \
                 VALUES ($1, $2, $3, $4, $4, $4) \
                 ON CONFLICT (name) DO UPDATE SET text = excluded.text, sql_files = excluded.sql_files, \
                   updated_at = excluded.updated_at, effective_since = excluded.effective_since",
            )
            .bind(name)
            .bind(text)
            .bind(sql_files)
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        pub async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
            Ok(sqlx::query_as::<_, ScheduleRow>(
                "SELECT name, text, sql_files, paused, created_at, updated_at, effective_since, \
                 last_fired_at FROM schedules ORDER BY name",
            )
            .fetch_all(&self.pool)
            .await?)
        }

        /// Pauses or resumes; a resumed schedule counts from now (a pause
        /// is never caught up). Whether it exists.
        pub async fn set_schedule_paused(&self, name: &str, paused: bool, now: i64) -> Result<bool> {
            Ok(sqlx::query(
                "UPDATE schedules SET paused = $1, updated_at = $2, \
                 effective_since = CASE WHEN $1 THEN effective_since ELSE $2 END WHERE name = $3",
            )
            .bind(paused)
            .bind(now)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected()
                == 1)
        }

        pub async fn remove_schedule(&self, name: &str) -> Result<bool> {
            Ok(sqlx::query("DELETE FROM schedules WHERE name = $1")
                .bind(name)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1)
        }

        /// Fires a schedule for `fire_time`, once: the firing is recorded
        /// (unique schedule and fire time) in the transaction that creates
        /// its run, so two leaders never fire twice. With `skip_overlap`, a
        /// RUNNING run of this schedule makes the firing a recorded skip.
        pub async fn fire_schedule(
            &self,
            name: &str,
            fire_time: i64,
            pipeline: &str,
            jobs: &[RunJob],
            skip_overlap: bool,
            now: i64,
        ) -> Result<Fired> {
            let mut tx = self.begin().await?;
            let fresh: Option<i64> = sqlx::query_scalar(
                "INSERT INTO schedule_fires (schedule, fire_time, fired_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING RETURNING fire_time",
            )
            .bind(name)
            .bind(fire_time)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if fresh.is_none() {
                return Ok(Fired::Already);
            }
            sqlx::query("UPDATE schedules SET last_fired_at = $1 WHERE name = $2")
                .bind(fire_time)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if skip_overlap {
                let running: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM runs WHERE schedule = $1 AND state = 'RUNNING' LIMIT 1",
                )
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(run) = running {
                    sqlx::query(
                        "UPDATE schedule_fires SET note = $1 WHERE schedule = $2 AND fire_time = $3",
                    )
                    .bind(format!("skipped: run {run} of this schedule is still RUNNING"))
                    .bind(name)
                    .bind(fire_time)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(Fired::Skipped(run));
                }
            }
            let (run, _) = create_run_tx(&mut tx, pipeline, jobs, Some(name), now).await?;
            sqlx::query("UPDATE schedule_fires SET run_id = $1 WHERE schedule = $2 AND fire_time = $3")
                .bind(&run)
                .bind(name)
                .bind(fire_time)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Fired::Run(run))
        }

        /// The runs a schedule fired, newest first: (fire time, run id, note).
        pub async fn schedule_fires(&self, name: &str, limit: i64) -> Result<Vec<(i64, Option<String>, Option<String>)>> {
            Ok(sqlx::query_as(
                "SELECT fire_time, run_id, note FROM schedule_fires WHERE schedule = $1 \
                 ORDER BY fire_time DESC LIMIT $2",
            )
            .bind(name)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
        }



        /// A page of runs, newest first, for the API (see [`RunsFilter`]).
        pub async fn runs_page(&self, f: &$crate::ledger::RunsFilter) -> Result<Vec<Run>> {
            let (after_at, after_id) = match &f.before {
                Some((at, id)) => (Some(*at), Some(id.clone())),
                None => (None, None),
            };
            Ok(sqlx::query_as::<_, Run>(
                "SELECT id, pipeline, state, created_at, finished_at FROM runs \
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR pipeline = $2) \
                   AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) \
                   AND ($5 IS NULL OR created_at < $5 OR (created_at = $5 AND id < $6)) \
                 ORDER BY created_at DESC, id DESC LIMIT $7",
            )
            .bind(f.state)
            .bind(f.pipeline.as_deref())
            .bind(f.since)
            .bind(f.until)
            .bind(after_at)
            .bind(after_id)
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?)
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
            let mut q = sqlx::query_as::<_, (String, JobState, i64)>(sqlx::AssertSqlSafe(sql));
            for r in runs {
                q = q.bind(r);
            }
            Ok(q.fetch_all(&self.pool).await?)
        }

        /// A page of jobs, newest first, for the API (see [`JobsFilter`]).
        pub async fn jobs_page(&self, f: &$crate::ledger::JobsFilter) -> Result<Vec<Job>> {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs \
                 WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR run_id = $2) \
                   AND ($3 IS NULL OR name = $3) AND ($4 IS NULL OR id < $4) \
                 ORDER BY id DESC LIMIT $5"
            );
            Ok(sqlx::query_as::<_, Job>(sqlx::AssertSqlSafe(sql))
                .bind(f.state)
                .bind(f.run.as_deref())
                .bind(f.name.as_deref())
                .bind(f.before)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?)
        }

        /// The inbox's latest rows, newest first, of one disposition or all.
        pub async fn events_by(&self, disposition: Option<Disposition>, limit: i64) -> Result<Vec<EventRow>> {
            Ok(sqlx::query_as::<_, EventRow>(
                "SELECT seq, event_id, message_id, received_at, statement_id, state, job_id, \
                 disposition, reason, body FROM events WHERE ($1 IS NULL OR disposition = $1) \
                 ORDER BY seq DESC LIMIT $2",
            )
            .bind(disposition)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
        }

        /// State changes with a sequence number above `after`, oldest first
        /// (of one run's jobs and the run, when `run` is given).
        pub async fn changes(&self, after: i64, run: Option<&str>, limit: i64) -> Result<Vec<$crate::ledger::Change>> {
            Ok(sqlx::query_as::<_, $crate::ledger::Change>(
                "SELECT c.seq, c.kind, c.job_id, c.run_id, c.state, c.attempt, c.result_state, c.at, j.name \
                 FROM changes c LEFT JOIN jobs j ON j.id = c.job_id \
                 WHERE c.seq > $1 AND ($2 IS NULL OR c.run_id = $2) ORDER BY c.seq LIMIT $3",
            )
            .bind(after)
            .bind(run)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
        }

        /// The latest change's sequence number (0: none).
        pub async fn last_change(&self) -> Result<i64> {
            let n: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes")
                .fetch_one(&self.pool)
                .await?;
            Ok(n.unwrap_or(0))
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
                "SELECT id, pipeline, state, created_at, finished_at FROM runs WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
        }

        /// Every dependency edge (job, depends_on) of a run.
        pub async fn run_edges(&self, run: &str) -> Result<Vec<(i64, i64)>> {
            Ok(sqlx::query_as(
                "SELECT d.job_id, d.depends_on FROM job_deps d JOIN jobs j ON j.id = d.job_id \
                 WHERE j.run_id = $1 ORDER BY d.job_id, d.depends_on",
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
                "UPDATE jobs SET state = 'FAILED', error = $1, finished_at = $2 WHERE id = $3 AND state = 'READY'",
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

        /// An operator's cancel of a RUNNING run, in one transaction: the run
        /// becomes CANCELLED (never passing through FAILED) and each of its jobs
        /// that has not ended CANCELLED. Returns the number of jobs cancelled
        /// and the statements to stop with CancelStatement, as (job, statement).
        pub async fn cancel_run(&self, run: &str, now: i64) -> Result<(usize, Vec<(i64, String)>)> {
            let mut tx = self.begin().await?;
            let state: Option<RunState> = sqlx::query_scalar("SELECT state FROM runs WHERE id = $1")
                .bind(run)
                .fetch_optional(&mut *tx)
                .await?;
            let state = state.ok_or_else(|| LedgerError::NoSuchRun(run.to_string()))?;
            let changed = sqlx::query(
                "UPDATE runs SET state = 'CANCELLED', finished_at = $1 WHERE id = $2 AND state = 'RUNNING'",
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
                "SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = $1 AND state NOT IN ({}) ORDER BY id",
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
            run_event(&mut tx, run, now).await?;
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
                 WHERE d.job_id = $1 AND p.state IN ('FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED') LIMIT 1",
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
                "SELECT statement_id FROM attempts WHERE job_id = $1 AND state = 'SUBMITTED' LIMIT 1",
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
                    sqlx::query_scalar("SELECT state FROM runs WHERE id = $1")
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
                 WHERE d.job_id = $1 AND p.state <> 'FINISHED'",
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
                "UPDATE jobs SET state = $1, error = NULL, finished_at = NULL, not_before = NULL, \
                 ready_at = $2, max_attempts = CASE WHEN max_attempts > attempt + 1 THEN max_attempts ELSE attempt + 1 END WHERE id = $3 AND state = $4",
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
                     SELECT job_id FROM job_deps WHERE depends_on = $1 \
                     UNION SELECT d.job_id FROM job_deps d JOIN down ON d.depends_on = down.id) \
                 UPDATE jobs SET state = 'PENDING', finished_at = NULL, error = NULL \
                 WHERE id IN (SELECT id FROM down) AND state = 'SKIPPED'",
            )
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            loop {
                let reskipped: Vec<i64> = sqlx::query_scalar(
                    "UPDATE jobs SET state = 'SKIPPED', finished_at = $1, error = 'an upstream job did not finish' \
                     WHERE state = 'PENDING' AND EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
                       WHERE d.job_id = jobs.id AND p.state IN ('FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED')) \
                     RETURNING id",
                )
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                if reskipped.is_empty() {
                    break;
                }
                for id in reskipped {
                    job_event(&mut tx, id, now).await?;
                }
            }
            if let (Some(run), Some(RunState::Failed)) = (&job.run_id, run_state) {
                let changed = sqlx::query(
                    "UPDATE runs SET state = 'RUNNING', finished_at = NULL WHERE id = $1 AND state = 'FAILED'",
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
            if next == JobState::Ready {
                dialect::notify_ready(&mut tx).await?;
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
                "UPDATE jobs SET timed_out_at = $1 \
                 WHERE id = $2 AND state = 'SUBMITTED' AND attempt = $3 AND timed_out_at IS NULL",
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
                "DELETE FROM events WHERE received_at < $1 AND NOT (disposition = 'deferred' \
                   AND job_id IN (SELECT id FROM jobs WHERE finished_at IS NULL))",
            )
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // The state changes the event stream reads.
            sqlx::query("DELETE FROM changes WHERE at < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            // Published own events (unpublished ones wait for the publisher).
            sqlx::query("DELETE FROM outbox WHERE created_at < $1 AND published_at IS NOT NULL")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            let jobs: Vec<(i64, Option<String>)> = sqlx::query_as(
                "SELECT id, result_path FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1 \
                 AND results_pruned_at IS NULL AND result_state = 'FETCHED' ORDER BY id",
            )
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
            let mut files = Vec::new();
            for (id, dir) in &jobs {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT csv_path, jsonl_path FROM results WHERE job_id = $1")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                // An empty path: that format was not kept (result_formats).
                files.extend(
                    rows.into_iter()
                        .flat_map(|(csv, jsonl)| [csv, jsonl])
                        .filter(|p| !p.is_empty()),
                );
                files.extend(dir.clone());
                sqlx::query("DELETE FROM results WHERE job_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE jobs SET results_pruned_at = $1 WHERE id = $2 AND finished_at IS NOT NULL",
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
        // ----- outbox ---------------------------------------------------------------

        pub async fn outbox_pending(&self, limit: i64) -> Result<Vec<(i64, String, String, String)>> {
            Ok(sqlx::query_as(
                "SELECT seq, event_id, detail_type, detail FROM outbox WHERE published_at IS NULL \
                 ORDER BY seq LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
        }

        pub async fn outbox_published(&self, seqs: &[i64], now: i64) -> Result<()> {
            let mut tx = self.begin().await?;
            for seq in seqs {
                sqlx::query("UPDATE outbox SET published_at = $1 WHERE seq = $2 AND published_at IS NULL")
                    .bind(now)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        pub async fn outbox_failed(&self, seqs: &[i64], error: &str) -> Result<()> {
            let mut tx = self.begin().await?;
            for seq in seqs {
                sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE seq = $2")
                    .bind(error)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        // ----- workers and the leader -------------------------------------------

        pub async fn heartbeat(&self, w: &WorkerInfo) -> Result<()> {
            let sql = format!(
                "INSERT INTO workers (id, host, pid, started_at, heartbeat_at, listen) \
                 VALUES ($1, $2, $3, $4, {now}, $5) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = {now}, listen = excluded.listen",
                now = dialect::NOW_MS
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&w.id)
                .bind(&w.host)
                .bind(w.pid)
                .bind(w.started_at)
                .bind(w.listen.get())
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        pub async fn deregister(&self, worker_id: &str) -> Result<()> {
            let mut tx = self.begin().await?;
            sqlx::query("DELETE FROM leases WHERE name = 'leader' AND holder = $1")
                .bind(worker_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM workers WHERE id = $1")
                .bind(worker_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        /// Inserts the lease if absent, renews it if this worker holds it,
        /// takes it over if it expired; by the database's clock.
        /// With `take`, the lease is taken whoever holds it (SQLite: the one
        /// worker of a file is the leader, and one killed leaves its lease).
        pub async fn try_lead(&self, worker_id: &str, ttl_ms: i64, take: bool) -> Result<bool> {
            let sql = format!(
                "INSERT INTO leases (name, holder, expires_at) VALUES ('leader', $1, {now} + $2) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                   expires_at = excluded.expires_at \
                 WHERE {take} OR leases.holder = excluded.holder OR leases.expires_at < {now} \
                 RETURNING holder",
                now = dialect::NOW_MS,
                take = if take { "1 = 1" } else { "1 = 0" }
            );
            let holder: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(worker_id)
                .bind(ttl_ms)
                .fetch_optional(&self.pool)
                .await?;
            Ok(holder.as_deref() == Some(worker_id))
        }

        pub async fn workers(&self, live_ms: i64) -> Result<Vec<WorkerRow>> {
            let sql = format!(
                "SELECT w.id, w.host, w.pid, w.started_at, w.heartbeat_at, \
                   (l.holder IS NOT NULL) AS leader, w.listen \
                 FROM workers w LEFT JOIN leases l ON l.name = 'leader' AND l.holder = w.id \
                   AND l.expires_at >= {now} \
                 WHERE w.heartbeat_at >= {now} - $1 ORDER BY w.started_at, w.id",
                now = dialect::NOW_MS
            );
            Ok(sqlx::query_as::<_, WorkerRow>(sqlx::AssertSqlSafe(sql))
                .bind(live_ms)
                .fetch_all(&self.pool)
                .await?)
        }

        // ----- migration ---------------------------------------------------------

        pub async fn dump(&self) -> Result<Dump> {
            let p = &self.pool;
            Ok(Dump {
                runs: self.runs().await?,
                jobs: self.jobs(None, None).await?,
                first_rows: sqlx::query_as(
                    "SELECT id, first_row FROM jobs WHERE first_row IS NOT NULL ORDER BY id",
                )
                .fetch_all(p)
                .await?,
                deps: sqlx::query_as("SELECT job_id, depends_on FROM job_deps ORDER BY job_id, depends_on")
                    .fetch_all(p)
                    .await?,
                attempts: sqlx::query_as(
                    "SELECT job_id, attempt, client_token, statement_id, state, started_at, \
                     submitted_at, finished_at, rows, error FROM attempts ORDER BY job_id, attempt",
                )
                .fetch_all(p)
                .await?,
                events: sqlx::query_as::<_, EventRow>(
                    "SELECT seq, event_id, message_id, received_at, statement_id, state, job_id, \
                     disposition, reason, body FROM events ORDER BY seq",
                )
                .fetch_all(p)
                .await?,
                results: sqlx::query_as(
                    "SELECT job_id, sub, statement_id, rows, csv_path, jsonl_path FROM results \
                     ORDER BY job_id, sub",
                )
                .fetch_all(p)
                .await?,
            })
        }

        pub async fn restore(&self, d: &Dump) -> Result<()> {
            let mut tx = self.begin().await?;
            for r in &d.runs {
                sqlx::query(
                    "INSERT INTO runs (id, pipeline, state, created_at, finished_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&r.id)
                .bind(&r.pipeline)
                .bind(r.state)
                .bind(r.created_at)
                .bind(r.finished_at)
                .execute(&mut *tx)
                .await?;
            }
            let first: HashMap<i64, &Option<String>> =
                d.first_rows.iter().map(|(id, row)| (*id, row)).collect();
            for j in &d.jobs {
                sqlx::query(
                    "INSERT INTO jobs (id, uid, run_id, name, sqls, params, workgroup, cluster, \
                     database, db_user, secret_arn, state, attempt, max_attempts, retry, \
                     not_before, timeout_secs, statement_id, rows, error, result_state, \
                     result_rows, result_path, result_error, created_at, ready_at, submitted_at, \
                     finished_at, timed_out_at, expire_at, results_pruned_at, first_row, \
                     has_result_set, execution_mode, result_formats, session_keep_alive_secs) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, \
                     $31, $32, $33, $34, $35, $36)",
                )
                .bind(j.id)
                .bind(&j.uid)
                .bind(&j.run_id)
                .bind(&j.name)
                .bind(sqlx::types::Json(&j.sqls))
                .bind(sqlx::types::Json(&j.params))
                .bind(&j.workgroup)
                .bind(&j.cluster)
                .bind(&j.database)
                .bind(&j.db_user)
                .bind(&j.secret_arn)
                .bind(j.state)
                .bind(j.attempt)
                .bind(j.max_attempts)
                .bind(&j.retry)
                .bind(j.not_before)
                .bind(j.timeout_secs)
                .bind(&j.statement_id)
                .bind(j.rows)
                .bind(&j.error)
                .bind(j.result_state)
                .bind(j.result_rows)
                .bind(&j.result_path)
                .bind(&j.result_error)
                .bind(j.created_at)
                .bind(j.ready_at)
                .bind(j.submitted_at)
                .bind(j.finished_at)
                .bind(j.timed_out_at)
                .bind(j.expire_at)
                .bind(j.results_pruned_at)
                .bind(first.get(&j.id).and_then(|r| r.as_deref()))
                .bind(j.has_result_set)
                .bind(&j.execution_mode)
                .bind(&j.result_formats)
                .bind(j.session_keep_alive_secs)
                .execute(&mut *tx)
                .await?;
            }
            for (job, dep) in &d.deps {
                sqlx::query("INSERT INTO job_deps (job_id, depends_on) VALUES ($1, $2)")
                    .bind(job)
                    .bind(dep)
                    .execute(&mut *tx)
                    .await?;
            }
            for a in &d.attempts {
                sqlx::query(
                    "INSERT INTO attempts (job_id, attempt, client_token, statement_id, state, \
                     started_at, submitted_at, finished_at, rows, error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(a.0)
                .bind(a.1)
                .bind(&a.2)
                .bind(&a.3)
                .bind(a.4)
                .bind(a.5)
                .bind(a.6)
                .bind(a.7)
                .bind(a.8)
                .bind(&a.9)
                .execute(&mut *tx)
                .await?;
            }
            for e in &d.events {
                sqlx::query(
                    "INSERT INTO events (seq, event_id, message_id, received_at, statement_id, \
                     state, job_id, disposition, reason, body) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(e.seq)
                .bind(&e.event_id)
                .bind(&e.message_id)
                .bind(e.received_at)
                .bind(&e.statement_id)
                .bind(&e.state)
                .bind(e.job_id)
                .bind(e.disposition)
                .bind(&e.reason)
                .bind(&e.body)
                .execute(&mut *tx)
                .await?;
            }
            for r in &d.results {
                sqlx::query(
                    "INSERT INTO results (job_id, sub, statement_id, rows, csv_path, jsonl_path) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(r.0)
                .bind(r.1)
                .bind(&r.2)
                .bind(r.3)
                .bind(&r.4)
                .bind(&r.5)
                .execute(&mut *tx)
                .await?;
            }
            dialect::after_restore(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        }

        pub async fn counts(&self) -> Result<Vec<(String, i64)>> {
            let mut out = Vec::new();
            for table in $crate::ledger::TABLES {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&self.pool)
                    .await?;
                out.push((table.to_string(), n));
            }
            Ok(out)
        }

        // ----- invariants -------------------------------------------------------

        /// Checks the ledger's invariants (see [`super::check::violations`]):
        /// the number of jobs checked, and one line per violation.
        pub async fn check(&self) -> Result<(usize, Vec<String>)> {
            let jobs = self.jobs(None, None).await?;
            let attempts: Vec<AttemptRow> = sqlx::query_as(
                "SELECT job_id, attempt, state, statement_id, started_at, finished_at FROM attempts \
                 ORDER BY job_id, attempt",
            )
            .fetch_all(&self.pool)
            .await?;
            let deps: Vec<(i64, i64)> = sqlx::query_as("SELECT job_id, depends_on FROM job_deps")
                .fetch_all(&self.pool)
                .await?;
            let applied: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT statement_id, state, COUNT(*) FROM events WHERE disposition = 'applied' \
                 GROUP BY statement_id, state HAVING COUNT(*) > 1",
            )
            .fetch_all(&self.pool)
            .await?;
            let runs = self.runs().await?;
            let v = $crate::ledger::check::violations(&jobs, &attempts, &deps, &applied, &runs);
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
            let applied = apply_event_tx(&mut tx, ev, error, message_id, body, now).await?;
            tx.commit().await?;
            Ok(applied)
        }

        /// Applies several events in one transaction (an SQS batch), each as
        /// [`Store::apply_event`] would; the dispositions in their order.
        pub async fn apply_events(
            &self,
            events: &[(&StatusEvent, Option<&str>, Option<&str>, &str)],
            now: i64,
        ) -> Result<Vec<(Disposition, Option<i64>)>> {
            let mut tx = self.begin().await?;
            let mut out = Vec::with_capacity(events.len());
            for (ev, error, message_id, body) in events {
                out.push(apply_event_tx(&mut tx, ev, *error, *message_id, body, now).await?);
            }
            tx.commit().await?;
            Ok(out)
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
                 VALUES ($1, $2, 'quarantined', $3, $4) ON CONFLICT DO NOTHING",
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
            if ROW_LOCKS {
                let lock = format!("SELECT id FROM jobs WHERE id = $1{}", dialect::FOR_UPDATE);
                let _: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(lock))
                    .bind(job_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            }
            let row: Option<(i64, AttemptState)> = sqlx::query_as(
                "SELECT attempt, state FROM attempts WHERE job_id = $1 AND statement_id = $2",
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
            now: i64,
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
                "UPDATE jobs SET result_state = $1, result_rows = $2, result_path = $3, first_row = $4 \
                 WHERE id = $5 AND state = 'FINISHED' AND result_state = 'PENDING'",
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
            sqlx::query("DELETE FROM results WHERE job_id = $1")
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            for f in files {
                sqlx::query(
                    "INSERT INTO results (job_id, sub, statement_id, rows, csv_path, jsonl_path) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
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
            // The job's "Job State Change" once its results are in place.
            job_event(&mut tx, job_id, now).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Records that a FINISHED job's results could not be fetched for good
        /// (`EXPIRED` or `ERROR`). The job stays FINISHED.
        pub async fn record_result_error(
            &self,
            job_id: i64,
            expired: bool,
            error: &str,
            now: i64,
        ) -> Result<()> {
            let mut tx = self.begin().await?;
            let changed = sqlx::query(
                "UPDATE jobs SET result_state = $1, result_error = $2 \
                 WHERE id = $3 AND state = 'FINISHED' AND result_state = 'PENDING'",
            )
            .bind(if expired {
                ResultState::Expired
            } else {
                ResultState::Error
            })
            .bind(error)
            .bind(job_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                return Err(conflict(job_id, "not awaiting results", "FINISHED/PENDING"));
            }
            job_event(&mut tx, job_id, now).await?;
            tx.commit().await?;
            Ok(())
        }
    }

    /// Records a run and all its jobs in the caller's transaction (see
    /// `create_run`); `schedule` names the schedule that fired it.
    async fn create_run_tx(
        tx: &mut Tx,
        pipeline: &str,
        jobs: &[RunJob],
        schedule: Option<&str>,
        now: i64,
    ) -> Result<(String, Vec<i64>)> {
        let run_id = format!("r{}", &new_uid()[..12]);
        sqlx::query(
            "INSERT INTO runs (id, pipeline, state, created_at, schedule) VALUES ($1, $2, 'RUNNING', $3, $4)",
        )
        .bind(&run_id)
        .bind(pipeline)
        .bind(now)
        .bind(schedule)
        .execute(&mut **tx)
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
                ids.push(insert_job_tx(tx, &job, now).await?);
            }
        Ok((run_id, ids))
    }

    async fn job_tx(tx: &mut Tx, id: i64) -> Result<Job> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
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
            "UPDATE attempts SET state = 'CANCELLED', finished_at = $1, error = $2 \
             WHERE job_id = $3 AND state = 'SUBMITTING'",
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
             finished_at = $1, not_before = NULL WHERE id = $2 AND state = $3",
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

    /// One event applied inside `tx` (see [`Store::apply_event`]).
    async fn apply_event_tx(
        tx: &mut Tx,
        ev: &StatusEvent,
        error: Option<&str>,
        message_id: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<(Disposition, Option<i64>)> {
            let sid = &ev.detail.statement_id;
            // The inbox row first: its unique event id is the dedupe across
            // workers (a second worker waits here, then finds it).
            let seq: Option<i64> = sqlx::query_scalar(
                "INSERT INTO events (event_id, message_id, received_at, statement_id, state, \
                 disposition, body) VALUES ($1, $2, $3, $4, $5, 'ignored', $6) \
                 ON CONFLICT DO NOTHING RETURNING seq",
            )
            .bind(&ev.event_id)
            .bind(message_id)
            .bind(now)
            .bind(sid)
            .bind(ev.detail.state.as_str())
            .bind(body)
            .fetch_optional(&mut **tx)
            .await?;
            // The job's row next (PostgreSQL): an event and the recording of
            // its statement id, or two events of one statement, take turns,
            // so that none is left deferred or applied twice.
            let uid = ev
                .detail
                .statement_name
                .as_deref()
                .and_then(parse_statement_name)
                .filter(|_| ROW_LOCKS);
            if let Some(uid) = uid {
                let sql = format!("SELECT id FROM jobs WHERE uid = $1{}", dialect::FOR_UPDATE);
                let _: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(uid)
                    .fetch_optional(&mut **tx)
                    .await?;
            }
            let Some(seq) = seq else {
                let seen: Option<Disposition> =
                    sqlx::query_scalar("SELECT disposition FROM events WHERE event_id = $1")
                        .bind(&ev.event_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                return Ok(match seen {
                    // Still not ours: the same answer, so `on_foreign = "leave"`
                    // leaves it again, until SQS moves it to the dead-letter queue.
                    Some(Disposition::Foreign) => (Disposition::Foreign, None),
                    _ => (Disposition::Duplicate, None),
                });
            };
            let known: Option<i64> =
                sqlx::query_scalar("SELECT job_id FROM attempts WHERE statement_id = $1")
                    .bind(sid)
                    .fetch_optional(&mut **tx)
                    .await?;
            let (disposition, reason, job_id) = match known {
                Some(job_id) => {
                    let (d, r) = apply_to_attempt(tx, ev, error, now).await?;
                    (d, r, Some(job_id))
                }
                None => match deferrable_job(tx, ev).await? {
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
            // A deferred event keeps its error text for when it is applied.
            let kept_error = (disposition == Disposition::Deferred).then_some(error).flatten();
            sqlx::query(
                "UPDATE events SET job_id = $1, disposition = $2, reason = $3, error = $5 WHERE seq = $4",
            )
                .bind(job_id)
                .bind(disposition)
                .bind(reason)
                .bind(seq)
                .bind(kept_error)
                .execute(&mut **tx)
                .await?;
            Ok((disposition, job_id))
    }

    pub(crate) async fn insert_job_tx(tx: &mut Tx, job: &NewJob, now: i64) -> Result<i64> {
        let mut state = JobState::Ready;
        let mut error = None;
        for dep in &job.depends_on {
            let s: Option<JobState> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
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
        // JSON in both backends (TEXT in SQLite, JSONB in PostgreSQL).
        let sqls = sqlx::types::Json(&job.sqls);
        let params = sqlx::types::Json(&job.params);
        let retry = job.retry.as_ref().map(|r| r.to_string());
        let id: i64 = sqlx::query_scalar(
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
        .fetch_one(&mut **tx)
        .await?;
        for dep in &job.depends_on {
            sqlx::query("INSERT INTO job_deps (job_id, depends_on) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(dep)
                .execute(&mut **tx)
                .await?;
        }
        if state == JobState::Ready {
            dialect::notify_ready(tx).await?;
        }
        if state == JobState::Skipped {
            job_event(tx, id, now).await?;
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
             WHERE j.uid = $1 AND a.attempt = j.attempt AND a.state = 'SUBMITTING'",
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
            sqlx::query_as("SELECT job_id, attempt, state FROM attempts WHERE statement_id = $1")
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
            sqlx::query("UPDATE jobs SET expire_at = $1 WHERE id = $2 AND state = 'FINISHED'")
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
            "UPDATE attempts SET state = $1, finished_at = $2, rows = $3, error = $4 \
             WHERE job_id = $5 AND attempt = $6 AND state = 'SUBMITTED'",
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
            "UPDATE jobs SET state = $1, rows = COALESCE($2, rows), error = $3, \
             finished_at = $4, result_state = $5, not_before = $6, timed_out_at = NULL \
             WHERE id = $7 AND state = 'SUBMITTED' AND attempt = $8",
        )
        .bind(next)
        .bind(rows)
        .bind(error)
        .bind(next.is_terminal().then_some(now))
        // Nothing to fetch when ExecuteStatement said there is no result set.
        .bind((next == JobState::Finished).then_some(if job.has_result_set == Some(false) {
            ResultState::None
        } else {
            ResultState::Pending
        }))
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
    async fn release_downstream(tx: &mut Tx, parent: i64, now: i64) -> Result<()> {
        // PostgreSQL: the dependents' rows first (in id order), so that two
        // parents ending at once in two transactions take turns, and the
        // second sees the first FINISHED (else neither would release them).
        if ROW_LOCKS {
            let lock = format!(
                "SELECT id FROM jobs WHERE id IN (SELECT job_id FROM job_deps WHERE depends_on = $1) \
                 ORDER BY id{}",
                dialect::FOR_UPDATE
            );
            let _: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(lock))
                .bind(parent)
                .fetch_all(&mut **tx)
                .await?;
        }
        let released = sqlx::query(
            "UPDATE jobs SET state = 'READY', ready_at = $1 \
             WHERE state = 'PENDING' \
               AND id IN (SELECT job_id FROM job_deps WHERE depends_on = $2) \
               AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.depends_on \
                               WHERE d.job_id = jobs.id AND p.state <> 'FINISHED')",
        )
        .bind(now)
        .bind(parent)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if released > 0 {
            dialect::notify_ready(tx).await?;
        }
        Ok(())
    }

    /// Marks SKIPPED every job downstream of `parent` (transitively) that has
    /// not started: the states the state machine lets move to SKIPPED. An
    /// attempt one of them was submitting is closed.
    pub(crate) async fn skip_downstream(tx: &mut Tx, parent: i64, now: i64) -> Result<()> {
        let from = JobState::sql_list(&JobState::sources_of(JobState::Skipped));
        let sql = format!(
            "WITH RECURSIVE down(id) AS ( \
                 SELECT job_id FROM job_deps WHERE depends_on = $1 \
                 UNION SELECT d.job_id FROM job_deps d JOIN down ON d.depends_on = down.id) \
             UPDATE jobs SET state = 'SKIPPED', finished_at = $2, \
                 error = 'upstream job ' || CAST($1 AS TEXT) || ' did not finish' \
             WHERE id IN (SELECT id FROM down) AND state IN ({from}) RETURNING id"
        );
        let skipped: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(parent)
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
        for id in skipped {
            close_submitting(tx, id, "an upstream job did not finish", now).await?;
            job_event(tx, id, now).await?;
        }
        Ok(())
    }

    /// Ends a pipeline run once none of its jobs can move any more.
    pub(crate) async fn finish_run_if_done(tx: &mut Tx, run: &str, now: i64) -> Result<()> {
        // PostgreSQL: the run's row first, so that the last two jobs ending
        // at once take turns and the second sees the run done.
        if ROW_LOCKS {
            let lock = format!("SELECT id FROM runs WHERE id = $1{}", dialect::FOR_UPDATE);
            let _: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(lock))
                .bind(run)
                .fetch_optional(&mut **tx)
                .await?;
        }
        let (open, failed): (i64, i64) = sqlx::query_as(
            "SELECT \
               CAST(COALESCE(SUM(CASE WHEN state IN ('PENDING', 'READY', 'SUBMITTED', 'RETRY_WAIT') \
                 THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN state IN ('FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED') \
                 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM jobs WHERE run_id = $1",
        )
        .bind(run)
        .fetch_one(&mut **tx)
        .await?;
        if open == 0 {
            let ended = sqlx::query(
                "UPDATE runs SET state = $1, finished_at = $2 WHERE id = $3 AND state = 'RUNNING'",
            )
            .bind(if failed > 0 {
                RunState::Failed
            } else {
                RunState::Finished
            })
            .bind(now)
            .bind(run)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if ended == 1 {
                run_event(tx, run, now).await?;
            }
        }
        Ok(())
    }

    /// Records a "Job State Change" for a job that ended, in the caller's
    /// transaction (the outbox the leader publishes from).
    pub(crate) async fn job_event(tx: &mut Tx, job_id: i64, now: i64) -> Result<()> {
        if !$crate::ledger::outbox_on() {
            return Ok(());
        }
        let job = job_tx(tx, job_id).await?;
        let pipeline: Option<String> = match &job.run_id {
            Some(run) => {
                sqlx::query_scalar("SELECT pipeline FROM runs WHERE id = $1")
                    .bind(run)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            None => None,
        };
        let event_id = new_uid();
        let detail = serde_json::json!({
            "event_id": event_id,
            "job_id": job.id,
            "job_name": job.name,
            "run_id": job.run_id,
            "pipeline": pipeline,
            "state": job.state,
            "attempt": job.attempt,
            "statement_id": job.statement_id,
            "rows": job.result_rows.or(job.rows),
            "result_state": job.result_state,
            "result_location": job.result_path,
            "error": job.error,
            "created_at": job.created_at,
            "submitted_at": job.submitted_at,
            "finished_at": job.finished_at,
        });
        outbox_insert(tx, &event_id, "Job State Change", &detail, now).await
    }

    /// Records a "Run State Change" for a run that ended.
    pub(crate) async fn run_event(tx: &mut Tx, run: &str, now: i64) -> Result<()> {
        if !$crate::ledger::outbox_on() {
            return Ok(());
        }
        let r: Option<Run> = sqlx::query_as(
            "SELECT id, pipeline, state, created_at, finished_at FROM runs WHERE id = $1",
        )
        .bind(run)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(r) = r else { return Ok(()) };
        let counts: Vec<(JobState, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE run_id = $1 GROUP BY state")
                .bind(run)
                .fetch_all(&mut **tx)
                .await?;
        let jobs: serde_json::Map<String, serde_json::Value> = counts
            .into_iter()
            .map(|(s, n)| (s.as_str().to_string(), serde_json::Value::from(n)))
            .collect();
        let event_id = new_uid();
        let detail = serde_json::json!({
            "event_id": event_id,
            "run_id": r.id,
            "pipeline": r.pipeline,
            "state": r.state,
            "jobs": jobs,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
        });
        outbox_insert(tx, &event_id, "Run State Change", &detail, now).await
    }

    async fn outbox_insert(
        tx: &mut Tx,
        event_id: &str,
        detail_type: &str,
        detail: &serde_json::Value,
        now: i64,
    ) -> Result<()> {
        if !$crate::ledger::outbox_on() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO outbox (event_id, detail_type, detail, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(event_id)
        .bind(detail_type)
        .bind(detail.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    };
}

pub(crate) use ledger_queries;

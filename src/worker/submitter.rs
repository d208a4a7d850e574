//! The submitter: READY jobs to the Data API (one attempt each, within the
//! in-flight and rate limits), retry promotion and timeouts.

use super::*;
use futures_util::StreamExt;

/// Outcome of submitting one job.
#[derive(Debug)]
pub enum Submitted {
    /// Accepted: the statement id.
    Statement(String),
    /// The job is not READY (another process took it, or it was cancelled).
    NotReady,
    /// Throttled: the job stays READY.
    Throttled(String),
    /// Refused for good: the job is FAILED.
    Rejected(String),
    /// Failed for now: the job stays READY; the same ClientToken is reused.
    Transient(String),
    /// Waits for an upstream result it takes a parameter from.
    Waiting,
    /// No room under the in-flight limits: the job stays READY.
    NoRoom(String),
}

/// Submits a READY job (one attempt), as the worker's submitter does. A
/// crash anywhere in here is safe: the attempt's ClientToken is in the
/// ledger before the call, and a resubmission reuses it. `job` is the row
/// the caller read; the attempt itself is taken in the ledger.
pub async fn submit_job(
    ledger: &Ledger,
    api: &DataApi,
    clock: &dyn Clock,
    job: &Job,
    cfg: &Config,
    claimant: &str,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<Submitted, LedgerError> {
    let job_id = job.id;
    let params = match resolve_params(ledger, job).await? {
        Resolved::Ready(params) => params,
        Resolved::Wait => return Ok(Submitted::Waiting),
        Resolved::Fail(why) => {
            ledger.fail_ready(job_id, &why, clock.now_ms()).await?;
            warn!(job = job_id, error = %why, "Job FAILED: a parameter could not be resolved.");
            return Ok(Submitted::Rejected(why));
        }
    };
    let mut ticket = match ledger
        .claim(
            job_id,
            Some(cfg.in_flight_limits()),
            claimant,
            clock.now_ms(),
        )
        .await?
    {
        Claim::Ticket(t) => t,
        Claim::NotReady => return Ok(Submitted::NotReady),
        Claim::NoRoom(why) => return Ok(Submitted::NoRoom(why)),
    };
    ticket.job.params = params;
    let formats = job.result_formats_or(cfg.result_formats);
    match api.submit(&ticket.submission(), formats.csv_only()).await {
        Ok(accepted) => {
            let sid = accepted.id.clone();
            match ledger
                .mark_submitted(job_id, ticket.attempt, &accepted, formats, clock.now_ms())
                .await
            {
                Ok(_) => {}
                Err(LedgerError::Conflict { .. }) => {
                    // Cancelled by an operator while the call was under way:
                    // stop the statement that now runs for nothing.
                    let now = ledger.job(job_id).await?;
                    if now.state == JobState::Cancelled {
                        if let Err(e) = api.cancel(&sid).await {
                            warn!(job = job_id, statement = %sid, error = %e, "Cannot cancel the statement of a job cancelled during its submission.");
                        }
                    }
                    return Ok(Submitted::NotReady);
                }
                Err(e) => return Err(e),
            }
            if let Some(m) = metrics {
                let now = clock.now_ms();
                m.entered(JobState::Submitted.as_str());
                if ticket.resumed {
                    m.client_token_replays.inc();
                }
                if let Some(ready) = job.ready_at {
                    m.queue_wait.observe(crate::metrics::secs(now - ready));
                    // Released by a parent's end, in the transaction that
                    // applied its event: the reaction to that event.
                    if ready > job.created_at {
                        m.reaction.observe(crate::metrics::secs(now - ready));
                    }
                }
            }
            info!(
                job = job_id,
                run = job.run_id.as_deref().unwrap_or("-"),
                name = %ticket.job.name,
                attempt = ticket.attempt,
                statement = %sid,
                "Job submitted."
            );
            Ok(Submitted::Statement(sid))
        }
        Err(DataApiError::Throttled(m)) => {
            ledger
                .release_claim(job_id, ticket.attempt, claimant)
                .await?;
            Ok(Submitted::Throttled(m))
        }
        Err(DataApiError::Transient(m)) => {
            ledger
                .release_claim(job_id, ticket.attempt, claimant)
                .await?;
            Ok(Submitted::Transient(m))
        }
        Err(DataApiError::Rejected(m)) => {
            ledger
                .fail_submission(job_id, ticket.attempt, &m, clock.now_ms())
                .await?;
            warn!(job = job_id, error = %m, "Job FAILED: the Data API refused it.");
            Ok(Submitted::Rejected(m))
        }
    }
}

enum Resolved {
    Ready(Vec<Param>),
    /// An upstream result is still being fetched.
    Wait,
    Fail(String),
}

/// Fills the parameters taken from an upstream job's result: the first row
/// the ledger kept when the result was fetched (no file is read).
async fn resolve_params(ledger: &Ledger, job: &Job) -> Result<Resolved, LedgerError> {
    let mut out = Vec::with_capacity(job.params.len());
    for p in &job.params {
        let Some(from) = &p.from else {
            out.push(p.clone());
            continue;
        };
        let up = ledger.job(from.job).await?;
        let who = format!("upstream job {} ({})", up.name, up.id);
        let need = format!("parameter :{} needs its column {:?}", p.name, from.column);
        match (up.state, up.result_state) {
            (JobState::Finished, Some(ResultState::Pending)) => return Ok(Resolved::Wait),
            (JobState::Finished, Some(ResultState::Fetched)) => {}
            (JobState::Finished, Some(ResultState::None)) => {
                return Ok(Resolved::Fail(format!(
                    "{who} returned no result set; {need}"
                )))
            }
            (JobState::Finished, other) => {
                return Ok(Resolved::Fail(format!(
                    "{who}'s results are {}: {}; {need}",
                    other.map(|s| s.as_str()).unwrap_or("missing"),
                    up.result_error.as_deref().unwrap_or("-")
                )))
            }
            (state, _) => return Ok(Resolved::Fail(format!("{who} is {state}; {need}"))),
        };
        let Some(row) = ledger.first_row(up.id).await? else {
            return Ok(Resolved::Fail(format!("{who} returned no rows; {need}")));
        };
        let value = match row.get(&from.column) {
            None => {
                let cols: Vec<&str> = row.keys().map(|k| k.as_str()).collect();
                return Ok(Resolved::Fail(format!(
                    "{who} has no column {:?} (its columns: {}); parameter :{} needs it",
                    from.column,
                    cols.join(", "),
                    p.name
                )));
            }
            Some(serde_json::Value::Null) => {
                return Ok(Resolved::Fail(format!(
                    "{who}'s column {:?} is NULL in its first row, and the Data API takes no NULL parameter; {need}",
                    from.column
                )))
            }
            Some(serde_json::Value::String(s)) if s.is_empty() => {
                return Ok(Resolved::Fail(format!(
                    "{who}'s column {:?} is empty in its first row, and the Data API takes no empty parameter",
                    from.column
                )))
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        out.push(Param {
            name: p.name.clone(),
            value,
            from: p.from.clone(),
        });
    }
    Ok(Resolved::Ready(out))
}

/// How many submissions one worker has under way at once. With 150 ms a
/// call this allows about 200 calls a second, above the Data API's default
/// quota of 30 ExecuteStatement calls a second, which the rate limits keep.
const SUBMIT_CONCURRENCY: usize = 32;

impl Worker {
    pub(super) async fn submit_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let mut throttled = 0u32;
        let mut maintained: Option<std::time::Instant> = None;
        loop {
            let mut wait = Duration::from_secs(1);
            // The leader's maintenance (timeouts, retry promotion) at most
            // once a second: off the hot path of a wake-up by an event.
            if self.is_leader() && maintained.is_none_or(|at| at.elapsed() >= wait) {
                maintained = Some(std::time::Instant::now());
                if let Err(e) = self.maintain().await {
                    error!(error = %e, "Maintenance round failed (timeouts, retries).");
                }
            }
            match self.submit_round().await {
                Ok((_, None)) => throttled = 0,
                Ok((submitted, Some(reason))) => {
                    // Back off harder only while nothing gets through.
                    throttled = if submitted > 0 { 1 } else { throttled + 1 };
                    wait = backoff(
                        throttled,
                        Duration::from_millis(200),
                        Duration::from_secs(60),
                        process_seed(),
                    );
                    warn!(%reason, submitted, retry_in_ms = wait.as_millis() as u64, "Submission throttled; jobs stay READY.");
                }
                Err(e) => error!(error = %e, "Submission round failed."),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = self.submit_wake.notified(), if throttled == 0 => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Submits READY jobs up to the in-flight limits. Returns how many were
    /// submitted, and the reason when the Data API throttled.
    /// The leader's maintenance: timed-out statements cancelled, jobs whose
    /// backoff is over made READY.
    pub(super) async fn maintain(&self) -> Result<(), LedgerError> {
        self.stop_timed_out().await?;
        let promoted = self.ledger.promote_retries(self.clock.now_ms()).await?;
        if promoted > 0 {
            info!(
                jobs = promoted,
                "Backoff over: jobs READY for another attempt."
            );
        }
        Ok(())
    }

    pub(super) async fn submit_round(&self) -> Result<(u32, Option<String>), LedgerError> {
        let ready = self.ledger.ready_jobs(10_000).await?;
        if ready.is_empty() {
            return Ok((0, None));
        }
        // The jobs to submit this round, within the limits as the ledger
        // counts them now; each claim checks them again in its transaction.
        let mut by_target = self.ledger.in_flight_by_target().await?;
        let mut room = i64::from(self.cfg.max_in_flight) - by_target.values().sum::<i64>();
        let per_target = i64::from(self.cfg.max_in_flight_per_target);
        let mut chosen = Vec::new();
        for job in ready {
            if room <= 0 {
                break;
            }
            let running = by_target
                .entry(job.target().name().to_string())
                .or_insert(0);
            if per_target > 0 && *running >= per_target {
                continue;
            }
            *running += 1;
            room -= 1;
            chosen.push(job);
        }
        // Submitted side by side: under real API latency (100-300 ms a
        // call) one at a time caps a worker at a few jobs a second. The
        // per-operation rate limits pace the calls; a throttled answer
        // stops the round (the calls already under way finish).
        let throttled = std::sync::Mutex::new(None::<String>);
        let outcomes: Vec<Result<Submitted, LedgerError>> =
            futures_util::stream::iter(chosen.into_iter().map(|job| {
                let throttled = &throttled;
                async move {
                    let job = &job;
                    if lock(throttled).is_some() {
                        return Ok(Submitted::NotReady);
                    }
                    let out = submit_job(
                        &self.ledger,
                        &self.data_api,
                        self.clock.as_ref(),
                        job,
                        &self.cfg,
                        &self.info.id,
                        Some(&self.metrics),
                    )
                    .await;
                    match &out {
                        Ok(Submitted::Throttled(m)) => {
                            lock(throttled).get_or_insert_with(|| m.clone());
                        }
                        Ok(Submitted::Transient(m)) => {
                            warn!(job = job.id, error = %m, "Cannot submit the job now; it stays READY.")
                        }
                        Err(LedgerError::Conflict { .. }) => {
                            debug!(job = job.id, "Job changed while being submitted.")
                        }
                        _ => {}
                    }
                    out
                }
            }))
            .buffer_unordered(SUBMIT_CONCURRENCY)
            .collect()
            .await;
        let mut submitted = 0u32;
        for out in outcomes {
            match out {
                Ok(Submitted::Statement(_)) => submitted += 1,
                Ok(_) | Err(LedgerError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((
            submitted,
            throttled.into_inner().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    /// Asks the Data API to cancel the statements of jobs running past
    /// their `timeout_secs`. The attempt is not ended here: CancelStatement
    /// may answer that it could not cancel (the statement may be
    /// committing), so the attempt ends with the statement's real end state,
    /// from its event or DescribeStatement; a failure then reads "timed out"
    /// and is retried per the job's policy. No other attempt starts while
    /// the statement may still commit.
    pub(super) async fn stop_timed_out(&self) -> Result<(), LedgerError> {
        for job in self.ledger.timed_out(self.clock.now_ms()).await? {
            let Some(sid) = job.statement_id.clone() else {
                continue;
            };
            let secs = job.timeout_secs.unwrap_or_default();
            if !self
                .ledger
                .mark_timed_out(job.id, job.attempt, self.clock.now_ms())
                .await?
            {
                continue;
            }
            match self.data_api.cancel(&sid).await {
                Ok(true) => {
                    warn!(job = job.id, statement = %sid, timeout_secs = secs, "Job timed out: its statement is being cancelled.");
                    // Its real end, now if it has ended; else its event or
                    // the reconciler records it.
                    self.reconcile_one(job.id, &sid, None).await;
                }
                Ok(false) => warn!(
                    job = job.id,
                    statement = %sid,
                    timeout_secs = secs,
                    "Job timed out, but the Data API could not cancel its statement (it may be committing): waiting for its real end."
                ),
                // Already ended: its event (or the reconciler) decides.
                Err(DataApiError::Rejected(m)) => {
                    debug!(job = job.id, error = %m, "Timed-out statement had already ended.");
                    self.reconcile_one(job.id, &sid, None).await;
                }
                Err(e) => {
                    warn!(job = job.id, error = %e, "Cannot cancel a timed-out statement; the reconciler will record its end.")
                }
            }
        }
        Ok(())
    }
}

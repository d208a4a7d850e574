//! The long-running worker: a consumer of the SQS queue, a submitter of
//! READY jobs, a fetcher of results and a reconciler for lost events, each
//! its own task, coordinated through the ledger.

use crate::clock::Clock;
use crate::config::{Config, OnReject};
use crate::dataapi::{ApiError, DataApi};
use crate::event::{self, Origin, StatementState};
use crate::ledger::{Disposition, Job, Ledger, LedgerError, Param};
use crate::results::{self, FetchError};
use crate::retry::RetryPolicy;
use crate::state::{JobState, Outcome};
use anyhow::Result;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

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
}

/// Submits a READY job (one attempt): shared by `redrelay submit` and the
/// worker. A crash anywhere in here is safe: the attempt's ClientToken is in
/// the ledger before the call, and a resubmission reuses it.
pub async fn submit_job(
    ledger: &Ledger,
    api: &DataApi,
    clock: &dyn Clock,
    job_id: i64,
) -> Result<Submitted, LedgerError> {
    let job = ledger.job(job_id).await?;
    let params = match resolve_params(ledger, &job).await? {
        Resolved::Ready(params) => params,
        Resolved::Wait => return Ok(Submitted::Waiting),
        Resolved::Fail(why) => {
            ledger.fail_ready(job_id, &why, clock.now_ms()).await?;
            warn!(job = job_id, error = %why, "Job FAILED: a parameter could not be resolved.");
            return Ok(Submitted::Rejected(why));
        }
    };
    let Some(mut ticket) = ledger.begin_attempt(job_id, clock.now_ms()).await? else {
        return Ok(Submitted::NotReady);
    };
    ticket.job.params = params;
    match api.submit(&ticket).await {
        Ok(sid) => {
            match ledger
                .mark_submitted(job_id, ticket.attempt, &sid, clock.now_ms())
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
            info!(
                job = job_id,
                name = %ticket.job.name,
                attempt = ticket.attempt,
                statement = %sid,
                "Job submitted."
            );
            Ok(Submitted::Statement(sid))
        }
        Err(ApiError::Throttled(m)) => Ok(Submitted::Throttled(m)),
        Err(ApiError::Transient(m)) => Ok(Submitted::Transient(m)),
        Err(ApiError::Rejected(m)) => {
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

/// Fills the parameters taken from an upstream job's result (first row).
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
        let fetched = match (up.state, up.result_state.as_deref()) {
            (JobState::Finished, Some("PENDING")) => return Ok(Resolved::Wait),
            (JobState::Finished, Some("FETCHED")) => ledger.results(up.id).await?,
            (JobState::Finished, Some("NONE")) => {
                return Ok(Resolved::Fail(format!(
                    "{who} returned no result set; {need}"
                )))
            }
            (JobState::Finished, other) => {
                return Ok(Resolved::Fail(format!(
                    "{who}'s results are {}: {}; {need}",
                    other.unwrap_or("missing"),
                    up.result_error.as_deref().unwrap_or("-")
                )))
            }
            (state, _) => return Ok(Resolved::Fail(format!("{who} is {state}; {need}"))),
        };
        let Some(file) = fetched.last() else {
            return Ok(Resolved::Fail(format!("{who} has no result file; {need}")));
        };
        let first = std::fs::read_to_string(&file.jsonl_path)
            .map(|text| text.lines().next().map(str::to_string));
        let row: serde_json::Map<String, serde_json::Value> = match first {
            Err(e) => {
                return Ok(Resolved::Fail(format!(
                    "cannot read {who}'s result {}: {e}; {need}",
                    file.jsonl_path
                )))
            }
            Ok(None) => return Ok(Resolved::Fail(format!("{who} returned no rows; {need}"))),
            Ok(Some(line)) => match serde_json::from_str(&line) {
                Ok(row) => row,
                Err(e) => {
                    return Ok(Resolved::Fail(format!(
                        "{who}'s result {} is not valid JSON Lines ({e}); {need}",
                        file.jsonl_path
                    )))
                }
            },
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

#[derive(Debug, Clone)]
pub struct Options {
    /// Exit once no job is waiting or in flight.
    pub until_idle: bool,
    /// How long to wait for in-flight work after a stop was asked for.
    pub grace: Duration,
}

pub struct Worker {
    pub ledger: Ledger,
    pub api: DataApi,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub cfg: Config,
    pub origin: Origin,
    pub clock: Arc<dyn Clock>,
    submit_wake: Notify,
    fetch_wake: Notify,
}

/// Exponential backoff with jitter for the worker's own retries (receive
/// errors, throttling, result fetches): the same policy type as job retries.
fn backoff(failures: u32, base: Duration, cap: Duration, seed: u64) -> Duration {
    let policy = RetryPolicy {
        initial_secs: base.as_secs_f64(),
        max_secs: cap.as_secs_f64(),
        multiplier: 2.0,
        jitter: 0.5,
    };
    Duration::from_millis(policy.delay_ms(i64::from(failures), seed).max(0) as u64)
}

/// Extends the visibility of received messages every half timeout, until
/// aborted.
async fn keep_invisible(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipts: Vec<String>,
    visibility_secs: u32,
) {
    let period = Duration::from_secs(u64::from(visibility_secs / 2).max(1));
    loop {
        tokio::time::sleep(period).await;
        for chunk in receipts.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(visibility_secs as i32)
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = sqs
                .change_message_visibility_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "Cannot extend the visibility of messages being handled.");
            }
        }
        debug!(
            messages = receipts.len(),
            "Extended the visibility of messages being handled."
        );
    }
}

impl Worker {
    pub fn new(
        ledger: Ledger,
        api: DataApi,
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        cfg: Config,
        origin: Origin,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            ledger,
            api,
            sqs,
            queue_url,
            cfg,
            origin,
            clock,
            submit_wake: Notify::new(),
            fetch_wake: Notify::new(),
        }
    }

    /// Runs until `shutdown` is cancelled (or, with `until_idle`, until no
    /// work is left). In-flight work gets `grace` to finish.
    pub async fn run(self: Arc<Self>, opts: Options, shutdown: CancellationToken) -> Result<()> {
        let started_at = self.clock.now_ms();
        let stop = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().consume(stop.clone()));
        tasks.spawn(self.clone().submit_loop(stop.clone()));
        tasks.spawn(self.clone().fetch_loop(stop.clone()));
        tasks.spawn(self.clone().reconcile_loop(started_at, stop.clone()));
        if opts.until_idle {
            tasks.spawn(self.clone().idle_watch(stop.clone()));
        }
        info!(queue = %self.queue_url, "Worker started.");
        let mut failure = None;
        // The first task to end (normally because `stop` was cancelled)
        // stops the others.
        if let Some(Ok(Err(e))) = tasks.join_next().await {
            failure = Some(e);
        }
        stop.cancel();
        let drained = tokio::time::timeout(opts.grace, async {
            while let Some(res) = tasks.join_next().await {
                if let Ok(Err(e)) = res {
                    failure.get_or_insert(e);
                }
            }
        })
        .await;
        if drained.is_err() {
            warn!(
                still_running = tasks.len(),
                "Grace period over: stopping the remaining tasks."
            );
            tasks.abort_all();
        }
        match failure {
            Some(e) => {
                error!(error = %e, "Worker stopped on an error.");
                Err(e)
            }
            None => {
                info!("Worker stopped.");
                Ok(())
            }
        }
    }

    async fn idle_watch(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if self.ledger.is_idle().await? {
                info!("No job is waiting or in flight: stopping (--until-idle).");
                stop.cancel();
                return Ok(());
            }
        }
    }

    // ----- consumer ---------------------------------------------------------

    async fn consume(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let mut failures = 0u32;
        loop {
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(self.cfg.wait_time_secs as i32)
                .visibility_timeout(self.cfg.visibility_timeout_secs as i32)
                .send();
            let out = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = receive => r,
            };
            let messages = match out {
                Ok(out) => {
                    failures = 0;
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                        failures as u64,
                    );
                    warn!(
                        error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                        retry_in_ms = wait.as_millis() as u64,
                        "Cannot receive from the queue."
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            if messages.is_empty() {
                continue;
            }
            // While the batch is being handled, keep it invisible to other
            // consumers (a slow ledger or Data API must not let SQS hand the
            // same messages out again).
            let heartbeat = tokio::spawn(keep_invisible(
                self.sqs.clone(),
                self.queue_url.clone(),
                messages
                    .iter()
                    .filter_map(|m| m.receipt_handle().map(str::to_string))
                    .collect(),
                self.cfg.visibility_timeout_secs,
            ));
            let mut acks = Vec::new();
            for m in &messages {
                if self.handle(m).await {
                    if let Some(receipt) = m.receipt_handle() {
                        acks.push(receipt.to_string());
                    }
                }
            }
            heartbeat.abort();
            self.submit_wake.notify_one();
            self.fetch_wake.notify_one();
            self.delete(acks).await;
        }
    }

    /// Deletes acknowledged messages (after their ledger commit).
    async fn delete(&self, receipts: Vec<String>) {
        for chunk in receipts.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .ok()
                })
                .collect();
            match self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) if !out.failed().is_empty() => warn!(
                    failed = out.failed().len(),
                    "Some messages could not be deleted; they will be received again and deduplicated."
                ),
                Ok(_) => {}
                Err(e) => warn!(
                    error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                    "Cannot delete messages; they will be received again and deduplicated."
                ),
            }
        }
    }

    /// Records one message in the ledger. Returns whether to delete it from
    /// the queue. Never panics, whatever the body.
    async fn handle(&self, m: &Message) -> bool {
        let body = m.body().unwrap_or_default();
        let message_id = m.message_id();
        let now = self.clock.now_ms();
        let ev = match event::parse(body, &self.origin) {
            Ok(ev) => ev,
            Err(rejection) => {
                let reason = rejection.to_string();
                warn!(message = message_id.unwrap_or("?"), %reason, "Quarantined a message that is not a valid event.");
                return match self.ledger.quarantine(message_id, body, &reason, now).await {
                    Ok(()) => self.cfg.on_invalid == OnReject::Ack,
                    Err(e) => {
                        error!(error = %e, "Cannot record a quarantined message; leaving it on the queue.");
                        false
                    }
                };
            }
        };
        let sid = ev.detail.statement_id.clone();
        // The event carries no error text: ask for it, for our statements.
        let error = match ev.detail.state {
            StatementState::Failed | StatementState::Aborted
                if self.ledger.owns_statement(&sid).await.unwrap_or(false) =>
            {
                match self.api.describe(&sid).await {
                    Ok(d) => d.outcome().and_then(|o| match o {
                        Outcome::Failed { error } | Outcome::Aborted { error } => Some(error),
                        _ => None,
                    }),
                    Err(e) => {
                        warn!(statement = %sid, error = %e, "Cannot describe a failed statement; recording it without its error text.");
                        None
                    }
                }
            }
            _ => None,
        };
        match self
            .ledger
            .apply_event(&ev, error.as_deref(), message_id, body, now)
            .await
        {
            Ok((disposition, job)) => {
                match disposition {
                    Disposition::Applied => {
                        if let Ok(j) = self.ledger.job(job.unwrap_or_default()).await {
                            info!(job = j.id, name = %j.name, state = %j.state, statement = %sid, "Job {}.", j.state);
                        }
                    }
                    Disposition::Foreign => {
                        warn!(statement = %sid, "Recorded an event for a statement that is not ours (foreign).")
                    }
                    d => debug!(statement = %sid, disposition = d.as_str(), "Recorded an event."),
                }
                disposition != Disposition::Foreign || self.cfg.on_foreign == OnReject::Ack
            }
            Err(e) => {
                error!(statement = %sid, error = %e, "Cannot record an event; leaving it on the queue.");
                false
            }
        }
    }

    // ----- submitter --------------------------------------------------------

    async fn submit_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let mut throttled = 0u32;
        loop {
            let mut wait = Duration::from_secs(1);
            match self.submit_round().await {
                Ok((_, None)) => throttled = 0,
                Ok((submitted, Some(reason))) => {
                    // Back off harder only while nothing gets through.
                    throttled = if submitted > 0 { 1 } else { throttled + 1 };
                    wait = backoff(
                        throttled,
                        Duration::from_millis(200),
                        Duration::from_secs(60),
                        self.clock.now_ms() as u64,
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
    async fn submit_round(&self) -> Result<(u32, Option<String>), LedgerError> {
        self.stop_timed_out().await?;
        let promoted = self.ledger.promote_retries(self.clock.now_ms()).await?;
        if promoted > 0 {
            info!(
                jobs = promoted,
                "Backoff over: jobs READY for another attempt."
            );
        }
        let mut room = i64::from(self.cfg.max_in_flight) - self.ledger.in_flight().await?;
        let mut submitted = 0u32;
        if room <= 0 {
            return Ok((submitted, None));
        }
        let per_target = i64::from(self.cfg.max_in_flight_per_target);
        let mut by_target = self.ledger.in_flight_by_target().await?;
        for job in self.ledger.ready_jobs(10_000).await? {
            if room <= 0 {
                break;
            }
            let target = job
                .workgroup
                .clone()
                .or_else(|| job.cluster.clone())
                .unwrap_or_default();
            let running = by_target.entry(target).or_insert(0);
            if per_target > 0 && *running >= per_target {
                continue;
            }
            match submit_job(&self.ledger, &self.api, self.clock.as_ref(), job.id).await {
                Ok(Submitted::Statement(_)) => {
                    room -= 1;
                    *running += 1;
                    submitted += 1;
                }
                Ok(Submitted::Throttled(m)) => return Ok((submitted, Some(m))),
                Ok(Submitted::Transient(m)) => {
                    warn!(job = job.id, error = %m, "Cannot submit the job now; it stays READY.")
                }
                Ok(_) => {}
                Err(LedgerError::Conflict { .. }) => {
                    debug!(job = job.id, "Job changed while being submitted.")
                }
                Err(e) => return Err(e),
            }
        }
        Ok((submitted, None))
    }

    /// Cancels the statements of jobs running past their `timeout_secs`;
    /// each counts as a failed attempt (retried per the job's policy).
    async fn stop_timed_out(&self) -> Result<(), LedgerError> {
        for job in self.ledger.timed_out(self.clock.now_ms()).await? {
            let Some(sid) = job.statement_id.clone() else {
                continue;
            };
            let secs = job.timeout_secs.unwrap_or_default();
            match self.api.cancel(&sid).await {
                Ok(_) => {
                    let outcome = Outcome::Failed {
                        error: format!("timed out after {secs} s: the statement was cancelled"),
                    };
                    match self
                        .ledger
                        .apply_reconciled(job.id, &sid, &outcome, self.clock.now_ms())
                        .await
                    {
                        Ok(_) => warn!(
                            job = job.id,
                            timeout_secs = secs,
                            "Job timed out: statement cancelled."
                        ),
                        Err(e) => warn!(job = job.id, error = %e, "Cannot record a timed-out job."),
                    }
                }
                // Already ended: its event (or the reconciler) decides.
                Err(ApiError::Rejected(m)) => {
                    debug!(job = job.id, error = %m, "Timed-out statement had already ended.")
                }
                Err(e) => warn!(job = job.id, error = %e, "Cannot cancel a timed-out statement."),
            }
        }
        Ok(())
    }

    // ----- fetcher ----------------------------------------------------------

    async fn fetch_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let dir: PathBuf = self.cfg.results_dir.clone();
        let mut retry_at: HashMap<i64, (u32, i64)> = HashMap::new();
        loop {
            match self.ledger.pending_fetches().await {
                Ok(jobs) => {
                    for job in jobs {
                        if stop.is_cancelled() {
                            return Ok(());
                        }
                        let now = self.clock.now_ms();
                        if retry_at.get(&job.id).is_some_and(|(_, at)| *at > now) {
                            continue;
                        }
                        self.fetch_one(&job, &dir, &mut retry_at).await;
                    }
                }
                Err(e) => error!(error = %e, "Cannot read the jobs awaiting results."),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = self.fetch_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn fetch_one(
        &self,
        job: &crate::ledger::Job,
        dir: &std::path::Path,
        retry_at: &mut HashMap<i64, (u32, i64)>,
    ) {
        let recorded = match results::fetch_job(&self.api, job, dir).await {
            Ok(files) => {
                let rows: i64 = files.iter().map(|f| f.rows).sum();
                let path = (!files.is_empty())
                    .then(|| results::job_dir(dir, job.id).display().to_string());
                info!(job = job.id, files = files.len(), rows, "Results fetched.");
                self.ledger
                    .record_results(job.id, &files, path.as_deref())
                    .await
            }
            Err(FetchError::Expired(m)) => {
                warn!(job = job.id, error = %m, "Results expired before they could be fetched.");
                self.ledger.record_result_error(job.id, true, &m).await
            }
            Err(FetchError::Rejected(m)) => {
                warn!(job = job.id, error = %m, "Results cannot be fetched.");
                self.ledger.record_result_error(job.id, false, &m).await
            }
            Err(e) => {
                let entry = retry_at.entry(job.id).or_insert((0, 0));
                entry.0 += 1;
                let wait = backoff(
                    entry.0,
                    Duration::from_millis(500),
                    Duration::from_secs(60),
                    job.id as u64,
                );
                entry.1 = self.clock.now_ms() + wait.as_millis() as i64;
                warn!(job = job.id, error = %e, retry_in_ms = wait.as_millis() as u64, "Cannot fetch results now.");
                return;
            }
        };
        retry_at.remove(&job.id);
        if let Err(e) = recorded {
            error!(job = job.id, error = %e, "Cannot record the results.");
        }
    }

    // ----- reconciler -------------------------------------------------------

    /// Checks with DescribeStatement the jobs that got no end event in time
    /// (and, at start-up, every job in flight): events can be lost.
    async fn reconcile_loop(
        self: Arc<Self>,
        started_at: i64,
        stop: CancellationToken,
    ) -> Result<()> {
        let after_ms = (self.cfg.reconcile_after_secs * 1000) as i64;
        let period = Duration::from_millis((after_ms as u64 / 4).clamp(500, 60_000));
        let mut first = true;
        loop {
            let cutoff = if first {
                started_at
            } else {
                self.clock.now_ms() - after_ms
            };
            first = false;
            match self.ledger.submitted_before(cutoff).await {
                Ok(jobs) => {
                    for job in jobs {
                        if stop.is_cancelled() {
                            return Ok(());
                        }
                        let Some(sid) = job.statement_id.clone() else {
                            continue;
                        };
                        match self.api.describe(&sid).await {
                            Ok(d) => {
                                if let Some(outcome) = d.outcome() {
                                    match self
                                        .ledger
                                        .apply_reconciled(
                                            job.id,
                                            &sid,
                                            &outcome,
                                            self.clock.now_ms(),
                                        )
                                        .await
                                    {
                                        Ok(Disposition::Applied) => {
                                            info!(job = job.id, state = outcome.state_name(), "Job ended with no event; found by DescribeStatement.");
                                            self.submit_wake.notify_one();
                                            self.fetch_wake.notify_one();
                                        }
                                        Ok(_) => {}
                                        Err(e) => {
                                            warn!(job = job.id, error = %e, "Cannot record a reconciled job.")
                                        }
                                    }
                                }
                            }
                            Err(e) => {
                                warn!(job = job.id, error = %e, "Cannot describe a job's statement.")
                            }
                        }
                        // A gentle rate: DescribeStatement shares the account's quota.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Err(e) => error!(error = %e, "Cannot read in-flight jobs."),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(period) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(10);
        for seed in 0..50 {
            let b1 = backoff(1, base, cap, seed);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b20 = backoff(20, base, cap, seed);
            assert!(b20 >= Duration::from_secs(5) && b20 <= cap);
        }
        assert_eq!(backoff(3, base, cap, 7), backoff(3, base, cap, 7));
    }
}

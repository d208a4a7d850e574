//! The long-running worker: a consumer of the SQS queue, a submitter of
//! READY jobs, a fetcher of results and a reconciler for lost events, each
//! its own task, coordinated through the ledger.

use crate::clock::Clock;
use crate::config::{Config, OnReject};
use crate::dataapi::{ApiError, DataApi};
use crate::event::{self, Origin, StatementState};
use crate::ledger::{
    Claim, Disposition, InFlightLimits, Job, Ledger, LedgerError, Param, WorkerInfo,
};
use crate::results::{self, FetchError};
use crate::retry::RetryPolicy;
use crate::state::{JobState, Outcome, ResultState};
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
    limits: InFlightLimits,
    claimant: &str,
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
        .claim(job_id, Some(limits), claimant, clock.now_ms())
        .await?
    {
        Claim::Ticket(t) => t,
        Claim::NotReady => return Ok(Submitted::NotReady),
        Claim::NoRoom(why) => return Ok(Submitted::NoRoom(why)),
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
        Err(ApiError::Throttled(m)) => {
            ledger
                .release_claim(job_id, ticket.attempt, claimant)
                .await?;
            Ok(Submitted::Throttled(m))
        }
        Err(ApiError::Transient(m)) => {
            ledger
                .release_claim(job_id, ticket.attempt, claimant)
                .await?;
            Ok(Submitted::Transient(m))
        }
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

/// What [`prune`] removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    pub events: u64,
    pub jobs: u64,
    pub files_deleted: u64,
}

/// Retention: removes from the ledger what is older than `older_than`
/// (see [`Ledger::prune`]), then deletes the result files of the jobs it
/// pruned (files first, their folders last). A file already gone is fine.
pub async fn prune(
    ledger: &Ledger,
    older_than: Duration,
    now: i64,
) -> Result<PruneReport, LedgerError> {
    let cutoff = now.saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
    let pruned = ledger.prune(cutoff, now).await?;
    let mut deleted = 0;
    for path in &pruned.files {
        let p = std::path::Path::new(path);
        let res = if p.is_dir() {
            std::fs::remove_dir(p)
        } else {
            std::fs::remove_file(p)
        };
        match res {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path, error = %e, "Cannot delete a pruned result file."),
        }
    }
    Ok(PruneReport {
        events: pruned.events,
        jobs: pruned.jobs,
        files_deleted: deleted,
    })
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Exit once no job is waiting or in flight.
    pub until_idle: bool,
    /// How long to wait for in-flight work after a stop was asked for.
    pub grace: Duration,
}

/// One of the worker's tasks.
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// Runs named tasks until the first one ends (normally because `stop` was
/// cancelled), then stops the others and gives them `grace` to finish. A
/// task that returned an error, or panicked, makes the whole an error that
/// names it, logged at ERROR.
pub async fn supervise(
    tasks: Vec<(&'static str, Task)>,
    stop: CancellationToken,
    grace: Duration,
) -> Result<()> {
    let mut set = tokio::task::JoinSet::new();
    let mut names = HashMap::new();
    for (name, task) in tasks {
        let handle = set.spawn(task);
        names.insert(handle.id(), name);
    }
    let mut failure: Option<anyhow::Error> = None;
    let mut note = |res: Result<(tokio::task::Id, Result<()>), tokio::task::JoinError>| {
        let err = match res {
            Ok((_, Ok(()))) => return,
            Ok((id, Err(e))) => {
                let name = names.get(&id).copied().unwrap_or("?");
                e.context(format!("the worker's {name} task failed"))
            }
            Err(j) if j.is_panic() => {
                let name = names.get(&j.id()).copied().unwrap_or("?");
                let what = j.into_panic();
                let msg = what
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| what.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                anyhow::anyhow!("the worker's {name} task panicked: {msg}")
            }
            // Cancelled: only by abort_all below.
            Err(_) => return,
        };
        error!(
            error = format!("{err:#}"),
            "A worker task stopped on an error: the worker stops."
        );
        failure.get_or_insert(err);
    };
    if let Some(res) = set.join_next_with_id().await {
        note(res);
    }
    stop.cancel();
    let drained = tokio::time::timeout(grace, async {
        while let Some(res) = set.join_next_with_id().await {
            note(res);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            still_running = set.len(),
            "Grace period over: stopping the remaining tasks."
        );
        set.abort_all();
    }
    match failure {
        Some(e) => Err(e),
        None => {
            info!("Worker stopped.");
            Ok(())
        }
    }
}

/// A seed for this process's backoff jitter: different in every process,
/// so that workers do not retry in lock-step.
fn process_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0)
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
    /// Set once the consumer has handled its first receive: events that
    /// waited in the queue are applied before the start-up reconcile asks
    /// DescribeStatement (cheaper, and they carry the results' expiry).
    first_receive: tokio::sync::watch::Sender<bool>,
    /// Who this worker is, in the ledger's `workers` table.
    pub info: WorkerInfo,
    /// Until when this worker may act as the leader (its lease, less a
    /// margin); `None` when it is not the leader.
    leader_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The leader's lease: held this long after each renewal...
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// ...trusted this much less (a paused worker stops leading before another
/// can take over)...
const LEASE_MARGIN: Duration = Duration::from_secs(3);
/// ...and renewed, with the heartbeat, this often.
const RENEW_EVERY: Duration = Duration::from_secs(3);
pub use crate::ledger::LIVE_MS;

/// This host's name (for `workers list`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
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
            submit_wake: Notify::new(),
            fetch_wake: Notify::new(),
            first_receive: tokio::sync::watch::Sender::new(false),
            info: {
                let host = host_name();
                let pid = std::process::id();
                let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
                WorkerInfo {
                    id: format!("{host}-{pid}-{tag}"),
                    host,
                    pid: i64::from(pid),
                    started_at: clock.now_ms(),
                }
            },
            clock,
            leader_until: std::sync::Mutex::new(None),
        }
    }

    /// Whether this worker leads now (maintenance runs on the leader only).
    pub fn is_leader(&self) -> bool {
        let until = match self.leader_until.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        until.is_some_and(|t| std::time::Instant::now() < t)
    }

    fn set_leader_until(&self, until: Option<std::time::Instant>) -> bool {
        let mut g = match self.leader_until.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let was = g.is_some_and(|t| std::time::Instant::now() < t);
        *g = until;
        was
    }

    /// Heartbeat, leader's lease, and this worker's share of the Data API
    /// quotas. With SQLite the one worker is the leader.
    async fn renew(&self) {
        let asked = std::time::Instant::now();
        if let Err(e) = self.ledger.heartbeat(&self.info).await {
            warn!(error = %e, "Cannot record this worker's heartbeat.");
        }
        let take = self.ledger.kind() == "sqlite";
        let ttl_ms = LEASE_TTL.as_millis() as i64;
        match self.ledger.try_lead(&self.info.id, ttl_ms, take).await {
            Ok(true) => {
                if !self.set_leader_until(Some(asked + LEASE_TTL - LEASE_MARGIN)) {
                    info!(worker = %self.info.id, "This worker is now the leader.");
                }
            }
            Ok(false) => {
                if self.set_leader_until(None) {
                    warn!(worker = %self.info.id, "This worker is no longer the leader.");
                }
            }
            // Keep what we had: it runs out by itself if renewals keep failing.
            Err(e) => warn!(error = %e, "Cannot renew the leader's lease."),
        }
        // One worker per SQLite file: a killed predecessor's heartbeat must
        // not shrink this one's share.
        if take {
            return;
        }
        match self.ledger.workers(LIVE_MS).await {
            Ok(ws) => self.api.set_share(ws.len().max(1)),
            Err(e) => warn!(error = %e, "Cannot count the live workers."),
        }
    }

    async fn lead_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
            self.renew().await;
        }
    }

    /// PostgreSQL: wakes the submitter when another process made jobs
    /// READY (LISTEN/NOTIFY). Polling stays: a lost notification costs at
    /// most one poll.
    async fn listen_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let Some(pg) = self.ledger.postgres() else {
            stop.cancelled().await;
            return Ok(());
        };
        loop {
            match pg.listen_ready().await {
                Ok(mut listener) => loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        n = listener.recv() => match n {
                            Ok(_) => self.submit_wake.notify_one(),
                            Err(e) => {
                                warn!(error = %e, "Lost the ledger's notifications; polling until they are back.");
                                break;
                            }
                        },
                    }
                },
                Err(e) => {
                    warn!(error = %e, "Cannot listen for the ledger's notifications; polling.")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Runs until `shutdown` is cancelled (or, with `until_idle`, until no
    /// work is left). In-flight work gets `grace` to finish. A task that
    /// fails or panics stops the worker with an error naming the task, so
    /// that the process exits non-zero and its supervisor restarts it.
    pub async fn run(self: Arc<Self>, opts: Options, shutdown: CancellationToken) -> Result<()> {
        let started_at = self.clock.now_ms();
        let stop = shutdown.child_token();
        self.renew().await;
        let mut tasks: Vec<(&'static str, Task)> = vec![
            ("consumer", Box::pin(self.clone().consume(stop.clone()))),
            (
                "submitter",
                Box::pin(self.clone().submit_loop(stop.clone())),
            ),
            ("fetcher", Box::pin(self.clone().fetch_loop(stop.clone()))),
            (
                "reconciler",
                Box::pin(self.clone().reconcile_loop(started_at, stop.clone())),
            ),
        ];
        if self.cfg.retention_days > 0 {
            tasks.push((
                "retention",
                Box::pin(self.clone().retention_loop(stop.clone())),
            ));
        }
        if opts.until_idle {
            tasks.push((
                "idle watch",
                Box::pin(self.clone().idle_watch(stop.clone())),
            ));
        }
        tasks.push(("leader", Box::pin(self.clone().lead_loop(stop.clone()))));
        if self.ledger.postgres().is_some() {
            tasks.push(("listener", Box::pin(self.clone().listen_loop(stop.clone()))));
        }
        info!(
            queue = %self.queue_url,
            worker = %self.info.id,
            ledger = self.ledger.kind(),
            leader = self.is_leader(),
            "Worker started."
        );
        let res = supervise(tasks, stop, opts.grace).await;
        // Leave at once: another worker takes the lease without waiting for
        // it to expire.
        if let Err(e) = self.ledger.deregister(&self.info.id).await {
            warn!(error = %e, "Cannot remove this worker from the ledger.");
        }
        res
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
                    let messages = out.messages.unwrap_or_default();
                    if messages.is_empty() {
                        self.first_receive.send_replace(true);
                    }
                    messages
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                        process_seed(),
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
            self.first_receive.send_replace(true);
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
        let ours = match ev.detail.state {
            StatementState::Failed | StatementState::Aborted => {
                match self.ledger.owns_statement(&sid).await {
                    Ok(ours) => ours,
                    Err(e) => {
                        error!(statement = %sid, error = %e, "Cannot read the ledger; leaving the event on the queue.");
                        return false;
                    }
                }
            }
            _ => false,
        };
        let error = match ev.detail.state {
            StatementState::Failed | StatementState::Aborted if ours => {
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
    async fn submit_round(&self) -> Result<(u32, Option<String>), LedgerError> {
        // Maintenance: the leader's.
        if self.is_leader() {
            self.stop_timed_out().await?;
            let promoted = self.ledger.promote_retries(self.clock.now_ms()).await?;
            if promoted > 0 {
                info!(
                    jobs = promoted,
                    "Backoff over: jobs READY for another attempt."
                );
            }
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
            let running = by_target
                .entry(job.target().name().to_string())
                .or_insert(0);
            if per_target > 0 && *running >= per_target {
                continue;
            }
            match submit_job(
                &self.ledger,
                &self.api,
                self.clock.as_ref(),
                &job,
                self.cfg.in_flight_limits(),
                &self.info.id,
            )
            .await
            {
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

    /// Asks the Data API to cancel the statements of jobs running past
    /// their `timeout_secs`. The attempt is not ended here: CancelStatement
    /// may answer that it could not cancel (the statement may be
    /// committing), so the attempt ends with the statement's real end state,
    /// from its event or DescribeStatement; a failure then reads "timed out"
    /// and is retried per the job's policy. No other attempt starts while
    /// the statement may still commit.
    async fn stop_timed_out(&self) -> Result<(), LedgerError> {
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
            match self.api.cancel(&sid).await {
                Ok(true) => {
                    warn!(job = job.id, statement = %sid, timeout_secs = secs, "Job timed out: its statement is being cancelled.");
                    // Its real end, now if it has ended; else its event or
                    // the reconciler records it.
                    self.reconcile_one(job.id, &sid).await;
                }
                Ok(false) => warn!(
                    job = job.id,
                    statement = %sid,
                    timeout_secs = secs,
                    "Job timed out, but the Data API could not cancel its statement (it may be committing): waiting for its real end."
                ),
                // Already ended: its event (or the reconciler) decides.
                Err(ApiError::Rejected(m)) => {
                    debug!(job = job.id, error = %m, "Timed-out statement had already ended.");
                    self.reconcile_one(job.id, &sid).await;
                }
                Err(e) => {
                    warn!(job = job.id, error = %e, "Cannot cancel a timed-out statement; the reconciler will record its end.")
                }
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
                        // One worker fetches a job's results.
                        match self.ledger.claim_fetch(job.id, &self.info.id).await {
                            Ok(true) => {}
                            Ok(false) => continue,
                            Err(e) => {
                                warn!(job = job.id, error = %e, "Cannot take the fetching of results.");
                                continue;
                            }
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
            Ok(fetched) => {
                let files = &fetched.files;
                let rows: i64 = files.iter().map(|f| f.rows).sum();
                let path = (!files.is_empty())
                    .then(|| results::job_dir(dir, job.id).display().to_string());
                info!(job = job.id, files = files.len(), rows, "Results fetched.");
                self.ledger
                    .record_results(job.id, files, path.as_deref(), fetched.first_row.as_ref())
                    .await
            }
            // Refused once the results' expiry time has passed: expired (the
            // event's expireAt, or 24 h after the end when no event said).
            Err(FetchError::Rejected(m))
                if results_expired(job.expire_at, job.finished_at, self.clock.now_ms()) =>
            {
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
                    process_seed() ^ job.id as u64,
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

    /// Checks with DescribeStatement the statements that got no end event
    /// in time (and, at start-up, every statement in flight): events can be
    /// lost. It looks at every open attempt, so the statement of a job
    /// cancelled meanwhile is recorded as it truly ended too.
    async fn reconcile_loop(
        self: Arc<Self>,
        started_at: i64,
        stop: CancellationToken,
    ) -> Result<()> {
        let after_ms = (self.cfg.reconcile_after_secs * 1000) as i64;
        let period = Duration::from_millis((after_ms as u64 / 4).clamp(500, 60_000));
        let mut first = true;
        // Events already queued first: a receive returns waiting messages at
        // once, so a short bound suffices (an empty queue answers only at the
        // end of its long poll, and the queue may be unreachable).
        let mut received = self.first_receive.subscribe();
        let bound = Duration::from_secs(2);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::timeout(bound, received.wait_for(|done| *done)) => {}
        }
        loop {
            if !self.is_leader() {
                // A worker that becomes the leader sweeps everything in
                // flight, as at start-up: the events of a dead worker's
                // statements may be stranded with it (invisible in the queue).
                first = true;
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(period.min(RENEW_EVERY)) => continue,
                }
            }
            let cutoff = if first {
                started_at.max(self.clock.now_ms() - 1000)
            } else {
                self.clock.now_ms() - after_ms
            };
            first = false;
            match self.ledger.open_attempts_before(cutoff).await {
                Ok(open) => {
                    for (job, _attempt, sid) in open {
                        if stop.is_cancelled() {
                            return Ok(());
                        }
                        self.reconcile_one(job, &sid).await;
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

    /// Records a statement's end as DescribeStatement tells it, if it ended.
    async fn reconcile_one(&self, job: i64, sid: &str) {
        let outcome = match self.api.describe(sid).await {
            Ok(d) => d.outcome(),
            Err(e) => {
                warn!(job, statement = %sid, error = %e, "Cannot describe a job's statement.");
                return;
            }
        };
        let Some(outcome) = outcome else { return };
        match self
            .ledger
            .apply_reconciled(job, sid, &outcome, self.clock.now_ms())
            .await
        {
            Ok(Disposition::Applied) => {
                info!(job, statement = %sid, state = outcome.state_name(), "Job's statement ended; found by DescribeStatement.");
                self.submit_wake.notify_one();
                self.fetch_wake.notify_one();
            }
            Ok(Disposition::Stale) => {
                info!(job, statement = %sid, state = outcome.state_name(), "An earlier statement of the job ended; recorded in its history.");
            }
            Ok(_) => {}
            Err(e) => warn!(job, error = %e, "Cannot record a reconciled job."),
        }
    }

    // ----- retention --------------------------------------------------------

    /// Applies `retention_days` every hour (and at start).
    async fn retention_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let keep = Duration::from_secs(self.cfg.retention_days * 86_400);
        loop {
            if !self.is_leader() {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RENEW_EVERY) => continue,
                }
            }
            match prune(&self.ledger, keep, self.clock.now_ms()).await {
                Ok(r) if r.events > 0 || r.jobs > 0 => info!(
                    events = r.events,
                    jobs = r.jobs,
                    files = r.files_deleted,
                    retention_days = self.cfg.retention_days,
                    "Retention: pruned old inbox rows and result files."
                ),
                Ok(_) => {}
                Err(e) => error!(error = %e, "Retention: cannot prune the ledger."),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    }
}

/// Whether a FINISHED job's results are past their expiry: the event's
/// `expireAt`, or the Data API's 24 hours after the end.
fn results_expired(expire_at: Option<i64>, finished_at: Option<i64>, now: i64) -> bool {
    const RESULTS_KEPT_MS: i64 = 24 * 3600 * 1000;
    let expire_at = expire_at.or_else(|| finished_at.map(|t| t + RESULTS_KEPT_MS));
    expire_at.is_some_and(|at| now >= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panicking() -> Task {
        Box::pin(async { panic!("boom in a test") })
    }

    fn waiting(stop: CancellationToken) -> Task {
        Box::pin(async move {
            stop.cancelled().await;
            Ok(())
        })
    }

    /// Issue 7.11: expiry is decided by the statement's expiry time, never
    /// by the wording of the Data API's message.
    #[test]
    fn results_expire_by_time_not_by_wording() {
        assert!(!results_expired(Some(5_000), Some(1_000), 4_999));
        assert!(results_expired(Some(5_000), Some(1_000), 5_000));
        let day = 24 * 3600 * 1000;
        assert!(!results_expired(None, Some(1_000), 1_000 + day - 1));
        assert!(results_expired(None, Some(1_000), 1_000 + day));
        assert!(!results_expired(None, None, i64::MAX));
    }

    #[tokio::test]
    async fn a_panicking_task_stops_the_worker_with_an_error_naming_it() {
        let stop = CancellationToken::new();
        let res = supervise(
            vec![
                ("consumer", waiting(stop.clone())),
                ("fetcher", panicking()),
            ],
            stop.clone(),
            Duration::from_secs(5),
        )
        .await;
        let e = res.expect_err("a panic must be an error");
        let text = format!("{e:#}");
        assert!(
            text.contains("fetcher task panicked: boom in a test"),
            "{text}"
        );
        assert!(stop.is_cancelled(), "the other tasks are stopped");
    }

    #[tokio::test]
    async fn a_failing_task_is_named_and_a_clean_stop_is_ok() {
        let stop = CancellationToken::new();
        let failing: Task = Box::pin(async { Err(anyhow::anyhow!("ledger gone")) });
        let e = supervise(
            vec![("submitter", failing), ("consumer", waiting(stop.clone()))],
            stop.clone(),
            Duration::from_secs(5),
        )
        .await
        .expect_err("an error");
        assert!(format!("{e:#}").contains("submitter task failed: ledger gone"));
        let stop = CancellationToken::new();
        stop.cancel();
        let ok = supervise(
            vec![("consumer", waiting(stop.clone()))],
            stop,
            Duration::from_secs(5),
        )
        .await;
        assert!(ok.is_ok());
    }

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

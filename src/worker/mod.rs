//! The long-running worker: its tasks, each in its own module, coordinated
//! through the ledger, and wired here:
//! - `consumer`: SQS long poll, one transaction per event, delete after commit;
//! - `submitter`: READY jobs to the Data API within the limits; timeouts;
//! - `fetcher`: every result page into files;
//! - `reconciler`: DescribeStatement for statements with no event;
//! - `leader`: heartbeat, the leader's lease, the rate share, wake-ups;
//! - `retention`: old inbox rows and result files;
//! - `listener`: the HTTP listener (metrics, health, the API and console).
//!
//! Maintenance (reconciler, timeouts, retry promotion, retention) runs on
//! the leader only; every worker consumes, submits and fetches.

mod consumer;
mod fetcher;
mod leader;
pub mod listener;
mod publisher;
mod reconciler;
mod retention;
mod scheduler;
mod submitter;
mod triggers;

pub use retention::{prune, PruneReport};
pub use submitter::{submit_job, Submitted};

use crate::clock::Clock;
use crate::config::{Config, OnReject};
use crate::dataapi::{DataApi, DataApiError};
use crate::event::{self, Origin, StatementState};
use crate::ledger::{Claim, Disposition, Job, Ledger, LedgerError, Param, WorkerInfo};
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

/// A mutex's guard, also after a panic elsewhere held it (the data it
/// guards stays consistent: bookkeeping only, never half-written).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    /// The Data API client (rate-limited, counted in the metrics).
    pub data_api: DataApi,
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge, for redrelay's own events.
    pub events: aws_sdk_eventbridge::Client,
    pub queue_url: String,
    pub cfg: Config,
    pub origin: Origin,
    pub clock: Arc<dyn Clock>,
    /// Wakes the submitter; shared with the API, which records jobs too.
    submit_wake: Arc<Notify>,
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
    /// What `/metrics` shows.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// When the last SQS receive succeeded (ms; 0: never), for `/readyz`.
    last_receive_ms: std::sync::atomic::AtomicI64,
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

impl Worker {
    #[allow(clippy::too_many_arguments)] // the worker's parts, wired once (cli)
    pub fn new(
        ledger: Ledger,
        data_api: DataApi,
        sqs: aws_sdk_sqs::Client,
        events: aws_sdk_eventbridge::Client,
        queue_url: String,
        cfg: Config,
        origin: Origin,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let data_api = data_api.with_metrics(metrics.clone());
        Self {
            ledger,
            data_api,
            sqs,
            events,
            queue_url,
            cfg,
            origin,
            submit_wake: Arc::new(Notify::new()),
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
                    listen: Default::default(),
                }
            },
            clock,
            leader_until: std::sync::Mutex::new(None),
            metrics,
            last_receive_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Wakes the submitter (a job was recorded or revived elsewhere).
    pub fn wake_submitter(&self) {
        self.submit_wake.notify_one();
    }

    /// Runs until `shutdown` is cancelled (or, with `until_idle`, until no
    /// work is left). In-flight work gets `grace` to finish. A task that
    /// fails or panics stops the worker with an error naming the task, so
    /// that the process exits non-zero and its supervisor restarts it.
    pub async fn run(self: Arc<Self>, opts: Options, shutdown: CancellationToken) -> Result<()> {
        let started_at = self.clock.now_ms();
        let stop = shutdown.child_token();
        let http = self.bind().await?;
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
            tasks.push((
                "notifications",
                Box::pin(self.clone().listen_loop(stop.clone())),
            ));
        }
        tasks.push((
            "scheduler",
            Box::pin(self.clone().schedule_loop(stop.clone())),
        ));
        if self.cfg.publish_events {
            tasks.push((
                "publisher",
                Box::pin(self.clone().publish_loop(stop.clone())),
            ));
        }
        if let Some(http) = http {
            tasks.push((
                "http listener",
                Box::pin(self.clone().serve(http, stop.clone())),
            ));
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
            let unpublished =
                self.cfg.publish_events && !self.ledger.outbox_pending(1).await?.is_empty();
            if !unpublished && self.ledger.is_idle().await? {
                info!("No job is waiting or in flight: stopping (--until-idle).");
                stop.cancel();
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fetcher::results_expired;
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

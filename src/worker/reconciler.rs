//! The reconciler: DescribeStatement for statements whose end event never
//! came (events are best effort), on the leader.

use super::*;
use futures_util::StreamExt;

/// How long the reconciler's DescribeStatement waits for a running
/// statement's end (WaitTimeSeconds; the Data API allows up to 30).
const RECONCILE_WAIT_SECS: i32 = 5;
/// How many statements the reconciler describes at once.
const RECONCILE_CONCURRENCY: usize = 4;

impl Worker {
    /// Checks with DescribeStatement the statements that got no end event
    /// in time (and, at start-up, every statement in flight): events can be
    /// lost. It looks at every open attempt, so the statement of a job
    /// cancelled meanwhile is recorded as it truly ended too.
    pub(super) async fn reconcile_loop(
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
            // The sweep at start-up only looks (the events of statements
            // still running are on their way); later sweeps look at
            // statements overdue for their event, and wait for their end.
            let wait = (!first).then_some(RECONCILE_WAIT_SECS);
            first = false;
            match self.ledger.open_attempts_before(cutoff).await {
                Ok(open) => {
                    // Each DescribeStatement of an overdue statement waits
                    // (WaitTimeSeconds) for its end, so one still running is
                    // recorded as it ends, not a period later; a few at once,
                    // paced by the DescribeStatement rate limit.
                    let this = &*self;
                    futures_util::stream::iter(open)
                        .for_each_concurrent(RECONCILE_CONCURRENCY, |(job, _attempt, sid)| {
                            let stop = &stop;
                            async move {
                                tokio::select! {
                                    _ = stop.cancelled() => {}
                                    _ = this.reconcile_one(job, &sid, wait) => {}
                                }
                            }
                        })
                        .await;
                    if stop.is_cancelled() {
                        return Ok(());
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
    pub(super) async fn reconcile_one(&self, job: i64, sid: &str, wait_secs: Option<i32>) {
        let outcome = match self.data_api.describe_waiting(sid, wait_secs).await {
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
                if let Ok(j) = self.ledger.job(job).await {
                    self.job_ended(&j);
                }
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
}

//! The fetcher: every page of a FINISHED job's results into files, one
//! worker per job.

use super::*;
use futures_util::StreamExt;
use std::sync::Mutex;

/// How many jobs' results one worker fetches at once.
const FETCH_CONCURRENCY: usize = 8;

impl Worker {
    pub(super) async fn fetch_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let dir: PathBuf = self.cfg.results_dir.clone();
        let retry_at: Mutex<HashMap<i64, (u32, i64)>> = Mutex::new(HashMap::new());
        let this = &*self;
        loop {
            match self.ledger.pending_fetches().await {
                Ok(jobs) => {
                    let now = self.clock.now_ms();
                    let due = jobs.into_iter().filter(|job| {
                        lock(&retry_at)
                            .get(&job.id)
                            .is_none_or(|(_, at)| *at <= now)
                    });
                    // Several results at once (each job's pages in order);
                    // the GetStatementResult rate limit paces the pages.
                    futures_util::stream::iter(due)
                        .for_each_concurrent(FETCH_CONCURRENCY, |job| {
                            let (dir, retry_at, stop) = (&dir, &retry_at, &stop);
                            async move {
                                if stop.is_cancelled() {
                                    return;
                                }
                                // One worker fetches a job's results.
                                match this.ledger.claim_fetch(job.id, &this.info.id).await {
                                    Ok(true) => this.fetch_one(&job, dir, retry_at).await,
                                    Ok(false) => {}
                                    Err(e) => {
                                        warn!(job = job.id, error = %e, "Cannot take the fetching of results.")
                                    }
                                }
                            }
                        })
                        .await;
                    if stop.is_cancelled() {
                        return Ok(());
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

    pub(super) async fn fetch_one(
        &self,
        job: &crate::ledger::Job,
        dir: &std::path::Path,
        retry_at: &Mutex<HashMap<i64, (u32, i64)>>,
    ) {
        let started = std::time::Instant::now();
        let recorded = match results::fetch_job(&self.data_api, job, dir, self.cfg.result_formats)
            .await
        {
            Ok(fetched) => {
                self.metrics
                    .fetch_time
                    .observe(started.elapsed().as_secs_f64());
                let files = &fetched.files;
                let rows: i64 = files.iter().map(|f| f.rows).sum();
                let path = (!files.is_empty())
                    .then(|| results::job_dir(dir, job.id).display().to_string());
                info!(job = job.id, files = files.len(), rows, "Results fetched.");
                self.ledger
                    .record_results(
                        job.id,
                        files,
                        path.as_deref(),
                        fetched.first_row.as_ref(),
                        self.clock.now_ms(),
                    )
                    .await
            }
            // Refused once the results' expiry time has passed: expired (the
            // event's expireAt, or 24 h after the end when no event said).
            Err(FetchError::Rejected(m))
                if results_expired(job.expire_at, job.finished_at, self.clock.now_ms()) =>
            {
                warn!(job = job.id, error = %m, "Results expired before they could be fetched.");
                self.ledger
                    .record_result_error(job.id, true, &m, self.clock.now_ms())
                    .await
            }
            Err(FetchError::Rejected(m)) => {
                warn!(job = job.id, error = %m, "Results cannot be fetched.");
                self.ledger
                    .record_result_error(job.id, false, &m, self.clock.now_ms())
                    .await
            }
            Err(e) => {
                let mut retry_at = lock(retry_at);
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
        lock(retry_at).remove(&job.id);
        if let Err(e) = recorded {
            error!(job = job.id, error = %e, "Cannot record the results.");
        }
    }
}

/// Whether a FINISHED job's results are past their expiry: the event's
/// `expireAt`, or the Data API's 24 hours after the end.
pub(super) fn results_expired(expire_at: Option<i64>, finished_at: Option<i64>, now: i64) -> bool {
    const RESULTS_KEPT_MS: i64 = 24 * 3600 * 1000;
    let expire_at = expire_at.or_else(|| finished_at.map(|t| t + RESULTS_KEPT_MS));
    expire_at.is_some_and(|at| now >= at)
}

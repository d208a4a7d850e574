//! Retention: old inbox rows and the result files of ended jobs, on the
//! leader every hour, or `redrelay ledger prune`.

use super::*;

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
    // Off the async runtime: deleting many files blocks.
    let files = pruned.files.clone();
    let deleted = tokio::task::spawn_blocking(move || delete_files(&files))
        .await
        .unwrap_or(0);
    Ok(PruneReport {
        events: pruned.events,
        jobs: pruned.jobs,
        files_deleted: deleted,
    })
}

/// Deletes result files (folders last, as listed); a file already gone is
/// fine. How many were deleted.
fn delete_files(paths: &[String]) -> u64 {
    let mut deleted = 0;
    for path in paths {
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
    deleted
}

impl Worker {
    /// Applies `retention_days` every hour (and at start).
    pub(super) async fn retention_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let keep = Duration::from_secs(self.cfg.retention_days * 86_400);
        loop {
            if !self.is_leader() {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RENEW_EVERY) => continue,
                }
            }
            let now = self.clock.now_ms();
            if !self.cfg.publish_events {
                // Own events are written whatever `publish_events` says; a
                // fleet that does not publish them keeps them as long as
                // the rest of the history.
                let cutoff =
                    now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
                if let Err(e) = self.ledger.prune_unpublished(cutoff).await {
                    error!(error = %e, "Retention: cannot prune unpublished own events.");
                }
            }
            match prune(&self.ledger, keep, now).await {
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

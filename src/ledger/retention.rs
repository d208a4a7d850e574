//! Retention: what is older than the cutoff and no longer needed.

use super::driver::query;
use super::*;

impl Ledger {
    /// Removes what is older than `cutoff` (epoch ms): inbox rows received
    /// before it (raw bodies), except an event deferred for a job that has
    /// not ended; and the result rows of jobs that ended before it, whose
    /// files the caller then deletes (returned). A job that has not ended
    /// keeps everything. The jobs themselves stay, with `results_pruned_at`.
    pub async fn prune(&self, cutoff: i64, now: i64) -> Result<Pruned> {
        let mut tx = self.begin().await?;
        let events = query(
            "DELETE FROM events WHERE received_at < $1 AND NOT (disposition = 'deferred' \
                   AND job_id IN (SELECT id FROM jobs WHERE finished_at IS NULL))",
        )
        .bind(cutoff)
        .execute(&mut tx)
        .await?;
        // The state changes the event stream reads.
        query("DELETE FROM changes WHERE at < $1")
            .bind(cutoff)
            .execute(&mut tx)
            .await?;
        // Published own events (unpublished ones wait for the publisher).
        query("DELETE FROM outbox WHERE created_at < $1 AND published_at IS NOT NULL")
            .bind(cutoff)
            .execute(&mut tx)
            .await?;
        let jobs: Vec<(i64, Option<String>)> = query(
            "SELECT id, result_path FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1 \
                 AND results_pruned_at IS NULL AND result_state = 'FETCHED' ORDER BY id",
        )
        .bind(cutoff)
        .fetch_all(&mut tx)
        .await?;
        let mut files = Vec::new();
        for (id, dir) in &jobs {
            let rows: Vec<(String, String)> =
                query("SELECT csv_path, jsonl_path FROM results WHERE job_id = $1")
                    .bind(id)
                    .fetch_all(&mut tx)
                    .await?;
            // An empty path: that format was not kept (result_formats).
            files.extend(
                rows.into_iter()
                    .flat_map(|(csv, jsonl)| [csv, jsonl])
                    .filter(|p| !p.is_empty()),
            );
            files.extend(dir.clone());
            query("DELETE FROM results WHERE job_id = $1")
                .bind(id)
                .execute(&mut tx)
                .await?;
            query(
                "UPDATE jobs SET results_pruned_at = $1 WHERE id = $2 AND finished_at IS NOT NULL",
            )
            .binds((now, id))
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Pruned {
            events,
            jobs: jobs.len() as u64,
            files,
        })
    }

    /// Removes own events older than `cutoff` that were never published
    /// (a fleet with `publish_events = false`). How many.
    pub async fn prune_unpublished(&self, cutoff: i64) -> Result<u64> {
        query("DELETE FROM outbox WHERE created_at < $1 AND published_at IS NULL")
            .bind(cutoff)
            .execute(&self.pool)
            .await
    }
}

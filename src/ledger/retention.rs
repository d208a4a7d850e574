//! Retention: what is older than the cutoff and no longer needed, deleted
//! in batches of [`BATCH`] rows, each its own short transaction, so that
//! events and claims never wait behind a long delete (on SQLite a
//! transaction holds the one write lock).

use super::driver::query;
use super::*;

/// Rows (or jobs' results) deleted per transaction.
pub const BATCH: i64 = 500;

impl Ledger {
    /// Removes what is older than `cutoff` (epoch ms): inbox rows received
    /// before it (raw bodies), except an event deferred for a job that has
    /// not ended; state changes; ended events of triggers; published own
    /// events; and the result rows
    /// of jobs that ended before it, whose files the caller then deletes
    /// (returned). A job that has not ended keeps everything. The jobs
    /// themselves stay, with `results_pruned_at`.
    pub async fn prune(&self, cutoff: i64, now: i64) -> Result<Pruned> {
        let events = self
            .delete_in_batches(
                "events",
                "seq",
                "received_at < $1 AND NOT (disposition = 'deferred' \
                 AND job_id IN (SELECT id FROM jobs WHERE finished_at IS NULL))",
                cutoff,
            )
            .await?;
        // The state changes the event stream reads.
        self.delete_in_batches("changes", "seq", "at < $1", cutoff)
            .await?;
        // Events triggers took (their bodies), once ended: a waiting one
        // stays. Past the queue's retention (14 days at most) no copy of
        // them can come back for the dedupe to catch.
        self.delete_in_batches(
            "trigger_events",
            "seq",
            "received_at < $1 AND state <> 'WAITING'",
            cutoff,
        )
        .await?;
        // Published own events (unpublished ones wait for the publisher).
        self.delete_in_batches(
            "outbox",
            "seq",
            "created_at < $1 AND published_at IS NOT NULL",
            cutoff,
        )
        .await?;
        let mut files = Vec::new();
        let mut jobs = 0;
        loop {
            let mut tx = self.begin().await?;
            let batch: Vec<(i64, Option<String>)> = query(
                "SELECT id, result_path FROM jobs WHERE finished_at IS NOT NULL \
                 AND finished_at < $1 AND results_pruned_at IS NULL \
                 AND result_state = 'FETCHED' ORDER BY id LIMIT $2",
            )
            .binds((cutoff, BATCH))
            .fetch_all(&mut tx)
            .await?;
            if batch.is_empty() {
                break;
            }
            for (id, dir) in &batch {
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
                    "UPDATE jobs SET results_pruned_at = $1 \
                     WHERE id = $2 AND finished_at IS NOT NULL",
                )
                .binds((now, id))
                .execute(&mut tx)
                .await?;
            }
            tx.commit().await?;
            jobs += batch.len() as u64;
        }
        Ok(Pruned {
            events,
            jobs,
            files,
        })
    }

    /// Removes own events older than `cutoff` that were never published
    /// (a fleet with `publish_events = false`). How many.
    pub async fn prune_unpublished(&self, cutoff: i64) -> Result<u64> {
        self.delete_in_batches(
            "outbox",
            "seq",
            "created_at < $1 AND published_at IS NULL",
            cutoff,
        )
        .await
    }

    /// Deletes the rows of `table` (keyed by `key`) matching `filter` ($1:
    /// `cutoff`), [`BATCH`] per transaction. How many.
    async fn delete_in_batches(
        &self,
        table: &str,
        key: &str,
        filter: &str,
        cutoff: i64,
    ) -> Result<u64> {
        let sql = format!(
            "DELETE FROM {table} WHERE {key} IN \
             (SELECT {key} FROM {table} WHERE {filter} ORDER BY {key} LIMIT $2)"
        );
        let mut total = 0;
        loop {
            let n = query(sql.as_str())
                .binds((cutoff, BATCH))
                .execute(&self.pool)
                .await?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

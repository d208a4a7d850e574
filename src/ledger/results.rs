//! Result files: which FINISHED jobs wait for a fetch, which worker
//! fetches them, and what the fetch recorded.

use super::driver::query;
use super::job_row::JOB_COLUMNS;
use super::outbox::job_event;
use super::*;
use crate::state::ResultState;

impl Ledger {
    pub async fn results(&self, id: i64) -> Result<Vec<ResultFile>> {
        query(
            "SELECT sub, statement_id, rows, csv_path, jsonl_path FROM results \
                 WHERE job_id = $1 ORDER BY sub",
        )
        .bind(id)
        .fetch_all::<ResultFile>(&self.pool)
        .await
    }

    /// FINISHED jobs whose results are still to be fetched.
    pub async fn pending_fetches(&self) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'FINISHED' AND result_state = 'PENDING' \
                 ORDER BY finished_at, id"
        );
        query(sql).fetch_all::<Job>(&self.pool).await
    }

    /// Takes the fetching of a FINISHED job's results for `claimant`:
    /// false when another live worker is fetching them.
    pub async fn claim_fetch(&self, job_id: i64, claimant: &str) -> Result<bool> {
        let held = if self.pool.dialect().claims_held {
            format!(
                "AND (fetch_by IS NULL OR fetch_by = $1 OR NOT EXISTS (SELECT 1 FROM workers w \
                     WHERE w.id = jobs.fetch_by AND w.heartbeat_at >= {} - {}))",
                self.pool.dialect().now_ms,
                crate::ledger::LIVE_MS
            )
        } else {
            String::new()
        };
        let sql = format!(
            "UPDATE jobs SET fetch_by = $1 \
                 WHERE id = $2 AND state = 'FINISHED' AND result_state = 'PENDING' {held}"
        );
        Ok(query(sql)
            .binds((claimant, job_id))
            .execute(&self.pool)
            .await?
            == 1)
    }

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
        let changed = query(
                "UPDATE jobs SET result_state = $1, result_rows = $2, result_path = $3, first_row = $4 \
                 WHERE id = $5 AND state = 'FINISHED' AND result_state = 'PENDING'",
            )
            .binds((state, if files.is_empty() { None } else { Some(total) }, dir, first_row, job_id))
            .execute(&mut tx)
            .await?;
        if changed != 1 {
            return Err(conflict(job_id, "not awaiting results", "FINISHED/PENDING"));
        }
        query("DELETE FROM results WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut tx)
            .await?;
        for f in files {
            query(
                "INSERT INTO results (job_id, sub, statement_id, rows, csv_path, jsonl_path) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .binds((
                job_id,
                f.sub,
                &f.statement_id,
                f.rows,
                &f.csv_path,
                &f.jsonl_path,
            ))
            .execute(&mut tx)
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
        let changed = query(
            "UPDATE jobs SET result_state = $1, result_error = $2 \
                 WHERE id = $3 AND state = 'FINISHED' AND result_state = 'PENDING'",
        )
        .bind(if expired {
            ResultState::Expired
        } else {
            ResultState::Error
        })
        .binds((error, job_id))
        .execute(&mut tx)
        .await?;
        if changed != 1 {
            return Err(conflict(job_id, "not awaiting results", "FINISHED/PENDING"));
        }
        job_event(&mut tx, job_id, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

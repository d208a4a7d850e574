//! The change stream: every state change of a job or a run, written by
//! triggers in the transaction of the change (migrations), read in
//! sequence order by the API's event stream.

use super::driver::query;
use super::*;

impl Ledger {
    /// State changes with a sequence number above `after`, oldest first
    /// (of one run's jobs and the run, when `run` is given).
    pub async fn changes(&self, after: i64, run: Option<&str>, limit: i64) -> Result<Vec<Change>> {
        query(
                "SELECT c.seq, c.kind, c.job_id, c.run_id, c.state, c.attempt, c.result_state, c.at, j.name \
                 FROM changes c LEFT JOIN jobs j ON j.id = c.job_id \
                 WHERE c.seq > $1 AND ($2 IS NULL OR c.run_id = $2) ORDER BY c.seq LIMIT $3",
            )
            .binds((after, run, limit))
            .fetch_all::<Change>(&self.pool)
            .await
    }

    /// The latest change's sequence number (0: none).
    pub async fn last_change(&self) -> Result<i64> {
        let n: Option<i64> = query("SELECT MAX(seq) FROM changes")
            .scalar(&self.pool)
            .await?;
        Ok(n.unwrap_or(0))
    }
}

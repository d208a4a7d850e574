//! The change stream: every state change of a job or a run, written by
//! triggers in the transaction of the change (migrations), read by the
//! API's event stream in commit order and never skipping a committed row:
//! rows are delivered only once every transaction that could still commit
//! before them has ended (PostgreSQL: by transaction id under the
//! snapshot's xmin; SQLite: one writer at a time, sequence order).

use super::driver::query;
use super::*;

impl Ledger {
    /// The changes after the change with sequence number `after` (0: from
    /// the start), in the stream's order, that can be delivered now (of one
    /// run's jobs and the run, when `run` is given). A cursor that goes on
    /// from the last row returned sees every committed change once.
    pub async fn changes(&self, after: i64, run: Option<&str>, limit: i64) -> Result<Vec<Change>> {
        let d = self.pool.dialect();
        query(format!(
            "SELECT c.seq, c.kind, c.job_id, c.run_id, c.state, c.attempt, c.result_state, c.at, \
             j.name FROM changes c LEFT JOIN jobs j ON j.id = c.job_id \
             WHERE {after} AND {settled} AND ($2 IS NULL OR c.run_id = $2) \
             ORDER BY {order} LIMIT $3",
            after = d.change_after,
            settled = d.change_settled,
            order = d.change_order,
        ))
        .binds((after, run, limit))
        .fetch_all::<Change>(&self.pool)
        .await
    }

    /// Where a new stream starts: the last change that can be delivered
    /// now, in the stream's order (0: none).
    pub async fn last_change(&self) -> Result<i64> {
        let d = self.pool.dialect();
        let n: Option<i64> = query(format!(
            "SELECT c.seq FROM changes c WHERE {settled} ORDER BY {order} LIMIT 1",
            settled = d.change_settled,
            order = d.change_order_desc,
        ))
        .scalar_optional(&self.pool)
        .await?;
        Ok(n.unwrap_or(0))
    }
}

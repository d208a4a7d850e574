//! A job's row: the columns a [`Job`] is read from, and the read inside a
//! transaction that every concern which changes a job starts from.

use super::driver::{query, Tx};
use super::{Job, LedgerError, Result};

/// The columns a [`Job`] is read from.
pub(super) const JOB_COLUMNS: &str =
    "id, uid, run_id, name, sqls, params, workgroup, cluster, database, \
     db_user, secret_arn, state, attempt, max_attempts, retry, not_before, timeout_secs, \
     statement_id, rows, error, result_state, result_rows, result_path, result_error, \
     created_at, ready_at, submitted_at, finished_at, timed_out_at, expire_at, results_pruned_at, \
     has_result_set, execution_mode, result_formats, session_keep_alive_secs";

pub(super) async fn job_tx(tx: &mut Tx, id: i64) -> Result<Job> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
    query(sql)
        .bind(id)
        .fetch_optional::<Job>(&mut *tx)
        .await?
        .ok_or(LedgerError::NoSuchJob(id))
}

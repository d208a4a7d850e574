//! The outbox: redrelay's own events ("Job State Change", "Run State
//! Change") written in the transaction of the change they describe,
//! whichever process makes it (a worker, another worker, the CLI), one per
//! end of a job or a run. `publish_events` decides only whether the leader
//! sends them to EventBridge.

use super::driver::{query, Tx};
use super::*;
use crate::ledger::names::new_uid;
use crate::state::JobState;

impl Ledger {
    pub async fn outbox_pending(&self, limit: i64) -> Result<Vec<(i64, String, String, String)>> {
        query(
            "SELECT seq, event_id, detail_type, detail FROM outbox WHERE published_at IS NULL \
             AND refused_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Marks outbox rows published.
    pub async fn outbox_published(&self, seqs: &[i64], now: i64) -> Result<()> {
        self.update_outbox(
            "UPDATE outbox SET published_at = $1 WHERE seq = $2 AND published_at IS NULL",
            now,
            seqs,
        )
        .await
    }

    /// Records a failed publication of outbox rows.
    pub async fn outbox_failed(&self, seqs: &[i64], error: &str) -> Result<()> {
        self.update_outbox(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE seq = $2",
            error,
            seqs,
        )
        .await
    }

    /// Sets aside own events EventBridge refused for good (`why`): kept
    /// with the reason, never sent again, never in front of the others.
    pub async fn outbox_refused(&self, seqs: &[i64], why: &str, now: i64) -> Result<()> {
        let sql = format!(
            "UPDATE outbox SET attempts = attempts + 1, refused_at = {now}, last_error = $1 \
             WHERE seq = $2"
        );
        self.update_outbox(&sql, why, seqs).await
    }

    /// Runs `sql` ($1: `value`, $2: a row's seq) for each of `seqs`, in
    /// one transaction.
    async fn update_outbox<'a>(
        &self,
        sql: &str,
        value: impl super::driver::Arg<'a> + Copy + 'a,
        seqs: &[i64],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        for seq in seqs {
            query(sql).binds((value, *seq)).execute(&mut tx).await?;
        }
        tx.commit().await
    }
}

/// Records a "Job State Change" for a job that ended, in the caller's
/// transaction (the outbox the leader publishes from).
pub(super) async fn job_event(tx: &mut Tx, job_id: i64, now: i64) -> Result<()> {
    // One read of what the event says (not the whole job: its SQL and
    // parameters stay put), on every job's end, in the hot path.
    let end: JobEnd = query(
        "SELECT j.id, j.name, j.run_id, r.pipeline, j.state, j.attempt, j.statement_id, \
         COALESCE(j.result_rows, j.rows) AS rows, j.result_state, j.result_path, j.error, \
         j.created_at, j.submitted_at, j.finished_at \
         FROM jobs j LEFT JOIN runs r ON r.id = j.run_id WHERE j.id = $1",
    )
    .bind(job_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(LedgerError::NoSuchJob(job_id))?;
    let detail = serde_json::json!({
        "job_id": end.id,
        "job_name": end.name,
        "run_id": end.run_id,
        "pipeline": end.pipeline,
        "state": end.state,
        "attempt": end.attempt,
        "statement_id": end.statement_id,
        "rows": end.rows,
        "result_state": end.result_state,
        "result_location": end.result_path,
        "error": end.error,
        "created_at": end.created_at,
        "submitted_at": end.submitted_at,
        "finished_at": end.finished_at,
    });
    outbox_insert(tx, "Job State Change", detail, now).await
}

/// What a "Job State Change" says of a job.
#[derive(sqlx::FromRow)]
struct JobEnd {
    id: i64,
    name: String,
    run_id: Option<String>,
    pipeline: Option<String>,
    state: JobState,
    attempt: i64,
    statement_id: Option<String>,
    rows: Option<i64>,
    result_state: Option<crate::state::ResultState>,
    result_path: Option<String>,
    error: Option<String>,
    created_at: i64,
    submitted_at: Option<i64>,
    finished_at: Option<i64>,
}

/// Records a "Run State Change" for a run that ended.
pub(super) async fn run_event(tx: &mut Tx, run: &str, now: i64) -> Result<()> {
    let r: Option<Run> =
        query("SELECT id, pipeline, state, created_at, finished_at FROM runs WHERE id = $1")
            .bind(run)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(r) = r else { return Ok(()) };
    let counts: Vec<(JobState, i64)> =
        query("SELECT state, COUNT(*) FROM jobs WHERE run_id = $1 GROUP BY state")
            .bind(run)
            .fetch_all(&mut *tx)
            .await?;
    let jobs: serde_json::Map<String, serde_json::Value> = counts
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), serde_json::Value::from(n)))
        .collect();
    let detail = serde_json::json!({
        "run_id": r.id,
        "pipeline": r.pipeline,
        "state": r.state,
        "jobs": jobs,
        "created_at": r.created_at,
        "finished_at": r.finished_at,
    });
    outbox_insert(tx, "Run State Change", detail, now).await
}

/// Records an own event: `detail` gets its `event_id` (for dedupe
/// downstream) and is cut to fit ([`MAX_DETAIL_BYTES`]).
pub(super) async fn outbox_insert(
    tx: &mut Tx,
    detail_type: &str,
    mut detail: serde_json::Value,
    now: i64,
) -> Result<()> {
    let event_id = new_uid();
    if let serde_json::Value::Object(m) = &mut detail {
        m.insert(
            "event_id".into(),
            serde_json::Value::from(event_id.as_str()),
        );
    }
    let detail = fit(detail, MAX_DETAIL_BYTES).to_string();
    query("INSERT INTO outbox (event_id, detail_type, detail, created_at) VALUES ($1, $2, $3, $4)")
        .binds((event_id, detail_type, detail, now))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The largest detail an own event keeps (PutEvents takes 256 KB per call,
/// source and detail type included).
pub const MAX_DETAIL_BYTES: usize = 200_000;

/// `detail` cut to at most `max` bytes as JSON: its longest text values
/// (a job's name or error may be huge) shortened, and `"truncated": true`
/// added, so that the bus takes it and a consumer knows.
fn fit(mut detail: serde_json::Value, max: usize) -> serde_json::Value {
    let mut keep = 4096;
    while detail.to_string().len() > max && keep > 0 {
        if let serde_json::Value::Object(m) = &mut detail {
            for v in m.values_mut() {
                if let serde_json::Value::String(s) = v {
                    if s.len() > keep {
                        let mut end = keep;
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        s.truncate(end);
                        s.push('…');
                    }
                }
            }
            m.insert("truncated".into(), serde_json::Value::Bool(true));
        }
        keep /= 2;
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_name_is_cut_to_fit_and_marked() {
        let name = "n".repeat(300_000);
        let d = serde_json::json!({"job_name": name, "state": "FINISHED", "job_id": 7});
        let cut = fit(d, MAX_DETAIL_BYTES);
        assert!(cut.to_string().len() <= MAX_DETAIL_BYTES);
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["state"], "FINISHED");
        assert_eq!(cut["job_id"], 7);
        let small = serde_json::json!({"job_name": "a"});
        assert_eq!(fit(small.clone(), MAX_DETAIL_BYTES), small);
    }
}

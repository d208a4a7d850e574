//! The inbox: Redshift's status change events received, each recorded
//! once (unique event id) in the transaction that applies it to its job;
//! events that came before their statement id are deferred, others are
//! foreign or quarantined. The reconciler's outcomes (DescribeStatement)
//! go through the same transition.

use super::driver::{query, Tx};
use super::job_row::job_tx;
use super::transitions::{end_attempt, finish_attempt_row};
use super::*;
use crate::event::{StatementState, StatusEvent};
use crate::ledger::names::parse_statement_name;
use crate::state::{AttemptState, JobState, Outcome};

/// An event as received: the parsed event, the statement's error text
/// (DescribeStatement's, for a FAILED or ABORTED event), the SQS message
/// id, and the body as it came.
pub type Received<'a> = (&'a StatusEvent, Option<&'a str>, Option<&'a str>, &'a str);

impl Ledger {
    /// The inbox's latest rows (Redshift's events received), newest first.
    pub async fn inbox(&self, limit: i64) -> Result<Vec<InboxRow>> {
        query(
            "SELECT seq, event_id, message_id, received_at, statement_id, state, job_id, \
                 disposition, reason, body FROM events ORDER BY seq DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all::<InboxRow>(&self.pool)
        .await
    }

    /// Whether a statement id belongs to an attempt of this ledger.
    pub async fn owns_statement(&self, statement_id: &str) -> Result<bool> {
        let n: i64 = query("SELECT COUNT(*) FROM attempts WHERE statement_id = $1")
            .bind(statement_id)
            .scalar(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Whether an event is for a statement of ours: its statement id is
    /// recorded, or (an event that came before the id was recorded) its
    /// StatementName names one of our jobs.
    pub async fn owns_event(&self, ev: &StatusEvent) -> Result<bool> {
        if self.owns_statement(&ev.detail.statement_id).await? {
            return Ok(true);
        }
        let Some(uid) = named_uid(ev) else {
            return Ok(false);
        };
        let n: i64 = query("SELECT COUNT(*) FROM jobs WHERE uid = $1")
            .bind(uid)
            .scalar(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// The inbox's latest rows, newest first, of one disposition or all.
    pub async fn inbox_by(
        &self,
        disposition: Option<Disposition>,
        limit: i64,
    ) -> Result<Vec<InboxRow>> {
        query(
            "SELECT seq, event_id, message_id, received_at, statement_id, state, job_id, \
                 disposition, reason, body FROM events WHERE ($1 IS NULL OR disposition = $1) \
                 ORDER BY seq DESC LIMIT $2",
        )
        .binds((disposition, limit))
        .fetch_all::<InboxRow>(&self.pool)
        .await
    }

    /// Records a consumed status change event and, in the same transaction,
    /// the job's new state and its dependents'.
    /// `error` is the statement's error text from DescribeStatement, for a
    /// FAILED or ABORTED event (the event itself carries none).
    pub async fn apply_event(
        &self,
        ev: &StatusEvent,
        error: Option<&str>,
        message_id: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<(Disposition, Option<i64>)> {
        let mut applied = self
            .apply_events(&[(ev, error, message_id, body)], now)
            .await?;
        applied
            .pop()
            .ok_or_else(|| LedgerError::Corrupt("an event applied without an outcome".into()))
    }

    /// Applies several events in one transaction (an SQS batch), each as
    /// [`Ledger::apply_event`] would; the dispositions in their order.
    pub async fn apply_events(
        &self,
        events: &[Received<'_>],
        now: i64,
    ) -> Result<Vec<(Disposition, Option<i64>)>> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(events.len());
        for received in events {
            out.push(apply_event_tx(&mut tx, received, now).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records a message that is not a valid event of the configured origin.
    /// Recorded once per SQS message id, however often it is received.
    pub async fn quarantine(
        &self,
        message_id: Option<&str>,
        body: &str,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        query(
            "INSERT INTO events (message_id, received_at, disposition, reason, body) \
                 VALUES ($1, $2, 'quarantined', $3, $4) ON CONFLICT DO NOTHING",
        )
        .binds((message_id, now, reason, body))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies an outcome found by DescribeStatement (the reconciler) through
    /// the same transition as an event.
    /// A statement that is no longer the job's current one only closes its
    /// attempt (history); one already closed is a duplicate.
    pub async fn apply_reconciled(
        &self,
        job_id: i64,
        statement_id: &str,
        outcome: &Outcome,
        now: i64,
    ) -> Result<Disposition> {
        let mut tx = self.begin().await?;
        if tx.dialect().row_locks() {
            let lock = format!(
                "SELECT id FROM jobs WHERE id = $1{}",
                tx.dialect().for_update
            );
            let _: Option<i64> = query(lock).bind(job_id).scalar_optional(&mut tx).await?;
        }
        let row: Option<(i64, AttemptState)> =
            query("SELECT attempt, state FROM attempts WHERE job_id = $1 AND statement_id = $2")
                .binds((job_id, statement_id))
                .fetch_optional(&mut tx)
                .await?;
        let Some((attempt, state)) = row else {
            return Ok(Disposition::Foreign);
        };
        if state != AttemptState::Submitted {
            return Ok(Disposition::Duplicate);
        }
        let job = job_tx(&mut tx, job_id).await?;
        let disposition = if job.state == JobState::Submitted && job.attempt == attempt {
            end_attempt(&mut tx, &job, outcome, now).await?;
            Disposition::Applied
        } else {
            finish_attempt_row(&mut tx, job_id, attempt, outcome, now).await?;
            Disposition::Stale
        };
        tx.commit().await?;
        Ok(disposition)
    }
}

/// One event applied inside `tx` (see [`Ledger::apply_event`]).
pub(super) async fn apply_event_tx(
    tx: &mut Tx,
    received: &Received<'_>,
    now: i64,
) -> Result<(Disposition, Option<i64>)> {
    let &(ev, error, message_id, body) = received;
    let sid = &ev.detail.statement_id;
    // The inbox row first: its unique event id is the dedupe across
    // workers (a second worker waits here, then finds it).
    let seq: Option<i64> = query(
        "INSERT INTO events (event_id, message_id, received_at, statement_id, state, \
                 disposition, body) VALUES ($1, $2, $3, $4, $5, 'ignored', $6) \
                 ON CONFLICT DO NOTHING RETURNING seq",
    )
    .binds((
        &ev.event_id,
        message_id,
        now,
        sid,
        ev.detail.state.as_str(),
        body,
    ))
    .scalar_optional(&mut *tx)
    .await?;
    // The job's row next (PostgreSQL): an event and the recording of
    // its statement id, or two events of one statement, take turns,
    // so that none is left deferred or applied twice.
    let uid = ev
        .detail
        .statement_name
        .as_deref()
        .and_then(parse_statement_name)
        .filter(|_| tx.dialect().row_locks());
    if let Some(uid) = uid {
        let sql = format!(
            "SELECT id FROM jobs WHERE uid = $1{}",
            tx.dialect().for_update
        );
        let _: Option<i64> = query(sql).bind(uid).scalar_optional(&mut *tx).await?;
    }
    let Some(seq) = seq else {
        let seen: Option<Disposition> = query("SELECT disposition FROM events WHERE event_id = $1")
            .bind(&ev.event_id)
            .scalar_optional(&mut *tx)
            .await?;
        return Ok(match seen {
            // Still not ours: the same answer, so `on_foreign = "leave"`
            // leaves it again, until SQS moves it to the dead-letter queue.
            Some(Disposition::Foreign) => (Disposition::Foreign, None),
            _ => (Disposition::Duplicate, None),
        });
    };
    let known: Option<i64> = query("SELECT job_id FROM attempts WHERE statement_id = $1")
        .bind(sid)
        .scalar_optional(&mut *tx)
        .await?;
    let (disposition, reason, job_id) = match known {
        Some(job_id) => {
            let (d, r) = apply_to_attempt(tx, ev, error, now).await?;
            (d, r, Some(job_id))
        }
        None => match deferrable_job(tx, ev).await? {
            Some(job_id) => (
                Disposition::Deferred,
                Some("arrived before its statement id was recorded".to_string()),
                Some(job_id),
            ),
            None => (
                Disposition::Foreign,
                Some(format!("statement {sid} is not a job of this ledger")),
                None,
            ),
        },
    };
    // A deferred event keeps its error text for when it is applied.
    let kept_error = (disposition == Disposition::Deferred)
        .then_some(error)
        .flatten();
    query(
        "UPDATE events SET job_id = $1, disposition = $2, reason = $3, error = $5 WHERE seq = $4",
    )
    .binds((job_id, disposition, reason, seq, kept_error))
    .execute(&mut *tx)
    .await?;
    Ok((disposition, job_id))
}

/// An event whose statement id is unknown: if its StatementName names an
/// attempt of ours still being submitted, the job it belongs to.
pub(super) async fn deferrable_job(tx: &mut Tx, ev: &StatusEvent) -> Result<Option<i64>> {
    let Some(uid) = named_uid(ev) else {
        return Ok(None);
    };
    query(
        "SELECT a.job_id FROM attempts a JOIN jobs j ON j.id = a.job_id \
             WHERE j.uid = $1 AND a.attempt = j.attempt AND a.state = 'SUBMITTING'",
    )
    .bind(uid)
    .scalar_optional(&mut *tx)
    .await
}

/// Applies an event to the attempt that owns its statement id.
pub(super) async fn apply_to_attempt(
    tx: &mut Tx,
    ev: &StatusEvent,
    error: Option<&str>,
    now: i64,
) -> Result<(Disposition, Option<String>)> {
    let sid = &ev.detail.statement_id;
    let row: Option<(i64, i64, AttemptState)> =
        query("SELECT job_id, attempt, state FROM attempts WHERE statement_id = $1")
            .bind(sid)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((job_id, attempt, attempt_state)) = row else {
        return Ok((
            Disposition::Foreign,
            Some(format!("statement {sid} is not a job of this ledger")),
        ));
    };
    let outcome = match &ev.detail.state {
        StatementState::Finished => Outcome::Finished {
            rows: ev.detail.rows,
        },
        StatementState::Failed => Outcome::Failed {
            error: error.unwrap_or("statement FAILED").to_string(),
        },
        StatementState::Aborted => Outcome::Aborted {
            error: error.unwrap_or("statement ABORTED").to_string(),
        },
        other => {
            return Ok((
                Disposition::Ignored,
                Some(format!("state {} is not an end state", other.as_str())),
            ))
        }
    };
    if attempt_state != AttemptState::Submitted {
        return Ok((
            Disposition::Duplicate,
            Some(format!(
                "attempt {attempt} already ended as {attempt_state}"
            )),
        ));
    }
    let job = job_tx(tx, job_id).await?;
    if job.attempt != attempt || job.state != JobState::Submitted {
        // History only: the attempt ended, the job has moved on.
        finish_attempt_row(tx, job_id, attempt, &outcome, now).await?;
        return Ok((
            Disposition::Stale,
            Some(format!(
                "attempt {attempt} is not current (job {job_id} is {} on attempt {})",
                job.state, job.attempt
            )),
        ));
    }
    end_attempt(tx, &job, &outcome, now).await?;
    if let (Outcome::Finished { .. }, Some(expire)) = (&outcome, ev.detail.expire_at) {
        query("UPDATE jobs SET expire_at = $1 WHERE id = $2 AND state = 'FINISHED'")
            .binds((expire.saturating_mul(1000), job_id))
            .execute(&mut *tx)
            .await?;
    }
    Ok((Disposition::Applied, None))
}

/// The job uid an event's StatementName names (ours: `redrelay:<name>:<uid>`).
fn named_uid(ev: &StatusEvent) -> Option<&str> {
    ev.detail
        .statement_name
        .as_deref()
        .and_then(parse_statement_name)
}

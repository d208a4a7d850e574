//! Triggers: stored pipeline files started by events. Each event a trigger
//! takes is recorded once per (trigger, dedupe key) in the transaction
//! that creates its run, or records why it waits (the trigger is paused,
//! or as many of its runs as it allows are RUNNING) or was not started
//! (skipped, dropped, or its parameters could not be planned). The
//! trigger's row is locked first, so two workers taking events of one
//! trigger count its active runs in turn.

use super::driver::query;
use super::runs::create_run_tx;
use super::*;

/// What becomes of an event when its trigger has no room for another run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// At most this many RUNNING runs of the trigger (`None`: no limit).
    pub max_active: Option<i64>,
    /// `overlap = "skip"`: an event that finds no room is recorded as
    /// SKIPPED instead of waiting its turn.
    pub skip_when_busy: bool,
    /// `on_pause = "drop"`: an event of a paused trigger is recorded as
    /// DROPPED instead of waiting for the resume.
    pub drop_when_paused: bool,
    /// `batch_window_secs` (in ms): every event waits; the leader starts
    /// one run for the events of each window.
    pub batch_window_ms: Option<i64>,
}

/// One event as a trigger takes it.
#[derive(Debug, Clone, Copy)]
pub struct TakenEvent<'a> {
    pub trigger: &'a str,
    /// Unique per trigger: the event's id, or a digest of the trigger's
    /// `dedupe` values.
    pub dedupe_key: &'a str,
    pub event_id: Option<&'a str>,
    pub body: &'a str,
    /// JSON object of the run's parameters (name -> text).
    pub params: &'a str,
}

/// What taking an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Its run was created.
    Started(String),
    /// It waits: the trigger is paused or has no room now.
    Waiting(String),
    /// Not started, for good (skipped, dropped or failed), and why.
    NotStarted(String),
    /// The same event (or dedupe key) was taken before: (its state, run).
    Duplicate(String, Option<String>),
    /// There is no trigger of that name (any more).
    NoTrigger,
}

impl Ledger {
    /// Adds a trigger, or replaces its definition (a paused one stays
    /// paused; its waiting events keep waiting).
    pub async fn put_trigger(
        &self,
        name: &str,
        text: &str,
        sql_files: &str,
        now: i64,
    ) -> Result<()> {
        query(
            "INSERT INTO triggers (name, text, sql_files, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (name) DO UPDATE SET text = excluded.text, sql_files = excluded.sql_files, \
               updated_at = excluded.updated_at",
        )
        .binds((name, text, sql_files, now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn triggers(&self) -> Result<Vec<TriggerRow>> {
        query(
            "SELECT name, text, sql_files, paused, created_at, updated_at FROM triggers ORDER BY name",
        )
        .fetch_all::<TriggerRow>(&self.pool)
        .await
    }

    /// Pauses or resumes a trigger. Whether it exists.
    pub async fn set_trigger_paused(&self, name: &str, paused: bool, now: i64) -> Result<bool> {
        Ok(
            query("UPDATE triggers SET paused = $1, updated_at = $2 WHERE name = $3")
                .binds((paused, now, name))
                .execute(&self.pool)
                .await?
                == 1,
        )
    }

    /// Removes a trigger; its events that were waiting are DROPPED (its
    /// recorded events and their runs stay). Whether it existed.
    pub async fn remove_trigger(&self, name: &str, now: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let gone = query("DELETE FROM triggers WHERE name = $1")
            .bind(name)
            .execute(&mut tx)
            .await?
            == 1;
        query(
            "UPDATE trigger_events SET state = 'DROPPED', note = $1, started_at = $2 \
             WHERE trigger = $3 AND state = 'WAITING'",
        )
        .binds(("dropped: the trigger was removed", now, name))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// Takes one event of a trigger, once per (trigger, dedupe key): in
    /// one transaction the event is recorded and, when the trigger may
    /// start a run now, its run created (`plan`: the run's pipeline name
    /// and jobs, or why they could not be planned from this event).
    pub async fn take_trigger_event(
        &self,
        ev: TakenEvent<'_>,
        plan: std::result::Result<(&str, &[RunJob]), &str>,
        admission: Admission,
        now: i64,
    ) -> Result<Taken> {
        let mut tx = self.begin().await?;
        let Some(paused) = lock_trigger(&mut tx, ev.trigger).await? else {
            return Ok(Taken::NoTrigger);
        };
        let seq: Option<i64> = query(
            "INSERT INTO trigger_events (trigger, dedupe_key, event_id, body, params, state, received_at) \
             VALUES ($1, $2, $3, $4, $5, 'WAITING', $6) \
             ON CONFLICT (trigger, dedupe_key) DO NOTHING RETURNING seq",
        )
        .binds((ev.trigger, ev.dedupe_key, ev.event_id, ev.body, ev.params, now))
        .scalar_optional(&mut tx)
        .await?;
        let Some(seq) = seq else {
            let (state, run): (String, Option<String>) = query(
                "SELECT state, run_id FROM trigger_events WHERE trigger = $1 AND dedupe_key = $2",
            )
            .binds((ev.trigger, ev.dedupe_key))
            .fetch_one(&mut tx)
            .await?;
            return Ok(Taken::Duplicate(state, run));
        };
        let (pipeline, jobs) = match plan {
            Ok(p) => p,
            Err(why) => {
                let note = format!("failed: {why}");
                end_event(&mut tx, seq, "FAILED", &note, now).await?;
                tx.commit().await?;
                return Ok(Taken::NotStarted(note));
            }
        };
        let taken = if paused {
            if admission.drop_when_paused {
                let note = "dropped: the trigger was paused (on_pause = \"drop\")".to_string();
                end_event(&mut tx, seq, "DROPPED", &note, now).await?;
                Taken::NotStarted(note)
            } else {
                let note = "waiting: the trigger is paused; it starts on resume".to_string();
                note_event(&mut tx, seq, &note).await?;
                Taken::Waiting(note)
            }
        } else if let Some(ms) = admission.batch_window_ms {
            let note = format!(
                "waiting: batched with the events of {} s",
                ms as f64 / 1000.0
            );
            note_event(&mut tx, seq, &note).await?;
            Taken::Waiting(note)
        } else {
            match room(&mut tx, ev.trigger, seq, admission).await? {
                None => Taken::Started(start(&mut tx, seq, pipeline, jobs, now).await?),
                Some(busy) if admission.skip_when_busy => {
                    let note = format!("skipped: {busy} (overlap = \"skip\")");
                    end_event(&mut tx, seq, "SKIPPED", &note, now).await?;
                    Taken::NotStarted(note)
                }
                Some(busy) => {
                    let note = format!("waiting: {busy}");
                    note_event(&mut tx, seq, &note).await?;
                    Taken::Waiting(note)
                }
            }
        };
        tx.commit().await?;
        Ok(taken)
    }

    /// The oldest WAITING event of each trigger that is not paused.
    pub async fn next_waiting_trigger_events(&self) -> Result<Vec<TriggerEventRow>> {
        query(format!(
            "SELECT {TRIGGER_EVENT_COLUMNS} FROM trigger_events e \
             WHERE e.state = 'WAITING' AND e.seq IN (SELECT MIN(w.seq) FROM trigger_events w \
               JOIN triggers t ON t.name = w.trigger AND NOT t.paused \
               WHERE w.state = 'WAITING' GROUP BY w.trigger) ORDER BY e.seq"
        ))
        .fetch_all::<TriggerEventRow>(&self.pool)
        .await
    }

    /// Starts a WAITING event's run when its trigger (not paused) has room
    /// and no older event waits. Returns the run, or `None` when it must
    /// wait on (or was taken by another worker, or its trigger is gone).
    pub async fn start_waiting_trigger_event(
        &self,
        seq: i64,
        plan: std::result::Result<(&str, &[RunJob]), &str>,
        admission: Admission,
        now: i64,
    ) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let trigger: Option<String> =
            query("SELECT trigger FROM trigger_events WHERE seq = $1 AND state = 'WAITING'")
                .bind(seq)
                .scalar_optional(&mut tx)
                .await?;
        let Some(trigger) = trigger else {
            return Ok(None);
        };
        match lock_trigger(&mut tx, &trigger).await? {
            Some(false) => {}
            _ => return Ok(None),
        }
        // Still waiting once the trigger is ours (another worker may have
        // started it meanwhile).
        let still: Option<i64> =
            query("SELECT seq FROM trigger_events WHERE seq = $1 AND state = 'WAITING'")
                .bind(seq)
                .scalar_optional(&mut tx)
                .await?;
        if still.is_none() {
            return Ok(None);
        }
        let (pipeline, jobs) = match plan {
            Ok(p) => p,
            Err(why) => {
                end_event(&mut tx, seq, "FAILED", &format!("failed: {why}"), now).await?;
                tx.commit().await?;
                return Ok(None);
            }
        };
        if room(&mut tx, &trigger, seq, admission).await?.is_some() {
            return Ok(None);
        }
        let run = start(&mut tx, seq, pipeline, jobs, now).await?;
        tx.commit().await?;
        Ok(Some(run))
    }

    /// The WAITING events of `trigger` received from `from` to `until`
    /// (ms), oldest first: one batch.
    pub async fn waiting_trigger_batch(
        &self,
        trigger: &str,
        from: i64,
        until: i64,
    ) -> Result<Vec<TriggerEventRow>> {
        query(format!(
            "SELECT {TRIGGER_EVENT_COLUMNS} FROM trigger_events e \
             WHERE e.trigger = $1 AND e.state = 'WAITING' AND e.received_at >= $2 \
             AND e.received_at < $3 ORDER BY e.seq"
        ))
        .binds((trigger, from, until))
        .fetch_all::<TriggerEventRow>(&self.pool)
        .await
    }

    /// Starts one run for a batch of WAITING events (`seqs`, oldest
    /// first) when their trigger (not paused) has room: every one of them
    /// STARTED with that run. `None` when it must wait on, or another
    /// worker took some of them meanwhile.
    pub async fn start_trigger_batch(
        &self,
        trigger: &str,
        seqs: &[i64],
        plan: std::result::Result<(&str, &[RunJob]), &str>,
        admission: Admission,
        now: i64,
    ) -> Result<Option<String>> {
        let Some(&first) = seqs.first() else {
            return Ok(None);
        };
        let mut tx = self.begin().await?;
        match lock_trigger(&mut tx, trigger).await? {
            Some(false) => {}
            _ => return Ok(None),
        }
        for seq in seqs {
            let still: Option<i64> = query(
                "SELECT seq FROM trigger_events WHERE seq = $1 AND trigger = $2 AND state = 'WAITING'",
            )
            .binds((*seq, trigger))
            .scalar_optional(&mut tx)
            .await?;
            if still.is_none() {
                return Ok(None);
            }
        }
        let (pipeline, jobs) = match plan {
            Ok(p) => p,
            Err(why) => {
                for seq in seqs {
                    end_event(&mut tx, *seq, "FAILED", &format!("failed: {why}"), now).await?;
                }
                tx.commit().await?;
                return Ok(None);
            }
        };
        if room(&mut tx, trigger, first, admission).await?.is_some() {
            return Ok(None);
        }
        let run = start(&mut tx, first, pipeline, jobs, now).await?;
        for seq in &seqs[1..] {
            query(
                "UPDATE trigger_events SET state = 'STARTED', run_id = $1, note = $2, started_at = $3 \
                 WHERE seq = $4",
            )
            .binds((&run, format!("batched with event {first}"), now, *seq))
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(run))
    }

    /// The events of a trigger (or of all), newest first.
    pub async fn trigger_events(
        &self,
        trigger: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TriggerEventRow>> {
        query(format!(
            "SELECT {TRIGGER_EVENT_COLUMNS} FROM trigger_events e \
             WHERE ($1 IS NULL OR e.trigger = $1) ORDER BY e.seq DESC LIMIT $2"
        ))
        .binds((trigger, limit))
        .fetch_all::<TriggerEventRow>(&self.pool)
        .await
    }

    /// How many of a trigger's events are in each state.
    pub async fn trigger_event_counts(&self, trigger: &str) -> Result<Vec<(String, i64)>> {
        query(
            "SELECT state, COUNT(*) FROM trigger_events WHERE trigger = $1 GROUP BY state ORDER BY state",
        )
        .bind(trigger)
        .fetch_all(&self.pool)
        .await
    }

    /// The event that started a run, if a trigger started it (the first
    /// of a batch).
    pub async fn trigger_event_of_run(&self, run: &str) -> Result<Option<TriggerEventRow>> {
        query(format!(
            "SELECT {TRIGGER_EVENT_COLUMNS} FROM trigger_events e WHERE e.run_id = $1 \
             ORDER BY e.seq LIMIT 1"
        ))
        .bind(run)
        .fetch_optional::<TriggerEventRow>(&self.pool)
        .await
    }
}

const TRIGGER_EVENT_COLUMNS: &str =
    "e.seq, e.trigger, e.dedupe_key, e.event_id, e.body, e.params, \
     e.state, e.run_id, e.note, e.received_at, e.started_at";

/// Locks the trigger's row: whether it is paused (`None`: no such trigger).
async fn lock_trigger(tx: &mut Tx, name: &str) -> Result<Option<bool>> {
    let sql = format!(
        "SELECT paused FROM triggers WHERE name = $1{}",
        tx.dialect().for_update
    );
    query(sql).bind(name).scalar_optional(tx).await
}

/// Why the trigger has no room for event `seq`'s run now, if it has none:
/// as many runs RUNNING as it allows, or an older event waiting first.
async fn room(tx: &mut Tx, trigger: &str, seq: i64, a: Admission) -> Result<Option<String>> {
    let Some(max) = a.max_active else {
        return Ok(None);
    };
    let active: i64 = query(
        "SELECT COUNT(*) FROM trigger_events e JOIN runs r ON r.id = e.run_id \
         WHERE e.trigger = $1 AND e.state = 'STARTED' AND r.state = 'RUNNING'",
    )
    .bind(trigger)
    .scalar(&mut *tx)
    .await?;
    if active >= max {
        return Ok(Some(format!(
            "{active} runs of the trigger are RUNNING (max_active_runs = {max})"
        )));
    }
    if !a.skip_when_busy {
        let older: Option<i64> = query(
            "SELECT seq FROM trigger_events WHERE trigger = $1 AND state = 'WAITING' AND seq < $2 \
             ORDER BY seq LIMIT 1",
        )
        .binds((trigger, seq))
        .scalar_optional(&mut *tx)
        .await?;
        if let Some(o) = older {
            return Ok(Some(format!("event {o} of the trigger waits first")));
        }
    }
    Ok(None)
}

async fn start(tx: &mut Tx, seq: i64, pipeline: &str, jobs: &[RunJob], now: i64) -> Result<String> {
    let (run, _) = create_run_tx(tx, pipeline, jobs, None, now).await?;
    query(
        "UPDATE trigger_events SET state = 'STARTED', run_id = $1, note = NULL, started_at = $2 \
         WHERE seq = $3",
    )
    .binds((&run, now, seq))
    .execute(&mut *tx)
    .await?;
    Ok(run)
}

async fn end_event(tx: &mut Tx, seq: i64, state: &str, note: &str, now: i64) -> Result<()> {
    query("UPDATE trigger_events SET state = $1, note = $2, started_at = $3 WHERE seq = $4")
        .binds((state, note, now, seq))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn note_event(tx: &mut Tx, seq: i64, note: &str) -> Result<()> {
    query("UPDATE trigger_events SET note = $1 WHERE seq = $2")
        .binds((note, seq))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

//! Schedules: stored pipeline files, paused or not, and each fire time
//! fired once (the firing is recorded in the transaction that creates
//! its run).

use super::driver::query;
use super::runs::create_run_tx;
use super::*;

impl Ledger {
    /// Adds a schedule, or replaces its definition (firing counts from
    /// now; a paused one stays paused).
    pub async fn put_schedule(
        &self,
        name: &str,
        text: &str,
        sql_files: &str,
        now: i64,
    ) -> Result<()> {
        query(
                "INSERT INTO schedules (name, text, sql_files, created_at, updated_at, effective_since) \
                 VALUES ($1, $2, $3, $4, $4, $4) \
                 ON CONFLICT (name) DO UPDATE SET text = excluded.text, sql_files = excluded.sql_files, \
                   updated_at = excluded.updated_at, effective_since = excluded.effective_since",
            )
            .binds((name, text, sql_files, now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        query(
            "SELECT name, text, sql_files, paused, created_at, updated_at, effective_since, \
                 last_fired_at FROM schedules ORDER BY name",
        )
        .fetch_all::<ScheduleRow>(&self.pool)
        .await
    }

    /// Pauses or resumes; a resumed schedule counts from now (a pause
    /// is never caught up). Whether it exists.
    pub async fn set_schedule_paused(&self, name: &str, paused: bool, now: i64) -> Result<bool> {
        Ok(query(
            "UPDATE schedules SET paused = $1, updated_at = $2, \
                 effective_since = CASE WHEN $1 THEN effective_since ELSE $2 END WHERE name = $3",
        )
        .binds((paused, now, name))
        .execute(&self.pool)
        .await?
            == 1)
    }

    pub async fn remove_schedule(&self, name: &str) -> Result<bool> {
        Ok(query("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            == 1)
    }

    /// Fires a schedule for `fire_time`, once: the firing is recorded
    /// (unique schedule and fire time) in the transaction that creates
    /// its run, so two leaders never fire twice. With `skip_overlap`, a
    /// RUNNING run of this schedule makes the firing a recorded skip.
    pub async fn fire_schedule(
        &self,
        name: &str,
        fire_time: i64,
        pipeline: &str,
        jobs: &[RunJob],
        skip_overlap: bool,
        now: i64,
    ) -> Result<Fired> {
        let how = Firing::Due { skip_overlap };
        self.fire(name, fire_time, pipeline, jobs, how, now).await
    }

    /// Runs a schedule now, at an operator's request: a firing recorded at
    /// `now` (noted as such) with its run, which leaves the schedule's own
    /// fire times alone (a time that was due still fires, catch-up
    /// backlogs stay).
    pub async fn run_schedule_now(
        &self,
        name: &str,
        pipeline: &str,
        jobs: &[RunJob],
        now: i64,
    ) -> Result<Fired> {
        self.fire(name, now, pipeline, jobs, Firing::Now, now).await
    }

    async fn fire(
        &self,
        name: &str,
        fire_time: i64,
        pipeline: &str,
        jobs: &[RunJob],
        how: Firing,
        now: i64,
    ) -> Result<Fired> {
        let mut tx = self.begin().await?;
        let fresh: Option<i64> = query(
            "INSERT INTO schedule_fires (schedule, fire_time, fired_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING RETURNING fire_time",
        )
        .binds((name, fire_time, now))
        .scalar_optional(&mut tx)
        .await?;
        if fresh.is_none() {
            return Ok(Fired::Already);
        }
        match how {
            Firing::Due { .. } => {
                // Fire times may be fired out of order (a catch-up backlog):
                // the last one stays the latest.
                query(
                    "UPDATE schedules SET last_fired_at = $1 WHERE name = $2 \
                     AND (last_fired_at IS NULL OR last_fired_at < $1)",
                )
                .binds((fire_time, name))
                .execute(&mut tx)
                .await?;
            }
            Firing::Now => {
                query("UPDATE schedule_fires SET note = $1 WHERE schedule = $2 AND fire_time = $3")
                    .binds(("run now by an operator", name, fire_time))
                    .execute(&mut tx)
                    .await?;
            }
        }
        if let Firing::Due { skip_overlap: true } = how {
            let running: Option<String> =
                query("SELECT id FROM runs WHERE schedule = $1 AND state = 'RUNNING' LIMIT 1")
                    .bind(name)
                    .scalar_optional(&mut tx)
                    .await?;
            if let Some(run) = running {
                query("UPDATE schedule_fires SET note = $1 WHERE schedule = $2 AND fire_time = $3")
                    .bind(format!(
                        "skipped: run {run} of this schedule is still RUNNING"
                    ))
                    .binds((name, fire_time))
                    .execute(&mut tx)
                    .await?;
                tx.commit().await?;
                return Ok(Fired::Skipped(run));
            }
        }
        let (run, _) = create_run_tx(&mut tx, pipeline, jobs, Some(name), now).await?;
        query("UPDATE schedule_fires SET run_id = $1 WHERE schedule = $2 AND fire_time = $3")
            .binds((&run, name, fire_time))
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(Fired::Run(run))
    }

    /// The runs a schedule fired, newest first: (fire time, run id, note).
    pub async fn schedule_fires(
        &self,
        name: &str,
        limit: i64,
    ) -> Result<Vec<(i64, Option<String>, Option<String>)>> {
        query(
            "SELECT fire_time, run_id, note FROM schedule_fires WHERE schedule = $1 \
                 ORDER BY fire_time DESC LIMIT $2",
        )
        .binds((name, limit))
        .fetch_all(&self.pool)
        .await
    }
}

/// Why a schedule fires.
#[derive(Debug, Clone, Copy)]
enum Firing {
    /// One of its fire times came (`skip_overlap`: `overlap = "skip"`).
    Due { skip_overlap: bool },
    /// An operator asked for a run now.
    Now,
}

//! The scheduler: on the leader, fires the stored schedules whose times
//! are due (`redrelay schedules add`), each fire time once, recorded in the
//! ledger with the run it created (so a new leader never fires it again).

use super::*;
use crate::clock::timestamp;
use crate::ledger::Fired;
use crate::schedule::Overlap;
use anyhow::Context;

/// How often the leader looks for due times (well under the schedule's
/// on-time grace, see `schedule::ON_TIME_GRACE`).
const TICK: Duration = Duration::from_secs(2);

impl Worker {
    pub(super) async fn schedule_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        loop {
            if self.is_leader() {
                if let Err(e) = self.fire_due().await {
                    error!(error = format!("{e:#}"), "Cannot fire the schedules.");
                }
                if let Err(e) = self.start_waiting_trigger_events().await {
                    error!(
                        error = format!("{e:#}"),
                        "Cannot start the trigger events that wait."
                    );
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Fires every due time of every active schedule. A schedule that
    /// cannot fire (its stored text, its times, the ledger refusing its
    /// run) is logged and passed over: the schedules after it still fire.
    pub(super) async fn fire_due(&self) -> Result<()> {
        // The database's clock, as the leader's lease: a leader whose host
        // clock is off neither fires early nor late.
        let now = self.ledger.now_ms().await?;
        for s in self.ledger.schedules().await? {
            if s.paused {
                continue;
            }
            if let Err(e) = self.fire_schedule_due(&s, now).await {
                let e = crate::ops::error_text(&e);
                error!(schedule = %s.name, error = %e, "A schedule cannot fire; the others go on.");
            }
        }
        Ok(())
    }

    /// Fires the due times of one schedule.
    async fn fire_schedule_due(&self, s: &crate::ledger::ScheduleRow, now: i64) -> Result<()> {
        // Read as every other reader of a stored schedule reads it.
        let p = crate::ops::schedule_pipeline(s)
            .context("a stored schedule does not parse: add it again")?;
        let Some(spec) = p.schedule.clone() else {
            return Ok(());
        };
        let last = s.last_fired_at.map(timestamp).transpose()?;
        for t in spec.due(last, timestamp(s.effective_since)?, timestamp(now)?) {
            let jobs = match p.plan_run(&[], t, &self.cfg.default_target()) {
                Ok(jobs) => jobs,
                Err(e) => {
                    error!(schedule = %s.name, error = %e, "A schedule cannot fire.");
                    continue;
                }
            };
            let at = crate::schedule::scheduled_time(t);
            match self
                .ledger
                .fire_schedule(
                    &s.name,
                    t.as_millisecond(),
                    &p.name,
                    &jobs,
                    spec.overlap() == Overlap::Skip,
                    now,
                )
                .await?
            {
                Fired::Run(run) => {
                    info!(schedule = %s.name, run = %run, scheduled_time = %at, "Schedule fired.");
                    self.submit_wake.notify_one();
                }
                Fired::Skipped(run) => info!(
                    schedule = %s.name,
                    run = %run,
                    scheduled_time = %at,
                    "Schedule skipped a time: its previous run is still RUNNING (overlap = skip)."
                ),
                Fired::Already => {}
            }
        }
        Ok(())
    }
}

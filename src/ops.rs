//! What the command line and the JSON API both do, written once: a
//! schedule's view and its trigger, stopping cancelled statements, and
//! reading a stored schedule back.

use crate::config::Config;
use crate::dataapi::DataApi;
use crate::ledger::{Fired, Ledger, ScheduleRow};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// A schedule as `schedules list --json` and `GET /api/v1/schedules` show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub name: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// How many jobs each run has.
    pub jobs: usize,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    /// `none`, `last` or `all`.
    pub catch_up: Option<String>,
    /// `skip` or `allow`.
    pub overlap: Option<String>,
    pub paused: bool,
    /// RFC 3339.
    pub last_fired_at: Option<String>,
    /// RFC 3339; none while paused.
    pub next_fire_at: Option<String>,
}

/// A stored schedule's pipeline, rebuilt from its text and SQL files.
pub fn schedule_pipeline(s: &ScheduleRow) -> Result<crate::pipeline::Pipeline> {
    let files: BTreeMap<String, String> = serde_json::from_str(&s.sql_files)
        .with_context(|| format!("schedule {}: its stored SQL files", s.name))?;
    Ok(crate::pipeline::parse_stored(&s.name, &s.text, &files)?)
}

pub fn ms_to_ts(ms: i64) -> Result<jiff::Timestamp> {
    crate::schedule::from_millis(ms).map_err(anyhow::Error::msg)
}

/// What a schedule is and when it fires next (from `now`, ms).
pub fn describe_schedule(s: &ScheduleRow, now: i64) -> Result<ScheduleView> {
    let p = schedule_pipeline(s)?;
    let spec = p.schedule.as_ref();
    let from = ms_to_ts(s.last_fired_at.unwrap_or(s.effective_since).max(now))?;
    let next = if s.paused {
        None
    } else {
        spec.and_then(|sp| sp.next_after(from))
    };
    Ok(ScheduleView {
        name: s.name.clone(),
        pipeline: p.name.clone(),
        jobs: p.jobs.len(),
        cron: spec.map(|sp| sp.cron().to_string()),
        timezone: spec.map(|sp| sp.timezone().to_string()),
        catch_up: spec.map(|sp| sp.catch_up().as_str().to_string()),
        overlap: spec.map(|sp| sp.overlap().as_str().to_string()),
        paused: s.paused,
        last_fired_at: s
            .last_fired_at
            .map(ms_to_ts)
            .transpose()?
            .map(|t| t.to_string()),
        next_fire_at: next.map(|t| t.to_string()),
    })
}

/// The stored schedule `name`, if there is one.
pub async fn find_schedule(ledger: &Ledger, name: &str) -> Result<Option<ScheduleRow>> {
    Ok(ledger
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.name == name))
}

/// One run of a schedule's pipeline now (`:scheduled_time` = now): the
/// run's id.
pub async fn trigger_schedule(
    ledger: &Ledger,
    cfg: &Config,
    s: &ScheduleRow,
    now: i64,
) -> Result<String> {
    let p = schedule_pipeline(s)?;
    let jobs = p
        .clone()
        .with_run_params_at(&[], ms_to_ts(now)?)?
        .plan(&cfg.default_target())
        .map_err(anyhow::Error::msg)?;
    match ledger
        .fire_schedule(&s.name, now, &p.name, &jobs, false, now)
        .await?
    {
        Fired::Run(run) => Ok(run),
        Fired::Already | Fired::Skipped(_) => {
            anyhow::bail!("schedule {} fired at this very millisecond already", s.name)
        }
    }
}

/// Stops the running statements of cancelled jobs (CancelStatement,
/// within `api`'s rate limits): one line each of what happened.
pub async fn stop_statements(api: &DataApi, statements: Vec<(i64, String)>) -> Vec<String> {
    let mut said = Vec::new();
    for (id, sid) in statements {
        said.push(match api.cancel(&sid).await {
            Ok(_) => format!("job {id}: statement {sid} cancelled"),
            Err(e) => format!(
                "job {id}: statement {sid} could not be cancelled ({e}); it may have ended already"
            ),
        });
    }
    said
}

//! What the command line, the JSON API and the worker share, written once:
//! reading a stored schedule back, a schedule's view, running a schedule
//! now, stopping cancelled statements, and an error's text.

use crate::clock::timestamp;
use crate::config::Config;
use crate::dataapi::DataApi;
use crate::ledger::{Fired, Ledger, LedgerError, ScheduleRow};
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
    /// RFC 3339; none while paused (or while it does not parse).
    pub next_fire_at: Option<String>,
    /// Why the stored schedule cannot fire (its text no longer parses with
    /// this version); it is passed over until added again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A stored schedule's pipeline, rebuilt from its text and SQL files.
pub fn schedule_pipeline(s: &ScheduleRow) -> Result<crate::pipeline::Pipeline> {
    let files: BTreeMap<String, String> = serde_json::from_str(&s.sql_files)
        .with_context(|| format!("schedule {}: its stored SQL files", s.name))?;
    Ok(crate::pipeline::parse_stored(
        "schedule", &s.name, &s.text, &files,
    )?)
}

/// What a trigger is, and what became of its events.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TriggerView {
    pub name: String,
    pub paused: bool,
    /// The pipeline's name.
    pub pipeline: Option<String>,
    /// The EventBridge event pattern.
    #[schema(value_type = Object)]
    pub pattern: Option<serde_json::Value>,
    /// Run parameter -> its path in the event.
    pub params: BTreeMap<String, String>,
    /// `queue`, `skip` or `allow`.
    pub overlap: Option<String>,
    pub max_active_runs: Option<u32>,
    /// Its events by state (WAITING, STARTED, SKIPPED, DROPPED, FAILED).
    pub events: BTreeMap<String, i64>,
    /// Why it takes no event (its stored text no longer parses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A trigger described, with its events counted by state.
pub fn describe_trigger(t: &crate::ledger::TriggerRow, counts: &[(String, i64)]) -> TriggerView {
    let mut v = TriggerView {
        name: t.name.clone(),
        paused: t.paused,
        pipeline: None,
        pattern: None,
        params: BTreeMap::new(),
        overlap: None,
        max_active_runs: None,
        events: counts.iter().cloned().collect(),
        error: None,
    };
    match trigger_pipeline(t) {
        Ok(p) => {
            if let Some(spec) = &p.trigger {
                v.pattern = Some(spec.pattern.as_json().clone());
                v.params = spec
                    .params
                    .iter()
                    .map(|(k, path)| (k.clone(), path.to_string()))
                    .collect();
                v.overlap = Some(spec.overlap.as_str().to_string());
                v.max_active_runs = spec.max_active_runs;
            }
            v.pipeline = Some(p.name);
        }
        Err(e) => {
            v.error = Some(format!(
                "{}: it takes no event; add it again with `redrelay triggers add FILE`",
                error_text(&e)
            ))
        }
    }
    v
}

/// Every stored trigger's name and event pattern (for its EventBridge
/// rule); one that does not parse is an error naming it.
pub async fn trigger_patterns(ledger: &Ledger) -> Result<Vec<(String, serde_json::Value)>> {
    let mut out = Vec::new();
    for t in ledger.triggers().await? {
        match trigger_pipeline(&t).map(|p| p.trigger) {
            Ok(Some(spec)) => out.push((t.name.clone(), spec.pattern.as_json().clone())),
            Ok(None) => {}
            Err(e) => anyhow::bail!(
                "trigger {} does not parse ({}): add it again with `redrelay triggers add FILE`, or remove it",
                t.name,
                error_text(&e)
            ),
        }
    }
    Ok(out)
}

/// A stored trigger's pipeline, rebuilt from its text and SQL files.
pub fn trigger_pipeline(t: &crate::ledger::TriggerRow) -> Result<crate::pipeline::Pipeline> {
    let files: BTreeMap<String, String> = serde_json::from_str(&t.sql_files)
        .with_context(|| format!("trigger {}: its stored SQL files", t.name))?;
    Ok(crate::pipeline::parse_stored(
        "trigger", &t.name, &t.text, &files,
    )?)
}

/// What a schedule is and when it fires next (from `now`, ms).
/// A schedule that does not parse is described with its `error` (the
/// others are still listed and still fire).
pub fn describe_schedule(s: &ScheduleRow, now: i64) -> Result<ScheduleView> {
    let last_fired_at = s
        .last_fired_at
        .map(timestamp)
        .transpose()?
        .map(|t| t.to_string());
    let p = match schedule_pipeline(s) {
        Ok(p) => p,
        Err(e) => {
            return Ok(ScheduleView {
                name: s.name.clone(),
                pipeline: String::new(),
                jobs: 0,
                cron: None,
                timezone: None,
                catch_up: None,
                overlap: None,
                paused: s.paused,
                last_fired_at,
                next_fire_at: None,
                error: Some(format!(
                    "{}: it cannot fire; add it again with `redrelay schedules add FILE`",
                    error_text(&e)
                )),
            })
        }
    };
    let spec = p.schedule.as_ref();
    let from = timestamp(s.last_fired_at.unwrap_or(s.effective_since).max(now))?;
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
        last_fired_at,
        next_fire_at: next.map(|t| t.to_string()),
        error: None,
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

/// Why a schedule could not run now.
#[derive(Debug, thiserror::Error)]
pub enum RunNowError {
    /// The stored schedule does not read back (add it again).
    #[error("{}", error_text(.0))]
    Stored(anyhow::Error),
    /// A run-time value, or a job's target.
    #[error(transparent)]
    Plan(#[from] crate::pipeline::PlanError),
    #[error(transparent)]
    Time(#[from] crate::clock::OutOfRange),
    /// Fired at this very millisecond already.
    #[error("schedule {0} fired at this very millisecond already")]
    AlreadyFired(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// One run of a schedule's pipeline now, recorded as a firing of the
/// schedule at `now` (ms): `schedules trigger`, `POST
/// /api/v1/schedules/{name}/trigger` and `POST /api/v1/runs {"schedule"}`
/// all come here. `given` are run-time values (`:scheduled_time` is `now`
/// unless given). The run's id.
pub async fn run_schedule_now(
    ledger: &Ledger,
    cfg: &Config,
    s: &ScheduleRow,
    given: &[(String, String)],
    now: i64,
) -> Result<String, RunNowError> {
    let p = schedule_pipeline(s).map_err(RunNowError::Stored)?;
    let jobs = p.plan_run(given, timestamp(now)?, &cfg.default_target())?;
    match ledger
        .run_schedule_now(&s.name, &p.name, &jobs, now)
        .await?
    {
        Fired::Run(run) => Ok(run),
        Fired::Already | Fired::Skipped(_) => Err(RunNowError::AlreadyFired(s.name.clone())),
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

/// An error and its causes, each said once: `{:#}` would repeat a cause
/// whose text its wrapper already includes (a ledger error shows the
/// driver's text, then the driver's error again, then its own cause).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let driver = sqlx::Error::Protocol("file is not a database".into());
        let e = anyhow::Error::from(crate::ledger::LedgerError::Db(driver))
            .context("cannot open the ledger x.db");
        assert_eq!(
            error_text(&e),
            "cannot open the ledger x.db: ledger database error: \
             encountered unexpected or invalid data: file is not a database"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&e), "outer: inner");
    }
}

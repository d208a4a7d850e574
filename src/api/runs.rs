//! `/api/v1/runs`: list, show, start, cancel.

use super::jobs::{JobDetail, JobView};
use super::{limit, time_ms, ApiError, ApiJson, ApiQuery, ApiResult, ApiState};
use crate::ledger::{Run, RunsFilter};
use crate::ops::RunNowError;
use crate::pipeline::PlanError;
use crate::state::RunState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// RUNNING, FINISHED, FAILED or CANCELLED.
    state: Option<String>,
    /// The pipeline's name.
    pipeline: Option<String>,
    /// Runs created at or after this RFC 3339 time.
    since: Option<String>,
    /// Runs created before this RFC 3339 time.
    until: Option<String>,
    /// Runs a page (1-500, default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A run with its jobs counted by state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    #[serde(flatten)]
    pub run: Run,
    pub jobs_total: i64,
    /// Job state -> how many.
    pub jobs_by_state: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunsPage {
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// An edge of a run's graph: `to` runs after `from` finished.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Edge {
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunDetail {
    pub run: Run,
    pub jobs: Vec<JobDetail>,
    pub edges: Vec<Edge>,
    /// The event that started the run, when a trigger started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_event: Option<crate::ledger::TriggerEventRow>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StartedRun {
    pub run: Run,
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancelledRun {
    pub run: Run,
    /// Jobs that had not ended and were cancelled.
    pub cancelled_jobs: usize,
}

/// Start a run: a stored schedule's pipeline now, or a pipeline's text.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// A stored schedule whose pipeline runs now (`:scheduled_time` = now).
    schedule: Option<String>,
    /// A pipeline file's TOML text (as `redrelay pipeline run` reads it).
    pipeline: Option<String>,
    /// Run-time parameters the pipeline declares in its [params].
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// The SQL of each `sql_file` the pipeline names: path as written -> SQL.
    #[serde(default)]
    sql_files: BTreeMap<String, String>,
}

fn run_state(text: Option<&str>) -> ApiResult<Option<RunState>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let all = [
        RunState::Running,
        RunState::Finished,
        RunState::Failed,
        RunState::Cancelled,
    ];
    all.into_iter()
        .find(|s| s.to_string().eq_ignore_ascii_case(text))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad(
                "state",
                format!("state={text:?} is not a run state: one of RUNNING, FINISHED, FAILED, CANCELLED"),
            )
        })
}

/// Runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunsQuery),
    responses(
        (status = 200, description = "A page of runs", body = RunsPage),
        (status = 400, description = "A bad filter", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
    ))]
pub async fn list(
    State(api): ApiState,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<RunsPage>> {
    let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| {
                    ApiError::bad(
                        "cursor",
                        "cursor is not one this API gave: pass a page's next_cursor as it is",
                    )
                })?,
        ),
    };
    let filter = RunsFilter {
        state: run_state(q.state.as_deref())?,
        pipeline: q.pipeline.filter(|p| !p.is_empty()),
        since: time_ms("since", q.since.as_deref())?,
        until: time_ms("until", q.until.as_deref())?,
        before,
        limit: limit(q.limit, 50)?,
    };
    let ledger = &api.services.ledger;
    let runs = ledger.runs_page(&filter).await?;
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    let mut counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (run, state, n) in ledger.run_job_counts(&ids).await? {
        counts
            .entry(run)
            .or_default()
            .insert(state.as_str().to_string(), n);
    }
    let next_cursor = (runs.len() as i64 == filter.limit)
        .then(|| runs.last().map(|r| format!("{}.{}", r.created_at, r.id)))
        .flatten();
    let runs = runs
        .into_iter()
        .map(|run| {
            let by_state = counts.remove(&run.id).unwrap_or_default();
            RunSummary {
                jobs_total: by_state.values().sum(),
                jobs_by_state: by_state,
                run,
            }
        })
        .collect();
    Ok(Json(RunsPage { runs, next_cursor }))
}

async fn find(api: &super::Api, id: &str) -> ApiResult<Run> {
    api.services
        .ledger
        .run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {id} does not exist")))
}

/// One run: its jobs (with attempts and results), their edges and states.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 400, description = "A bad id", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such run", body = super::ErrorBody),
    ))]
pub async fn show(State(api): ApiState, Path(id): Path<String>) -> ApiResult<Json<RunDetail>> {
    let run = find(&api, &id).await?;
    let ledger = &api.services.ledger;
    // Five queries whatever the run's size (jobs, attempts, result files,
    // edges, the event that started it), not three per job: the console
    // reads this on every change.
    let pairs = ledger.run_edges(&id).await?;
    let mut attempts: HashMap<i64, Vec<_>> = HashMap::new();
    for a in ledger.run_attempts(&id).await? {
        attempts.entry(a.job_id).or_default().push(a.row);
    }
    let mut results: HashMap<i64, Vec<_>> = HashMap::new();
    for r in ledger.run_results(&id).await? {
        results.entry(r.job_id).or_default().push(r.row);
    }
    let mut deps: HashMap<i64, Vec<i64>> = HashMap::new();
    for (job, dep) in &pairs {
        deps.entry(*job).or_default().push(*dep);
    }
    let jobs = ledger
        .jobs(None, Some(&id))
        .await?
        .into_iter()
        .map(|j| JobDetail {
            depends_on: deps.remove(&j.id).unwrap_or_default(),
            attempts: attempts.remove(&j.id).unwrap_or_default(),
            results: results.remove(&j.id).unwrap_or_default(),
            job: j.into(),
        })
        .collect();
    let edges = pairs
        .into_iter()
        .map(|(job, dep)| Edge { from: dep, to: job })
        .collect();
    let trigger_event = ledger.trigger_event_of_run(&id).await?;
    Ok(Json(RunDetail {
        run,
        jobs,
        edges,
        trigger_event,
    }))
}

/// Start a run of a stored schedule's pipeline, or of a pipeline's text.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", request_body = StartRun,
    responses(
        (status = 201, description = "The run, recorded; the worker submits its jobs", body = StartedRun),
        (status = 400, description = "An invalid pipeline or parameter", body = super::ErrorBody),
        (status = 400, description = "A bad name", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such schedule", body = super::ErrorBody),
        (status = 409, description = "The schedule fired at this very millisecond already", body = super::ErrorBody),
    ))]
pub async fn start(
    State(api): ApiState,
    ApiJson(body): ApiJson<StartRun>,
) -> ApiResult<(StatusCode, Json<StartedRun>)> {
    let w = &api.services;
    let now = w.clock.now_ms();
    let given: Vec<(String, String)> = body.params.into_iter().collect();
    let run = match (body.schedule, body.pipeline) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::bad(
                "pipeline",
                "give either `schedule` (a stored schedule's name) or `pipeline` (a pipeline's TOML text)",
            ))
        }
        // As `POST /schedules/{name}/trigger`: recorded as a firing.
        (Some(name), None) => {
            let s = crate::ops::find_schedule(&w.ledger, &name)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "no schedule {name:?}: see GET /api/v1/schedules"
                    ))
                })?;
            crate::ops::run_schedule_now(&w.ledger, &w.cfg, &s, &given, now)
                .await
                .map_err(|e| match e {
                    RunNowError::Plan(e) => plan_error(e),
                    RunNowError::Ledger(e) => e.into(),
                    RunNowError::AlreadyFired(_) => ApiError::conflict(e.to_string()),
                    e => ApiError::internal(e.to_string()),
                })?
        }
        (None, Some(text)) => {
            let files = body.sql_files;
            let p = crate::pipeline::parse(&text, "pipeline", "api", |path| {
                files
                    .get(&path.display().to_string())
                    .cloned()
                    .ok_or_else(|| format!("{}: give its SQL in sql_files", path.display()))
            })
            .map_err(|e| ApiError::bad("pipeline", e.to_string()))?;
            let jobs = p
                .plan_run(&given, crate::clock::timestamp(now)?, &w.cfg.default_target())
                .map_err(plan_error)?;
            w.ledger.create_run(&p.name, &jobs, now).await?.0
        }
    };
    w.wake_submitter();
    let run = find(&api, &run).await?;
    let jobs = w
        .ledger
        .jobs(None, Some(&run.id))
        .await?
        .into_iter()
        .map(JobView::from)
        .collect();
    Ok((StatusCode::CREATED, Json(StartedRun { run, jobs })))
}

/// A pipeline that cannot be planned: a 400 naming `params` (a run-time
/// value) or `pipeline` (a job).
fn plan_error(e: PlanError) -> ApiError {
    match e {
        PlanError::Params(e) => {
            ApiError::bad("params", e.to_string().replace("--param ", "params."))
        }
        PlanError::Jobs(e) => ApiError::bad("pipeline", e),
    }
}

/// Cancel a run: running statements are stopped, waiting jobs CANCELLED.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run, CANCELLED", body = CancelledRun),
        (status = 400, description = "A bad id", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such run", body = super::ErrorBody),
        (status = 409, description = "The run already ended", body = super::ErrorBody),
    ))]
pub async fn cancel(State(api): ApiState, Path(id): Path<String>) -> ApiResult<Json<CancelledRun>> {
    let w = &api.services;
    find(&api, &id).await?;
    let (n, statements) = match w.ledger.cancel_run(&id, w.clock.now_ms()).await {
        Ok(done) => done,
        Err(crate::ledger::LedgerError::RunConflict { found, .. }) => {
            return Err(ApiError::conflict(format!(
                "run {id} is already {found}: nothing to cancel"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    for line in crate::ops::stop_statements(&w.data_api, statements).await {
        tracing::info!(run = %id, "{line}");
    }
    let run = find(&api, &id).await?;
    Ok(Json(CancelledRun {
        run,
        cancelled_jobs: n,
    }))
}

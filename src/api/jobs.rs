//! `/api/v1/jobs`: list, show, submit, retry, cancel, results.

use super::{job_id, job_state, limit, ApiError, ApiJson, ApiQuery, ApiResult, ApiState};
use crate::ledger::{Attempt, Job, JobsFilter, Ledger, NewJob, ResultFile, RetryRefused};
use crate::state::ResultState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job as the API shows it: its row, with parameter names (never their
/// values).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub job: Job,
    /// The names of its `:name` parameters; values are never served.
    pub param_names: Vec<String>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        let param_names = job.param_names().iter().map(|s| s.to_string()).collect();
        JobView { job, param_names }
    }
}

/// A job with what it waits on, its attempts and result files.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    /// Jobs it runs after.
    pub depends_on: Vec<i64>,
    pub attempts: Vec<Attempt>,
    pub results: Vec<ResultFile>,
}

pub async fn job_detail(ledger: &Ledger, job: Job) -> ApiResult<JobDetail> {
    let id = job.id;
    Ok(JobDetail {
        depends_on: ledger.deps(id).await?,
        attempts: ledger.attempts(id).await?,
        results: ledger.results(id).await?,
        job: job.into(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// A job state, e.g. FAILED.
    state: Option<String>,
    /// Jobs of this run.
    run: Option<String>,
    /// Jobs of this name.
    name: Option<String>,
    /// Jobs a page (1-500, default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobsPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Where a job runs (each field defaults to the worker's configuration).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetIn {
    workgroup: Option<String>,
    cluster: Option<String>,
    database: Option<String>,
    db_user: Option<String>,
    secret_arn: Option<String>,
}

/// A job to record and submit: `sql`, or `sqls` for a batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// One statement.
    sql: Option<String>,
    /// Several statements, run as one batch (BatchExecuteStatement).
    sqls: Option<Vec<String>>,
    /// The job's name (default `api`).
    name: Option<String>,
    /// Values of the SQL's `:name` parameters.
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// Run only after these jobs have FINISHED.
    #[serde(default)]
    after: Vec<i64>,
    target: Option<TargetIn>,
    /// Attempts in all, 1-100 (default 1: no retry).
    max_attempts: Option<i64>,
    /// `csv`, `jsonl` or `csv,jsonl` (default: the worker's result_formats).
    result_formats: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    /// `csv` (default) or `jsonl`.
    format: Option<String>,
    /// The sub-statement of a batch (default: the first with a result).
    sub: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RowsQuery {
    /// Rows to read (1-500, default 20).
    limit: Option<i64>,
    /// The sub-statement of a batch (default: the first with a result).
    sub: Option<i64>,
}

/// The first rows of a job's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rows {
    pub columns: Vec<String>,
    /// Values as text (from CSV) or JSON values (from JSON Lines).
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Rows in the whole result.
    pub total_rows: i64,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobsPage),
        (status = 400, description = "A bad filter", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
    ))]
pub async fn list(
    State(api): ApiState,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> ApiResult<Json<JobsPage>> {
    let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::bad(
                "cursor",
                "cursor is not one this API gave: pass a page's next_cursor as it is",
            )
        })?),
    };
    let filter = JobsFilter {
        state: job_state(q.state.as_deref())?,
        run: q.run.filter(|r| !r.is_empty()),
        name: q.name.filter(|n| !n.is_empty()),
        before,
        limit: limit(q.limit, 50)?,
    };
    let jobs = api.services.ledger.jobs_page(&filter).await?;
    let next_cursor = (jobs.len() as i64 == filter.limit)
        .then(|| jobs.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(Json(JobsPage {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// One job: state, attempts, errors, statement ids, result files.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 400, description = "Not a job id", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such job", body = super::ErrorBody),
    ))]
pub async fn show(State(api): ApiState, Path(id): Path<String>) -> ApiResult<Json<JobDetail>> {
    let ledger = &api.services.ledger;
    let job = ledger.job(job_id(&id)?).await?;
    Ok(Json(job_detail(ledger, job).await?))
}

/// Record a job; the worker submits it (WithEvent) when its jobs `after`
/// have finished and the in-flight limits leave room.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = SubmitJob,
    responses(
        (status = 201, description = "The job, recorded", body = JobView),
        (status = 400, description = "Bad input, the field named", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
    ))]
pub async fn submit(
    State(api): ApiState,
    ApiJson(body): ApiJson<SubmitJob>,
) -> ApiResult<Response> {
    let w = &api.services;
    let (field, sqls) = match (body.sql, body.sqls) {
        (Some(sql), None) => ("sql", vec![sql]),
        (None, Some(sqls)) => ("sqls", sqls),
        _ => {
            return Err(ApiError::bad(
                "sql",
                "give the SQL as `sql` (one statement) or `sqls` (a batch), not both",
            ))
        }
    };
    if sqls.is_empty() || sqls.iter().any(|s| s.trim().is_empty()) {
        return Err(ApiError::bad(
            field,
            format!("{field}: a statement is empty"),
        ));
    }
    crate::domain::check_batch_size(sqls.len()).map_err(|e| ApiError::bad(field, e))?;
    let mut params = Vec::new();
    for (name, value) in body.params {
        let field = format!("params.{}", name.trim_start_matches(':'));
        params.push(
            crate::domain::param(&name, &value)
                .map_err(|e| ApiError::bad(&field, format!("{field}: {e}")))?,
        );
    }
    let max_attempts = body.max_attempts.unwrap_or(1);
    if !(1..=100).contains(&max_attempts) {
        return Err(ApiError::bad(
            "max_attempts",
            format!("max_attempts={max_attempts}: give 1 to 100"),
        ));
    }
    let result_formats = body
        .result_formats
        .as_deref()
        .map(crate::domain::ResultFormats::parse)
        .transpose()
        .map_err(|e| ApiError::bad("result_formats", e))?;
    let t = body.target.unwrap_or_default();
    let target = crate::domain::Target {
        workgroup: t.workgroup,
        cluster: t.cluster,
        database: t.database,
        db_user: t.db_user,
        secret_arn: t.secret_arn,
    }
    .over(&w.cfg.default_target());
    target.check().map_err(|e| ApiError::bad("target", e))?;
    for parent in &body.after {
        match w.ledger.job(*parent).await {
            Ok(_) => {}
            Err(crate::ledger::LedgerError::NoSuchJob(_)) => {
                return Err(ApiError::bad(
                    "after",
                    format!("after: job {parent} does not exist"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let name = body
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "api".to_string());
    let job = w
        .ledger
        .insert_job(
            &NewJob {
                name,
                sqls,
                params,
                target,
                depends_on: body.after,
                max_attempts,
                retry: None,
                timeout_secs: None,
                execution_mode: None,
                result_formats,
                session_keep_alive_secs: None,
                run_id: None,
            },
            w.clock.now_ms(),
        )
        .await?;
    w.wake_submitter();
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(JobView::from(job)),
    )
        .into_response())
}

/// Give a FAILED, ABORTED, CANCELLED or SKIPPED job one more attempt (and
/// revive the jobs it skipped).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, READY or PENDING again", body = JobView),
        (status = 400, description = "Not a job id", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such job", body = super::ErrorBody),
        (status = 409, description = "Refused, with the reason (e.g. its parent failed)", body = super::ErrorBody),
    ))]
pub async fn retry(State(api): ApiState, Path(id): Path<String>) -> ApiResult<Json<JobView>> {
    let w = &api.services;
    let id = job_id(&id)?;
    match w.ledger.retry_job(id, w.clock.now_ms()).await {
        Ok(_) => {}
        Err(RetryRefused::Why(why)) => return Err(ApiError::conflict(why)),
        Err(RetryRefused::Ledger(e)) => return Err(e.into()),
    }
    w.wake_submitter();
    Ok(Json(w.ledger.job(id).await?.into()))
}

/// Cancel a job: its running statement is stopped, a waiting job
/// CANCELLED; what depends on it is SKIPPED.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, CANCELLED", body = JobView),
        (status = 400, description = "Not a job id", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such job", body = super::ErrorBody),
        (status = 409, description = "The job already ended", body = super::ErrorBody),
    ))]
pub async fn cancel(State(api): ApiState, Path(id): Path<String>) -> ApiResult<Json<JobView>> {
    let w = &api.services;
    let id = job_id(&id)?;
    let (changed, statement) = w.ledger.cancel_job(id, w.clock.now_ms()).await?;
    if !changed {
        let job = w.ledger.job(id).await?;
        return Err(ApiError::conflict(format!(
            "job {id} is already {}: nothing to cancel",
            job.state
        )));
    }
    let statements = statement.map(|s| (id, s)).into_iter().collect();
    for line in crate::ops::stop_statements(&w.data_api, statements).await {
        tracing::info!(job = id, "{line}");
    }
    Ok(Json(w.ledger.job(id).await?.into()))
}

/// The result file of `sub` (or the first), once fetched.
async fn result_file(ledger: &Ledger, id: i64, sub: Option<i64>) -> ApiResult<ResultFile> {
    let job = ledger.job(id).await?;
    if job.results_pruned_at.is_some() {
        return Err(ApiError::not_found(format!(
            "job {id}'s results were removed by retention (retention_days)"
        )));
    }
    if job.result_state != Some(ResultState::Fetched) {
        let what = match job.result_state {
            Some(ResultState::None) => "its statement returned no rows".to_string(),
            Some(s) => format!("its results are {s}"),
            None => format!("it is {}", job.state),
        };
        return Err(ApiError::conflict(format!(
            "job {id} has no fetched result: {what}"
        )));
    }
    let files = ledger.results(id).await?;
    match sub {
        None => files.into_iter().next(),
        Some(n) => files.into_iter().find(|f| f.sub == n),
    }
    .ok_or_else(|| match sub {
        Some(n) => ApiError::bad(
            "sub",
            format!("job {id} has no result of sub-statement {n}"),
        ),
        None => ApiError::conflict(format!("job {id} has no fetched result")),
    })
}

/// The result, streamed: CSV or JSON Lines, as the job kept it.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/results", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id"), ResultsQuery),
    responses(
        (status = 200, description = "The result file", content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "A bad format or sub-statement", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such job, or results removed", body = super::ErrorBody),
        (status = 409, description = "No fetched result yet", body = super::ErrorBody),
    ))]
pub async fn results(
    State(api): ApiState,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ResultsQuery>,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let jsonl = match q.format.as_deref().unwrap_or("csv") {
        "csv" => false,
        "jsonl" => true,
        other => {
            return Err(ApiError::bad(
                "format",
                format!("format={other:?}: ask for csv or jsonl"),
            ))
        }
    };
    let file = result_file(&api.services.ledger, id, q.sub).await?;
    let (path, kind, ext) = if jsonl {
        (file.jsonl_path, "application/x-ndjson", "jsonl")
    } else {
        (file.csv_path, "text/csv; charset=utf-8", "csv")
    };
    if path.is_empty() {
        let other = if jsonl { "csv" } else { "jsonl" };
        return Err(ApiError::bad(
            "format",
            format!(
                "job {id} kept its result as {other} only (result_formats): ask format={other}"
            ),
        ));
    }
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::not_found(format!("job {id}'s result file is gone ({e})")))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
    let name = if file.sub == 0 {
        format!("job-{id}.{ext}")
    } else {
        format!("job-{id}-{}.{ext}", file.sub)
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The first rows of the result (for a look; download the whole with
/// /results).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/rows", tag = "jobs",
    params(("id" = i64, Path, description = "The job's id"), RowsQuery),
    responses(
        (status = 200, description = "Column names and the first rows", body = Rows),
        (status = 400, description = "A bad limit or sub-statement", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such job, or results removed", body = super::ErrorBody),
        (status = 409, description = "No fetched result yet", body = super::ErrorBody),
    ))]
pub async fn rows(
    State(api): ApiState,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RowsQuery>,
) -> ApiResult<Json<Rows>> {
    let id = job_id(&id)?;
    let n = limit(q.limit, 20)? as usize;
    let file = result_file(&api.services.ledger, id, q.sub).await?;
    let total_rows = file.rows;
    let read = tokio::task::spawn_blocking(move || first_rows(&file, n))
        .await
        .map_err(|e| ApiError::internal(format!("reading the result: {e}")))?;
    let (columns, rows) =
        read.map_err(|e| ApiError::not_found(format!("job {id}'s result cannot be read: {e}")))?;
    Ok(Json(Rows {
        columns,
        rows,
        total_rows,
    }))
}

type Table = (Vec<String>, Vec<Vec<serde_json::Value>>);

/// The header and first `n` rows of a result file (CSV when kept, else
/// JSON Lines).
fn first_rows(file: &ResultFile, n: usize) -> Result<Table, String> {
    if !file.csv_path.is_empty() {
        let mut r = csv::Reader::from_path(&file.csv_path).map_err(|e| e.to_string())?;
        let columns = r
            .headers()
            .map_err(|e| e.to_string())?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for rec in r.records().take(n) {
            let rec = rec.map_err(|e| e.to_string())?;
            rows.push(rec.iter().map(|v| v.into()).collect());
        }
        return Ok((columns, rows));
    }
    use std::io::BufRead;
    let f = std::fs::File::open(&file.jsonl_path).map_err(|e| e.to_string())?;
    let mut columns: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in std::io::BufReader::new(f).lines().take(n) {
        let line = line.map_err(|e| e.to_string())?;
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&line).map_err(|e| e.to_string())?;
        if columns.is_empty() {
            columns = obj.keys().cloned().collect();
        }
        rows.push(
            columns
                .iter()
                .map(|c| obj.get(c).cloned().unwrap_or_default())
                .collect(),
        );
    }
    Ok((columns, rows))
}

//! `/api/v1/schedules`: list, pause, resume, trigger.

use super::{ApiError, ApiResult, ApiState};
use crate::ledger::Run;
use crate::ops::{describe_schedule, find_schedule, ScheduleView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggeredRun {
    pub run: Run,
}

fn no_such(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no schedule {name:?}: see GET /api/v1/schedules (`redrelay schedules add` stores one)"
    ))
}

/// Every schedule, with its last and next firing.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules",
    responses(
        (status = 200, description = "The schedules", body = Vec<ScheduleView>),
        (status = 400, description = "A bad query", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
    ))]
pub async fn list(State(api): ApiState) -> ApiResult<Json<Vec<ScheduleView>>> {
    let now = api.services.clock.now_ms();
    let mut out = Vec::new();
    for s in api.services.ledger.schedules().await? {
        out.push(describe_schedule(&s, now)?);
    }
    Ok(Json(out))
}

async fn set_paused(api: &super::Api, name: &str, paused: bool) -> ApiResult<Json<ScheduleView>> {
    let w = &api.services;
    let now = w.clock.now_ms();
    if !w.ledger.set_schedule_paused(name, paused, now).await? {
        return Err(no_such(name));
    }
    let s = find_schedule(&w.ledger, name)
        .await?
        .ok_or_else(|| no_such(name))?;
    Ok(Json(describe_schedule(&s, now)?))
}

/// Stop firing (the times missed while paused are never caught up).
#[utoipa::path(post, path = "/api/v1/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule, paused", body = ScheduleView),
        (status = 400, description = "A bad name", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such schedule", body = super::ErrorBody),
    ))]
pub async fn pause(
    State(api): ApiState,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    set_paused(&api, &name, true).await
}

/// Fire again from now.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule, firing from now", body = ScheduleView),
        (status = 400, description = "A bad name", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such schedule", body = super::ErrorBody),
    ))]
pub async fn resume(
    State(api): ApiState,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    set_paused(&api, &name, false).await
}

/// One run of the schedule's pipeline now (`:scheduled_time` = now).
#[utoipa::path(post, path = "/api/v1/schedules/{name}/trigger", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 201, description = "The run, recorded", body = TriggeredRun),
        (status = 400, description = "A bad name", body = super::ErrorBody),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such schedule", body = super::ErrorBody),
        (status = 409, description = "Fired at this very millisecond already", body = super::ErrorBody),
    ))]
pub async fn trigger(
    State(api): ApiState,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<TriggeredRun>)> {
    let w = &api.services;
    let s = find_schedule(&w.ledger, &name)
        .await?
        .ok_or_else(|| no_such(&name))?;
    let run = crate::ops::run_schedule_now(&w.ledger, &w.cfg, &s, &[], w.clock.now_ms())
        .await
        .map_err(|e| ApiError::conflict(crate::ops::error_text(&e.into())))?;
    w.wake_submitter();
    let run =
        w.ledger.run(&run).await?.ok_or_else(|| {
            ApiError::internal(format!("run {run} was created but cannot be read"))
        })?;
    Ok((StatusCode::CREATED, Json(TriggeredRun { run })))
}

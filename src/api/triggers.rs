//! `/api/v1/triggers`: list, show (with the latest events), pause, resume.

use super::{ApiError, ApiResult, ApiState};
use crate::ledger::TriggerEventRow;
use crate::ops::{describe_trigger, TriggerView};
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

/// One trigger and its latest events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TriggerDetail {
    #[serde(flatten)]
    pub trigger: TriggerView,
    /// Newest first (at most 50): what each started, or why it did not.
    pub latest_events: Vec<TriggerEventRow>,
}

fn no_such(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no trigger {name:?}: see GET /api/v1/triggers (`redrelay triggers add` stores one)"
    ))
}

async fn view(api: &super::Api, name: &str) -> ApiResult<TriggerView> {
    let l = &api.services.ledger;
    let t = l
        .triggers()
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| no_such(name))?;
    Ok(describe_trigger(&t, &l.trigger_event_counts(name).await?))
}

/// Every trigger: its pattern, parameters, and its events by state.
#[utoipa::path(get, path = "/api/v1/triggers", tag = "triggers",
    responses(
        (status = 200, description = "The triggers", body = Vec<TriggerView>),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
    ))]
pub async fn list(State(api): ApiState) -> ApiResult<Json<Vec<TriggerView>>> {
    let l = &api.services.ledger;
    let mut out = Vec::new();
    for t in l.triggers().await? {
        let counts = l.trigger_event_counts(&t.name).await?;
        out.push(describe_trigger(&t, &counts));
    }
    Ok(Json(out))
}

/// One trigger and its latest events.
#[utoipa::path(get, path = "/api/v1/triggers/{name}", tag = "triggers",
    params(("name" = String, Path, description = "The trigger's name")),
    responses(
        (status = 200, description = "The trigger", body = TriggerDetail),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such trigger", body = super::ErrorBody),
    ))]
pub async fn show(
    State(api): ApiState,
    Path(name): Path<String>,
) -> ApiResult<Json<TriggerDetail>> {
    let trigger = view(&api, &name).await?;
    let latest_events = api.services.ledger.trigger_events(Some(&name), 50).await?;
    Ok(Json(TriggerDetail {
        trigger,
        latest_events,
    }))
}

async fn set_paused(api: &super::Api, name: &str, paused: bool) -> ApiResult<Json<TriggerView>> {
    let w = &api.services;
    if !w
        .ledger
        .set_trigger_paused(name, paused, w.clock.now_ms())
        .await?
    {
        return Err(no_such(name));
    }
    Ok(Json(view(api, name).await?))
}

/// Stop starting runs: its events wait in the ledger (or are dropped, with
/// `on_pause = "drop"`) until it is resumed.
#[utoipa::path(post, path = "/api/v1/triggers/{name}/pause", tag = "triggers",
    params(("name" = String, Path, description = "The trigger's name")),
    responses(
        (status = 200, description = "The trigger, paused", body = TriggerView),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such trigger", body = super::ErrorBody),
    ))]
pub async fn pause(State(api): ApiState, Path(name): Path<String>) -> ApiResult<Json<TriggerView>> {
    set_paused(&api, &name, true).await
}

/// Start runs again, first for the events that waited.
#[utoipa::path(post, path = "/api/v1/triggers/{name}/resume", tag = "triggers",
    params(("name" = String, Path, description = "The trigger's name")),
    responses(
        (status = 200, description = "The trigger, resumed", body = TriggerView),
        (status = 401, description = "No or a wrong token", body = super::ErrorBody),
        (status = 404, description = "No such trigger", body = super::ErrorBody),
    ))]
pub async fn resume(
    State(api): ApiState,
    Path(name): Path<String>,
) -> ApiResult<Json<TriggerView>> {
    set_paused(&api, &name, false).await
}

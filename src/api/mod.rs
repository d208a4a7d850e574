//! The JSON API under `/api/v1` on the worker's listener, and its OpenAPI
//! document (`/api/openapi.json`, generated from the handlers and types
//! here by utoipa, never written by hand).
//!
//! - `runs`, `jobs`, `schedules`: the resources; `stream`: the server-sent
//!   event stream of state changes and the events inbox.
//! - `access`: the tokens (every `/api/v1` call needs one; the read-only
//!   one may only read); `guard`: the Host, Origin and Content-Type rules
//!   that keep other web sites out of the whole listener.
//! - Errors are JSON `{"message", "field"}`: 400 names the bad field, 404,
//!   409 for a refused transition.

pub mod access;
pub mod guard;
mod jobs;
mod runs;
mod schedules;
mod stream;
mod triggers;

use crate::clock::Clock;
use crate::config::Config;
use crate::dataapi::DataApi;
use crate::ledger::{Ledger, LedgerError};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

/// What the API acts through: the parts of the worker that serves it.
/// (The API knows nothing else of the worker, so that the worker may serve
/// it without the two importing each other.)
pub struct Services {
    pub ledger: Ledger,
    /// The Data API client, for stopping the statements of cancelled jobs.
    pub data_api: DataApi,
    /// The configuration (targets are completed from its defaults).
    pub cfg: Config,
    pub clock: Arc<dyn Clock>,
    /// Notified when a job is recorded or revived: wakes the submitter.
    pub submit_wake: Arc<Notify>,
}

impl Services {
    /// Wakes the submitter (a job was recorded or revived).
    fn wake_submitter(&self) {
        self.submit_wake.notify_one();
    }
}

/// What the handlers share.
pub struct Api {
    pub services: Services,
    tokens: access::Tokens,
    /// Cancelled when the worker stops: event streams end.
    stop: CancellationToken,
}

type ApiState = State<Arc<Api>>;

/// The API's routes: `/api/v1/...` behind the tokens, `/api/openapi.json`.
pub fn router(services: Services, tokens: access::Tokens, stop: CancellationToken) -> Router {
    let api = Arc::new(Api {
        services,
        tokens,
        stop,
    });
    let v1 = Router::new()
        .route("/runs", get(runs::list).post(runs::start))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/jobs", get(jobs::list).post(jobs::submit))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/results", get(jobs::results))
        .route("/jobs/{id}/rows", get(jobs::rows))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route("/schedules/{name}/trigger", post(schedules::trigger))
        .route("/triggers", get(triggers::list))
        .route("/triggers/{name}", get(triggers::show))
        .route("/triggers/{name}/pause", post(triggers::pause))
        .route("/triggers/{name}/resume", post(triggers::resume))
        .route("/inbox", get(stream::inbox))
        .route("/events", get(stream::events))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(api.clone(), auth))
        .with_state(api);
    Router::new()
        .nest("/api/v1", v1)
        .route("/api/openapi.json", get(openapi))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API path: see /api/openapi.json for every path")
}

async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => {
            ApiError::internal(format!("cannot write the OpenAPI document: {e}")).into_response()
        }
    }
}

/// Refuses a call without one of the worker's tokens (a missing and a
/// wrong token get the same answer), and a state change with the
/// read-only token.
async fn auth(State(api): ApiState, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given.and_then(|g| api.tokens.check(g)) {
        Some(access::Access::Full) => {}
        Some(access::Access::Read) => {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "this is the read-only token (api_read_token): it may only read (GET); \
                         {} {} needs the worker's api_token",
                        req.method(),
                        req.uri().path()
                    ),
                )
                .into_response();
            }
        }
        None => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this API needs the worker's token: send `Authorization: Bearer TOKEN` with \
                 the worker's api_token (api_token_file), or with the token it made at start \
                 (`redrelay console-url` prints the console's address with it)",
            )
            .into_response();
        }
    }
    // Text with NUL cannot be stored (PostgreSQL refuses it): a clear 400
    // rather than the database's error.
    let uri = req.uri().to_string();
    if uri.to_ascii_lowercase().contains("%00") {
        let field = if req.uri().path().contains("%00") {
            "path"
        } else {
            "query"
        };
        return ApiError::bad(
            field,
            format!("{field}: NUL characters (%00) are not allowed"),
        )
        .into_response();
    }
    next.run(req).await
}

/// An error as the API answers it: `{"message": ..., "field": ...}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong and what to do.
    pub message: String,
    /// The bad field or parameter (400 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                message: message.into(),
                field: None,
            },
        }
    }

    /// 400, naming the field.
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody {
                message: message.into(),
                field: Some(field.to_string()),
            },
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::warn!(error = %message, "An API call failed.");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NoSuchJob(_) | LedgerError::NoSuchRun(_) => {
                ApiError::not_found(e.to_string())
            }
            LedgerError::RunConflict { .. } | LedgerError::Conflict { .. } => {
                ApiError::conflict(e.to_string())
            }
            e => ApiError::internal(e.to_string()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(crate::ops::error_text(&e))
    }
}

impl From<crate::clock::OutOfRange> for ApiError {
    fn from(e: crate::clock::OutOfRange) -> Self {
        ApiError::internal(e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Query parameters, a bad one answered as a JSON 400 naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| bad_input(e.path().to_string(), e.inner().to_string()))
    }
}

/// A JSON body (the listener's guard has refused any other Content-Type),
/// a bad one answered as a JSON 400 naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad("body", format!("cannot read the body: {e}")))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad("body", format!("body: not JSON: {e}")))?;
        // Text with NUL cannot be stored (PostgreSQL refuses it): a clear
        // 400 naming the field rather than the database's error. Checked
        // on the decoded text, so an escaped backslash before `u0000` is
        // text like any other.
        if let Some(field) = nul_in(&value, String::new()) {
            let field = if field.is_empty() {
                "body".into()
            } else {
                field
            };
            return Err(ApiError::bad(
                &field,
                format!("{field}: NUL characters (\\u0000) are not allowed in text"),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| bad_input(e.path().to_string(), e.inner().to_string()))
    }
}

/// The path of the first string (or object key) holding NUL, as
/// serde_path_to_error writes paths (`params.day`, `sqls[1]`).
fn nul_in(value: &serde_json::Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        serde_json::Value::String(s) => s.contains('\0').then_some(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(path.clone())
            } else {
                nul_in(v, join(k))
            }
        }),
        _ => None,
    }
}

fn bad_input(path: String, message: String) -> ApiError {
    // The path names the field (an unknown one too); "." is the body.
    let field = match message.split('`').nth(1) {
        Some(name) if path == "." && message.starts_with("unknown field") => name.to_string(),
        _ if path == "." => "body".to_string(),
        _ => path,
    };
    let message = format!("{field}: {message}");
    ApiError::bad(&field, message)
}

/// A path id that must be a job id.
fn job_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad("id", format!("{text:?} is not a job id (a whole number)")))
}

/// `limit`: 1 to 500, `default` when absent.
fn limit(given: Option<i64>, default: i64) -> ApiResult<i64> {
    match given {
        None => Ok(default),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad(
            "limit",
            format!("limit={n} is out of range: ask for 1 to 500"),
        )),
    }
}

/// An RFC 3339 time as milliseconds.
fn time_ms(field: &str, text: Option<&str>) -> ApiResult<Option<i64>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    text.parse::<jiff::Timestamp>()
        .map(|t| Some(t.as_millisecond()))
        .map_err(|e| {
            ApiError::bad(
                field,
                format!(
                    "{field}={text:?} is not an RFC 3339 time such as 2026-11-28T09:00:00Z ({e})"
                ),
            )
        })
}

/// A job state's name (any case).
fn job_state(text: Option<&str>) -> ApiResult<Option<crate::state::JobState>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    text.to_ascii_uppercase()
        .parse::<crate::state::JobState>()
        .map(Some)
        .map_err(|_| {
            ApiError::bad(
                "state",
                format!(
                    "state={text:?} is not a job state: one of {}",
                    crate::state::JobState::ALL.map(|s| s.as_str()).join(", ")
                ),
            )
        })
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "redrelay",
        description = "Runs, jobs, schedules, triggers and state changes of a redrelay ledger. \
            Times are milliseconds since the Unix epoch unless said otherwise.",
    ),
    paths(
        runs::list, runs::show, runs::start, runs::cancel,
        jobs::list, jobs::show, jobs::submit, jobs::retry, jobs::cancel, jobs::results, jobs::rows,
        schedules::list, schedules::pause, schedules::resume, schedules::trigger,
        triggers::list, triggers::show, triggers::pause, triggers::resume,
        stream::inbox, stream::events,
    ),
    components(schemas(ErrorBody, crate::ledger::Change)),
    modifiers(&Security),
    security(("bearer" = [])),
    tags(
        (name = "runs", description = "Pipeline runs"),
        (name = "jobs", description = "Jobs: one SQL statement or a batch"),
        (name = "schedules", description = "Pipelines that run by themselves"),
        (name = "triggers", description = "Pipelines started by events"),
        (name = "events", description = "State changes and the inbox of consumed events"),
    )
)]
pub struct ApiDoc;

/// The bearer scheme, and the answers of the listener's guard and of the
/// read-only token, which every operation may give: written once here
/// rather than on each handler.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let reads = item.get.iter_mut().map(|op| (op, false));
            let changes = [
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            .map(|op| (op, true));
            for (op, changes_state) in reads.chain(changes) {
                let refused = if changes_state {
                    "Refused: a Host that is not the listener's, a request from another web \
                     site (Origin, Sec-Fetch-Site), or the read-only token"
                } else {
                    "Refused: a Host that is not the listener's"
                };
                op.responses
                    .responses
                    .entry("403".into())
                    .or_insert_with(|| error(refused).into());
                if changes_state && op.request_body.is_some() {
                    op.responses
                        .responses
                        .entry("415".into())
                        .or_insert_with(|| error("A body that is not application/json").into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_path() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for p in [
            "/api/v1/runs",
            "/api/v1/runs/{id}",
            "/api/v1/runs/{id}/cancel",
            "/api/v1/jobs",
            "/api/v1/jobs/{id}",
            "/api/v1/jobs/{id}/retry",
            "/api/v1/jobs/{id}/cancel",
            "/api/v1/jobs/{id}/results",
            "/api/v1/jobs/{id}/rows",
            "/api/v1/schedules",
            "/api/v1/schedules/{name}/pause",
            "/api/v1/schedules/{name}/resume",
            "/api/v1/schedules/{name}/trigger",
            "/api/v1/inbox",
            "/api/v1/events",
        ] {
            assert!(
                paths.iter().any(|k| k.as_str() == p),
                "{p} missing: {paths:?}"
            );
        }
    }

    #[test]
    fn nul_is_found_in_decoded_text_only() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"sql": "SELECT '\\u0000'", "params": {"d": "ok"}}"#).unwrap();
        assert_eq!(v["sql"], "SELECT '\\u0000'");
        assert_eq!(nul_in(&v, String::new()), None);
        let v: serde_json::Value =
            serde_json::from_str(r#"{"sqls": ["a", "b\u0000"], "params": {"d": "x"}}"#).unwrap();
        assert_eq!(nul_in(&v, String::new()).as_deref(), Some("sqls[1]"));
        let v: serde_json::Value = serde_json::from_str(r#"{"params": {"d": "\u0000"}}"#).unwrap();
        assert_eq!(nul_in(&v, String::new()).as_deref(), Some("params.d"));
    }

    #[test]
    fn the_document_says_what_the_guard_answers() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let submit = &doc["paths"]["/api/v1/jobs"]["post"]["responses"];
        assert!(
            submit["403"].is_object() && submit["415"].is_object(),
            "{submit}"
        );
        let list = &doc["paths"]["/api/v1/jobs"]["get"]["responses"];
        assert!(list["403"].is_object() && list["415"].is_null(), "{list}");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let e = bad_input(
            ".".into(),
            "unknown field `sqlx`, expected one of `sql`".into(),
        );
        assert_eq!(e.body.field.as_deref(), Some("sqlx"));
        // serde_path_to_error's path ends with the unknown field itself.
        let e = bad_input(
            "target.wg".into(),
            "unknown field `wg`, expected `workgroup`".into(),
        );
        assert_eq!(e.body.field.as_deref(), Some("target.wg"));
        let e = bad_input("max_attempts".into(), "invalid type".into());
        assert_eq!(e.body.field.as_deref(), Some("max_attempts"));
    }
}

//! The Data API's wire protocol (awsJson1_1): `POST /` with
//! `X-Amz-Target: RedshiftData.<Operation>`; errors are HTTP 400 with
//! `{"__type": ..., "message": ...}` and an `X-Amzn-Errortype` header.
//! Any SigV4 signature is accepted.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::engine::{
    ApiError, Engine, ErrorKind, ExecRequest, ExecutionMode, ListRequest, ResultFormat, SessionUse,
    Target,
};
use super::metadata::MetadataRequest;

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The HTTP router of the emulator.
pub(crate) fn router(engine: Arc<Engine>) -> Router {
    Router::new().fallback(handle).with_state(engine)
}

async fn handle(
    State(engine): State<Arc<Engine>>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let op = target.strip_prefix("RedshiftData.").unwrap_or("");
    let request_id = uuid::Uuid::new_v4().to_string();
    let latency = engine.api_latency(op);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let result = if method != axum::http::Method::POST {
        Err(ApiError {
            kind: ErrorKind::UnknownOperation,
            message: format!("The Data API takes POST requests, not {method}."),
            resource_id: None,
        })
    } else {
        dispatch(&engine, op, &body).await
    };
    let (status, body, error_type) = match result {
        Ok(v) => (StatusCode::OK, v, None),
        Err(e) => {
            tracing::debug!(operation = op, error = %e, "Request refused.");
            let mut b = json!({ "__type": e.kind.type_name(), "message": e.message });
            if let (Some(id), Some(m)) = (&e.resource_id, b.as_object_mut()) {
                m.insert("ResourceId".into(), json!(id));
            }
            let status =
                StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, b, Some(e.kind.type_name()))
        }
    };
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(t) = error_type {
        h.insert("x-amzn-errortype", HeaderValue::from_static(t));
    }
    resp
}

async fn dispatch(engine: &Arc<Engine>, op: &str, body: &[u8]) -> Result<Json, ApiError> {
    match op {
        "ExecuteStatement" => {
            let r: ExecuteInput = parse(body)?;
            let sql = r.sql.ok_or_else(|| missing("Sql"))?;
            if r.common.execution_mode.is_some() {
                return Err(ApiError::validation(
                    "ExecutionMode applies to BatchExecuteStatement only.",
                ));
            }
            let req = exec_request(vec![sql], false, r.common)?;
            engine.execute(req).await
        }
        "BatchExecuteStatement" => {
            let r: BatchInput = parse(body)?;
            let sqls = r.sqls.ok_or_else(|| missing("Sqls"))?;
            let req = exec_request(sqls, true, r.common)?;
            engine.execute(req).await
        }
        "DescribeStatement" => {
            let r: IdInput = parse(body)?;
            let id = r.id.ok_or_else(|| missing("Id"))?;
            engine
                .wait_for_end(&id, wait_secs(r.wait_time_seconds)?)
                .await?;
            engine.describe(&id)
        }
        "GetStatementResult" | "GetStatementResultV2" => {
            let r: ResultInput = parse(body)?;
            let format = if op == "GetStatementResult" {
                ResultFormat::Json
            } else {
                ResultFormat::Csv
            };
            let id = r.id.ok_or_else(|| missing("Id"))?;
            engine
                .wait_for_end(&id, wait_secs(r.wait_time_seconds)?)
                .await?;
            engine.result(&id, r.next_token.as_deref(), format)
        }
        "ListDatabases" | "ListSchemas" | "ListTables" | "DescribeTable" => {
            let r: MetadataRequest = parse(body)?;
            engine.metadata(op, r).await
        }
        "ListSessions" => {
            let r: ListSessionsInput = parse(body)?;
            engine.list_sessions(
                r.session_id.as_deref(),
                r.status.as_deref(),
                r.max_results,
                r.next_token.as_deref(),
                r.cluster_identifier.as_deref(),
                r.workgroup_name.as_deref(),
                r.database.as_deref(),
            )
        }
        "CancelStatement" => {
            let r: IdInput = parse(body)?;
            engine.cancel(&r.id.ok_or_else(|| missing("Id"))?)
        }
        "ListStatements" => {
            let r: ListRequest = parse(body)?;
            engine.list(&r)
        }
        "" => Err(ApiError {
            kind: ErrorKind::UnknownOperation,
            message:
                "Missing or malformed X-Amz-Target header (expected RedshiftData.<Operation>)."
                    .into(),
            resource_id: None,
        }),
        other => Err(ApiError {
            kind: ErrorKind::UnknownOperation,
            message: format!("Operation {other} is not supported by this emulator."),
            resource_id: None,
        }),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ApiError {
        kind: ErrorKind::Serialization,
        message: format!("Could not parse the request body: {e}"),
        resource_id: None,
    })
}

fn missing(field: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        lower_first(field)
    ))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ExecuteInput {
    sql: Option<String>,
    #[serde(flatten)]
    common: CommonInput,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchInput {
    sqls: Option<Vec<String>>,
    #[serde(flatten)]
    common: CommonInput,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonInput {
    cluster_identifier: Option<String>,
    workgroup_name: Option<String>,
    session_id: Option<String>,
    session_keep_alive_seconds: Option<i64>,
    secret_arn: Option<String>,
    db_user: Option<String>,
    database: Option<String>,
    with_event: Option<bool>,
    statement_name: Option<String>,
    parameters: Option<Vec<ParamInput>>,
    client_token: Option<String>,
    result_format: Option<String>,
    execution_mode: Option<String>,
    wait_time_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListSessionsInput {
    next_token: Option<String>,
    max_results: Option<i64>,
    session_id: Option<String>,
    status: Option<String>,
    /// Accepted and ignored: every caller sees every session.
    #[allow(dead_code)]
    role_level: Option<bool>,
    cluster_identifier: Option<String>,
    workgroup_name: Option<String>,
    database: Option<String>,
}

/// WaitTimeSeconds: 1..=30 in the model.
fn wait_secs(v: Option<i64>) -> Result<Option<u64>, ApiError> {
    match v {
        None => Ok(None),
        Some(n @ 1..=30) => Ok(u64::try_from(n).ok()),
        Some(n) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at 'waitTimeSeconds' failed to satisfy constraint: Member must have value between 1 and 30"
        ))),
    }
}

#[derive(Debug, Deserialize)]
struct ParamInput {
    name: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IdInput {
    id: Option<String>,
    wait_time_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResultInput {
    id: Option<String>,
    next_token: Option<String>,
    wait_time_seconds: Option<i64>,
}

fn exec_request(
    sqls: Vec<String>,
    is_batch: bool,
    c: CommonInput,
) -> Result<ExecRequest, ApiError> {
    let session = match (c.session_id, c.session_keep_alive_seconds) {
        (_, Some(k)) if !(0..=86_400).contains(&k) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{k}' at 'sessionKeepAliveSeconds' failed to satisfy constraint: Member must have value between 0 and 86400"
            )))
        }
        (Some(id), keep_alive) => SessionUse::Existing { id, keep_alive },
        (None, Some(0)) | (None, None) => SessionUse::None,
        (None, Some(k)) => SessionUse::New { keep_alive: k },
    };
    let in_session = matches!(session, SessionUse::Existing { .. });
    let target = match (c.workgroup_name, c.cluster_identifier) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "Specify exactly one of ClusterIdentifier, WorkgroupName or SessionId.",
            ))
        }
        (Some(_), None) | (None, Some(_)) if in_session => {
            return Err(ApiError::validation(
                "SessionId cannot be combined with ClusterIdentifier or WorkgroupName: the session already names its target.",
            ))
        }
        (Some(w), None) => {
            if w.len() < 3 || w.len() > 128 {
                return Err(ApiError::validation(
                    "WorkgroupName must be between 3 and 128 characters.",
                ));
            }
            Some(Target::Workgroup(w))
        }
        (None, Some(cl)) => {
            let ok = !cl.is_empty()
                && cl.len() <= 63
                && cl.starts_with(|ch: char| ch.is_ascii_lowercase())
                && cl
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                && !cl.ends_with('-')
                && !cl.contains("--");
            if !ok {
                return Err(ApiError::validation(format!(
                    "ClusterIdentifier {cl:?} must match [a-z][a-z0-9]*(-[a-z0-9]+)*."
                )));
            }
            Some(Target::Cluster(cl))
        }
        (None, None) if in_session => None,
        (None, None) => {
            return Err(ApiError::validation(
                "Either ClusterIdentifier, WorkgroupName or SessionId must be specified.",
            ))
        }
    };
    let database = c.database.filter(|d| !d.is_empty());
    if database.is_none() && !in_session {
        return Err(ApiError::validation(
            "Database is required with ClusterIdentifier or WorkgroupName.",
        ));
    }
    let execution_mode = match c.execution_mode.as_deref() {
        None | Some("TRANSACTION") => ExecutionMode::Transaction,
        Some("AUTO_COMMIT") => ExecutionMode::AutoCommit,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'executionMode' failed to satisfy constraint: Member must satisfy enum value set: [TRANSACTION, AUTO_COMMIT]"
            )))
        }
    };
    let wait = wait_secs(c.wait_time_seconds)?;
    if let Some(t) = &c.client_token {
        if t.is_empty() || t.len() > 64 {
            return Err(ApiError::validation(
                "ClientToken must be between 1 and 64 characters.",
            ));
        }
    }
    let result_format = match c.result_format.as_deref() {
        None | Some("JSON") => ResultFormat::Json,
        Some("CSV") => ResultFormat::Csv,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "ResultFormat must be JSON or CSV, got {other:?}."
            )))
        }
    };
    let params = match c.parameters {
        None => Vec::new(),
        Some(list) if list.is_empty() => {
            return Err(ApiError::validation(
                "Parameters must contain at least 1 parameter when given.",
            ))
        }
        Some(list) => list
            .into_iter()
            .map(|p| match (p.name, p.value) {
                (Some(n), Some(v)) => Ok((n, v)),
                (None, _) => Err(missing("Name")),
                (Some(n), None) => Err(ApiError::validation(format!(
                    "Parameter {n:?} has no value: the Data API takes no NULL parameter values."
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(ExecRequest {
        sqls,
        is_batch,
        target,
        database,
        db_user: c.db_user,
        secret_arn: c.secret_arn,
        statement_name: c.statement_name,
        params,
        with_event: c.with_event.unwrap_or(false),
        client_token: c.client_token,
        result_format,
        session,
        execution_mode,
        wait,
    })
}

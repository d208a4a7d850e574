//! What the engine keeps: statements (a parent and its sub-statements),
//! sessions, and the requests that create and list them.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tokio_util::sync::CancellationToken;

use crate::faults::StatementPlan;
use crate::warehouse::{Conn, ResultSet};

/// Statement states, as the Data API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Submitted,
    Started,
    Finished,
    Aborted,
    Failed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "SUBMITTED",
            Status::Started => "STARTED",
            Status::Finished => "FINISHED",
            Status::Aborted => "ABORTED",
            Status::Failed => "FAILED",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Status::Finished | Status::Aborted | Status::Failed)
    }
}

/// Where a statement runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Workgroup(String),
    Cluster(String),
}

/// JSON (GetStatementResult) or CSV (GetStatementResultV2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultFormat {
    Json,
    Csv,
}

impl ResultFormat {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ResultFormat::Json => "JSON",
            ResultFormat::Csv => "CSV",
        }
    }
}

/// How a call uses sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionUse {
    None,
    /// SessionKeepAliveSeconds without SessionId: a new session.
    New {
        keep_alive: i64,
    },
    /// SessionId (and maybe a new keep-alive).
    Existing {
        id: String,
        keep_alive: Option<i64>,
    },
}

/// ExecutionMode of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecutionMode {
    /// One transaction for every SQL (the default).
    Transaction,
    /// Each SQL committed on its own; a failure does not undo the others.
    AutoCommit,
}

impl ExecutionMode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Transaction => "TRANSACTION",
            ExecutionMode::AutoCommit => "AUTO_COMMIT",
        }
    }
}

/// A validated ExecuteStatement or BatchExecuteStatement call.
#[derive(Debug, Clone)]
pub(crate) struct ExecRequest {
    pub sqls: Vec<String>,
    pub is_batch: bool,
    /// None when the call names a SessionId (the session has the target).
    pub target: Option<Target>,
    pub database: Option<String>,
    pub db_user: Option<String>,
    pub secret_arn: Option<String>,
    pub statement_name: Option<String>,
    pub params: Vec<(String, String)>,
    pub with_event: bool,
    pub client_token: Option<String>,
    pub result_format: ResultFormat,
    pub session: SessionUse,
    pub execution_mode: ExecutionMode,
    /// WaitTimeSeconds: answer once the statement ends or after this long.
    pub wait: Option<u64>,
}

/// A ListStatements call.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListRequest {
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
    /// A prefix of statement names.
    pub statement_name: Option<String>,
    pub status: Option<String>,
    /// Accepted and ignored: every caller sees every statement.
    #[allow(dead_code)]
    pub role_level: Option<bool>,
    pub database: Option<String>,
    pub cluster_identifier: Option<String>,
    pub workgroup_name: Option<String>,
}

/// One SQL of a statement (the only one unless it is a batch).
#[derive(Debug)]
pub(super) struct Sub {
    pub(super) id: String,
    pub(super) sql: String,
    pub(super) status: Status,
    pub(super) error: Option<String>,
    pub(super) created_ms: i64,
    pub(super) updated_ms: i64,
    pub(super) started_ms: Option<i64>,
    pub(super) ended_ms: Option<i64>,
    pub(super) query_id: i64,
    /// RedshiftQueryUuid.
    pub(super) query_uuid: String,
    pub(super) has_result_set: bool,
    pub(super) result_rows: i64,
    pub(super) result_size: i64,
    pub(super) result: Option<Arc<ResultSet>>,
}

#[derive(Debug)]
pub(super) struct Statement {
    pub(super) id: String,
    pub(super) req: ExecRequest,
    pub(super) target: Target,
    pub(super) database: String,
    pub(super) session_id: Option<String>,
    pub(super) status: Status,
    pub(super) error: Option<String>,
    pub(super) created_ms: i64,
    pub(super) updated_ms: i64,
    pub(super) started_ms: Option<i64>,
    pub(super) ended_ms: Option<i64>,
    pub(super) subs: Vec<Sub>,
    pub(super) cancel: CancellationToken,
    pub(super) plan: StatementPlan,
}

impl Statement {
    pub(super) fn query_id(&self) -> i64 {
        self.subs
            .iter()
            .filter(|s| s.started_ms.is_some())
            .map(|s| s.query_id)
            .next_back()
            .unwrap_or(0)
    }

    pub(super) fn result_rows(&self) -> i64 {
        if self.status != Status::Finished {
            return -1;
        }
        self.subs.iter().map(|s| s.result_rows.max(0)).sum()
    }

    pub(super) fn result_size(&self) -> i64 {
        if self.status != Status::Finished {
            return -1;
        }
        self.subs.iter().map(|s| s.result_size.max(0)).sum()
    }

    pub(super) fn query_parameters(&self) -> Option<Json> {
        (!self.req.params.is_empty()).then(|| {
            Json::Array(
                self.req
                    .params
                    .iter()
                    .map(|(n, v)| json!({"name": n, "value": v}))
                    .collect(),
            )
        })
    }
}

/// What one execution runs.
pub(super) struct Run<'a> {
    pub(super) id: &'a str,
    pub(super) sqls: &'a [String],
    pub(super) params: &'a [(String, String)],
    pub(super) cancel: &'a CancellationToken,
    /// Abort (a fault) instead of committing.
    pub(super) inject_abort: bool,
}

/// How an execution ended.
pub(super) enum Outcome {
    Finished,
    /// Sub-statement `at` failed with `error`.
    Failed {
        at: usize,
        error: String,
    },
    /// Aborted while sub-statement `at` ran (or before it).
    Aborted {
        at: usize,
    },
    /// AUTO_COMMIT batch: every SQL ran on its own; the first error, if any.
    AutoCommitted {
        first_error: Option<String>,
    },
}

/// Session states, as the Data API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionStatus {
    Available,
    Busy,
    Closed,
}

impl SessionStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Available => "AVAILABLE",
            SessionStatus::Busy => "BUSY",
            SessionStatus::Closed => "CLOSED",
        }
    }
}

/// A session's own warehouse connection (opened on first use).
pub(super) type SessionConn = Arc<tokio::sync::Mutex<Option<Conn>>>;

#[derive(Debug)]
pub(super) struct Session {
    pub(super) id: String,
    pub(super) target: Target,
    pub(super) database: String,
    pub(super) db_user: Option<String>,
    pub(super) keep_alive_secs: i64,
    pub(super) status: SessionStatus,
    pub(super) created_ms: i64,
    pub(super) updated_ms: i64,
    /// When an AVAILABLE session closes.
    pub(super) expires_ms: Option<i64>,
    pub(super) current: Option<String>,
    pub(super) pid: i64,
    pub(super) conn: SessionConn,
}

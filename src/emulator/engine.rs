//! The statement engine: keeps every statement and its results, runs SQL on
//! the warehouse (one SQLite connection, one transaction per statement or
//! batch, executions serialized), and produces the Data API's answers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::events::{EventMsg, EventSender};
use super::faults::{lock, ApiFault, Counters, Faults, StatementPlan};
use super::record::Recorder;
use super::redshift::{self, Plan};
use super::sql::{self, Value};
use super::warehouse::{ColumnMeta, Conn, ResultSet, SubResult, WarehouseSpec};
use super::{metadata, s3io};

/// Longest SQL text accepted (the Data API's limit is 100 KB).
const MAX_SQL_BYTES: usize = 100 * 1024;
/// Longest StatementName accepted.
const MAX_STATEMENT_NAME: usize = 500;

/// An API error: its `__type`, message, and the resource it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub(crate) struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub resource_id: Option<String>,
}

/// The error types the emulator answers (`__type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Validation,
    ResourceNotFound,
    ActiveStatementsExceeded,
    Throttling,
    Serialization,
    UnknownOperation,
    ActiveWaitingRequestsExceeded,
    Internal,
}

impl ErrorKind {
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ActiveStatementsExceeded => "ActiveStatementsExceededException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::ActiveWaitingRequestsExceeded => "ActiveWaitingRequestsExceededException",
            ErrorKind::Internal => "InternalServerException",
        }
    }

    /// HTTP status: 500 for the service's own failures, 400 otherwise.
    pub(crate) fn http_status(self) -> u16 {
        match self {
            ErrorKind::Internal => 500,
            _ => 400,
        }
    }
}

impl ApiError {
    pub(crate) fn validation(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorKind::Validation,
            message: message.into(),
            resource_id: None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorKind::Internal,
            message: message.into(),
            resource_id: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>, id: &str) -> ApiError {
        ApiError {
            kind: ErrorKind::ResourceNotFound,
            message: message.into(),
            resource_id: Some(id.to_string()),
        }
    }
}

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
    fn as_str(self) -> &'static str {
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
    fn as_str(self) -> &'static str {
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

/// Engine settings.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub page_size: usize,
    pub result_ttl_ms: i64,
    pub client_token_ttl_ms: i64,
    pub account: String,
    /// At most this many calls wait (WaitTimeSeconds) on one statement.
    pub max_waiting: usize,
}

/// One SQL of a statement (the only one unless it is a batch).
#[derive(Debug)]
struct Sub {
    id: String,
    sql: String,
    status: Status,
    error: Option<String>,
    created_ms: i64,
    updated_ms: i64,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
    query_id: i64,
    /// RedshiftQueryUuid.
    query_uuid: String,
    has_result_set: bool,
    result_rows: i64,
    result_size: i64,
    result: Option<Arc<ResultSet>>,
}

#[derive(Debug)]
struct Statement {
    id: String,
    req: ExecRequest,
    target: Target,
    database: String,
    session_id: Option<String>,
    status: Status,
    error: Option<String>,
    created_ms: i64,
    updated_ms: i64,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
    subs: Vec<Sub>,
    cancel: CancellationToken,
    plan: StatementPlan,
}

impl Statement {
    fn query_id(&self) -> i64 {
        self.subs
            .iter()
            .filter(|s| s.started_ms.is_some())
            .map(|s| s.query_id)
            .next_back()
            .unwrap_or(0)
    }

    fn result_rows(&self) -> i64 {
        if self.status != Status::Finished {
            return -1;
        }
        self.subs.iter().map(|s| s.result_rows.max(0)).sum()
    }

    fn result_size(&self) -> i64 {
        if self.status != Status::Finished {
            return -1;
        }
        self.subs.iter().map(|s| s.result_size.max(0)).sum()
    }

    fn query_parameters(&self) -> Option<Json> {
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
struct Run<'a> {
    id: &'a str,
    sqls: &'a [String],
    params: &'a [(String, String)],
    cancel: &'a CancellationToken,
    /// Abort (a fault) instead of committing.
    inject_abort: bool,
}

/// How an execution ended.
enum Outcome {
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
    fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Available => "AVAILABLE",
            SessionStatus::Busy => "BUSY",
            SessionStatus::Closed => "CLOSED",
        }
    }
}

/// A session's own warehouse connection (opened on first use).
type SessionConn = Arc<tokio::sync::Mutex<Option<Conn>>>;

#[derive(Debug)]
struct Session {
    id: String,
    target: Target,
    database: String,
    db_user: Option<String>,
    keep_alive_secs: i64,
    status: SessionStatus,
    created_ms: i64,
    updated_ms: i64,
    /// When an AVAILABLE session closes.
    expires_ms: Option<i64>,
    current: Option<String>,
    pid: i64,
    conn: SessionConn,
}

/// Ended statement ids forgotten (evicted) lately, so that their results
/// can still be said to have expired. Bounded.
const FORGOTTEN_KEPT: usize = 100_000;

#[derive(Default)]
struct Store {
    statements: HashMap<String, Statement>,
    /// seq -> id, for ListStatements (newest first).
    order: BTreeMap<u64, String>,
    /// ClientToken -> (statement id, when first seen).
    tokens: HashMap<String, (String, i64)>,
    next_seq: u64,
    active: usize,
    sessions: HashMap<String, Session>,
    session_order: BTreeMap<u64, String>,
    /// Calls waiting (WaitTimeSeconds) per statement id.
    waiting: HashMap<String, usize>,
    forgotten: HashSet<String>,
    forgotten_order: VecDeque<String>,
}

/// A clock in epoch milliseconds (passed in, so tests could fix it).
pub(crate) type Clock = fn() -> i64;

/// The system clock.
pub(crate) fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the engine reaches outside the warehouse (the standard AWS
/// endpoint chain: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SECRETS_MANAGER).
#[derive(Clone)]
pub(crate) struct Outside {
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

pub(crate) struct Engine {
    cfg: EngineConfig,
    clock: Clock,
    store: Mutex<Store>,
    warehouse: tokio::sync::Mutex<Conn>,
    warehouse_spec: WarehouseSpec,
    /// The catalog operations' own connection (opened on first use), so
    /// that they see what is committed without waiting for a running
    /// statement.
    catalog: tokio::sync::Mutex<Option<Conn>>,
    outside: Outside,
    /// Woken whenever a statement ends.
    changed: Notify,
    next_pid: AtomicI64,
    events: EventSender,
    recorder: Arc<Recorder>,
    faults: Arc<Faults>,
    query_ids: AtomicI64,
    running: AtomicUsize,
    idle: Notify,
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: EngineConfig,
        clock: Clock,
        warehouse: Conn,
        warehouse_spec: WarehouseSpec,
        outside: Outside,
        events: EventSender,
        recorder: Arc<Recorder>,
        faults: Arc<Faults>,
    ) -> Engine {
        Engine {
            cfg,
            clock,
            store: Mutex::new(Store::default()),
            warehouse: tokio::sync::Mutex::new(warehouse),
            warehouse_spec,
            catalog: tokio::sync::Mutex::new(None),
            outside,
            changed: Notify::new(),
            next_pid: AtomicI64::new(1_073_741_824 + i64::from(std::process::id())),
            events,
            recorder,
            faults,
            query_ids: AtomicI64::new(1000),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The process id a statement runs under: its session's, or the
    /// emulator's own for statements outside sessions.
    fn pid_of(store: &Store, st: &Statement) -> i64 {
        st.session_id
            .as_ref()
            .and_then(|sid| store.sessions.get(sid))
            .map_or(i64::from(std::process::id()), |s| s.pid)
    }

    /// ExecuteStatement / BatchExecuteStatement output: every field of the
    /// model (Status, RedshiftPid, HasResultSet once ended, SessionId).
    fn exec_output(&self, store: &Store, st: &Statement) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("Id".into(), json!(st.id));
        m.insert("CreatedAt".into(), json!(secs(st.created_ms)));
        m.insert("Database".into(), json!(st.database));
        put_target(&mut m, &st.target);
        if let Some(u) = &st.req.db_user {
            m.insert("DbUser".into(), json!(u));
        }
        put_secret_and_session(&mut m, st);
        m.insert("Status".into(), json!(st.status.as_str()));
        m.insert("RedshiftPid".into(), json!(Self::pid_of(store, st)));
        // Once ended, what the statement returned; before, what its text
        // says (a query returns rows), as the Data API answers at submission.
        let has_result_set = if st.status.is_terminal() {
            Some(st.subs.iter().any(|s| s.has_result_set))
        } else {
            st.subs
                .iter()
                .map(|s| super::redshift::returns_rows(&s.sql))
                .try_fold(false, |any, r| r.map(|r| any || r))
        };
        if let Some(has) = has_result_set {
            m.insert("HasResultSet".into(), json!(has));
        }
        Json::Object(m)
    }

    /// The configured latency of one API operation.
    pub(crate) fn api_latency(&self, operation: &str) -> Duration {
        self.faults.api_latency(operation)
    }

    /// Checks that a SecretArn names a secret of Secrets Manager.
    pub(crate) async fn check_secret(&self, arn: &str) -> Result<(), ApiError> {
        match self
            .outside
            .secrets
            .describe_secret()
            .secret_id(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                if not_found {
                    Err(ApiError::validation(format!(
                        "Secrets Manager can't find the specified secret: {arn}"
                    )))
                } else {
                    Err(ApiError::validation(format!(
                        "Cannot read SecretArn {arn} from Secrets Manager ({}); set AWS_ENDPOINT_URL_SECRETS_MANAGER for a local one.",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    )))
                }
            }
        }
    }

    /// ExecuteStatement / BatchExecuteStatement: records the statement and
    /// starts it; answers with its id at once, or when it ends
    /// (WaitTimeSeconds).
    pub(crate) async fn execute(self: &Arc<Self>, req: ExecRequest) -> Result<Json, ApiError> {
        validate_request(&req)?;
        if let Some(arn) = &req.secret_arn {
            self.check_secret(arn).await?;
        }
        let wait = req.wait;
        let id = self.admit(req)?;
        if let Some(secs) = wait {
            self.wait_for_end(&id, Some(secs)).await?;
        }
        let store = lock(&self.store);
        let st = store
            .statements
            .get(&id)
            .ok_or_else(|| ApiError::not_found("Query does not exist.", &id))?;
        Ok(self.exec_output(&store, st))
    }

    /// Records a new statement and starts it (or finds the one its
    /// ClientToken names); returns its id.
    fn admit(self: &Arc<Self>, req: ExecRequest) -> Result<String, ApiError> {
        let now = self.now();
        let mut store = lock(&self.store);
        // Random throttling happens in front of everything, like a gateway;
        // max_active is checked below, after the idempotency check, so that
        // a retried call of a statement already admitted is answered.
        let random_fault = self.faults.plan_api_random();
        if let Some((fault, message)) = random_fault {
            drop(store);
            self.recorder.write(&json!({
                "kind": "rejected", "at_ms": now, "error": api_fault_error(fault, message.clone()).kind.type_name(),
                "client_token": req.client_token, "statement_name": req.statement_name,
            }));
            return Err(api_fault_error(fault, message));
        }
        if let Some(token) = &req.client_token {
            if let Some((id, seen)) = store.tokens.get(token).cloned() {
                if now - seen < self.cfg.client_token_ttl_ms && store.statements.contains_key(&id) {
                    drop(store);
                    tracing::info!(statement_id = %id, "ClientToken seen before: the statement is not run again.");
                    self.recorder.write(&json!({
                        "kind": "replay", "at_ms": now, "client_token": token, "id": id,
                    }));
                    return Ok(id);
                }
            }
        }
        if let Some(max) = self.faults.config.api.max_active {
            if store.active >= max {
                drop(store);
                Counters::bump(&self.faults.counters.api_max_active_rejected);
                let err = ApiError {
                    kind: ErrorKind::ActiveStatementsExceeded,
                    message: format!("Active statements exceeded the allowed quota ({max})."),
                    resource_id: None,
                };
                self.recorder.write(&json!({
                    "kind": "rejected", "at_ms": now, "error": err.kind.type_name(),
                    "client_token": req.client_token, "statement_name": req.statement_name,
                }));
                return Err(err);
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        // The session the statement runs in, and so its target.
        let (target, database, session_id) = match &req.session {
            SessionUse::Existing {
                id: sid,
                keep_alive,
            } => {
                let session = store.sessions.get_mut(sid).ok_or_else(|| {
                    ApiError::not_found(format!("Session {sid} does not exist."), sid)
                })?;
                match session.status {
                    SessionStatus::Closed => {
                        return Err(ApiError::validation(format!(
                            "Session {sid} is closed: it ended after {} seconds without a statement.",
                            session.keep_alive_secs
                        )))
                    }
                    SessionStatus::Busy => {
                        return Err(ApiError::validation(format!(
                            "Session {sid} is busy running statement {}: a session runs one statement at a time.",
                            session.current.as_deref().unwrap_or("?")
                        )))
                    }
                    SessionStatus::Available => {}
                }
                if let Some(k) = keep_alive {
                    session.keep_alive_secs = *k;
                }
                session.status = SessionStatus::Busy;
                session.current = Some(id.clone());
                session.expires_ms = None;
                session.updated_ms = now;
                (
                    session.target.clone(),
                    session.database.clone(),
                    Some(sid.clone()),
                )
            }
            other => {
                let (Some(target), Some(database)) = (req.target.clone(), req.database.clone())
                else {
                    return Err(ApiError::validation(
                        "Either ClusterIdentifier, WorkgroupName or SessionId must be specified, with a Database.",
                    ));
                };
                let session_id = match other {
                    SessionUse::New { keep_alive } => {
                        let sid = uuid::Uuid::new_v4().to_string();
                        store.next_seq += 1;
                        let seq = store.next_seq;
                        store.session_order.insert(seq, sid.clone());
                        store.sessions.insert(
                            sid.clone(),
                            Session {
                                id: sid.clone(),
                                target: target.clone(),
                                database: database.clone(),
                                db_user: req.db_user.clone(),
                                keep_alive_secs: *keep_alive,
                                status: SessionStatus::Busy,
                                created_ms: now,
                                updated_ms: now,
                                expires_ms: None,
                                current: Some(id.clone()),
                                pid: self.next_pid.fetch_add(1, Ordering::Relaxed),
                                conn: Arc::new(tokio::sync::Mutex::new(None)),
                            },
                        );
                        Some(sid)
                    }
                    _ => None,
                };
                (target, database, session_id)
            }
        };
        let plan = self
            .faults
            .plan_statement(req.statement_name.as_deref(), &req.sqls);
        let subs = req
            .sqls
            .iter()
            .enumerate()
            .map(|(i, sql)| Sub {
                id: if req.is_batch {
                    format!("{id}:{}", i + 1)
                } else {
                    id.clone()
                },
                sql: sql.clone(),
                status: Status::Submitted,
                error: None,
                created_ms: now,
                updated_ms: now,
                started_ms: None,
                ended_ms: None,
                query_id: 0,
                query_uuid: uuid::Uuid::new_v4().to_string(),
                has_result_set: false,
                result_rows: -1,
                result_size: -1,
                result: None,
            })
            .collect();
        store.next_seq += 1;
        let seq = store.next_seq;
        if let Some(token) = &req.client_token {
            store.tokens.insert(token.clone(), (id.clone(), now));
        }
        let st = Statement {
            id: id.clone(),
            req,
            target,
            database,
            session_id,
            status: Status::Submitted,
            error: None,
            created_ms: now,
            updated_ms: now,
            started_ms: None,
            ended_ms: None,
            subs,
            cancel: CancellationToken::new(),
            plan,
        };
        tracing::info!(
            statement_id = %id,
            statement_name = st.req.statement_name.as_deref().unwrap_or(""),
            sqls = st.subs.len(),
            session = st.session_id.as_deref().unwrap_or(""),
            faults = !st.plan.is_empty(),
            "Statement submitted."
        );
        store.order.insert(seq, id.clone());
        store.statements.insert(id.clone(), st);
        store.active += 1;
        drop(store);
        self.running.fetch_add(1, Ordering::SeqCst);
        let engine = Arc::clone(self);
        let run_id = id.clone();
        tokio::spawn(async move {
            engine.run_statement(&run_id).await;
            if engine.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                engine.idle.notify_waiters();
            }
        });
        Ok(id)
    }

    /// WaitTimeSeconds: returns once the statement (parent of `id`) has
    /// ended, or after `secs`. At most `max_waiting` calls wait on one
    /// statement (ActiveWaitingRequestsExceededException beyond).
    pub(crate) async fn wait_for_end(&self, id: &str, secs: Option<u64>) -> Result<(), ApiError> {
        let Some(secs) = secs else {
            return Ok(());
        };
        check_id(id)?;
        let parent = id.split_once(':').map_or(id, |(p, _)| p).to_string();
        {
            let mut store = lock(&self.store);
            find(&store, id)?;
            let n = store.waiting.entry(parent.clone()).or_insert(0);
            if *n >= self.cfg.max_waiting {
                return Err(ApiError {
                    kind: ErrorKind::ActiveWaitingRequestsExceeded,
                    message: format!(
                        "The number of active requests with WaitTimeSeconds for statement {parent} exceeds the limit ({}).",
                        self.cfg.max_waiting
                    ),
                    resource_id: None,
                });
            }
            *n += 1;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let notified = self.changed.notified();
            let ended = {
                let store = lock(&self.store);
                store
                    .statements
                    .get(&parent)
                    .is_none_or(|st| st.status.is_terminal())
            };
            if ended || tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let mut store = lock(&self.store);
        if let Some(n) = store.waiting.get_mut(&parent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                store.waiting.remove(&parent);
            }
        }
        Ok(())
    }

    /// Runs one statement to its end.
    async fn run_statement(self: &Arc<Self>, id: &str) {
        let Some((cancel, plan, sqls, params, mode, is_batch, session)) = ({
            let store = lock(&self.store);
            store.statements.get(id).map(|st| {
                (
                    st.cancel.clone(),
                    st.plan.clone(),
                    st.req.sqls.clone(),
                    st.req.params.clone(),
                    st.req.execution_mode,
                    st.req.is_batch,
                    st.session_id
                        .as_ref()
                        .and_then(|sid| store.sessions.get(sid))
                        .map(|s| Arc::clone(&s.conn)),
                )
            })
        }) else {
            return;
        };
        if plan.hold_ms > 0 {
            if !self.mark_started(id) {
                return;
            }
            Counters::bump(&self.faults.counters.statements_held);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(plan.hold_ms)) => {}
                _ = cancel.cancelled() => {
                    self.finish(id, Outcome::Aborted { at: 0 });
                    return;
                }
            }
        }
        let mut guard = match session {
            Some(slot) => ConnGuard::Session(slot.lock_owned().await),
            None => ConnGuard::Main(self.warehouse.lock().await),
        };
        let conn = match guard.conn(&self.warehouse_spec).await {
            Ok(c) => c,
            Err(error) => {
                self.finish(id, Outcome::Failed { at: 0, error });
                return;
            }
        };
        if cancel.is_cancelled() {
            self.finish(id, Outcome::Aborted { at: 0 });
            return;
        }
        if !self.mark_started(id) {
            return;
        }
        if let Some(error) = plan.fail {
            Counters::bump(&self.faults.counters.statements_failed);
            self.finish(id, Outcome::Failed { at: 0, error });
            return;
        }
        let run = Run {
            id,
            sqls: &sqls,
            params: &params,
            cancel: &cancel,
            inject_abort: plan.abort,
        };
        let outcome = if mode == ExecutionMode::AutoCommit && is_batch {
            self.run_auto_commit(conn, run).await
        } else {
            self.run_in_transaction(conn, run, is_batch).await
        };
        drop(guard);
        self.finish(id, outcome);
    }

    /// AUTO_COMMIT batch: each SQL in a transaction of its own; a failure
    /// is recorded on its sub-statement and the others still run.
    async fn run_auto_commit(&self, conn: &mut Conn, run: Run<'_>) -> Outcome {
        let Run {
            id,
            sqls,
            params,
            cancel,
            inject_abort,
        } = run;
        conn.set_cancel(Some(cancel)).await;
        let mut first_error = None;
        for (i, sql) in sqls.iter().enumerate() {
            if cancel.is_cancelled() || (inject_abort && i + 1 == sqls.len()) {
                if inject_abort {
                    Counters::bump(&self.faults.counters.statements_aborted);
                }
                conn.set_cancel(None).await;
                return Outcome::Aborted { at: i };
            }
            let query_id = self.query_ids.fetch_add(1, Ordering::Relaxed);
            self.mark_sub_started(id, i, query_id);
            let ran = match conn.raw("BEGIN").await {
                Ok(()) => self.run_one(conn, sql, params, false).await,
                Err(e) => Err(e),
            };
            let ran = match ran {
                Ok(res) => conn.raw("COMMIT").await.map(|()| res),
                Err(e) => Err(e),
            };
            match ran {
                Ok(res) => self.mark_sub_done(id, i, res),
                Err(error) => {
                    let _ = conn.raw("ROLLBACK").await;
                    self.mark_sub_failed(id, i, &error);
                    first_error.get_or_insert(error);
                }
            }
        }
        conn.set_cancel(None).await;
        Outcome::AutoCommitted { first_error }
    }

    async fn run_in_transaction(&self, conn: &mut Conn, run: Run<'_>, is_batch: bool) -> Outcome {
        let Run {
            id,
            sqls,
            params,
            cancel,
            inject_abort,
        } = run;
        if let Err(error) = conn.raw("BEGIN").await {
            return Outcome::Failed { at: 0, error };
        }
        conn.set_cancel(Some(cancel)).await;
        let mut outcome = Outcome::Finished;
        for (i, sql) in sqls.iter().enumerate() {
            if cancel.is_cancelled() {
                outcome = Outcome::Aborted { at: i };
                break;
            }
            let query_id = self.query_ids.fetch_add(1, Ordering::Relaxed);
            self.mark_sub_started(id, i, query_id);
            match self.run_one(conn, sql, params, is_batch).await {
                Ok(res) => self.mark_sub_done(id, i, res),
                Err(error) => {
                    outcome = if cancel.is_cancelled() {
                        Outcome::Aborted { at: i }
                    } else {
                        Outcome::Failed { at: i, error }
                    };
                    break;
                }
            }
        }
        if matches!(outcome, Outcome::Finished) && (inject_abort || cancel.is_cancelled()) {
            if inject_abort {
                Counters::bump(&self.faults.counters.statements_aborted);
            }
            outcome = Outcome::Aborted { at: sqls.len() };
        }
        if matches!(outcome, Outcome::Finished) {
            if let Err(error) = conn.raw("COMMIT").await {
                outcome = Outcome::Failed {
                    at: sqls.len().saturating_sub(1),
                    error,
                };
            }
        }
        if !matches!(outcome, Outcome::Finished) {
            // SQLite may have rolled back already (after an interrupt): an
            // error here only means there was nothing left to undo.
            let _ = conn.raw("ROLLBACK").await;
        }
        conn.set_cancel(None).await;
        outcome
    }

    /// Runs one SQL of a statement inside the open transaction:
    /// Redshift SQL translated for SQLite, or a plan of the engine's own
    /// (schemas, databases, COPY, UNLOAD).
    async fn run_one(
        &self,
        conn: &mut Conn,
        sql_text: &str,
        params: &[(String, String)],
        in_transaction_block: bool,
    ) -> Result<SubResult, String> {
        let done = |rows: i64| SubResult {
            result: None,
            rows,
            size: 0,
        };
        match redshift::plan(sql_text, conn.backend(), params)? {
            Plan::Sql {
                sql,
                params: names,
                dml,
            } => conn.run(sql, &names, params, dml).await,
            Plan::CreateSchema {
                name,
                if_not_exists,
            } => {
                metadata::create_schema(conn, &name, if_not_exists).await?;
                Ok(done(0))
            }
            Plan::DropSchema {
                names,
                if_exists,
                cascade,
            } => {
                for name in names {
                    metadata::drop_schema(conn, &name, if_exists, cascade).await?;
                }
                Ok(done(0))
            }
            Plan::CreateDatabase { name } => {
                if in_transaction_block {
                    return Err(
                        "ERROR: CREATE DATABASE cannot run inside a transaction block".to_string(),
                    );
                }
                metadata::create_database(conn, &name).await?;
                Ok(done(0))
            }
            Plan::Copy(spec) => {
                let rows = s3io::copy(&self.outside.s3, conn, &spec).await?;
                Ok(done(rows))
            }
            Plan::Unload(spec) => {
                let rows = conn
                    .query_rows(spec.query.clone(), &spec.params, params)
                    .await?;
                let n = s3io::unload(&self.outside.s3, &spec, &rows).await?;
                Ok(done(n))
            }
        }
    }

    /// SUBMITTED -> STARTED; false when the statement already ended
    /// (cancelled while it waited).
    fn mark_started(&self, id: &str) -> bool {
        let now = self.now();
        let mut store = lock(&self.store);
        let Some(st) = store.statements.get_mut(id) else {
            return false;
        };
        if st.status.is_terminal() {
            return false;
        }
        if st.status == Status::Submitted {
            st.status = Status::Started;
            st.started_ms = Some(now);
            st.updated_ms = now;
        }
        true
    }

    fn mark_sub_started(&self, id: &str, i: usize, query_id: i64) {
        let now = self.now();
        let mut store = lock(&self.store);
        if let Some(sub) = store.statements.get_mut(id).and_then(|s| s.subs.get_mut(i)) {
            sub.status = Status::Started;
            sub.started_ms = Some(now);
            sub.updated_ms = now;
            sub.query_id = query_id;
        }
    }

    fn mark_sub_done(&self, id: &str, i: usize, res: SubResult) {
        let now = self.now();
        let mut store = lock(&self.store);
        if let Some(st) = store.statements.get_mut(id) {
            let is_batch = st.req.is_batch;
            if let Some(sub) = st.subs.get_mut(i) {
                // A lone statement is FINISHED only once committed; a batch
                // reports each sub-statement as it completes.
                if is_batch {
                    sub.status = Status::Finished;
                    sub.ended_ms = Some(now);
                }
                sub.updated_ms = now;
                sub.has_result_set = res.result.is_some();
                sub.result_rows = res.rows;
                sub.result_size = res.size;
                sub.result = res.result.map(Arc::new);
            }
        }
    }

    /// A sub-statement of an AUTO_COMMIT batch failed (the others go on).
    fn mark_sub_failed(&self, id: &str, i: usize, error: &str) {
        let now = self.now();
        let mut store = lock(&self.store);
        if let Some(sub) = store.statements.get_mut(id).and_then(|s| s.subs.get_mut(i)) {
            sub.status = Status::Failed;
            sub.error = Some(error.to_string());
            sub.ended_ms = Some(now);
            sub.updated_ms = now;
        }
    }

    /// Moves a statement to its terminal state (once), then records it and
    /// sends its event.
    fn finish(&self, id: &str, outcome: Outcome) {
        let now = self.now();
        let (line, event) = {
            let mut store = lock(&self.store);
            let Some(st) = store.statements.get_mut(id) else {
                return;
            };
            if st.status.is_terminal() {
                return;
            }
            match outcome {
                Outcome::AutoCommitted { first_error } => {
                    st.status = if first_error.is_some() {
                        Status::Failed
                    } else {
                        Status::Finished
                    };
                    st.error = first_error;
                    for sub in &mut st.subs {
                        if !sub.status.is_terminal() {
                            sub.status = Status::Finished;
                            sub.ended_ms = Some(now);
                            sub.updated_ms = now;
                        }
                    }
                }
                Outcome::Finished => {
                    st.status = Status::Finished;
                    for sub in &mut st.subs {
                        if !sub.status.is_terminal() {
                            sub.status = Status::Finished;
                            sub.ended_ms = Some(now);
                            sub.updated_ms = now;
                        }
                    }
                }
                Outcome::Failed { at, error } => {
                    st.status = Status::Failed;
                    st.error = Some(error.clone());
                    for (i, sub) in st.subs.iter_mut().enumerate() {
                        if i == at {
                            sub.status = Status::Failed;
                            sub.error = Some(error.clone());
                            sub.result = None;
                            sub.has_result_set = false;
                            sub.result_rows = -1;
                            sub.result_size = -1;
                        } else if i > at || !sub.status.is_terminal() {
                            sub.status = Status::Aborted;
                        } else {
                            continue;
                        }
                        sub.ended_ms = Some(now);
                        sub.updated_ms = now;
                    }
                }
                Outcome::Aborted { at } => {
                    st.status = Status::Aborted;
                    st.error = Some("Query cancelled on user's request".to_string());
                    let is_batch = st.req.is_batch;
                    for (i, sub) in st.subs.iter_mut().enumerate() {
                        if !is_batch || i >= at || !sub.status.is_terminal() {
                            sub.status = Status::Aborted;
                            sub.result = None;
                            sub.has_result_set = false;
                            sub.result_rows = -1;
                            sub.result_size = -1;
                            sub.ended_ms = Some(now);
                            sub.updated_ms = now;
                        }
                    }
                }
            }
            st.ended_ms = Some(now);
            st.updated_ms = now;
            let line = statement_line(st);
            let event = st.req.with_event.then(|| EventMsg {
                statement_id: st.id.clone(),
                statement_name: st.req.statement_name.clone().unwrap_or_default(),
                redshift_query_id: st.query_id(),
                state: st.status.as_str(),
                rows: st.result_rows(),
                expire_at_s: (now + self.cfg.result_ttl_ms) / 1000,
                target: st.target.clone(),
                principal: format!("arn:aws:iam::{}:user/redrelay-emulator", self.cfg.account),
            });
            tracing::info!(
                statement_id = %st.id,
                state = st.status.as_str(),
                rows = st.result_rows(),
                error = st.error.as_deref().unwrap_or(""),
                "Statement ended."
            );
            let session_id = st.session_id.clone();
            store.active = store.active.saturating_sub(1);
            if let Some(session) = session_id.and_then(|sid| store.sessions.get_mut(&sid)) {
                if session.status == SessionStatus::Busy {
                    session.status = SessionStatus::Available;
                    session.current = None;
                    session.updated_ms = now;
                    session.expires_ms =
                        Some(now.saturating_add(session.keep_alive_secs.saturating_mul(1000)));
                }
            }
            (line, event)
        };
        self.changed.notify_waiters();
        self.recorder.write(&line);
        if let Some(event) = event {
            self.events.send(event);
        }
    }

    /// CancelStatement.
    pub(crate) fn cancel(&self, id: &str) -> Result<Json, ApiError> {
        check_id(id)?;
        let abort_now = {
            let store = lock(&self.store);
            let st = store
                .statements
                .get(id)
                .ok_or_else(|| ApiError::not_found("Query does not exist.", id))?;
            if st.status.is_terminal() {
                return Err(ApiError::validation(format!(
                    "Could not cancel a query that is already in {} state.",
                    st.status.as_str()
                )));
            }
            if st.plan.uncancellable {
                // Committing: too late to stop it.
                return Ok(json!({ "Status": false }));
            }
            st.cancel.cancel();
            st.status == Status::Submitted
        };
        if abort_now {
            // Not picked up yet: it ends now, and its task will find it ended.
            self.finish(id, Outcome::Aborted { at: 0 });
        }
        Ok(json!({ "Status": true }))
    }

    /// DescribeStatement (a parent id or a batch sub-statement id).
    pub(crate) fn describe(&self, id: &str) -> Result<Json, ApiError> {
        check_id(id)?;
        let now = self.now();
        let store = lock(&self.store);
        let (st, sub) = find(&store, id)?;
        let mut out = json!({});
        let put = |out: &mut Json, k: &str, v: Json| {
            if let Some(m) = out.as_object_mut() {
                m.insert(k.to_string(), v);
            }
        };
        match &st.target {
            Target::Workgroup(w) => put(&mut out, "WorkgroupName", json!(w)),
            Target::Cluster(c) => put(&mut out, "ClusterIdentifier", json!(c)),
        }
        put(&mut out, "Database", json!(st.database));
        if let Some(sid) = &st.session_id {
            put(&mut out, "SessionId", json!(sid));
        }
        if st.req.is_batch {
            put(
                &mut out,
                "ExecutionMode",
                json!(st.req.execution_mode.as_str()),
            );
        }
        if let Some(u) = &st.req.db_user {
            put(&mut out, "DbUser", json!(u));
        }
        if let Some(s) = &st.req.secret_arn {
            put(&mut out, "SecretArn", json!(s));
        }
        put(&mut out, "RedshiftPid", json!(Self::pid_of(&store, st)));
        put(
            &mut out,
            "ResultFormat",
            json!(st.req.result_format.as_str()),
        );
        if let Some(p) = st.query_parameters() {
            put(&mut out, "QueryParameters", p);
        }
        match sub {
            Some(i) => {
                let s = &st.subs[i];
                for (k, v) in sub_fields(s, now) {
                    put(&mut out, k, v);
                }
            }
            None if !st.req.is_batch => {
                for (k, v) in sub_fields(&st.subs[0], now) {
                    put(&mut out, k, v);
                }
                put(&mut out, "Status", json!(st.status.as_str()));
                put(&mut out, "CreatedAt", json!(secs(st.created_ms)));
                put(&mut out, "UpdatedAt", json!(secs(st.updated_ms)));
                put(
                    &mut out,
                    "Duration",
                    json!(duration_ns(st.started_ms, st.ended_ms, now)),
                );
                if let Some(e) = &st.error {
                    put(&mut out, "Error", json!(e));
                }
            }
            None => {
                put(&mut out, "Id", json!(st.id));
                put(&mut out, "Status", json!(st.status.as_str()));
                put(&mut out, "CreatedAt", json!(secs(st.created_ms)));
                put(&mut out, "UpdatedAt", json!(secs(st.updated_ms)));
                put(
                    &mut out,
                    "Duration",
                    json!(duration_ns(st.started_ms, st.ended_ms, now)),
                );
                put(&mut out, "QueryString", json!(st.req.sqls.join(";\n")));
                put(
                    &mut out,
                    "HasResultSet",
                    json!(st.subs.iter().any(|s| s.has_result_set)),
                );
                put(&mut out, "ResultRows", json!(st.result_rows()));
                put(&mut out, "ResultSize", json!(st.result_size()));
                put(&mut out, "RedshiftQueryId", json!(st.query_id()));
                if let Some(last) = st.subs.iter().rfind(|s| s.started_ms.is_some()) {
                    put(&mut out, "RedshiftQueryUuid", json!(last.query_uuid));
                }
                if let Some(e) = &st.error {
                    put(&mut out, "Error", json!(e));
                }
                let subs: Vec<Json> = st
                    .subs
                    .iter()
                    .map(|s| {
                        Json::Object(
                            sub_fields(s, now)
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect(),
                        )
                    })
                    .collect();
                put(&mut out, "SubStatements", Json::Array(subs));
            }
        }
        Ok(out)
    }

    /// GetStatementResult (JSON) or GetStatementResultV2 (CSV).
    pub(crate) fn result(
        &self,
        id: &str,
        next_token: Option<&str>,
        format: ResultFormat,
    ) -> Result<Json, ApiError> {
        check_id(id)?;
        let now = self.now();
        let (result, st_format) = {
            let mut store = lock(&self.store);
            let ttl = self.cfg.result_ttl_ms;
            let parent = id.split_once(':').map_or(id, |(p, _)| p);
            if store.forgotten.contains(parent) {
                return Err(ApiError::validation(
                    "The results of this statement have expired: results are kept for a limited time after the statement ends.",
                ));
            }
            let st = {
                let (st, _) = find(&store, id)?;
                st.id.clone()
            };
            let st = store
                .statements
                .get_mut(&st)
                .ok_or_else(|| ApiError::not_found("Query does not exist.", id))?;
            let i = match id.split_once(':') {
                Some((_, n)) => n.parse::<usize>().unwrap_or(1).saturating_sub(1),
                None if st.req.is_batch => {
                    return Err(ApiError::validation(
                        "Statement is a batch: fetch results by sub-statement id (Id:N).",
                    ))
                }
                None => 0,
            };
            let st_status = st.status;
            let st_format = st.req.result_format;
            let Some(sub) = st.subs.get_mut(i) else {
                return Err(ApiError::not_found("Query does not exist.", id));
            };
            if sub.status != Status::Finished || st_status != Status::Finished {
                let status = if st.req.is_batch {
                    sub.status
                } else {
                    st_status
                };
                return Err(ApiError::validation(format!(
                    "Query has not finished successfully: its status is {}.",
                    if status == Status::Finished {
                        st_status.as_str()
                    } else {
                        status.as_str()
                    }
                )));
            }
            if !sub.has_result_set {
                return Err(ApiError::not_found(
                    "Query does not have result. Please check query status with DescribeStatement.",
                    id,
                ));
            }
            let ended = sub.ended_ms.unwrap_or(now);
            if now >= ended.saturating_add(ttl) {
                sub.result = None;
                return Err(ApiError::validation(
                    "The results of this statement have expired: results are kept for a limited time after the statement ends.",
                ));
            }
            let Some(result) = sub.result.clone() else {
                return Err(ApiError::validation(
                    "The results of this statement have expired.",
                ));
            };
            (result, st_format)
        };
        match (format, st_format) {
            (ResultFormat::Json, ResultFormat::Csv) => {
                return Err(ApiError::validation(
                    "The statement's ResultFormat is CSV: use GetStatementResultV2.",
                ))
            }
            (ResultFormat::Csv, ResultFormat::Json) => {
                return Err(ApiError::validation(
                    "The statement's ResultFormat is JSON: use GetStatementResult.",
                ))
            }
            _ => {}
        }
        let total = result.rows.len();
        let offset = match next_token {
            None | Some("") => 0,
            Some(t) => t
                .strip_prefix("rows:")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0 && *n < total)
                .ok_or_else(|| ApiError::validation("Invalid NextToken."))?,
        };
        let end = offset.saturating_add(self.cfg.page_size.max(1)).min(total);
        let page = &result.rows[offset..end];
        let columns: Vec<Json> = result
            .columns
            .iter()
            .enumerate()
            .map(|(c, m)| column_json(m, &result.rows, c))
            .collect();
        let mut out = json!({
            "ColumnMetadata": columns,
            "TotalNumRows": total,
        });
        let records = match format {
            ResultFormat::Json => Json::Array(
                page.iter()
                    .map(|row| Json::Array(row.iter().map(Value::to_field).collect()))
                    .collect(),
            ),
            ResultFormat::Csv => {
                let mut text = String::new();
                if offset == 0 {
                    let header: Vec<String> = result
                        .columns
                        .iter()
                        .map(|c| sql::csv_quote(&c.name))
                        .collect();
                    text.push_str(&header.join(","));
                    text.push('\n');
                }
                for row in page {
                    let cells: Vec<String> = row.iter().map(Value::to_csv).collect();
                    text.push_str(&cells.join(","));
                    text.push('\n');
                }
                json!([{ "CSVRecords": text }])
            }
        };
        if let Some(m) = out.as_object_mut() {
            m.insert("Records".into(), records);
            if format == ResultFormat::Csv {
                m.insert("ResultFormat".into(), json!("CSV"));
            }
            if end < total {
                m.insert("NextToken".into(), json!(format!("rows:{end}")));
            }
        }
        Ok(out)
    }

    /// ListStatements: parents, newest first.
    pub(crate) fn list(&self, q: &ListRequest) -> Result<Json, ApiError> {
        let statement_name = q.statement_name.as_deref();
        let database = q.database.as_deref();
        let cluster = q.cluster_identifier.as_deref();
        let workgroup = q.workgroup_name.as_deref();
        let max = page_limit(q.max_results, 100)?;
        let status = match q.status.as_deref() {
            None | Some("ALL") => None,
            Some(s @ ("SUBMITTED" | "PICKED" | "STARTED" | "FINISHED" | "ABORTED" | "FAILED")) => {
                Some(s)
            }
            Some(s) => return Err(ApiError::validation(format!("Invalid Status {s:?}."))),
        };
        let before = match q.next_token.as_deref() {
            None | Some("") => u64::MAX,
            Some(t) => t
                .strip_prefix("seq:")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| ApiError::validation("Invalid NextToken."))?,
        };
        let store = lock(&self.store);
        let mut out = Vec::new();
        let mut next = None;
        for (seq, id) in store.order.range(..before).rev() {
            let Some(st) = store.statements.get(id) else {
                continue;
            };
            if let Some(prefix) = statement_name {
                if !st
                    .req
                    .statement_name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with(prefix)
                {
                    continue;
                }
            }
            if status.is_some_and(|s| s != st.status.as_str()) {
                continue;
            }
            if database.is_some_and(|d| d != st.database) {
                continue;
            }
            if cluster.is_some_and(|c| st.target != Target::Cluster(c.to_string())) {
                continue;
            }
            if workgroup.is_some_and(|w| st.target != Target::Workgroup(w.to_string())) {
                continue;
            }
            if out.len() == max {
                next = Some(format!("seq:{}", seq + 1));
                break;
            }
            let mut item = json!({
                "Id": st.id,
                "Status": st.status.as_str(),
                "CreatedAt": secs(st.created_ms),
                "UpdatedAt": secs(st.updated_ms),
                "IsBatchStatement": st.req.is_batch,
                "ResultFormat": st.req.result_format.as_str(),
            });
            if let Some(m) = item.as_object_mut() {
                if st.req.is_batch {
                    m.insert("QueryStrings".into(), json!(st.req.sqls));
                } else {
                    m.insert("QueryString".into(), json!(st.req.sqls[0]));
                }
                if let Some(n) = &st.req.statement_name {
                    m.insert("StatementName".into(), json!(n));
                }
                put_secret_and_session(m, st);
                if let Some(p) = st.query_parameters() {
                    m.insert("QueryParameters".into(), p);
                }
            }
            out.push(item);
        }
        let mut resp = json!({ "Statements": out });
        if let (Some(t), Some(m)) = (next, resp.as_object_mut()) {
            m.insert("NextToken".into(), json!(t));
        }
        Ok(resp)
    }

    /// Forgets ended statements past the result retention (AWS forgets
    /// them after 24 h), ClientTokens past theirs, and closes sessions past
    /// their keep-alive.
    pub(crate) fn sweep(&self) {
        let now = self.now();
        let mut store = lock(&self.store);
        let ttl = self.cfg.result_ttl_ms;
        let old: Vec<(u64, String)> = store
            .order
            .iter()
            .filter(|(_, id)| {
                store.statements.get(*id).is_some_and(|st| {
                    st.status.is_terminal()
                        && st.ended_ms.is_some_and(|e| now >= e.saturating_add(ttl))
                        && !store.waiting.contains_key(*id)
                })
            })
            .map(|(seq, id)| (*seq, id.clone()))
            .collect();
        for (seq, id) in &old {
            store.order.remove(seq);
            store.statements.remove(id);
            if store.forgotten.insert(id.clone()) {
                store.forgotten_order.push_back(id.clone());
            }
        }
        while store.forgotten_order.len() > FORGOTTEN_KEPT {
            if let Some(id) = store.forgotten_order.pop_front() {
                store.forgotten.remove(&id);
            }
        }
        let token_ttl = self.cfg.client_token_ttl_ms;
        store.tokens.retain(|_, (_, seen)| now - *seen < token_ttl);
        let mut closing = Vec::new();
        for session in store.sessions.values_mut() {
            if session.status == SessionStatus::Available
                && session.expires_ms.is_some_and(|e| now >= e)
            {
                session.status = SessionStatus::Closed;
                session.updated_ms = now;
                closing.push((session.id.clone(), Arc::clone(&session.conn)));
            }
        }
        let gone: Vec<(u64, String)> = store
            .session_order
            .iter()
            .filter(|(_, sid)| {
                store.sessions.get(*sid).is_some_and(|s| {
                    s.status == SessionStatus::Closed && now >= s.updated_ms.saturating_add(ttl)
                })
            })
            .map(|(seq, sid)| (*seq, sid.clone()))
            .collect();
        for (seq, sid) in gone {
            store.session_order.remove(&seq);
            store.sessions.remove(&sid);
        }
        let kept = store.statements.len();
        drop(store);
        for (sid, conn) in closing {
            tracing::info!(session_id = %sid, "Session closed after its keep-alive.");
            tokio::spawn(async move {
                if let Some(c) = conn.lock().await.take() {
                    c.close().await;
                }
            });
        }
        if !old.is_empty() {
            tracing::debug!(
                forgotten = old.len(),
                kept,
                "Ended statements past the result retention forgotten."
            );
        }
    }

    /// How many statements the engine keeps in memory.
    pub(crate) fn statements_in_memory(&self) -> usize {
        lock(&self.store).statements.len()
    }

    /// ListSessions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn list_sessions(
        &self,
        session_id: Option<&str>,
        status: Option<&str>,
        max_results: Option<i64>,
        next_token: Option<&str>,
        cluster: Option<&str>,
        workgroup: Option<&str>,
        database: Option<&str>,
    ) -> Result<Json, ApiError> {
        if session_id.is_some() && (status.is_some() || cluster.is_some() || workgroup.is_some()) {
            return Err(ApiError::validation(
                "When SessionId is given, Status, ClusterIdentifier and WorkgroupName cannot be.",
            ));
        }
        if cluster.is_some() && workgroup.is_some() {
            return Err(ApiError::validation(
                "Specify at most one of ClusterIdentifier and WorkgroupName.",
            ));
        }
        let statuses: Vec<SessionStatus> = match status {
            None => vec![SessionStatus::Available, SessionStatus::Busy],
            Some("AVAILABLE") => vec![SessionStatus::Available],
            Some("BUSY") => vec![SessionStatus::Busy],
            Some("CLOSED") => vec![SessionStatus::Closed],
            Some(s) => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{s}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [AVAILABLE, BUSY, CLOSED]"
                )))
            }
        };
        let max = page_limit(max_results, 100)?;
        let before = match next_token {
            None | Some("") => u64::MAX,
            Some(t) => t
                .strip_prefix("seq:")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| ApiError::validation("Invalid NextToken."))?,
        };
        let now = self.now();
        let store = lock(&self.store);
        let mut out = Vec::new();
        let mut next = None;
        for (seq, sid) in store.session_order.range(..before).rev() {
            let Some(s) = store.sessions.get(sid) else {
                continue;
            };
            let wanted = match session_id {
                Some(want) => want == s.id,
                None => {
                    statuses.contains(&s.status)
                        && cluster.is_none_or(|c| s.target == Target::Cluster(c.to_string()))
                        && workgroup.is_none_or(|w| s.target == Target::Workgroup(w.to_string()))
                        && database.is_none_or(|d| d == s.database)
                }
            };
            if !wanted {
                continue;
            }
            if out.len() == max {
                next = Some(format!("seq:{}", seq + 1));
                break;
            }
            let mut m = serde_json::Map::new();
            m.insert("SessionId".into(), json!(s.id));
            m.insert("Status".into(), json!(s.status.as_str()));
            m.insert("CreatedAt".into(), json!(secs(s.created_ms)));
            m.insert("UpdatedAt".into(), json!(secs(s.updated_ms)));
            m.insert("Database".into(), json!(s.database));
            put_target(&mut m, &s.target);
            if let Some(u) = &s.db_user {
                m.insert("DbUser".into(), json!(u));
            }
            m.insert("SessionAliveSeconds".into(), json!(s.keep_alive_secs));
            let ttl = match s.status {
                SessionStatus::Available => s.expires_ms,
                SessionStatus::Busy => Some(now.saturating_add(s.keep_alive_secs * 1000)),
                SessionStatus::Closed => Some(s.updated_ms),
            };
            if let Some(t) = ttl {
                m.insert("SessionTtl".into(), json!(secs(t)));
            }
            if let Some(c) = &s.current {
                m.insert("CurrentStatementId".into(), json!(c));
            }
            out.push(Json::Object(m));
        }
        let mut resp = json!({ "Sessions": out });
        if let (Some(t), Some(m)) = (next, resp.as_object_mut()) {
            m.insert("NextToken".into(), json!(t));
        }
        Ok(resp)
    }

    /// ListDatabases, ListSchemas, ListTables, DescribeTable: read the
    /// warehouse's catalog.
    pub(crate) async fn metadata(
        &self,
        op: &str,
        req: metadata::MetadataRequest,
    ) -> Result<Json, ApiError> {
        req.validate(op)?;
        if let Some(arn) = &req.secret_arn {
            self.check_secret(arn).await?;
        }
        let mut slot = self.catalog.lock().await;
        if slot.is_none() {
            let conn = self.warehouse_spec.open().await.map_err(|e| {
                ApiError::internal(format!("Cannot connect to the warehouse: {e:#}"))
            })?;
            *slot = Some(conn);
        }
        match slot.as_mut() {
            Some(conn) => metadata::answer(conn, op, &req).await,
            None => Err(ApiError::internal("The warehouse connection is closed.")),
        }
    }

    /// Cancels what still runs and waits (up to `grace`) for it to stop;
    /// records statements that never ended.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        {
            let store = lock(&self.store);
            for st in store.statements.values() {
                if !st.status.is_terminal() {
                    st.cancel.cancel();
                }
            }
        }
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.running.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, wait).await.is_err() {
            tracing::warn!(
                running = self.running.load(Ordering::SeqCst),
                "Statements still running at shutdown."
            );
            let store = lock(&self.store);
            for st in store.statements.values() {
                if !st.status.is_terminal() {
                    self.recorder.write(&statement_line(st));
                }
            }
        }
    }
}

fn api_fault_error(fault: ApiFault, message: String) -> ApiError {
    ApiError {
        kind: match fault {
            ApiFault::Throttle => ErrorKind::Throttling,
            ApiFault::ActiveExceeded => ErrorKind::ActiveStatementsExceeded,
        },
        message,
        resource_id: None,
    }
}

/// SecretArn and SessionId, when the statement has them.
fn put_secret_and_session(m: &mut serde_json::Map<String, Json>, st: &Statement) {
    if let Some(s) = &st.req.secret_arn {
        m.insert("SecretArn".into(), json!(s));
    }
    if let Some(sid) = &st.session_id {
        m.insert("SessionId".into(), json!(sid));
    }
}

/// The target fields every answer about a statement or session carries.
fn put_target(m: &mut serde_json::Map<String, Json>, target: &Target) {
    match target {
        Target::Workgroup(w) => m.insert("WorkgroupName".into(), json!(w)),
        Target::Cluster(c) => m.insert("ClusterIdentifier".into(), json!(c)),
    };
}

fn statement_line(st: &Statement) -> Json {
    json!({
        "kind": "statement",
        "id": st.id,
        "client_token": st.req.client_token,
        "statement_name": st.req.statement_name,
        "sqls": st.req.sqls,
        "is_batch": st.req.is_batch,
        "state": st.status.as_str(),
        "error": st.error,
        "rows": st.result_rows(),
        "with_event": st.req.with_event,
        "faults": st.plan,
        "created_ms": st.created_ms,
        "started_ms": st.started_ms,
        "ended_ms": st.ended_ms,
        "session_id": st.session_id,
    })
}

fn duration_ns(started: Option<i64>, ended: Option<i64>, now: i64) -> i64 {
    match started {
        Some(s) => ended
            .unwrap_or(now)
            .saturating_sub(s)
            .saturating_mul(1_000_000),
        None => 0,
    }
}

fn sub_fields(s: &Sub, now: i64) -> Vec<(&'static str, Json)> {
    let mut v = vec![
        ("Id", json!(s.id)),
        ("Status", json!(s.status.as_str())),
        ("CreatedAt", json!(secs(s.created_ms))),
        ("UpdatedAt", json!(secs(s.updated_ms))),
        (
            "Duration",
            json!(duration_ns(s.started_ms, s.ended_ms, now)),
        ),
        ("QueryString", json!(s.sql)),
        ("HasResultSet", json!(s.has_result_set)),
        ("ResultRows", json!(s.result_rows)),
        ("ResultSize", json!(s.result_size)),
        ("RedshiftQueryId", json!(s.query_id)),
        ("RedshiftQueryUuid", json!(s.query_uuid)),
    ];
    if let Some(e) = &s.error {
        v.push(("Error", json!(e)));
    }
    v
}

fn column_json(m: &ColumnMeta, rows: &[Vec<Value>], c: usize) -> Json {
    // An expression has no declared type: take the first value's class.
    let observed = rows.iter().find_map(|r| match r.get(c) {
        Some(Value::Long(_)) => Some("INTEGER"),
        Some(Value::Double(_)) => Some("REAL"),
        Some(Value::Text(_)) => Some("TEXT"),
        Some(Value::Blob(_)) => Some("BLOB"),
        Some(Value::Bool(_)) => Some("BOOLEAN"),
        _ => None,
    });
    let ty = match m.sqlx_type.as_str() {
        "NULL" => observed.unwrap_or("TEXT"),
        t => t,
    };
    let type_name = match &m.pg_type {
        Some(pg) => metadata::redshift_type(pg).name,
        None => sql::redshift_type_name(ty),
    };
    let numeric = matches!(type_name, "int8" | "float8" | "numeric");
    let (precision, scale) = match type_name {
        "int8" => (19, 0),
        "float8" => (17, 17),
        "bool" => (1, 0),
        _ => (256, 0),
    };
    json!({
        "isCaseSensitive": type_name == "varchar",
        "isCurrency": false,
        "isSigned": numeric,
        "label": m.name,
        "name": m.name,
        "nullable": 1,
        "precision": precision,
        "scale": scale,
        "schemaName": if m.table.is_empty() { "" } else { "public" },
        "tableName": m.table,
        "typeName": type_name,
        "length": 0,
    })
}

/// MaxResults of a listing: 0 or absent means `limit`, the most allowed.
pub(crate) fn page_limit(max_results: Option<i64>, limit: usize) -> Result<usize, ApiError> {
    match max_results {
        None | Some(0) => Ok(limit),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= limit => Ok(n),
            _ => Err(ApiError::validation(format!(
                "MaxResults must be between 0 and {limit}, got {n}."
            ))),
        },
    }
}

/// Finds a statement by parent id or sub-statement id (`<id>:N`, batches
/// only); returns it and the sub-statement index.
fn find<'a>(store: &'a Store, id: &str) -> Result<(&'a Statement, Option<usize>), ApiError> {
    let parent = id.split_once(':').map_or(id, |(p, _)| p);
    if store.forgotten.contains(parent) {
        return Err(ApiError::not_found(
            "Query does not exist: it ended longer ago than the results are kept, and has expired.",
            id,
        ));
    }
    let not_found = || ApiError::not_found("Query does not exist.", id);
    match id.split_once(':') {
        None => store
            .statements
            .get(id)
            .map(|st| (st, None))
            .ok_or_else(not_found),
        Some((parent, n)) => {
            let st = store.statements.get(parent).ok_or_else(not_found)?;
            let n: usize = n.parse().map_err(|_| not_found())?;
            if !st.req.is_batch || n == 0 || n > st.subs.len() {
                return Err(not_found());
            }
            Ok((st, Some(n - 1)))
        }
    }
}

/// Checks an id against the model's UUID pattern
/// `[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}(:\d{0,2})?`.
fn check_id(id: &str) -> Result<(), ApiError> {
    let (uuid, sub) = match id.split_once(':') {
        Some((u, s)) => (u, Some(s)),
        None => (id, None),
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let uuid_ok = groups.len() == 5
        && groups.iter().zip(lens).all(|(g, l)| {
            g.len() == l
                && g.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    let sub_ok = sub.is_none_or(|s| s.len() <= 2 && s.chars().all(|c| c.is_ascii_digit()));
    if uuid_ok && sub_ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{id}' at 'id' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-z0-9]{{8}}(-[a-z0-9]{{4}}){{3}}-[a-z0-9]{{12}}(:\\d{{0,2}})?"
        )))
    }
}

/// Checks what the wire layer cannot: sizes, names and parameters.
fn validate_request(req: &ExecRequest) -> Result<(), ApiError> {
    if req.sqls.is_empty() || req.sqls.len() > crate::domain::MAX_BATCH_STATEMENTS {
        return Err(ApiError::validation(
            "Sqls must contain between 1 and 40 SQL statements.",
        ));
    }
    for sql in &req.sqls {
        if sql.trim().is_empty() {
            return Err(ApiError::validation("SQL statement must not be empty."));
        }
        if sql.len() > MAX_SQL_BYTES {
            return Err(ApiError::validation(format!(
                "SQL statement is too long: {} bytes, the limit is {MAX_SQL_BYTES}.",
                sql.len()
            )));
        }
    }
    if req
        .statement_name
        .as_ref()
        .is_some_and(|n| n.len() > MAX_STATEMENT_NAME)
    {
        return Err(ApiError::validation(format!(
            "StatementName must be at most {MAX_STATEMENT_NAME} characters."
        )));
    }
    if req.database.as_ref().is_some_and(String::is_empty) {
        return Err(ApiError::validation("Database must not be empty."));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, value) in &req.params {
        if !sql::valid_param_name(name) {
            return Err(ApiError::validation(format!(
                "Parameter name {name:?} must match [0-9a-zA-Z_]+."
            )));
        }
        if value.is_empty() {
            return Err(ApiError::validation(format!(
                "Parameter {name:?} has an empty value: the Data API takes no empty or NULL parameter values."
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(ApiError::validation(format!(
                "Parameter {name:?} is given more than once."
            )));
        }
    }
    for sql in &req.sqls {
        for name in sql::rewrite_params(sql).names {
            if !seen.contains(name.as_str()) {
                return Err(ApiError::validation(format!(
                    "The SQL references parameter :{name} but no value was provided for it."
                )));
            }
        }
    }
    Ok(())
}

/// The connection a statement runs on: the warehouse's own, or its
/// session's (opened on first use, so its temp tables are its own).
enum ConnGuard<'a> {
    Main(tokio::sync::MutexGuard<'a, Conn>),
    Session(tokio::sync::OwnedMutexGuard<Option<Conn>>),
}

impl ConnGuard<'_> {
    async fn conn(&mut self, spec: &WarehouseSpec) -> Result<&mut Conn, String> {
        match self {
            ConnGuard::Main(c) => Ok(&mut **c),
            ConnGuard::Session(slot) => {
                if slot.is_none() {
                    let c = spec
                        .open()
                        .await
                        .map_err(|e| format!("ERROR: cannot open a session: {e:#}"))?;
                    **slot = Some(c);
                }
                slot.as_mut()
                    .ok_or_else(|| "ERROR: the session's connection is closed".to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_model_pattern() {
        assert!(check_id("dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a").is_ok());
        assert!(check_id("dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a:12").is_ok());
        assert!(check_id("dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a:123").is_err());
        assert!(check_id("DD2E1EC9-2ee3-49a0-819f-905fa7d75a4a").is_err());
        assert!(check_id("nope").is_err());
    }

    #[test]
    fn durations_in_nanoseconds() {
        assert_eq!(duration_ns(Some(1000), Some(1250), 0), 250_000_000);
        assert_eq!(duration_ns(None, None, 5), 0);
    }
}

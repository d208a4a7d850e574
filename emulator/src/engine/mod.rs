//! The statement engine: keeps every statement and its results, runs SQL on
//! the warehouse (one SQLite connection, one transaction per statement or
//! batch, executions serialized), and produces the Data API's answers.
//!
//! One file per concern: `model` (statements, sessions, requests), `error`
//! (the answered errors), `validate` (checks before anything is kept),
//! `admission` (Execute/BatchExecute: faults, ClientToken, limits),
//! `sessions` (which session a statement runs in, idle ones closed,
//! ListSessions), `execution` (running on the warehouse, the end recorded
//! and evented), `lifecycle` (waits, cancel, retention, shutdown),
//! `describe` (DescribeStatement, ListStatements) and `paging`
//! (GetStatementResult and V2).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::events::{EventMsg, EventSender};
use super::faults::{lock, Counters, Faults};
use super::record::Recorder;
use super::redshift::{self, Plan};
use super::sql::{self, Value};
use super::warehouse::{ColumnMeta, Conn, SubResult, WarehouseSpec};
use super::{metadata, s3io};

mod admission;
mod describe;
mod error;
mod execution;
mod lifecycle;
mod model;
mod paging;
mod sessions;
mod validate;

pub(crate) use error::{ApiError, ErrorKind};
pub(crate) use model::*;
pub(crate) use paging::page_limit;

use describe::*;
use error::api_fault_error;
use validate::*;

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

    /// The configured latency of one API operation.
    pub(crate) fn api_latency(&self, operation: &str) -> Duration {
        self.faults.api_latency(operation)
    }

    /// How many statements the engine keeps in memory.
    pub(crate) fn statements_in_memory(&self) -> usize {
        lock(&self.store).statements.len()
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
}

//! The warehouse the SQL runs on: a SQLite file (the default) or a
//! PostgreSQL database (`--warehouse postgres://...`). One connection per
//! session plus one for everything else; statements run one at a time on
//! each.
//!
//! SQLite binds the Data API's parameters as `?N` (a plain number as a
//! number). On PostgreSQL the translation (`redshift`) inlines them as
//! string literals, which PostgreSQL types from their context as Redshift
//! does; queries then run with the simple protocol, whose text results are
//! typed here from the columns' types (NUMERIC stays a string, as the Data
//! API returns DECIMAL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures_util::TryStreamExt;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, Column, ColumnOrigin, ConnectOptions, Connection, Either};
use sqlx::{Executor, Row, SqlSafeStr, Statement as _, TypeInfo, ValueRef};
use tokio_util::sync::CancellationToken;

use super::redshift::Backend;
use super::sql::{self, StorageClass, Value};

/// Where the warehouse is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WarehouseSpec {
    Sqlite(PathBuf),
    Postgres(String),
}

impl WarehouseSpec {
    /// `postgres://...` / `postgresql://...` is PostgreSQL; anything else a
    /// SQLite file.
    pub(crate) fn parse(s: &str) -> WarehouseSpec {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            WarehouseSpec::Postgres(s.to_string())
        } else {
            WarehouseSpec::Sqlite(PathBuf::from(s))
        }
    }

    /// For logs: the file, or the server without credentials.
    pub(crate) fn shown(&self) -> String {
        match self {
            WarehouseSpec::Sqlite(p) => p.display().to_string(),
            WarehouseSpec::Postgres(url) => match url.rsplit_once('@') {
                Some((_, host)) => format!("postgres://{host}"),
                None => url.clone(),
            },
        }
    }

    /// Opens a connection, with the catalog's registry.
    pub(crate) async fn open(&self) -> anyhow::Result<Conn> {
        match self {
            WarehouseSpec::Sqlite(path) => open_sqlite(path).await.map(Conn::Sqlite),
            WarehouseSpec::Postgres(url) => {
                let mut conn = PgConnection::connect(url)
                    .await
                    .with_context(|| format!("cannot connect to the warehouse {}", self.shown()))?;
                conn.execute(super::metadata::PG_REGISTRY_DDL)
                    .await
                    .with_context(|| format!("cannot prepare the warehouse {}", self.shown()))?;
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut conn)
                    .await
                    .with_context(|| format!("cannot talk to the warehouse {}", self.shown()))?;
                Ok(Conn::Pg(PgConn {
                    conn,
                    pid,
                    url: url.clone(),
                    canceller: None,
                }))
            }
        }
    }
}

/// Opens (or creates) the SQLite warehouse file, with the catalog's
/// registry.
async fn open_sqlite(path: &Path) -> anyhow::Result<SqliteConnection> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL with NORMAL: commits stay atomic and consistent; only a power
        // loss can forget the last ones. Statements run serialized, so an
        // fsync per commit would cap the emulator near 100 statements/s.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot open the warehouse {}", path.display()))?;
    conn.execute(super::metadata::REGISTRY_DDL)
        .await
        .with_context(|| format!("cannot prepare the warehouse {}", path.display()))?;
    Ok(conn)
}

/// One connection to the warehouse.
#[derive(Debug)]
pub(crate) enum Conn {
    Sqlite(SqliteConnection),
    Pg(PgConn),
}

/// A PostgreSQL connection, with what cancelling its query takes.
#[derive(Debug)]
pub(crate) struct PgConn {
    pub conn: PgConnection,
    /// Its server process (pg_cancel_backend).
    pid: i32,
    url: String,
    /// The task that cancels the running query when the statement is
    /// cancelled.
    canceller: Option<tokio::task::AbortHandle>,
}

/// Column metadata of a result.
#[derive(Debug, Clone)]
pub(crate) struct ColumnMeta {
    pub name: String,
    /// sqlx's type name (`INTEGER`, `TEXT`, ... or `NULL` when unknown).
    pub sqlx_type: String,
    pub table: String,
    /// PostgreSQL's type name (`int4`, `numeric`, ...), when the warehouse
    /// is PostgreSQL.
    pub pg_type: Option<String>,
}

/// Rows of a result, kept in memory until they expire.
#[derive(Debug)]
pub(crate) struct ResultSet {
    pub columns: Vec<ColumnMeta>,
    pub rows: Vec<Vec<Value>>,
}

/// What running one SQL produced.
pub(crate) struct SubResult {
    pub result: Option<ResultSet>,
    pub rows: i64,
    pub size: i64,
}

/// The database's error text, as Redshift would show it.
pub(crate) fn db_error_text(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => match d.message().strip_prefix("no such table: ") {
            // Redshift's wording (the name as the SQL wrote it), then
            // SQLite's own, which existing callers match on.
            Some(name) => {
                format!("ERROR: relation \"{name}\" does not exist (SQLite: no such table: {name})")
            }
            None => format!("ERROR: {}", d.message()),
        },
        None => format!("ERROR: {e}"),
    }
}

impl Conn {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Pg(_) => Backend::Postgres,
        }
    }

    /// Runs SQL without results (BEGIN, COMMIT, ROLLBACK, ...).
    pub(crate) async fn raw(&mut self, sql: &str) -> Result<(), String> {
        let sql = AssertSqlSafe(sql.to_string());
        match self {
            Conn::Sqlite(c) => c.execute(sqlx::raw_sql(sql)).await.map(|_| ()),
            Conn::Pg(c) => c.conn.execute(sqlx::raw_sql(sql)).await.map(|_| ()),
        }
        .map_err(|e| db_error_text(&e))
    }

    /// Lets CancelStatement interrupt a long query: SQLite's progress
    /// handler, or pg_cancel_backend from a second PostgreSQL connection.
    pub(crate) async fn set_cancel(&mut self, cancel: Option<&CancellationToken>) {
        let conn = match self {
            Conn::Sqlite(c) => c,
            Conn::Pg(pg) => {
                if let Some(old) = pg.canceller.take() {
                    old.abort();
                }
                if let Some(token) = cancel {
                    let (token, url, pid) = (token.clone(), pg.url.clone(), pg.pid);
                    let task = tokio::spawn(async move {
                        token.cancelled().await;
                        match PgConnection::connect(&url).await {
                            Ok(mut c) => {
                                let _ = sqlx::query("SELECT pg_cancel_backend($1)")
                                    .bind(pid)
                                    .execute(&mut c)
                                    .await;
                                let _ = c.close().await;
                            }
                            Err(error) => {
                                tracing::warn!(%error, "Could not reach PostgreSQL to cancel a query.")
                            }
                        }
                    });
                    pg.canceller = Some(task.abort_handle());
                }
                return;
            }
        };
        match conn.lock_handle().await {
            Ok(mut handle) => match cancel {
                Some(token) => {
                    let token = token.clone();
                    handle.set_progress_handler(1000, move || !token.is_cancelled());
                }
                None => handle.remove_progress_handler(),
            },
            Err(error) => tracing::warn!(%error, "Could not install the cancel handler."),
        }
    }

    /// Runs one translated SQL and keeps its rows. `names` are the
    /// placeholders' parameter names (SQLite; empty on PostgreSQL, whose
    /// SQL carries the values).
    pub(crate) async fn run(
        &mut self,
        sql: String,
        names: &[String],
        params: &[(String, String)],
        dml: bool,
    ) -> Result<SubResult, String> {
        match self {
            Conn::Sqlite(c) => sqlite_run(c, sql, bind_params(names, params)?, dml).await,
            Conn::Pg(c) => pg_run(&mut c.conn, sql, dml).await,
        }
    }

    /// The rows of a query (UNLOAD).
    pub(crate) async fn query_rows(
        &mut self,
        sql: String,
        names: &[String],
        params: &[(String, String)],
    ) -> Result<QueryRows, String> {
        match self {
            Conn::Sqlite(c) => {
                let query = sqlx::query_with(AssertSqlSafe(sql), bind_params(names, params)?);
                sqlite_query_rows(c, query).await
            }
            Conn::Pg(c) => {
                let res = pg_run(&mut c.conn, sql, false).await?;
                let set = res.result.unwrap_or(ResultSet {
                    columns: Vec::new(),
                    rows: Vec::new(),
                });
                Ok(QueryRows {
                    columns: set.columns.into_iter().map(|c| c.name).collect(),
                    rows: set.rows,
                })
            }
        }
    }

    pub(crate) async fn close(self) {
        let _ = match self {
            Conn::Sqlite(c) => c.close().await,
            Conn::Pg(c) => {
                if let Some(task) = c.canceller {
                    task.abort();
                }
                c.conn.close().await
            }
        };
    }
}

/// Binds the Data API's parameters in placeholder order. Redshift casts a
/// parameter to the type its context needs; SQLite does not, so a value
/// that is a plain number is bound as one.
fn bind_params(names: &[String], params: &[(String, String)]) -> Result<SqliteArguments, String> {
    let mut args = SqliteArguments::default();
    for name in names {
        let value = params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("ERROR: no value for parameter :{name}"))?;
        match sql::numeric_param(&value) {
            Some(sql::Numeric::Int(i)) => args.add(i),
            Some(sql::Numeric::Real(f)) => args.add(f),
            None => args.add(value),
        }
        .map_err(|e| format!("ERROR: {e}"))?;
    }
    Ok(args)
}

/// Rows of a query, typed (for UNLOAD).
pub(crate) struct QueryRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

async fn sqlite_query_rows<'q>(
    conn: &mut SqliteConnection,
    query: sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments>,
) -> Result<QueryRows, String> {
    let mut stream = (&mut *conn).fetch_many(query);
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    while let Some(step) = stream.try_next().await.map_err(|e| db_error_text(&e))? {
        if let Either::Right(row) = step {
            if columns.is_empty() {
                columns = row.columns().iter().map(|c| c.name().to_string()).collect();
            }
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                values.push(sqlite_value(&row, i, false)?);
            }
            rows.push(values);
        }
    }
    Ok(QueryRows { columns, rows })
}

/// Runs translated SQL inside the open transaction and keeps its rows.
async fn sqlite_run(
    conn: &mut SqliteConnection,
    sql: String,
    args: SqliteArguments,
    dml: bool,
) -> Result<SubResult, String> {
    let prepared = (&mut *conn)
        .prepare(AssertSqlSafe(sql.clone()).into_sql_str())
        .await
        .map_err(|e| db_error_text(&e))?;
    let columns: Vec<ColumnMeta> = prepared
        .columns()
        .iter()
        .map(|c| {
            let table = match c.origin() {
                ColumnOrigin::Table(t) => t.table.to_string(),
                _ => String::new(),
            };
            ColumnMeta {
                name: c.name().to_string(),
                sqlx_type: c.type_info().name().to_string(),
                table,
                pg_type: None,
            }
        })
        .collect();
    let declared_bool: Vec<bool> = columns.iter().map(|c| c.sqlx_type == "BOOLEAN").collect();
    drop(prepared);
    let query = sqlx::query_with(AssertSqlSafe(sql), args);
    let stream = (&mut *conn).fetch_many(query);
    let (rows, changes, size) = drain(
        stream,
        |done: &sqlx::sqlite::SqliteQueryResult| done.rows_affected(),
        |row: &sqlx::sqlite::SqliteRow, i| {
            sqlite_value(row, i, declared_bool.get(i).copied().unwrap_or(false))
        },
    )
    .await?;
    Ok(sub_result(columns, rows, changes, size, dml))
}

/// Drains a query's stream: its rows, typed by `value`, how many rows it
/// changed, and the rows' size.
async fn drain<Q, R, S>(
    mut stream: S,
    changed: impl Fn(&Q) -> u64,
    mut value: impl FnMut(&R, usize) -> Result<Value, String>,
) -> Result<(Vec<Vec<Value>>, u64, i64), String>
where
    R: Row,
    S: futures_util::Stream<Item = Result<Either<Q, R>, sqlx::Error>> + Unpin,
{
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut changes: u64 = 0;
    let mut size: i64 = 0;
    while let Some(step) = stream.try_next().await.map_err(|e| db_error_text(&e))? {
        match step {
            Either::Left(done) => changes += changed(&done),
            Either::Right(row) => {
                let mut values = Vec::with_capacity(row.len());
                for i in 0..row.len() {
                    let v = value(&row, i)?;
                    size += v.size();
                    values.push(v);
                }
                rows.push(values);
            }
        }
    }
    Ok((rows, changes, size))
}

/// What one SQL produced: a result set when it has columns, else the rows
/// it changed (DML) or 0 (DDL: the engines leave their counts stale).
fn sub_result(
    columns: Vec<ColumnMeta>,
    rows: Vec<Vec<Value>>,
    changes: u64,
    size: i64,
    dml: bool,
) -> SubResult {
    if columns.is_empty() {
        return SubResult {
            result: None,
            rows: if dml {
                i64::try_from(changes).unwrap_or(i64::MAX)
            } else {
                0
            },
            size: 0,
        };
    }
    SubResult {
        rows: i64::try_from(rows.len()).unwrap_or(i64::MAX),
        result: Some(ResultSet { columns, rows }),
        size,
    }
}

/// Runs SQL on PostgreSQL (simple protocol: text results) and types the
/// values from the columns' types.
async fn pg_run(conn: &mut PgConnection, sql: String, dml: bool) -> Result<SubResult, String> {
    // Describe first: a query with no rows still has its columns.
    let described = (&mut *conn)
        .describe(AssertSqlSafe(sql.clone()).into_sql_str())
        .await
        .map_err(|e| db_error_text(&e))?;
    let columns: Vec<ColumnMeta> = described
        .columns()
        .iter()
        .map(|c| ColumnMeta {
            name: c.name().to_string(),
            sqlx_type: String::new(),
            table: match c.origin() {
                ColumnOrigin::Table(t) => t.table.to_string(),
                _ => String::new(),
            },
            pg_type: Some(c.type_info().name().to_lowercase()),
        })
        .collect();
    let stream = (&mut *conn).fetch_many(sqlx::raw_sql(AssertSqlSafe(sql)));
    let types: Vec<String> = columns
        .iter()
        .map(|c| c.pg_type.clone().unwrap_or_else(|| "text".into()))
        .collect();
    let (rows, changes, size) = drain(
        stream,
        |done: &sqlx::postgres::PgQueryResult| done.rows_affected(),
        |row: &sqlx::postgres::PgRow, i| {
            pg_value(row, i, types.get(i).map_or("text", String::as_str))
        },
    )
    .await?;
    Ok(sub_result(columns, rows, changes, size, dml))
}

/// One PostgreSQL value (text format) as a Data API value.
fn pg_value(row: &sqlx::postgres::PgRow, i: usize, ty: &str) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| format!("ERROR: {e}"))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let text: String = row
        .try_get_unchecked(i)
        .map_err(|e| format!("ERROR: {e}"))?;
    Ok(match ty {
        "int2" | "int4" | "int8" | "oid" => {
            text.parse().map(Value::Long).unwrap_or(Value::Text(text))
        }
        "float4" | "float8" => text.parse().map(Value::Double).unwrap_or(Value::Text(text)),
        "bool" => Value::Bool(text == "t"),
        _ => Value::Text(text),
    })
}

/// Types one value from its SQLite storage class.
fn sqlite_value(
    row: &sqlx::sqlite::SqliteRow,
    i: usize,
    declared_bool: bool,
) -> Result<Value, String> {
    let class = {
        let raw = row.try_get_raw(i).map_err(|e| format!("ERROR: {e}"))?;
        if raw.is_null() {
            StorageClass::Null
        } else {
            StorageClass::from_sqlx_name(raw.type_info().name())
        }
    };
    let err = |e: sqlx::Error| format!("ERROR: {e}");
    Ok(match class {
        StorageClass::Null => Value::Null,
        StorageClass::Integer => {
            let v: i64 = row.try_get_unchecked(i).map_err(err)?;
            if declared_bool {
                Value::Bool(v != 0)
            } else {
                Value::Long(v)
            }
        }
        StorageClass::Real => Value::Double(row.try_get_unchecked(i).map_err(err)?),
        StorageClass::Text => Value::Text(row.try_get_unchecked(i).map_err(err)?),
        StorageClass::Blob => Value::Blob(row.try_get_unchecked(i).map_err(err)?),
    })
}

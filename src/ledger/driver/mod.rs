//! The ledger's drivers: what differs between its backends, and nothing
//! else (River's `riverdriver`, Oban's engines). A driver opens the pool
//! and runs its migrations, starts a transaction, takes row locks,
//! serialises claims, announces jobs made READY, reads the database's
//! clock, and holds the few SQL texts that differ ([`Dialect`]).
//!
//! The code of each concern (jobs, claims, runs, inbox, outbox, change
//! stream, schedules, leader lease, retention, dump/restore) is written
//! once, above the drivers, with [`query`]: `$N` placeholders (which both
//! SQLite and PostgreSQL take) and values bound as their own Rust types,
//! encoded by the backend's own sqlx driver (no `sqlx::Any`).

pub mod postgres;
pub mod sqlite;

use super::{LedgerError, Result};
use sqlx::{Encode, Postgres, Sqlite, Type};

/// How a column's values are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// INTEGER (SQLite), BIGINT (PostgreSQL).
    Int,
    /// TEXT.
    Text,
    /// INTEGER 0/1 (SQLite), BOOLEAN (PostgreSQL).
    Bool,
    /// TEXT (SQLite), JSONB (PostgreSQL).
    Json,
}

/// The SQL text and behaviour that differ between the backends.
#[derive(Debug)]
pub struct Dialect {
    /// "sqlite" or "postgres".
    pub name: &'static str,
    /// Whether an attempt a live worker is submitting stays its own
    /// (several workers); SQLite's one worker per file resumes it at once.
    pub claims_held: bool,
    /// Appended to a SELECT that takes the rows it reads ("" when
    /// transactions already exclude other writers).
    pub for_update: &'static str,
    /// Appended to a claim's SELECT: skip a row another process claims.
    pub skip_locked: &'static str,
    /// The database's clock in epoch milliseconds (leases, heartbeats).
    pub now_ms: &'static str,
    /// Placed between an INSERT's column list and VALUES to write an
    /// identity column's value as given (a restore).
    pub overriding_identity: &'static str,
    /// (table, column) of every table the migrations made, in column order.
    pub schema_columns: &'static str,
    /// The change stream's order over `changes c`: commit order.
    pub change_order: &'static str,
    /// [`Dialect::change_order`] reversed.
    pub change_order_desc: &'static str,
    /// Change rows every transaction before which has ended: rows that can
    /// be delivered without one committing behind them later.
    pub change_settled: &'static str,
    /// Change rows after the change with sequence number `$1` in
    /// [`Dialect::change_order`].
    pub change_after: &'static str,
}

impl Dialect {
    /// Whether the backend takes row locks (PostgreSQL). SQLite's
    /// `BEGIN IMMEDIATE` already holds the write lock: its lock reads are
    /// skipped, off the hot path.
    pub fn row_locks(&self) -> bool {
        !self.for_update.is_empty()
    }
}

/// A pool of connections to the ledger.
#[derive(Clone)]
pub enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(postgres::PgStore),
}

/// A transaction on the ledger (rolled back when dropped uncommitted).
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Pool {
    pub fn dialect(&self) -> &'static Dialect {
        match self {
            Pool::Sqlite(_) => &sqlite::DIALECT,
            Pool::Postgres(_) => &postgres::DIALECT,
        }
    }

    /// Starts a transaction: `BEGIN IMMEDIATE` on SQLite (the write lock at
    /// once, so that every guarded read-then-update sees what it changes),
    /// READ COMMITTED on PostgreSQL (every transition is an UPDATE guarded
    /// on the old state, which PostgreSQL re-checks after a row lock).
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Tx::Postgres(p.pool().begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.pool().close().await,
        }
    }
}

impl Tx {
    pub fn dialect(&self) -> &'static Dialect {
        match self {
            Tx::Sqlite(_) => &sqlite::DIALECT,
            Tx::Postgres(_) => &postgres::DIALECT,
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Claims that count in-flight statements take turns, so that the
    /// limits hold across workers (PostgreSQL: an advisory lock that ends
    /// with the transaction; SQLite's `BEGIN IMMEDIATE` already does).
    pub async fn serialize_claims(&mut self) -> Result<()> {
        if let Tx::Postgres(_) = self {
            query("SELECT pg_advisory_xact_lock(7265727265)")
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    /// Tells the other workers, at commit, that jobs became READY
    /// (PostgreSQL's NOTIFY; SQLite's one worker polls).
    pub async fn notify_ready(&mut self) -> Result<()> {
        if let Tx::Postgres(_) = self {
            query("SELECT pg_notify($1, '')")
                .bind(postgres::READY_CHANNEL)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    /// Takes the rows `sql` selects (PostgreSQL), so that transactions that
    /// change them take turns; nothing on SQLite, whose transactions hold
    /// the write lock. `sql` selects one column and gets the dialect's
    /// `FOR UPDATE` appended.
    pub async fn lock_rows<'a>(&mut self, sql: &str, arg: impl Arg<'a> + 'a) -> Result<()> {
        let dialect = self.dialect();
        if dialect.row_locks() {
            query(format!("{sql}{}", dialect.for_update))
                .bind(arg)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    /// After a restore: identity columns continue after the copied ids.
    pub async fn continue_identity(&mut self, table: &str, column: &str) -> Result<()> {
        if let Tx::Postgres(_) = self {
            query(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            ))
            .execute(&mut *self)
            .await?;
        }
        Ok(())
    }
}

/// What a query runs on: the pool (one statement, its own transaction) or
/// a transaction.
pub enum On<'c> {
    Pool(&'c Pool),
    Tx(&'c mut Tx),
}

impl<'c> From<&'c Pool> for On<'c> {
    fn from(p: &'c Pool) -> Self {
        On::Pool(p)
    }
}

impl<'c> From<&'c mut Tx> for On<'c> {
    fn from(t: &'c mut Tx) -> Self {
        On::Tx(t)
    }
}

/// A value bound to a placeholder: any type both backends encode.
pub trait Arg<'a>: Send + Sync {
    fn add_sqlite(&self, args: &mut sqlx::sqlite::SqliteArguments) -> Result<()>;
    fn add_postgres(&self, args: &mut sqlx::postgres::PgArguments) -> Result<()>;
}

impl<'a, T> Arg<'a> for T
where
    T: Encode<'a, Sqlite> + Type<Sqlite> + Encode<'a, Postgres> + Type<Postgres>,
    T: Send + Sync + 'a,
{
    fn add_sqlite(&self, args: &mut sqlx::sqlite::SqliteArguments) -> Result<()> {
        sqlx::Arguments::add(args, self).map_err(encode_error)
    }

    fn add_postgres(&self, args: &mut sqlx::postgres::PgArguments) -> Result<()> {
        sqlx::Arguments::add(args, self).map_err(encode_error)
    }
}

fn encode_error(e: sqlx::error::BoxDynError) -> LedgerError {
    LedgerError::Db(sqlx::Error::Encode(e))
}

/// Several values bound at once ([`Query::binds`]): tuples of [`Arg`]s.
pub trait Binds<'a> {
    fn push_to(self, args: &mut Vec<Box<dyn Arg<'a> + 'a>>);
}

macro_rules! tuple_binds {
    ($($v:ident: $T:ident),+) => {
        impl<'a, $($T: Arg<'a> + 'a),+> Binds<'a> for ($($T,)+) {
            fn push_to(self, args: &mut Vec<Box<dyn Arg<'a> + 'a>>) {
                let ($($v,)+) = self;
                $(args.push(Box::new($v));)+
            }
        }
    };
}

tuple_binds!(a: A, b: B);
tuple_binds!(a: A, b: B, c: C);
tuple_binds!(a: A, b: B, c: C, d: D);
tuple_binds!(a: A, b: B, c: C, d: D, e: E);
tuple_binds!(a: A, b: B, c: C, d: D, e: E, f: F);
tuple_binds!(a: A, b: B, c: C, d: D, e: E, f: F, g: G);
tuple_binds!(a: A, b: B, c: C, d: D, e: E, f: F, g: G, h: H);

/// A row type both backends decode (`#[derive(FromRow)]`, tuples).
pub trait Row:
    for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    + Send
    + Unpin
{
}

impl<T> Row for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin
{
}

/// Builds `$query` for the backend `$on` is on with `$build` (sqlx's
/// `query_with` or `query_as_with`) as `$q`, and runs `$run` with the
/// backend's executor as `$e` (the pool, or the transaction's connection).
macro_rules! on_backend {
    ($query:expr, $on:expr, $build:path, |$q:ident, $e:ident| $run:expr) => {{
        let sql = sqlx::AssertSqlSafe($query.sql.clone());
        match $on.into() {
            On::Pool(Pool::Sqlite($e)) => {
                let $q = $build(sql, $query.sqlite_args()?);
                $run
            }
            On::Tx(Tx::Sqlite(t)) => {
                let ($q, $e) = ($build(sql, $query.sqlite_args()?), &mut **t);
                $run
            }
            On::Pool(Pool::Postgres(p)) => {
                let ($q, $e) = ($build(sql, $query.postgres_args()?), p.pool());
                $run
            }
            On::Tx(Tx::Postgres(t)) => {
                let ($q, $e) = ($build(sql, $query.postgres_args()?), &mut **t);
                $run
            }
        }
    }};
}

/// One SQL statement and its bound values, for whichever backend runs it.
#[must_use = "a query does nothing until it is executed"]
pub struct Query<'a> {
    sql: String,
    args: Vec<Box<dyn Arg<'a> + 'a>>,
}

/// A statement written once for both backends (`$N` placeholders).
pub fn query<'a>(sql: impl Into<String>) -> Query<'a> {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

impl<'a> Query<'a> {
    /// Binds the next placeholder.
    pub fn bind(mut self, value: impl Arg<'a> + 'a) -> Self {
        self.args.push(Box::new(value));
        self
    }

    /// Binds the next placeholders, one per element of a tuple.
    pub fn binds(mut self, values: impl Binds<'a>) -> Self {
        values.push_to(&mut self.args);
        self
    }

    fn sqlite_args(&self) -> Result<sqlx::sqlite::SqliteArguments> {
        let mut args = sqlx::sqlite::SqliteArguments::default();
        for a in &self.args {
            a.add_sqlite(&mut args)?;
        }
        Ok(args)
    }

    fn postgres_args(&self) -> Result<sqlx::postgres::PgArguments> {
        let mut args = sqlx::postgres::PgArguments::default();
        for a in &self.args {
            a.add_postgres(&mut args)?;
        }
        Ok(args)
    }

    /// Runs the statement: the number of rows it changed.
    pub async fn execute<'c>(self, on: impl Into<On<'c>>) -> Result<u64> {
        Ok(on_backend!(self, on, sqlx::query_with, |q, e| q
            .execute(e)
            .await?
            .rows_affected()))
    }

    /// Every row.
    pub async fn fetch_all<'c, R: Row>(self, on: impl Into<On<'c>>) -> Result<Vec<R>> {
        Ok(on_backend!(
            self,
            on,
            sqlx::query_as_with::<_, R, _>,
            |q, e| q.fetch_all(e).await?
        ))
    }

    /// The first row, if any.
    pub async fn fetch_optional<'c, R: Row>(self, on: impl Into<On<'c>>) -> Result<Option<R>> {
        Ok(on_backend!(
            self,
            on,
            sqlx::query_as_with::<_, R, _>,
            |q, e| q.fetch_optional(e).await?
        ))
    }

    /// Exactly one row.
    pub async fn fetch_one<'c, R: Row>(self, on: impl Into<On<'c>>) -> Result<R> {
        self.fetch_optional(on)
            .await?
            .ok_or(LedgerError::Db(sqlx::Error::RowNotFound))
    }

    /// The first column of every row.
    pub async fn scalars<'c, T>(self, on: impl Into<On<'c>>) -> Result<Vec<T>>
    where
        (T,): Row,
    {
        Ok(self
            .fetch_all::<(T,)>(on)
            .await?
            .into_iter()
            .map(|(v,)| v)
            .collect())
    }

    /// The first column of the first row, if any.
    pub async fn scalar_optional<'c, T>(self, on: impl Into<On<'c>>) -> Result<Option<T>>
    where
        (T,): Row,
    {
        Ok(self.fetch_optional::<(T,)>(on).await?.map(|(v,)| v))
    }

    /// The first column of exactly one row.
    pub async fn scalar<'c, T>(self, on: impl Into<On<'c>>) -> Result<T>
    where
        (T,): Row,
    {
        Ok(self.fetch_one::<(T,)>(on).await?.0)
    }
}

/// One value of a table's column whatever its table (dump and restore).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Json(Option<serde_json::Value>),
}

impl Value {
    /// The value as text, JSON objects with sorted keys (checksums).
    pub fn canonical(&self) -> String {
        fn sorted(v: &serde_json::Value) -> serde_json::Value {
            match v {
                serde_json::Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    serde_json::Value::Object(
                        keys.into_iter()
                            .map(|k| (k.clone(), sorted(&m[k])))
                            .collect(),
                    )
                }
                serde_json::Value::Array(a) => {
                    serde_json::Value::Array(a.iter().map(sorted).collect())
                }
                other => other.clone(),
            }
        }
        match self {
            Value::Int(v) => v.map(|n| n.to_string()).unwrap_or_default(),
            Value::Text(v) => v.clone().map(|s| format!("'{s}")).unwrap_or_default(),
            Value::Bool(v) => v.map(|b| b.to_string()).unwrap_or_default(),
            Value::Json(v) => v
                .as_ref()
                .map(|j| sorted(j).to_string())
                .unwrap_or_default(),
        }
    }
}

fn decode_row<R>(row: &R, kinds: &[Kind]) -> Result<Vec<Value>>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<sqlx::types::Json<serde_json::Value>>:
        sqlx::Decode<'r, R::Database> + Type<R::Database>,
{
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            Ok(match kind {
                Kind::Int => Value::Int(row.try_get(i)?),
                Kind::Text => Value::Text(row.try_get(i)?),
                Kind::Bool => Value::Bool(row.try_get(i)?),
                Kind::Json => Value::Json(
                    row.try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>(i)?
                        .map(|j| j.0),
                ),
            })
        })
        .collect()
}

impl Query<'_> {
    /// Every row as values of the given kinds (one per column).
    pub async fn fetch_values<'c>(
        self,
        on: impl Into<On<'c>>,
        kinds: &[Kind],
    ) -> Result<Vec<Vec<Value>>> {
        let rows = on_backend!(self, on, sqlx::query_with, |q, e| q
            .fetch_all(e)
            .await?
            .iter()
            .map(|r| decode_row(r, kinds))
            .collect::<Vec<_>>());
        rows.into_iter().collect()
    }
}

/// A [`Value`] binds as the type it holds.
impl<'a> Arg<'a> for Value {
    fn add_sqlite(&self, args: &mut sqlx::sqlite::SqliteArguments) -> Result<()> {
        match self {
            Value::Int(v) => v.add_sqlite(args),
            Value::Text(v) => v.add_sqlite(args),
            Value::Bool(v) => v.add_sqlite(args),
            Value::Json(v) => v.as_ref().map(sqlx::types::Json).add_sqlite(args),
        }
    }

    fn add_postgres(&self, args: &mut sqlx::postgres::PgArguments) -> Result<()> {
        match self {
            Value::Int(v) => v.add_postgres(args),
            Value::Text(v) => v.add_postgres(args),
            Value::Bool(v) => v.add_postgres(args),
            Value::Json(v) => v.as_ref().map(sqlx::types::Json).add_postgres(args),
        }
    }
}

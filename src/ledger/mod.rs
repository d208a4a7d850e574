//! The ledger: every job, attempt, dependency, run, consumed event and
//! result file. One API ([`Ledger`]) over two backends: SQLite (one file,
//! the embedded default, one worker) and PostgreSQL (several workers).
//! Each state change is one transaction whose UPDATE is guarded on the
//! expected old state; zero rows changed is a [`LedgerError::Conflict`],
//! never silence.
//!
//! The rooms:
//! - `driver`: what differs between the backends (pool, transaction start,
//!   row locks, claim serialisation, notifications, clock, SQL text), and
//!   the one query builder every concern uses;
//! - one module per concern, each adding its methods to [`Ledger`]: `jobs`,
//!   `claims` (submission and what counts as in flight), `transitions`
//!   (an attempt's end, cancels, retries, timeouts), `runs`, `results`,
//!   `inbox` (Redshift's events received), `outbox` (our own events to
//!   publish), `changes` (the change stream the API serves), `schedules`,
//!   `lease` (workers and the leader), `retention`, `dump` (migrations
//!   between ledgers), `check` (the invariants);
//! - `tables`: the registry of every table, which dump, restore and the
//!   schema tests read; `types`: the rows and what the API takes;
//!   `names`: ClientTokens and StatementNames; `location`: where the ledger
//!   is (a path or a URL).

mod changes;
mod check;
mod claims;
pub mod driver;
mod dump;
mod inbox;
mod job_row;
mod jobs;
mod lease;
pub mod location;
pub mod names;
mod outbox;
mod results;
mod retention;
mod runs;
mod schedules;
pub mod tables;
mod transitions;
mod triggers;
mod types;

pub use crate::domain::{Accepted, Param, ParamFrom, Session, Target};
pub use location::Location;
pub use names::{client_token, parse_statement_name, statement_name};
pub use triggers::{Admission, Taken, TakenEvent};
pub use types::*;

use crate::state::RunState;
use driver::{Pool, Tx};

/// A worker whose heartbeat is older than this (ms) is not live: its
/// claims may be taken over, and it no longer counts for the rate share.
pub const LIVE_MS: i64 = 15_000;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the ledger file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("job {0} does not exist")]
    NoSuchJob(i64),
    #[error("run {0} does not exist (see `redrelay runs list`)")]
    NoSuchRun(String),
    #[error("run {run} is {found}, expected {expected}: nothing to change")]
    RunConflict {
        run: String,
        found: RunState,
        expected: RunState,
    },
    #[error("job {job} is {found}, expected {expected}: another process changed it first")]
    Conflict {
        job: i64,
        found: String,
        expected: String,
    },
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Location(String),
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Why an operator's retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryRefused {
    #[error("{0}")]
    Why(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<sqlx::Error> for RetryRefused {
    fn from(e: sqlx::Error) -> Self {
        RetryRefused::Ledger(e.into())
    }
}

pub(crate) fn conflict(
    job: i64,
    found: impl Into<String>,
    expected: impl Into<String>,
) -> LedgerError {
    LedgerError::Conflict {
        job,
        found: found.into(),
        expected: expected.into(),
    }
}

/// The ledger, whichever its backend: the methods of each concern live in
/// the module named for it.
#[derive(Clone)]
pub struct Ledger {
    pool: Pool,
}

impl Ledger {
    /// Opens a SQLite ledger file (creating it, readable by its owner only).
    pub async fn open(path: &std::path::Path) -> Result<Self> {
        Ok(Self {
            pool: Pool::Sqlite(driver::sqlite::open(path).await?),
        })
    }

    /// Opens the ledger at `location` and runs its migrations.
    pub async fn connect(location: &Location, max_connections: u32) -> Result<Self> {
        Ok(Self {
            pool: match location {
                Location::Sqlite(path) => Pool::Sqlite(driver::sqlite::open(path).await?),
                Location::Postgres { options, .. } => Pool::Postgres(
                    driver::postgres::PgStore::connect((**options).clone(), max_connections)
                        .await?,
                ),
            },
        })
    }

    /// "sqlite" or "postgres".
    pub fn kind(&self) -> &'static str {
        self.pool.dialect().name
    }

    /// The PostgreSQL store, when the ledger is on PostgreSQL.
    pub fn postgres(&self) -> Option<&driver::postgres::PgStore> {
        match &self.pool {
            Pool::Postgres(s) => Some(s),
            Pool::Sqlite(_) => None,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction (see [`Pool::begin`]).
    async fn begin(&self) -> Result<Tx> {
        self.pool.begin().await
    }
}

//! The PostgreSQL backend: several workers on one ledger (RDS, Aurora, or
//! any PostgreSQL 12+). Claims lock the job row (`FOR UPDATE SKIP LOCKED`)
//! and count in-flight statements under a transaction-scoped advisory lock;
//! jobs made READY send a `NOTIFY` so that other workers wake at once
//! (polling stays the fallback). Migrations in `migrations/postgres/`.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;

type Tx = Transaction<'static, Postgres>;

/// The channel jobs made READY are announced on.
pub const READY_CHANNEL: &str = "redrelay_ready";

/// What differs from SQLite.
mod dialect {
    use super::Tx;
    use crate::ledger::Result;

    /// An attempt a live worker is submitting is left to it.
    pub const CLAIMS_HELD: bool = true;

    /// Transactions that change one job take its row first, so that two
    /// workers applying events of the same job take turns.
    pub const FOR_UPDATE: &str = " FOR UPDATE";

    /// A claim skips a row another process is claiming.
    pub const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

    /// The database's clock in epoch milliseconds (leases, heartbeats): one
    /// clock for every worker, whatever their hosts'.
    pub const NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

    /// Claims that count in-flight statements take turns, so that the
    /// limits hold across workers (the lock ends with the transaction).
    pub async fn serialize_claims(tx: &mut Tx) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(7265727265)")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Identity sequences continue after the ids a migration copied.
    pub async fn after_restore(tx: &mut Tx) -> Result<()> {
        for (table, column) in [("jobs", "id"), ("events", "seq")] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Tells the other workers, at commit, that jobs became READY.
    pub async fn notify_ready(tx: &mut Tx) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(super::READY_CHANNEL)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects (a pool of `max_connections`) and runs the migrations. The
    /// migrations take PostgreSQL's advisory lock, so several workers
    /// starting at once migrate once.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// READ COMMITTED: every transition is an UPDATE guarded on the old
    /// state, which PostgreSQL re-checks after waiting for a row lock.
    async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A listener for [`READY_CHANNEL`] (its own connection).
    pub async fn listen_ready(&self) -> Result<sqlx::postgres::PgListener> {
        let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        l.listen(READY_CHANNEL).await?;
        Ok(l)
    }

    /// Whether the ledger holds no job, run or event (a migration target).
    pub async fn is_empty(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM jobs) + (SELECT COUNT(*) FROM runs) \
             + (SELECT COUNT(*) FROM events)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n == 0)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

crate::ledger::queries::ledger_queries!();

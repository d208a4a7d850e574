//! The PostgreSQL driver: several workers on one ledger (RDS, Aurora, or
//! any PostgreSQL 12+). Claims lock the job row (`FOR UPDATE SKIP LOCKED`)
//! and count in-flight statements under a transaction-scoped advisory lock;
//! jobs made READY send a `NOTIFY` so that other workers wake at once
//! (polling stays the fallback). Migrations in `migrations/postgres/`.

use super::Dialect;
use crate::ledger::Result;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::time::Duration;

/// How long opening the ledger waits for the server's first answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel jobs made READY are announced on.
pub const READY_CHANNEL: &str = "redrelay_ready";

pub static DIALECT: Dialect = Dialect {
    name: "postgres",
    // An attempt a live worker is submitting is left to it.
    claims_held: true,
    // Transactions that change one job take its row first, so that two
    // workers applying events of the same job take turns.
    for_update: " FOR UPDATE",
    // A claim skips a row another process is claiming.
    skip_locked: " FOR UPDATE SKIP LOCKED",
    // One clock for every worker, whatever their hosts'.
    now_ms: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    overriding_identity: " OVERRIDING SYSTEM VALUE",
    schema_columns: "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%' \
         ORDER BY table_name, ordinal_position",
    // Sequence numbers are taken before commit: the stream goes by
    // transaction id, and only past every transaction still running.
    change_order: "COALESCE(c.xid, 0), c.seq",
    change_order_desc: "COALESCE(c.xid, 0) DESC, c.seq DESC",
    change_settled: "COALESCE(c.xid, 0) < txid_snapshot_xmin(txid_current_snapshot())",
    change_after: "(COALESCE(c.xid, 0), c.seq) > (COALESCE((SELECT COALESCE(a.xid, 0) FROM changes a \
         WHERE a.seq = $1), (SELECT COALESCE(MAX(a.xid), 0) FROM changes a WHERE a.seq <= $1), 0), $1)",
};

/// A PostgreSQL ledger's pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects (a pool of `max_connections`) and runs the migrations. The
    /// migrations take PostgreSQL's advisory lock, so several workers
    /// starting at once migrate once.
    /// A server that cannot be reached fails within [`CONNECT_TIMEOUT`]
    /// with its cause (refused, unknown host, authentication), not after
    /// the pool's wait with "pool timed out".
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        use sqlx::Connection;
        match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&options))
            .await
        {
            Ok(Ok(probe)) => drop(probe.close().await),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(sqlx::Error::PoolTimedOut.into());
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Why the server cannot be reached now, if it cannot: a connection
    /// of its own (not the pool's, whose wait hides the cause), given
    /// `within` to answer.
    pub async fn unreachable(&self, within: Duration) -> Option<String> {
        use sqlx::Connection;
        let options = self.pool.connect_options();
        match tokio::time::timeout(within, sqlx::PgConnection::connect_with(&options)).await {
            Ok(Ok(probe)) => {
                drop(probe.close().await);
                None
            }
            Ok(Err(e)) => Some(format!("cannot connect to PostgreSQL: {e}")),
            Err(_) => Some(format!(
                "PostgreSQL does not accept a connection within {} s",
                within.as_secs()
            )),
        }
    }

    /// A listener for [`READY_CHANNEL`] (its own connection).
    pub async fn listen_ready(&self) -> Result<sqlx::postgres::PgListener> {
        let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        l.listen(READY_CHANNEL).await?;
        Ok(l)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

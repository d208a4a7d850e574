//! Workers and the leader's lease: heartbeats, the lease taken, renewed
//! or taken over by the database's clock, and the live workers.

use super::driver::query;
use super::*;

impl Ledger {
    pub async fn heartbeat(&self, w: &WorkerInfo) -> Result<()> {
        let sql = format!(
            "INSERT INTO workers (id, host, pid, started_at, heartbeat_at, listen) \
                 VALUES ($1, $2, $3, $4, {now}, $5) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = {now}, listen = excluded.listen",
            now = self.pool.dialect().now_ms
        );
        query(sql)
            .binds((&w.id, &w.host, w.pid, w.started_at, w.listen.get()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn deregister(&self, worker_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        query("DELETE FROM leases WHERE name = 'leader' AND holder = $1")
            .bind(worker_id)
            .execute(&mut tx)
            .await?;
        query("DELETE FROM workers WHERE id = $1")
            .bind(worker_id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts the lease if absent, renews it if this worker holds it,
    /// takes it over if it expired; by the database's clock.
    /// With `take`, the lease is taken whoever holds it (SQLite: the one
    /// worker of a file is the leader, and one killed leaves its lease).
    pub async fn try_lead(&self, worker_id: &str, ttl_ms: i64, take: bool) -> Result<bool> {
        let sql = format!(
            "INSERT INTO leases (name, holder, expires_at) VALUES ('leader', $1, {now} + $2) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                   expires_at = excluded.expires_at \
                 WHERE {take} OR leases.holder = excluded.holder OR leases.expires_at < {now} \
                 RETURNING holder",
            now = self.pool.dialect().now_ms,
            take = if take { "1 = 1" } else { "1 = 0" }
        );
        let holder: Option<String> = query(sql)
            .binds((worker_id, ttl_ms))
            .scalar_optional(&self.pool)
            .await?;
        Ok(holder.as_deref() == Some(worker_id))
    }

    pub async fn workers(&self, live_ms: i64) -> Result<Vec<WorkerRow>> {
        let sql = format!(
            "SELECT w.id, w.host, w.pid, w.started_at, w.heartbeat_at, \
                   (l.holder IS NOT NULL) AS leader, w.listen \
                 FROM workers w LEFT JOIN leases l ON l.name = 'leader' AND l.holder = w.id \
                   AND l.expires_at >= {now} \
                 WHERE w.heartbeat_at >= {now} - $1 ORDER BY w.started_at, w.id",
            now = self.pool.dialect().now_ms
        );
        query(sql)
            .bind(live_ms)
            .fetch_all::<WorkerRow>(&self.pool)
            .await
    }

    /// The database's clock in epoch milliseconds: one clock for every
    /// worker (leases, heartbeats, the scheduler's fire times).
    pub async fn now_ms(&self) -> Result<i64> {
        query(format!("SELECT {}", self.pool.dialect().now_ms))
            .scalar(&self.pool)
            .await
    }
}

//! The SQLite driver: one file, WAL, `BEGIN IMMEDIATE` transactions (one
//! writer at a time, which makes every claim exclusive), migrations in
//! `migrations/sqlite/`. The embedded default: one worker per file.

use super::Dialect;
use crate::ledger::{LedgerError, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::time::Duration;

pub static DIALECT: Dialect = Dialect {
    name: "sqlite",
    // One worker per file: an attempt left SUBMITTING is the previous
    // (killed) process's, resumed at once with its ClientToken.
    claims_held: false,
    // No row locks: `BEGIN IMMEDIATE` already excludes other writers.
    for_update: "",
    skip_locked: "",
    now_ms: "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    // AUTOINCREMENT takes explicit ids and follows them.
    overriding_identity: "",
    schema_columns: "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' \
         ORDER BY m.name, p.cid",
    // One writer at a time: sequence order is commit order.
    change_order: "c.seq",
    change_order_desc: "c.seq DESC",
    change_settled: "1 = 1",
    change_after: "c.seq > $1",
};

/// Opens (creating, readable by its owner only) the ledger file and runs
/// the migrations.
pub async fn open(path: &Path) -> Result<SqlitePool> {
    let create_err = |source| LedgerError::Create {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(create_err)?;
    }
    match create_private(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create_err(e)),
    }
    // Several processes (the worker, `redrelay submit`) may open a new
    // ledger at once: switching to WAL and migrating happen under an
    // exclusive lock on a side file.
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(create_err)?;
    let lock_file = tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file))
        .await
        .map_err(|e| create_err(std::io::Error::other(e)))?
        .map_err(create_err)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(1)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    // SQLite creates the WAL and shared-memory files with the umask's
    // mode; they hold ledger data too.
    #[cfg(unix)]
    for suffix in ["-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600));
    }
    drop(lock_file);
    Ok(pool)
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
}

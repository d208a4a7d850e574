//! A real PostgreSQL server for tests, shared by the tests of one test
//! binary, with a fresh database per test.
//!
//! Unless `REDRELAY_TEST_POSTGRES_URL` names a server to use
//! (`postgres://user:pass@host:port/db`; the tests create their databases
//! in it), the first call runs `initdb` into a temporary folder (as the
//! `postgres` user when the tests run as root: initdb refuses root),
//! starts `pg_ctl` on a free 127.0.0.1 port with its unix socket in that
//! folder, and leaves a watchdog that stops the server by its PID once the
//! test process has exited. It never skips: without PostgreSQL's server
//! binaries (Debian's `postgresql` package puts them in
//! /usr/lib/postgresql/<version>/bin; `make pg` installs it as root) it
//! fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A fresh database on the shared server.
#[derive(Debug, Clone)]
pub struct PgServer {
    /// `postgres://...` of this test's own database.
    pub url: String,
    /// The database's name.
    pub database: String,
    /// `postgres://...` of the server's maintenance database.
    pub admin_url: String,
}

struct Shared {
    admin_url: String,
    /// The test's own server (None with REDRELAY_TEST_POSTGRES_URL); kept so
    /// that its folder lives as long as the process.
    _server: Option<Server>,
}

static SERVER: OnceLock<Result<Shared, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The server's binaries: REDRELAY_PG_BIN, else the newest
/// /usr/lib/postgresql/<version>/bin that has initdb.
pub fn pg_bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("REDRELAY_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL's server binaries are missing (no /usr/lib/postgresql/<version>/bin/initdb): \
         install Debian's `postgresql` package (`make pg` does it when run as root), or set \
         REDRELAY_TEST_POSTGRES_URL to a server the tests may create databases in"
            .to_string()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary, as `postgres` when we are root.
fn run_pg(bin: &Path, args: &[&str], root: bool) -> Result<(), String> {
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {args:?} failed ({}): {}{}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_server() -> Result<Shared, String> {
    if let Ok(url) = std::env::var("REDRELAY_TEST_POSTGRES_URL") {
        return Ok(Shared {
            admin_url: url,
            _server: None,
        });
    }
    let server = Server::init()?;
    server.start()?;
    // Statics are never dropped: the watchdog stops the server once this
    // test process is gone.
    server.watchdog()?;
    Ok(Shared {
        admin_url: server.admin_url(),
        _server: Some(server),
    })
}

impl Server {
    /// A watchdog that stops the server (by the PID in its pid file, fast
    /// shutdown) once this test process is gone, should nobody have
    /// stopped it (a dropped [`Server`] removes its folder, pid file too).
    fn watchdog(&self) -> Result<(), String> {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             [ -f '{f}' ] && kill -INT \"$(head -n 1 '{f}')\" 2>/dev/null",
                me = std::process::id(),
                f = pid_file.display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the PostgreSQL watchdog: {e}"))
    }
}

/// A server of the test's own in a temporary folder, on a free loopback
/// port: made by `initdb`, started and stopped with `pg_ctl`.
pub struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    root: bool,
    pub port: u16,
}

impl Server {
    fn init() -> Result<Server, String> {
        let bin = pg_bin_dir()?;
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("redrelay-pg-")
            .tempdir()
            .map_err(|e| format!("cannot make a folder for PostgreSQL: {e}"))?;
        let path = dir.path().to_path_buf();
        if root {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&path)
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cannot give {} to the postgres user: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let data_s = path.join("data").display().to_string();
        run_pg(
            &bin.join("initdb"),
            &[
                "-D",
                &data_s,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            root,
        )?;
        Ok(Server {
            dir,
            bin,
            root,
            port: super::free_port(),
        })
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts the server (on the same port each time) and waits for it.
    pub fn start(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let data = self.data();
        run_pg(
            &self.bin.join("pg_ctl"),
            &[
                "-D", &data, "-o", &opts, "-l", &log, "-w", "-t", "60", "start",
            ],
            self.root,
        )
        .map_err(|e| {
            format!(
                "{e}\nserver log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// Stops the server: `fast` ends every session at once (as a crash or
    /// a failover does to its clients).
    pub fn stop(&self) -> Result<(), String> {
        let data = self.data();
        run_pg(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"],
            self.root,
        )
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a database on this server: its `postgres://` URL.
    pub async fn database(&self, name: &str) -> String {
        create_database(&self.admin_url(), name).await
    }
}

/// A server of the test's own, which it may stop and start (a ledger
/// outage, a restart); stopped when dropped, and by a watchdog should the
/// test process die first.
pub fn private() -> Server {
    let server = Server::init().unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"));
    server
        .start()
        .unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    server.watchdog().unwrap_or_else(|e| panic!("{e}"));
    server
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.dir.path().join("data").join("postmaster.pid").exists() {
            let _ = self.stop();
        }
    }
}

async fn create_database(admin_url: &str, database: &str) -> String {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {database}: {e}"));
    let _ = admin.close().await;
    match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => panic!("REDRELAY_TEST_POSTGRES_URL must end in /DATABASE"),
    }
}

/// A fresh database on the test binary's PostgreSQL server (started on
/// first use). Panics, saying what to install, when there is no server.
pub async fn postgres() -> PgServer {
    let shared = SERVER.get_or_init(start_server);
    let shared = match shared {
        Ok(s) => s,
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    };
    let database = format!(
        "rr_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let url = create_database(&shared.admin_url, &database).await;
    PgServer {
        url,
        database,
        admin_url: shared.admin_url.clone(),
    }
}

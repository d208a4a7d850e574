//! The command line as a new user meets it, with no local stack: what it
//! says about a bad setting or a file that is not a ledger, and the empty
//! listings of a new ledger.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `redrelay ARGS` in `dir` (no redrelay.toml there) with only the
/// given REDRELAY_* variables.
fn redrelay(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redrelay"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_bad_environment_value_names_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = redrelay(
        dir.path(),
        &[("REDRELAY_MAX_IN_FLIGHT", "-3")],
        &["jobs", "list"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: REDRELAY_MAX_IN_FLIGHT=-3 is invalid: max_in_flight must be a whole number 0 or more\n"
    );
}

#[test]
fn a_text_file_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a ledger\n").unwrap();
    let out = redrelay(
        dir.path(),
        &[("REDRELAY_LEDGER", notes.to_str().unwrap())],
        &["jobs", "list"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("notes.txt is not a redrelay ledger: it is not a SQLite database"),
        "{err}"
    );
    assert!(err.contains("REDRELAY_LEDGER"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // The file is left as it was.
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "not a ledger\n");
}

#[test]
fn a_damaged_ledger_says_so_and_the_driver_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 4096));
    std::fs::write(&damaged, bytes).unwrap();
    let out = redrelay(
        dir.path(),
        &[("REDRELAY_LEDGER", damaged.to_str().unwrap())],
        &["jobs", "list"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("damaged.db is not a redrelay ledger: SQLite says \"file is not a database\""),
        "{err}"
    );
    assert_eq!(err.matches("file is not a database").count(), 1, "{err}");
}

#[test]
fn a_new_ledger_lists_nothing_under_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("REDRELAY_LEDGER", "new.db")];
    let list = |args: &[&str]| {
        let out = redrelay(dir.path(), &env, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(
        list(&["jobs", "list"]),
        "ID  STATE  NAME  ATTEMPT  ROWS  STATEMENT  ERROR\n"
    );
    assert_eq!(
        list(&["runs", "list"]),
        "RUN  STATE  PIPELINE  CREATED  ENDED\n"
    );
    assert_eq!(
        list(&["events"]),
        "SEQ  DISPOSITION  JOB  STATE  STATEMENT  REASON\n"
    );
    assert_eq!(
        list(&["workers", "list"]),
        "WORKER  HOST  PID  STARTED  HEARTBEAT  LEADER\n"
    );
    assert_eq!(
        list(&["schedules", "list"]),
        "NAME  CRON  TIMEZONE  PAUSED  LAST  NEXT\n"
    );
    assert_eq!(list(&["ledger", "check"]), "ledger ok: 0 jobs checked\n");
}

/// Issue 17.14: a ledger that cannot be reached fails a command within a
/// few seconds with its cause (it waited 34 s for the pool, then said
/// "pool timed out while waiting for an open connection").
#[test]
fn an_unreachable_ledger_fails_a_command_at_once_with_its_cause() {
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://nobody@127.0.0.1:{port}/x");
    let started = std::time::Instant::now();
    let out = redrelay(dir.path(), &[("REDRELAY_LEDGER", &url)], &["jobs", "list"]);
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "took {took:?}: {err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
}

//! The worker as a process, with no local stack: what it does when its
//! queue cannot be reached.

use std::process::{Command, Stdio};
use std::time::Duration;

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs a worker whose queue is unreachable for `secs`, and returns the
/// waits (ms) it chose between receive attempts, from its log.
fn receive_backoffs(dir: &std::path::Path, name: &str, port: u16, secs: u64) -> Vec<u64> {
    let endpoint = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_redrelay"))
        .arg("worker")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("REDRELAY_LEDGER", dir.join(format!("{name}.db")))
        .env("REDRELAY_QUEUE_URL", format!("{endpoint}/123456789012/q"))
        .env("REDRELAY_RETENTION_DAYS", "0")
        .env("REDRELAY_LISTEN", "")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(secs));
    // Stopped by its PID with SIGTERM, as systemd would.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let waits: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("Cannot receive from the queue"))
        .filter_map(|l| {
            let rest = l.split("retry_in_ms=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(waits.len() >= 3, "too few receive retries in:\n{log}");
    waits
}

/// Issue 7.6: two workers whose queue fails at the same moments back off
/// by different amounts (the jitter is seeded per process, not by the
/// failure count), so a fleet does not retry in lock-step.
#[test]
fn two_workers_do_not_retry_in_lock_step() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| receive_backoffs(dir.path(), "a", port, 4));
        let b = s.spawn(|| receive_backoffs(dir.path(), "b", port, 4));
        (a.join().unwrap(), b.join().unwrap())
    });
    let n = a.len().min(b.len()).min(4);
    assert_ne!(
        a[..n],
        b[..n],
        "same backoff sequence in two processes: {a:?} {b:?}"
    );
}

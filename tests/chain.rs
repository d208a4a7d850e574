//! End to end on the local stack: submit with WithEvent, consume completion
//! events from SQS (moto), record them in the ledger, fetch results, submit
//! dependents. Assertions are on the ledger, the result files and the
//! emulator's own record.

mod common;

use common::{seen, warehouse_query, Stack, StackOptions, PROBE};
use redrelay::ledger::{Disposition, Ledger};
use redrelay::state::JobState;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// When the FINISHED event of `job`'s statement was applied (ms).
async fn finished_event_at(ledger: &Ledger, job: i64) -> i64 {
    let events = ledger.inbox(10_000).await.unwrap();
    events
        .iter()
        .filter(|e| e.job_id == Some(job) && e.disposition == Disposition::Applied)
        .filter(|e| e.state.as_deref() == Some("FINISHED"))
        .map(|e| e.received_at)
        .min()
        .unwrap_or_else(|| panic!("job {job} has no applied FINISHED event: {events:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_of_three_finishes_in_order() {
    let stack = Stack::start("chain3");
    let a = stack.submit(&[
        "--name",
        "load_staging",
        "--sql",
        "CREATE TABLE staging AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) SELECT i AS id, i * 2 AS v FROM n",
    ]);
    let b = stack.submit(&[
        "--name",
        "merge",
        "--after",
        &a.to_string(),
        "--sql",
        "CREATE TABLE target AS SELECT id, v FROM staging WHERE v % 4 = 0",
    ]);
    let c = stack.submit(&[
        "--name",
        "report",
        "--after",
        &b.to_string(),
        "--param",
        "min=10",
        "--result-formats",
        "csv,jsonl",
        "--sql",
        "SELECT COUNT(*) AS n, SUM(v) AS total FROM target WHERE id >= :min",
    ]);
    // The worker starts once the chain is recorded: each dependent is then
    // PENDING when recorded, whatever the speed of the machine.
    let _worker = stack.spawn_worker_ready(&[]);
    stack.wait_state(c, "FINISHED", WAIT);
    stack.wait_fetched(c, WAIT);
    let ledger = stack.ledger().await;
    for id in [a, b, c] {
        let job = ledger.job(id).await.unwrap();
        assert_eq!(job.state, JobState::Finished, "job {id}");
        assert_eq!(job.attempt, 1);
        assert!(job.statement_id.is_some());
    }
    // Each dependent was submitted only after its parent's FINISHED event.
    for (parent, child) in [(a, b), (b, c)] {
        let event_at = finished_event_at(&ledger, parent).await;
        let child_job = ledger.job(child).await.unwrap();
        let attempts = ledger.attempts(child).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert!(
            attempts[0].started_at >= event_at,
            "job {child} started submitting at {} before job {parent}'s FINISHED event at {event_at}",
            attempts[0].started_at
        );
        assert!(child_job.submitted_at.unwrap() >= event_at);
        // Recorded PENDING, made READY later (by its parent's end).
        assert!(
            child_job.ready_at.unwrap() > child_job.created_at,
            "{child_job:?}"
        );
        assert!(child_job.ready_at.unwrap() >= event_at);
        assert_eq!(ledger.deps(child).await.unwrap(), vec![parent]);
    }
    // The emulator ran exactly three statements, in chain order.
    let record = stack.record();
    let ours: Vec<_> = record
        .iter()
        .filter(|r| {
            r["statement_name"]
                .as_str()
                .unwrap_or("")
                .starts_with("redrelay/")
        })
        .collect();
    assert_eq!(ours.len(), 3, "{record:#?}");
    // 25 even-times-two rows, ids 2..50 step 2; those with id >= 10: 10..50 -> 21 rows.
    let csv = stack.ok(&["results", &c.to_string()]);
    let expected_total: i64 = (10..=50).filter(|i| (i * 2) % 4 == 0).map(|i| i * 2).sum();
    assert_eq!(csv, format!("n,total\n21,{expected_total}\n"));
    let jsonl = stack.ok(&["results", &c.to_string(), "--format", "jsonl"]);
    let row: serde_json::Value = serde_json::from_str(jsonl.trim()).unwrap();
    assert_eq!(row["n"], 21);
    assert_eq!(row["total"], expected_total);
    // Operator views.
    let list = stack.json(&["jobs", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    let shown = stack.ok(&["jobs", "show", &c.to_string()]);
    assert!(
        shown.contains("FINISHED") && shown.contains("min"),
        "{shown}"
    );
    assert!(
        !shown.contains("min=10") && !stack.log("worker.log").contains("min=10"),
        "parameter values must not be shown or logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_sql_fails_the_job_and_its_dependents_never_run() {
    let stack = Stack::start("fail");
    let mut worker = stack.spawn_worker_ready(&[]);
    let a = stack.submit(&[
        "--name",
        "bad_load",
        "--sql",
        "INSERT INTO no_such_table VALUES (1)",
    ]);
    let b = stack.submit(&[
        "--name",
        "after_bad",
        "--after",
        &a.to_string(),
        "--sql",
        "SELECT 1",
    ]);
    let c = stack.submit(&[
        "--name",
        "after_after",
        "--after",
        &b.to_string(),
        "--sql",
        "SELECT 2",
    ]);
    // Every job ends (whatever the state: a dependent run by mistake ends
    // too, and fails the test below rather than timing out).
    let ended = |j: &Value| {
        !["PENDING", "READY", "SUBMITTED", "RETRY_WAIT"]
            .contains(&j["state"].as_str().unwrap_or(""))
    };
    let failed = stack.wait_job(a, "to end", WAIT, ended);
    for id in [b, c] {
        stack.wait_job(id, "to end", WAIT, ended);
    }
    // Then the worker stops: once it has exited no process is left that
    // could submit anything, so what the emulator ran is final.
    worker.signal("TERM");
    let status = worker.wait_exit(WAIT);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(failed["state"], "FAILED", "{failed:#}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no such table: no_such_table"),
        "the job's error should be the database's: {error:?}"
    );
    let ledger = stack.ledger().await;
    for id in [b, c] {
        let job = ledger.job(id).await.unwrap();
        assert_eq!(job.state, JobState::Skipped, "job {id}: {job:?}");
    }
    // The parent's FAILED event was applied, and its descendants were
    // skipped then, not before.
    let failed_at = ledger
        .inbox(100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.job_id == Some(a) && e.disposition == Disposition::Applied)
        .filter(|e| e.state.as_deref() == Some("FAILED"))
        .map(|e| e.received_at)
        .min()
        .unwrap_or_else(|| panic!("job {a}'s FAILED event was not applied"));
    for id in [b, c] {
        let job = ledger.job(id).await.unwrap();
        assert!(
            job.finished_at.unwrap() >= failed_at,
            "job {id} was skipped at {:?}, before its parent's FAILED event ({failed_at})",
            job.finished_at
        );
        assert_eq!(job.attempt, 0, "job {id} began an attempt: {job:?}");
        assert!(
            ledger.attempts(id).await.unwrap().is_empty(),
            "job {id} was submitted"
        );
        assert!(job.statement_id.is_none());
    }
    // The emulator ran only the failing statement: nothing with the
    // ClientToken of a skipped job.
    let record = stack.record();
    let token = &ledger.attempts(a).await.unwrap()[0].client_token;
    assert_eq!(
        record.len(),
        1,
        "only the failing statement ran: {record:#?}"
    );
    assert_eq!(record[0]["client_token"], token.as_str(), "{record:#?}");
    assert_eq!(record[0]["state"], "FAILED", "{record:#?}");
    // And the ledger agrees (it flags an attempt of a job skipped below a
    // failed parent).
    let check = stack.ok(&["ledger", "check"]);
    assert!(check.contains("ledger ok: 3 jobs checked"), "{check}");
    // A job submitted after a failed one is skipped at once.
    let d = stack.submit(&[
        "--name",
        "late",
        "--after",
        &a.to_string(),
        "--sql",
        "SELECT 3",
    ]);
    assert_eq!(ledger.job(d).await.unwrap().state, JobState::Skipped);
    let shown = stack.ok(&["jobs", "show", &a.to_string()]);
    assert!(shown.contains("no such table"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_results_are_fetched_per_sub_statement() {
    let stack = Stack::start("batch");
    let _worker = stack.spawn_worker(&[]);
    let id = stack.submit(&[
        "--name",
        "batch",
        "--sql",
        "CREATE TABLE t (a INTEGER, b TEXT)",
        "--sql",
        "INSERT INTO t VALUES (1, 'x'), (2, 'y, with comma'), (3, NULL)",
        "--sql",
        "SELECT a, b FROM t ORDER BY a",
        "--sql",
        "SELECT COUNT(*) AS n FROM t",
    ]);
    stack.wait_state(id, "FINISHED", WAIT);
    stack.wait_fetched(id, WAIT);
    let ledger = stack.ledger().await;
    let files = ledger.results(id).await.unwrap();
    let job = ledger.job(id).await.unwrap();
    let parent = job.statement_id.unwrap();
    assert_eq!(files.len(), 2, "{files:#?}");
    assert_eq!(files[0].sub, 3);
    assert_eq!(files[0].statement_id, format!("{parent}:3"));
    assert_eq!(files[0].rows, 3);
    assert_eq!(files[1].sub, 4);
    assert_eq!(files[1].statement_id, format!("{parent}:4"));
    assert_eq!(
        std::fs::read_to_string(&files[0].csv_path).unwrap(),
        "a,b\n1,x\n2,\"y, with comma\"\n3,\n"
    );
    assert_eq!(
        std::fs::read_to_string(&files[1].csv_path).unwrap(),
        "n\n3\n"
    );
    // CSV only by default (read with GetStatementResultV2): no JSON Lines.
    assert_eq!(files[0].jsonl_path, "");
    let err = stack.run(&["results", &id.to_string(), "--format", "jsonl"]);
    assert!(!err.status.success());
    assert!(
        common::stderr(&err).contains("kept its results as csv only"),
        "{}",
        common::stderr(&err)
    );
    assert_eq!(job.result_rows, Some(4));
    assert_eq!(
        stack.ok(&["results", &id.to_string(), "--statement", "4"]),
        "n\n3\n"
    );
    let err = stack.run(&["results", &id.to_string(), "--statement", "1"]);
    assert!(!err.status.success());
    assert!(common::stderr(&err).contains("no result for statement 1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_of_many_pages_is_complete() {
    let stack = Stack::start_with(
        "pages",
        StackOptions {
            page_size: 7,
            ..Default::default()
        },
    );
    let _worker = stack.spawn_worker(&[]);
    let a = stack.submit(&[
        "--name",
        "source",
        "--sql",
        "CREATE TABLE src AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 103) \
         SELECT i AS id, 'name ' || i AS name, i * 1.5 AS score FROM n",
    ]);
    // Both formats (typed pages of GetStatementResult) and CSV only (CSV
    // pages of GetStatementResultV2): the same CSV file.
    let b = stack.submit(&[
        "--name",
        "read",
        "--after",
        &a.to_string(),
        "--result-formats",
        "jsonl,csv",
        "--sql",
        "SELECT id, name, score FROM src ORDER BY id",
    ]);
    let c = stack.submit(&[
        "--name",
        "read_csv",
        "--after",
        &a.to_string(),
        "--sql",
        "SELECT id, name, score FROM src ORDER BY id",
    ]);
    stack.wait_state(b, "FINISHED", WAIT);
    stack.wait_fetched(b, WAIT);
    stack.wait_fetched(c, WAIT);
    let ledger = stack.ledger().await;
    let files = ledger.results(b).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].rows, 103);
    let source = warehouse_query(
        &stack.warehouse_path(),
        "SELECT id, name, score FROM src ORDER BY id",
    );
    assert_eq!(source.len(), 103);
    let jsonl = std::fs::read_to_string(&files[0].jsonl_path).unwrap();
    let fetched: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(fetched.len(), source.len());
    for (got, want) in fetched.iter().zip(&source) {
        assert_eq!(got["id"], want[0]);
        assert_eq!(got["name"], want[1]);
        assert_eq!(got["score"].as_f64(), want[2].as_f64());
    }
    let csv = std::fs::read_to_string(&files[0].csv_path).unwrap();
    assert_eq!(csv.lines().count(), 104);
    assert_eq!(ledger.job(b).await.unwrap().result_rows, Some(103));
    let csv_only = ledger.results(c).await.unwrap();
    assert_eq!(csv_only[0].rows, 103);
    assert_eq!(csv_only[0].jsonl_path, "");
    assert_eq!(std::fs::read_to_string(&csv_only[0].csv_path).unwrap(), csv);
    assert_eq!(
        ledger.job(c).await.unwrap().result_formats.as_deref(),
        Some("csv")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_foreign_messages_are_recorded_and_the_worker_goes_on() {
    let stack = Stack::start("poison");
    let _worker = stack.spawn_worker_ready(&[]);
    stack.send_raw("this is not json {");
    let forged = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/events/finished.json"),
    )
    .unwrap();
    stack.send_raw(&forged.replace("aws.redshift-data", "evil.forger"));
    // A well-formed event for a statement that is not ours.
    stack.send_raw(&forged);
    let id = stack.submit(&["--name", "after_poison", "--sql", "SELECT 42 AS answer"]);
    stack.wait_state(id, "FINISHED", WAIT);
    // The three bodies sent first are in the inbox, whatever became of them.
    let events = stack.wait_for(WAIT, "three events besides the applied one", || {
        let inbox: Vec<Value> = stack
            .inbox()
            .into_iter()
            .filter(|e| !e["body"].as_str().unwrap_or("").starts_with(PROBE))
            .collect();
        let n = inbox
            .iter()
            .filter(|e| e["disposition"] != "applied")
            .count();
        seen(n >= 3, inbox)
    });
    let by = |d: &str| {
        events
            .iter()
            .filter(|e| e["disposition"] == d)
            .cloned()
            .collect::<Vec<_>>()
    };
    let quarantined = by("quarantined");
    assert_eq!(quarantined.len(), 2, "{events:#?}");
    let reason = |e: &Value| e["reason"].as_str().unwrap_or("").to_string();
    assert!(quarantined
        .iter()
        .any(|e| e["body"] == "this is not json {" && reason(e).starts_with("body is not JSON")));
    assert!(quarantined
        .iter()
        .any(|e| reason(e).contains("evil.forger")));
    let foreign = by("foreign");
    assert_eq!(foreign.len(), 1, "{events:#?}");
    assert_eq!(
        foreign[0]["statement_id"],
        "dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a"
    );
    assert!(reason(&foreign[0]).contains("not a job of this ledger"));
    assert_eq!(by("applied").len(), 1);
    // Everything was acknowledged (on_invalid = on_foreign = ack).
    stack.wait_queue_empty(WAIT);
    let inbox = stack.ok(&["events"]);
    assert!(
        inbox.contains("quarantined") && inbox.contains("foreign"),
        "{inbox}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_worker_cleanly() {
    let stack = Stack::start("sigterm");
    let mut worker = stack.spawn_worker(&[]);
    // The worker is at work: it consumed the event of a job and fetched its
    // results. Its next receive is a long poll (20 s by default).
    let id = stack.submit(&["--name", "one", "--sql", "SELECT 1 AS one"]);
    stack.wait_fetched(id, WAIT);
    worker.signal("TERM");
    // The stop lets the receive in flight answer (at most its 20 s long
    // poll) and gives back what it got, so no event is stranded: it ends
    // within the long poll and the grace period.
    let status = worker.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the worker did not exit 0 on SIGTERM within 30 s: {status:?}\n{}",
        stack.log("worker.log")
    );
    assert!(stack.log("worker.log").contains("Worker stopped."));
    stack.ok(&["ledger", "check"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn until_idle_exits_once_the_chain_is_done() {
    let stack = Stack::start("idle");
    let a = stack.submit(&["--name", "one", "--sql", "CREATE TABLE x (a INTEGER)"]);
    let b = stack.submit(&[
        "--name",
        "two",
        "--after",
        &a.to_string(),
        "--sql",
        "INSERT INTO x VALUES (1), (2)",
    ]);
    stack.worker_until_idle(WAIT);
    let ledger = stack.ledger().await;
    assert_eq!(ledger.job(b).await.unwrap().state, JobState::Finished);
    assert_eq!(ledger.job(b).await.unwrap().rows, Some(2));
    assert_eq!(
        warehouse_query(&stack.warehouse_path(), "SELECT COUNT(*) FROM x")[0][0],
        2
    );
}

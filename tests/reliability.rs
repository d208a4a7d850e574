//! Reliability, one failure mode per test, on the local stack: a crash
//! between ExecuteStatement and the ledger write, an event that arrives
//! before its statement id is recorded, lost events, throttling, expired
//! results, poison messages and the dead-letter queue, graceful shutdown,
//! `ledger check` on a corrupted ledger, and the event parser against
//! hostile bodies. Assertions are on the ledger, the emulator's own record,
//! the warehouse and the queues.

mod common;

use common::{seen, warehouse_query, SplitMix, Stack, StackOptions};
use redrelay::clock::{Clock, SystemClock};
use redrelay::event::{self, Origin};
use redrelay::ledger::{Disposition, NewJob, Target};
use redrelay::state::{AttemptState, JobState};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn opts(config_extra: &str, emulator_args: &[&str]) -> StackOptions {
    StackOptions {
        config_extra: config_extra.into(),
        emulator_args: emulator_args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn new_job(name: &str, sql: &str) -> NewJob {
    NewJob {
        name: name.into(),
        sqls: vec![sql.into()],
        params: vec![],
        target: Target {
            workgroup: Some("wg-test".into()),
            database: Some("dev".into()),
            ..Default::default()
        },
        depends_on: vec![],
        max_attempts: 1,
        retry: None,
        timeout_secs: None,
        run_id: None,
        execution_mode: None,
        result_formats: None,
        session_keep_alive_secs: None,
    }
}

/// Records a job and "crashes" right after ExecuteStatement: the attempt's
/// ClientToken is in the ledger, the statement runs in the emulator, the
/// statement id is never recorded. Returns (job id, client token).
async fn submit_then_crash(stack: &Stack, name: &str, sql: &str) -> (i64, String) {
    let ledger = stack.ledger().await;
    let now = SystemClock.now_ms();
    let job = ledger.insert_job(&new_job(name, sql), now).await.unwrap();
    assert_eq!(job.state, JobState::Ready);
    let ticket = ledger
        .begin_attempt(job.id, now)
        .await
        .unwrap()
        .expect("the job is READY");
    let api = stack.data_api().await;
    let accepted = api
        .submit(&ticket.submission(), false)
        .await
        .expect("ExecuteStatement");
    assert!(!accepted.id.is_empty());
    // The crash: no mark_submitted.
    ledger.close().await;
    drop(api);
    (job.id, ticket.client_token)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_execute_and_the_ledger_write_runs_the_sql_once() {
    let stack = Stack::start("crash");
    warehouse_query(
        &stack.warehouse_path(),
        "CREATE TABLE effects (job TEXT NOT NULL)",
    );
    let (id, token) = submit_then_crash(
        &stack,
        "crashy",
        "INSERT INTO effects (job) VALUES ('crashy')",
    )
    .await;
    let ledger = stack.ledger().await;
    let job = ledger.job(id).await.unwrap();
    assert_eq!(job.state, JobState::Ready);
    assert!(job.statement_id.is_none());
    let attempts = ledger.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, AttemptState::Submitting);

    // The next worker resubmits the same attempt with the same ClientToken.
    stack.worker_until_idle(WAIT);
    let job = ledger.job(id).await.unwrap();
    assert_eq!(job.state, JobState::Finished, "{job:?}");
    assert_eq!(job.attempt, 1);
    let statements: Vec<Value> = stack.record_where("client_token", &token);
    assert_eq!(statements.len(), 1, "ran more than once: {statements:#?}");
    assert_eq!(statements[0]["state"], "FINISHED");
    assert_eq!(
        job.statement_id.as_deref(),
        statements[0]["id"].as_str(),
        "the job recorded the statement that ran"
    );
    let replays: Vec<Value> = stack
        .record_kind("replay")
        .into_iter()
        .filter(|r| r["client_token"] == token.as_str())
        .collect();
    assert_eq!(replays.len(), 1, "{replays:#?}");
    assert_eq!(replays[0]["id"], statements[0]["id"]);
    let rows = warehouse_query(
        &stack.warehouse_path(),
        "SELECT job, COUNT(*) FROM effects GROUP BY job",
    );
    assert_eq!(rows, vec![vec![json!("crashy"), json!(1)]]);
    let check = stack.ok(&["ledger", "check"]);
    assert!(check.contains("ledger ok: 1 jobs checked"), "{check}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_arrives_before_its_statement_id_is_recorded_is_applied() {
    // One slot in flight, taken by a held statement: the worker cannot
    // resubmit the crashed job, so its event is consumed first.
    let stack = Stack::start_with(
        "early",
        opts("max_in_flight = 1\n", &["--hold", "60000:blocker_"]),
    );
    let blocker = stack.submit(&["--name", "blocker", "--sql", "SELECT 'blocker_' AS x"]);
    assert_eq!(
        stack.json(&["jobs", "show", &blocker.to_string()])["state"],
        "SUBMITTED"
    );
    warehouse_query(
        &stack.warehouse_path(),
        "CREATE TABLE effects (job TEXT NOT NULL)",
    );
    let (id, token) = submit_then_crash(
        &stack,
        "early",
        "INSERT INTO effects (job) VALUES ('early')",
    )
    .await;
    let mut worker = stack.spawn_worker(&[]);
    let ledger = stack.ledger().await;
    let deferred = stack
        .wait_for_async(WAIT, "the early event in the inbox", || async {
            let events = ledger.inbox(100).await.unwrap();
            let mine = events.iter().find(|e| e.job_id == Some(id)).cloned();
            mine.ok_or_else(|| format!("{} events, none for job {id}", events.len()))
        })
        .await;
    assert_eq!(deferred.disposition, Disposition::Deferred, "{deferred:?}");
    assert_eq!(deferred.state.as_deref(), Some("FINISHED"));
    assert_eq!(ledger.job(id).await.unwrap().state, JobState::Ready);

    // Free the slot: the worker resubmits with the same token (a replay),
    // records the statement id and applies the kept event.
    stack.ok(&["jobs", "cancel", &blocker.to_string()]);
    let job = stack.wait_state(id, "FINISHED", WAIT);
    let events = ledger.inbox(100).await.unwrap();
    let mine: Vec<_> = events.iter().filter(|e| e.job_id == Some(id)).collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0].seq, deferred.seq);
    assert_eq!(mine[0].disposition, Disposition::Applied, "{mine:#?}");
    assert_eq!(
        mine[0].statement_id.as_deref(),
        job["statement_id"].as_str()
    );
    let ran: Vec<Value> = stack.record_where("client_token", &token);
    assert_eq!(ran.len(), 1, "{ran:#?}");
    assert!(stack
        .record_kind("replay")
        .iter()
        .any(|r| r["client_token"] == token.as_str()));
    assert_eq!(
        warehouse_query(&stack.warehouse_path(), "SELECT COUNT(*) FROM effects"),
        vec![vec![json!(1)]]
    );
    assert!(
        !stack
            .log("worker.log")
            .contains("found by DescribeStatement"),
        "the event, not the reconciler, must have ended the job"
    );
    worker.signal("TERM");
    assert!(worker
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    stack.ok(&["ledger", "check"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_event_lost_the_reconciler_finishes_a_chain() {
    let stack = Stack::start_with(
        "lost",
        opts("reconcile_after_secs = 1\n", &["--event-drop-prob", "1"]),
    );
    let started = Instant::now();
    let _worker = stack.spawn_worker(&[]);
    let a = stack.submit(&["--name", "a", "--sql", "CREATE TABLE t AS SELECT 1 AS v"]);
    let b = stack.submit(&[
        "--name",
        "b",
        "--after",
        &a.to_string(),
        "--sql",
        "INSERT INTO t VALUES (2)",
    ]);
    let c = stack.submit(&[
        "--name",
        "c",
        "--after",
        &b.to_string(),
        "--sql",
        "SELECT SUM(v) AS s FROM t",
    ]);
    stack.wait_state(c, "FINISHED", WAIT);
    let elapsed = started.elapsed();
    let log = stack.log("worker.log");
    assert_eq!(
        log.matches("found by DescribeStatement").count(),
        3,
        "{log}"
    );
    // Nothing came through the queue: every event was dropped.
    assert!(stack.inbox().is_empty());
    let events = stack.record_kind("event");
    assert_eq!(events.len(), 3, "{events:#?}");
    assert!(events.iter().all(|e| e["action"] == "dropped"));
    for id in [a, b, c] {
        assert_eq!(
            stack.json(&["jobs", "show", &id.to_string()])["state"],
            "FINISHED"
        );
    }
    // A figure, not a check: how fast the reconciler made up for the events.
    eprintln!("a chain of 3 with every event lost: {elapsed:?}");
    stack.wait_fetched(c, WAIT);
    assert_eq!(stack.ok(&["results", &c.to_string()]), "s\n3\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_submissions_back_off_and_every_job_finishes() {
    let stack = Stack::start_with(
        "throttle",
        opts(
            "",
            &[
                "--seed",
                "3",
                "--throttle-prob",
                "0.6",
                "--max-active",
                "2",
                "--hold",
                "300:INSERT",
            ],
        ),
    );
    let mut text = String::from("[jobs.root]\nsql = \"CREATE TABLE hits (n INTEGER)\"\n");
    for i in 0..10 {
        text.push_str(&format!(
            "[jobs.p{i}]\nsql = \"INSERT INTO hits VALUES ({i})\"\ndepends_on = [\"root\"]\n"
        ));
    }
    let file = stack.write_file("throttle.toml", &text);
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let started = Instant::now();
    let _worker = stack.spawn_worker(&[]);
    let runs = stack.wait_runs_ended(WAIT);
    let elapsed = started.elapsed();
    assert_eq!(runs[0]["id"], run.as_str());
    assert_eq!(runs[0]["state"], "FINISHED", "{runs:#?}");
    let ledger = stack.ledger().await;
    for job in ledger.jobs(None, Some(&run)).await.unwrap() {
        assert_eq!(job.state, JobState::Finished, "{job:?}");
        assert_eq!(
            job.attempt, 1,
            "throttling is not a failed attempt: {job:?}"
        );
    }
    let rejected = stack.record_kind("rejected");
    let throttled = rejected
        .iter()
        .filter(|r| r["error"] == "ThrottlingException")
        .count();
    assert!(throttled > 0, "nothing was throttled: {rejected:#?}");
    let log = stack.log("worker.log");
    assert!(log.contains("Submission throttled"), "{log}");
    // Exactly 11 statements ran, once each, and all of them finished.
    let record = stack.record();
    assert_eq!(record.len(), 11, "{record:#?}");
    assert!(
        record.iter().all(|r| r["state"] == "FINISHED"),
        "{record:#?}"
    );
    assert_eq!(
        warehouse_query(
            &stack.warehouse_path(),
            "SELECT COUNT(*), COUNT(DISTINCT n) FROM hits"
        ),
        vec![vec![json!(10), json!(10)]]
    );
    // Every refused submission was made again and ran (once): each
    // rejected ClientToken is in the record as a statement.
    for r in &rejected {
        let token = r["client_token"].as_str().expect("a rejected call's token");
        let ran = record.iter().filter(|s| s["client_token"] == token).count();
        assert_eq!(ran, 1, "token {token} was refused, then ran {ran} times");
    }
    // A figure, not a check.
    eprintln!(
        "throttling: {throttled} ThrottlingException, {} ActiveStatementsExceeded, run took {:.1} s",
        rejected.len() - throttled,
        elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_that_expired_before_the_worker_came_are_marked_expired() {
    let stack = Stack::start_with("expired", opts("", &["--result-ttl-secs", "1"]));
    let id = stack.submit(&["--name", "late_reader", "--sql", "SELECT 1 AS one"]);
    let sid = stack.json(&["jobs", "show", &id.to_string()])["statement_id"]
        .as_str()
        .expect("submitted")
        .to_string();
    // The statement ends and its results expire (1 s) before any worker
    // runs: GetStatementResultV2 (the result is kept as CSV, the default),
    // asked with boto3, no longer gives them.
    let script = format!(
        "import boto3,botocore\n\
         c=boto3.client('redshift-data', endpoint_url={url:?})\n\
         try:\n    c.get_statement_result_v2(Id={sid:?})\n    print('available')\n\
         except botocore.exceptions.ClientError as e:\n    print(e.response['Error']['Code'])\n",
        url = stack.data_url
    );
    stack.wait_for(WAIT, "the results to be gone from the Data API", || {
        let answer = stack.python(&script).trim().to_string();
        seen(answer != "available", answer)
    });
    stack.worker_until_idle(WAIT);
    let job = stack.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(job["state"], "FINISHED", "{job:#}");
    assert_eq!(job["result_state"], "EXPIRED", "{job:#}");
    let error = job["result_error"].as_str().unwrap_or_default();
    assert!(error.contains("expired"), "{error}");
    let shown = stack.ok(&["jobs", "show", &id.to_string()]);
    assert!(shown.contains("results      EXPIRED"), "{shown}");
    assert!(shown.contains("expired"), "{shown}");
    let out = stack.run(&["results", &id.to_string()]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("EXPIRED"),
        "{}",
        common::stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_ends_in_the_dlq_once_and_can_be_redriven() {
    let stack = Stack::start_with(
        "poison",
        opts(
            "on_invalid = \"leave\"\nmax_receive_count = 2\nvisibility_timeout_secs = 1\nwait_time_secs = 1\n",
            &[],
        ),
    );
    let body = "this is not JSON {";
    stack.send_raw(body);
    let mut worker = stack.spawn_worker(&[]);
    stack.wait_for(WAIT, "the message in the DLQ", || {
        let depth = stack.dlq_depth();
        seen(depth == 1, depth)
    });
    assert_eq!(stack.queue_depth(), 0);
    let letters = stack.json(&["dlq", "list"]);
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["body"], body);
    let message_id = letters[0]["message_id"].as_str().unwrap().to_string();
    // Listing leaves it there.
    assert_eq!(stack.dlq_depth(), 1);
    // Received several times, quarantined once.
    let inbox = stack.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(inbox[0]["disposition"], "quarantined");
    assert_eq!(inbox[0]["body"], body);
    assert_eq!(inbox[0]["message_id"], message_id.as_str());
    assert!(inbox[0]["reason"].as_str().unwrap().contains("not JSON"));
    let log = stack.log("worker.log");
    assert!(
        log.matches("Quarantined a message").count() >= 2,
        "it was received at least twice: {log}"
    );
    // Redrive it (with the worker stopped, so that it stays in the queue).
    worker.signal("TERM");
    assert!(worker
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let out = stack.ok(&["dlq", "redrive"]);
    assert!(out.contains("1 messages moved"), "{out}");
    assert_eq!(stack.queue_depth(), 1);
    assert_eq!(stack.dlq_depth(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_busy_worker_cleanly_and_the_next_one_finishes_its_jobs() {
    let stack = Stack::start_with(
        "sigterm",
        opts(
            "wait_time_secs = 1\nvisibility_timeout_secs = 5\n",
            &["--hold", "4000:slow_"],
        ),
    );
    let file = stack.write_file(
        "slow.toml",
        "[jobs.root]\nsql = \"CREATE TABLE done (j TEXT)\"\n\
         [jobs.s1]\nsql = \"INSERT INTO done VALUES ('slow_1')\"\ndepends_on = [\"root\"]\n\
         [jobs.s2]\nsql = \"INSERT INTO done VALUES ('slow_2')\"\ndepends_on = [\"root\"]\n\
         [jobs.s3]\nsql = \"INSERT INTO done VALUES ('slow_3')\"\ndepends_on = [\"root\"]\n",
    );
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let mut worker = stack.spawn_worker(&["--grace-secs", "5"]);
    stack.wait_submitted(&run, 3, WAIT).await;
    let ledger = stack.ledger().await;
    let stopping = Instant::now();
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(6));
    let took = stopping.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "worker did not exit 0 within its grace: {status:?}\n{}",
        stack.log("worker.log")
    );
    assert!(stack.log("worker.log").contains("Worker stopped."));
    // Still in flight: nothing was lost or wrongly ended by the stop.
    assert_eq!(
        ledger
            .jobs(Some(JobState::Submitted), Some(&run))
            .await
            .unwrap()
            .len(),
        3
    );
    let _next = stack.spawn_worker(&[]);
    let runs = stack.wait_runs_ended(WAIT);
    assert_eq!(runs[0]["state"], "FINISHED", "{runs:#?}");
    let inbox = stack.inbox();
    for job in ledger.jobs(None, Some(&run)).await.unwrap() {
        let applied: Vec<_> = inbox
            .iter()
            .filter(|e| e["job_id"] == job.id && e["disposition"] == "applied")
            .collect();
        assert_eq!(applied.len(), 1, "job {}: {applied:#?}", job.name);
        assert_eq!(applied[0]["state"], "FINISHED");
    }
    assert_eq!(stack.record().len(), 4);
    assert_eq!(
        warehouse_query(&stack.warehouse_path(), "SELECT COUNT(*) FROM done"),
        vec![vec![json!(3)]]
    );
    eprintln!("SIGTERM to exit: {took:?}");
}

/// Copies a live ledger (WAL included) with SQLite's backup API, then runs
/// `sql` on the copy with Python's sqlite3.
fn corrupt_copy(stack: &Stack, name: &str, sql: &str) -> String {
    let copy = stack.dir.path().join(name);
    let script = format!(
        "import sqlite3\n\
         src=sqlite3.connect({src})\n\
         dst=sqlite3.connect({dst})\n\
         src.backup(dst)\n\
         dst.executescript({sql})\n\
         dst.commit()\n",
        src = common::py_str(&stack.ledger_path().display().to_string()),
        dst = common::py_str(&copy.display().to_string()),
        sql = common::py_str(sql),
    );
    stack.python(&script);
    copy.display().to_string()
}

fn check_ledger(stack: &Stack, ledger: &str) -> (bool, String) {
    let out = stack
        .command(&["ledger", "check"])
        .env("REDRELAY_LEDGER", ledger)
        .output()
        .expect("run ledger check");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            common::stderr(&out)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_check_names_the_job_of_each_violation() {
    let stack = Stack::start("check");
    let file = stack.write_file(
        "check.toml",
        "[jobs.a]\nsql = \"CREATE TABLE x (v INTEGER)\"\n\
         [jobs.b]\nsql = \"INSERT INTO x VALUES (1)\"\ndepends_on = [\"a\"]\n\
         [jobs.bad]\nsql = \"INSERT INTO nowhere VALUES (1)\"\n\
         [jobs.after_bad]\nsql = \"SELECT 1\"\ndepends_on = [\"bad\"]\n",
    );
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    stack.worker_until_idle(WAIT);
    let ledger = stack.ledger().await;
    let jobs = ledger.jobs(None, Some(&run)).await.unwrap();
    let id = |n: &str| jobs.iter().find(|j| j.name == n).unwrap().id;
    let (a, b, bad, after_bad) = (id("a"), id("b"), id("bad"), id("after_bad"));
    assert_eq!(
        ledger.job(after_bad).await.unwrap().state,
        JobState::Skipped
    );
    let (ok, out) = check_ledger(&stack, &stack.ledger_path().display().to_string());
    assert!(ok, "{out}");
    assert!(out.contains("ledger ok: 4 jobs checked"), "{out}");
    let json = stack.json(&["ledger", "check"]);
    assert_eq!(json["violations"], json!([]), "{json:#}");

    // 1. The parent "finished" after its child's attempt started.
    let copy = corrupt_copy(
        &stack,
        "late_parent.db",
        &format!(
            "UPDATE jobs SET finished_at = (SELECT started_at + 60000 FROM attempts WHERE job_id = {b}) WHERE id = {a};"
        ),
    );
    let (ok, out) = check_ledger(&stack, &copy);
    assert!(!ok, "a late parent went unnoticed: {out}");
    assert!(out.contains(&format!("job {b}")), "{out}");
    assert!(out.contains(&format!("parent job {a}")), "{out}");

    // 2. An attempt for a SKIPPED job whose parent FAILED.
    let copy = corrupt_copy(
        &stack,
        "forged_attempt.db",
        &format!(
            "INSERT INTO attempts (job_id, attempt, client_token, statement_id, state, started_at, submitted_at) \
             VALUES ({after_bad}, 1, 'forged-1', 'forged-statement', 'SUBMITTED', 1, 2);"
        ),
    );
    let (ok, out) = check_ledger(&stack, &copy);
    assert!(!ok, "a forged attempt went unnoticed: {out}");
    assert!(out.contains(&format!("job {after_bad}")), "{out}");
    assert!(out.contains(&format!("parent job {bad}")), "{out}");

    // 3. One statement ended twice in the inbox.
    let sid = ledger.job(a).await.unwrap().statement_id.unwrap();
    let copy = corrupt_copy(
        &stack,
        "twice.db",
        &format!(
            "INSERT INTO events (event_id, received_at, statement_id, state, job_id, disposition, body) \
             VALUES ('forged-1', 1, '{sid}', 'FINISHED', {a}, 'applied', '{{}}'), \
                    ('forged-2', 2, '{sid}', 'FINISHED', {a}, 'applied', '{{}}');"
        ),
    );
    let (ok, out) = check_ledger(&stack, &copy);
    assert!(!ok, "an event applied twice went unnoticed: {out}");
    assert!(out.contains(&sid), "{out}");

    // The live ledger is untouched.
    let (ok, out) = check_ledger(&stack, &stack.ledger_path().display().to_string());
    assert!(ok, "{out}");
}

// ----- the event parser against hostile bodies -------------------------------

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An independent statement of what a well-formed event is (the documented
/// envelope and detail), to compare the parser against.
fn well_formed(v: &Value, origin: &Origin) -> bool {
    let Some(o) = v.as_object() else {
        return false;
    };
    let opt_str = |k: &str, obj: &serde_json::Map<String, Value>| {
        obj.get(k).is_none_or(|x| x.is_null() || x.is_string())
    };
    let opt_int = |k: &str, obj: &serde_json::Map<String, Value>| {
        obj.get(k)
            .is_none_or(|x| x.is_null() || x.as_i64().is_some())
    };
    // The id is what events are deduplicated on: it must be there and short.
    if !o
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.trim().is_empty() && id.len() <= 200)
        || o.get("source").and_then(Value::as_str) != Some(event::SOURCE)
        || o.get("detail-type").and_then(Value::as_str) != Some(event::DETAIL_TYPE)
        || !["version", "account", "time", "region"]
            .iter()
            .all(|k| opt_str(k, o))
    {
        return false;
    }
    if let Some(r) = o.get("resources") {
        if !r.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return false;
        }
    }
    for (key, want) in [("account", &origin.account), ("region", &origin.region)] {
        if let (Some(found), Some(want)) = (o.get(key).and_then(Value::as_str), want) {
            if found != want {
                return false;
            }
        }
    }
    let Some(d) = o.get("detail").and_then(Value::as_object) else {
        return false;
    };
    let sid_ok = d
        .get("statementId")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty() && s.len() <= 200);
    sid_ok
        && d.get("state").is_some_and(Value::is_string)
        && opt_str("principal", d)
        && opt_str("statementName", d)
        && opt_int("redshiftQueryId", d)
        && opt_int("rows", d)
        && opt_int("expireAt", d)
}

/// Parses without letting a panic escape; checks the rejection's reason.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
static REJECTED: AtomicUsize = AtomicUsize::new(0);

fn parse_checked(body: &str, origin: &Origin, expect_ok: Option<bool>) {
    let shown: String = body.chars().take(200).collect();
    let res = std::panic::catch_unwind(|| event::parse(body, origin));
    let res = match res {
        Ok(r) => r,
        Err(_) => panic!(
            "event::parse panicked on a {}-byte body: {shown:?}",
            body.len()
        ),
    };
    match &res {
        Ok(ev) => {
            ACCEPTED.fetch_add(1, Ordering::Relaxed);
            assert_ne!(
                expect_ok,
                Some(false),
                "accepted a malformed body {shown:?}: {ev:?}"
            );
        }
        Err(e) => {
            REJECTED.fetch_add(1, Ordering::Relaxed);
            let reason = e.to_string();
            assert!(!reason.is_empty(), "empty reason for {shown:?}");
            assert!(
                reason.len() < 1000,
                "a {}-char reason for {shown:?}",
                reason.len()
            );
            assert_ne!(
                expect_ok,
                Some(true),
                "rejected a well-formed body {shown:?}: {reason}"
            );
        }
    }
}

#[test]
fn the_event_parser_never_panics_and_accepts_only_well_formed_events() {
    let mut rng = SplitMix(0x5eed);
    let loose = Origin::default();
    let strict = Origin {
        account: Some("123456789012".into()),
        region: Some("us-east-1".into()),
    };
    let mut bases: Vec<Value> = [
        "finished.json",
        "failed-serverless.json",
        "aborted.json",
        "moto-no-account.json",
    ]
    .iter()
    .map(|f| serde_json::from_str(&fixture(f)).unwrap())
    .collect();
    bases.push(json!({
        "version": "0", "id": "e-1", "detail-type": event::DETAIL_TYPE,
        "source": event::SOURCE, "account": "123456789012", "time": "2026-11-25T00:00:00Z",
        "region": "us-east-1", "resources": ["arn:aws:redshift-serverless:us-east-1:123456789012:workgroup/wg"],
        "detail": {"principal": "p", "statementName": "redrelay/x/0123456789abcdef0123456789abcdef",
                   "statementId": "5b2e1ec9-2ee3-49a0-819f-905fa7d75a4a", "redshiftQueryId": 1,
                   "state": "FINISHED", "rows": 3, "expireAt": 1_800_000_000}
    }));
    let huge = "x".repeat(1 << 20);
    let replacements: Vec<Value> = vec![
        Value::Null,
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(u64::MAX),
        json!(true),
        json!(""),
        json!("FINISHED"),
        json!("\u{0}\u{ffff}\u{1F600}"),
        json!([]),
        json!(["a"]),
        json!({}),
        json!({"a": [1, {"b": null}]}),
        Value::String(huge.clone()),
    ];
    for origin in [&loose, &strict] {
        for base in &bases {
            let text = base.to_string();
            parse_checked(&text, origin, Some(well_formed(base, origin)));
            // Every truncation of a valid body is invalid JSON.
            for cut in 0..text.len() {
                if text.is_char_boundary(cut) {
                    parse_checked(&text[..cut], origin, Some(false));
                }
            }
            // Wrong types (and huge values) in every field, top level and detail.
            let top: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
            let detail: Vec<String> = base["detail"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            for r in &replacements {
                for k in &top {
                    let mut v = base.clone();
                    v[k.as_str()] = r.clone();
                    parse_checked(&v.to_string(), origin, Some(well_formed(&v, origin)));
                    let mut v = base.clone();
                    v.as_object_mut().unwrap().remove(k);
                    parse_checked(&v.to_string(), origin, Some(well_formed(&v, origin)));
                }
                for k in &detail {
                    let mut v = base.clone();
                    v["detail"][k.as_str()] = r.clone();
                    parse_checked(&v.to_string(), origin, Some(well_formed(&v, origin)));
                    let mut v = base.clone();
                    v["detail"].as_object_mut().unwrap().remove(k);
                    parse_checked(&v.to_string(), origin, Some(well_formed(&v, origin)));
                }
                // The whole detail, and the whole body.
                let mut v = base.clone();
                v["detail"] = r.clone();
                parse_checked(&v.to_string(), origin, Some(well_formed(&v, origin)));
                parse_checked(&r.to_string(), origin, Some(well_formed(r, origin)));
            }
            // Deep nesting: in an unknown field, and as the detail.
            for depth in [10usize, 100, 127, 128, 1000, 100_000] {
                let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
                let mut extra = base.clone();
                extra["detail"]["nested"] = json!(null);
                let body = extra
                    .to_string()
                    .replace("\"nested\":null", &format!("\"nested\":{nested}"));
                parse_checked(&body, origin, None);
                let mut v = base.clone();
                v["detail"] = json!(null);
                let body = v
                    .to_string()
                    .replace("\"detail\":null", &format!("\"detail\":{nested}"));
                parse_checked(&body, origin, Some(false));
                let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
                parse_checked(&objects, origin, Some(false));
            }
        }
    }
    // Random bytes (lossily made UTF-8), random JSON-ish token soup, and
    // random mutations of a valid body.
    let alphabet: Vec<&str> = vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\",
        "null",
        "true",
        "1",
        "-0",
        "1e999",
        "\"id\"",
        "\"detail\"",
        "\"source\"",
        "\"aws.redshift-data\"",
        " ",
        "\n",
        "\u{FEFF}",
        "\u{0}",
    ];
    let valid = bases.last().unwrap().to_string();
    for _ in 0..3000 {
        let len = rng.range(0, 512) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        parse_checked(&String::from_utf8_lossy(&bytes), &loose, None);
        let soup: String = (0..rng.range(0, 64))
            .map(|_| *rng.pick(&alphabet))
            .collect();
        parse_checked(&soup, &loose, None);
        let mut mutated: Vec<u8> = valid.clone().into_bytes();
        for _ in 0..rng.range(1, 4) {
            let at = rng.range(0, mutated.len() as u64) as usize;
            match rng.range(0, 3) {
                0 => mutated[at] = rng.next_u64() as u8,
                1 => {
                    mutated.remove(at);
                }
                _ => mutated.insert(at, *rng.pick(b"{}[]\":,0a\\")),
            }
        }
        let text = String::from_utf8_lossy(&mutated).into_owned();
        // Whether a mutation stays well-formed is for the oracle to say.
        let expect = serde_json::from_str::<Value>(&text)
            .ok()
            .map(|v| well_formed(&v, &loose));
        parse_checked(&text, &loose, Some(expect.unwrap_or(false)));
    }
    // Huge bodies: 1 MB strings in each string field, and 1 MB of junk.
    for key in ["id", "source", "detail-type", "region", "account", "time"] {
        let mut v = bases[4].clone();
        v[key] = Value::String(huge.clone());
        for origin in [&loose, &strict] {
            parse_checked(&v.to_string(), origin, Some(well_formed(&v, origin)));
        }
    }
    for key in ["statementId", "statementName", "state", "principal"] {
        let mut v = bases[4].clone();
        v["detail"][key] = Value::String(huge.clone());
        parse_checked(&v.to_string(), &loose, Some(well_formed(&v, &loose)));
    }
    parse_checked(&huge, &loose, Some(false));
    parse_checked(&format!("\"{huge}\""), &loose, Some(false));
    let (accepted, rejected) = (
        ACCEPTED.load(Ordering::Relaxed),
        REJECTED.load(Ordering::Relaxed),
    );
    eprintln!("event parser: {accepted} bodies accepted, {rejected} rejected, no panic");
    assert!(
        accepted > 200 && rejected > 10_000,
        "the cases do not cover both outcomes: {accepted} accepted, {rejected} rejected"
    );
}

/// Records a run (s1, held 3 s, then `after`), starts a worker, and stops
/// it with SIGTERM while it waits for s1's event in a long poll (the
/// default 20 s; visibility timeout 120 s). Returns the stack, the run and
/// s1's statement id, once the emulator's record says s1's event was sent
/// (while no worker runs).
async fn stop_during_a_long_poll() -> (Stack, String, String) {
    let stack = Stack::start_with("longpoll", opts("", &["--hold", "3000:slow_"]));
    let file = stack.write_file(
        "slow.toml",
        "[jobs.s1]\nsql = \"SELECT 'slow_1' AS x\"\n[jobs.after]\nsql = \"SELECT 2 AS y\"\ndepends_on = [\"s1\"]\n",
    );
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let mut worker = stack.spawn_worker_ready(&[]);
    stack.wait_submitted(&run, 1, WAIT).await;
    // The worker consumed its probe and submitted s1 (held 3 s): it waits
    // for s1's event in a long poll. Stop it there.
    worker.signal("TERM");
    assert!(worker
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let ledger = stack.ledger().await;
    let jobs = ledger.jobs(None, Some(&run)).await.unwrap();
    let s1 = jobs.iter().find(|j| j.name == "s1").unwrap();
    let sid = s1.statement_id.clone().expect("s1 was submitted");
    stack.wait_for(
        WAIT,
        "s1's event to be sent (the emulator's record)",
        || {
            let events = stack.record_kind("event");
            let sent = events
                .iter()
                .any(|e| e["statement_id"] == sid.as_str() && e["action"] == "sent");
            seen(sent, events)
        },
    );
    (stack, run, sid)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_long_poll_loses_no_job() {
    let (stack, run, sid) = stop_during_a_long_poll().await;
    let restarted = Instant::now();
    let _next = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FINISHED", "{shown:#}");
    // s1 ran once, and its end was recorded once (by its event or by the
    // next worker's reconciler).
    let ran: Vec<Value> = stack.record_where("id", &sid);
    assert_eq!(ran.len(), 1, "{ran:#?}");
    let applied = stack
        .inbox()
        .into_iter()
        .filter(|e| e["statement_id"] == sid.as_str() && e["disposition"] == "applied")
        .count();
    assert!(applied <= 1, "s1's event applied {applied} times");
    stack.ok(&["ledger", "check"]);
    // A figure, not a check.
    eprintln!("run ended {:?} after the restart", restarted.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_long_poll_strands_no_event() {
    let (stack, run, sid) = stop_during_a_long_poll().await;
    // The event waits in the queue for the next worker, visible: no
    // receive of the stopped worker took it (it would stay invisible for
    // the 120 s visibility timeout: stranded).
    let (visible, in_flight) = stack.queue_counts(&stack.queue);
    assert_eq!(
        (visible, in_flight),
        (1, 0),
        "s1's event should be on the queue, visible; (visible, in flight)"
    );
    let _next = stack.spawn_worker(&[]);
    stack.wait_run(&run, WAIT);
    // The next worker consumed it (a duplicate if its reconciler found s1
    // first) and nothing is left on the queue.
    stack.wait_queue_empty(WAIT);
    let consumed = stack
        .inbox()
        .into_iter()
        .filter(|e| e["statement_id"] == sid.as_str())
        .count();
    assert_eq!(consumed, 1, "s1's event reached the inbox once");
}

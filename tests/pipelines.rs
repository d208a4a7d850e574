//! Pipelines on the local stack: DAG order, concurrency limits, retries,
//! failure propagation, timeouts, cancel, upstream parameters, validation.
//! Assertions are on the ledger and on the emulator's own record.

mod common;

use common::{seen, warehouse_query, Stack, StackOptions};
use redrelay::state::{AttemptState, JobState};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn write(stack: &Stack, name: &str, text: &str) -> String {
    let path = stack.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn by_name(shown: &Value) -> HashMap<String, Value> {
    shown["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap().to_string(), j.clone()))
        .collect()
}

fn run_pipeline(stack: &Stack, file: &str, extra: &[&str]) -> String {
    let mut args = vec!["pipeline", "run", file];
    args.extend_from_slice(extra);
    stack.ok(&args).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diamond_waits_for_both_branches() {
    let stack = Stack::start("diamond");
    let file = write(
        &stack,
        "diamond.toml",
        r#"
        name = "diamond"
        [jobs.a]
        sql = "CREATE TABLE base AS SELECT 1 AS x UNION ALL SELECT 2"
        [jobs.b]
        sql = "CREATE TABLE left_side AS SELECT x * 10 AS y FROM base"
        depends_on = ["a"]
        [jobs.c]
        sql = "CREATE TABLE right_side AS SELECT x * 100 AS y FROM base"
        depends_on = ["a"]
        [jobs.d]
        sql = "SELECT (SELECT SUM(y) FROM left_side) + (SELECT SUM(y) FROM right_side) AS total"
        depends_on = ["b", "c"]
        "#,
    );
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FINISHED", "{shown:#}");
    let jobs = by_name(&shown);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(jobs[name]["state"], "FINISHED", "{name}");
    }
    let d_started = jobs["d"]["attempts"][0]["started_at"].as_i64().unwrap();
    for parent in ["b", "c"] {
        let finished = jobs[parent]["finished_at"].as_i64().unwrap();
        assert!(
            d_started >= finished,
            "d started at {d_started} before {parent} finished at {finished}"
        );
    }
    // And from the emulator's record: d's statement was created after b's and c's ended.
    let record = stack.record();
    let stmt = |job: &str| {
        let sid = jobs[job]["statement_id"].as_str().unwrap().to_string();
        record.iter().find(|r| r["id"] == sid).cloned().unwrap()
    };
    for parent in ["b", "c"] {
        assert!(stmt("d")["created_ms"].as_i64() >= stmt(parent)["ended_ms"].as_i64());
    }
    // The run's graph: nodes are ids labelled with the job and its state.
    let graph = stack.ok(&["pipeline", "graph", &run, "--format", "dot"]);
    let node = |job: &str| {
        let label = format!(" [label=\"{job}\\nFINISHED\"];");
        graph
            .lines()
            .find_map(|l| l.trim().strip_suffix(label.as_str()))
            .unwrap_or_else(|| panic!("no FINISHED node for {job}: {graph}"))
            .to_string()
    };
    for parent in ["b", "c"] {
        let edge = format!("{} -> {};", node(parent), node("d"));
        assert!(graph.contains(&edge), "no edge {edge}: {graph}");
    }
    // A run ends with its jobs; their results are fetched after.
    stack.wait_fetched(jobs["d"]["id"].as_i64().unwrap(), WAIT);
    let total = stack.ok(&["results", &jobs["d"]["id"].to_string()]);
    assert_eq!(total, "total\n330\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_of_fifty_respects_the_limit_of_five() {
    let stack = Stack::start_with(
        "fanout",
        StackOptions {
            config_extra: "max_in_flight = 5\n".into(),
            emulator_args: vec!["--hold".into(), "150:fan_".into()],
            ..Default::default()
        },
    );
    let mut text = String::from("[jobs.root]\nsql = \"CREATE TABLE hits (n INTEGER)\"\n");
    for i in 0..50 {
        text.push_str(&format!(
            "[jobs.fan_{i}]\nsql = \"INSERT INTO hits VALUES ({i})\"\ndepends_on = [\"root\"]\n"
        ));
    }
    let file = write(&stack, "fanout.toml", &text);
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FINISHED");
    assert_eq!(shown["jobs"].as_array().unwrap().len(), 51);
    // From the emulator's own record: never more than 5 statements alive.
    let mut edges: Vec<(i64, i32)> = Vec::new();
    let record = stack.record();
    assert_eq!(record.len(), 51, "every job ran exactly once");
    for r in &record {
        edges.push((r["created_ms"].as_i64().unwrap(), 1));
        edges.push((r["ended_ms"].as_i64().unwrap(), -1));
    }
    edges.sort_by_key(|&(t, d)| (t, d)); // ends before starts at the same instant
    let (mut alive, mut most) = (0, 0);
    for (_, d) in edges {
        alive += d;
        most = most.max(alive);
    }
    assert!(most <= 5, "{most} statements were in flight at once");
    assert!(
        most >= 3,
        "the limit was never approached ({most}): the test is not testing it"
    );
    let n = warehouse_query(
        &stack.warehouse_path(),
        "SELECT COUNT(*), COUNT(DISTINCT n) FROM hits",
    );
    assert_eq!(n[0], vec![Value::from(50), Value::from(50)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_fails_twice_finishes_on_its_third_attempt() {
    let stack = Stack::start("flaky");
    let file = write(
        &stack,
        "flaky.toml",
        r#"
        [jobs.prepare]
        sql = "CREATE TABLE copied (v INTEGER)"
        [jobs.flaky]
        # Fails until the source table exists in the warehouse.
        sql = "INSERT INTO copied SELECT v FROM source_ready"
        depends_on = ["prepare"]
        retries = { max_attempts = 3, initial_secs = 1.5, multiplier = 1.0, jitter = 0.0 }
        "#,
    );
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    let ledger = stack.ledger().await;
    let flaky = ledger
        .jobs(None, Some(&run))
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.name == "flaky")
        .unwrap();
    stack.wait_job(flaky.id, "two failed attempts", WAIT, |j| {
        let attempts = j["attempts"].as_array().unwrap();
        attempts.iter().filter(|a| a["state"] == "FAILED").count() == 2
    });
    // Now make the warehouse ready: the third attempt succeeds.
    warehouse_query(
        &stack.warehouse_path(),
        "CREATE TABLE source_ready AS SELECT 7 AS v UNION ALL SELECT 8",
    );
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FINISHED", "{shown:#}");
    let job = ledger.job(flaky.id).await.unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Finished, 3));
    let attempts = ledger.attempts(flaky.id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    for a in &attempts[..2] {
        assert_eq!(a.state, AttemptState::Failed);
        assert!(
            a.error
                .as_deref()
                .unwrap()
                .contains("no such table: source_ready"),
            "{a:?}"
        );
    }
    assert_eq!(attempts[2].state, AttemptState::Finished);
    let tokens: std::collections::HashSet<_> =
        attempts.iter().map(|a| a.client_token.clone()).collect();
    assert_eq!(tokens.len(), 3, "each attempt has its own ClientToken");
    // The wait between attempts was the backoff.
    let gap = attempts[1].started_at - attempts[0].finished_at.unwrap();
    assert!(
        gap >= 1400,
        "second attempt {gap} ms after the first failure"
    );
    let shown = stack.ok(&["jobs", "show", &flaky.id.to_string()]);
    assert!(
        shown.contains("#1 FAILED") && shown.contains("#3 FINISHED"),
        "{shown}"
    );
    assert_eq!(
        warehouse_query(&stack.warehouse_path(), "SELECT SUM(v) FROM copied")[0][0],
        15
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_skips_its_descendants_and_a_retry_revives_them() {
    let stack = Stack::start("skips");
    let file = write(
        &stack,
        "skips.toml",
        r#"
        [jobs.load]
        sql = "INSERT INTO missing_table VALUES (1)"
        [jobs.merge]
        sql = "CREATE TABLE merged AS SELECT * FROM missing_table"
        depends_on = ["load"]
        [jobs.unload]
        sql = "SELECT COUNT(*) AS n FROM merged"
        depends_on = ["merge"]
        [jobs.independent]
        sql = "CREATE TABLE other AS SELECT 1 AS one"
        "#,
    );
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FAILED", "{shown:#}");
    let jobs = by_name(&shown);
    assert_eq!(jobs["load"]["state"], "FAILED");
    assert!(jobs["load"]["error"]
        .as_str()
        .unwrap()
        .contains("no such table: missing_table"));
    assert_eq!(jobs["merge"]["state"], "SKIPPED");
    assert_eq!(jobs["unload"]["state"], "SKIPPED");
    assert_eq!(jobs["independent"]["state"], "FINISHED");
    assert!(jobs["merge"]["attempts"].as_array().unwrap().is_empty());
    assert_eq!(stack.record().len(), 2, "only load and independent ran");
    // A retry of a skipped job is refused while its parent failed.
    let refused = stack.run(&["jobs", "retry", &jobs["merge"]["id"].to_string()]);
    assert!(!refused.status.success());
    assert!(
        common::stderr(&refused).contains("retry job"),
        "{}",
        common::stderr(&refused)
    );
    // Fix the cause, retry the failed job: its descendants are revived.
    warehouse_query(
        &stack.warehouse_path(),
        "CREATE TABLE missing_table (v INTEGER)",
    );
    stack.ok(&["jobs", "retry", &jobs["load"]["id"].to_string()]);
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FINISHED", "{shown:#}");
    let jobs = by_name(&shown);
    assert_eq!(jobs["load"]["attempt"], 2);
    assert_eq!(jobs["unload"]["state"], "FINISHED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_statement_is_cancelled_and_retried_per_policy() {
    let stack = Stack::start_with(
        "timeout",
        StackOptions {
            emulator_args: vec!["--hold".into(), "20000:slow_scan".into()],
            ..Default::default()
        },
    );
    let file = write(
        &stack,
        "timeout.toml",
        r#"
        [jobs.slow]
        sql = "SELECT 'slow_scan' AS tag"
        timeout_secs = 1
        retries = { max_attempts = 2, initial_secs = 0.2, jitter = 0.0 }
        [jobs.after]
        sql = "SELECT 1"
        depends_on = ["slow"]
        "#,
    );
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    let jobs = by_name(&shown);
    assert_eq!(jobs["slow"]["state"], "FAILED", "{shown:#}");
    assert!(jobs["slow"]["error"]
        .as_str()
        .unwrap()
        .contains("timed out after 1 s"));
    assert_eq!(jobs["slow"]["attempt"], 2);
    assert_eq!(jobs["after"]["state"], "SKIPPED");
    // Both statements were really cancelled in the emulator (it records a
    // statement when it ends).
    let record = stack.wait_for(WAIT, "two statements in the record", || {
        let record = stack.record();
        seen(record.len() >= 2, record)
    });
    assert_eq!(record.len(), 2, "{record:#?}");
    for r in &record {
        assert_eq!(r["state"], "ABORTED", "{r:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parameter_taken_from_an_upstream_result_reaches_the_sql() {
    let stack = Stack::start("upstream");
    let file = write(
        &stack,
        "upstream.toml",
        r#"
        [params]
        label = "nightly"
        [jobs.source]
        sql = "CREATE TABLE src AS SELECT 41 AS id UNION ALL SELECT 987654321 UNION ALL SELECT 7"
        [jobs.extract]
        sql = "SELECT MAX(id) AS max_id, 'x' AS other FROM src"
        depends_on = ["source"]
        [jobs.load]
        sql = "CREATE TABLE picked AS SELECT :since AS since, :label AS label, :fixed AS fixed"
        depends_on = ["extract"]
        params = { since = { from = "extract", column = "max_id" }, label = { param = "label" }, fixed = 5 }
        [jobs.empty]
        sql = "SELECT id FROM src WHERE id < 0"
        depends_on = ["source"]
        [jobs.needs_a_row]
        sql = "SELECT :v AS v"
        depends_on = ["empty"]
        params = { v = { from = "empty", column = "id" } }
        [jobs.wrong_column]
        sql = "SELECT :v AS v"
        depends_on = ["extract"]
        params = { v = { from = "extract", column = "nope" } }
        "#,
    );
    let run = run_pipeline(&stack, &file, &["--param", "label=manual"]);
    let _worker = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    let jobs = by_name(&shown);
    assert_eq!(jobs["load"]["state"], "FINISHED", "{shown:#}");
    let picked = warehouse_query(
        &stack.warehouse_path(),
        "SELECT since, label, fixed FROM picked",
    );
    assert_eq!(
        picked[0],
        vec![
            Value::from(987654321),
            Value::from("manual"),
            Value::from(5)
        ]
    );
    assert_eq!(jobs["needs_a_row"]["state"], "FAILED");
    let e = jobs["needs_a_row"]["error"].as_str().unwrap();
    assert!(
        e.contains("upstream job empty") && e.contains("returned no rows"),
        "{e}"
    );
    assert_eq!(jobs["wrong_column"]["state"], "FAILED");
    let e = jobs["wrong_column"]["error"].as_str().unwrap();
    assert!(
        e.contains("has no column \"nope\"") && e.contains("max_id"),
        "{e}"
    );
    assert_eq!(shown["run"]["state"], "FAILED");
    let log = stack.log("worker.log");
    assert!(
        !log.contains("987654321"),
        "parameter values must not be logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_names_cycles_missing_dependencies_and_unknown_keys() {
    let stack = Stack::start("validate");
    let cases = [
        (
            "cycle.toml",
            "[jobs.a]\nsql = \"SELECT 1\"\ndepends_on = [\"b\"]\n[jobs.b]\nsql = \"SELECT 1\"\ndepends_on = [\"a\"]\n",
            "the jobs form a cycle: ",
        ),
        (
            "missing.toml",
            "[jobs.a]\nsql = \"SELECT 1\"\ndepends_on = [\"extract\"]\n",
            "job a: depends_on \"extract\", which is not a job of this pipeline",
        ),
        (
            "unknown.toml",
            "[jobs.a]\nsql = \"SELECT 1\"\nretry = 3\n",
            "job a: unknown field `retry`",
        ),
        (
            "mode.toml",
            "[jobs.a]\nsql = \"SELECT 1\"\nexecution_mode = \"auto_commit\"\n",
            "job a: execution_mode = \"auto_commit\" applies to a batch",
        ),
        (
            "formats.toml",
            "[jobs.a]\nsql = \"SELECT 1\"\nresult_formats = \"parquet\"\n",
            "result format \"parquet\" is not one of csv, jsonl",
        ),
        (
            "keepalive.toml",
            "session_keep_alive_secs = 60\n[jobs.a]\nsql = \"SELECT 1\"\n",
            "session_keep_alive_secs applies with session = true",
        ),
        (
            "mode2.toml",
            "[jobs.a]\nsql = [\"SELECT 1\", \"SELECT 2\"]\nexecution_mode = \"autocommit\"\n",
            "job a: execution_mode \"autocommit\" is not one of",
        ),
    ];
    for (name, text, message) in cases {
        let file = write(&stack, name, text);
        for cmd in ["validate", "run"] {
            let out = stack.run(&["pipeline", cmd, &file]);
            assert!(!out.status.success(), "{name} was accepted by {cmd}");
            let err = common::stderr(&out);
            assert!(err.contains(message), "{name}: {err}");
            assert!(err.contains(name), "the message names the file: {err}");
        }
    }
    let cycle = common::stderr(&stack.run(&[
        "pipeline",
        "validate",
        &stack.dir.path().join("cycle.toml").display().to_string(),
    ]));
    assert!(
        cycle.contains("a -> b -> a") || cycle.contains("b -> a -> b"),
        "{cycle}"
    );
    // Nothing was recorded or submitted.
    assert!(stack.jobs().await.is_empty());
    assert!(stack.record().is_empty());
    let ok = write(&stack, "ok.toml", "[jobs.a]\nsql = \"SELECT 1\"\n");
    assert!(stack.ok(&["pipeline", "validate", &ok]).contains("valid"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_leaves_no_statement_running() {
    let stack = Stack::start_with(
        "cancel",
        StackOptions {
            emulator_args: vec!["--hold".into(), "60000:long_load".into()],
            ..Default::default()
        },
    );
    let file = write(
        &stack,
        "cancel.toml",
        r#"
        [jobs.long_a]
        sql = "CREATE TABLE a AS SELECT 'long_load' AS x"
        [jobs.long_b]
        sql = "CREATE TABLE b AS SELECT 'long_load' AS x"
        [jobs.after]
        sql = "SELECT 1"
        depends_on = ["long_a", "long_b"]
        "#,
    );
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    stack.wait_submitted(&run, 2, WAIT).await;
    let out = stack.ok(&["runs", "cancel", &run]);
    assert!(out.contains("CANCELLED"), "{out}");
    let shown = stack.json(&["runs", "show", &run]);
    assert_eq!(shown["run"]["state"], "CANCELLED");
    let jobs = by_name(&shown);
    assert_eq!(jobs["long_a"]["state"], "CANCELLED");
    assert_eq!(jobs["long_b"]["state"], "CANCELLED");
    // Every job of the run that had not ended is CANCELLED, in one
    // transaction (none SKIPPED on the way, the run never FAILED).
    assert_eq!(jobs["after"]["state"], "CANCELLED");
    // The emulator runs nothing any more (asked with boto3, a client we did not write).
    let script = format!(
        "import boto3,os,json\n\
         c=boto3.client('redshift-data', endpoint_url={url:?})\n\
         s=c.list_statements(Status='ALL', MaxResults=100)['Statements']\n\
         print(json.dumps({{x['Id']: x['Status'] for x in s}}))\n",
        url = stack.data_url
    );
    let statuses = stack.wait_for(WAIT, "no statement running", || {
        let statuses: HashMap<String, String> =
            serde_json::from_str(stack.python(&script).trim()).unwrap();
        let running = statuses
            .values()
            .any(|s| ["SUBMITTED", "PICKED", "STARTED"].contains(&s.as_str()));
        seen(!running, statuses)
    });
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(statuses.values().all(|s| s == "ABORTED"), "{statuses:?}");
    // A job cancelled twice says so.
    let again = stack.run(&["jobs", "cancel", &jobs["long_a"]["id"].to_string()]);
    assert!(!again.status.success());
    assert!(common::stderr(&again).contains("already CANCELLED"));
}

/// Issue 7.2: a statement that cannot be cancelled at its timeout (it is
/// committing) is never run a second time: the job waits for its real end,
/// and records the attempt as it truly ended (FINISHED, one row).
#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_statement_that_cannot_be_cancelled_runs_once() {
    let stack = Stack::start_with(
        "timeout-commit",
        StackOptions {
            emulator_args: vec!["--commit-hold".into(), "3000:committing_load".into()],
            ..Default::default()
        },
    );
    let file = write(
        &stack,
        "commit.toml",
        r#"
        [jobs.setup]
        sql = "CREATE TABLE IF NOT EXISTS loaded (tag TEXT)"
        [jobs.load]
        sql = "INSERT INTO loaded VALUES ('committing_load')"
        depends_on = ["setup"]
        timeout_secs = 1
        retries = { max_attempts = 3, initial_secs = 0.1, jitter = 0.0 }
        "#,
    );
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    let jobs = by_name(&shown);
    assert_eq!(jobs["load"]["state"], "FINISHED", "{shown:#}");
    assert_eq!(jobs["load"]["attempt"], 1, "no second attempt: {shown:#}");
    let attempts = jobs["load"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{shown:#}");
    assert_eq!(attempts[0]["state"], "FINISHED", "{shown:#}");
    let rows = warehouse_query(&stack.warehouse_path(), "SELECT COUNT(*) FROM loaded");
    assert_eq!(rows, vec![vec![Value::from(1)]], "the INSERT ran once");
    let log = stack.log("worker.log");
    assert!(log.contains("could not cancel its statement"), "{log}");
}

/// Issue 11: `execution_mode = "auto_commit"` runs a batch's statements
/// each in its own transaction: what ran before a failure stays; the
/// default (one transaction) undoes it.
#[tokio::test(flavor = "multi_thread")]
async fn an_auto_commit_batch_keeps_what_ran_before_a_failure() {
    let stack = Stack::start("automode");
    let file = write(
        &stack,
        "modes.toml",
        r#"
        [jobs.setup]
        sql = "CREATE TABLE landed (src TEXT)"
        [jobs.auto]
        sql = ["INSERT INTO landed VALUES ('auto')", "INSERT INTO missing_table VALUES (1)"]
        execution_mode = "auto_commit"
        depends_on = ["setup"]
        [jobs.txn]
        sql = ["INSERT INTO landed VALUES ('txn')", "INSERT INTO missing_table VALUES (1)"]
        depends_on = ["setup"]
        "#,
    );
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FAILED", "{shown:#}");
    let jobs = by_name(&shown);
    assert_eq!(jobs["auto"]["state"], "FAILED", "{shown:#}");
    assert_eq!(jobs["txn"]["state"], "FAILED", "{shown:#}");
    assert_eq!(jobs["auto"]["execution_mode"], "AUTO_COMMIT", "{shown:#}");
    assert_eq!(
        warehouse_query(&stack.warehouse_path(), "SELECT src FROM landed"),
        vec![vec![json!("auto")]]
    );
}

/// Issue 11: `session = true` runs a pipeline's jobs in one Data API
/// session, one statement at a time: a temporary table made by one job is
/// there for the next, parallel branches take turns, and every statement
/// names the same session.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_pipeline_carries_temporary_tables_from_job_to_job() {
    let stack = Stack::start("session");
    let file = write(
        &stack,
        "session.toml",
        r#"
        session = true
        session_keep_alive_secs = 60
        [jobs.stage]
        sql = "CREATE TEMP TABLE stage AS SELECT 1 AS x UNION ALL SELECT 2"
        [jobs.more]
        sql = "INSERT INTO stage VALUES (3)"
        depends_on = ["stage"]
        [jobs.count]
        sql = "SELECT COUNT(*) AS n FROM stage"
        depends_on = ["stage"]
        [jobs.keep]
        sql = "CREATE TABLE kept AS SELECT SUM(x) AS total FROM stage"
        depends_on = ["more", "count"]
        "#,
    );
    let run = run_pipeline(&stack, &file, &[]);
    let _worker = stack.spawn_worker(&[]);
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FINISHED", "{shown:#}");
    assert_eq!(
        warehouse_query(&stack.warehouse_path(), "SELECT total FROM kept"),
        vec![vec![json!(6)]]
    );
    // One session for the four statements, never two at once in it.
    let jobs = by_name(&shown);
    let record = stack.record();
    let mut sessions = std::collections::HashSet::new();
    let mut spans = Vec::new();
    for name in ["stage", "more", "count", "keep"] {
        let sid = jobs[name]["statement_id"].as_str().unwrap();
        let st = record
            .iter()
            .find(|r| r["id"] == sid)
            .expect("in the record");
        sessions.insert(st["session_id"].to_string());
        spans.push((
            st["created_ms"].as_i64().unwrap_or_default(),
            st["ended_ms"].as_i64().unwrap_or_default(),
        ));
    }
    assert_eq!(sessions.len(), 1, "{sessions:?} {record:#?}");
    assert!(!sessions.contains("null"), "{record:#?}");
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "two statements at once in the session: {spans:?}"
        );
    }
}

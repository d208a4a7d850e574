//! The JSON API (issue 12) on a running worker with an api_token, on the
//! local stack: every endpoint refuses a missing or wrong token (401),
//! names the bad field (400), answers 404 and refuses transitions (409);
//! what it returns is checked against the ledger and the result files.
//! Clients we did not write check the wire: schemathesis runs the OpenAPI
//! document against the API, and a Python script (stdlib urllib) submits a
//! job and reads its result.

mod common;

use common::http::{call, call_with, Sse};
use common::{Stack, StackOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "t0ken-for-the-api-tests-2f9c";

/// A stack whose worker needs TOKEN; flaky_* statements fail once.
fn stack(test: &str) -> Stack {
    Stack::start_with(
        test,
        StackOptions {
            config_extra: format!("api_token = \"{TOKEN}\"\n"),
            emulator_args: vec!["--fail-first".into(), "1:flaky_".into()],
            ..StackOptions::default()
        },
    )
}

fn api(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let r = call(addr, method, path, Some(TOKEN), body.as_deref());
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()))
    };
    (r.status, v)
}

/// A 400 that names `field`.
fn assert_bad(addr: &str, method: &str, path: &str, body: Option<Value>, field: &str) {
    let (status, v) = api(addr, method, path, body.clone());
    assert_eq!(status, 400, "{method} {path} {body:?}: {v}");
    assert_eq!(v["field"], field, "{method} {path} {body:?}: {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

fn wait_job(addr: &str, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, v) = api(addr, "GET", &format!("/api/v1/jobs/{id}"), None);
        assert_eq!(status, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "job {id}: {what}: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const PIPELINE: &str = r#"
name = "api_chain"
[params]
n = "7"
[jobs.load]
sql = "CREATE TABLE loaded AS SELECT :n AS v"
params = { n = { param = "n" } }
[jobs.flaky_merge]
sql = "CREATE TABLE merged AS SELECT v FROM loaded"
depends_on = ["load"]
[jobs.report]
sql = "SELECT v FROM merged"
depends_on = ["flaky_merge"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_needs_the_token_names_bad_fields_and_refuses_transitions() {
    let stack = stack("api");
    let _worker = stack.spawn_worker_ready(&[]);
    let addr = stack.listener();

    // 401: every API path, no token or a wrong one; probes stay open.
    let paths = [
        ("GET", "/api/v1/runs"),
        ("POST", "/api/v1/runs"),
        ("GET", "/api/v1/runs/r1"),
        ("POST", "/api/v1/runs/r1/cancel"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/1"),
        ("POST", "/api/v1/jobs/1/retry"),
        ("POST", "/api/v1/jobs/1/cancel"),
        ("GET", "/api/v1/jobs/1/results"),
        ("GET", "/api/v1/jobs/1/rows"),
        ("GET", "/api/v1/schedules"),
        ("POST", "/api/v1/schedules/s/pause"),
        ("POST", "/api/v1/schedules/s/resume"),
        ("POST", "/api/v1/schedules/s/trigger"),
        ("GET", "/api/v1/inbox"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/nothing-here"),
    ];
    for (method, path) in paths {
        for token in [None, Some("wrong"), Some("")] {
            let r = call(&addr, method, path, token, Some("{}"));
            assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.body);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(r.json()["message"].as_str().unwrap().contains("Bearer"));
            assert!(!r.body.contains(TOKEN));
        }
    }
    for open in [
        "/healthz",
        "/metrics",
        "/",
        "/assets/app.js",
        "/api/openapi.json",
    ] {
        assert_eq!(call(&addr, "GET", open, None, None).status, 200, "{open}");
    }
    let doc = call(&addr, "GET", "/api/openapi.json", None, None).json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert!(doc["paths"]["/api/v1/jobs/{id}/retry"]["post"].is_object());
    let log = stack.log("worker.log");
    assert!(!log.contains(TOKEN), "the token was logged");

    // Submit a job; it runs; its detail, rows and CSV come back.
    let (status, job) = api(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT :x AS answer", "name": "api-one", "params": {"x": "42"}})),
    );
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(job["param_names"], json!(["x"]));
    assert!(
        !job.to_string().contains("\"42\""),
        "a parameter value was served: {job}"
    );
    let done = wait_job(&addr, id, "FINISHED and fetched", |v| {
        v["state"] == "FINISHED" && v["result_state"] == "FETCHED"
    });
    assert_eq!(done["attempts"][0]["state"], "FINISHED");
    assert_eq!(done["attempts"][0]["statement_id"], done["statement_id"]);
    assert_eq!(done["results"][0]["rows"], 1);
    let ledger_job = stack.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(ledger_job["statement_id"], done["statement_id"]);
    let csv = call(
        &addr,
        "GET",
        &format!("/api/v1/jobs/{id}/results?format=csv"),
        Some(TOKEN),
        None,
    );
    assert_eq!(csv.status, 200);
    assert_eq!(csv.body, "answer\n42\n");
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let (_, rows) = api(&addr, "GET", &format!("/api/v1/jobs/{id}/rows"), None);
    assert_eq!(
        rows,
        json!({"columns": ["answer"], "rows": [["42"]], "total_rows": 1})
    );

    // 400s name the field.
    assert_bad(&addr, "POST", "/api/v1/jobs", Some(json!({})), "sql");
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "  "})),
        "sql",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "sqls": ["SELECT 2"]})),
        "sql",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "bogus": 1})),
        "bogus",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": 5})),
        "sql",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "max_attempts": 0})),
        "max_attempts",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "params": {"bad name": "1"}})),
        "params.bad name",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "params": {"x": ""}})),
        "params.x",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "after": [999999]})),
        "after",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "result_formats": "xml"})),
        "result_formats",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "target": {"wg": "x"}})),
        "target.wg",
    );
    assert_bad(&addr, "POST", "/api/v1/runs", Some(json!({})), "pipeline");
    assert_bad(
        &addr,
        "POST",
        "/api/v1/runs",
        Some(json!({"pipeline": "[jobs.a]\nsql = 1"})),
        "pipeline",
    );
    assert_bad(
        &addr,
        "POST",
        "/api/v1/runs",
        Some(json!({"pipeline": PIPELINE, "params": {"zzz": "1"}})),
        "params",
    );
    assert_bad(&addr, "GET", "/api/v1/jobs?state=NOPE", None, "state");
    assert_bad(&addr, "GET", "/api/v1/jobs?limit=abc", None, "limit");
    assert_bad(&addr, "GET", "/api/v1/jobs?cursor=x", None, "cursor");
    assert_bad(&addr, "GET", "/api/v1/runs?since=yesterday", None, "since");
    assert_bad(&addr, "GET", "/api/v1/runs?limit=0", None, "limit");
    assert_bad(&addr, "GET", "/api/v1/runs?state=DONE", None, "state");
    assert_bad(&addr, "GET", "/api/v1/jobs/abc", None, "id");
    assert_bad(&addr, "POST", "/api/v1/jobs/abc/retry", None, "id");
    assert_bad(
        &addr,
        "GET",
        &format!("/api/v1/jobs/{id}/results?format=xml"),
        None,
        "format",
    );
    assert_bad(
        &addr,
        "GET",
        &format!("/api/v1/jobs/{id}/results?format=jsonl"),
        None,
        "format",
    );
    assert_bad(
        &addr,
        "GET",
        &format!("/api/v1/jobs/{id}/rows?limit=501"),
        None,
        "limit",
    );
    assert_bad(
        &addr,
        "GET",
        "/api/v1/inbox?disposition=lost",
        None,
        "disposition",
    );
    assert_bad(&addr, "GET", "/api/v1/events?after=-1", None, "after");
    assert_bad(&addr, "GET", "/api/v1/runs/a%00b", None, "path");
    assert_bad(&addr, "GET", "/api/v1/jobs?name=a%00", None, "query");
    assert_bad(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT '\u{0}'"})),
        "sql",
    );
    // The range of a resumed stream's id is checked, not overflowed.
    for bad in ["-9223372036854775808", "9223372036854775807", "-1"] {
        let r = call_with(
            &addr,
            "GET",
            "/api/v1/events",
            Some(TOKEN),
            &[("Last-Event-ID", bad)],
            None,
        );
        assert_eq!(r.status, 400, "Last-Event-ID: {bad}: {}", r.body);
        assert_eq!(r.json()["field"], "Last-Event-ID", "{}", r.body);
    }
    assert_bad(
        &addr,
        "GET",
        "/api/v1/events?after=9223372036854775807",
        None,
        "after",
    );
    // An escaped backslash before u0000 is text, not NUL: the check runs
    // on the decoded values (this SQL holds `\u0000` as 6 characters).
    let r = call(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(TOKEN),
        Some(r#"{"sql": "SELECT '\\u0000' AS text", "name": "backslash"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["sqls"][0], "SELECT '\\u0000' AS text");

    // 404s.
    for (method, path) in [
        ("GET", "/api/v1/jobs/999999"),
        ("POST", "/api/v1/jobs/999999/retry"),
        ("POST", "/api/v1/jobs/999999/cancel"),
        ("GET", "/api/v1/jobs/999999/results"),
        ("GET", "/api/v1/runs/no-such-run"),
        ("POST", "/api/v1/runs/no-such-run/cancel"),
        ("POST", "/api/v1/schedules/nope/pause"),
        ("POST", "/api/v1/schedules/nope/resume"),
        ("POST", "/api/v1/schedules/nope/trigger"),
        ("GET", "/api/v1/nothing-here"),
    ] {
        let (status, v) = api(&addr, method, path, None);
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert!(v["message"].is_string(), "{v}");
    }
    let (status, v) = api(
        &addr,
        "POST",
        "/api/v1/runs",
        Some(json!({"schedule": "nope"})),
    );
    assert_eq!(status, 404, "{v}");

    // A run from pipeline text: flaky_merge fails once, report is SKIPPED.
    let (status, started) = api(
        &addr,
        "POST",
        "/api/v1/runs",
        Some(json!({"pipeline": PIPELINE, "params": {"n": "9"}})),
    );
    assert_eq!(status, 201, "{started}");
    let run = started["run"]["id"].as_str().unwrap().to_string();
    assert_eq!(started["jobs"].as_array().unwrap().len(), 3);
    stack.wait_run(&run, WAIT);
    let (_, detail) = api(&addr, "GET", &format!("/api/v1/runs/{run}"), None);
    assert_eq!(detail["run"]["state"], "FAILED", "{detail:#}");
    let by_name = |d: &Value, name: &str| -> Value {
        d["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no job {name} in {d:#}"))
    };
    let (load, merge, report) = (
        by_name(&detail, "load"),
        by_name(&detail, "flaky_merge"),
        by_name(&detail, "report"),
    );
    assert_eq!(
        (&load["state"], &merge["state"], &report["state"]),
        (&json!("FINISHED"), &json!("FAILED"), &json!("SKIPPED")),
        "{detail:#}"
    );
    assert_eq!(
        (&load["state"], &merge["state"], &report["state"]),
        (&json!("FINISHED"), &json!("FAILED"), &json!("SKIPPED"))
    );
    assert!(
        merge["error"].as_str().unwrap_or("").contains("flaky_"),
        "{merge:#}"
    );
    assert_eq!(merge["attempts"][0]["state"], "FAILED");
    let ids = |j: &Value| j["id"].as_i64().unwrap();
    let mut edges: Vec<(i64, i64)> = detail["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].as_i64().unwrap(), e["to"].as_i64().unwrap()))
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        vec![(ids(&load), ids(&merge)), (ids(&merge), ids(&report))]
    );

    // Lists and filters.
    let (_, failed) = api(
        &addr,
        "GET",
        "/api/v1/runs?state=FAILED&pipeline=api_chain",
        None,
    );
    assert_eq!(failed["runs"].as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed["runs"][0]["jobs_by_state"]["SKIPPED"], 1);
    let (_, none) = api(&addr, "GET", "/api/v1/runs?state=RUNNING", None);
    assert_eq!(none["runs"], json!([]));
    let (_, later) = api(
        &addr,
        "GET",
        "/api/v1/runs?since=2999-01-01T00:00:00Z",
        None,
    );
    assert_eq!(later["runs"], json!([]));
    let (_, jobs) = api(
        &addr,
        "GET",
        &format!("/api/v1/jobs?run={run}&limit=2"),
        None,
    );
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2);
    let cursor = jobs["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = api(
        &addr,
        "GET",
        &format!("/api/v1/jobs?run={run}&limit=2&cursor={cursor}"),
        None,
    );
    assert_eq!(rest["jobs"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, skipped) = api(&addr, "GET", "/api/v1/jobs?state=skipped", None);
    assert_eq!(skipped["jobs"][0]["id"], report["id"]);

    // 409s: a skipped job whose parent failed, a finished job, results.
    let (status, v) = api(
        &addr,
        "POST",
        &format!("/api/v1/jobs/{}/retry", ids(&report)),
        None,
    );
    assert_eq!(status, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("FAILED"), "{v}");
    let (status, v) = api(
        &addr,
        "POST",
        &format!("/api/v1/jobs/{}/retry", ids(&load)),
        None,
    );
    assert_eq!(status, 409, "{v}");
    let (status, v) = api(
        &addr,
        "POST",
        &format!("/api/v1/jobs/{}/cancel", ids(&load)),
        None,
    );
    assert_eq!(status, 409, "{v}");
    let (status, v) = api(
        &addr,
        "GET",
        &format!("/api/v1/jobs/{}/results", ids(&merge)),
        None,
    );
    assert_eq!(status, 409, "{v}");
    let (status, v) = api(&addr, "POST", &format!("/api/v1/runs/{run}/cancel"), None);
    assert_eq!(status, 409, "{v}");

    // Retry the failed job: it runs again, then report, and the run ends.
    let (status, v) = api(
        &addr,
        "POST",
        &format!("/api/v1/jobs/{}/retry", ids(&merge)),
        None,
    );
    assert_eq!(status, 200, "{v}");
    wait_job(&addr, ids(&report), "report finished", |v| {
        v["state"] == "FINISHED" && v["result_state"] == "FETCHED"
    });
    let (_, rows) = api(
        &addr,
        "GET",
        &format!("/api/v1/jobs/{}/rows", ids(&report)),
        None,
    );
    assert_eq!(rows["rows"], json!([["9"]]), "{rows}");
    let (_, detail) = api(&addr, "GET", &format!("/api/v1/runs/{run}"), None);
    assert_eq!(detail["run"]["state"], "FINISHED", "{detail:#}");
    assert_eq!(
        by_name(&detail, "flaky_merge")["attempts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The inbox shows the probe message's body, quarantined.
    let (_, inbox) = api(&addr, "GET", "/api/v1/inbox?disposition=quarantined", None);
    let bodies: Vec<&str> = inbox["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert!(
        bodies.iter().any(|b| b.starts_with(common::PROBE)),
        "{inbox:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_runs_and_cancels_through_the_api_and_the_event_stream() {
    let stack = Stack::start_with(
        "api-sched",
        StackOptions {
            config_extra: format!("api_token = \"{TOKEN}\"\n"),
            emulator_args: vec!["--hold".into(), "60000:held_".into()],
            ..StackOptions::default()
        },
    );
    let file = stack.write_file(
        "nightly.toml",
        "name = \"nightly\"\n[schedule]\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Paris\"\n\
         [jobs.one]\nsql = \"SELECT 1 AS one\"\n",
    );
    stack.ok(&["schedules", "add", &file]);
    let _worker = stack.spawn_worker_ready(&[]);
    let addr = stack.listener();

    // The stream from now on: nothing old is replayed.
    let mut stream = Sse::open(&addr, "/api/v1/events", Some(TOKEN), &[]);
    assert_eq!(stream.status, 200);

    let (_, list) = api(&addr, "GET", "/api/v1/schedules", None);
    assert_eq!(list[0]["name"], "nightly", "{list}");
    assert_eq!(list[0]["cron"], "0 3 * * *");
    assert!(list[0]["next_fire_at"].is_string(), "{list}");
    let (status, paused) = api(&addr, "POST", "/api/v1/schedules/nightly/pause", None);
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    assert_eq!(paused["next_fire_at"], Value::Null);
    assert_eq!(stack.json(&["schedules", "list"])[0]["paused"], true);
    let (status, resumed) = api(&addr, "POST", "/api/v1/schedules/nightly/resume", None);
    assert_eq!((status, &resumed["paused"]), (200, &json!(false)));
    let (status, fired) = api(&addr, "POST", "/api/v1/schedules/nightly/trigger", None);
    assert_eq!(status, 201, "{fired}");
    let run = fired["run"]["id"].as_str().unwrap().to_string();
    let summary = stack.wait_run(&run, WAIT);
    assert_eq!(summary["run"]["state"], "FINISHED", "{summary:#}");
    let (status, v) = api(
        &addr,
        "POST",
        "/api/v1/runs",
        Some(json!({"schedule": "nightly"})),
    );
    assert_eq!(status, 201, "{v}");
    // Both ways of running it now record a firing, with the run it made.
    let shown = stack.json(&["schedules", "show", "nightly"]);
    let fired_runs: Vec<&str> = shown["fires"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["run"].as_str())
        .collect();
    for id in [run.as_str(), v["run"]["id"].as_str().unwrap()] {
        assert!(fired_runs.contains(&id), "{id} not in {shown:#}");
    }

    // The triggered run's changes arrive in order, ids increasing.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut last_id = 0;
    let deadline = Instant::now() + WAIT;
    while !seen.contains(&("run".into(), "FINISHED".into())) {
        assert!(Instant::now() < deadline, "stream so far: {seen:?}");
        let Some((event, id, data)) = stream.next(Duration::from_secs(5)) else {
            continue;
        };
        let id: i64 = id.parse().unwrap();
        assert!(id > last_id, "ids go up: {id} after {last_id}");
        last_id = id;
        let change: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(change["kind"], event.as_str());
        if change["run_id"] == run.as_str() {
            seen.push((event, change["state"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(
        seen.first(),
        Some(&("run".into(), "RUNNING".into())),
        "{seen:?}"
    );
    for s in ["READY", "SUBMITTED", "FINISHED"] {
        assert!(
            seen.contains(&("job".into(), s.into())),
            "{s} missing from {seen:?}"
        );
    }
    // Resuming with Last-Event-ID replays what came after it.
    let mut again = Sse::open(
        &addr,
        "/api/v1/events",
        Some(TOKEN),
        &[("Last-Event-ID", &(last_id - 1).to_string())],
    );
    let (_, id, _) = again.next(WAIT).expect("the replayed event");
    assert_eq!(id, last_id.to_string());

    // A run whose statement is held: cancelling it stops the statement.
    let pipeline = "name = \"held\"\n[jobs.held_long]\nsql = \"SELECT 2 AS held_two\"\n\
                    [jobs.after]\nsql = \"SELECT 3\"\ndepends_on = [\"held_long\"]\n";
    let (status, started) = api(
        &addr,
        "POST",
        "/api/v1/runs",
        Some(json!({"pipeline": pipeline})),
    );
    assert_eq!(status, 201, "{started}");
    let held = started["run"]["id"].as_str().unwrap().to_string();
    let held_job = started["jobs"][0]["id"].as_i64().unwrap();
    wait_job(&addr, held_job, "SUBMITTED", |v| v["state"] == "SUBMITTED");
    let (status, cancelled) = api(&addr, "POST", &format!("/api/v1/runs/{held}/cancel"), None);
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["run"]["state"], "CANCELLED");
    assert_eq!(cancelled["cancelled_jobs"], 2);
    let (_, shown) = api(&addr, "GET", &format!("/api/v1/jobs/{held_job}"), None);
    assert_eq!(shown["state"], "CANCELLED", "{shown:#}");
    let sid = shown["attempts"][0]["statement_id"]
        .as_str()
        .unwrap()
        .to_string();
    let described = stack.data_api().await.describe(&sid).await.unwrap();
    assert_eq!(
        described.status, "ABORTED",
        "the held statement was stopped"
    );
    let (status, v) = api(&addr, "POST", &format!("/api/v1/runs/{held}/cancel"), None);
    assert_eq!(status, 409, "{v}");
}

#[test]
fn without_a_token_the_worker_refuses_an_address_that_is_not_loopback() {
    let stack = Stack::start("api-open");
    let out = stack
        .command(&["worker"])
        .env("REDRELAY_LISTEN", "0.0.0.0:0")
        .output()
        .expect("run the worker");
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("not a loopback address and no api_token"),
        "{err}"
    );
    let empty = stack.write_file("token", "\n");
    let out = stack
        .command(&["worker"])
        .env("REDRELAY_API_TOKEN_FILE", &empty)
        .output()
        .expect("run the worker");
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("api_token_file is empty"));
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_we_did_not_write_use_the_api() {
    let stack = stack("api-clients");
    let _worker = stack.spawn_worker_ready(&[]);
    let addr = stack.listener();
    let root = env!("CARGO_MANIFEST_DIR");

    // Python (stdlib urllib): submit a job, follow the stream, read the CSV.
    let out = std::process::Command::new(common::venv_bin("python"))
        .arg(format!("{root}/scripts/api_example.py"))
        .args([
            "--url",
            &format!("http://{addr}"),
            "--sql",
            "SELECT 6 * 7 AS answer",
        ])
        .env("REDRELAY_API_TOKEN", TOKEN)
        .output()
        .expect("run scripts/api_example.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", common::stderr(&out));
    assert!(stdout.contains("answer\n42"), "{stdout}");

    // schemathesis: the OpenAPI document against the running API.
    let out = std::process::Command::new("bash")
        .arg(format!("{root}/tests/api/schemathesis.sh"))
        .env("REDRELAY_API_URL", format!("http://{addr}"))
        .env("REDRELAY_API_TOKEN", TOKEN)
        .env("REDRELAY_VENV", common::venv())
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    // It ran the operations (a run that tested nothing must not pass).
    assert!(text.contains("/api/v1/jobs"), "{text}");
}

/// With several workers on one PostgreSQL ledger, any worker's API shows
/// the whole ledger: a job submitted through one worker's API, and a run
/// recorded by the CLI, stream from the other worker's event stream.
#[tokio::test(flavor = "multi_thread")]
async fn on_postgres_each_workers_api_shows_what_the_others_and_the_cli_do() {
    let pg = common::pg::postgres().await;
    let stack = Stack::start_with(
        "api-pg",
        StackOptions {
            config_extra: format!("api_token = \"{TOKEN}\"\n"),
            ledger_url: Some(pg.url),
            ..StackOptions::default()
        },
    );
    let _a = stack.spawn_worker_ready(&[]);
    let _b = stack.spawn_worker(&[]);
    let listens: Vec<String> = stack.wait_for(WAIT, "two workers with listeners", || {
        let ws = stack.json(&["workers", "list"]);
        let l: Vec<String> = ws
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["listen"].as_str().map(str::to_string))
            .collect();
        if l.len() == 2 {
            Ok(l)
        } else {
            Err(format!("{ws}"))
        }
    });
    let (a, b) = (&listens[0], &listens[1]);
    let mut stream = Sse::open(b, "/api/v1/events", Some(TOKEN), &[]);
    assert_eq!(stream.status, 200);

    let (status, job) = api(
        a,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 5 AS five", "name": "via-a"})),
    );
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    let file = stack.write_file(
        "p.toml",
        "name = \"from_cli\"\n[jobs.one]\nsql = \"SELECT 1\"\n",
    );
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();

    let (mut job_done, mut run_seen) = (false, false);
    let deadline = Instant::now() + WAIT;
    while !(job_done && run_seen) {
        assert!(
            Instant::now() < deadline,
            "job {id} done {job_done}, run {run} seen {run_seen}"
        );
        let Some((_, _, data)) = stream.next(Duration::from_secs(5)) else {
            continue;
        };
        let c: Value = serde_json::from_str(&data).unwrap();
        if c["job_id"] == id && c["state"] == "FINISHED" {
            job_done = true;
        }
        if c["kind"] == "run" && c["run_id"] == run.as_str() {
            run_seen = true;
        }
    }
    wait_job(b, id, "FINISHED through the other worker", |v| {
        v["state"] == "FINISHED"
    });
    // Text PostgreSQL cannot store is a 400, not the database's error.
    assert_bad(
        b,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "SELECT 1", "name": "a\u{0}b"})),
        "name",
    );
    assert_bad(b, "GET", "/api/v1/jobs?run=x%00", None, "query");
    let (status, _) = api(b, "GET", "/api/v1/runs/zz%C3%A9", None);
    assert_eq!(status, 404);
}

const READ_TOKEN: &str = "read-only-token-for-dashboards-51a0";

/// The jobs in the ledger (through the CLI, not the API under test).
fn ledger_jobs(stack: &Stack) -> Vec<Value> {
    stack
        .json(&["jobs", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Issue 17: a web page the operator visits must not make the worker run
/// SQL (a cross-site "simple" POST needs no preflight) nor read its data
/// through a name of its own (DNS rebinding). The default configuration,
/// as the issue reproduced it: no token set, a loopback listener.
#[tokio::test(flavor = "multi_thread")]
async fn other_web_sites_can_neither_change_nor_read_anything() {
    let stack = Stack::start("api-sites");
    let _worker = stack.spawn_worker_ready(&[]);
    let addr = stack.listener();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let sql = r#"{"sql": "select 1 as x"}"#;

    // A cross-site form POST, as a browser sends it: refused.
    let r = call_with(
        &addr,
        "POST",
        "/api/v1/jobs",
        None,
        &[
            ("Origin", "https://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        Some(sql),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("https://evil.example"), "{}", r.body);
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(ledger_jobs(&stack).is_empty(), "a job was recorded");

    // The worker made a token; with it, the same refusals hold (a page
    // cannot have it, but the rules do not depend on that).
    let path = format!("{}.api-token", stack.ledger_path().display());
    let token = std::fs::read_to_string(&path).expect("the worker's token file");
    let token = token.trim();
    for t in [None, Some(token)] {
        for extra in [
            vec![
                ("Origin", "https://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            vec![("Origin", "null"), ("Content-Type", "application/json")],
            vec![
                ("Origin", "http://127.0.0.1:1"),
                ("Content-Type", "application/json"),
            ],
            vec![
                ("Sec-Fetch-Site", "cross-site"),
                ("Content-Type", "application/json"),
            ],
            vec![("Content-Type", "text/plain")],
            vec![("Content-Type", "application/x-www-form-urlencoded")],
        ] {
            let r = call_with(&addr, "POST", "/api/v1/jobs", t, &extra, Some(sql));
            assert!(
                r.status == 403 || r.status == 415,
                "{extra:?}: {} {}",
                r.status,
                r.body
            );
            assert!(r.json()["message"].is_string(), "{}", r.body);
        }
    }
    assert!(ledger_jobs(&stack).is_empty(), "a job was recorded");

    // A preflight gets no CORS headers.
    let r = call_with(
        &addr,
        "OPTIONS",
        "/api/v1/jobs",
        None,
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    );
    assert!(
        !r.headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-")),
        "{:?}",
        r.headers
    );

    // A foreign Host reads nothing: not the API, the console, nor metrics.
    let foreign = format!("attacker.example:{port}");
    for path in [
        "/api/v1/jobs",
        "/",
        "/metrics",
        "/healthz",
        "/api/openapi.json",
    ] {
        let r = call_with(&addr, "GET", path, Some(token), &[("Host", &foreign)], None);
        assert_eq!(r.status, 403, "GET {path} with Host {foreign}: {}", r.body);
        let message = r.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(&foreign), "{message}");
        assert!(message.contains("api_allowed_hosts"), "{message}");
    }
    // The listener's own names are served; probes need no token.
    for host in [addr.clone(), format!("localhost:{port}")] {
        let r = call_with(&addr, "GET", "/healthz", None, &[("Host", &host)], None);
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }

    // The console's own same-origin JSON POST works.
    let origin = format!("http://{addr}");
    let r = call_with(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(token),
        &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        Some(sql),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(ledger_jobs(&stack).len(), 1);
}

/// The read-only token (for dashboards) reads, and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_read_only_token_reads_and_changes_nothing() {
    let stack = Stack::start_with(
        "api-read",
        StackOptions {
            config_extra: format!("api_token = \"{TOKEN}\"\napi_read_token = \"{READ_TOKEN}\"\n"),
            ..StackOptions::default()
        },
    );
    let _worker = stack.spawn_worker_ready(&[]);
    let addr = stack.listener();
    let sql = r#"{"sql": "select 1 as x"}"#;
    let (status, job) = api(
        &addr,
        "POST",
        "/api/v1/jobs",
        Some(json!({"sql": "select 2"})),
    );
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    for path in [
        format!("/api/v1/jobs/{id}"),
        "/api/v1/jobs".into(),
        "/api/v1/runs".into(),
    ] {
        let r = call(&addr, "GET", &path, Some(READ_TOKEN), None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    }
    for (path, body) in [
        ("/api/v1/jobs".to_string(), Some(sql)),
        (format!("/api/v1/jobs/{id}/cancel"), None),
        ("/api/v1/runs".into(), Some(r#"{"schedule": "x"}"#)),
    ] {
        let r = call(&addr, "POST", &path, Some(READ_TOKEN), body);
        assert_eq!(r.status, 403, "POST {path}: {}", r.body);
        assert!(r.json()["message"].as_str().unwrap().contains("read-only"));
    }
    assert_eq!(ledger_jobs(&stack).len(), 1);
    assert_eq!(
        stack.ok(&["console-url", "--read-only"]).trim(),
        format!("http://{addr}/#token={READ_TOKEN}")
    );
    let log = stack.log("worker.log");
    assert!(
        !log.contains(TOKEN) && !log.contains(READ_TOKEN),
        "a token was logged"
    );
}

/// The listener of the worker `w` (others may still be listed as live).
fn listener_of(stack: &Stack, w: &common::Proc) -> String {
    stack.wait_for(WAIT, "the worker's listener", || {
        let ws = stack.json(&["workers", "list"]);
        ws.as_array()
            .into_iter()
            .flatten()
            .find(|x| x["pid"] == w.pid())
            .and_then(|x| x["listen"].as_str().map(str::to_string))
            .ok_or_else(|| ws.to_string())
    })
}

/// Without a configured token the worker makes one, keeps it in a 0600
/// file beside the ledger, and prints the console's address with it once;
/// `redrelay console-url` prints it again. A configured token read from
/// the environment or a file with a trailing newline works.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_without_a_token_makes_one_and_prints_the_console_address() {
    use std::os::unix::fs::PermissionsExt;
    let stack = Stack::start("api-made");
    let worker = stack.spawn_worker_env(&[], "worker.out");
    let addr = listener_of(&stack, &worker);
    let path = format!("{}.api-token", stack.ledger_path().display());
    let meta = std::fs::metadata(&path).expect("the token file beside the ledger");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "{token}");

    for (t, status) in [
        (None, 401),
        (Some("wrong"), 401),
        (Some(token.as_str()), 200),
    ] {
        let r = call(&addr, "GET", "/api/v1/jobs", t, None);
        assert_eq!(r.status, status, "{t:?}: {}", r.body);
    }
    let url = format!("http://{addr}/#token={token}");
    let out = stack.wait_for(WAIT, "the console's address on stdout", || {
        let out = stack.log("worker.out");
        if out.contains(&url) {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert_eq!(out.matches(&token).count(), 1, "{out}");
    assert!(out.contains(&format!("Open the console at {url}")), "{out}");
    assert!(
        !stack.log("worker.log").contains(&token),
        "the token was logged"
    );
    assert_eq!(stack.ok(&["console-url"]).trim(), url);

    // Started again, it keeps the token.
    drop(worker);
    let worker = stack.spawn_worker_env(&[], "worker2.out");
    let addr = listener_of(&stack, &worker);
    assert_eq!(
        call(&addr, "GET", "/api/v1/jobs", Some(&token), None).status,
        200
    );
    drop(worker);

    // Configured tokens with a trailing newline (an echoed file, an
    // environment variable set from one) match.
    let file = stack.write_file("token", "from-a-file\n");
    for (env, token) in [
        (("REDRELAY_API_TOKEN_FILE", file.as_str()), "from-a-file"),
        (("REDRELAY_API_TOKEN", "from-the-env\n"), "from-the-env"),
    ] {
        let worker = stack.spawn_worker_env(&[env], "worker3.out");
        let addr = listener_of(&stack, &worker);
        let r = call(&addr, "GET", "/api/v1/jobs", Some(token), None);
        assert_eq!(r.status, 200, "{env:?}: {}", r.body);
        assert!(
            !stack.log("worker3.out").contains(token),
            "a configured token was printed"
        );
    }
}

/// Issue 17.12: a run's page reads the ledger in a few queries whatever the
/// run's size (it made three per job: 900 for this run, 1,500 for a 501-job
/// one, on every change the console saw). Counted as PostgreSQL counts
/// them (each statement outside a transaction is one), against what the
/// idle worker does in the same time.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_page_reads_the_ledger_in_a_few_queries_whatever_its_size() {
    let pg = common::pg::postgres().await;
    let stack = Stack::start_with(
        "api-queries",
        StackOptions {
            config_extra: format!("api_token = \"{TOKEN}\"\n"),
            // The root runs for ten minutes: the 299 others wait, quietly.
            emulator_args: vec!["--hold".into(), "600000:slow_root".into()],
            ledger_url: Some(pg.url.clone()),
            ..StackOptions::default()
        },
    );
    let mut text = String::from("name = \"wide\"\n[jobs.root]\nsql = \"SELECT 'slow_root'\"\n");
    for k in 1..300 {
        text.push_str(&format!(
            "[jobs.leaf{k}]\nsql = \"SELECT {k}\"\ndepends_on = [\"root\"]\n"
        ));
    }
    let file = stack.write_file("wide.toml", &text);
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let _worker = stack.spawn_worker(&[]);
    let addr = stack.listener();
    stack.wait_submitted(&run, 1, WAIT).await;
    let db = sqlx::PgPool::connect(&pg.url).await.unwrap();
    // Statements of the database so far (each backend reports its counts
    // once idle for a second).
    let count = || async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&db)
            .await
            .unwrap();
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let a = count().await;
    let b = count().await;
    let idle = b - a;
    let (status, shown) = api(&addr, "GET", &format!("/api/v1/runs/{run}"), None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["jobs"].as_array().map(Vec::len), Some(300));
    let c = count().await;
    let page = (c - b) - idle;
    println!(
        "GET /api/v1/runs/ID of a 300-job run: {page} statements beyond the idle worker's {idle}"
    );
    assert!(
        page < 50,
        "{page} statements for one run page (idle: {idle})"
    );
}

//! The worker as a service (issue 9): its HTTP listener's /metrics,
//! /healthz and /readyz, and JSON log lines, on the local stack.

mod common;

use common::{Stack, StackOptions};
use serde_json::Value;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The HTTP listener of the only live worker.
fn listener_of(stack: &Stack) -> String {
    stack.listener()
}

/// GET http://ADDR/PATH: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let r = common::http::call(addr, "GET", path, None, None);
    (r.status, r.body)
}

/// The value of a sample line `name{labels} value` (labels in any order
/// given as substrings), or 0.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_after_a_run_and_probes_answer() {
    let stack = Stack::start("metrics");
    let _worker = stack.spawn_worker(&[]);
    let addr = listener_of(&stack);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let (status, body) = get(&addr, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (_, before) = get(&addr, "/metrics");
    // A run of two, m2 after m1: the worker submits both (a `submit` of
    // m2 after m1 had already ended would be submitted by the CLI).
    let file = stack.write_file(
        "m.toml",
        "name = \"m\"\n[jobs.m1]\nsql = \"SELECT 1 AS one\"\n\
         [jobs.m2]\nsql = \"SELECT 2 AS two\"\ndepends_on = [\"m1\"]\n",
    );
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let b = stack.wait_for(WAIT, "m2 to be recorded", || {
        let shown = stack.json(&["runs", "show", &run]);
        let id = shown["jobs"]
            .as_array()
            .and_then(|j| j.iter().find(|j| j["name"] == "m2"))
            .and_then(|j| j["id"].as_i64());
        common::seen(id.is_some(), id).map(|id| id.unwrap_or(0))
    });
    let deadline = Instant::now() + WAIT;
    while stack.json(&["jobs", "show", &b.to_string()])["result_state"] != "FETCHED" {
        assert!(Instant::now() < deadline, "{}", stack.log("worker.log"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, after) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    let moved =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    assert!(
        moved(
            "redrelay_events_received_total",
            &["disposition=\"applied\""]
        ) >= 2.0,
        "{after}"
    );
    assert!(
        moved(
            "redrelay_data_api_calls_total",
            &["operation=\"ExecuteStatement\"", "outcome=\"ok\""]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        moved("redrelay_jobs_entered_total", &["state=\"FINISHED\""]) >= 2.0,
        "{after}"
    );
    // The dependent was released by its parent's event: one reaction
    // observed, and both jobs' run times.
    assert!(
        moved("redrelay_reaction_seconds_count", &[]) >= 1.0,
        "{after}"
    );
    assert!(
        moved("redrelay_job_run_time_seconds_count", &[]) >= 2.0,
        "{after}"
    );
    assert!(
        moved("redrelay_result_fetch_time_seconds_count", &[]) >= 2.0,
        "{after}"
    );
    assert_eq!(sample(&after, "redrelay_leader", &[]), 1.0, "{after}");
    assert!(
        sample(
            &after,
            "redrelay_last_successful_receive_timestamp_seconds",
            &[]
        ) > 1.7e9
    );
    let (status, body) = get(&addr, "/readyz");
    assert_eq!((status, body.trim()), (200, "ready"));
}

/// Forwards TCP connections to `to` while `up`; refuses them otherwise.
async fn flaky_proxy(to: String, up: Arc<AtomicBool>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = l.accept().await else {
                return;
            };
            if !up.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_while_the_queue_is_unreachable_and_recovers() {
    let stack = Stack::start_with(
        "readyz",
        StackOptions {
            config_extra: "wait_time_secs = 1\n".into(),
            ..Default::default()
        },
    );
    let up = Arc::new(AtomicBool::new(true));
    let moto = stack.moto_url.trim_start_matches("http://").to_string();
    let proxy = flaky_proxy(moto, up.clone()).await;
    let log = std::fs::File::create(stack.dir.path().join("worker.log")).unwrap();
    let mut cmd = stack.command(&["worker"]);
    cmd.env("AWS_ENDPOINT_URL_SQS", format!("http://{proxy}"))
        .env("AWS_MAX_ATTEMPTS", "1")
        .stdout(Stdio::null())
        .stderr(log);
    let _worker = common::Proc {
        child: cmd.spawn().unwrap(),
        name: "worker".into(),
    };
    let addr = listener_of(&stack);
    let wait_for = |want: u16, what: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = get(&addr, "/readyz");
            if status == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {status} {body}\n{}",
                stack.log("worker.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for(200, "ready with the queue reachable");
    up.store(false, Ordering::SeqCst);
    let why = wait_for(503, "not ready once the queue is unreachable");
    assert!(why.contains("last successful SQS receive"), "{why}");
    assert_eq!(get(&addr, "/healthz").0, 200, "still alive");
    up.store(true, Ordering::SeqCst);
    wait_for(200, "ready again once the queue is back");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_parse_and_carry_job_ids() {
    let stack = Stack::start("jsonlog");
    let mut cmd = stack.command(&["--log-format", "json", "worker", "--until-idle"]);
    let a = stack.submit(&["--name", "j1", "--sql", "SELECT 1 AS one"]);
    let file = stack.write_file(
        "p.toml",
        "[jobs.x]\nsql = \"SELECT 2 AS two\"\n[jobs.y]\nsql = \"SELECT 3\"\ndepends_on = [\"x\"]\n",
    );
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = common::stderr(&out);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string()));
    let about =
        |msg: &str| -> Vec<&Value> { lines.iter().filter(|l| l["message"] == msg).collect() };
    // j1 was submitted by `redrelay submit`; the worker submitted the run's.
    let submitted = about("Job submitted.");
    assert_eq!(submitted.len(), 2, "{text}");
    for l in &submitted {
        assert!(l["job"].is_i64() || l["job"].is_u64(), "{l}");
        assert!(l["statement"].is_string(), "{l}");
        assert!(l["run"].is_string(), "{l}");
    }
    assert_eq!(
        submitted
            .iter()
            .filter(|l| l["run"] == run.as_str())
            .count(),
        2,
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "Job FINISHED." && l["job"] == a && l["run"] == "-"),
        "{text}"
    );
    let ended: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "Job FINISHED.")
        .collect();
    assert!(!ended.is_empty(), "{text}");
    for l in ended {
        assert!(
            l["job"].is_number() && l["statement"].is_string() && l["run"].is_string(),
            "{l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn own_events_of_a_run_with_a_failing_job_reach_a_queue_through_a_rule() {
    let stack = Stack::start_with(
        "own-events",
        StackOptions {
            config_extra: "publish_events = true\npublish_source = \"redrelay.test\"\n".into(),
            ..Default::default()
        },
    );
    // A rule on moto's EventBridge sends redrelay's events into a queue.
    let url = stack.own_events_queue("own", "own-events", "redrelay.test");
    let file = stack.write_file(
        "p.toml",
        "name = \"nightly\"\n\
         [jobs.a]\nsql = \"SELECT 1 AS one\"\n\
         [jobs.b]\nsql = \"SELECT * FROM no_such_table\"\ndepends_on = [\"a\"]\n\
         [jobs.c]\nsql = \"SELECT 3\"\ndepends_on = [\"b\"]\n",
    );
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    stack.worker_until_idle(WAIT);
    let got = stack.receive_own_events(&url, 4, Duration::from_secs(30));
    let jobs: Vec<&Value> = got
        .iter()
        .filter(|e| e["detail-type"] == "Job State Change")
        .collect();
    let runs: Vec<&Value> = got
        .iter()
        .filter(|e| e["detail-type"] == "Run State Change")
        .collect();
    assert_eq!((jobs.len(), runs.len()), (3, 1), "{got:#?}");
    let state_of = |name: &str| {
        jobs.iter()
            .find(|e| e["detail"]["job_name"] == name)
            .map(|e| e["detail"]["state"].clone())
            .unwrap_or_default()
    };
    assert_eq!(state_of("a"), "FINISHED");
    assert_eq!(state_of("b"), "FAILED");
    assert_eq!(state_of("c"), "SKIPPED");
    for e in &got {
        assert_eq!(e["source"], "redrelay.test");
        assert_eq!(e["detail"]["run_id"], run.as_str(), "{e:#}");
        assert!(
            e["detail"]["event_id"]
                .as_str()
                .is_some_and(|s| s.len() == 32),
            "{e:#}"
        );
    }
    let b = jobs
        .iter()
        .find(|e| e["detail"]["job_name"] == "b")
        .unwrap();
    assert!(
        b["detail"]["error"]
            .as_str()
            .is_some_and(|s| s.contains("no_such_table")),
        "{b:#}"
    );
    assert_eq!(b["detail"]["pipeline"], "nightly");
    assert!(b["detail"]["statement_id"].is_string());
    assert_eq!(runs[0]["detail"]["state"], "FAILED");
    assert_eq!(runs[0]["detail"]["jobs"]["SKIPPED"], 1);
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .filter_map(|e| e["detail"]["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 4, "every event has its own id");
}

/// An own event the bus refuses for good (here a malformed detail, as a
/// corrupt row would be) is set aside with its reason, and every other
/// event is published all the same: nothing waits behind it.
#[tokio::test(flavor = "multi_thread")]
async fn an_own_event_the_bus_refuses_is_set_aside_and_the_others_go_on() {
    let stack = Stack::start_with(
        "own-refused",
        StackOptions {
            config_extra: "publish_events = true\npublish_source = \"redrelay.refused\"\n".into(),
            ..Default::default()
        },
    );
    let url = stack.own_events_queue("refused", "own-refused", "redrelay.refused");
    // The ledger exists once a job is recorded; a bad row goes in first.
    let first = stack.submit(&["--name", "first", "--sql", "SELECT 1"]);
    let ledger_path = stack.ledger_path();
    stack.python(&format!(
        "import sqlite3\n\
         c=sqlite3.connect({:?})\n\
         c.execute(\"INSERT INTO outbox (event_id, detail_type, detail, created_at) VALUES ('bad', 'Job State Change', '{{not json', 0)\")\n\
         c.commit()\n",
        ledger_path.display().to_string()
    ));
    let second = stack.submit(&["--name", "second", "--sql", "SELECT 2"]);
    stack.worker_until_idle(WAIT);
    let got = stack.receive_own_events(&url, 2, Duration::from_secs(30));
    let mut ids: Vec<i64> = got
        .iter()
        .filter_map(|e| e["detail"]["job_id"].as_i64())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![first, second], "{got:#?}");
    let row = stack.python(&format!(
        "import sqlite3\n\
         c=sqlite3.connect({:?})\n\
         print(c.execute(\"SELECT refused_at IS NOT NULL, last_error, published_at IS NULL FROM outbox WHERE event_id = 'bad'\").fetchone())\n",
        ledger_path.display().to_string()
    ));
    assert!(row.contains("(1, 'MalformedDetail"), "{row}");
    assert!(row.trim().ends_with("1)"), "never published: {row}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_every_minute_schedule_fires_once_in_real_time() {
    let stack = Stack::start("schedule");
    let file = stack.write_file(
        "minutely.toml",
        "name = \"minutely\"\n\
         [schedule]\ncron = \"* * * * *\"\n\
         [jobs.stamp]\nsql = \"SELECT :at AS scheduled\"\nparams = { at = { param = \"scheduled_time\" } }\n",
    );
    let added = stack.ok(&["schedules", "add", &file]);
    assert!(added.contains("schedule minutely stored"), "{added}");
    let listed = stack.json(&["schedules", "list"]);
    assert_eq!(listed[0]["cron"], "* * * * *", "{listed:#}");
    assert_eq!(listed[0]["timezone"], "UTC");
    let next = listed[0]["next_fire_at"].as_str().unwrap().to_string();
    assert!(next.ends_with(":00Z"), "{next}");
    let _worker = stack.spawn_worker(&[]);
    // The next minute fires one run, whose job got the fire time.
    let runs = stack.wait_for(Duration::from_secs(90), "the schedule to fire", || {
        let runs = stack.json(&["runs", "list"]);
        let runs = runs.as_array().cloned().unwrap_or_default();
        common::seen(!runs.is_empty(), runs)
    });
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = runs[0]["id"].as_str().unwrap().to_string();
    let shown = stack.wait_run(&run, WAIT);
    assert_eq!(shown["run"]["state"], "FINISHED", "{shown:#}");
    let job = shown["jobs"][0]["id"].as_i64().unwrap();
    // A run ends with its jobs; their results are fetched after.
    stack.wait_fetched(job, WAIT);
    let csv = stack.ok(&["results", &job.to_string()]);
    assert_eq!(
        csv.trim(),
        format!("scheduled\n{next}"),
        "the job ran with :scheduled_time"
    );
    let show = stack.json(&["schedules", "show", "minutely"]);
    assert_eq!(
        show["fires"].as_array().map(|f| f.len()),
        Some(1),
        "{show:#}"
    );
    assert_eq!(show["fires"][0]["scheduled_time"], next.as_str());
    assert_eq!(show["fires"][0]["run"], run.as_str());
    // Paused, it fires no more; trigger runs it once, now.
    stack.ok(&["schedules", "pause", "minutely"]);
    assert_eq!(stack.json(&["schedules", "list"])[0]["paused"], true);
    let triggered = stack
        .ok(&["schedules", "trigger", "minutely"])
        .trim()
        .to_string();
    let shown = stack.wait_run(&triggered, WAIT);
    assert_eq!(shown["run"]["state"], "FINISHED", "{shown:#}");
}

/// Issue 10: on the happy path a job costs one Data API call: HasResultSet
/// from ExecuteStatement's answer spares DescribeStatement (and, with no
/// result set, the fetch); a query's result is read without DescribeStatement.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_costs_one_data_api_call_per_job_on_the_happy_path() {
    let stack = Stack::start("onecall");
    // The chain is recorded before the worker starts: its dependents wait
    // for it (a dependent recorded after its parent had ended would be
    // submitted by the CLI instead).
    let a = stack.submit(&["--name", "create", "--sql", "CREATE TABLE t (i INTEGER)"]);
    let b = stack.submit(&[
        "--name",
        "load",
        "--after",
        &a.to_string(),
        "--sql",
        "INSERT INTO t VALUES (1), (2), (3)",
    ]);
    let c = stack.submit(&[
        "--name",
        "read",
        "--after",
        &b.to_string(),
        "--sql",
        "SELECT SUM(i) AS total FROM t",
    ]);
    let _worker = stack.spawn_worker(&[]);
    let addr = listener_of(&stack);
    let before = String::new();
    stack.wait_state(c, "FINISHED", WAIT);
    stack.wait_fetched(c, WAIT);
    let (_, after) = get(&addr, "/metrics");
    let calls = |op: &str| {
        let label = format!("operation=\"{op}\"");
        sample(&after, "redrelay_data_api_calls_total", &[&label])
            - sample(&before, "redrelay_data_api_calls_total", &[&label])
    };
    // The first job was submitted by `redrelay submit` itself (READY, with
    // room); the worker submitted the two it released.
    assert_eq!(calls("ExecuteStatement"), 2.0, "{after}");
    assert_eq!(calls("DescribeStatement"), 0.0, "{after}");
    // CSV only (the default): one page read as CSV text.
    assert_eq!(calls("GetStatementResultV2"), 1.0, "{after}");
    assert_eq!(calls("GetStatementResult\""), 0.0, "{after}");
    for (job, has) in [(a, false), (b, false), (c, true)] {
        let shown = stack.json(&["jobs", "show", &job.to_string()]);
        assert_eq!(shown["has_result_set"], has, "{shown:#}");
        let want = if has { "FETCHED" } else { "NONE" };
        assert_eq!(shown["result_state"], want, "{shown:#}");
    }
    assert_eq!(stack.ok(&["results", &c.to_string()]), "total\n6\n");
}

/// Issue 17.10: a schedule that cannot fire (its stored text no longer
/// parses) is logged and passed over; the schedules after it still fire,
/// here every missed time of a catch_up = "all" schedule. Before, the
/// first error ended the scheduler's round.
#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_that_cannot_fire_leaves_the_others_firing() {
    let stack = Stack::start("schedule-broken");
    for name in ["aa_broken", "zz_fine"] {
        let file = stack.write_file(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\n[schedule]\ncron = \"* * * * *\"\ncatch_up = \"all\"\n\
                 overlap = \"allow\"\n[jobs.stamp]\nsql = \"SELECT 1 AS one\"\n"
            ),
        );
        stack.ok(&["schedules", "add", &file]);
    }
    // Both were added three minutes ago (so each has missed times to catch
    // up); the first's stored text is broken, as by a hand edit.
    let url = format!("sqlite://{}", stack.ledger_path().display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE schedules SET effective_since = effective_since - 180000")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE schedules SET text = 'not a pipeline' WHERE name = 'aa_broken'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let _worker = stack.spawn_worker(&[]);
    let fires = stack.wait_for(WAIT, "zz_fine to fire its missed times", || {
        let show = stack.json(&["schedules", "show", "zz_fine"]);
        let n = show["fires"].as_array().map(Vec::len).unwrap_or(0);
        common::seen(n >= 3, n)
    });
    assert!(fires >= 3, "{fires}");
    let log = stack.log("worker.log");
    assert!(
        log.contains("A schedule cannot fire; the others go on.") && log.contains("aa_broken"),
        "{}",
        common::tail(&log, 20)
    );
    // The list still shows every schedule; the broken one says what is
    // wrong and what to do, and never fired.
    let listed = stack.json(&["schedules", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed:#}");
    let broken = stack.json(&["schedules", "show", "aa_broken"]);
    let why = broken["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("TOML parse error") && why.contains("schedules add"),
        "{broken:#}"
    );
    assert_eq!(
        broken["fires"].as_array().map(Vec::len),
        Some(0),
        "{broken:#}"
    );
    assert!(listed[1]["error"].is_null(), "{listed:#}");
}

/// libfaketime's preload library (Debian's `libfaketime`, which `make
/// test` installs): shifts the host clock of one process.
fn faketime_lib() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("faketime").join("libfaketimeMT.so.1"))
        .find(|p| p.exists());
    match found {
        Some(p) => p.display().to_string(),
        None => panic!(
            "libfaketime is missing (/usr/lib/<arch>/faketime/libfaketimeMT.so.1): \
             install Debian's libfaketime package (`make test` does it as root)"
        ),
    }
}

/// Issue 17.13: the leader fires schedules on the ledger's clock, as its
/// lease runs on it: a worker whose host clock is 15 minutes slow still
/// fires the next minute on time. Before, it fired on its host's clock,
/// and a schedule added a moment ago (by a host with the right time) had
/// no due time for it for 15 minutes.
#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_fires_on_the_ledgers_clock_not_the_hosts() {
    let pg = common::pg::postgres().await;
    let stack = Stack::start_with(
        "schedule-clock",
        StackOptions {
            ledger_url: Some(pg.url.clone()),
            ..Default::default()
        },
    );
    let file = stack.write_file(
        "minutely.toml",
        "name = \"minutely\"\n[schedule]\ncron = \"* * * * *\"\n\
         [jobs.stamp]\nsql = \"SELECT 1 AS one\"\n",
    );
    stack.ok(&["schedules", "add", &file]);
    let lib = faketime_lib();
    let mut worker = stack.spawn_worker_env(
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", "-15m"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        "worker.out",
    );
    let fired = stack.wait_for(Duration::from_secs(100), "the schedule to fire", || {
        if let Some(status) = worker.child.try_wait().unwrap() {
            panic!("the worker exited ({status}): {}", stack.log("worker.log"));
        }
        let show = stack.json(&["schedules", "show", "minutely"]);
        let fires = show["fires"].as_array().cloned().unwrap_or_default();
        common::seen(!fires.is_empty(), fires)
    });
    // It fired the minute that came, by the real clock.
    let t = fired[0]["scheduled_time"].as_str().unwrap().to_string();
    let fire = jiff::Timestamp::from_str(&t).unwrap();
    let age = jiff::Timestamp::now().duration_since(fire).as_secs();
    assert!((0..=120).contains(&age), "fired {t}, {age} s ago");
    // The worker's own clock was indeed 15 minutes slow.
    let log = stack.log("worker.log");
    let first = log.lines().next().unwrap_or_default();
    let logged = jiff::Timestamp::from_str(first.split_whitespace().next().unwrap_or("")).unwrap();
    let behind = jiff::Timestamp::now().duration_since(logged).as_secs();
    assert!(
        behind >= 14 * 60,
        "the worker's log starts at {logged}: {first}"
    );
}

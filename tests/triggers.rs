//! Pipelines started by events (issue 18), end to end on the local stack:
//! a file lands in S3 (moto's S3 EventBridge notifications), an
//! application sends its own event (PutEvents), and another pipeline's run
//! ends (redrelay's own "Run State Change"). `redrelay setup` makes the
//! rules that bring the triggers' events to the queue; each event starts
//! exactly one run with its own values, a duplicate none, and a paused
//! trigger keeps its events until it is resumed.

mod common;

use common::{warehouse_query, Stack, StackOptions};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
const SOURCE: &str = "redrelay.triggers-test";
const TOKEN: &str = "triggers-test-token-0123456789";

/// The values the `seen` table holds for `what`, sorted.
fn seen_values(stack: &Stack, what: &str) -> Vec<String> {
    let rows = warehouse_query(
        &stack.warehouse_path(),
        &format!("SELECT v FROM seen WHERE what = '{what}' ORDER BY v"),
    );
    rows.iter()
        .map(|r| r[0].as_str().unwrap_or_default().to_string())
        .collect()
}

fn wait_values(stack: &Stack, what: &str, n: usize) -> Vec<String> {
    stack.wait_for(WAIT, &format!("{n} runs of {what}"), || {
        let v = seen_values(stack, what);
        common::seen(v.len() >= n, v)
    })
}

/// Sends application events with boto3's PutEvents: (detail-type, detail).
fn put_events(stack: &Stack, source: &str, events: &[(&str, Value)]) {
    let entries: Vec<Value> = events
        .iter()
        .map(|(t, d)| {
            serde_json::json!({"Source": source, "DetailType": t, "Detail": d.to_string()})
        })
        .collect();
    let script = format!(
        "import boto3,os,json\n\
         ev=boto3.client('events', endpoint_url=os.environ['AWS_ENDPOINT_URL_EVENTBRIDGE'])\n\
         out=ev.put_events(Entries=json.loads({e:?}))\n\
         assert out['FailedEntryCount'] == 0, out\n",
        e = Value::from(entries).to_string()
    );
    stack.python(&script);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_files_applications_and_other_pipelines_start_runs_once_per_event() {
    let stack = Stack::start_with(
        "triggers",
        StackOptions {
            config_extra: format!(
                "publish_events = true\npublish_source = \"{SOURCE}\"\nwait_time_secs = 1\n\
                 api_token = \"{TOKEN}\"\n"
            ),
            ..Default::default()
        },
    );
    let bucket = format!("landing-{}", std::process::id());
    let files = [
        (
            "load_sales.toml",
            format!(
                "name = \"load_sales\"\n[params]\nkey = \"\"\n\
                 [trigger]\ndedupe = [\"$.detail.bucket.name\", \"$.detail.object.key\", \"$.detail.object.eTag\"]\n\
                 [trigger.pattern]\nsource = [\"aws.s3\"]\ndetail-type = [\"Object Created\"]\n\
                 detail = {{ bucket = {{ name = [\"{bucket}\"] }}, object = {{ key = [{{ prefix = \"sales/\" }}] }} }}\n\
                 [trigger.params]\nkey = \"$.detail.object.key\"\n\
                 [jobs.load]\nsql = \"INSERT INTO seen (what, v) VALUES ('s3', :key)\"\n\
                 params = {{ key = {{ param = \"key\" }} }}\n"
            ),
        ),
        (
            "orders.toml",
            "name = \"orders\"\n[params]\nbatch = \"\"\n\
             [trigger]\ndedupe = [\"$.detail.batch\"]\n\
             [trigger.pattern]\nsource = [\"app.orders\"]\ndetail-type = [\"Batch Ready\"]\n\
             [trigger.params]\nbatch = \"$.detail.batch\"\n\
             [jobs.take]\nsql = \"INSERT INTO seen (what, v) VALUES ('app', :batch)\"\n\
             params = { batch = { param = \"batch\" } }\n"
                .to_string(),
        ),
        (
            "after_a.toml",
            format!(
                "name = \"after_a\"\n[params]\nupstream = \"\"\n\
                 [trigger.pattern]\nsource = [\"{SOURCE}\"]\ndetail-type = [\"Run State Change\"]\n\
                 detail = {{ pipeline = [\"upstream_a\"], state = [\"FINISHED\"] }}\n\
                 [trigger.params]\nupstream = \"$.detail.run_id\"\n\
                 [jobs.follow]\nsql = \"INSERT INTO seen (what, v) VALUES ('after_a', :upstream)\"\n\
                 params = {{ upstream = {{ param = \"upstream\" }} }}\n"
            ),
        ),
    ];
    for (name, text) in &files {
        let file = stack.write_file(name, text);
        let out = stack.ok(&["triggers", "add", &file]);
        assert!(
            out.contains("stored; EventBridge rules of triggers"),
            "{out}"
        );
    }
    // The rules that bring the triggers' events to the queue.
    let report: Value = serde_json::from_str(&stack.ok(&["setup"])).unwrap();
    assert_eq!(
        report["trigger_rules"].as_array().map(Vec::len),
        Some(3),
        "{report:#}"
    );
    // One pattern for them all, for the CloudFormation stack.
    let joined: Value = serde_json::from_str(&stack.ok(&["triggers", "pattern"])).unwrap();
    assert_eq!(joined["$or"].as_array().map(Vec::len), Some(3), "{joined}");
    // The bucket sends its notifications to EventBridge.
    stack.python(&format!(
        "import boto3,os\n\
         s3=boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'])\n\
         s3.create_bucket(Bucket={bucket:?})\n\
         s3.put_bucket_notification_configuration(Bucket={bucket:?}, NotificationConfiguration={{'EventBridgeConfiguration': {{}}}})\n"
    ));
    let _worker = stack.spawn_worker_ready(&[]);
    let create = stack.submit(&["--sql", "CREATE TABLE seen (what TEXT, v TEXT)"]);
    stack.wait_state(create, "FINISHED", WAIT);

    // S3: two files under sales/, one elsewhere (no match).
    stack.python(&format!(
        "import boto3,os\n\
         s3=boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'])\n\
         s3.put_object(Bucket={bucket:?}, Key='sales/2026-12-01.csv', Body=b'a,1\\n')\n\
         s3.put_object(Bucket={bucket:?}, Key='sales/2026-12-02.csv', Body=b'b,2\\n')\n\
         s3.put_object(Bucket={bucket:?}, Key='other/x.csv', Body=b'c,3\\n')\n"
    ));
    // An application: batch b1 twice (two events, one dedupe key).
    put_events(
        &stack,
        "app.orders",
        &[
            ("Batch Ready", serde_json::json!({"batch": "b1"})),
            ("Batch Ready", serde_json::json!({"batch": "b2"})),
            ("Batch Ready", serde_json::json!({"batch": "b1"})),
        ],
    );
    // Another pipeline: B starts when A's run FINISHED, with A's run id.
    let a = stack.write_file(
        "upstream_a.toml",
        "name = \"upstream_a\"\n[jobs.one]\nsql = \"SELECT 1 AS one\"\n",
    );
    let run_a = stack.ok(&["pipeline", "run", &a]).trim().to_string();

    assert_eq!(
        wait_values(&stack, "s3", 2),
        ["sales/2026-12-01.csv", "sales/2026-12-02.csv"]
    );
    let mut app = wait_values(&stack, "app", 2);
    app.dedup();
    assert_eq!(app, ["b1", "b2"]);
    assert_eq!(wait_values(&stack, "after_a", 1), [run_a]);

    // Each run shows the event that started it.
    let shown = stack.json(&["triggers", "show", "orders"]);
    let events = shown["latest_events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(events.len(), 2, "one record per dedupe key: {shown:#}");
    assert!(events.iter().all(|e| e["state"] == "STARTED"), "{shown:#}");

    // The API shows the triggers, and each run the event that started it.
    let addr = stack.listener();
    let r = common::http::call(&addr, "GET", "/api/v1/triggers", Some(TOKEN), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.json();
    let orders = listed
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "orders"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(orders["events"]["STARTED"], 2, "{listed:#}");
    assert_eq!(orders["params"]["batch"], "$.detail.batch", "{orders:#}");
    let run_b = events[0]["run_id"].as_str().unwrap().to_string();
    let r = common::http::call(
        &addr,
        "GET",
        &format!("/api/v1/runs/{run_b}"),
        Some(TOKEN),
        None,
    );
    let started_by = &r.json()["trigger_event"];
    assert_eq!(started_by["trigger"], "orders", "{}", r.body);
    assert!(started_by["body"]
        .as_str()
        .is_some_and(|b| b.contains("Batch Ready")));
    let shown = stack.json(&["runs", "show", &run_b]);
    assert_eq!(shown["trigger_event"]["trigger"], "orders");

    // Paused, a trigger keeps its events; they start on resume.
    stack.ok(&["triggers", "pause", "orders"]);
    put_events(
        &stack,
        "app.orders",
        &[("Batch Ready", serde_json::json!({"batch": "b3"}))],
    );
    stack.wait_for(WAIT, "b3 to wait", || {
        let shown = stack.json(&["triggers", "show", "orders"]);
        let waiting = shown["events"]["WAITING"].as_i64().unwrap_or(0);
        common::seen(waiting == 1, shown)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        seen_values(&stack, "app").len(),
        2,
        "nothing ran while paused"
    );
    stack.ok(&["triggers", "resume", "orders"]);
    let mut app = wait_values(&stack, "app", 3);
    app.dedup();
    assert_eq!(app, ["b1", "b2", "b3"]);

    // Nothing ran twice: one run per event (per dedupe key).
    stack.wait_runs_ended(WAIT);
    let runs = stack.json(&["runs", "list"]);
    let count = |p: &str| {
        runs.as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["pipeline"] == p)
            .count()
    };
    assert_eq!(
        (count("load_sales"), count("orders"), count("after_a")),
        (2, 3, 1),
        "{runs:#}"
    );
    // The rules keep other objects' events away from the queue; one that
    // reaches it anyway and matches no trigger is quarantined, not lost.
    let stray = serde_json::json!({
        "id": "stray-1", "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": bucket}, "object": {"key": "other/y.csv"}}
    });
    stack.send_raw(&stray.to_string());
    stack.wait_for(WAIT, "the stray event to be quarantined", || {
        let inbox = stack.inbox();
        let found = inbox.iter().any(|e| {
            e["disposition"] == "quarantined"
                && e["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("other/y.csv"))
        });
        common::seen(found, inbox.len())
    });
    assert_eq!(count("load_sales"), 2, "the stray event started nothing");
    let check = stack.run(&["ledger", "check"]);
    assert!(check.status.success(), "{}", common::stderr(&check));
    // Removing a trigger removes its rule.
    let removed = stack.ok(&["triggers", "remove", "orders"]);
    assert!(
        removed.contains("trigger orders removed; EventBridge rules"),
        "{removed}"
    );
    let rules = stack.python(
        "import boto3,os\n\
         ev=boto3.client('events', endpoint_url=os.environ['AWS_ENDPOINT_URL_EVENTBRIDGE'])\n\
         print(' '.join(r['Name'] for r in ev.list_rules()['Rules']))\n",
    );
    assert!(!rules.contains("-trigger-orders"), "{rules}");
    assert!(rules.contains("-trigger-load_sales"), "{rules}");
}

/// `triggers test` says which run an event would start, and with which
/// parameters; nothing is recorded.
#[test]
fn triggers_test_shows_what_an_event_would_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.toml");
    std::fs::write(
        &file,
        "name = \"orders\"\n[params]\nbatch = \"\"\n\
         [trigger.pattern]\nsource = [\"app.orders\"]\n\
         [trigger.params]\nbatch = \"$.detail.batch\"\n\
         [jobs.take]\nsql = \"SELECT :batch AS b\"\nparams = { batch = { param = \"batch\" } }\n",
    )
    .unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"id": "e-1", "source": "app.orders", "detail-type": "Batch Ready", "detail": {"batch": "b7"}}"#,
    )
    .unwrap();
    let run = |ev: &std::path::Path| {
        std::process::Command::new(common::bin())
            .args(["triggers", "test"])
            .arg(&file)
            .arg("--event")
            .arg(ev)
            .current_dir(dir.path())
            .env("REDRELAY_WORKGROUP", "wg")
            .env("REDRELAY_DATABASE", "dev")
            .env("REDRELAY_LEDGER", dir.path().join("l.db"))
            .output()
            .unwrap()
    };
    let out = run(&event);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(text.contains("match: a run of pipeline orders"), "{text}");
    assert!(text.contains("param batch = b7"), "{text}");
    std::fs::write(
        &event,
        r#"{"id": "e-2", "source": "app.other", "detail": {"batch": "b8"}}"#,
    )
    .unwrap();
    let out = run(&event);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no match"));
    std::fs::write(
        &event,
        r#"{"id": "e-3", "source": "app.orders", "detail": {}}"#,
    )
    .unwrap();
    let out = run(&event);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("$.detail.batch"),
        "{}",
        common::stderr(&out)
    );
    assert!(!dir.path().join("l.db").exists(), "nothing recorded");
}

/// Issue 18's reliability check: a burst of events (10% of them sent
/// twice, as separate PutEvents entries: two event ids, one dedupe key)
/// through three workers on PostgreSQL, the leader killed twice while
/// they arrive: exactly one run per event, each with its own event's
/// parameter. The events of a paused trigger all wait and all start on
/// resume. `REDRELAY_TRIGGER_EVENTS=1000` for the full size (default 200).
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_with_copies_starts_one_run_per_event_across_leader_kills() {
    use std::os::unix::process::ExitStatusExt;
    let n: usize = std::env::var("REDRELAY_TRIGGER_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let kept_n = 50usize;
    let pg = common::pg::postgres().await;
    let stack = Stack::start_with(
        "trigger-burst",
        StackOptions {
            config_extra: "wait_time_secs = 1\nvisibility_timeout_secs = 5\nmax_in_flight = 50\n\
                           reconcile_after_secs = 2\n"
                .into(),
            ledger_url: Some(pg.url.clone()),
            ..Default::default()
        },
    );
    for (name, source) in [("burst", "app.burst"), ("kept", "app.kept")] {
        let file = stack.write_file(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\n[params]\nn = \"\"\n\
                 [trigger]\ndedupe = [\"$.detail.n\"]\n\
                 [trigger.pattern]\nsource = [\"{source}\"]\n\
                 [trigger.params]\nn = \"$.detail.n\"\n\
                 [jobs.mark]\nsql = \"INSERT INTO marks (what, n) VALUES ('{name}', :n)\"\n\
                 params = {{ n = {{ param = \"n\" }} }}\n"
            ),
        );
        stack.ok(&["triggers", "add", &file]);
    }
    stack.ok(&["setup"]);
    stack.ok(&["triggers", "pause", "kept"]);
    let mut workers: Vec<common::Proc> = (0..3).map(|_| stack.spawn_worker(&[])).collect();
    let create = stack.submit(&["--sql", "CREATE TABLE marks (what TEXT, n TEXT)"]);
    stack.wait_state(create, "FINISHED", WAIT);

    // The sender: every event once, every tenth twice, ten a call.
    let script = format!(
        "import boto3,os,json\n\
         ev=boto3.client('events', endpoint_url=os.environ['AWS_ENDPOINT_URL_EVENTBRIDGE'])\n\
         es=[]\n\
         for i in range({n}):\n\
         \x20   es.append({{'Source': 'app.burst', 'DetailType': 'Item', 'Detail': json.dumps({{'n': str(i)}})}})\n\
         \x20   if i % 10 == 0:\n\
         \x20       es.append({{'Source': 'app.burst', 'DetailType': 'Item', 'Detail': json.dumps({{'n': str(i)}})}})\n\
         for i in range({kept_n}):\n\
         \x20   es.append({{'Source': 'app.kept', 'DetailType': 'Item', 'Detail': json.dumps({{'n': str(i)}})}})\n\
         for k in range(0, len(es), 10):\n\
         \x20   out=ev.put_events(Entries=es[k:k+10])\n\
         \x20   assert out['FailedEntryCount'] == 0, out\n\
         print(len(es))\n"
    );
    let started = std::time::Instant::now();
    let mut cmd = std::process::Command::new(common::venv_bin("python"));
    cmd.arg("-c").arg(&script);
    stack.aws_env(&mut cmd);
    let sender = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the sender");

    // The leader dies twice while the events arrive.
    let mut leader_kills = 0;
    let ledger = stack.ledger().await;
    let runs_of = |ledger: &redrelay::ledger::Ledger| {
        let ledger = ledger.clone();
        async move {
            ledger
                .trigger_event_counts("burst")
                .await
                .unwrap()
                .iter()
                .filter(|(s, _)| s == "STARTED")
                .map(|(_, c)| *c as usize)
                .sum::<usize>()
        }
    };
    for at in [n / 4, n / 2] {
        stack
            .wait_for_async(WAIT, &format!("{at} runs started"), || async {
                let got = runs_of(&ledger).await;
                common::seen(got >= at, got)
            })
            .await;
        // A leader among the live workers (after a kill, the dead one's
        // lease runs out first).
        let pids: Vec<u32> = workers.iter().map(|w| w.pid()).collect();
        let i = stack.wait_for(Duration::from_secs(60), "a live leader", || {
            let l = stack.leader_id().unwrap_or_default();
            let i = pids.iter().position(|p| l.contains(&format!("-{p}-")));
            common::seen(i.is_some(), l).map(|_| i.unwrap_or(0))
        });
        let w = &mut workers[i];
        w.child.kill().unwrap();
        let status = w.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9));
        *w = stack.spawn_worker(&[]);
        leader_kills += 1;
    }
    let sent = sender.wait_with_output().expect("the sender");
    assert!(sent.status.success(), "the sender failed");
    let all = stack
        .wait_for_async(
            Duration::from_secs(300),
            "a run for every event",
            || async {
                let got = runs_of(&ledger).await;
                common::seen(got >= n, got)
            },
        )
        .await;
    let secs = started.elapsed().as_secs_f64();
    stack.wait_runs_ended(Duration::from_secs(300));
    // Every event's run, once, with its own parameter.
    let rows = warehouse_query(
        &stack.warehouse_path(),
        "SELECT n, COUNT(*) FROM marks WHERE what = 'burst' GROUP BY n",
    );
    let twice: Vec<&Vec<Value>> = rows.iter().filter(|r| r[1] != 1).collect();
    assert!(twice.is_empty(), "parameters run more than once: {twice:?}");
    assert_eq!(rows.len(), n, "one run per event");
    let counts = ledger.trigger_event_counts("burst").await.unwrap();
    assert_eq!(
        counts,
        vec![("STARTED".to_string(), n as i64)],
        "{counts:?}"
    );

    // The paused trigger kept every event; all start on resume.
    stack
        .wait_for_async(WAIT, "the paused trigger's events to wait", || async {
            let c = ledger.trigger_event_counts("kept").await.unwrap();
            common::seen(c == vec![("WAITING".to_string(), kept_n as i64)], c)
        })
        .await;
    stack.ok(&["triggers", "resume", "kept"]);
    stack
        .wait_for_async(WAIT, "the kept events to start", || async {
            let c = ledger.trigger_event_counts("kept").await.unwrap();
            common::seen(c == vec![("STARTED".to_string(), kept_n as i64)], c)
        })
        .await;
    stack.wait_runs_ended(WAIT);
    let kept = warehouse_query(
        &stack.warehouse_path(),
        "SELECT COUNT(DISTINCT n), COUNT(*) FROM marks WHERE what = 'kept'",
    );
    assert_eq!(kept[0], vec![Value::from(kept_n), Value::from(kept_n)]);
    stack.wait_queue_empty(WAIT);
    assert_eq!(stack.dlq_depth(), 0);
    assert!(leader_kills >= 2, "the leader was killed twice");
    let line = format!(
        "trigger burst: {n} events (+{} copies) -> {all} runs, each once, in {secs:.1} s \
         ({:.0} runs started/s, debug build), 3 workers on PostgreSQL, {leader_kills} leader kills; \
         {kept_n} events of a paused trigger kept and started on resume",
        n.div_ceil(10),
        all as f64 / secs
    );
    println!("{line}");
    eprintln!("{line}");
    for w in &mut workers {
        w.kill();
    }
}

/// `batch_window_secs`: the events of a few seconds start one run, each
/// parameter the JSON list of their values; the next window another run.
#[tokio::test(flavor = "multi_thread")]
async fn the_events_of_a_batch_window_start_one_run_with_their_values_as_a_list() {
    let stack = Stack::start_with(
        "trigger-batch",
        StackOptions {
            config_extra: "wait_time_secs = 1\n".into(),
            ..Default::default()
        },
    );
    let file = stack.write_file(
        "batched.toml",
        "name = \"batched\"\n[params]\nkeys = \"\"\n\
         [trigger]\nbatch_window_secs = 3\ndedupe = [\"$.detail.key\"]\n\
         [trigger.pattern]\nsource = [\"app.files\"]\n\
         [trigger.params]\nkeys = \"$.detail.key\"\n\
         [jobs.take]\nsql = \"INSERT INTO seen (what, v) VALUES ('batch', :keys)\"\n\
         params = { keys = { param = \"keys\" } }\n",
    );
    stack.ok(&["triggers", "add", &file]);
    stack.ok(&["setup"]);
    let _worker = stack.spawn_worker_ready(&[]);
    let create = stack.submit(&["--sql", "CREATE TABLE seen (what TEXT, v TEXT)"]);
    stack.wait_state(create, "FINISHED", WAIT);
    let item = |k: &str| ("File", serde_json::json!({ "key": k }));
    put_events(
        &stack,
        "app.files",
        &[item("a"), item("b"), item("c"), item("b")],
    );
    let first = wait_values(&stack, "batch", 1);
    let list: Vec<String> = serde_json::from_str(&first[0]).unwrap();
    assert_eq!(
        list,
        ["a", "b", "c"],
        "one run, the batch's values once each"
    );
    put_events(&stack, "app.files", &[item("d")]);
    let both = wait_values(&stack, "batch", 2);
    assert!(both.contains(&"[\"d\"]".to_string()), "{both:?}");
    let shown = stack.json(&["triggers", "show", "batched"]);
    assert_eq!(shown["events"]["STARTED"], 4, "{shown:#}");
    let runs = stack.json(&["runs", "list"]);
    let batched = runs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["pipeline"] == "batched")
        .count();
    assert_eq!(batched, 2, "{runs:#}");
    let check = stack.run(&["ledger", "check"]);
    assert!(check.status.success(), "{}", common::stderr(&check));
}

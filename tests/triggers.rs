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
        assert!(out.contains("stored"), "{out}");
    }
    // The rules that bring the triggers' events to the queue.
    let report: Value = serde_json::from_str(&stack.ok(&["setup"])).unwrap();
    assert_eq!(
        report["trigger_rules"].as_array().map(Vec::len),
        Some(3),
        "{report:#}"
    );
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

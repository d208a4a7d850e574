//! Benchmark, not a check: how fast a trigger starts a pipeline from an
//! event (issue 18). Prints figures; asserts only that every event started
//! its run. Run with `make bench`
//! (`cargo test --release --test bench_triggers -- --ignored --nocapture`).
//!
//! - latency: an application's PutEvents (the time just before the call)
//!   to the first ExecuteStatement of its run accepted by the Data API (the
//!   job's `submitted_at` in the ledger), one event at a time, through
//!   moto's EventBridge and SQS and one worker's long poll: p50 and p99;
//! - throughput: a burst of events (10 a PutEvents call, as fast as the
//!   sender goes): runs started per second, from the first call to the
//!   last run's creation.

mod common;

use common::{percentile, Stack, StackOptions};
use std::collections::HashMap;
use std::time::Duration;

const TRIGGER: &str = "name = \"bench\"\n[params]\nn = \"\"\n\
    [trigger]\noverlap = \"allow\"\ndedupe = [\"$.detail.n\"]\n\
    [trigger.pattern]\nsource = [\"bench.app\"]\n\
    [trigger.params]\nn = \"$.detail.n\"\n\
    [jobs.one]\nsql = \"SELECT :n AS n\"\nparams = { n = { param = \"n\" } }\n";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends events `n` = from..to (as text), `per_call` a PutEvents call,
/// `gap_ms` between calls; prints `n sent_ms` a line for the first of each
/// call. Returns (n -> sent ms).
fn send(
    stack: &Stack,
    from: usize,
    to: usize,
    per_call: usize,
    gap_ms: u64,
) -> HashMap<String, i64> {
    let script = format!(
        "import boto3,os,json,time\n\
         ev=boto3.client('events', endpoint_url=os.environ['AWS_ENDPOINT_URL_EVENTBRIDGE'])\n\
         ns=[str(i) for i in range({from}, {to})]\n\
         for k in range(0, len(ns), {per_call}):\n\
         \x20   chunk=ns[k:k+{per_call}]\n\
         \x20   t=int(time.time()*1000)\n\
         \x20   out=ev.put_events(Entries=[{{'Source': 'bench.app', 'DetailType': 'Item', 'Detail': json.dumps({{'n': n}})}} for n in chunk])\n\
         \x20   assert out['FailedEntryCount'] == 0, out\n\
         \x20   for n in chunk:\n\
         \x20       print(n, t)\n\
         \x20   time.sleep({gap})\n",
        gap = gap_ms as f64 / 1000.0
    );
    stack
        .python(&script)
        .lines()
        .filter_map(|l| {
            let (n, t) = l.split_once(' ')?;
            Some((n.to_string(), t.parse().ok()?))
        })
        .collect()
}

/// (n -> (run created, first statement accepted)) of every started event.
async fn started(ledger: &redrelay::ledger::Ledger) -> HashMap<String, (i64, Option<i64>)> {
    let mut out = HashMap::new();
    for ev in ledger
        .trigger_events(Some("bench"), 1_000_000)
        .await
        .unwrap()
    {
        let Some(run) = &ev.run_id else { continue };
        let params: HashMap<String, String> = serde_json::from_str(&ev.params).unwrap();
        let jobs = ledger.jobs(None, Some(run)).await.unwrap();
        let created = ledger
            .run(run)
            .await
            .unwrap()
            .map(|r| r.created_at)
            .unwrap_or(0);
        let submitted = jobs.iter().filter_map(|j| j.submitted_at).min();
        out.insert(params["n"].clone(), (created, submitted));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn trigger_latency_and_burst_throughput() {
    let one_by_one = env_usize("REDRELAY_BENCH_TRIGGER_EVENTS", 100);
    let burst = env_usize("REDRELAY_BENCH_TRIGGER_BURST", 1000);
    let stack = Stack::start_with(
        "bench-triggers",
        StackOptions {
            config_extra: "wait_time_secs = 20\nmax_in_flight = 100\n".into(),
            ..Default::default()
        },
    );
    let file = stack.write_file("bench.toml", TRIGGER);
    stack.ok(&["triggers", "add", &file]);
    stack.ok(&["setup"]);
    let _worker = stack.spawn_worker_ready(&[]);
    let ledger = stack.ledger().await;

    // Latency: one event at a time, 200 ms apart.
    let sent = send(&stack, 0, one_by_one, 1, 200);
    let got = stack
        .wait_for_async(
            Duration::from_secs(300),
            "every event's first statement",
            || async {
                let s = started(&ledger).await;
                let done = s.values().filter(|(_, sub)| sub.is_some()).count();
                common::seen(done >= one_by_one, s).map_err(|_| format!("{done} submitted"))
            },
        )
        .await;
    let mut lat: Vec<i64> = sent
        .iter()
        .filter_map(|(n, t)| got.get(n).and_then(|(_, s)| s.map(|s| s - t)))
        .collect();
    lat.sort_unstable();

    // Throughput: a burst, 10 events a call, as fast as the sender goes.
    let sent_burst = send(&stack, one_by_one, one_by_one + burst, 10, 0);
    let first = sent_burst.values().min().copied().unwrap_or(0);
    stack
        .wait_for_async(
            Duration::from_secs(600),
            "every burst event's run",
            || async {
                let n: i64 = ledger
                    .trigger_event_counts("bench")
                    .await
                    .unwrap()
                    .iter()
                    .filter(|(s, _)| s == "STARTED")
                    .map(|(_, c)| *c)
                    .sum();
                common::seen(n as usize >= one_by_one + burst, n)
            },
        )
        .await;
    let got = started(&ledger).await;
    let last_created = sent_burst
        .keys()
        .filter_map(|n| got.get(n).map(|(c, _)| *c))
        .max()
        .unwrap_or(first);
    let last_sent = sent_burst.values().max().copied().unwrap_or(first);
    let secs = (last_created - first) as f64 / 1000.0;
    println!("==================== trigger figures ====================");
    println!(
        "PutEvents -> first ExecuteStatement of its run  n={}  p50={} ms  p99={} ms  max={} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0)
    );
    println!(
        "burst of {burst} events: runs started in {secs:.1} s from the first PutEvents ({:.0} runs/s; the sender took {:.1} s)",
        burst as f64 / secs.max(0.001),
        (last_sent - first) as f64 / 1000.0
    );
    println!("==========================================================");
    assert_eq!(lat.len(), one_by_one);
}

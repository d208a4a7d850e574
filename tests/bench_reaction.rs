//! Benchmark, not a check: how fast redrelay reacts to a statement's end.
//! Prints figures; asserts only that the chain finished. Run with
//! `make bench` (`cargo test --test bench_reaction -- --ignored --nocapture`).
//!
//! A chain of N jobs runs on the local stack. From the emulator's record
//! (when each statement ended and when the next was created) and the ledger
//! (when the event was applied, when the dependent was submitted):
//! - end to end: parent statement ended -> dependent statement created;
//! - delivery: parent ended -> its event applied in the ledger (moto's
//!   EventBridge and SQS, then the worker's long poll and transaction);
//! - redrelay's own: event applied -> dependent accepted by the Data API.

mod common;

use common::Stack;
use std::time::{Duration, Instant};

fn summary(name: &str, mut v: Vec<i64>) {
    v.sort_unstable();
    println!(
        "{name:<44} n={:<3} p50={:>5} ms  p90={:>5} ms  max={:>5} ms",
        v.len(),
        common::percentile(&v, 0.5),
        common::percentile(&v, 0.9),
        v.last().copied().unwrap_or(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn reaction_latency_of_a_chain() {
    let n: usize = std::env::var("REDRELAY_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let stack = Stack::start("bench");
    // Consuming before the chain starts: every step is reacted to by events.
    let worker = stack.spawn_worker_ready(&[]);
    let mut text = String::from("[jobs.j0]\nsql = \"CREATE TABLE chain (i INTEGER)\"\n");
    for i in 1..n {
        text.push_str(&format!(
            "[jobs.j{i}]\nsql = \"INSERT INTO chain VALUES ({i})\"\ndepends_on = [\"j{}\"]\n",
            i - 1
        ));
    }
    let file = stack.dir.path().join("chain.toml");
    std::fs::write(&file, text).unwrap();
    let started = Instant::now();
    let run = stack
        .ok(&["pipeline", "run", &file.display().to_string()])
        .trim()
        .to_string();
    let shown = stack.wait_run(&run, Duration::from_secs(300));
    assert_eq!(shown["run"]["state"], "FINISHED");
    let wall = started.elapsed();
    let peak = common::proc_status_kib(worker.pid(), "VmHWM:");

    let ledger = stack.ledger().await;
    let jobs = ledger.jobs(None, Some(&run)).await.unwrap();
    let events = ledger.inbox(100_000).await.unwrap();
    let record = stack.record();
    let stmt = |sid: &str| record.iter().find(|r| r["id"] == sid).cloned();
    let (mut end_to_end, mut delivery, mut own) = (Vec::new(), Vec::new(), Vec::new());
    for pair in jobs.windows(2) {
        let (parent, child) = (&pair[0], &pair[1]);
        let (Some(ps), Some(cs)) = (
            parent.statement_id.as_deref().and_then(stmt),
            child.statement_id.as_deref().and_then(stmt),
        ) else {
            continue;
        };
        let ended = ps["ended_ms"].as_i64().unwrap();
        end_to_end.push(cs["created_ms"].as_i64().unwrap() - ended);
        if let Some(applied) = events
            .iter()
            .filter(|e| {
                e.job_id == Some(parent.id)
                    && e.disposition == redrelay::ledger::Disposition::Applied
            })
            .map(|e| e.received_at)
            .min()
        {
            delivery.push(applied - ended);
            own.push(child.submitted_at.unwrap() - applied);
        }
    }
    println!();
    println!(
        "redrelay reaction benchmark: a chain of {n} jobs on the local stack (moto + emulator)"
    );
    summary("end to end: parent ended -> child created", end_to_end);
    summary("delivery: parent ended -> event applied", delivery);
    summary("redrelay: event applied -> child submitted", own);
    println!(
        "chain wall time: {:.2} s ({:.0} ms per step); worker peak RSS: {} MiB",
        wall.as_secs_f64(),
        wall.as_millis() as f64 / n as f64,
        peak.map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "?".into())
    );
    let reconciled = stack
        .log("worker.log")
        .matches("found by DescribeStatement")
        .count();
    println!("jobs ended by the reconciler instead of an event: {reconciled}");
}

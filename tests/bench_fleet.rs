//! Benchmark, not a check: one DAG through 1, 2 and 3 workers on a
//! PostgreSQL ledger, and through one worker on SQLite, with the Data API
//! rate limits lifted; and how long a new leader takes after the leader is
//! killed. Prints figures; asserts only that every run finished. Run with
//! `make bench`.
//!
//! The DAG: a root, then `REDRELAY_BENCH_LAYERS` layers (default 4) of
//! `REDRELAY_BENCH_WIDTH` jobs (default 50), each job of a layer depending
//! on every job of the layer before through one join job, so that a layer
//! starts only when the previous one has finished.

mod common;

use common::{Stack, StackOptions};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dag(layers: usize, width: usize) -> (String, usize) {
    let mut text =
        String::from("name = \"dag\"\n[jobs.root]\nsql = \"CREATE TABLE hits (n INTEGER)\"\n");
    let mut jobs = 1;
    let mut prev = "root".to_string();
    for l in 0..layers {
        let mut names = Vec::new();
        for i in 0..width {
            let name = format!("l{l}_{i}");
            text.push_str(&format!(
                "[jobs.{name}]\nsql = \"INSERT INTO hits VALUES ({})\"\ndepends_on = [\"{prev}\"]\n",
                l * width + i
            ));
            names.push(format!("\"{name}\""));
            jobs += 1;
        }
        let join = format!("join{l}");
        text.push_str(&format!(
            "[jobs.{join}]\nsql = \"SELECT COUNT(*) FROM hits\"\ndepends_on = [{}]\n",
            names.join(", ")
        ));
        jobs += 1;
        prev = join;
    }
    (text, jobs)
}

/// Runs the DAG through `workers` workers; returns (jobs, seconds).
async fn run_dag(ledger_url: Option<String>, workers: usize) -> (usize, f64) {
    let stack = Stack::start_with(
        "bench-fleet",
        StackOptions {
            config_extra: "api_rate_scale = 100.0\nmax_in_flight = 200\nretention_days = 0\n"
                .into(),
            ledger_url,
            ..Default::default()
        },
    );
    let (text, jobs) = dag(
        env_usize("REDRELAY_BENCH_LAYERS", 4),
        env_usize("REDRELAY_BENCH_WIDTH", 50),
    );
    let file = stack.write_file("dag.toml", &text);
    let _w: Vec<_> = (0..workers).map(|_| stack.spawn_worker(&[])).collect();
    let started = Instant::now();
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let runs = stack.wait_runs_ended(Duration::from_secs(600));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(runs[0]["state"], "FINISHED", "{run}: {runs:#?}");
    (jobs, secs)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn a_dag_through_one_two_and_three_workers() {
    println!("one DAG, Data API rate limits lifted (api_rate_scale = 100), debug build");
    let (jobs, secs) = run_dag(None, 1).await;
    println!(
        "{:<34} {jobs} jobs in {secs:>6.2} s = {:>6.1} jobs/s",
        "SQLite, 1 worker",
        jobs as f64 / secs
    );
    for n in 1..=3 {
        let pg = common::pg::postgres().await;
        let (jobs, secs) = run_dag(Some(pg.url), n).await;
        println!(
            "{:<34} {jobs} jobs in {secs:>6.2} s = {:>6.1} jobs/s",
            format!("PostgreSQL, {n} worker(s)"),
            jobs as f64 / secs
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn failover_time_after_the_leader_is_killed() {
    let mut times = Vec::new();
    for _ in 0..env_usize("REDRELAY_BENCH_FAILOVERS", 3) {
        let pg = common::pg::postgres().await;
        let stack = Stack::start_with(
            "bench-failover",
            StackOptions {
                ledger_url: Some(pg.url),
                ..Default::default()
            },
        );
        let mut procs = vec![stack.spawn_worker(&[]), stack.spawn_worker(&[])];
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            if let Some(l) = stack.leader_id() {
                break l;
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(100));
        };
        let at = procs
            .iter()
            .position(|p| first.contains(&format!("-{}-", p.pid())))
            .expect("the leader is one of ours");
        let leader = procs.remove(at);
        leader.signal("KILL");
        let killed = Instant::now();
        loop {
            if stack.leader_id().is_some_and(|l| l != first) {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "no new leader");
            std::thread::sleep(Duration::from_millis(50));
        }
        times.push(killed.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "failover (leader SIGKILLed -> new leader): n={} p50={:.1} s max={:.1} s (lease TTL 15 s, renewed every 3 s)",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

//! Benchmark, not a check: redrelay side by side with the ways users poll
//! the Data API today, every row measured in one run on the same machine
//! against redrelay's emulator (with moto for EventBridge and SQS). Prints
//! one table. Run with `make bench` (release build).
//!
//! Rows:
//! - a chain of 40 jobs and a 501-job DAG (a root, then 50 chains of 10),
//!   at 0 and 150 ms per Data API call, driven by redrelay (events, AWS's
//!   default quotas), by an Airflow-style poller (DescribeStatement every
//!   N s, then GetStatementResult, then the dependent; N = 1 s, and 10 s
//!   on a chain of 5 to keep the run short) and by a backoff poller (0.25 s,
//!   x1.5), every statement running 0.5 to 2.5 s, every driver held to
//!   AWS's default quotas: reaction (parent statement ended -> dependent statement created,
//!   from the emulator's record) p50/p90/p99/max, Data API calls per job by
//!   operation, wall time;
//! - the ledger in-process (SQLite, PostgreSQL): events per second through
//!   parse, dedupe, transition and commit, one transaction per event;
//! - a 2,000,000-row result: redrelay (CSV through GetStatementResultV2, and
//!   CSV + JSON Lines through GetStatementResult) against a Python client
//!   that builds a pandas DataFrame (boto3), rows/s, MB/s, peak RSS;
//! - an idle worker: RSS and CPU over 60 s.

mod common;

use aws_sdk_redshiftdata::Client;
use common::{Stack, StackOptions};
use redrelay::ratelimit::Limits;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(900);

/// CPU time (user + system) of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of stat; `after` starts at field 3.
    n(11) + n(12)
}

/// One row of the comparison table.
struct Row {
    scenario: String,
    driver: String,
    reactions: Vec<i64>,
    calls: BTreeMap<String, u64>,
    jobs: usize,
    wall: f64,
}

impl Row {
    fn print(&self) {
        let mut r = self.reactions.clone();
        r.sort_unstable();
        let per_job: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(op, n)| format!("{op} {:.2}", *n as f64 / self.jobs as f64))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} s ({:.1} jobs/s) |",
            self.scenario,
            self.driver,
            common::percentile(&r, 0.5),
            common::percentile(&r, 0.9),
            common::percentile(&r, 0.99),
            r.last().copied().unwrap_or(0),
            per_job.join(", "),
            self.wall,
            self.jobs as f64 / self.wall
        );
    }
}

/// A graph of jobs: (name, SQL, parent).
fn chain(n: usize) -> Vec<(String, String, Option<usize>)> {
    let mut g = vec![(
        "j0".to_string(),
        "CREATE TABLE t (i INTEGER)".to_string(),
        None,
    )];
    for i in 1..n {
        g.push((
            format!("j{i}"),
            format!("INSERT INTO t VALUES ({i})"),
            Some(i - 1),
        ));
    }
    g
}

/// A root, then `width` chains of `depth`: 1 + width * depth jobs.
fn dag(width: usize, depth: usize) -> Vec<(String, String, Option<usize>)> {
    let mut g = vec![(
        "root".to_string(),
        "CREATE TABLE t (i INTEGER)".to_string(),
        None,
    )];
    for d in 0..depth {
        for w in 0..width {
            let parent = if d == 0 { 0 } else { 1 + (d - 1) * width + w };
            g.push((
                format!("c{w}_{d}"),
                format!("INSERT INTO t VALUES ({})", d * width + w),
                Some(parent),
            ));
        }
    }
    g
}

fn pipeline_text(g: &[(String, String, Option<usize>)]) -> String {
    let mut text = String::from("name = \"bench\"\n");
    for (name, sql, parent) in g {
        text.push_str(&format!("[jobs.{name}]\nsql = \"{sql}\"\n"));
        if let Some(p) = parent {
            text.push_str(&format!("depends_on = [\"{}\"]\n", g[*p].0));
        }
    }
    text
}

/// How long job `i`'s statement runs: 0.5 to 2.5 s, spread evenly but in
/// no order (statements that end at once would flatter pollers: their first
/// DescribeStatement would always find the end).
fn run_time_ms(i: usize) -> u64 {
    500 + (i as u64 * 7919) % 2001
}

/// A stack whose emulator answers each call after `latency_ms` and runs
/// each job of `g` for [`run_time_ms`] (`--hold` on its StatementName).
fn stack_with_latency(
    name: &str,
    latency_ms: u64,
    config: &str,
    g: &[(String, String, Option<usize>)],
) -> Stack {
    let mut args = vec!["--api-latency-ms".to_string(), latency_ms.to_string()];
    for (i, (job, _, _)) in g.iter().enumerate() {
        args.push("--hold".into());
        args.push(format!("{}:/{job}/", run_time_ms(i)));
    }
    Stack::start_with(
        name,
        StackOptions {
            config_extra: format!("retention_days = 0\n{config}"),
            emulator_args: args,
            ..Default::default()
        },
    )
}

/// Reaction times from the emulator's record: for each job with a parent,
/// the parent's statement end to the job's statement creation (ms).
fn reactions(stack: &Stack, parent_of: &HashMap<String, String>) -> Vec<i64> {
    let record = stack.record();
    let by_name: HashMap<String, &serde_json::Value> = record
        .iter()
        .filter_map(|r| {
            let name = r["statement_name"].as_str()?;
            Some((job_name(name).to_string(), r))
        })
        .collect();
    parent_of
        .iter()
        .filter_map(|(child, parent)| {
            let c = by_name.get(child)?;
            let p = by_name.get(parent)?;
            Some(c["created_ms"].as_i64()? - p["ended_ms"].as_i64()?)
        })
        .collect()
}

/// The job name in a StatementName: redrelay's `redrelay/NAME/UID` or the
/// pollers' `poll/NAME/`.
fn job_name(statement_name: &str) -> &str {
    let mut parts = statement_name.split('/');
    let _ = parts.next();
    parts.next().unwrap_or_default()
}

fn parents(g: &[(String, String, Option<usize>)]) -> HashMap<String, String> {
    g.iter()
        .filter_map(|(n, _, p)| p.map(|p| (n.clone(), g[p].0.clone())))
        .collect()
}

/// The worker's Data API calls by operation, from its /metrics.
fn worker_calls(stack: &Stack) -> BTreeMap<String, u64> {
    let ws = stack.json(&["workers", "list"]);
    let addr = ws[0]["listen"].as_str().unwrap_or_default().to_string();
    let body = http_get(&addr, "/metrics");
    let mut out = BTreeMap::new();
    for l in body.lines() {
        let Some(rest) = l.strip_prefix("redrelay_data_api_calls_total{") else {
            continue;
        };
        let op = rest
            .split("operation=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let n: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(op.to_string()).or_default() += n as u64;
    }
    out
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

async fn redrelay_row(
    scenario: &str,
    g: &[(String, String, Option<usize>)],
    latency: u64,
    run_times: bool,
) -> Row {
    let holds: &[(String, String, Option<usize>)] = if run_times { g } else { &[] };
    let stack = stack_with_latency("cmp", latency, "max_in_flight = 200\n", holds);
    let _worker = stack.spawn_worker_ready(&[]);
    let file = stack.write_file("bench.toml", &pipeline_text(g));
    let started = Instant::now();
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let shown = stack.wait_run(&run, WAIT);
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(shown["run"]["state"], "FINISHED", "{shown:#}");
    // Results are fetched after the run's end: wait for the fetcher.
    std::thread::sleep(Duration::from_millis(500));
    Row {
        scenario: format!("{scenario}, {latency} ms/call"),
        driver: "redrelay (events)".into(),
        reactions: reactions(&stack, &parents(g)),
        calls: worker_calls(&stack),
        jobs: g.len(),
        wall,
    }
}

async fn sdk_client(stack: &Stack) -> Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&stack.data_url)
        .credentials_provider(aws_sdk_redshiftdata::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    Client::new(&sdk)
}

#[derive(Clone, Copy)]
enum Poll {
    /// DescribeStatement every interval.
    Every(Duration),
    /// First wait, then x1.5 up to 10 s.
    Backoff(Duration),
}

#[derive(Default)]
struct Counts {
    execute: AtomicU64,
    describe: AtomicU64,
    result: AtomicU64,
}

/// Runs one statement the way a polling operator does: ExecuteStatement,
/// DescribeStatement until it ends, then GetStatementResult (every page)
/// when it has a result set.
async fn poll_one(
    client: &Client,
    limits: &Limits,
    name: &str,
    sql: &str,
    how: Poll,
    counts: &Counts,
) {
    limits.execute.take().await;
    counts.execute.fetch_add(1, Ordering::Relaxed);
    let id = client
        .execute_statement()
        .workgroup_name("wg-test")
        .database("dev")
        .statement_name(format!("poll/{name}/"))
        .sql(sql)
        .send()
        .await
        .expect("ExecuteStatement")
        .id()
        .unwrap_or_default()
        .to_string();
    let mut wait = match how {
        Poll::Every(d) | Poll::Backoff(d) => d,
    };
    // As Airflow's RedshiftDataHook.wait_for_results: describe, and sleep
    // between describes until the statement has ended.
    loop {
        limits.describe.take().await;
        counts.describe.fetch_add(1, Ordering::Relaxed);
        let d = client
            .describe_statement()
            .id(&id)
            .send()
            .await
            .expect("DescribeStatement");
        match d.status().map(|s| s.as_str()) {
            Some("FINISHED") => {
                if d.has_result_set().unwrap_or(false) {
                    let mut token = None;
                    loop {
                        limits.get_result.take().await;
                        counts.result.fetch_add(1, Ordering::Relaxed);
                        let page = client
                            .get_statement_result()
                            .id(&id)
                            .set_next_token(token)
                            .send()
                            .await
                            .expect("GetStatementResult");
                        token = page.next_token().map(str::to_string);
                        if token.is_none() {
                            break;
                        }
                    }
                }
                return;
            }
            Some("FAILED") | Some("ABORTED") => panic!("{name} failed: {:?}", d.error()),
            _ => {}
        }
        tokio::time::sleep(wait).await;
        if let Poll::Backoff(_) = how {
            wait = wait.mul_f64(1.5).min(Duration::from_secs(10));
        }
    }
}

/// A graph run by a poller: each job waits for its parent, then runs.
async fn poller_row(
    scenario: &str,
    driver: &str,
    g: &[(String, String, Option<usize>)],
    latency: u64,
    how: Poll,
) -> Row {
    let stack = stack_with_latency("poll", latency, "", g);
    let client = sdk_client(&stack).await;
    let counts = Arc::new(Counts::default());
    // The account's quotas hold for pollers too (AWS throttles beyond them).
    let limits = Arc::new(Limits::aws_defaults(1.0));
    let started = Instant::now();
    // Each job as a task that waits for its parent's end.
    let mut done: Vec<tokio::sync::watch::Sender<bool>> = Vec::new();
    let mut rx = Vec::new();
    for _ in g {
        let (tx, r) = tokio::sync::watch::channel(false);
        done.push(tx);
        rx.push(r);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (name, sql, parent)) in g.iter().cloned().enumerate() {
        let client = client.clone();
        let counts = counts.clone();
        let limits = limits.clone();
        let tx = done[i].clone();
        let wait_for = parent.map(|p| rx[p].clone());
        tasks.spawn(async move {
            if let Some(mut w) = wait_for {
                let _ = w.wait_for(|d| *d).await;
            }
            poll_one(&client, &limits, &name, &sql, how, &counts).await;
            let _ = tx.send(true);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("poller task");
    }
    let wall = started.elapsed().as_secs_f64();
    let mut calls = BTreeMap::new();
    calls.insert(
        "ExecuteStatement".to_string(),
        counts.execute.load(Ordering::Relaxed),
    );
    calls.insert(
        "DescribeStatement".to_string(),
        counts.describe.load(Ordering::Relaxed),
    );
    calls.insert(
        "GetStatementResult".to_string(),
        counts.result.load(Ordering::Relaxed),
    );
    Row {
        scenario: format!("{scenario}, {latency} ms/call"),
        driver: driver.into(),
        reactions: reactions(&stack, &parents(g)),
        calls,
        jobs: g.len(),
        wall,
    }
}

/// Events per second through the ledger in-process: parse, dedupe,
/// transition and commit, one transaction per `batch` events (1: one per
/// event, as the worker does; 10: one per SQS batch).
async fn ledger_throughput(ledger: &redrelay::ledger::Ledger, n: usize, batch: usize) -> f64 {
    use redrelay::ledger::{Accepted, NewJob, Target};
    let origin = redrelay::event::Origin::default();
    let mut bodies = Vec::with_capacity(n);
    for i in 0..n {
        let job = ledger
            .insert_job(
                &NewJob {
                    name: format!("b{batch}_{i}"),
                    sqls: vec!["SELECT 1".into()],
                    params: vec![],
                    target: Target {
                        workgroup: Some("wg".into()),
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
                },
                0,
            )
            .await
            .expect("insert");
        let t = match ledger.claim(job.id, None, "bench", 1).await.expect("claim") {
            redrelay::ledger::Claim::Ticket(t) => t,
            _ => panic!("not claimed"),
        };
        let sid = uuid_like(batch * 1_000_000 + i);
        ledger
            .mark_submitted(
                job.id,
                t.attempt,
                &Accepted::id(&sid),
                Default::default(),
                2,
            )
            .await
            .expect("mark");
        bodies.push((
            format!("m{batch}_{i}"),
            event_body(&format!("e{batch}_{i}"), &sid, &t.statement_name),
        ));
    }
    let started = Instant::now();
    for chunk in bodies.chunks(batch.max(1)) {
        let events: Vec<_> = chunk
            .iter()
            .map(|(_, body)| redrelay::event::parse(body, &origin).expect("event parses"))
            .collect();
        if batch <= 1 {
            let (m, body) = &chunk[0];
            ledger
                .apply_event(&events[0], None, Some(m), body, 3)
                .await
                .expect("apply");
        } else {
            let items: Vec<_> = chunk
                .iter()
                .zip(&events)
                .map(|((m, body), ev)| (ev, None, Some(m.as_str()), body.as_str()))
                .collect();
            ledger.apply_events(&items, 3).await.expect("apply batch");
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn event_body(id: &str, statement: &str, name: &str) -> String {
    serde_json::json!({
        "version": "0", "id": id,
        "detail-type": "Redshift Data Statement Status Change",
        "source": "aws.redshift-data", "account": "123456789012",
        "time": "2026-11-28T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:redshift-serverless:us-east-1:123456789012:workgroup/wg"],
        "detail": {
            "principal": "arn:aws:iam::123456789012:user/bench",
            "statementName": name, "statementId": statement,
            "redshiftQueryId": -1, "state": "FINISHED",
            "rows": 1, "expireAt": 1_795_900_000
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with `make bench`"]
async fn redrelay_against_polling_and_its_own_limits() {
    if std::env::var("REDRELAY_BENCH_ONLY").as_deref() == Ok("idle") {
        idle_worker();
        return;
    }
    if std::env::var("REDRELAY_BENCH_ONLY").as_deref() == Ok("ledger") {
        ledger_rows().await;
        return;
    }
    let mut rows = Vec::new();
    let only_throughput = std::env::var("REDRELAY_BENCH_ONLY").as_deref() == Ok("throughput");
    for latency in [0u64, 150] {
        let c40 = chain(40);
        let c5 = chain(5);
        let d501 = dag(50, 10);
        // Throughput against the quota: statements that end at once, so
        // only submission (30 ExecuteStatement/s) limits the DAG.
        rows.push(redrelay_row("DAG of 501, statements end at once", &d501, latency, false).await);
        if only_throughput {
            continue;
        }
        rows.push(redrelay_row("chain of 40", &c40, latency, true).await);
        rows.push(
            poller_row(
                "chain of 40",
                "Airflow-style poll, 1 s",
                &c40,
                latency,
                Poll::Every(Duration::from_secs(1)),
            )
            .await,
        );
        rows.push(
            poller_row(
                "chain of 40",
                "backoff poll, 0.25 s x1.5",
                &c40,
                latency,
                Poll::Backoff(Duration::from_millis(250)),
            )
            .await,
        );
        rows.push(
            poller_row(
                "chain of 5",
                "Airflow-style poll, 10 s",
                &c5,
                latency,
                Poll::Every(Duration::from_secs(10)),
            )
            .await,
        );
        rows.push(redrelay_row("DAG of 501", &d501, latency, true).await);
        rows.push(
            poller_row(
                "DAG of 501",
                "Airflow-style poll, 1 s",
                &d501,
                latency,
                Poll::Every(Duration::from_secs(1)),
            )
            .await,
        );
        rows.push(
            poller_row(
                "DAG of 501",
                "backoff poll, 0.25 s x1.5",
                &d501,
                latency,
                Poll::Backoff(Duration::from_millis(250)),
            )
            .await,
        );
    }
    println!();
    println!("## redrelay against polling (reaction = parent statement ended -> dependent statement created)");
    println!();
    println!("| scenario | driver | p50 ms | p90 ms | p99 ms | max ms | Data API calls per job | wall time |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        r.print();
    }
    if only_throughput {
        return;
    }

    ledger_rows().await;

    println!();
    println!("## a 2,000,000-row result");
    println!();
    big_result().await;

    println!();
    println!("## an idle worker over 60 s");
    println!();
    idle_worker();
}

/// The ledger in-process, on both backends.
async fn ledger_rows() {
    println!();
    println!("## ledger in-process: events through parse, dedupe, transition, commit");
    println!();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = redrelay::ledger::Ledger::open(&dir.path().join("bench.db"))
        .await
        .expect("sqlite ledger");
    println!("| ledger | one transaction per event | one per SQS batch of 10 |");
    println!("|---|---|---|");
    let one = ledger_throughput(&sqlite, 2000, 1).await;
    let ten = ledger_throughput(&sqlite, 2000, 10).await;
    println!("| SQLite (WAL, synchronous=NORMAL) | {one:.0} events/s | {ten:.0} events/s |");
    let pg = common::pg::postgres().await;
    let location = redrelay::ledger::location::parse(&pg.url, None, |_| None).expect("url");
    let pg_ledger = redrelay::ledger::Ledger::connect(&location, 5)
        .await
        .expect("postgres ledger");
    let one = ledger_throughput(&pg_ledger, 2000, 1).await;
    let ten = ledger_throughput(&pg_ledger, 2000, 10).await;
    println!("| PostgreSQL (local server, loopback) | {one:.0} events/s | {ten:.0} events/s |");
}

/// A 2,000,000-row result fetched by redrelay (both ways) and by a Python
/// client that builds a pandas DataFrame.
async fn big_result() {
    let rows: i64 = std::env::var("REDRELAY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let big_stack = || {
        Stack::start_with(
            "bigresult",
            StackOptions {
                page_size: 10_000,
                // Rate limits lifted: the figure is the client's own speed.
                config_extra: "api_rate_scale = 100.0\nretention_days = 0\n".into(),
                ..Default::default()
            },
        )
    };
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         SELECT i AS id, 'name ' || i AS name, i * 1.5 AS score FROM n"
    );
    println!("| client | rows | time | rows/s | MB/s | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for formats in ["csv", "csv,jsonl"] {
        let stack = big_stack();
        let worker = stack.spawn_worker_ready(&[]);
        let id = stack.submit(&["--name", "big", "--result-formats", formats, "--sql", &sql]);
        let job = stack.wait_state(id, "FINISHED", WAIT);
        let started = Instant::now();
        let ended_ms = job["finished_at"].as_i64().unwrap_or_default();
        let job = stack.wait_fetched(id, WAIT);
        let secs = started.elapsed().as_secs_f64();
        let _ = ended_ms;
        let peak = common::proc_status_kib(worker.pid(), "VmHWM:").unwrap_or(0);
        let dir = job["result_path"].as_str().unwrap_or_default().to_string();
        let bytes: u64 = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let via = if formats == "csv" {
            "redrelay, CSV (GetStatementResultV2)"
        } else {
            "redrelay, CSV + JSON Lines (GetStatementResult)"
        };
        println!(
            "| {via} | {rows} | {secs:.1} s | {:.0} | {:.1} | {:.1} MiB |",
            rows as f64 / secs,
            bytes as f64 / 1e6 / secs,
            peak as f64 / 1024.0
        );
        drop(worker);
    }
    // The Python client: boto3 pages into a pandas DataFrame.
    let stack = big_stack();
    let script = format!(
        r#"
import boto3, os, time, resource
import pandas as pd
c = boto3.client('redshift-data', endpoint_url={url:?})
sid = c.execute_statement(WorkgroupName='wg-test', Database='dev', Sql={sql:?})['Id']
while c.describe_statement(Id=sid)['Status'] not in ('FINISHED', 'FAILED', 'ABORTED'):
    time.sleep(0.2)
t = time.time()
rows, cols, token = [], None, None
while True:
    kw = {{'Id': sid}}
    if token:
        kw['NextToken'] = token
    page = c.get_statement_result(**kw)
    cols = cols or [m['name'] for m in page['ColumnMetadata']]
    for rec in page['Records']:
        rows.append([list(f.values())[0] if 'isNull' not in f else None for f in rec])
    token = page.get('NextToken')
    if not token:
        break
df = pd.DataFrame(rows, columns=cols)
secs = time.time() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(df), secs, peak)
"#,
        url = stack.data_url,
        sql = sql
    );
    let out = stack.python(&script);
    let f: Vec<&str> = out.split_whitespace().collect();
    let n: f64 = f.first().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let secs: f64 = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let peak: f64 = f.get(2).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    println!(
        "| Python: boto3 pages into a pandas DataFrame | {n:.0} | {secs:.1} s | {:.0} | - | {:.1} MiB |",
        n / secs,
        peak / 1024.0
    );
}

/// RSS and CPU of a worker with nothing to do, over 60 s.
fn idle_worker() {
    let secs: u64 = std::env::var("REDRELAY_BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let stack = Stack::start("idle");
    // REDRELAY_BENCH_WORKER_BIN: the worker of another build, e.g. the
    // production one (`cargo build --profile production
    // --no-default-features -p redrelay`), beside this build's emulator.
    let other = std::env::var("REDRELAY_BENCH_WORKER_BIN").ok();
    let (worker, which) = match &other {
        Some(bin) => {
            let mut child = stack
                .command_of(bin, &["worker"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start the other worker");
            std::thread::sleep(Duration::from_secs(3));
            assert!(child.try_wait().unwrap().is_none(), "the worker exited");
            (
                common::Proc {
                    child,
                    name: "worker".into(),
                },
                bin.as_str(),
            )
        }
        None => (stack.spawn_worker_ready(&[]), "this build"),
    };
    println!("worker: {which}");
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ticks(worker.pid());
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = (cpu_ticks(worker.pid()) - before) as f64 / 100.0;
    let rss = common::proc_status_kib(worker.pid(), "VmRSS:").unwrap_or(0);
    println!(
        "| idle worker, {secs} s (long polls of 20 s, SQLite ledger) | RSS {:.1} MiB | CPU {cpu:.2} s ({:.2} %) |",
        rss as f64 / 1024.0,
        cpu / secs as f64 * 100.0
    );
}

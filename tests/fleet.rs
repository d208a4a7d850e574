//! Several workers on one PostgreSQL ledger (issue 8): claims across
//! processes, a leader that fails over, fleet-wide limits, and moving a
//! SQLite ledger to PostgreSQL. A real PostgreSQL server (tests/common/pg.rs)
//! and the local stack (moto, the emulator).

mod common;

use common::{Stack, StackOptions};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

async fn pg_stack(name: &str, config_extra: &str, emulator_args: &[&str]) -> Stack {
    let pg = common::pg::postgres().await;
    Stack::start_with(
        name,
        StackOptions {
            config_extra: config_extra.into(),
            emulator_args: emulator_args.iter().map(|s| s.to_string()).collect(),
            ledger_url: Some(pg.url),
            ..Default::default()
        },
    )
}

fn workers(stack: &Stack) -> Vec<Value> {
    stack
        .json(&["workers", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until `workers list` satisfies `ok`; returns it.
fn wait_workers(stack: &Stack, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ws = workers(stack);
        if ok(&ws) {
            return ws;
        }
        assert!(Instant::now() < deadline, "{what}: {ws:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leaders(ws: &[Value]) -> Vec<String> {
    ws.iter()
        .filter(|w| w["leader"] == true)
        .map(|w| w["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A wide pipeline: `n` independent jobs, each inserting its own row.
fn wide_pipeline(stack: &Stack, n: usize) -> String {
    let mut text =
        String::from("name = \"wide\"\n[jobs.setup]\nsql = \"CREATE TABLE hits (n INTEGER)\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "[jobs.j{i}]\nsql = \"INSERT INTO hits VALUES ({i})\"\ndepends_on = [\"setup\"]\n"
        ));
    }
    stack.write_file("wide.toml", &text)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_a_run_and_the_survivor_finishes_it_when_the_leader_dies() {
    let stack = pg_stack("failover", "", &["--hold", "400:INSERT"]).await;
    let file = wide_pipeline(&stack, 30);
    let mut procs = vec![stack.spawn_worker(&[]), stack.spawn_worker(&[])];
    let ws = wait_workers(&stack, "two live workers, one leader", |ws| {
        ws.len() == 2 && leaders(ws).len() == 1
    });
    let first_leader = leaders(&ws)[0].clone();
    let at = procs
        .iter()
        .position(|p| first_leader.contains(&format!("-{}-", p.pid())))
        .expect("the leader is one of the two workers");
    let leader = procs.remove(at);
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    // Kill the leader while the run is under way.
    let ledger = stack.ledger().await;
    let deadline = Instant::now() + WAIT;
    while ledger
        .jobs(Some(redrelay::state::JobState::Finished), Some(&run))
        .await
        .unwrap()
        .len()
        < 5
    {
        assert!(Instant::now() < deadline, "{}", stack.log("worker.log"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    leader.signal("KILL");
    let killed = Instant::now();
    let ws = wait_workers(&stack, "a new leader", |ws| {
        leaders(ws).iter().any(|l| *l != first_leader)
    });
    let failover = killed.elapsed();
    eprintln!("failover: a new leader {failover:?} after the leader was killed");
    assert_eq!(leaders(&ws).len(), 1, "{ws:#?}");
    let runs = stack.wait_runs_ended(WAIT);
    assert_eq!(runs[0]["state"], "FINISHED", "{runs:#?}");
    // Each INSERT ran once.
    let rows = common::warehouse_query(
        &stack.warehouse_path(),
        "SELECT COUNT(*), COUNT(DISTINCT n) FROM hits",
    );
    assert_eq!(rows, vec![vec![Value::from(30), Value::from(30)]]);
    let check = stack.ok(&["ledger", "check"]);
    assert!(check.contains("ledger ok"), "{check}");
    // Both workers took part: statements were submitted by each process.
    let log = stack.log("worker.log");
    assert!(log.matches("Job submitted.").count() >= 31, "{log}");
}

/// Starts three workers and waits until each counts the others (they renew
/// every 3 s), then runs the wide pipeline to its end; returns the
/// emulator's record of its INSERTs.
async fn three_workers_run(stack: &Stack, n: usize) -> Vec<Value> {
    let file = wide_pipeline(stack, n);
    let workers: Vec<_> = (0..3).map(|_| stack.spawn_worker(&[])).collect();
    wait_workers(stack, "three live workers", |ws| ws.len() == 3);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let run = stack.ok(&["pipeline", "run", &file]).trim().to_string();
    let runs = stack.wait_runs_ended(WAIT);
    assert_eq!(runs[0]["state"], "FINISHED", "{run}: {runs:#?}");
    drop(workers);
    let record: Vec<Value> = stack
        .record()
        .into_iter()
        .filter(|r| r["sqls"].to_string().contains("INSERT"))
        .collect();
    assert_eq!(record.len(), n, "each job ran once");
    let check = stack.ok(&["ledger", "check"]);
    assert!(check.contains("ledger ok"), "{check}");
    record
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_together_hold_max_in_flight() {
    let stack = pg_stack(
        "fleet-in-flight",
        "max_in_flight = 4\n",
        &["--hold", "500:INSERT"],
    )
    .await;
    let record = three_workers_run(&stack, 24).await;
    // Never more than 4 statements between creation and end.
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for r in &record {
        edges.push((r["created_ms"].as_i64().unwrap(), 1));
        edges.push((r["ended_ms"].as_i64().unwrap(), -1));
    }
    edges.sort();
    let (mut now, mut max) = (0, 0);
    for (_, d) in &edges {
        now += d;
        max = max.max(now);
    }
    eprintln!("fleet: at most {max} statements in flight (max_in_flight = 4)");
    assert!(
        max <= 4,
        "{max} statements in flight at once (max_in_flight = 4)"
    );
    assert!(
        max >= 3,
        "the limit was never approached ({max}): the test would not bite"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_together_hold_the_execute_rate() {
    // 0.2 x AWS's 30/s: 6 ExecuteStatement a second for the fleet (2 each).
    let stack = pg_stack("fleet-rate", "api_rate_scale = 0.2\n", &[]).await;
    let record = three_workers_run(&stack, 36).await;
    // 36 submissions at 6/s for the fleet (burst 6) take at least 5 s;
    // three workers at 6/s each would take under 2.
    let mut created: Vec<i64> = record
        .iter()
        .map(|r| r["created_ms"].as_i64().unwrap())
        .collect();
    created.sort();
    let span_ms = created[created.len() - 1] - created[0];
    let per_sec = (created.len() as f64 - 1.0) / (span_ms as f64 / 1000.0);
    eprintln!("fleet ExecuteStatement rate: {per_sec:.1}/s over {span_ms} ms (limit 6/s)");
    assert!(
        span_ms >= 4_500,
        "36 submissions in {span_ms} ms: faster than the fleet's 6/s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_ledger_moves_to_postgres_with_its_history() {
    let stack = Stack::start("migrate");
    let a = stack.submit(&["--name", "a", "--sql", "SELECT 1 AS one"]);
    let b = stack.submit(&[
        "--name",
        "b",
        "--sql",
        "SELECT 2 AS two",
        "--after",
        &a.to_string(),
    ]);
    stack.worker_until_idle(WAIT);
    let pg = common::pg::postgres().await;
    let out = stack.ok(&["ledger", "migrate", "--to", &pg.url]);
    assert!(out.contains("ledger check ok"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("jobs ")
            && l.contains(" 2 rows copied,")
            && l.ends_with(" 2 in the target")),
        "{out}"
    );
    // A second migration into the same (now full) database is refused.
    let again = stack.run(&["ledger", "migrate", "--to", &pg.url]);
    assert!(!again.status.success());
    assert!(
        common::stderr(&again).contains("is not empty"),
        "{}",
        common::stderr(&again)
    );
    // The same jobs, ids and attempts, read from PostgreSQL.
    let pg_config = stack.dir.path().join("pg.toml");
    let text = std::fs::read_to_string(&stack.config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("ledger ="))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&pg_config, format!("{text}\nledger = \"{}\"\n", pg.url)).unwrap();
    let with = |config: &std::path::Path, args: &[&str]| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.arg("--config").arg(config).args(args);
        stack.aws_env(&mut cmd);
        cmd.output().unwrap()
    };
    let show = |config: &std::path::Path, id: i64| -> Value {
        let out = with(config, &["jobs", "show", &id.to_string(), "--json"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for id in [a, b] {
        let before = show(&stack.config, id);
        let after = show(&pg_config, id);
        assert_eq!(before, after, "job {id} differs after the migration");
        assert_eq!(after["state"], "FINISHED");
    }
    // New jobs in PostgreSQL get new ids after the copied ones.
    let out = with(&pg_config, &["submit", "--sql", "SELECT 3"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let id: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(id, b + 1);
}

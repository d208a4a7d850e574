//! Chaos: 200+ jobs in pipelines of several shapes on the local stack, while
//! the emulator drops, duplicates, delays and reorders completion events,
//! throttles submissions and fails some statements, and the worker is
//! SIGKILLed at planned points of the work and restarted. At the end every
//! job must be in the state the emulator's own record says, no attempt may
//! have run twice (in the record and in the warehouse), the ledger must pass
//! `redrelay ledger check` and the queue must be empty.
//!
//! The test runs one such round per seed: five by default, one after the
//! other, each on its own stack; it fails if any seed fails, and prints each
//! seed's outcome and duration. Seeded:
//! `REDRELAY_CHAOS_SEEDS=7,11 cargo test --test chaos -- --nocapture`
//! (or `REDRELAY_CHAOS_SEED=N` for one) replays the same plan, fault
//! decisions and kill schedule. The kills are planned on the ledger's
//! progress, not on the clock: each seed makes the number of kills it says,
//! at the same points of the work, however fast the machine is (what runs
//! between two kills still varies).

mod common;

use common::{seen, tail, warehouse_query, SplitMix, Stack, StackOptions};
use redrelay::ledger::Ledger;
use redrelay::state::{JobState, ResultState, RunState};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

const DEFAULT_SEEDS: [u64; 5] = [7, 11, 23, 42, 1009];
const DEFAULT_WORKERS: usize = 1;
/// How long the work may take to reach each planned kill, and to end: a
/// deadline for a failure message, not a performance check.
const WAIT: Duration = Duration::from_secs(180);

/// One job of a planned pipeline, and what must become of it.
struct PlannedJob {
    name: String,
    sqls: Vec<String>,
    deps: Vec<String>,
    /// The `job` values it inserts into its pipeline's effects table.
    effects: Vec<String>,
    /// `retries = {...}` line, if any.
    retries: Option<String>,
    expect: JobState,
    /// Attempts it must have made.
    attempts: usize,
}

struct Planned {
    name: String,
    table: String,
    jobs: Vec<PlannedJob>,
}

impl Planned {
    fn new(kind: &str, i: usize) -> Planned {
        let table = format!("fx_{i}");
        // "doomed_" is the --fail-sql pattern: only the doomed job may hold it.
        let label = if kind == "doomed" { "failing" } else { kind };
        let name = format!("chaos_{label}_{i}");
        let root_effect = format!("{name}/root");
        Planned {
            jobs: vec![PlannedJob {
                name: "root".into(),
                sqls: vec![
                    format!("CREATE TABLE {table} (job TEXT NOT NULL)"),
                    format!("INSERT INTO {table} (job) VALUES ('{root_effect}')"),
                ],
                deps: vec![],
                effects: vec![root_effect],
                retries: None,
                expect: JobState::Finished,
                attempts: 1,
            }],
            name,
            table,
        }
    }

    /// A job inserting its own effect row.
    fn add(&mut self, job: &str, deps: &[String]) {
        let effect = format!("{}/{job}", self.name);
        self.jobs.push(PlannedJob {
            name: job.into(),
            sqls: vec![format!(
                "INSERT INTO {} (job) VALUES ('{effect}')",
                self.table
            )],
            deps: deps.to_vec(),
            effects: vec![effect],
            retries: None,
            expect: JobState::Finished,
            attempts: 1,
        });
    }

    fn last(&mut self) -> &mut PlannedJob {
        self.jobs.last_mut().unwrap()
    }

    fn expect_run(&self) -> RunState {
        if self.jobs.iter().all(|j| j.expect == JobState::Finished) {
            RunState::Finished
        } else {
            RunState::Failed
        }
    }

    fn toml(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = format!("name = {}\n", q(&self.name));
        for j in &self.jobs {
            out.push_str(&format!("\n[jobs.{}]\n", j.name));
            if j.sqls.len() == 1 {
                out.push_str(&format!("sql = {}\n", q(&j.sqls[0])));
            } else {
                let list: Vec<String> = j.sqls.iter().map(|s| q(s)).collect();
                out.push_str(&format!("sql = [{}]\n", list.join(", ")));
            }
            if !j.deps.is_empty() {
                let list: Vec<String> = j.deps.iter().map(|s| q(s)).collect();
                out.push_str(&format!("depends_on = [{}]\n", list.join(", ")));
            }
            if let Some(r) = &j.retries {
                out.push_str(&format!("retries = {r}\n"));
            }
        }
        out
    }
}

/// The pipelines: chains, diamonds, fan-out/fan-in, batches with retried
/// flaky jobs, and pipelines with jobs that fail for good (their
/// descendants SKIPPED). Sizes come from the seed.
fn plan(rng: &mut SplitMix) -> Vec<Planned> {
    let kinds = [
        "fan", "chain", "diamond", "mixed", "doomed", "fan", "chain", "diamond", "mixed", "fan",
        "chain", "mixed", "doomed", "diamond", "chain",
    ];
    let mut out = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while i < kinds.len() || total < 210 {
        let kind = kinds
            .get(i)
            .copied()
            .unwrap_or(if i % 2 == 0 { "chain" } else { "fan" });
        let mut p = Planned::new(kind, i);
        let root = vec!["root".to_string()];
        match kind {
            "chain" => {
                // Long enough to span many kills; some steps run for a while
                // (--hold on "slow_"), so kills hit statements in flight.
                let len = rng.range(20, 31);
                let mut prev = "root".to_string();
                for s in 1..=len {
                    let name = if rng.chance(0.2) {
                        format!("slow_{s}")
                    } else {
                        format!("step_{s}")
                    };
                    p.add(&name, &[prev.clone()]);
                    prev = name;
                }
            }
            "diamond" => {
                let w = rng.range(2, 5);
                let left: Vec<String> = (1..=w).map(|k| format!("left_{k}")).collect();
                for l in &left {
                    p.add(l, &root);
                }
                p.add("middle", &left);
                let right: Vec<String> = (1..=w).map(|k| format!("right_{k}")).collect();
                for r in &right {
                    p.add(r, &["middle".to_string()]);
                }
                p.add("sink", &right);
            }
            "fan" => {
                let n = rng.range(20, 31);
                let leaves: Vec<String> = (1..=n).map(|k| format!("leaf_{k}")).collect();
                for l in &leaves {
                    p.add(l, &root);
                }
                p.add("join", &leaves);
            }
            "mixed" => {
                let k = rng.range(3, 6);
                let mut flaky = Vec::new();
                for b in 1..=k {
                    // A batch: two effect rows and a result set, one transaction.
                    let name = format!("batch_{b}");
                    let e1 = format!("{}/{name}#1", p.name);
                    let e2 = format!("{}/{name}#2", p.name);
                    p.jobs.push(PlannedJob {
                        name: name.clone(),
                        sqls: vec![
                            format!("INSERT INTO {} (job) VALUES ('{e1}')", p.table),
                            format!("INSERT INTO {} (job) VALUES ('{e2}')", p.table),
                            format!("SELECT COUNT(*) AS n FROM {}", p.table),
                        ],
                        deps: root.clone(),
                        effects: vec![e1, e2],
                        retries: None,
                        expect: JobState::Finished,
                        attempts: 1,
                    });
                    // Fails once (--fail-first 1:flaky_), then succeeds.
                    let f = format!("flaky_{b}");
                    p.add(&f, &[name]);
                    let initial = [0.2, 0.3, 0.5][rng.range(0, 3) as usize];
                    p.last().retries = Some(format!(
                        "{{ max_attempts = {}, initial_secs = {initial}, jitter = 0.0 }}",
                        rng.range(2, 4)
                    ));
                    p.last().attempts = 2;
                    flaky.push(f);
                }
                p.add("final", &flaky);
            }
            "doomed" => {
                // Fails on every attempt (--fail-sql doomed_): FAILED after 2.
                p.add("doomed_1", &root);
                p.last().retries =
                    Some("{ max_attempts = 2, initial_secs = 0.2, jitter = 0.0 }".into());
                p.last().expect = JobState::Failed;
                p.last().attempts = 2;
                p.add("bad_after_1", &["doomed_1".into()]);
                p.add("bad_after_2", &["bad_after_1".into()]);
                // A real SQL error, no retry.
                p.jobs.push(PlannedJob {
                    name: "broken".into(),
                    sqls: vec![format!("INSERT INTO no_such_table_{i} (job) VALUES ('x')")],
                    deps: root.clone(),
                    effects: vec![],
                    retries: None,
                    expect: JobState::Failed,
                    attempts: 1,
                });
                p.add("brk_after", &["broken".into()]);
                // Independent branch: finishes.
                p.add("fine_1", &root);
                p.add("fine_2", &["fine_1".into()]);
                p.add("both", &["fine_2".into(), "bad_after_1".into()]);
                for j in &mut p.jobs {
                    if ["bad_after_1", "bad_after_2", "brk_after", "both"]
                        .contains(&j.name.as_str())
                    {
                        j.expect = JobState::Skipped;
                        j.attempts = 0;
                    }
                }
            }
            _ => unreachable!(),
        }
        total += p.jobs.len();
        out.push(p);
        i += 1;
    }
    out
}

fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in items {
        *m.entry(s.to_string()).or_insert(0) += 1;
    }
    m
}

/// One planned SIGKILL: once the ledger's progress reaches `at`, wait
/// `pause`, then kill worker `victim`.
struct Kill {
    at: u64,
    pause: Duration,
    victim: usize,
}

/// Attempts begun plus jobs ended, over every job of the ledger: it only
/// grows, and ends at [`planned_progress`] when every job ended as planned.
async fn progress(ledger: &Ledger) -> u64 {
    let jobs = ledger.jobs(None, None).await.expect("jobs");
    jobs.iter()
        .map(|j| j.attempt as u64 + u64::from(j.state.is_terminal()))
        .sum()
}

fn planned_progress(plans: &[Planned]) -> u64 {
    plans
        .iter()
        .flat_map(|p| &p.jobs)
        .map(|j| j.attempts as u64 + 1)
        .sum()
}

/// The kill schedule: 12 to 16 kills at points of the work. The first three
/// fall within the runs recorded first (the rest are recorded after the
/// third kill); every point is at most 80 % of the planned work, so each is
/// reached. About a third of the kills come at the same point as the one
/// before, 30-400 ms after the restart: they hit a new worker while it
/// reconciles and submits what waited for it (a kill between
/// ExecuteStatement and the ledger write makes a ClientToken replay).
fn kill_plan(rng: &mut SplitMix, early: u64, total: u64, n_workers: usize) -> Vec<Kill> {
    let n = rng.range(12, 17) as usize;
    let split = early * 6 / 10;
    let mut at: Vec<u64> = (0..n)
        .map(|k| {
            if k < 3 {
                rng.range(1, split)
            } else {
                rng.range(split, total * 8 / 10)
            }
        })
        .collect();
    at.sort_unstable();
    let mut kills: Vec<Kill> = Vec::new();
    for a in at {
        let (at, pause) = match kills.last() {
            Some(prev) if rng.chance(0.3) => (prev.at, rng.range(30, 400)),
            _ => (a, rng.range(0, 1500)),
        };
        kills.push(Kill {
            at,
            pause: Duration::from_millis(pause),
            victim: rng.range(0, n_workers as u64) as usize,
        });
    }
    kills
}

/// The seeds to run: `REDRELAY_CHAOS_SEEDS` (comma separated), or
/// `REDRELAY_CHAOS_SEED`, or the five defaults.
fn seeds() -> Vec<u64> {
    let parse = |v: &str| -> Vec<u64> {
        v.split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("not a seed: {s:?}"))
            })
            .collect()
    };
    match (
        std::env::var("REDRELAY_CHAOS_SEEDS"),
        std::env::var("REDRELAY_CHAOS_SEED"),
    ) {
        (Ok(list), _) => parse(&list),
        (_, Ok(one)) => parse(&one),
        _ => DEFAULT_SEEDS.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_kills_and_faults_lose_nothing_and_run_nothing_twice() {
    let mut outcomes = Vec::new();
    for seed in seeds() {
        let started = Instant::now();
        // Its own task: a failing seed (a panic) does not stop the others.
        let passed = tokio::spawn(chaos(seed, None)).await.is_ok();
        let secs = started.elapsed().as_secs_f64();
        let line = format!(
            "chaos seed {seed}: {} in {secs:.1} s",
            if passed { "passed" } else { "FAILED" }
        );
        println!("{line}");
        eprintln!("{line}");
        outcomes.push((seed, passed, line));
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, passed, _)| !passed)
        .map(|(_, _, line)| line.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} seeds failed (their panics are above):\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
}

/// Issue 8.9: the same chaos with three workers on one PostgreSQL ledger,
/// the leader among those killed; leadership must change, and the time
/// from the leader's death to a new leader is printed.
#[tokio::test(flavor = "multi_thread")]
async fn chaos_with_three_workers_on_postgres() {
    let seed = std::env::var("REDRELAY_CHAOS_PG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let pg = common::pg::postgres().await;
    chaos(seed, Some(pg.url)).await;
}

async fn chaos(seed: u64, ledger_url: Option<String>) {
    let on_postgres = ledger_url.is_some();
    // Workers sharing the queue and the ledger at once (the design allows
    // several); each is killed and restarted on its own.
    let n_workers = if on_postgres {
        3
    } else {
        std::env::var("REDRELAY_CHAOS_WORKERS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(DEFAULT_WORKERS)
            .max(1)
    };
    println!("chaos seed: {seed} (replay with REDRELAY_CHAOS_SEEDS={seed}), {n_workers} workers");
    eprintln!("chaos seed: {seed} (replay with REDRELAY_CHAOS_SEEDS={seed}), {n_workers} workers");
    let started = Instant::now();
    let mut rng = SplitMix(seed);

    let mut stack = Stack::start_with(
        "chaos",
        StackOptions {
            config_extra: "reconcile_after_secs = 2\nvisibility_timeout_secs = 5\n\
                           max_in_flight = 20\nwait_time_secs = 2\nmax_receive_count = 10\n\
                           api_rate_scale = 0.2\n"
                .into(),
            emulator_args: [
                "--seed",
                &seed.to_string(),
                "--event-drop-prob",
                "0.15",
                "--event-duplicate-prob",
                "0.2",
                "--event-delay-prob",
                "0.2",
                "--event-delay-ms",
                "1500",
                "--event-reorder-prob",
                "0.2",
                "--throttle-prob",
                "0.1",
                "--fail-first",
                "1:flaky_",
                "--fail-sql",
                "doomed_",
                "--hold",
                "1200:slow_",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ledger_url,
            ..Default::default()
        },
    );

    // Record the runs through the CLI, as an operator would: two thirds
    // now, the rest while the worker is being killed.
    let plans = plan(&mut rng);
    let total_jobs: usize = plans.iter().map(|p| p.jobs.len()).sum();
    assert!(total_jobs >= 200, "only {total_jobs} jobs planned");
    let early = plans.len() * 2 / 3;
    let kills = kill_plan(
        &mut rng,
        planned_progress(&plans[..early]),
        planned_progress(&plans),
        n_workers,
    );
    let mut runs: Vec<(String, &Planned)> = Vec::new();
    let start_run = |stack: &Stack, p: &Planned| {
        let file = stack.write_file(&format!("{}.toml", p.name), &p.toml());
        stack.ok(&["pipeline", "run", &file]).trim().to_string()
    };
    for p in &plans[..early] {
        runs.push((start_run(&stack, p), p));
    }
    eprintln!(
        "chaos: {} pipelines, {total_jobs} jobs; {early} runs recorded before the first worker; {} kills planned",
        plans.len(),
        kills.len()
    );

    // Kill a worker (SIGKILL) at each planned point of the work and start
    // another; then let the last workers end every run.
    let ledger = stack.ledger().await;
    let mut workers: Vec<common::Proc> = (0..n_workers).map(|_| stack.spawn_worker(&[])).collect();
    let mut killed_at = Vec::new();
    let mut failovers: Vec<f64> = Vec::new();
    for (k, kill) in kills.iter().enumerate() {
        let what = format!("progress {} (kill {} of {})", kill.at, k + 1, kills.len());
        let reached = stack
            .wait_for_async(WAIT, &what, || {
                for w in &mut workers {
                    if let Some(status) = w.child.try_wait().unwrap() {
                        panic!(
                            "a worker exited by itself ({status}):\n{}",
                            tail(&stack.log("worker.log"), 60)
                        );
                    }
                }
                async {
                    let now = progress(&ledger).await;
                    seen(now >= kill.at, now).map_err(|now| format!("progress {now}"))
                }
            })
            .await;
        // The schedule's own delay before the kill (it waits for nothing).
        tokio::time::sleep(kill.pause).await;
        // On PostgreSQL every other kill takes the leader.
        let mut victim = kill.victim;
        let mut leader_killed = None;
        if on_postgres && k % 2 == 0 {
            if let Some(id) = stack.leader_id() {
                if let Some(i) = workers
                    .iter()
                    .position(|w| id.contains(&format!("-{}-", w.pid())))
                {
                    victim = i;
                    leader_killed = Some(id);
                }
            }
        }
        let w = &mut workers[victim];
        if let Some(status) = w.child.try_wait().unwrap() {
            panic!("kill {}: the worker had already exited ({status})", k + 1);
        }
        w.child.kill().expect("SIGKILL a worker");
        let status = w.child.wait().expect("wait for the killed worker");
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {}: the worker ended {status}, not by SIGKILL",
            k + 1
        );
        killed_at.push(reached);
        if let Some(old) = leader_killed {
            let dead = Instant::now();
            stack.wait_for(WAIT, "a new leader", || {
                let now = stack.leader_id();
                seen(now.as_ref().is_some_and(|l| *l != old), now)
            });
            failovers.push(dead.elapsed().as_secs_f64());
        }
        if k + 1 == 3 {
            for p in &plans[early..] {
                runs.push((start_run(&stack, p), p));
            }
        }
        *w = stack.spawn_worker(&[]);
    }
    stack.wait_runs_ended(WAIT);
    for w in &mut workers {
        w.kill();
    }
    let chaos_secs = started.elapsed().as_secs_f64();

    // One last worker --until-idle (results still to fetch, ...).
    stack.worker_until_idle(Duration::from_secs(60));
    let applied_before_drain = stack
        .inbox()
        .iter()
        .filter(|e| e["disposition"] == "applied")
        .count();

    // Drain. Stop the emulator first: on SIGTERM it sends what it still
    // holds back (delayed and reordered events) before it exits, so every
    // event it will ever send is on the queue; nothing needs the Data API
    // any more. Messages a killed worker had received come back after the
    // visibility timeout. A worker consumes them all (the queue empties,
    // in flight included); none of them may change anything.
    let emulator = stack.emulator.as_mut().expect("the emulator");
    emulator.signal("TERM");
    let status = emulator.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the emulator did not stop cleanly on SIGTERM: {status:?}\n{}",
        tail(&stack.log("emulator.log"), 20)
    );
    let mut drain = stack.spawn_worker(&[]);
    stack.wait_queue_empty(Duration::from_secs(60));
    drain.signal("TERM");
    let status = drain.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the drain worker did not stop cleanly on SIGTERM: {status:?}"
    );

    // ----- the figures ------------------------------------------------------
    let record = stack.record_all();
    fn of_kind<'a>(record: &'a [Value], k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        record.iter().filter(move |l| l["kind"] == k)
    }
    let of_kind = |k: &'static str| of_kind(&record, k);
    let statements: Vec<&Value> = of_kind("statement").collect();
    let replays = of_kind("replay").count();
    let event_actions = count_by(of_kind("event").map(|l| l["action"].as_str().unwrap_or("?")));
    let rejected = count_by(of_kind("rejected").map(|l| l["error"].as_str().unwrap_or("?")));
    let worker_log = stack.log("worker.log");
    let reconciled = worker_log.matches("found by DescribeStatement").count();
    let throttled_rounds = worker_log.matches("Submission throttled").count();
    let starts = worker_log.matches("Worker started.").count();
    let inbox = stack.inbox();
    let dispositions = count_by(
        inbox
            .iter()
            .map(|e| e["disposition"].as_str().unwrap_or("?")),
    );
    let dlq = stack.dlq_depth();
    let ev = |a: &str| event_actions.get(a).copied().unwrap_or(0);
    let elapsed = started.elapsed().as_secs_f64();
    let figures = format!(
        "==================== chaos figures ====================\n\
         seed                          {seed}\n\
         pipelines / jobs              {} / {total_jobs}\n\
         worker SIGKILLs               {} at progress {killed_at:?} of {} ({n_workers} at a time; worker starts: {starts})\n\
         statements run (record)       {}\n\
         ClientToken replays           {replays}\n\
         events sent                   {} (+{} late)\n\
         events dropped                {}\n\
         events duplicated             {}\n\
         events delayed                {}\n\
         events reordered              {}\n\
         events send_failed            {}\n\
         Execute calls refused         {} ThrottlingException, {} other (SDK retries absorb most; {} throttled rounds in the worker)\n\
         jobs reconciled               {reconciled} (\"found by DescribeStatement\")\n\
         inbox dispositions            {}\n\
         dead-letter queue depth       {dlq}\n\
         chaos phase / total elapsed   {chaos_secs:.1} s / {elapsed:.1} s\n\
         =======================================================",
        plans.len(),
        kills.len(),
        planned_progress(&plans),
        statements.len(),
        ev("sent"),
        ev("sent_late"),
        ev("dropped"),
        ev("duplicate_sent"),
        ev("delayed"),
        ev("reordered"),
        ev("send_failed"),
        rejected.get("ThrottlingException").copied().unwrap_or(0),
        rejected
            .iter()
            .filter(|(k, _)| k.as_str() != "ThrottlingException")
            .map(|(_, v)| v)
            .sum::<usize>(),
        throttled_rounds,
        dispositions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    println!("{figures}");
    if on_postgres {
        failovers.sort_by(f64::total_cmp);
        let line = format!(
            "PostgreSQL, {n_workers} workers: {} leader kills, new leader after p50 {:.1} s, max {:.1} s",
            failovers.len(),
            failovers.get(failovers.len() / 2).copied().unwrap_or(0.0),
            failovers.last().copied().unwrap_or(0.0)
        );
        println!("{line}");
        eprintln!("{line}");
        assert!(!failovers.is_empty(), "leadership never changed");
    }

    // ----- the checks -------------------------------------------------------
    assert_eq!(killed_at.len(), kills.len(), "every planned kill was made");
    assert!(
        ev("dropped") > 0 && ev("duplicate_sent") > 0 && ev("delayed") > 0 && ev("reordered") > 0,
        "every event fault should have been injected: {event_actions:?}"
    );
    assert!(reconciled > 0, "no job was found by DescribeStatement");

    // No attempt ran twice: one statement line per ClientToken.
    let mut by_token: HashMap<String, &Value> = HashMap::new();
    for s in &statements {
        let token = s["client_token"]
            .as_str()
            .expect("every statement has a token");
        if let Some(first) = by_token.insert(token.to_string(), s) {
            panic!("ClientToken {token} ran twice:\n{first:#}\n{s:#}");
        }
    }

    // Every job: its terminal state, its attempts, and what the emulator ran.
    let mut seen_tokens = HashSet::new();
    let mut problems = Vec::new();
    for (run, p) in &runs {
        let jobs = ledger.jobs(None, Some(run)).await.unwrap();
        assert_eq!(jobs.len(), p.jobs.len(), "run {run}");
        let planned: HashMap<&str, &PlannedJob> =
            p.jobs.iter().map(|j| (j.name.as_str(), j)).collect();
        for job in &jobs {
            let pj = planned[job.name.as_str()];
            let who = format!("{}/{} (job {})", p.name, job.name, job.id);
            if job.state != pj.expect {
                problems.push(format!("{who} is {}, expected {}", job.state, pj.expect));
                continue;
            }
            let attempts = ledger.attempts(job.id).await.unwrap();
            if attempts.len() != pj.attempts || job.attempt != pj.attempts as i64 {
                problems.push(format!(
                    "{who}: {} attempts (job.attempt {}), expected {}: {attempts:?}",
                    attempts.len(),
                    job.attempt,
                    pj.attempts
                ));
            }
            for a in &attempts {
                seen_tokens.insert(a.client_token.clone());
                let Some(line) = by_token.get(&a.client_token) else {
                    problems.push(format!(
                        "{who}: attempt {} ({}) has no statement in the emulator's record",
                        a.attempt, a.client_token
                    ));
                    continue;
                };
                if line["id"].as_str() != a.statement_id.as_deref() {
                    problems.push(format!(
                        "{who}: attempt {} has statement {:?}, the record says {}",
                        a.attempt, a.statement_id, line["id"]
                    ));
                }
                if line["state"].as_str() != Some(a.state.as_str()) {
                    problems.push(format!(
                        "{who}: attempt {} is {} in the ledger, {} in the emulator",
                        a.attempt, a.state, line["state"]
                    ));
                }
            }
            match job.state {
                JobState::Finished | JobState::Failed => {
                    let current = attempts.last().map(|a| a.statement_id.clone());
                    if current != Some(job.statement_id.clone()) {
                        problems.push(format!(
                            "{who}: job statement {:?} is not its last attempt's",
                            job.statement_id
                        ));
                    }
                    let sid = job.statement_id.as_deref().unwrap_or("-");
                    let line = statements.iter().find(|s| s["id"] == sid);
                    let want = job.state.as_str();
                    if line.map(|l| l["state"].as_str()) != Some(Some(want)) {
                        problems.push(format!(
                            "{who} is {want}; its statement {sid} in the record: {line:?}"
                        ));
                    }
                }
                JobState::Skipped => {
                    if let Some(s) = statements.iter().find(|s| {
                        s["client_token"]
                            .as_str()
                            .is_some_and(|t| t.starts_with(&job.uid))
                    }) {
                        problems.push(format!("{who} is SKIPPED but ran: {s}"));
                    }
                }
                other => problems.push(format!("{who} ended {other}")),
            }
            if job.state == JobState::Finished
                && !matches!(
                    job.result_state,
                    Some(ResultState::Fetched | ResultState::None)
                )
            {
                problems.push(format!(
                    "{who}: results {:?} ({:?})",
                    job.result_state, job.result_error
                ));
            }
        }
        let shown = ledger.run(run).await.unwrap().unwrap();
        if shown.state != p.expect_run() {
            problems.push(format!(
                "run {run} ({}) is {}, expected {}",
                p.name,
                shown.state,
                p.expect_run()
            ));
        }

        // The warehouse: each finished job's effect rows exactly once,
        // nothing from jobs that did not finish.
        let rows = warehouse_query(
            &stack.warehouse_path(),
            &format!(
                "SELECT job, COUNT(*) FROM {} GROUP BY job ORDER BY job",
                p.table
            ),
        );
        let found: BTreeMap<String, i64> = rows
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap()))
            .collect();
        let expected: BTreeMap<String, i64> = p
            .jobs
            .iter()
            .filter(|j| j.expect == JobState::Finished)
            .flat_map(|j| j.effects.iter().map(|e| (e.clone(), 1)))
            .collect();
        if found != expected {
            let extra: Vec<_> = found
                .iter()
                .filter(|(k, v)| expected.get(*k) != Some(*v))
                .collect();
            let missing: Vec<_> = expected
                .keys()
                .filter(|k| !found.contains_key(*k))
                .collect();
            problems.push(format!(
                "warehouse {}: wrong or repeated effects {extra:?}, missing {missing:?}",
                p.table
            ));
        }
    }
    // Nothing ran that is not an attempt of the ledger.
    for (token, line) in &by_token {
        if !seen_tokens.contains(token) {
            problems.push(format!(
                "the emulator ran a statement no attempt knows: {line}"
            ));
        }
    }
    // The inbox: at most one applied event per statement, none left deferred,
    // and the drain changed nothing.
    let mut applied: HashMap<String, usize> = HashMap::new();
    for e in &inbox {
        if e["disposition"] == "applied" {
            *applied
                .entry(e["statement_id"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        if e["disposition"] == "deferred" {
            problems.push(format!("an event is still deferred: {e}"));
        }
    }
    for (sid, n) in &applied {
        if *n > 1 {
            problems.push(format!("statement {sid} has {n} applied events"));
        }
    }
    let applied_after = inbox
        .iter()
        .filter(|e| e["disposition"] == "applied")
        .count();
    if applied_after != applied_before_drain {
        problems.push(format!(
            "the drain applied {} more events after every job had ended",
            applied_after - applied_before_drain
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems (seed {seed}):\n{}\nworker log tail:\n{}",
        problems.len(),
        problems.join("\n"),
        tail(&worker_log, 40)
    );

    let check = stack.run(&["ledger", "check"]);
    assert!(
        check.status.success(),
        "ledger check failed ({}): {}{}",
        check.status,
        String::from_utf8_lossy(&check.stdout),
        common::stderr(&check)
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains(&format!("ledger ok: {total_jobs} jobs checked")),
        "{out}"
    );
    // Every job ended as planned, so the work made exactly the progress
    // the kill schedule was planned on.
    assert_eq!(progress(&ledger).await, planned_progress(&plans));
}

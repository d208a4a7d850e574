//! The torture test (issue 17): invariants, not features, in the manner of
//! Jepsen and FoundationDB's simulation. A seeded generator drives a random
//! mix of what users do through every entry point (the CLI and the JSON
//! API: submit, pipeline runs, cancel and retry of jobs, cancel of runs,
//! schedules added, triggered, paused and resumed; cancels timed to race
//! submissions) against three workers on one PostgreSQL ledger, with
//! faults: SIGKILL of workers and of the leader, a PostgreSQL restart,
//! completion events dropped, duplicated, delayed and reordered, throttled
//! submissions, latency spikes. An event-stream client follows the API
//! throughout (resuming with Last-Event-ID when its worker dies). Then the
//! ledger is copied with `ledger migrate`.
//!
//! The checker asserts, from the emulator's record, the ledger, the queue
//! of redrelay's own events and the stream client:
//! 1. no ClientToken and no statement ran twice, and nothing ran that is
//!    not an attempt of the ledger;
//! 2. no attempt began after its job's cancel was acknowledged (unless a
//!    retry was asked for after it): what runs after a cancel is only a
//!    statement that was already being submitted;
//! 3. every job and run ended, in one terminal state (never from one end
//!    to another without a retry between);
//! 4. every end published exactly one own event (by its event id);
//! 5. the stream showed every change once, in the ledger's order;
//! 6. each due fire time of a schedule fired once, each firing has one run;
//! 7. the queue and its dead-letter queue are empty;
//! 8. `ledger check` passes on the ledger and on its copy, and the copy has
//!    the same rows (migrate compares every table's count and checksum).
//!
//! Short by default (part of `make test`); `make torture` runs it long:
//! `REDRELAY_TORTURE_JOBS=1000 REDRELAY_TORTURE_SEED=N cargo test --test
//! torture -- --nocapture`. The seed replays the same plan of operations,
//! faults and emulator decisions (what runs between them still varies).

mod common;

use common::http::{call, Sse};
use common::{seen, tail, SplitMix, Stack, StackOptions};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "torture-operator-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(240);
const WORKERS: usize = 3;
const SOURCE: &str = "redrelay.torture";
/// Every minute, every missed time caught up: never paused, each due time
/// must fire exactly once.
const STEADY: &str = "steady";
/// Every minute, paused and resumed and triggered by the generator.
const FICKLE: &str = "fickle";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={s:?} is not a number"))
        })
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the generator did, for the checker.
#[derive(Default)]
struct Journal {
    /// (job, when its cancel was acknowledged).
    cancelled_jobs: Vec<(i64, i64)>,
    /// (run, when its cancel was acknowledged).
    cancelled_runs: Vec<(String, i64)>,
    /// (job, when its retry was asked for).
    retries: Vec<(i64, i64)>,
    /// Operations by entry point and kind, and what they answered.
    ops: BTreeMap<String, usize>,
    jobs: Vec<i64>,
    runs: Vec<String>,
}

impl Journal {
    fn count(&mut self, what: &str) {
        *self.ops.entry(what.to_string()).or_default() += 1;
    }
}

/// The three workers and their listeners.
struct Fleet {
    procs: Vec<common::Proc>,
    /// Each worker's listener address (same index as `procs`).
    addrs: Arc<Mutex<Vec<String>>>,
}

impl Fleet {
    fn spawn(stack: &Stack, addrs: &Arc<Mutex<Vec<String>>>) -> Fleet {
        let mut fleet = Fleet {
            procs: Vec::new(),
            addrs: addrs.clone(),
        };
        for _ in 0..WORKERS {
            let p = stack.spawn_worker(&[]);
            let addr = listener_of(stack, p.pid());
            fleet.procs.push(p);
            fleet.addrs.lock().unwrap().push(addr);
        }
        fleet
    }

    fn check_alive(&mut self, stack: &Stack) {
        for w in &mut self.procs {
            if let Some(status) = w.child.try_wait().unwrap() {
                panic!(
                    "a worker exited by itself ({status}):\n{}",
                    tail(&stack.log("worker.log"), 60)
                );
            }
        }
    }

    /// SIGKILLs worker `i` and starts another in its place.
    fn kill(&mut self, stack: &Stack, i: usize) {
        let w = &mut self.procs[i];
        w.child.kill().expect("SIGKILL a worker");
        let status = w.child.wait().expect("wait for the killed worker");
        assert_eq!(status.signal(), Some(9), "the worker ended {status}");
        self.addrs.lock().unwrap()[i] = String::new();
        let p = stack.spawn_worker(&[]);
        let addr = listener_of(stack, p.pid());
        self.procs[i] = p;
        self.addrs.lock().unwrap()[i] = addr;
    }

    fn any_addr(&self, rng: &mut SplitMix) -> String {
        let addrs = self.addrs.lock().unwrap();
        let live: Vec<&String> = addrs.iter().filter(|a| !a.is_empty()).collect();
        (*rng.pick(&live)).clone()
    }

    fn stop(&mut self) {
        for w in &mut self.procs {
            w.signal("TERM");
        }
        for w in &mut self.procs {
            let status = w.wait_exit(Duration::from_secs(30));
            assert!(
                status.is_some_and(|s| s.success()),
                "a worker did not stop cleanly on SIGTERM: {status:?}"
            );
        }
        self.addrs.lock().unwrap().clear();
    }
}

/// The listener of the worker with this PID, once it is registered.
fn listener_of(stack: &Stack, pid: u32) -> String {
    stack.wait_for(WAIT, &format!("worker {pid}'s listener"), || {
        let out = stack.run(&["workers", "list", "--json"]);
        if !out.status.success() {
            return Err(common::stderr(&out));
        }
        let ws: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        ws.as_array()
            .into_iter()
            .flatten()
            .find(|w| {
                w["id"]
                    .as_str()
                    .is_some_and(|id| id.contains(&format!("-{pid}-")))
            })
            .and_then(|w| w["listen"].as_str().map(str::to_string))
            .ok_or_else(|| format!("not in {ws}"))
    })
}

/// The API client of the generator: an answer, or why there was none.
fn api(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let r = call(addr, method, path, Some(TOKEN), text.as_deref());
    let v = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
    (r.status, v)
}

/// The stream client: follows `/api/v1/events` from the first change,
/// moving to another worker (resuming after the last id) when its own
/// dies. Returns every (seq, event) it was sent.
fn follow_stream(addrs: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) -> Vec<(i64, String)> {
    let mut got: Vec<(i64, String)> = Vec::new();
    let mut turn = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let addr = {
            let addrs = addrs.lock().unwrap();
            let live: Vec<String> = addrs.iter().filter(|a| !a.is_empty()).cloned().collect();
            turn += 1;
            live.get(turn % live.len().max(1)).cloned()
        };
        let Some(addr) = addr else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let last = got.last().map(|(s, _)| *s).unwrap_or(0);
        let last_id = last.to_string();
        let opened = std::panic::catch_unwind(|| {
            Sse::open(
                &addr,
                "/api/v1/events?after=0",
                Some(TOKEN),
                &[("Last-Event-ID", last_id.as_str())],
            )
        });
        let Ok(mut sse) = opened else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        if sse.status != 200 {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            let Some((event, id, _data)) = sse.next(Duration::from_secs(2)) else {
                // Closed (its worker died) or quiet: resume, maybe elsewhere.
                break;
            };
            if event == "job" || event == "run" {
                let seq = id.parse().expect("a numeric event id");
                got.push((seq, event));
            }
        }
    }
    got
}

fn pipeline_toml(name: &str, shape: u64, rng: &mut SplitMix, schedule: Option<&str>) -> String {
    let mut t = format!("name = \"{name}\"\n");
    if let Some(s) = schedule {
        t.push_str(s);
    }
    let tag = |job: &str| format!("{name}/{job}");
    let ins = |job: &str, kind: &str| {
        format!(
            "INSERT INTO torture (tag, kind) VALUES ('{}', '{kind}')",
            tag(job)
        )
    };
    let kind_of = |rng: &mut SplitMix| match rng.range(0, 10) {
        0 => "doomed_",
        1 | 2 => "slow_",
        3 => "flaky_",
        _ => "plain",
    };
    match shape {
        // A chain of 3.
        0 => {
            for (k, dep) in [("a", None), ("b", Some("a")), ("c", Some("b"))] {
                let kind = kind_of(rng);
                t.push_str(&format!("\n[jobs.{k}]\nsql = \"{}\"\n", ins(k, kind)));
                if kind == "flaky_" {
                    t.push_str("retries = { max_attempts = 2, initial_secs = 1 }\n");
                }
                if let Some(d) = dep {
                    t.push_str(&format!("depends_on = [\"{d}\"]\n"));
                }
            }
        }
        // A fan of 4 into a join.
        _ => {
            let leaves: Vec<String> = (1..=4).map(|k| format!("leaf{k}")).collect();
            for l in &leaves {
                let kind = kind_of(rng);
                t.push_str(&format!("\n[jobs.{l}]\nsql = \"{}\"\n", ins(l, kind)));
                if kind == "flaky_" {
                    t.push_str("retries = { max_attempts = 2, initial_secs = 1 }\n");
                }
            }
            let list: Vec<String> = leaves.iter().map(|l| format!("\"{l}\"")).collect();
            t.push_str(&format!(
                "\n[jobs.join]\nsql = \"{}\"\ndepends_on = [{}]\n",
                ins("join", "plain"),
                list.join(", ")
            ));
        }
    }
    t
}

fn schedule_toml(name: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\n[schedule]\ncron = \"* * * * *\"\ncatch_up = \"all\"\noverlap = \"allow\"\n{extra}\n\
         [jobs.tick]\nsql = \"INSERT INTO torture (tag, kind) VALUES (:t, 'schedule')\"\n\
         params = {{ t = {{ param = \"scheduled_time\" }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn torture_every_entry_point_under_faults_keeps_every_promise() {
    let seed = env_u64("REDRELAY_TORTURE_SEED", 17);
    let target_jobs = env_u64("REDRELAY_TORTURE_JOBS", 150) as usize;
    let line = format!(
        "torture seed {seed}, {target_jobs} jobs or more (replay: REDRELAY_TORTURE_SEED={seed} REDRELAY_TORTURE_JOBS={target_jobs})"
    );
    println!("{line}");
    eprintln!("{line}");
    let started = Instant::now();
    let mut rng = SplitMix(seed);

    let pg = common::pg::private();
    let source_url = pg.database("rr_torture").await;
    let mut stack = Stack::start_with(
        "torture",
        StackOptions {
            config_extra: format!(
                "api_token = \"{TOKEN}\"\npublish_events = true\npublish_source = \"{SOURCE}\"\n\
                 reconcile_after_secs = 2\nvisibility_timeout_secs = 5\nmax_in_flight = 20\n\
                 wait_time_secs = 2\nmax_receive_count = 10\napi_rate_scale = 0.2\n"
            ),
            emulator_args: [
                "--seed",
                &seed.to_string(),
                "--event-drop-prob",
                "0.1",
                "--event-duplicate-prob",
                "0.15",
                "--event-delay-prob",
                "0.15",
                "--event-delay-ms",
                "1500",
                "--event-reorder-prob",
                "0.15",
                "--throttle-prob",
                "0.05",
                "--api-latency-ms",
                "ExecuteStatement=150",
                "--api-latency-jitter-ms",
                "400",
                "--fail-first",
                "1:flaky_",
                "--fail-sql",
                "doomed_",
                "--hold",
                "1500:slow_",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ledger_url: Some(source_url.clone()),
            ..Default::default()
        },
    );
    let own_queue = stack.own_events_queue("torture-own", "torture-own", SOURCE);
    let admin = sqlx::PgPool::connect(&source_url).await.expect("ledger");

    // The table every job writes to, then the fleet and the stream client.
    let create = stack.submit(&["--sql", "CREATE TABLE torture (tag TEXT, kind TEXT)"]);
    let addrs = Arc::new(Mutex::new(Vec::new()));
    let mut fleet = Fleet::spawn(&stack, &addrs);
    stack.wait_state(create, "FINISHED", WAIT);
    let stop_stream = Arc::new(AtomicBool::new(false));
    let stream = {
        let (a, s) = (addrs.clone(), stop_stream.clone());
        std::thread::spawn(move || follow_stream(a, s))
    };
    for (name, extra) in [(STEADY, ""), (FICKLE, "")] {
        let file = stack.write_file(&format!("{name}.toml"), &schedule_toml(name, extra));
        stack.ok(&["schedules", "add", &file]);
    }

    // ----- the generator ----------------------------------------------------
    let mut j = Journal::default();
    let mut kills = 0usize;
    let mut leader_kills = 0usize;
    let mut pg_restarts = 0usize;
    let mut op = 0usize;
    let mut n_jobs = 1usize;
    let pg_restart_at = target_jobs / 2;
    while n_jobs < target_jobs {
        op += 1;
        fleet.check_alive(&stack);
        let via_api = rng.chance(0.5);
        let entry = if via_api { "api" } else { "cli" };
        let addr = fleet.any_addr(&mut rng);
        match rng.range(0, 100) {
            // A job, perhaps cancelled while its submission is in flight.
            0..=34 => {
                let kind = *rng.pick(&["plain", "plain", "slow_", "flaky_", "doomed_"]);
                let sql = format!("INSERT INTO torture (tag, kind) VALUES ('job-{op}', '{kind}')");
                let attempts = if kind == "flaky_" { "2" } else { "1" };
                let id = if via_api {
                    let body = json!({"sql": sql, "name": format!("t{op}"), "max_attempts": attempts.parse::<i64>().unwrap()});
                    match api(&addr, "POST", "/api/v1/jobs", Some(&body)) {
                        (201, v) => v["id"].as_i64(),
                        (s, v) => {
                            j.count(&format!("api submit refused {s}"));
                            eprintln!("torture: api submit answered {s}: {v}");
                            None
                        }
                    }
                } else {
                    let out = stack.run(&[
                        "submit",
                        "--sql",
                        &sql,
                        "--name",
                        &format!("t{op}"),
                        "--max-attempts",
                        attempts,
                    ]);
                    if out.status.success() {
                        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
                    } else {
                        j.count("cli submit refused");
                        None
                    }
                };
                j.count(&format!("{entry} submit"));
                let Some(id) = id else { continue };
                j.jobs.push(id);
                n_jobs += 1;
                if rng.chance(0.25) {
                    std::thread::sleep(Duration::from_millis(rng.range(0, 400)));
                    cancel_job(&stack, &addr, &mut j, &mut rng, id);
                }
            }
            // A pipeline run, perhaps cancelled at once.
            35..=59 => {
                let name = format!("p{op}");
                let shape = rng.range(0, 2);
                let toml = pipeline_toml(&name, shape, &mut rng, None);
                let run = if via_api {
                    match api(
                        &addr,
                        "POST",
                        "/api/v1/runs",
                        Some(&json!({"pipeline": toml})),
                    ) {
                        (201, v) => v["run"]["id"].as_str().map(str::to_string),
                        (s, v) => {
                            j.count(&format!("api run refused {s}"));
                            eprintln!("torture: api run answered {s}: {v}");
                            None
                        }
                    }
                } else {
                    let file = stack.write_file(&format!("{name}.toml"), &toml);
                    let out = stack.run(&["pipeline", "run", &file]);
                    if out.status.success() {
                        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
                    } else {
                        j.count("cli run refused");
                        None
                    }
                };
                j.count(&format!("{entry} pipeline run"));
                let Some(run) = run else { continue };
                n_jobs += if shape == 0 { 3 } else { 5 };
                j.runs.push(run.clone());
                if rng.chance(0.15) {
                    std::thread::sleep(Duration::from_millis(rng.range(0, 600)));
                    cancel_run(&stack, &addr, &mut j, &mut rng, &run);
                }
            }
            // Cancel a job or a run recorded earlier.
            60..=69 => {
                if rng.chance(0.5) && !j.jobs.is_empty() {
                    let id = *rng.pick(&j.jobs);
                    cancel_job(&stack, &addr, &mut j, &mut rng, id);
                } else if !j.runs.is_empty() {
                    let run = rng.pick(&j.runs).clone();
                    cancel_run(&stack, &addr, &mut j, &mut rng, &run);
                }
            }
            // Retry a job that ended without finishing.
            70..=84 => {
                let ended: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE state IN ('FAILED', 'CANCELLED', 'SKIPPED', 'ABORTED') ORDER BY id",
                )
                .fetch_all(&admin)
                .await
                .unwrap_or_default();
                if ended.is_empty() {
                    continue;
                }
                let id = *rng.pick(&ended);
                let asked = now_ms();
                let ok = if via_api {
                    api(
                        &addr,
                        "POST",
                        &format!("/api/v1/jobs/{id}/retry"),
                        Some(&json!({})),
                    )
                    .0 == 200
                } else {
                    stack
                        .run(&["jobs", "retry", &id.to_string()])
                        .status
                        .success()
                };
                j.retries.push((id, asked));
                j.count(&format!(
                    "{entry} job retry{}",
                    if ok { "" } else { " refused" }
                ));
            }
            // The schedules.
            _ => {
                let what = *rng.pick(&["trigger", "trigger", "pause", "resume"]);
                let ok = if via_api {
                    let path = format!("/api/v1/schedules/{FICKLE}/{what}");
                    api(&addr, "POST", &path, Some(&json!({}))).0 < 300
                } else {
                    stack.run(&["schedules", what, FICKLE]).status.success()
                };
                j.count(&format!(
                    "{entry} schedule {what}{}",
                    if ok { "" } else { " refused" }
                ));
            }
        }
        // The faults, on the generator's progress: a kill every 25 jobs or
        // so (every other one the leader), one PostgreSQL restart.
        if n_jobs / 25 > kills {
            kills += 1;
            let mut victim = rng.range(0, WORKERS as u64) as usize;
            if kills % 2 == 1 {
                if let Some(id) = stack.leader_id() {
                    if let Some(i) = fleet
                        .procs
                        .iter()
                        .position(|w| id.contains(&format!("-{}-", w.pid())))
                    {
                        victim = i;
                        leader_kills += 1;
                    }
                }
            }
            fleet.kill(&stack, victim);
        }
        if pg_restarts == 0 && n_jobs >= pg_restart_at {
            pg_restarts += 1;
            pg.stop().expect("stop PostgreSQL");
            std::thread::sleep(Duration::from_millis(rng.range(2000, 5000)));
            pg.start().expect("start PostgreSQL");
        }
        std::thread::sleep(Duration::from_millis(rng.range(0, 120)));
    }
    let generated_at = now_ms();
    let gen_secs = started.elapsed().as_secs_f64();
    eprintln!("torture: {op} operations, {n_jobs} jobs in {gen_secs:.1} s; waiting for the ends");

    // ----- every job and run ends -------------------------------------------
    stack
        .wait_for_async(WAIT, "every job to end with its results", || {
            fleet.check_alive(&stack);
            let admin = admin.clone();
            async move {
                let open: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM jobs WHERE state NOT IN ('FINISHED', 'FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED') \
                     OR (state = 'FINISHED' AND result_state = 'PENDING')",
                )
                .fetch_one(&admin)
                .await
                .map_err(|e| e.to_string())?;
                let runs: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE state = 'RUNNING'")
                        .fetch_one(&admin)
                        .await
                        .map_err(|e| e.to_string())?;
                seen(
                    open == 0 && runs == 0,
                    format!("{open} jobs and {runs} runs open"),
                )
                .map(drop)
            }
        })
        .await;
    // Every minute of the steady schedule up to the end of the generator
    // has fired (late times are caught up by whichever worker leads).
    let steady_since: i64 =
        sqlx::query_scalar("SELECT effective_since FROM schedules WHERE name = $1")
            .bind(STEADY)
            .fetch_one(&admin)
            .await
            .unwrap();
    let due: Vec<i64> = (steady_since / 60_000 + 1..=generated_at / 60_000)
        .map(|m| m * 60_000)
        .collect();
    stack
        .wait_for_async(
            WAIT,
            "every due time of the steady schedule to fire",
            || {
                let admin = admin.clone();
                let due = due.clone();
                async move {
                    let fired: Vec<i64> = sqlx::query_scalar(
                        "SELECT fire_time FROM schedule_fires WHERE schedule = $1 AND note IS NULL",
                    )
                    .bind(STEADY)
                    .fetch_all(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                    let missing: Vec<&i64> = due.iter().filter(|t| !fired.contains(t)).collect();
                    seen(missing.is_empty(), format!("missing {missing:?}")).map(drop)
                }
            },
        )
        .await;
    // Runs the schedules started after the generator ended end too.
    stack.wait_runs_ended(WAIT);

    // Drain: the emulator sends what it still holds on SIGTERM; the
    // workers consume everything, then stop.
    let emulator = stack.emulator.as_mut().expect("the emulator");
    emulator.signal("TERM");
    let status = emulator.wait_exit(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "emulator: {status:?}");
    stack.wait_queue_empty(WAIT);
    let unpublished = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND refused_at IS NULL",
        )
        .fetch_one(&admin)
        .await
        .unwrap()
    };
    stack
        .wait_for_async(WAIT, "every own event published", || async {
            let n = unpublished().await;
            seen(n == 0, format!("{n} unpublished")).map(drop)
        })
        .await;
    stop_stream.store(true, Ordering::SeqCst);
    // The stream is read up to the last change before it stops.
    let streamed = stream.join().expect("the stream client");
    fleet.stop();
    let elapsed = started.elapsed().as_secs_f64();

    // ----- the checker ------------------------------------------------------
    let mut problems: Vec<String> = Vec::new();
    let record = stack.record_all();
    let statements: Vec<&Value> = record.iter().filter(|l| l["kind"] == "statement").collect();
    let event_actions: BTreeMap<String, usize> = {
        let mut m = BTreeMap::new();
        for l in record.iter().filter(|l| l["kind"] == "event") {
            *m.entry(l["action"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
        m
    };

    // 1. Nothing ran twice; nothing ran that is not an attempt.
    let attempts = sqlx::query(
        "SELECT job_id, attempt, client_token, statement_id, state, started_at FROM attempts",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let mut by_token: HashMap<&str, &Value> = HashMap::new();
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for s in &statements {
        let token = s["client_token"].as_str().unwrap_or("");
        if let Some(first) = by_token.insert(token, s) {
            problems.push(format!("ClientToken {token} ran twice: {first} / {s}"));
        }
        let id = s["id"].as_str().unwrap_or("");
        if by_id.insert(id, s).is_some() {
            problems.push(format!("statement {id} is in the record twice"));
        }
    }
    let tokens: HashSet<String> = attempts
        .iter()
        .map(|a| a.get::<String, _>("client_token"))
        .collect();
    for (token, s) in &by_token {
        if !tokens.contains(*token) {
            problems.push(format!("the emulator ran what no attempt knows: {s}"));
        }
    }

    // 2. No attempt began after its job's cancel was acknowledged, unless a
    // retry (of the job, or of a job of its run) was asked for after it.
    let job_runs: HashMap<i64, Option<String>> = sqlx::query("SELECT id, run_id FROM jobs")
        .fetch_all(&admin)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("id"), r.get("run_id")))
        .collect();
    let mut cancel_acks: Vec<(i64, i64)> = j.cancelled_jobs.clone();
    for (run, at) in &j.cancelled_runs {
        for (id, r) in &job_runs {
            if r.as_deref() == Some(run.as_str()) {
                cancel_acks.push((*id, *at));
            }
        }
    }
    let group = |id: i64| -> String {
        match job_runs.get(&id).cloned().flatten() {
            Some(run) => run,
            None => format!("job {id}"),
        }
    };
    let mut raced = 0usize;
    for (job, acked) in &cancel_acks {
        let reopened = j
            .retries
            .iter()
            .filter(|(r, at)| group(*r) == group(*job) && at > acked)
            .map(|(_, at)| *at)
            .min()
            .unwrap_or(i64::MAX);
        for a in &attempts {
            let (aj, started): (i64, i64) = (a.get("job_id"), a.get("started_at"));
            if aj == *job && started > *acked && started < reopened {
                problems.push(format!(
                    "job {job}: attempt {} began at {started}, after its cancel was acknowledged at {acked}",
                    a.get::<i64, _>("attempt")
                ));
            }
            if aj == *job && started <= *acked && a.get::<String, _>("state") != "CANCELLED" {
                raced += 1;
            }
        }
    }

    // 3. Every job and run ended, once between retries.
    let changes = sqlx::query(
        "SELECT seq, kind, job_id, run_id, state FROM changes ORDER BY COALESCE(xid, 0), seq",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let job_terminal = ["FINISHED", "FAILED", "ABORTED", "CANCELLED", "SKIPPED"];
    let run_terminal = ["FINISHED", "FAILED", "CANCELLED"];
    let mut last_state: HashMap<String, String> = HashMap::new();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for c in &changes {
        let kind: String = c.get("kind");
        let state: String = c.get("state");
        let key = if kind == "job" {
            format!("job {}", c.get::<i64, _>("job_id"))
        } else {
            format!("run {}", c.get::<String, _>("run_id"))
        };
        let terminal = if kind == "job" {
            job_terminal.contains(&state.as_str())
        } else {
            run_terminal.contains(&state.as_str())
        };
        let before = last_state.get(&key).cloned();
        let was_terminal = before.as_deref().is_some_and(|b| {
            if kind == "job" {
                job_terminal.contains(&b)
            } else {
                run_terminal.contains(&b)
            }
        });
        if terminal && was_terminal && before.as_deref() != Some(state.as_str()) {
            problems.push(format!(
                "{key} went from {} to {state} without a retry between",
                before.unwrap_or_default()
            ));
        }
        if terminal && !was_terminal {
            *ends.entry(key.clone()).or_default() += 1;
        }
        last_state.insert(key, state);
    }
    let still_open: Vec<(&String, &String)> = last_state
        .iter()
        .filter(|(k, s)| {
            if k.starts_with("job") {
                !job_terminal.contains(&s.as_str())
            } else {
                !run_terminal.contains(&s.as_str())
            }
        })
        .collect();
    if !still_open.is_empty() {
        problems.push(format!("not ended: {still_open:?}"));
    }

    // 4. Every end published exactly one own event.
    let outbox = sqlx::query("SELECT event_id, detail FROM outbox WHERE refused_at IS NULL")
        .fetch_all(&admin)
        .await
        .unwrap();
    let mut outbox_ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut outbox_ids: HashSet<String> = HashSet::new();
    for o in &outbox {
        let detail: Value = serde_json::from_str(&o.get::<String, _>("detail")).unwrap();
        let key = match detail["job_id"].as_i64() {
            Some(id) => format!("job {id}"),
            None => format!("run {}", detail["run_id"].as_str().unwrap_or("?")),
        };
        *outbox_ends.entry(key).or_default() += 1;
        outbox_ids.insert(o.get("event_id"));
    }
    if outbox_ends != ends {
        let differ: Vec<String> = ends
            .keys()
            .chain(outbox_ends.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|k| ends.get(*k) != outbox_ends.get(*k))
            .map(|k| {
                format!(
                    "{k}: {:?} ends, {:?} own events",
                    ends.get(k),
                    outbox_ends.get(k)
                )
            })
            .take(20)
            .collect();
        problems.push(format!("ends and own events differ: {differ:?}"));
    }
    let received = stack.receive_own_events(&own_queue, outbox_ids.len(), Duration::from_secs(60));
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for e in &received {
        let id = e["detail"]["event_id"].as_str().unwrap_or("?").to_string();
        *delivered.entry(id).or_default() += 1;
    }
    let redelivered: usize = delivered.values().map(|n| n - 1).sum();
    let missing: Vec<&String> = outbox_ids
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .take(10)
        .collect();
    if !missing.is_empty() {
        problems.push(format!("own events never delivered: {missing:?}"));
    }
    let unknown: Vec<&String> = delivered
        .keys()
        .filter(|id| !outbox_ids.contains(*id))
        .take(10)
        .collect();
    if !unknown.is_empty() {
        problems.push(format!("own events no end made: {unknown:?}"));
    }
    if redelivered > 0 {
        problems.push(format!("{redelivered} own events were delivered twice"));
    }

    // 5. The stream: every change once, in the ledger's order.
    let order: Vec<i64> = changes.iter().map(|c| c.get::<i64, _>("seq")).collect();
    let shown: Vec<i64> = streamed.iter().map(|(s, _)| *s).collect();
    if shown != order {
        let set: HashSet<i64> = shown.iter().copied().collect();
        let dup = shown.len() - set.len();
        let missing: Vec<&i64> = order.iter().filter(|s| !set.contains(s)).take(10).collect();
        let first_diff = shown
            .iter()
            .zip(&order)
            .position(|(a, b)| a != b)
            .unwrap_or(shown.len().min(order.len()));
        problems.push(format!(
            "the stream showed {} changes ({dup} twice, missing {missing:?}), the ledger has {}; first difference at {first_diff}",
            shown.len(),
            order.len()
        ));
    }

    // 6. Schedules: each fire time once (the key), each firing one run.
    let fires = sqlx::query("SELECT schedule, fire_time, run_id, note FROM schedule_fires")
        .fetch_all(&admin)
        .await
        .unwrap();
    let mut fired_runs: HashMap<String, usize> = HashMap::new();
    for f in &fires {
        if let Some(run) = f.get::<Option<String>, _>("run_id") {
            *fired_runs.entry(run).or_default() += 1;
        }
    }
    let scheduled_runs: Vec<(String, String)> =
        sqlx::query_as("SELECT id, schedule FROM runs WHERE schedule IS NOT NULL")
            .fetch_all(&admin)
            .await
            .unwrap();
    for (run, schedule) in &scheduled_runs {
        if fired_runs.get(run) != Some(&1) {
            problems.push(format!(
                "run {run} of {schedule} has {:?} firings",
                fired_runs.get(run)
            ));
        }
    }
    if fired_runs.len() != scheduled_runs.len() {
        problems.push(format!(
            "{} firings with a run, {} runs of schedules",
            fired_runs.len(),
            scheduled_runs.len()
        ));
    }
    let steady_fired = fires
        .iter()
        .filter(|f| f.get::<String, _>("schedule") == STEADY)
        .count();

    // 7. The queue and the dead-letter queue are empty.
    let (visible, in_flight) = stack.queue_counts(&stack.queue);
    if visible + in_flight != 0 {
        problems.push(format!("queue: {visible} visible, {in_flight} in flight"));
    }
    let dlq = stack.dlq_depth();
    if dlq != 0 {
        problems.push(format!("{dlq} messages in the dead-letter queue"));
    }

    // 8. `ledger check` on the ledger and on its copy.
    let check = stack.run(&["ledger", "check"]);
    if !check.status.success() {
        problems.push(format!(
            "ledger check: {}{}",
            String::from_utf8_lossy(&check.stdout),
            common::stderr(&check)
        ));
    }
    let copy_url = pg.database("rr_torture_copy").await;
    let migrate = stack.run(&["ledger", "migrate", "--to", &copy_url]);
    let migrate_out = String::from_utf8_lossy(&migrate.stdout).into_owned();
    if !migrate.status.success() {
        problems.push(format!(
            "ledger migrate: {migrate_out}{}",
            common::stderr(&migrate)
        ));
    }
    let copy_check = stack
        .command(&["ledger", "check"])
        .env("REDRELAY_LEDGER", &copy_url)
        .output()
        .unwrap();
    if !copy_check.status.success() {
        problems.push(format!(
            "ledger check of the copy: {}{}",
            String::from_utf8_lossy(&copy_check.stdout),
            common::stderr(&copy_check)
        ));
    }
    let copy = sqlx::PgPool::connect(&copy_url).await.unwrap();
    for table in [
        "jobs",
        "runs",
        "attempts",
        "changes",
        "outbox",
        "schedule_fires",
        "events",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let a: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&admin)
            .await
            .unwrap();
        let b: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&copy)
            .await
            .unwrap();
        if a != b {
            problems.push(format!("{table}: {a} rows, {b} in the copy"));
        }
    }

    // ----- the figures ------------------------------------------------------
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
            .fetch_all(&admin)
            .await
            .unwrap();
    let replays = record.iter().filter(|l| l["kind"] == "replay").count();
    let ev = |a: &str| event_actions.get(a).copied().unwrap_or(0);
    let worker_log = stack.log("worker.log");
    let figures = format!(
        "==================== torture figures ====================\n\
         seed / jobs asked             {seed} / {target_jobs}\n\
         operations                    {op}: {}\n\
         jobs / runs in the ledger     {} / {} ({})\n\
         attempts / statements run     {} / {} ({replays} ClientToken replays)\n\
         cancels acknowledged          {} jobs, {} runs; {raced} attempts had begun before an acknowledged cancel\n\
         retries asked                 {}\n\
         faults                        {kills} worker SIGKILLs ({leader_kills} of the leader), {pg_restarts} PostgreSQL restart\n\
         events                        sent {}, dropped {}, duplicated {}, delayed {}, reordered {}\n\
         changes streamed / in ledger  {} / {}\n\
         own events                    {} ends, {} delivered\n\
         steady schedule               {} due times, {steady_fired} fired\n\
         migrate                       {}\n\
         generator / total             {gen_secs:.1} s / {elapsed:.1} s\n\
         ==========================================================",
        j.ops
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        job_runs.len(),
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM runs")
            .fetch_one(&admin)
            .await
            .unwrap(),
        states
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
        attempts.len(),
        statements.len(),
        j.cancelled_jobs.len(),
        j.cancelled_runs.len(),
        j.retries.len(),
        ev("sent"),
        ev("dropped"),
        ev("duplicate_sent"),
        ev("delayed"),
        ev("reordered"),
        shown.len(),
        order.len(),
        ends.values().sum::<usize>(),
        received.len(),
        due.len(),
        migrate_out.lines().last().unwrap_or("").trim(),
    );
    println!("{figures}");
    eprintln!("{figures}");
    assert!(
        problems.is_empty(),
        "{} problems (seed {seed}):\n{}\nworker log tail:\n{}",
        problems.len(),
        problems.join("\n"),
        tail(&worker_log, 40)
    );
    assert!(
        kills >= 2 && leader_kills >= 1 && pg_restarts == 1,
        "faults made"
    );
    assert!(
        !j.cancelled_jobs.is_empty() && !j.retries.is_empty(),
        "the mix had cancels and retries"
    );
}

/// Cancels a job through the CLI or the API; an acknowledged cancel is
/// journalled with its time.
fn cancel_job(stack: &Stack, addr: &str, j: &mut Journal, rng: &mut SplitMix, id: i64) {
    let via_api = rng.chance(0.5);
    let acked = if via_api {
        let (status, _) = api(
            addr,
            "POST",
            &format!("/api/v1/jobs/{id}/cancel"),
            Some(&json!({})),
        );
        status == 200
    } else {
        let out = stack.run(&["jobs", "cancel", &id.to_string()]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("CANCELLED")
    };
    let entry = if via_api { "api" } else { "cli" };
    if acked {
        j.cancelled_jobs.push((id, now_ms()));
        j.count(&format!("{entry} job cancel"));
    } else {
        j.count(&format!("{entry} job cancel refused"));
    }
}

fn cancel_run(stack: &Stack, addr: &str, j: &mut Journal, rng: &mut SplitMix, run: &str) {
    let via_api = rng.chance(0.5);
    let acked = if via_api {
        let (status, _) = api(
            addr,
            "POST",
            &format!("/api/v1/runs/{run}/cancel"),
            Some(&json!({})),
        );
        status == 200
    } else {
        stack.run(&["runs", "cancel", run]).status.success()
    };
    let entry = if via_api { "api" } else { "cli" };
    if acked {
        j.cancelled_runs.push((run.to_string(), now_ms()));
        j.count(&format!("{entry} run cancel"));
    } else {
        j.count(&format!("{entry} run cancel refused"));
    }
}

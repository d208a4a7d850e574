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
    /// Dedupe keys of the events sent to the trigger (each once).
    trigger_keys: Vec<String>,
    /// Events sent again (a second PutEvents entry, same key).
    trigger_copies: usize,
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
        let opened = Sse::try_open(
            &addr,
            "/api/v1/events?after=0",
            Some(TOKEN),
            &[("Last-Event-ID", last_id.as_str())],
        );
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
    // A trigger: an application's events start runs (one per key).
    let trigger = stack.write_file(
        "tortured.toml",
        "name = \"tortured\"\n[params]\nk = \"\"\n\
         [trigger]\ndedupe = [\"$.detail.k\"]\n\
         [trigger.pattern]\nsource = [\"app.torture\"]\n\
         [trigger.params]\nk = \"$.detail.k\"\n\
         [jobs.take]\nsql = \"INSERT INTO torture (tag, kind) VALUES (:k, 'trigger')\"\n\
         params = { k = { param = \"k\" } }\n",
    );
    stack.ok(&["triggers", "add", &trigger]);

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
                // Some wait on a job recorded earlier (PENDING, then READY
                // or SKIPPED).
                let after = match j.jobs.len() {
                    n if n > 0 && rng.chance(0.2) => Some(j.jobs[rng.range(0, n as u64) as usize]),
                    _ => None,
                };
                let id = if via_api {
                    let body = json!({
                        "sql": sql,
                        "name": format!("t{op}"),
                        "max_attempts": attempts.parse::<i64>().unwrap(),
                        "after": after.into_iter().collect::<Vec<i64>>(),
                    });
                    match api(&addr, "POST", "/api/v1/jobs", Some(&body)) {
                        (201, v) => v["id"].as_i64(),
                        (s, v) => {
                            j.count(&format!("api submit refused {s}"));
                            eprintln!("torture: api submit answered {s}: {v}");
                            None
                        }
                    }
                } else {
                    let name = format!("t{op}");
                    let after = after.map(|a| a.to_string());
                    let mut args = vec![
                        "submit",
                        "--sql",
                        &sql,
                        "--name",
                        &name,
                        "--max-attempts",
                        attempts,
                    ];
                    if let Some(a) = &after {
                        args.extend(["--after", a.as_str()]);
                    }
                    let out = stack.run(&args);
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
            // An application's event for the trigger, sometimes twice.
            55..=59 => {
                let key = format!("k{op}");
                let copies = if rng.chance(0.3) { 2 } else { 1 };
                let script = format!(
                    "import boto3,os,json\n\
                     ev=boto3.client('events', endpoint_url=os.environ['AWS_ENDPOINT_URL_EVENTBRIDGE'])\n\
                     e={{'Source': 'app.torture', 'DetailType': 'Item', 'Detail': json.dumps({{'k': {key:?}}})}}\n\
                     out=ev.put_events(Entries=[e] * {copies})\n\
                     assert out['FailedEntryCount'] == 0, out\n"
                );
                stack.python(&script);
                j.trigger_keys.push(key);
                j.trigger_copies += copies - 1;
                j.count("app event for the trigger");
                n_jobs += 1;
            }
            35..=54 => {
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
            // A schedule changed: added again (its definition replaced).
            97..=99 => {
                let catch_up = *rng.pick(&["none", "last", "all"]);
                let text = schedule_toml(FICKLE, "")
                    .replace("catch_up = \"all\"", &format!("catch_up = \"{catch_up}\""));
                let file = stack.write_file(&format!("{FICKLE}-{op}.toml"), &text);
                let ok = stack.run(&["schedules", "add", &file]).status.success();
                j.count(&format!(
                    "cli schedules add{}",
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

    // Every event sent to the trigger has reached the ledger (moto may
    // still be delivering the last ones).
    stack
        .wait_for_async(WAIT, "every trigger event to be taken", || {
            let admin = admin.clone();
            let want = j.trigger_keys.len() as i64;
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM trigger_events WHERE trigger = 'tortured'",
                )
                .fetch_one(&admin)
                .await
                .map_err(|e| e.to_string())?;
                seen(n >= want, format!("{n} of {want}")).map(drop)
            }
        })
        .await;

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
    let attempts: Vec<Attempt> =
        sqlx::query_as("SELECT job_id, attempt, client_token, state, started_at FROM attempts")
            .fetch_all(&admin)
            .await
            .unwrap();
    problems.extend(ran_twice(&statements, &attempts));

    // 2. No attempt began after its job's cancel was acknowledged, unless a
    // retry (of the job, or of a job of its run) was asked for after it.
    let job_runs: HashMap<i64, Option<String>> = sqlx::query("SELECT id, run_id FROM jobs")
        .fetch_all(&admin)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("id"), r.get("run_id")))
        .collect();
    let (cancel_problems, raced) = began_after_cancel(&j, &job_runs, &attempts);
    problems.extend(cancel_problems);

    // 3. Every job and run ended, once between retries.
    let changes: Vec<ChangeRow> = sqlx::query_as(
        "SELECT seq, kind, job_id, run_id, state FROM changes ORDER BY COALESCE(xid, 0), seq",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let (end_problems, ends) = ended_once(&changes);
    problems.extend(end_problems);

    // 4. Every end published exactly one own event.
    let outbox: Vec<(String, String)> =
        sqlx::query_as("SELECT event_id, detail FROM outbox WHERE refused_at IS NULL")
            .fetch_all(&admin)
            .await
            .unwrap();
    let within = Duration::from_secs(60 + outbox.len() as u64 / 5);
    let received = stack.receive_own_events(&own_queue, outbox.len(), within);
    let delivered: Vec<String> = received
        .iter()
        .map(|e| e["detail"]["event_id"].as_str().unwrap_or("?").to_string())
        .collect();
    // Publishing is at least once: a leader that dies (or loses the
    // ledger) between PutEvents and recording it leaves that call's
    // entries (at most 10) to be sent again, with the same event_id.
    let copies_allowed = 10 * (leader_kills + pg_restarts);
    let copies = delivered.len() - delivered.iter().collect::<HashSet<_>>().len();
    problems.extend(published_once(&ends, &outbox, &delivered, copies_allowed));

    // 5. The stream: every change once, in the ledger's order.
    let order: Vec<i64> = changes.iter().map(|c| c.0).collect();
    let shown: Vec<i64> = streamed.iter().map(|(s, _)| *s).collect();
    problems.extend(streamed_in_order(&shown, &order));

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

    // 6b. The trigger: one event record and one run per key sent, each
    // STARTED with a run that exists (`ledger check` checks the links).
    let taken: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT dedupe_key, state, run_id FROM trigger_events WHERE trigger = 'tortured'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let mut want: Vec<String> = j
        .trigger_keys
        .iter()
        .map(|k| {
            use sha2::Digest;
            let d = sha2::Sha256::digest(
                Value::Array(vec![Value::from(k.as_str())])
                    .to_string()
                    .as_bytes(),
            );
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        })
        .collect();
    want.sort();
    let mut got: Vec<String> = taken.iter().map(|(k, _, _)| k.clone()).collect();
    got.sort();
    if got != want {
        problems.push(format!(
            "trigger: {} events recorded for {} keys sent",
            got.len(),
            want.len()
        ));
    }
    let runs_of_trigger: HashSet<&String> =
        taken.iter().filter_map(|(_, _, r)| r.as_ref()).collect();
    if taken.iter().any(|(_, s, _)| s != "STARTED") || runs_of_trigger.len() != taken.len() {
        problems.push(format!("trigger: not one STARTED run per key: {taken:?}"));
    }

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
         trigger events                {} keys (+{} copies) -> {} runs\n\
         faults                        {kills} worker SIGKILLs ({leader_kills} of the leader), {pg_restarts} PostgreSQL restart\n\
         events                        sent {}, dropped {}, duplicated {}, delayed {}, reordered {}\n\
         changes streamed / in ledger  {} / {}\n\
         own events                    {} ends, {} delivered ({copies} copies, {copies_allowed} allowed)\n\
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
        j.trigger_keys.len(),
        j.trigger_copies,
        runs_of_trigger.len(),
        ev("sent"),
        ev("dropped"),
        ev("duplicate_sent"),
        ev("delayed"),
        ev("reordered"),
        shown.len(),
        order.len(),
        ends.values().sum::<usize>(),
        delivered.len(),
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

/// An attempt: (job, attempt, ClientToken, state, started at).
type Attempt = (i64, i64, String, String, i64);
/// A change: (seq, kind, job, run, state).
type ChangeRow = (i64, String, Option<i64>, Option<String>, String);

const JOB_ENDS: [&str; 5] = ["FINISHED", "FAILED", "ABORTED", "CANCELLED", "SKIPPED"];
const RUN_ENDS: [&str; 3] = ["FINISHED", "FAILED", "CANCELLED"];

/// Invariant 1: one statement per ClientToken and per statement id, each
/// an attempt of the ledger.
fn ran_twice(statements: &[&Value], attempts: &[Attempt]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_token: HashMap<&str, &Value> = HashMap::new();
    let mut by_id: HashSet<&str> = HashSet::new();
    for s in statements {
        let token = s["client_token"].as_str().unwrap_or("");
        if let Some(first) = by_token.insert(token, s) {
            problems.push(format!("ClientToken {token} ran twice: {first} / {s}"));
        }
        let id = s["id"].as_str().unwrap_or("");
        if !by_id.insert(id) {
            problems.push(format!("statement {id} is in the record twice"));
        }
    }
    let tokens: HashSet<&str> = attempts.iter().map(|a| a.2.as_str()).collect();
    for (token, s) in &by_token {
        if !tokens.contains(token) {
            problems.push(format!("the emulator ran what no attempt knows: {s}"));
        }
    }
    problems
}

/// Invariant 2: no attempt of a job began after its cancel (or its run's)
/// was acknowledged, until a retry of the job or of a job of its run was
/// asked for. Also counts the attempts that had begun before an
/// acknowledged cancel and did not end CANCELLED (their statements raced
/// the cancel, as allowed).
fn began_after_cancel(
    j: &Journal,
    job_runs: &HashMap<i64, Option<String>>,
    attempts: &[Attempt],
) -> (Vec<String>, usize) {
    let mut acks: Vec<(i64, i64)> = j.cancelled_jobs.clone();
    for (run, at) in &j.cancelled_runs {
        for (id, r) in job_runs {
            if r.as_deref() == Some(run.as_str()) {
                acks.push((*id, *at));
            }
        }
    }
    let group = |id: i64| -> String {
        match job_runs.get(&id).cloned().flatten() {
            Some(run) => run,
            None => format!("job {id}"),
        }
    };
    let (mut problems, mut raced) = (Vec::new(), 0);
    for (job, acked) in &acks {
        let reopened = j
            .retries
            .iter()
            .filter(|(r, at)| group(*r) == group(*job) && at > acked)
            .map(|(_, at)| *at)
            .min()
            .unwrap_or(i64::MAX);
        for (aj, attempt, _, state, started) in attempts {
            if aj == job && started > acked && *started < reopened {
                problems.push(format!(
                    "job {job}: attempt {attempt} began at {started}, after its cancel was acknowledged at {acked}"
                ));
            }
            if aj == job && started <= acked && state != "CANCELLED" {
                raced += 1;
            }
        }
    }
    (problems, raced)
}

/// Invariant 3: every job and run ends, and never goes from one end to
/// another without a state between (a retry). Returns the ends of each
/// (`job N` / `run ID`): how many times each entered an end.
fn ended_once(changes: &[ChangeRow]) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut problems = Vec::new();
    let mut last: HashMap<String, (bool, String)> = HashMap::new();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for (_, kind, job, run, state) in changes {
        let (key, terminal) = if kind == "job" {
            (
                format!("job {}", job.unwrap_or(0)),
                JOB_ENDS.contains(&state.as_str()),
            )
        } else {
            (
                format!("run {}", run.as_deref().unwrap_or("?")),
                RUN_ENDS.contains(&state.as_str()),
            )
        };
        if let Some((true, before)) = last.get(&key) {
            if terminal && before != state {
                problems.push(format!(
                    "{key} went from {before} to {state} without a retry between"
                ));
            }
        }
        let was_terminal = matches!(last.get(&key), Some((true, _)));
        if terminal && !was_terminal {
            *ends.entry(key.clone()).or_default() += 1;
        }
        last.insert(key, (terminal, state.clone()));
    }
    let mut open: Vec<String> = last
        .iter()
        .filter(|(_, (terminal, _))| !terminal)
        .map(|(k, (_, s))| format!("{k} is {s}"))
        .collect();
    open.sort();
    if !open.is_empty() {
        problems.push(format!("{} not ended: {open:?}", open.len()));
    }
    (problems, ends)
}

/// Invariant 4: one own event (outbox row, one event id) per end, each
/// delivered, copies (a call sent again after a leader's death) within
/// `copies_allowed`.
fn published_once(
    ends: &BTreeMap<String, usize>,
    outbox: &[(String, String)],
    delivered: &[String],
    copies_allowed: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut per_end: BTreeMap<String, usize> = BTreeMap::new();
    let ids: HashSet<&str> = outbox.iter().map(|(id, _)| id.as_str()).collect();
    for (_, detail) in outbox {
        let detail: Value = serde_json::from_str(detail).unwrap_or_default();
        let key = match detail["job_id"].as_i64() {
            Some(id) => format!("job {id}"),
            None => format!("run {}", detail["run_id"].as_str().unwrap_or("?")),
        };
        *per_end.entry(key).or_default() += 1;
    }
    let keys: std::collections::BTreeSet<&String> = ends.keys().chain(per_end.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| ends.get(*k) != per_end.get(*k))
        .map(|k| {
            format!(
                "{k}: {:?} ends, {:?} own events",
                ends.get(k),
                per_end.get(k)
            )
        })
        .take(20)
        .collect();
    if !differ.is_empty() {
        problems.push(format!("ends and own events differ: {differ:?}"));
    }
    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in delivered {
        *times.entry(id.as_str()).or_default() += 1;
    }
    let mut missing: Vec<&&str> = ids.iter().filter(|id| !times.contains_key(**id)).collect();
    missing.sort();
    if !missing.is_empty() {
        problems.push(format!(
            "{} own events never delivered: {missing:?}",
            missing.len()
        ));
    }
    let mut unknown: Vec<&&str> = times.keys().filter(|id| !ids.contains(**id)).collect();
    unknown.sort();
    if !unknown.is_empty() {
        problems.push(format!("own events that no end made: {unknown:?}"));
    }
    let twice: usize = times.values().map(|n| n - 1).sum();
    if twice > copies_allowed {
        problems.push(format!(
            "{twice} copies of own events delivered, more than the {copies_allowed} the leaders' deaths explain"
        ));
    }
    problems
}

/// Invariant 5: the stream client saw exactly the ledger's changes, each
/// once, in the ledger's order.
fn streamed_in_order(shown: &[i64], order: &[i64]) -> Option<String> {
    if shown == order {
        return None;
    }
    let set: HashSet<i64> = shown.iter().copied().collect();
    let dup = shown.len() - set.len();
    let missing: Vec<&i64> = order.iter().filter(|s| !set.contains(s)).take(10).collect();
    let first = shown
        .iter()
        .zip(order)
        .position(|(a, b)| a != b)
        .unwrap_or(shown.len().min(order.len()));
    Some(format!(
        "the stream showed {} changes ({dup} twice, missing {missing:?}), the ledger has {}; first difference at position {first}",
        shown.len(),
        order.len()
    ))
}

/// The checker finds each kind of violation it looks for (a checker that
/// cannot fail proves nothing), and passes what keeps the promises.
#[test]
fn the_checker_finds_each_kind_of_violation() {
    // 1. A token run twice; a statement no attempt knows.
    let a = json!({"client_token": "t1", "id": "s1"});
    let b = json!({"client_token": "t1", "id": "s2"});
    let c = json!({"client_token": "t9", "id": "s3"});
    let attempts: Vec<Attempt> = vec![(1, 1, "t1".into(), "FINISHED".into(), 100)];
    assert!(ran_twice(&[&a], &attempts).is_empty());
    assert_eq!(ran_twice(&[&a, &b], &attempts).len(), 1);
    assert_eq!(ran_twice(&[&a, &c], &attempts).len(), 1);

    // 2. An attempt begun after an acknowledged cancel; allowed once a
    // retry was asked for; one begun before only counts as raced.
    let runs: HashMap<i64, Option<String>> = [(1, None), (2, Some("r".to_string()))].into();
    let mut j = Journal {
        cancelled_jobs: vec![(1, 200)],
        cancelled_runs: vec![("r".into(), 200)],
        ..Default::default()
    };
    let late: Vec<Attempt> = vec![
        (1, 1, "a".into(), "FINISHED".into(), 150),
        (1, 2, "b".into(), "FINISHED".into(), 250),
        (2, 1, "c".into(), "FINISHED".into(), 260),
    ];
    let (p, raced) = began_after_cancel(&j, &runs, &late);
    assert_eq!((p.len(), raced), (2, 1), "{p:?}");
    j.retries = vec![(1, 240), (2, 255)];
    assert!(began_after_cancel(&j, &runs, &late).0.is_empty());

    // 3. One end to another without a retry; a job that never ended.
    let ch = |seq, kind: &str, job: Option<i64>, state: &str| -> ChangeRow {
        let run = (kind == "run").then(|| "r".to_string());
        (seq, kind.to_string(), job, run, state.to_string())
    };
    let good = vec![
        ch(1, "job", Some(1), "READY"),
        ch(2, "job", Some(1), "FAILED"),
        ch(3, "job", Some(1), "READY"),
        ch(4, "job", Some(1), "FINISHED"),
        ch(5, "job", Some(1), "FINISHED"),
        ch(6, "run", None, "RUNNING"),
        ch(7, "run", None, "FINISHED"),
    ];
    let (p, ends) = ended_once(&good);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(ends.get("job 1"), Some(&2));
    let mut bad = good.clone();
    bad.push(ch(8, "job", Some(1), "CANCELLED"));
    bad.push(ch(9, "job", Some(2), "SUBMITTED"));
    assert_eq!(ended_once(&bad).0.len(), 2);

    // 4. An end without its own event; one never delivered, one twice.
    let outbox = vec![
        ("e1".to_string(), r#"{"job_id": 1}"#.to_string()),
        ("e2".to_string(), r#"{"job_id": 1}"#.to_string()),
        ("e3".to_string(), r#"{"run_id": "r"}"#.to_string()),
    ];
    let all: Vec<String> = ["e1", "e2", "e3"].map(String::from).to_vec();
    assert!(published_once(&ends, &outbox, &all, 0).is_empty());
    assert_eq!(published_once(&ends, &outbox[..2], &all[..2], 0).len(), 1);
    let twice: Vec<String> = ["e1", "e2", "e2", "e3"].map(String::from).to_vec();
    assert!(published_once(&ends, &outbox, &twice, 1).is_empty());
    assert_eq!(published_once(&ends, &outbox, &twice, 0).len(), 1);
    assert_eq!(published_once(&ends, &outbox, &twice[..3], 1).len(), 1);

    // 5. A change shown twice, one skipped, two out of order.
    assert!(streamed_in_order(&[1, 2, 3], &[1, 2, 3]).is_none());
    assert!(streamed_in_order(&[1, 2, 2, 3], &[1, 2, 3]).is_some());
    assert!(streamed_in_order(&[1, 3], &[1, 2, 3]).is_some());
    assert!(streamed_in_order(&[1, 3, 2], &[1, 2, 3]).is_some());
}

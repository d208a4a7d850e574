//! A worker whose ledger goes away (issue 17): PostgreSQL stopped for 20 s
//! while statements run and their events arrive. The worker must come
//! through it by itself: it stays up, /readyz says why it is not ready
//! meanwhile, nothing is lost (every event that came during the outage is
//! applied once the ledger is back, every job ends and its results are
//! fetched), and it is ready again without a restart.

mod common;

use common::{tail, Stack, StackOptions};
use std::time::{Duration, Instant};

fn outage() -> Duration {
    let secs = std::env::var("REDRELAY_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}
const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_comes_through_a_20_s_ledger_outage() {
    let pg = common::pg::private();
    let url = pg.database("rr_outage").await;
    let stack = Stack::start_with(
        "outage",
        StackOptions {
            config_extra: "reconcile_after_secs = 2\nwait_time_secs = 1\n".into(),
            // The slow ones end during the outage: their events arrive while
            // the ledger is away.
            emulator_args: vec!["--hold".into(), "4000:slow_".into()],
            ledger_url: Some(url),
            ..Default::default()
        },
    );
    let mut worker = stack.spawn_worker_ready(&[]);
    let addr = stack.listener();
    let ready = || common::http::call(&addr, "GET", "/readyz", None, None);
    stack.wait_for(WAIT, "/readyz 200 before the outage", || {
        let r = ready();
        common::seen(r.status == 200, r.body)
    });

    let mut jobs = Vec::new();
    for k in 0..6 {
        jobs.push(stack.submit(&["--sql", &format!("SELECT 'slow_{k}' AS tag, {k} AS k")]));
    }
    // A chain: the second waits on the first, which ends during the outage.
    let first = stack.submit(&["--sql", "SELECT 'slow_first' AS tag"]);
    let second = stack.submit(&[
        "--sql",
        "SELECT 'after' AS tag",
        "--after",
        &first.to_string(),
    ]);
    jobs.extend([first, second]);
    for id in &jobs[..7] {
        stack.wait_state(*id, "SUBMITTED", WAIT);
    }

    pg.stop().expect("stop PostgreSQL");
    let down = Instant::now();
    let mut reasons = Vec::new();
    while down.elapsed() < outage() {
        if let Some(status) = worker.child.try_wait().expect("wait worker") {
            panic!(
                "the worker exited during the outage ({status}) after {:.1} s:\n{}",
                down.elapsed().as_secs_f64(),
                tail(&stack.log("worker.log"), 40)
            );
        }
        let r = ready();
        reasons.push((r.status, r.body.trim().to_string()));
        std::thread::sleep(Duration::from_millis(500));
    }
    let not_ready: Vec<&(u16, String)> = reasons.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        not_ready.len() * 2 > reasons.len(),
        "/readyz should say not ready through most of the outage: {reasons:?}"
    );
    assert!(
        not_ready
            .iter()
            .all(|(_, why)| why.contains("ledger") && why.contains("cannot connect to PostgreSQL")),
        "/readyz should name the ledger and the cause: {reasons:?}"
    );
    pg.start().expect("start PostgreSQL again");
    let back = Instant::now();

    // Back by itself: ready again, every job ended with its results.
    stack.wait_for(WAIT, "/readyz 200 after the outage", || {
        let r = ready();
        common::seen(r.status == 200, r.body)
    });
    for id in &jobs {
        let job = stack.wait_fetched(*id, WAIT);
        assert_eq!(job["state"], "FINISHED", "job {id}: {job}");
    }
    let line = format!(
        "ledger away {:.0} s: /readyz 503 in {} of {} probes ({:?}); every job ended with its results {:.1} s after the ledger came back",
        outage().as_secs_f64(),
        not_ready.len(),
        reasons.len(),
        not_ready.first().map(|(_, why)| why),
        back.elapsed().as_secs_f64()
    );
    println!("{line}");
    eprintln!("{line}\n{}", tail(&stack.log("worker.log"), 30));
    assert!(
        worker.child.try_wait().expect("wait worker").is_none(),
        "the worker is still the same process"
    );
    let starts = stack.log("worker.log").matches("Worker started.").count();
    assert_eq!(starts, 1, "one worker start, no restart");
    stack.wait_queue_empty(WAIT);
    assert_eq!(stack.dlq_depth(), 0, "nothing dead-lettered");
    let check = stack.run(&["ledger", "check"]);
    assert!(
        check.status.success(),
        "ledger check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        common::stderr(&check)
    );
    // No statement ran twice.
    let record = stack.record_kind("statement");
    assert_eq!(record.len(), jobs.len(), "one statement a job: {record:?}");
}

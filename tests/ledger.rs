//! The ledger's transitions on a real SQLite file: events applied once,
//! early events deferred, stale attempts kept apart, failures propagated,
//! retries promoted by an injected clock. Every test runs on both backends
//! (SQLite and a real PostgreSQL): one conformance suite.

mod common;

use redrelay::event::{parse, Origin, StatusEvent};
use redrelay::ledger::{
    statement_name, Accepted, Disposition, Fired, Ledger, LedgerError, NewJob, Target,
};
use redrelay::state::{AttemptState, JobState, ResultState, RunState};

fn new_job(name: &str, deps: Vec<i64>) -> NewJob {
    NewJob {
        name: name.into(),
        sqls: vec!["SELECT 1".into()],
        params: vec![],
        target: Target {
            workgroup: Some("wg-test".into()),
            database: Some("dev".into()),
            ..Default::default()
        },
        depends_on: deps,
        max_attempts: 1,
        retry: None,
        timeout_secs: None,
        run_id: None,
        execution_mode: None,
        result_formats: None,
        session_keep_alive_secs: None,
    }
}

fn event(id: &str, statement: &str, name: &str, state: &str) -> (StatusEvent, String) {
    let body = serde_json::json!({
        "version": "0", "id": id,
        "detail-type": "Redshift Data Statement Status Change",
        "source": "aws.redshift-data", "time": "2026-11-25T00:00:00Z", "region": "us-east-1",
        "resources": [],
        "detail": {"principal": "p", "statementName": name, "statementId": statement,
                   "redshiftQueryId": 1, "state": state, "rows": 2, "expireAt": 1}
    })
    .to_string();
    (parse(&body, &Origin::default()).unwrap(), body)
}

/// The backends every test here runs on (the conformance suite).
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

async fn ledger(b: Backend) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = match b {
        Backend::Sqlite => Ledger::open(&dir.path().join("l.db")).await.unwrap(),
        Backend::Postgres => {
            let pg = common::pg::postgres().await;
            let location = redrelay::ledger::location::parse(&pg.url, None, |_| None).unwrap();
            Ledger::connect(&location, 5).await.unwrap()
        }
    };
    (dir, l)
}

async fn submitted(l: &Ledger, job: i64, sid: &str, now: i64) -> String {
    let t = l.begin_attempt(job, now).await.unwrap().unwrap();
    l.mark_submitted(job, t.attempt, &Accepted::id(sid), Default::default(), now)
        .await
        .unwrap();
    t.statement_name
}

async fn finished_event_releases_dependents_once(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("a", vec![]), 1).await.unwrap();
    let b = l.insert_job(&new_job("b", vec![a.id]), 1).await.unwrap();
    assert_eq!(a.state, JobState::Ready);
    assert_eq!(b.state, JobState::Pending);
    let name = submitted(&l, a.id, "s-a", 2).await;
    let (ev, body) = event("e1", "s-a", &name, "FINISHED");
    let (d, job) = l
        .apply_event(&ev, None, Some("m1"), &body, 3)
        .await
        .unwrap();
    assert_eq!((d, job), (Disposition::Applied, Some(a.id)));
    let a2 = l.job(a.id).await.unwrap();
    assert_eq!(a2.state, JobState::Finished);
    assert_eq!(a2.rows, Some(2));
    assert_eq!(a2.finished_at, Some(3));
    assert_eq!(a2.result_state, Some(ResultState::Pending));
    assert_eq!(l.job(b.id).await.unwrap().state, JobState::Ready);
    // The same event again, and another event with the same (statement, state).
    assert_eq!(
        l.apply_event(&ev, None, Some("m1"), &body, 4)
            .await
            .unwrap()
            .0,
        Disposition::Duplicate
    );
    let (ev2, body2) = event("e2", "s-a", &name, "FINISHED");
    assert_eq!(
        l.apply_event(&ev2, None, None, &body2, 5).await.unwrap().0,
        Disposition::Duplicate
    );
    // A contradictory FAILED after the FINISHED changes nothing.
    let (ev3, body3) = event("e3", "s-a", &name, "FAILED");
    assert_eq!(
        l.apply_event(&ev3, Some("boom"), None, &body3, 6)
            .await
            .unwrap()
            .0,
        Disposition::Duplicate
    );
    assert_eq!(l.job(a.id).await.unwrap().state, JobState::Finished);
}

async fn an_event_before_its_statement_id_is_deferred_then_applied(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("early", vec![]), 1).await.unwrap();
    let t = l.begin_attempt(a.id, 2).await.unwrap().unwrap();
    assert_eq!(t.statement_name, statement_name("early", &a.uid));
    // The event overtakes the submitter's ledger write.
    let (ev, body) = event("e1", "s-early", &t.statement_name, "FINISHED");
    let (d, job) = l.apply_event(&ev, None, None, &body, 3).await.unwrap();
    assert_eq!((d, job), (Disposition::Deferred, Some(a.id)));
    assert_eq!(l.job(a.id).await.unwrap().state, JobState::Ready);
    let applied = l
        .mark_submitted(
            a.id,
            t.attempt,
            &Accepted::id("s-early"),
            Default::default(),
            4,
        )
        .await
        .unwrap();
    assert_eq!(applied, vec![Disposition::Applied]);
    assert_eq!(l.job(a.id).await.unwrap().state, JobState::Finished);
    let events = l.inbox(10).await.unwrap();
    assert_eq!(events[0].disposition, Disposition::Applied);
}

async fn unknown_statements_are_foreign(b: Backend) {
    let (_d, l) = ledger(b).await;
    let (ev, body) = event("e1", "not-ours", "someone/else", "FINISHED");
    let (d, job) = l.apply_event(&ev, None, None, &body, 1).await.unwrap();
    assert_eq!((d, job), (Disposition::Foreign, None));
    // Received again (on_foreign = "leave"): still foreign, not a duplicate.
    let (d, _) = l.apply_event(&ev, None, None, &body, 2).await.unwrap();
    assert_eq!(d, Disposition::Foreign);
    assert_eq!(l.inbox(10).await.unwrap().len(), 1, "recorded once");
    let (ev, body) = event(
        "e2",
        "not-ours-2",
        &statement_name("x", &"a".repeat(32)),
        "FINISHED",
    );
    assert_eq!(
        l.apply_event(&ev, None, None, &body, 1).await.unwrap().0,
        Disposition::Foreign
    );
}

async fn failure_skips_everything_downstream_but_not_other_branches(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("a", vec![]), 1).await.unwrap();
    let other = l.insert_job(&new_job("other", vec![]), 1).await.unwrap();
    let b = l.insert_job(&new_job("b", vec![a.id]), 1).await.unwrap();
    let c = l
        .insert_job(&new_job("c", vec![b.id, other.id]), 1)
        .await
        .unwrap();
    let name = submitted(&l, a.id, "s-a", 2).await;
    let (ev, body) = event("e1", "s-a", &name, "FAILED");
    l.apply_event(&ev, Some("ERROR: relation does not exist"), None, &body, 3)
        .await
        .unwrap();
    let a2 = l.job(a.id).await.unwrap();
    assert_eq!(a2.state, JobState::Failed);
    assert_eq!(a2.error.as_deref(), Some("ERROR: relation does not exist"));
    assert_eq!(l.job(b.id).await.unwrap().state, JobState::Skipped);
    assert_eq!(l.job(c.id).await.unwrap().state, JobState::Skipped);
    assert_eq!(l.job(other.id).await.unwrap().state, JobState::Ready);
    let attempts = l.attempts(a.id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Failed);
}

async fn retries_wait_then_use_a_new_token_and_old_events_are_stale(b: Backend) {
    let (_d, l) = ledger(b).await;
    let mut spec = new_job("flaky", vec![]);
    spec.max_attempts = 3;
    spec.retry = Some(
        serde_json::json!({"initial_secs": 10.0, "max_secs": 60.0, "multiplier": 2.0, "jitter": 0.0}),
    );
    let a = l.insert_job(&spec, 0).await.unwrap();
    let t1 = l.begin_attempt(a.id, 0).await.unwrap().unwrap();
    l.mark_submitted(a.id, 1, &Accepted::id("s1"), Default::default(), 0)
        .await
        .unwrap();
    let (ev, body) = event("e1", "s1", &t1.statement_name, "FAILED");
    l.apply_event(&ev, Some("first failure"), None, &body, 1_000)
        .await
        .unwrap();
    let j = l.job(a.id).await.unwrap();
    assert_eq!(j.state, JobState::RetryWait);
    assert_eq!(j.not_before, Some(11_000));
    assert_eq!(l.promote_retries(10_999).await.unwrap(), 0);
    assert_eq!(l.promote_retries(11_000).await.unwrap(), 1);
    let t2 = l.begin_attempt(a.id, 11_000).await.unwrap().unwrap();
    assert_eq!(t2.attempt, 2);
    assert_ne!(t1.client_token, t2.client_token);
    l.mark_submitted(a.id, 2, &Accepted::id("s2"), Default::default(), 11_001)
        .await
        .unwrap();
    // A late duplicate of attempt 1's statement under another event id.
    let (old, old_body) = event("e1b", "s1", &t1.statement_name, "FINISHED");
    assert_eq!(
        l.apply_event(&old, None, None, &old_body, 11_002)
            .await
            .unwrap()
            .0,
        Disposition::Duplicate
    );
    let (ev2, body2) = event("e2", "s2", &t2.statement_name, "FINISHED");
    assert_eq!(
        l.apply_event(&ev2, None, None, &body2, 12_000)
            .await
            .unwrap()
            .0,
        Disposition::Applied
    );
    let j = l.job(a.id).await.unwrap();
    assert_eq!((j.state, j.attempt), (JobState::Finished, 2));
    let attempts = l.attempts(a.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].error.as_deref(), Some("first failure"));
    assert_eq!(attempts[1].state, AttemptState::Finished);
}

async fn a_crashed_submission_resumes_with_the_same_token(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("crash", vec![]), 0).await.unwrap();
    let t1 = l.begin_attempt(a.id, 0).await.unwrap().unwrap();
    // Crash here: the Data API may have run it, the ledger does not know.
    let t2 = l.begin_attempt(a.id, 5).await.unwrap().unwrap();
    assert_eq!(t1.client_token, t2.client_token);
    assert_eq!(t1.attempt, t2.attempt);
    l.mark_submitted(a.id, t2.attempt, &Accepted::id("s"), Default::default(), 6)
        .await
        .unwrap();
    // A second process recording the same idempotent answer is fine...
    l.mark_submitted(a.id, t2.attempt, &Accepted::id("s"), Default::default(), 7)
        .await
        .unwrap();
    // ...a different statement for the same attempt is a conflict.
    let err = l
        .mark_submitted(
            a.id,
            t2.attempt,
            &Accepted::id("other"),
            Default::default(),
            8,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Conflict { .. }), "{err}");
    assert!(l.begin_attempt(a.id, 9).await.unwrap().is_none());
}

#[tokio::test]
async fn the_ledger_file_is_private_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/l.db");
    let l = Ledger::open(&path).await.unwrap();
    l.insert_job(&new_job("a", vec![]), 1).await.unwrap();
    l.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let l = Ledger::open(&path).await.unwrap();
    assert_eq!(l.jobs(None, None).await.unwrap().len(), 1);
    assert!(matches!(
        l.insert_job(&new_job("b", vec![99]), 1).await,
        Err(LedgerError::NoSuchJob(99))
    ));
}

/// Issue 17.2: a cancel while an attempt is being submitted (here a call
/// whose answer never came: throttled, or its process died) leaves the
/// attempt open, since the Data API may have accepted it; a retry resumes
/// it with the same ClientToken, so that the SQL never runs twice.
async fn a_cancel_during_a_submission_keeps_its_token_for_the_retry(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l
        .insert_job(&new_job("throttled", vec![]), 0)
        .await
        .unwrap();
    let t1 = l.begin_attempt(a.id, 0).await.unwrap().unwrap();
    let (changed, statement) = l.cancel_job(a.id, 5).await.unwrap();
    assert!(changed);
    assert_eq!(statement, None);
    let attempts = l.attempts(a.id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Submitting, "{attempts:?}");
    let (_, violations) = l.check().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(l.retry_job(a.id, 10).await.unwrap(), JobState::Ready);
    let t2 = l.begin_attempt(a.id, 11).await.unwrap().unwrap();
    assert_eq!(t2.attempt, 1);
    assert!(t2.resumed);
    assert_eq!(t1.client_token, t2.client_token);
    let (_, violations) = l.check().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

/// Issue 17.2: a cancel while a live worker's ExecuteStatement is under
/// way. The answer is recorded when it comes (the attempt SUBMITTED with
/// its statement id, for the caller to stop); a retry is refused while the
/// call is under way and while the statement has not ended, and allowed
/// once its end is recorded.
async fn a_cancel_during_a_call_records_its_answer_and_a_retry_waits(b: Backend) {
    let (_d, l) = ledger(b).await;
    let worker = redrelay::ledger::WorkerInfo {
        id: "w1".into(),
        host: "h".into(),
        pid: 1,
        started_at: 0,
        listen: Default::default(),
    };
    l.heartbeat(&worker).await.unwrap();
    let a = l.insert_job(&new_job("slow", vec![]), 0).await.unwrap();
    let redrelay::ledger::Claim::Ticket(t) = l.claim(a.id, None, "w1", 1).await.unwrap() else {
        panic!("not claimed")
    };
    assert!(l.cancel_job(a.id, 2).await.unwrap().0);
    let e = l.retry_job(a.id, 3).await.unwrap_err().to_string();
    assert!(e.contains("submission is under way on worker w1"), "{e}");
    // The call answers: the job moved on, the statement id is kept.
    let e = l
        .mark_submitted(
            a.id,
            t.attempt,
            &Accepted::id("s-slow"),
            Default::default(),
            4,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, LedgerError::Conflict { .. }), "{e}");
    let attempts = l.attempts(a.id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Submitted, "{attempts:?}");
    assert_eq!(attempts[0].statement_id.as_deref(), Some("s-slow"));
    let e = l.retry_job(a.id, 5).await.unwrap_err().to_string();
    assert!(e.contains("statement s-slow has not ended"), "{e}");
    let (_, violations) = l.check().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    // Its end (the cancel's ABORTED) closes it; then a retry is a new attempt.
    let (ev, body) = event("e-slow", "s-slow", &t.statement_name, "ABORTED");
    assert_eq!(
        l.apply_event(&ev, None, None, &body, 6).await.unwrap().0,
        Disposition::Stale
    );
    assert_eq!(l.retry_job(a.id, 7).await.unwrap(), JobState::Ready);
    let t2 = l.begin_attempt(a.id, 8).await.unwrap().unwrap();
    assert_eq!(t2.attempt, 2);
    assert_ne!(t2.client_token, t.client_token);
    assert_eq!(l.job(a.id).await.unwrap().state, JobState::Ready);
    let (_, violations) = l.check().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

/// Issue 7.3: a READY job that fails before its call (an upstream parameter
/// is missing) closes the attempt a throttled call left open.
async fn failing_a_ready_job_closes_its_open_attempt(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("p", vec![]), 0).await.unwrap();
    l.begin_attempt(a.id, 0).await.unwrap().unwrap();
    l.fail_ready(a.id, "no value", 3).await.unwrap();
    let attempts = l.attempts(a.id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Cancelled);
    assert_eq!(attempts[0].error.as_deref(), Some("no value"));
    let (_, violations) = l.check().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

fn run_job(name: &str, deps: Vec<usize>) -> redrelay::ledger::RunJob {
    redrelay::ledger::RunJob {
        job: new_job(name, vec![]),
        deps,
        upstream: vec![],
    }
}

/// Issue 7.4: a run is cancelled in one transaction guarded on RUNNING: it
/// never passes through FAILED, a second cancel is refused, and a retry
/// cannot move a CANCELLED run back to RUNNING.
async fn run_changes_are_guarded_on_the_old_state(b: Backend) {
    let (_d, l) = ledger(b).await;
    let (run, ids) = l
        .create_run("p", &[run_job("a", vec![]), run_job("b", vec![0])], 0)
        .await
        .unwrap();
    let name = submitted(&l, ids[0], "s-a", 1).await;
    let (n, statements) = l.cancel_run(&run, 2).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(statements, vec![(ids[0], "s-a".to_string())]);
    let r = l.run(&run).await.unwrap().unwrap();
    assert_eq!(r.state, RunState::Cancelled);
    for id in &ids {
        assert_eq!(l.job(*id).await.unwrap().state, JobState::Cancelled);
    }
    let again = l.cancel_run(&run, 3).await.unwrap_err();
    assert!(
        matches!(
            again,
            LedgerError::RunConflict {
                found: RunState::Cancelled,
                ..
            }
        ),
        "{again}"
    );
    // The cancelled statement's end is recorded in its attempt's history;
    // the run stays CANCELLED.
    let (ev, body) = event("e-a", "s-a", &name, "ABORTED");
    let (d, _) = l
        .apply_event(&ev, Some("cancelled"), None, &body, 4)
        .await
        .unwrap();
    assert_eq!(d, Disposition::Stale);
    let refused = l.retry_job(ids[0], 5).await.unwrap_err().to_string();
    assert!(refused.contains("CANCELLED"), "{refused}");
    assert_eq!(
        l.run(&run).await.unwrap().unwrap().state,
        RunState::Cancelled
    );
    let (_, violations) = l.check().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

/// Issue 7.2/7.3: no new attempt while the previous statement may still
/// commit: a retry is refused until that statement's end is recorded.
async fn a_retry_waits_for_the_previous_statement_to_end(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("slow", vec![]), 0).await.unwrap();
    let name = submitted(&l, a.id, "s-1", 1).await;
    l.cancel_job(a.id, 2).await.unwrap();
    let refused = l.retry_job(a.id, 3).await.unwrap_err().to_string();
    assert!(refused.contains("has not ended yet"), "{refused}");
    let (ev, body) = event("e-1", "s-1", &name, "FINISHED");
    l.apply_event(&ev, None, None, &body, 4).await.unwrap();
    let attempts = l.attempts(a.id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Finished, "its true end");
    assert_eq!(l.retry_job(a.id, 5).await.unwrap(), JobState::Ready);
}

/// Issue 7.2: a timeout marks the attempt; its real end closes it, and a
/// failure then says it timed out.
async fn a_timed_out_attempt_ends_with_its_statement(b: Backend) {
    let (_d, l) = ledger(b).await;
    let mut spec = new_job("t", vec![]);
    spec.timeout_secs = Some(1);
    let a = l.insert_job(&spec, 0).await.unwrap();
    submitted(&l, a.id, "s-t", 0).await;
    assert!(l.timed_out(999).await.unwrap().is_empty());
    assert_eq!(l.timed_out(1_000).await.unwrap().len(), 1);
    assert!(l.mark_timed_out(a.id, 1, 1_000).await.unwrap());
    assert!(!l.mark_timed_out(a.id, 1, 1_001).await.unwrap());
    // Asked once: not listed again while the statement ends.
    assert!(l.timed_out(2_000).await.unwrap().is_empty());
    assert_eq!(l.job(a.id).await.unwrap().state, JobState::Submitted);
    let outcome = redrelay::state::Outcome::Aborted {
        error: "Query cancelled on user's request".into(),
    };
    let d = l
        .apply_reconciled(a.id, "s-t", &outcome, 2_500)
        .await
        .unwrap();
    assert_eq!(d, Disposition::Applied);
    let j = l.job(a.id).await.unwrap();
    // The job failed (its timeout); the attempt keeps the statement's end.
    assert_eq!(j.state, JobState::Failed);
    let error = j.error.unwrap();
    assert!(error.starts_with("timed out after 1 s"), "{error}");
    let attempts = l.attempts(a.id).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Aborted);
    // Applying it again is a duplicate, never a second transition.
    let d = l
        .apply_reconciled(a.id, "s-t", &outcome, 2_600)
        .await
        .unwrap();
    assert_eq!(d, Disposition::Duplicate);
}

/// Issue 7.11: a retry policy that cannot be read fails loudly instead of
/// silently becoming the default.
async fn an_unreadable_retry_policy_is_an_error(b: Backend) {
    let (_d, l) = ledger(b).await;
    let mut spec = new_job("r", vec![]);
    spec.max_attempts = 2;
    spec.retry = Some(serde_json::json!({"initial_secs": "soon"}));
    let a = l.insert_job(&spec, 0).await.unwrap();
    let name = submitted(&l, a.id, "s-r", 0).await;
    let (ev, body) = event("e-r", "s-r", &name, "FAILED");
    let err = l
        .apply_event(&ev, Some("x"), None, &body, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("retry policy"), "{err}");
    // Nothing was half-applied.
    assert_eq!(l.job(a.id).await.unwrap().state, JobState::Submitted);
}

/// Issue 7.12: the first result row is kept in the ledger for upstream
/// parameters; issue 7.8: retention prunes old inbox rows and result files
/// of ended jobs, never of a job that has not ended.
async fn first_rows_are_kept_and_retention_prunes_only_what_ended(b: Backend) {
    let (dir, l) = ledger(b).await;
    let a = l.insert_job(&new_job("a", vec![]), 0).await.unwrap();
    let b = l.insert_job(&new_job("b", vec![]), 0).await.unwrap();
    let name = submitted(&l, a.id, "s-a", 0).await;
    submitted(&l, b.id, "s-b", 0).await;
    let (ev, body) = event("e-a", "s-a", &name, "FINISHED");
    l.apply_event(&ev, None, None, &body, 100).await.unwrap();
    let job_dir = dir.path().join("results/job-a");
    std::fs::create_dir_all(&job_dir).unwrap();
    let csv = job_dir.join("result.csv");
    let jsonl = job_dir.join("result.jsonl");
    std::fs::write(&csv, "n\n7\n").unwrap();
    std::fs::write(&jsonl, "{\"n\":7}\n").unwrap();
    let file = redrelay::ledger::ResultFile {
        sub: 0,
        statement_id: "s-a".into(),
        rows: 1,
        csv_path: csv.display().to_string(),
        jsonl_path: jsonl.display().to_string(),
    };
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str("{\"n\":7}").unwrap();
    l.record_results(
        a.id,
        &[file],
        Some(&job_dir.display().to_string()),
        Some(&row),
        200,
    )
    .await
    .unwrap();
    assert_eq!(l.first_row(a.id).await.unwrap(), Some(row));
    assert_eq!(l.first_row(b.id).await.unwrap(), None);
    // Nothing is older than the cutoff yet.
    let none = l.prune(50, 1_000).await.unwrap();
    assert_eq!((none.events, none.jobs), (0, 0));
    let pruned = redrelay::worker::prune(&l, std::time::Duration::from_millis(100), 1_000)
        .await
        .unwrap();
    assert_eq!(
        (pruned.events, pruned.jobs, pruned.files_deleted),
        (1, 1, 3)
    );
    assert!(!csv.exists() && !jsonl.exists() && !job_dir.exists());
    assert!(l.results(a.id).await.unwrap().is_empty());
    assert!(l.inbox(10).await.unwrap().is_empty());
    let a = l.job(a.id).await.unwrap();
    assert_eq!(a.results_pruned_at, Some(1_000));
    // b has not ended: untouched.
    assert_eq!(l.job(b.id).await.unwrap().state, JobState::Submitted);
    let (_, violations) = l.check().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

/// Issue 7.10: the transitions the ledger makes are those of the state
/// table: READY and RETRY_WAIT jobs below a failed job are SKIPPED, and the
/// table says so.
async fn skips_follow_the_transition_table(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("a", vec![]), 0).await.unwrap();
    let b = l.insert_job(&new_job("b", vec![a.id]), 0).await.unwrap();
    let name = submitted(&l, a.id, "s-a", 0).await;
    let (ev, body) = event("e-a", "s-a", &name, "FAILED");
    l.apply_event(&ev, Some("boom"), None, &body, 1)
        .await
        .unwrap();
    let b = l.job(b.id).await.unwrap();
    assert_eq!(b.state, JobState::Skipped);
    for from in JobState::sources_of(JobState::Skipped) {
        assert!(from.can_move_to(JobState::Skipped));
    }
    assert!(JobState::Ready.can_move_to(JobState::Skipped));
    assert!(JobState::RetryWait.can_move_to(JobState::Skipped));
    assert!(!JobState::Submitted.can_move_to(JobState::Skipped));
}

/// Issue 9.5: each fire time of a schedule fires once, whoever fires it
/// (two leaders racing on one ledger), and `overlap = skip` records a skip
/// while the schedule's previous run is RUNNING.
async fn a_schedule_fires_each_time_once_and_skips_overlaps(b: Backend) {
    let (_d, l) = ledger(b).await;
    l.put_schedule("nightly", "name = \"nightly\"", "{}", 1_000)
        .await
        .unwrap();
    let jobs = vec![run_job("load", vec![])];
    let (x, y) = tokio::join!(
        l.fire_schedule("nightly", 60_000, "nightly", &jobs, true, 60_001),
        l.fire_schedule("nightly", 60_000, "nightly", &jobs, true, 60_002),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let runs: Vec<&Fired> = [&x, &y]
        .into_iter()
        .filter(|f| matches!(f, Fired::Run(_)))
        .collect();
    assert_eq!(runs.len(), 1, "{x:?} {y:?}");
    assert!(
        matches!(x, Fired::Already) || matches!(y, Fired::Already),
        "{x:?} {y:?}"
    );
    assert_eq!(l.runs().await.unwrap().len(), 1);
    // The next time, while that run is RUNNING: skipped, and recorded.
    let skipped = l
        .fire_schedule("nightly", 120_000, "nightly", &jobs, true, 120_001)
        .await
        .unwrap();
    assert!(matches!(skipped, Fired::Skipped(_)), "{skipped:?}");
    assert_eq!(l.runs().await.unwrap().len(), 1);
    // Firing that time again is nothing; `allow` runs alongside.
    let again = l
        .fire_schedule("nightly", 120_000, "nightly", &jobs, false, 120_002)
        .await
        .unwrap();
    assert_eq!(again, Fired::Already);
    let allowed = l
        .fire_schedule("nightly", 180_000, "nightly", &jobs, false, 180_001)
        .await
        .unwrap();
    assert!(matches!(allowed, Fired::Run(_)), "{allowed:?}");
    assert_eq!(l.runs().await.unwrap().len(), 2);
    let fires = l.schedule_fires("nightly", 10).await.unwrap();
    assert_eq!(fires.len(), 3);
    assert!(
        fires[1].2.as_deref().unwrap_or("").starts_with("skipped"),
        "{fires:?}"
    );
    let s = &l.schedules().await.unwrap()[0];
    assert_eq!(s.last_fired_at, Some(180_000));
    // Pause keeps its start; resume counts from then.
    assert!(l
        .set_schedule_paused("nightly", true, 200_000)
        .await
        .unwrap());
    assert!(l
        .set_schedule_paused("nightly", false, 300_000)
        .await
        .unwrap());
    let s = &l.schedules().await.unwrap()[0];
    assert_eq!((s.paused, s.effective_since), (false, 300_000));
    assert!(!l.set_schedule_paused("nope", true, 1).await.unwrap());
    assert!(l.remove_schedule("nightly").await.unwrap());
    assert!(l.schedules().await.unwrap().is_empty());
}

/// An SQS batch in one transaction: each event as `apply_event` would
/// (applied, duplicate within the batch, foreign); a job with no result set
/// (HasResultSet false at submission) needs no fetch.
async fn a_batch_of_events_applies_in_one_transaction(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("a", vec![]), 1).await.unwrap();
    let c = l.insert_job(&new_job("c", vec![a.id]), 1).await.unwrap();
    let t = l.begin_attempt(a.id, 2).await.unwrap().unwrap();
    let answer = Accepted {
        id: "s-a".into(),
        has_result_set: Some(false),
        session_id: None,
    };
    l.mark_submitted(a.id, t.attempt, &answer, Default::default(), 2)
        .await
        .unwrap();
    let (e1, b1) = event("e1", "s-a", &t.statement_name, "FINISHED");
    let (e2, b2) = event("e2", "s-other", "someone-else", "FINISHED");
    let batch = [
        (&e1, None, Some("m1"), b1.as_str()),
        (&e1, None, Some("m1"), b1.as_str()),
        (&e2, None, Some("m2"), b2.as_str()),
    ];
    let out = l.apply_events(&batch, 3).await.unwrap();
    let dispositions: Vec<Disposition> = out.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        dispositions,
        vec![
            Disposition::Applied,
            Disposition::Duplicate,
            Disposition::Foreign
        ]
    );
    let a2 = l.job(a.id).await.unwrap();
    assert_eq!(a2.state, JobState::Finished);
    assert_eq!(a2.has_result_set, Some(false));
    assert_eq!(a2.result_state, Some(ResultState::None));
    assert_eq!(l.job(c.id).await.unwrap().state, JobState::Ready);
}

/// A FAILED event that comes before its statement id is recorded keeps
/// its error text (DescribeStatement's) until it is applied.
async fn a_deferred_failure_keeps_its_error_text(b: Backend) {
    let (_d, l) = ledger(b).await;
    let a = l.insert_job(&new_job("a", vec![]), 1).await.unwrap();
    let t = l.begin_attempt(a.id, 2).await.unwrap().unwrap();
    let (ev, body) = event("e1", "s-early", &t.statement_name, "FAILED");
    let (d, _) = l
        .apply_event(&ev, Some("no such table: t"), Some("m1"), &body, 3)
        .await
        .unwrap();
    assert_eq!(d, Disposition::Deferred);
    let applied = l
        .mark_submitted(
            a.id,
            t.attempt,
            &Accepted::id("s-early"),
            Default::default(),
            4,
        )
        .await
        .unwrap();
    assert_eq!(applied, vec![Disposition::Applied]);
    let job = l.job(a.id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error.as_deref(), Some("no such table: t"));
}

/// Issue 12: every state change of a job or a run is a row of `changes`
/// (written by triggers, whoever changed it), read in order by the API's
/// event stream; the API's pages and filters.
async fn state_changes_are_recorded_in_order_and_pages_filter(b: Backend) {
    let (_d, l) = ledger(b).await;
    let before = l.last_change().await.unwrap();
    let (run, ids) = l
        .create_run("p", &[run_job("a", vec![]), run_job("b", vec![0])], 10)
        .await
        .unwrap();
    let (a, bj) = (ids[0], ids[1]);
    let name = submitted(&l, a, "s-a", 11).await;
    let (ev, body) = event("e1", "s-a", &name, "FINISHED");
    l.apply_event(&ev, None, None, &body, 12).await.unwrap();
    l.cancel_run(&run, 13).await.unwrap();
    let other = l.insert_job(&new_job("other", vec![]), 14).await.unwrap();

    // On PostgreSQL a change is delivered once every transaction before it
    // on the server has ended (other tests' too): wait for the last one.
    let mut all = l.changes(before, None, 100).await.unwrap();
    for _ in 0..100 {
        if all.iter().any(|c| c.job_id == Some(other.id)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        all = l.changes(before, None, 100).await.unwrap();
    }
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    let seen: Vec<(String, Option<i64>, String)> = l
        .changes(before, Some(&run), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.job_id, c.state))
        .collect();
    let job = |id: i64, s: &str| ("job".to_string(), Some(id), s.to_string());
    let run_at = |s: &str| ("run".to_string(), None, s.to_string());
    // The run first, then its jobs as inserted; a's attempt, its end, b
    // released, then the cancel (b CANCELLED and the run, one transaction).
    assert_eq!(seen[0], run_at("RUNNING"), "{seen:?}");
    for want in [
        job(a, "READY"),
        job(bj, "PENDING"),
        job(a, "SUBMITTED"),
        job(a, "FINISHED"),
        job(bj, "READY"),
        job(bj, "CANCELLED"),
        run_at("CANCELLED"),
    ] {
        assert!(seen.contains(&want), "{want:?} missing from {seen:?}");
    }
    let pos = |w: &(String, Option<i64>, String)| seen.iter().position(|x| x == w).unwrap();
    assert!(pos(&job(a, "SUBMITTED")) < pos(&job(a, "FINISHED")));
    assert!(pos(&job(a, "FINISHED")) <= pos(&job(bj, "READY")));
    assert!(
        !seen.iter().any(|c| c.1 == Some(other.id)),
        "another job is not the run's"
    );
    let named = l.changes(before, Some(&run), 100).await.unwrap();
    assert!(named
        .iter()
        .filter(|c| c.job_id == Some(a))
        .all(|c| c.name.as_deref() == Some("a")));
    assert_eq!(l.last_change().await.unwrap(), all.last().unwrap().seq);

    // Pages: newest first, filters, cursors.
    let page = l
        .runs_page(&redrelay::ledger::RunsFilter {
            state: Some(RunState::Cancelled),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![run.as_str()]
    );
    let none = l
        .runs_page(&redrelay::ledger::RunsFilter {
            since: Some(11),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    let counts = l.run_job_counts(std::slice::from_ref(&run)).await.unwrap();
    assert!(
        counts.contains(&(run.clone(), JobState::Finished, 1)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&(run.clone(), JobState::Cancelled, 1)),
        "{counts:?}"
    );
    let first = l
        .jobs_page(&redrelay::ledger::JobsFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![other.id, bj]
    );
    let next = l
        .jobs_page(&redrelay::ledger::JobsFilter {
            before: Some(bj),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a]);
    let applied = l.inbox_by(Some(Disposition::Applied), 10).await.unwrap();
    assert_eq!(applied.len(), 1);
    assert!(l
        .inbox_by(Some(Disposition::Foreign), 10)
        .await
        .unwrap()
        .is_empty());

    // Retention removes old change rows with the rest.
    l.prune(i64::MAX, 20).await.unwrap();
    assert!(l.changes(0, None, 10).await.unwrap().is_empty());
}

async fn the_registry_names_every_table_and_column(b: Backend) {
    let (_d, l) = ledger(b).await;
    let schema = l.schema().await.unwrap();
    assert!(schema.len() > 50, "{schema:?}");
    assert_eq!(
        redrelay::ledger::tables::drift(&schema),
        Vec::<String>::new(),
        "the migrations and src/ledger/tables.rs disagree"
    );
}

/// `ledger migrate` writes a dump into an empty PostgreSQL ledger: every
/// table of the registry arrives whole (counts and checksums equal), ids
/// continue after the copied ones, and the copy passes `ledger check`.
async fn a_migration_copies_every_table(b: Backend) {
    let (_d, source) = ledger(b).await;
    let run_jobs = vec![run_job("stage", vec![]), run_job("merge", vec![0])];
    let (_run, ids) = source.create_run("nightly", &run_jobs, 1).await.unwrap();
    let name = submitted(&source, ids[0], "s-stage", 2).await;
    let (ev, body) = event("e-stage", "s-stage", &name, "FINISHED");
    source
        .apply_event(&ev, None, Some("m1"), &body, 3)
        .await
        .unwrap();
    let file = redrelay::ledger::ResultFile {
        sub: 0,
        statement_id: "s-stage".into(),
        rows: 2,
        csv_path: "/tmp/x.csv".into(),
        jsonl_path: String::new(),
    };
    let mut first = serde_json::Map::new();
    first.insert("n".into(), serde_json::json!(2));
    source
        .record_results(ids[0], &[file], Some("/tmp"), Some(&first), 4)
        .await
        .unwrap();
    source
        .put_schedule(
            "nightly",
            "name = \"nightly\"",
            "{\"a.sql\": \"select 1\"}",
            5,
        )
        .await
        .unwrap();
    source
        .set_schedule_paused("nightly", true, 6)
        .await
        .unwrap();
    source
        .fire_schedule("nightly", 60_000, "nightly", &run_jobs, false, 7)
        .await
        .unwrap();
    source.cancel_job(ids[1], 8).await.unwrap();
    source
        .put_trigger("loads", "name = \"loads\"", "{}", 9)
        .await
        .unwrap();
    let taken = source
        .take_trigger_event(
            redrelay::ledger::TakenEvent {
                trigger: "loads",
                dedupe_key: "id:e-1",
                event_id: Some("e-1"),
                body: "{\"id\": \"e-1\"}",
                params: "{\"key\": \"sales/a.csv\"}",
            },
            Ok(("loads", &run_jobs)),
            redrelay::ledger::Admission {
                max_active: None,
                skip_when_busy: false,
                drop_when_paused: false,
                batch_window_ms: None,
            },
            10,
        )
        .await
        .unwrap();
    assert!(
        matches!(taken, redrelay::ledger::Taken::Started(_)),
        "{taken:?}"
    );
    let dump = source.dump().await.unwrap();
    let (_d2, target) = ledger(Backend::Postgres).await;
    target.restore(&dump).await.unwrap();
    let (from, into) = (
        source.summaries().await.unwrap(),
        target.summaries().await.unwrap(),
    );
    assert_eq!(from, into);
    for s in &from {
        assert!(
            s.rows > 0,
            "table {} is empty: the test fills every table",
            s.table
        );
    }
    let names: Vec<&str> = from.iter().map(|s| s.table).collect();
    for t in redrelay::ledger::tables::TABLES {
        assert_eq!(names.contains(&t.name), t.copied(), "{}", t.name);
    }
    let max = source.jobs(None, None).await.unwrap().last().unwrap().id;
    let next = target
        .insert_job(&new_job("after", vec![]), 9)
        .await
        .unwrap();
    assert!(next.id > max, "{} after {max}", next.id);
    let (_, violations) = target.check().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

/// Each end of a job or a run writes one own event, in its transaction,
/// whoever ends it: a statement without a result set (nothing to fetch),
/// an operator's cancel, the run's end. No process setting is involved.
async fn every_end_writes_one_own_event(b: Backend) {
    let (_d, l) = ledger(b).await;
    let own = |l: Ledger| async move {
        let rows = l.outbox_pending(1000).await.unwrap();
        rows.into_iter()
            .map(|(_, _, kind, detail)| {
                let d: serde_json::Value = serde_json::from_str(&detail).unwrap();
                (
                    kind,
                    d["job_id"].as_i64(),
                    d["run_id"].as_str().map(str::to_string),
                    d["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let run_jobs = vec![run_job("load", vec![]), run_job("merge", vec![0])];
    let (run, ids) = l.create_run("p", &run_jobs, 1).await.unwrap();
    let t = l.begin_attempt(ids[0], 2).await.unwrap().unwrap();
    let accepted = Accepted {
        id: "s-load".into(),
        has_result_set: Some(false),
        session_id: None,
    };
    l.mark_submitted(ids[0], t.attempt, &accepted, Default::default(), 2)
        .await
        .unwrap();
    let (ev, body) = event("e-load", "s-load", &t.statement_name, "FINISHED");
    l.apply_event(&ev, None, None, &body, 3).await.unwrap();
    assert_eq!(
        l.job(ids[0]).await.unwrap().result_state,
        Some(ResultState::None)
    );
    let events = own(l.clone()).await;
    assert_eq!(
        events,
        vec![(
            "Job State Change".to_string(),
            Some(ids[0]),
            Some(run.clone()),
            "FINISHED".to_string()
        )],
        "a load without a result set announces its end"
    );
    l.cancel_job(ids[1], 4).await.unwrap();
    let events = own(l.clone()).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(
        events[1],
        (
            "Job State Change".to_string(),
            Some(ids[1]),
            Some(run.clone()),
            "CANCELLED".to_string()
        )
    );
    assert_eq!(
        events[2],
        (
            "Run State Change".to_string(),
            None,
            Some(run),
            "FAILED".to_string()
        )
    );
}

/// A cancel of a run while events end its jobs on other connections: one
/// transaction waits for the other (no deadlock, no error but the run's
/// own conflict), and the ledger's invariants hold after each round.
async fn a_run_cancel_during_its_events_takes_turns(b: Backend) {
    let (_d, l) = ledger(b).await;
    for round in 0..8 {
        let mut run_jobs = vec![run_job("root", vec![])];
        for i in 0..12 {
            run_jobs.push(redrelay::ledger::RunJob {
                job: new_job(&format!("leaf{i}"), vec![]),
                deps: if i % 2 == 0 { vec![0] } else { vec![] },
                upstream: vec![],
            });
        }
        let (run, ids) = l.create_run("wide", &run_jobs, 1).await.unwrap();
        let mut events = Vec::new();
        for id in &ids {
            if let Some(t) = l.begin_attempt(*id, 2).await.unwrap() {
                let sid = format!("s-{round}-{id}");
                l.mark_submitted(*id, t.attempt, &Accepted::id(&sid), Default::default(), 2)
                    .await
                    .unwrap();
                events.push(event(
                    &format!("e-{round}-{id}"),
                    &sid,
                    &t.statement_name,
                    "FINISHED",
                ));
            }
        }
        let mut tasks = Vec::new();
        for (ev, body) in events {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                l.apply_event(&ev, None, None, &body, 3).await.map(|_| ())
            }));
        }
        let cancel = {
            let (l, run) = (l.clone(), run.clone());
            tokio::spawn(async move { l.cancel_run(&run, 3).await.map(|_| ()) })
        };
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        match cancel.await.unwrap() {
            Ok(()) | Err(LedgerError::RunConflict { .. }) => {}
            Err(e) => panic!("round {round}: the cancel failed: {e}"),
        }
        let (_, violations) = l.check().await.unwrap();
        assert!(violations.is_empty(), "round {round}: {violations:?}");
    }
}

/// An operator's run now is a firing of its own: the schedule's last fire
/// time stays, so a time that was due (a catch-up backlog, a time due
/// during a leader change) still fires once, and fire times fired out of
/// order leave the latest as the last.
async fn running_a_schedule_now_leaves_its_fire_times_alone(b: Backend) {
    let (_d, l) = ledger(b).await;
    l.put_schedule("nightly", "name = \"nightly\"", "{}", 1_000)
        .await
        .unwrap();
    let jobs = vec![run_job("load", vec![])];
    l.fire_schedule("nightly", 60_000, "nightly", &jobs, false, 60_001)
        .await
        .unwrap();
    let now = l
        .run_schedule_now("nightly", "nightly", &jobs, 500_000)
        .await
        .unwrap();
    assert!(matches!(now, Fired::Run(_)), "{now:?}");
    let s = l.schedules().await.unwrap().remove(0);
    assert_eq!(
        s.last_fired_at,
        Some(60_000),
        "the run now is not a fire time"
    );
    // The times due since still fire, each once, in any order.
    for t in [180_000, 120_000] {
        let f = l
            .fire_schedule("nightly", t, "nightly", &jobs, false, 500_001)
            .await
            .unwrap();
        assert!(matches!(f, Fired::Run(_)), "{t}: {f:?}");
    }
    let s = l.schedules().await.unwrap().remove(0);
    assert_eq!(s.last_fired_at, Some(180_000));
    let fires = l.schedule_fires("nightly", 10).await.unwrap();
    assert_eq!(fires.len(), 4, "{fires:?}");
    assert!(
        fires
            .iter()
            .any(|(t, _, note)| *t == 500_000 && note.as_deref() == Some("run now by an operator")),
        "{fires:?}"
    );
}

/// Each test of the suite, once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

conformance!(
    a_batch_of_events_applies_in_one_transaction,
    a_deferred_failure_keeps_its_error_text,
    a_schedule_fires_each_time_once_and_skips_overlaps,
    finished_event_releases_dependents_once,
    an_event_before_its_statement_id_is_deferred_then_applied,
    unknown_statements_are_foreign,
    failure_skips_everything_downstream_but_not_other_branches,
    retries_wait_then_use_a_new_token_and_old_events_are_stale,
    a_crashed_submission_resumes_with_the_same_token,
    a_cancel_during_a_submission_keeps_its_token_for_the_retry,
    a_cancel_during_a_call_records_its_answer_and_a_retry_waits,
    failing_a_ready_job_closes_its_open_attempt,
    run_changes_are_guarded_on_the_old_state,
    a_retry_waits_for_the_previous_statement_to_end,
    a_timed_out_attempt_ends_with_its_statement,
    an_unreadable_retry_policy_is_an_error,
    first_rows_are_kept_and_retention_prunes_only_what_ended,
    skips_follow_the_transition_table,
    state_changes_are_recorded_in_order_and_pages_filter,
    the_registry_names_every_table_and_column,
    a_migration_copies_every_table,
    every_end_writes_one_own_event,
    a_run_cancel_during_its_events_takes_turns,
    running_a_schedule_now_leaves_its_fire_times_alone,
    a_trigger_takes_each_event_once_and_queues_past_its_limit,
    a_batch_of_trigger_events_starts_one_run,
);

/// Issue 18: with a batch window every event waits; one run starts for
/// the events of the window, each STARTED with it, and `ledger check`
/// passes.
async fn a_batch_of_trigger_events_starts_one_run(b: Backend) {
    use redrelay::ledger::{Admission, Taken, TakenEvent};
    let (_d, l) = ledger(b).await;
    let jobs = vec![run_job("load", vec![])];
    l.put_trigger("files", "name = \"files\"", "{}", 1)
        .await
        .unwrap();
    let a = Admission {
        max_active: None,
        skip_when_busy: false,
        drop_when_paused: false,
        batch_window_ms: Some(3000),
    };
    for (key, at) in [("k1", 10), ("k2", 20), ("k3", 5000)] {
        let taken = l
            .take_trigger_event(
                TakenEvent {
                    trigger: "files",
                    dedupe_key: key,
                    event_id: Some(key),
                    body: "{}",
                    params: "{}",
                },
                Ok(("files", &jobs)),
                a,
                at,
            )
            .await
            .unwrap();
        assert!(matches!(taken, Taken::Waiting(_)), "{taken:?}");
    }
    let batch = l.waiting_trigger_batch("files", 10, 3010).await.unwrap();
    let seqs: Vec<i64> = batch.iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len(), 2, "k1 and k2, not k3");
    let run = l
        .start_trigger_batch("files", &seqs, Ok(("files", &jobs)), a, 3100)
        .await
        .unwrap()
        .expect("a run for the batch");
    // Taken once: a second start finds them started.
    assert_eq!(
        l.start_trigger_batch("files", &seqs, Ok(("files", &jobs)), a, 3200)
            .await
            .unwrap(),
        None
    );
    let counts = l.trigger_event_counts("files").await.unwrap();
    assert_eq!(
        counts,
        vec![("STARTED".to_string(), 2), ("WAITING".to_string(), 1)]
    );
    assert_eq!(
        l.trigger_event_of_run(&run)
            .await
            .unwrap()
            .unwrap()
            .dedupe_key,
        "k1"
    );
    let (_, problems) = l.check().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

/// Issue 18: a trigger's event is recorded once per dedupe key with its
/// run; past `max_active_runs` events wait in order (or are skipped), a
/// paused trigger keeps (or drops) them, and the oldest waiting one starts
/// once a run ends.
async fn a_trigger_takes_each_event_once_and_queues_past_its_limit(b: Backend) {
    use redrelay::ledger::{Admission, Taken, TakenEvent};
    let (_d, l) = ledger(b).await;
    let jobs = vec![run_job("load", vec![])];
    l.put_trigger("loads", "name = \"loads\"", "{}", 1)
        .await
        .unwrap();
    let queue = Admission {
        max_active: Some(1),
        skip_when_busy: false,
        drop_when_paused: false,
        batch_window_ms: None,
    };
    let take = |key: &'static str, a: Admission| {
        let l = &l;
        let jobs = &jobs;
        async move {
            l.take_trigger_event(
                TakenEvent {
                    trigger: "loads",
                    dedupe_key: key,
                    event_id: Some(key),
                    body: "{}",
                    params: "{}",
                },
                Ok(("loads", jobs)),
                a,
                2,
            )
            .await
            .unwrap()
        }
    };
    let Taken::Started(first) = take("k1", queue).await else {
        panic!("the first event starts its run");
    };
    assert_eq!(
        take("k1", queue).await,
        Taken::Duplicate("STARTED".into(), Some(first.clone()))
    );
    assert!(matches!(take("k2", queue).await, Taken::Waiting(_)));
    assert!(matches!(take("k3", queue).await, Taken::Waiting(_)));
    let skip = Admission {
        skip_when_busy: true,
        ..queue
    };
    assert!(matches!(take("k4", skip).await, Taken::NotStarted(w) if w.starts_with("skipped")));
    // Nothing starts while the first run is RUNNING.
    let waiting = l.next_waiting_trigger_events().await.unwrap();
    assert_eq!(waiting.len(), 1, "the oldest of the trigger");
    assert_eq!(waiting[0].dedupe_key, "k2");
    assert_eq!(
        l.start_waiting_trigger_event(waiting[0].seq, Ok(("loads", &jobs)), queue, 3)
            .await
            .unwrap(),
        None
    );
    // Its run ends: k2 (not k3) starts.
    let (_, _) = l.cancel_run(&first, 4).await.unwrap();
    let run2 = l
        .start_waiting_trigger_event(waiting[0].seq, Ok(("loads", &jobs)), queue, 5)
        .await
        .unwrap();
    assert!(run2.is_some());
    let next = l.next_waiting_trigger_events().await.unwrap();
    assert_eq!(next[0].dedupe_key, "k3");
    // Paused: kept (waiting, none listed to start) or dropped.
    assert!(l.set_trigger_paused("loads", true, 6).await.unwrap());
    assert!(matches!(
        take(
            "k5",
            Admission {
                max_active: None,
                ..queue
            }
        )
        .await,
        Taken::Waiting(_)
    ));
    let drop = Admission {
        drop_when_paused: true,
        ..queue
    };
    assert!(matches!(take("k6", drop).await, Taken::NotStarted(w) if w.starts_with("dropped")));
    assert!(l.next_waiting_trigger_events().await.unwrap().is_empty());
    // Counted by state; a removed trigger takes nothing.
    let counts = l.trigger_event_counts("loads").await.unwrap();
    assert_eq!(
        counts,
        vec![
            ("DROPPED".to_string(), 1),
            ("SKIPPED".to_string(), 1),
            ("STARTED".to_string(), 2),
            ("WAITING".to_string(), 2),
        ]
    );
    assert!(l.remove_trigger("loads", 7).await.unwrap());
    assert_eq!(take("k7", queue).await, Taken::NoTrigger);
    let ev = l.trigger_event_of_run(&first).await.unwrap().unwrap();
    assert_eq!(ev.dedupe_key, "k1");
}

/// Issue 17.7: on PostgreSQL a change's sequence number is taken before
/// its transaction commits. A stream that goes on from the last change it
/// sent must still see a change committed after hundreds of later ones,
/// once, and never a change of a transaction still running.
#[tokio::test]
async fn on_postgres_a_change_committed_late_is_streamed_once() {
    use sqlx::Connection;
    let pg = common::pg::postgres().await;
    let location = redrelay::ledger::location::parse(&pg.url, None, |_| None).unwrap();
    let l = Ledger::connect(&location, 5).await.unwrap();
    // The slow transaction: a change row written, not committed yet.
    let mut slow = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    sqlx::query(
        "INSERT INTO changes (kind, run_id, state, at) VALUES ('run', 'r-late', 'RUNNING', 0)",
    )
    .execute(&mut slow)
    .await
    .unwrap();
    for i in 0..250 {
        l.insert_job(&new_job(&format!("j{i}"), vec![]), 1)
            .await
            .unwrap();
    }
    let mut sent = Vec::new();
    let mut cursor = 0;
    loop {
        let rows = l.changes(cursor, None, 100).await.unwrap();
        let Some(last) = rows.last() else { break };
        cursor = last.seq;
        sent.extend(rows);
    }
    assert!(
        sent.is_empty(),
        "nothing behind a running transaction is sent: {} sent",
        sent.len()
    );
    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    // Other tests' transactions on the same server may hold the stream
    // back a moment (never lose a row): read until all arrived.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sent.len() < 251 && std::time::Instant::now() < deadline {
        let rows = l.changes(cursor, None, 100).await.unwrap();
        let Some(last) = rows.last() else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        cursor = last.seq;
        sent.extend(rows);
    }
    assert_eq!(sent.len(), 251);
    assert_eq!(sent[0].run_id.as_deref(), Some("r-late"), "commit order");
    let mut seqs: Vec<i64> = sent.iter().map(|c| c.seq).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 251, "each change once");
}

//! The ledger's transitions on a real SQLite file: events applied once,
//! early events deferred, stale attempts kept apart, failures propagated,
//! retries promoted by an injected clock.

use redrelay::event::{parse, Origin, StatusEvent};
use redrelay::ledger::{statement_name, Disposition, Ledger, LedgerError, NewJob, Target};
use redrelay::state::JobState;

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

async fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("l.db")).await.unwrap();
    (dir, l)
}

async fn submitted(l: &Ledger, job: i64, sid: &str, now: i64) -> String {
    let t = l.begin_attempt(job, now).await.unwrap().unwrap();
    l.mark_submitted(job, t.attempt, sid, now).await.unwrap();
    t.statement_name
}

#[tokio::test]
async fn finished_event_releases_dependents_once() {
    let (_d, l) = ledger().await;
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
    assert_eq!(a2.result_state.as_deref(), Some("PENDING"));
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

#[tokio::test]
async fn an_event_before_its_statement_id_is_deferred_then_applied() {
    let (_d, l) = ledger().await;
    let a = l.insert_job(&new_job("early", vec![]), 1).await.unwrap();
    let t = l.begin_attempt(a.id, 2).await.unwrap().unwrap();
    assert_eq!(t.statement_name, statement_name("early", &a.uid));
    // The event overtakes the submitter's ledger write.
    let (ev, body) = event("e1", "s-early", &t.statement_name, "FINISHED");
    let (d, job) = l.apply_event(&ev, None, None, &body, 3).await.unwrap();
    assert_eq!((d, job), (Disposition::Deferred, Some(a.id)));
    assert_eq!(l.job(a.id).await.unwrap().state, JobState::Ready);
    let applied = l
        .mark_submitted(a.id, t.attempt, "s-early", 4)
        .await
        .unwrap();
    assert_eq!(applied, vec![Disposition::Applied]);
    assert_eq!(l.job(a.id).await.unwrap().state, JobState::Finished);
    let events = l.events(10).await.unwrap();
    assert_eq!(events[0].disposition, "applied");
}

#[tokio::test]
async fn unknown_statements_are_foreign() {
    let (_d, l) = ledger().await;
    let (ev, body) = event("e1", "not-ours", "someone/else", "FINISHED");
    let (d, job) = l.apply_event(&ev, None, None, &body, 1).await.unwrap();
    assert_eq!((d, job), (Disposition::Foreign, None));
    // Received again (on_foreign = "leave"): still foreign, not a duplicate.
    let (d, _) = l.apply_event(&ev, None, None, &body, 2).await.unwrap();
    assert_eq!(d, Disposition::Foreign);
    assert_eq!(l.events(10).await.unwrap().len(), 1, "recorded once");
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

#[tokio::test]
async fn failure_skips_everything_downstream_but_not_other_branches() {
    let (_d, l) = ledger().await;
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
    assert_eq!(attempts[0].state, "FAILED");
}

#[tokio::test]
async fn retries_wait_then_use_a_new_token_and_old_events_are_stale() {
    let (_d, l) = ledger().await;
    let mut spec = new_job("flaky", vec![]);
    spec.max_attempts = 3;
    spec.retry = Some(
        serde_json::json!({"initial_secs": 10.0, "max_secs": 60.0, "multiplier": 2.0, "jitter": 0.0}),
    );
    let a = l.insert_job(&spec, 0).await.unwrap();
    let t1 = l.begin_attempt(a.id, 0).await.unwrap().unwrap();
    l.mark_submitted(a.id, 1, "s1", 0).await.unwrap();
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
    l.mark_submitted(a.id, 2, "s2", 11_001).await.unwrap();
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
    assert_eq!(attempts[1].state, "FINISHED");
}

#[tokio::test]
async fn a_crashed_submission_resumes_with_the_same_token() {
    let (_d, l) = ledger().await;
    let a = l.insert_job(&new_job("crash", vec![]), 0).await.unwrap();
    let t1 = l.begin_attempt(a.id, 0).await.unwrap().unwrap();
    // Crash here: the Data API may have run it, the ledger does not know.
    let t2 = l.begin_attempt(a.id, 5).await.unwrap().unwrap();
    assert_eq!(t1.client_token, t2.client_token);
    assert_eq!(t1.attempt, t2.attempt);
    l.mark_submitted(a.id, t2.attempt, "s", 6).await.unwrap();
    // A second process recording the same idempotent answer is fine...
    l.mark_submitted(a.id, t2.attempt, "s", 7).await.unwrap();
    // ...a different statement for the same attempt is a conflict.
    let err = l
        .mark_submitted(a.id, t2.attempt, "other", 8)
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

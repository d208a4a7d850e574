//! The ledger's invariants, as a pure function over loaded rows (the same
//! for every backend): `redrelay ledger check` and the tests call it.

use super::driver::query;
use super::{AttemptRow, Job, Ledger, Result, Run};
use crate::state::{AttemptState, JobState, RunState};
use std::collections::HashMap;

/// Every violation of the ledger's invariants, one line each. `applied`
/// holds (statement id, state, count) for statements with more than one
/// applied end event.
pub fn violations(
    jobs: &[Job],
    attempts: &[AttemptRow],
    deps: &[(i64, i64)],
    applied: &[(String, String, i64)],
    runs: &[Run],
) -> Vec<String> {
    let mut v = Vec::new();
    let by_id: HashMap<i64, &Job> = jobs.iter().map(|j| (j.id, j)).collect();
    let mut parents: HashMap<i64, Vec<i64>> = HashMap::new();
    for (job, dep) in deps {
        parents.entry(*job).or_default().push(*dep);
    }
    for j in jobs {
        if j.state.is_terminal() != j.finished_at.is_some() {
            v.push(format!(
                "job {}: state {} but finished_at is {}",
                j.id,
                j.state,
                if j.finished_at.is_some() {
                    "set"
                } else {
                    "not set"
                }
            ));
        }
        if (j.state == JobState::Finished) != j.result_state.is_some() {
            v.push(format!(
                "job {}: state {} with result_state {:?}",
                j.id, j.state, j.result_state
            ));
        }
        if j.state == JobState::Submitted && j.statement_id.is_none() {
            v.push(format!("job {}: SUBMITTED without a statement id", j.id));
        }
        if j.state == JobState::RetryWait && j.not_before.is_none() {
            v.push(format!("job {}: RETRY_WAIT without a time to retry", j.id));
        }
        if j.attempt > j.max_attempts {
            v.push(format!(
                "job {}: attempt {} of at most {}",
                j.id, j.attempt, j.max_attempts
            ));
        }
        let ps = parents.get(&j.id).cloned().unwrap_or_default();
        if j.state == JobState::Ready || j.state == JobState::Submitted {
            for p in &ps {
                if by_id.get(p).map(|p| p.state) != Some(JobState::Finished) {
                    v.push(format!(
                        "job {}: {} while its parent job {p} has not FINISHED",
                        j.id, j.state
                    ));
                }
            }
        }
    }
    let mut current: HashMap<i64, i64> = HashMap::new();
    for (job_id, attempt, state, sid, started_at, finished_at) in attempts {
        let Some(j) = by_id.get(job_id) else {
            v.push(format!("attempt {attempt} of missing job {job_id}"));
            continue;
        };
        *current.entry(*job_id).or_default() =
            (*attempt).max(current.get(job_id).copied().unwrap_or(0));
        if *attempt > j.attempt {
            v.push(format!(
                "job {job_id}: attempt {attempt} recorded beyond its current attempt {}",
                j.attempt
            ));
        }
        let ended = state.is_ended();
        if ended != finished_at.is_some() {
            v.push(format!(
                "job {job_id}: attempt {attempt} is {state} but its end time is {:?}",
                finished_at
            ));
        }
        if matches!(
            state,
            AttemptState::Submitted | AttemptState::Finished | AttemptState::Aborted
        ) && sid.is_none()
        {
            v.push(format!(
                "job {job_id}: attempt {attempt} is {state} without a statement id"
            ));
        }
        // A job cancelled while its attempt was being submitted keeps the
        // attempt open until the call's answer is recorded (or a retry
        // resumes it with its ClientToken).
        if *state == AttemptState::Submitting
            && !(matches!(j.state, JobState::Ready | JobState::Cancelled) && j.attempt == *attempt)
        {
            v.push(format!(
                "job {job_id}: attempt {attempt} is SUBMITTING while the job is {} on attempt {}",
                j.state, j.attempt
            ));
        }
        // No dependent submitted before its parents finished.
        for p in parents.get(job_id).cloned().unwrap_or_default() {
            match by_id.get(&p) {
                Some(parent) if parent.state == JobState::Finished => {
                    if let Some(done) = parent.finished_at {
                        if *started_at < done {
                            v.push(format!(
                                "job {job_id}: attempt {attempt} started at {started_at}, before its parent job {p} FINISHED at {done}"
                            ));
                        }
                    }
                }
                Some(parent) => v.push(format!(
                    "job {job_id}: attempt {attempt} exists while its parent job {p} is {}",
                    parent.state
                )),
                None => v.push(format!("job {job_id}: parent job {p} is missing")),
            }
        }
    }
    for j in jobs {
        if j.attempt > 0 && current.get(&j.id).copied() != Some(j.attempt) {
            v.push(format!(
                "job {}: current attempt {} has no attempt row",
                j.id, j.attempt
            ));
        }
        if matches!(j.state, JobState::Submitted) {
            let row = attempts.iter().find(|a| a.0 == j.id && a.1 == j.attempt);
            match row {
                Some(a) if a.2 == AttemptState::Submitted && a.3 == j.statement_id => {}
                other => v.push(format!(
                    "job {}: SUBMITTED but its attempt {} is {:?}",
                    j.id,
                    j.attempt,
                    other.map(|a| a.2)
                )),
            }
        }
    }
    for (sid, state, n) in applied {
        v.push(format!("statement {sid}: {n} {state} events applied"));
    }
    for r in runs {
        let open = jobs
            .iter()
            .any(|j| j.run_id.as_deref() == Some(r.id.as_str()) && !j.state.is_terminal());
        if r.state == RunState::Running && !open {
            v.push(format!("run {}: RUNNING with no job left to run", r.id));
        }
        if matches!(r.state, RunState::Finished | RunState::Failed) && open {
            v.push(format!(
                "run {}: {} while some of its jobs have not ended",
                r.id, r.state
            ));
        }
    }
    v
}

/// A trigger's event as `ledger check` sees it: (seq, trigger, state, its
/// run, that run found).
type TriggerEventLink = (i64, String, String, Option<String>, Option<String>);

impl Ledger {
    /// Checks the ledger's invariants (see [`violations`]):
    /// the number of jobs checked, and one line per violation.
    pub async fn check(&self) -> Result<(usize, Vec<String>)> {
        let jobs = self.jobs(None, None).await?;
        let attempts: Vec<AttemptRow> = query(
            "SELECT job_id, attempt, state, statement_id, started_at, finished_at FROM attempts \
                 ORDER BY job_id, attempt",
        )
        .fetch_all(&self.pool)
        .await?;
        let deps: Vec<(i64, i64)> = query("SELECT job_id, depends_on FROM job_deps")
            .fetch_all(&self.pool)
            .await?;
        let applied: Vec<(String, String, i64)> = query(
            "SELECT statement_id, state, COUNT(*) FROM events WHERE disposition = 'applied' \
                 GROUP BY statement_id, state HAVING COUNT(*) > 1",
        )
        .fetch_all(&self.pool)
        .await?;
        let runs = self.runs().await?;
        let mut v = violations(&jobs, &attempts, &deps, &applied, &runs);
        // A trigger's event: STARTED with a run that exists, any other
        // state without one; a run of one trigger only.
        let events: Vec<TriggerEventLink> = query(
            "SELECT e.seq, e.trigger, e.state, e.run_id, r.id FROM trigger_events e \
             LEFT JOIN runs r ON r.id = e.run_id ORDER BY e.seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut runs_started = std::collections::HashMap::new();
        for (seq, trigger, state, run, found) in &events {
            match (state.as_str(), run, found) {
                ("STARTED", Some(r), Some(_)) => {
                    let first = runs_started.entry(r.clone()).or_insert((*seq, trigger));
                    if first.1 != trigger {
                        v.push(format!(
                            "run {r} was started by trigger event {} of {} and {seq} of {trigger}",
                            first.0, first.1
                        ));
                    }
                }
                ("STARTED", _, _) => v.push(format!(
                    "trigger event {seq} is STARTED but its run {run:?} does not exist"
                )),
                (_, Some(r), _) => {
                    v.push(format!("trigger event {seq} is {state} but names run {r}"))
                }
                _ => {}
            }
        }
        Ok((jobs.len(), v))
    }
}

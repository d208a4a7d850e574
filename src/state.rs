//! The job state machine, pure: no I/O, no clock, no AWS types.
//!
//! Who moves a job in and out of each state:
//! - `Pending`: created with dependencies; the ledger makes it `Ready` in the
//!   transaction that finishes its last parent, or `Skipped` in the one that
//!   fails a parent for good.
//! - `Ready`: the submitter takes it to `Submitted` after the Data API
//!   accepted the statement (throttling leaves it `Ready`).
//! - `Submitted`: a status change event (or the reconciler) ends the attempt.
//! - `RetryWait`: a failed attempt with attempts left waits here for its
//!   backoff; the submitter makes it `Ready` again.
//! - `Finished`, `Failed`, `Aborted`, `Cancelled`, `Skipped`: terminal.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Ready,
    Submitted,
    RetryWait,
    Finished,
    Failed,
    Aborted,
    Cancelled,
    Skipped,
}

impl JobState {
    pub const ALL: [JobState; 9] = [
        JobState::Pending,
        JobState::Ready,
        JobState::Submitted,
        JobState::RetryWait,
        JobState::Finished,
        JobState::Failed,
        JobState::Aborted,
        JobState::Cancelled,
        JobState::Skipped,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Ready => "READY",
            JobState::Submitted => "SUBMITTED",
            JobState::RetryWait => "RETRY_WAIT",
            JobState::Finished => "FINISHED",
            JobState::Failed => "FAILED",
            JobState::Aborted => "ABORTED",
            JobState::Cancelled => "CANCELLED",
            JobState::Skipped => "SKIPPED",
        }
    }

    /// No transition leaves a terminal state (an operator's retry creates a
    /// new attempt explicitly).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished
                | JobState::Failed
                | JobState::Aborted
                | JobState::Cancelled
                | JobState::Skipped
        )
    }

    /// Terminal and not successful: what depends on it will never run.
    pub const fn is_failure(self) -> bool {
        self.is_terminal() && !matches!(self, JobState::Finished)
    }

    /// Whether `self -> to` is an automatic transition of the state
    /// machine (submitter, events, reconciler, operator cancel). The ledger
    /// builds its guards from this table ([`JobState::sources_of`]) and
    /// refuses a transition that is not in it.
    pub fn can_move_to(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Pending, Ready)
                | (Pending, Skipped)
                | (Pending, Cancelled)
                | (Ready, Submitted)
                | (Ready, Failed)
                | (Ready, Skipped)
                | (Ready, Cancelled)
                | (Submitted, Finished)
                | (Submitted, Failed)
                | (Submitted, Aborted)
                | (Submitted, RetryWait)
                | (Submitted, Cancelled)
                | (RetryWait, Ready)
                | (RetryWait, Skipped)
                | (RetryWait, Cancelled)
        )
    }

    /// Every state that may move to `to` ([`JobState::can_move_to`]).
    pub fn sources_of(to: JobState) -> Vec<JobState> {
        JobState::ALL
            .into_iter()
            .filter(|s| s.can_move_to(to))
            .collect()
    }

    /// `'A', 'B'`: states for an SQL `IN (...)` list. Only this module's
    /// fixed names go into SQL text this way, never input.
    pub fn sql_list(states: &[JobState]) -> String {
        states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `'A', 'B'` of every state for which `which` holds: the SQL lists of
    /// terminal, open and failed states come from [`JobState::is_terminal`]
    /// and [`JobState::is_failure`], never from a list written by hand.
    pub fn sql_where(which: fn(JobState) -> bool) -> String {
        let states: Vec<JobState> = JobState::ALL.into_iter().filter(|s| which(*s)).collect();
        JobState::sql_list(&states)
    }

    /// Not terminal: the job may still move (waiting, in flight, or
    /// waiting for a retry).
    pub const fn is_open(self) -> bool {
        !self.is_terminal()
    }
}

impl JobState {
    /// Whether an operator's `jobs retry` may take an ended job to `to`: a
    /// FAILED, ABORTED, CANCELLED or SKIPPED job gets another attempt (READY,
    /// or PENDING while a parent has not finished), and the SKIPPED jobs
    /// below a retried job are revived to PENDING.
    pub fn can_be_revived_to(self, to: JobState) -> bool {
        self.is_failure() && matches!(to, JobState::Ready | JobState::Pending)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// How a statement ended, from an event or from DescribeStatement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Finished { rows: Option<i64> },
    Failed { error: String },
    Aborted { error: String },
}

impl Outcome {
    pub fn state_name(&self) -> &'static str {
        match self {
            Outcome::Finished { .. } => "FINISHED",
            Outcome::Failed { .. } => "FAILED",
            Outcome::Aborted { .. } => "ABORTED",
        }
    }
}

/// A pipeline run's state: RUNNING until none of its jobs can move, then
/// FINISHED (all finished) or FAILED; CANCELLED by an operator.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    Running,
    Finished,
    Failed,
    Cancelled,
}

impl RunState {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "RUNNING",
            RunState::Finished => "FINISHED",
            RunState::Failed => "FAILED",
            RunState::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One submission attempt of a job.
/// - `Submitting`: its ClientToken is chosen and the Data API call may have
///   been made (a crash here resubmits with the same token).
/// - `Submitted`: the Data API accepted it; the statement runs.
/// - `Finished`, `Failed`, `Aborted`: how its statement truly ended.
/// - `Cancelled`: closed before any statement id was known (the job was
///   cancelled, or failed, while this attempt was being submitted).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptState {
    Submitting,
    Submitted,
    Finished,
    Failed,
    Aborted,
    Cancelled,
}

impl AttemptState {
    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptState::Submitting => "SUBMITTING",
            AttemptState::Submitted => "SUBMITTED",
            AttemptState::Finished => "FINISHED",
            AttemptState::Failed => "FAILED",
            AttemptState::Aborted => "ABORTED",
            AttemptState::Cancelled => "CANCELLED",
        }
    }

    /// The attempt is closed: no statement of it can change the job.
    pub const fn is_ended(self) -> bool {
        !matches!(self, AttemptState::Submitting | AttemptState::Submitted)
    }
}

impl fmt::Display for AttemptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result fetching of a FINISHED job: `None` (no result set), `Pending`,
/// `Fetched`, `Expired` (past the Data API's 24 h), `Error`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResultState {
    None,
    Pending,
    Fetched,
    Expired,
    Error,
}

impl ResultState {
    pub const fn as_str(self) -> &'static str {
        match self {
            ResultState::None => "NONE",
            ResultState::Pending => "PENDING",
            ResultState::Fetched => "FETCHED",
            ResultState::Expired => "EXPIRED",
            ResultState::Error => "ERROR",
        }
    }
}

impl fmt::Display for ResultState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Outcome {
    /// The attempt state this outcome closes an attempt with.
    pub fn attempt_state(&self) -> AttemptState {
        match self {
            Outcome::Finished { .. } => AttemptState::Finished,
            Outcome::Failed { .. } => AttemptState::Failed,
            Outcome::Aborted { .. } => AttemptState::Aborted,
        }
    }
}

/// The job state an ended attempt leads to: `Finished`, `RetryWait` while
/// attempts are left, else `Failed` or `Aborted`.
pub fn after_attempt(outcome: &Outcome, attempt: i64, max_attempts: i64) -> JobState {
    match outcome {
        Outcome::Finished { .. } => JobState::Finished,
        _ if attempt < max_attempts => JobState::RetryWait,
        Outcome::Failed { .. } => JobState::Failed,
        Outcome::Aborted { .. } => JobState::Aborted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for st in JobState::ALL {
            assert_eq!(st.as_str().parse::<JobState>().unwrap(), st);
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert!("DONE".parse::<JobState>().is_err());
    }

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobState::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn only_failures_are_revived() {
        for from in JobState::ALL {
            let revivable = from.can_be_revived_to(JobState::Ready);
            assert_eq!(revivable, from.is_failure(), "{from}");
            assert!(!from.can_be_revived_to(JobState::Submitted));
        }
        assert!(!JobState::Finished.can_be_revived_to(JobState::Ready));
    }

    #[test]
    fn every_non_terminal_state_can_end() {
        for from in JobState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(
                JobState::ALL
                    .into_iter()
                    .any(|to| to.is_terminal() && from.can_move_to(to)),
                "{from} cannot end"
            );
        }
    }

    #[test]
    fn attempts_decide_retry_or_failure() {
        let failed = Outcome::Failed { error: "x".into() };
        let aborted = Outcome::Aborted { error: "y".into() };
        let ok = Outcome::Finished { rows: Some(3) };
        assert_eq!(after_attempt(&ok, 1, 1), JobState::Finished);
        assert_eq!(after_attempt(&ok, 1, 3), JobState::Finished);
        assert_eq!(after_attempt(&failed, 1, 1), JobState::Failed);
        assert_eq!(after_attempt(&failed, 1, 3), JobState::RetryWait);
        assert_eq!(after_attempt(&failed, 3, 3), JobState::Failed);
        assert_eq!(after_attempt(&aborted, 2, 3), JobState::RetryWait);
        assert_eq!(after_attempt(&aborted, 3, 3), JobState::Aborted);
        for s in [
            after_attempt(&ok, 1, 1),
            after_attempt(&failed, 1, 2),
            after_attempt(&aborted, 1, 1),
        ] {
            assert!(JobState::Submitted.can_move_to(s));
        }
    }
}

//! Pipeline files (TOML): parsing and validation, pure. A pipeline names
//! its jobs; each has SQL (a string, or a list run as one batch) or a SQL
//! file, target overrides, dependencies, retries, a timeout and parameters.
//! Everything is checked before anything is submitted.
//!
//! A `[schedule]` table makes the pipeline run on a cron schedule (parsed
//! and checked by [`crate::schedule`]); its jobs may take the fire time as
//! the built-in run-time parameter [`SCHEDULED_TIME`].
//!
//! - `file`: the TOML as written (serde types);
//! - `parse`: validation, every problem listed (naming file, job and fix);
//! - `dag`: cycles, ancestors and dependency order of the jobs;
//! - `run_params`: filling run-time parameters and `scheduled_time`;
//! - `plan`: a validated pipeline as the ledger's records of a run
//!   (`Pipeline::plan_run`, how every way of starting a run plans it);
//! - `diagram`: the job graph in Mermaid or Graphviz dot;
//! - `load`: reading a file (and its SQL files) from disk or from a stored
//!   schedule.

mod dag;
mod diagram;
mod file;
mod load;
mod parse;
mod plan;
mod run_params;

pub use diagram::{graph, GraphFormat};
pub use file::{Defaults, JobSpec, ParamSpec, PipelineFile, RetrySpec, SqlSpec};
pub use load::{load, load_for_schedule, parse_stored};
pub use parse::parse;
pub use plan::PlanError;

use crate::domain::Target;
use crate::retry::RetryPolicy;
use crate::schedule::Schedule;
use std::collections::BTreeMap;

/// How long a run's session lives between its statements, by default.
pub const SESSION_KEEP_ALIVE_SECS: i64 = 600;

/// The built-in run-time parameter: the schedule's fire time, RFC 3339 in
/// UTC ("2026-11-28T02:00:00Z"); the time of `pipeline run` when run by
/// hand, unless given with `--param scheduled_time=...`.
pub const SCHEDULED_TIME: &str = "scheduled_time";

/// A parameter once the pipeline is validated and run-time values are in.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Value(String),
    /// A run-time parameter, until [`Pipeline::with_run_params`] fills it.
    RunTime(String),
    Upstream {
        job: String,
        column: String,
    },
}

/// A validated job, ready to be recorded.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub name: String,
    pub sqls: Vec<String>,
    pub target: Target,
    pub depends_on: Vec<String>,
    pub max_attempts: i64,
    pub retry: RetryPolicy,
    pub timeout_secs: Option<u64>,
    /// `Some("AUTO_COMMIT")` for a batch run with execution_mode = "auto_commit".
    pub execution_mode: Option<&'static str>,
    pub result_formats: Option<crate::domain::ResultFormats>,
    pub params: Vec<(String, ParamValue)>,
}

/// A validated pipeline: jobs in an order where each comes after its
/// dependencies (file order where the graph allows).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub jobs: Vec<PlannedJob>,
    /// Run-time parameters with their defaults (None: required), without
    /// the built-in [`SCHEDULED_TIME`].
    pub run_params: BTreeMap<String, Option<String>>,
    /// The `[schedule]` table, when the file has one.
    pub schedule: Option<Schedule>,
    /// The `[trigger]` table, when the file has one: the events that start
    /// a run, and the run parameters each gives.
    pub trigger: Option<crate::trigger::TriggerSpec>,
    /// `session = true`: the session's keep-alive (seconds).
    pub session_keep_alive_secs: Option<i64>,
}

/// Every problem found in a pipeline file, each naming the file, the job
/// and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct Invalid {
    pub problems: Vec<String>,
}

#[cfg(test)]
mod test_support {
    use super::{parse, Invalid, Pipeline};

    /// `text` validated as `p.toml`, whose SQL files cannot be read.
    pub fn check(text: &str) -> Result<Pipeline, Invalid> {
        parse(text, "p.toml", "p", |p| {
            Err(format!("cannot read {}", p.display()))
        })
    }
}

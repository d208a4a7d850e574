//! A validated pipeline as the ledger's records of a run.

use super::{Invalid, ParamValue, Pipeline};
use crate::domain::Target;
use std::collections::HashMap;

/// Why a pipeline cannot be planned for a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A run-time value given is unknown or empty, or a required one is
    /// missing.
    #[error(transparent)]
    Params(#[from] Invalid),
    /// A job cannot run as configured (its target, say).
    #[error("{0}")]
    Jobs(String),
}

impl Pipeline {
    /// The ledger records of one run: run-time values from `given` and the
    /// defaults, `:scheduled_time` = `at` unless given, targets completed
    /// from `defaults`. Every way of starting a run (by hand, the API, a
    /// schedule's firing) plans through here.
    pub fn plan_run(
        &self,
        given: &[(String, String)],
        at: jiff::Timestamp,
        defaults: &Target,
    ) -> Result<Vec<crate::ledger::RunJob>, PlanError> {
        self.clone()
            .with_run_params_at(given, at)?
            .plan(defaults)
            .map_err(PlanError::Jobs)
    }

    /// The ledger records of this validated pipeline (run-time parameters
    /// filled): targets completed from `defaults`, dependencies and
    /// upstream parameters as indexes into the list.
    pub fn plan(&self, defaults: &Target) -> Result<Vec<crate::ledger::RunJob>, String> {
        let index: HashMap<&str, usize> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.name.as_str(), i))
            .collect();
        let mut out = Vec::with_capacity(self.jobs.len());
        for j in &self.jobs {
            let target = j.target.clone().over(defaults);
            target.check().map_err(|e| format!("job {}: {e}", j.name))?;
            let mut params = Vec::new();
            let mut upstream = Vec::new();
            for (i, (name, v)) in j.params.iter().enumerate() {
                let value = match v {
                    ParamValue::Value(v) => v.clone(),
                    ParamValue::RunTime(name) => {
                        return Err(format!(
                            "job {}: run-time parameter {name} has no value",
                            j.name
                        ))
                    }
                    ParamValue::Upstream { job, column } => {
                        let from = *index
                            .get(job.as_str())
                            .ok_or_else(|| format!("job {}: unknown upstream {job}", j.name))?;
                        upstream.push((i, from, column.clone()));
                        String::new()
                    }
                };
                params.push(crate::domain::Param {
                    name: name.clone(),
                    value,
                    from: None,
                });
            }
            out.push(crate::ledger::RunJob {
                job: crate::ledger::NewJob {
                    name: j.name.clone(),
                    sqls: j.sqls.clone(),
                    params,
                    target,
                    depends_on: Vec::new(),
                    max_attempts: j.max_attempts,
                    retry: serde_json::to_value(j.retry).ok(),
                    timeout_secs: j.timeout_secs.map(|t| t as i64),
                    run_id: None,
                    execution_mode: j.execution_mode.map(str::to_string),
                    result_formats: j.result_formats,
                    session_keep_alive_secs: self.session_keep_alive_secs,
                },
                deps: j
                    .depends_on
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect(),
                upstream,
            });
        }
        Ok(out)
    }
}

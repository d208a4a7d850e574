//! Pipeline files (TOML): parsing and validation, pure. A pipeline names
//! its jobs; each has SQL (a string, or a list run as one batch) or a SQL
//! file, target overrides, dependencies, retries, a timeout and parameters.
//! Everything is checked before anything is submitted.
//!
//! A `[schedule]` table makes the pipeline run on a cron schedule (parsed
//! and checked by [`crate::schedule`]); its jobs may take the fire time as
//! the built-in run-time parameter [`SCHEDULED_TIME`].

use crate::domain::Target;
use crate::retry::RetryPolicy;
use crate::schedule::{Schedule, ScheduleSpec};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all (1 = no retry).
    pub max_attempts: Option<i64>,
    pub initial_secs: Option<f64>,
    pub max_secs: Option<f64>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub workgroup: Option<String>,
    pub cluster: Option<String>,
    pub database: Option<String>,
    pub db_user: Option<String>,
    pub secret_arn: Option<String>,
    pub retries: Option<RetrySpec>,
    pub timeout_secs: Option<u64>,
    pub result_formats: Option<crate::results::ResultFormats>,
}

/// SQL: one statement, or a list run as one BatchExecuteStatement.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SqlSpec {
    One(String),
    Batch(Vec<String>),
}

/// A parameter: a literal, a run-time value, or an upstream result.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ParamSpec {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// `{ param = "day" }`: given with `pipeline run --param day=...`, or
    /// the default in the pipeline's `[params]`; or the built-in
    /// `{ param = "scheduled_time" }`.
    RunTime {
        param: String,
    },
    /// `{ from = "extract", column = "max_id" }`: the first row of an
    /// upstream job's result.
    Upstream {
        from: String,
        column: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub sql: Option<SqlSpec>,
    pub sql_file: Option<PathBuf>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    pub workgroup: Option<String>,
    pub cluster: Option<String>,
    pub database: Option<String>,
    pub db_user: Option<String>,
    pub secret_arn: Option<String>,
    pub retries: Option<RetrySpec>,
    pub timeout_secs: Option<u64>,
    /// A batch's ExecutionMode: "transaction" (the default: every SQL of the
    /// list in one transaction) or "auto_commit" (each committed on its own).
    pub execution_mode: Option<String>,
    /// The files its results are written as: "csv", "jsonl" or "csv,jsonl".
    pub result_formats: Option<crate::results::ResultFormats>,
    #[serde(default)]
    pub params: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    pub name: Option<String>,
    #[serde(default)]
    pub defaults: Defaults,
    /// Run-time parameters and their default values ("" = required).
    #[serde(default)]
    pub params: toml::Table,
    /// When the pipeline runs by itself ([`ScheduleSpec`]); read apart so
    /// its problems are listed with the others.
    pub schedule: Option<toml::Table>,
    /// Every job of a run in one Data API session, one statement at a
    /// time: temporary tables and session settings carry from job to job.
    #[serde(default)]
    pub session: bool,
    /// How long the session lives after each statement (SessionKeepAliveSeconds).
    pub session_keep_alive_secs: Option<i64>,
    pub jobs: toml::Table,
}

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
    pub result_formats: Option<crate::results::ResultFormats>,
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

const NAME_RULE: &str = "letters, digits, _ or -";

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reads and validates a pipeline file. Relative `sql_file`s are read from
/// the pipeline file's folder.
pub fn load(path: &Path) -> Result<Pipeline, Invalid> {
    load_for_schedule(path).map(|(p, _, _)| p)
}

/// Validates pipeline text. `read_sql` reads a `sql_file`.
pub fn parse(
    text: &str,
    shown: &str,
    default_name: &str,
    read_sql: impl Fn(&Path) -> Result<String, String>,
) -> Result<Pipeline, Invalid> {
    let file: PipelineFile = toml::from_str(text).map_err(|e| Invalid {
        problems: vec![format!("{shown}: {}", e.to_string().trim_end())],
    })?;
    let mut problems = Vec::new();
    let name = file
        .name
        .clone()
        .unwrap_or_else(|| default_name.to_string());

    let mut run_params = BTreeMap::new();
    for (k, v) in &file.params {
        if k == SCHEDULED_TIME {
            problems.push(format!(
                "{shown}: [params] {k}: built in (the schedule's fire time, or the time of `pipeline run`): remove it from [params]"
            ));
            continue;
        }
        let default = match v {
            toml::Value::String(s) if s.is_empty() => None,
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => {
                problems.push(format!(
                    "{shown}: [params] {k}: give a default value as a string or number (\"\" = required at run time)"
                ));
                None
            }
        };
        run_params.insert(k.clone(), default);
    }

    let schedule = match &file.schedule {
        None => None,
        Some(table) => match toml::Value::Table(table.clone()).try_into::<ScheduleSpec>() {
            Ok(spec) => match Schedule::parse(&spec) {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.extend(
                        e.problems
                            .into_iter()
                            .map(|p| format!("{shown}: [schedule] {p}")),
                    );
                    None
                }
            },
            Err(e) => {
                problems.push(format!("{shown}: [schedule]: {}", e.message().trim_end()));
                None
            }
        },
    };
    if file.schedule.is_some() {
        // A scheduled run has no one to give a required value.
        for (k, default) in &run_params {
            if default.is_none() {
                problems.push(format!(
                    "{shown}: [params] {k} is required (\"\"), but a scheduled run cannot be given it: set a default"
                ));
            }
        }
    }

    let session_keep_alive_secs = match (file.session, file.session_keep_alive_secs) {
        (false, None) => None,
        (false, Some(_)) => {
            problems.push(format!(
                "{shown}: session_keep_alive_secs applies with session = true: add it, or remove session_keep_alive_secs"
            ));
            None
        }
        (true, k) => {
            let k = k.unwrap_or(SESSION_KEEP_ALIVE_SECS);
            if !(1..=86_400).contains(&k) {
                problems.push(format!(
                    "{shown}: session_keep_alive_secs must be 1 to 86400 (the Data API's 24 hours)"
                ));
            }
            Some(k)
        }
    };
    let mut specs: Vec<(String, JobSpec)> = Vec::new();
    if file.jobs.is_empty() {
        problems.push(format!("{shown}: no jobs: add a [jobs.NAME] table"));
    }
    for (job_name, value) in &file.jobs {
        if !valid_name(job_name) {
            problems.push(format!(
                "{shown}: job {job_name:?}: a job name is {NAME_RULE} (at most 100)"
            ));
        }
        match value.clone().try_into::<JobSpec>() {
            Ok(spec) => specs.push((job_name.clone(), spec)),
            Err(e) => problems.push(format!(
                "{shown}: job {job_name}: {}",
                e.message().trim_end()
            )),
        }
    }
    let names: HashSet<&str> = specs.iter().map(|(n, _)| n.as_str()).collect();

    let mut jobs = Vec::new();
    for (job_name, spec) in &specs {
        let at = format!("{shown}: job {job_name}");
        let sqls = match (&spec.sql, &spec.sql_file) {
            (Some(_), Some(_)) => {
                problems.push(format!("{at}: has both sql and sql_file: keep one"));
                Vec::new()
            }
            (None, None) => {
                problems.push(format!("{at}: has neither sql nor sql_file: add one"));
                Vec::new()
            }
            (Some(SqlSpec::One(s)), None) => vec![s.clone()],
            (Some(SqlSpec::Batch(list)), None) => list.clone(),
            (None, Some(path)) => match read_sql(path) {
                Ok(s) => vec![s],
                Err(e) => {
                    problems.push(format!("{at}: sql_file: {e}"));
                    Vec::new()
                }
            },
        };
        if sqls.iter().any(|s| s.trim().is_empty()) || (spec.sql.is_some() && sqls.is_empty()) {
            problems.push(format!("{at}: the SQL is empty"));
        }
        if let Err(e) = crate::domain::check_batch_size(sqls.len()) {
            problems.push(format!("{at}: {e}"));
        }
        let mut seen = HashSet::new();
        for dep in &spec.depends_on {
            if !names.contains(dep.as_str()) {
                problems.push(format!(
                    "{at}: depends_on {dep:?}, which is not a job of this pipeline"
                ));
            }
            if dep == job_name {
                problems.push(format!("{at}: depends on itself"));
            }
            if !seen.insert(dep) {
                problems.push(format!("{at}: depends_on lists {dep:?} twice"));
            }
        }
        let d = &file.defaults;
        let target = Target {
            workgroup: spec.workgroup.clone(),
            cluster: spec.cluster.clone(),
            database: spec.database.clone(),
            db_user: spec.db_user.clone(),
            secret_arn: spec.secret_arn.clone(),
        }
        .over(&Target {
            workgroup: d.workgroup.clone(),
            cluster: d.cluster.clone(),
            database: d.database.clone(),
            db_user: d.db_user.clone(),
            secret_arn: d.secret_arn.clone(),
        });
        if target.workgroup.is_some() && target.cluster.is_some() {
            problems.push(format!(
                "{at}: both a workgroup and a cluster apply: set only one (job or [defaults])"
            ));
        }
        let r = spec
            .retries
            .clone()
            .or_else(|| d.retries.clone())
            .unwrap_or_default();
        let base = d.retries.clone().unwrap_or_default();
        let retry = RetryPolicy {
            initial_secs: r
                .initial_secs
                .or(base.initial_secs)
                .unwrap_or(RetryPolicy::DEFAULT.initial_secs),
            max_secs: r
                .max_secs
                .or(base.max_secs)
                .unwrap_or(RetryPolicy::DEFAULT.max_secs),
            multiplier: r
                .multiplier
                .or(base.multiplier)
                .unwrap_or(RetryPolicy::DEFAULT.multiplier),
            jitter: r
                .jitter
                .or(base.jitter)
                .unwrap_or(RetryPolicy::DEFAULT.jitter),
        };
        if let Err(e) = retry.validate() {
            problems.push(format!("{at}: retries: {e}"));
        }
        let max_attempts = r.max_attempts.or(base.max_attempts).unwrap_or(1);
        if !(1..=100).contains(&max_attempts) {
            problems.push(format!("{at}: retries.max_attempts must be 1 to 100"));
        }
        let timeout_secs = spec.timeout_secs.or(d.timeout_secs);
        if timeout_secs == Some(0) {
            problems.push(format!("{at}: timeout_secs must be more than 0"));
        }
        let execution_mode = match spec.execution_mode.as_deref() {
            None | Some("transaction") => None,
            Some("auto_commit") if sqls.len() > 1 => Some("AUTO_COMMIT"),
            Some("auto_commit") => {
                problems.push(format!(
                    "{at}: execution_mode = \"auto_commit\" applies to a batch: give sql as a list of statements"
                ));
                None
            }
            Some(other) => {
                problems.push(format!(
                    "{at}: execution_mode {other:?} is not one of \"transaction\", \"auto_commit\""
                ));
                None
            }
        };
        let mut params = Vec::new();
        for (pname, pvalue) in &spec.params {
            if let Err(e) = crate::domain::check_param_name(pname) {
                problems.push(format!("{at}: {e}"));
            }
            match pvalue.clone().try_into::<ParamSpec>() {
                Ok(ParamSpec::Text(s)) if s.is_empty() => problems.push(format!(
                    "{at}: parameter {pname}: the Data API does not accept an empty value"
                )),
                Ok(ParamSpec::Text(s)) => params.push((pname.clone(), ParamValue::Value(s))),
                Ok(ParamSpec::Integer(i)) => {
                    params.push((pname.clone(), ParamValue::Value(i.to_string())))
                }
                Ok(ParamSpec::Float(f)) => {
                    params.push((pname.clone(), ParamValue::Value(f.to_string())))
                }
                Ok(ParamSpec::Bool(b)) => {
                    params.push((pname.clone(), ParamValue::Value(b.to_string())))
                }
                Ok(ParamSpec::RunTime { param }) => {
                    if !run_params.contains_key(&param) && param != SCHEDULED_TIME {
                        problems.push(format!(
                            "{at}: parameter {pname} takes run-time value {param:?}, which is not declared in [params]"
                        ));
                    }
                    params.push((pname.clone(), ParamValue::RunTime(param)));
                }
                Ok(ParamSpec::Upstream { from, column }) => {
                    if !names.contains(from.as_str()) {
                        problems.push(format!(
                            "{at}: parameter {pname} takes a value from {from:?}, which is not a job of this pipeline"
                        ));
                    }
                    if column.is_empty() {
                        problems.push(format!("{at}: parameter {pname}: column is empty"));
                    }
                    params.push((pname.clone(), ParamValue::Upstream { job: from, column }));
                }
                Err(_) => problems.push(format!(
                    "{at}: parameter {pname}: give a value, {{ param = \"NAME\" }} or {{ from = \"JOB\", column = \"COLUMN\" }}"
                )),
            }
        }
        // The Data API refuses a statement whose `:name` has no value.
        let mut missing: Vec<String> = sqls
            .iter()
            .flat_map(|s| crate::domain::param_names(s))
            .filter(|n| !params.iter().any(|(p, _)| p == n))
            .collect();
        missing.dedup();
        for n in missing {
            problems.push(format!(
                "{at}: the SQL uses :{n} but the job gives it no value: add params = {{ {n} = \"VALUE\" }}, \
                 {{ {n} = {{ param = \"{n}\" }} }} for a run-time value, or {{ from = \"JOB\", column = \"COLUMN\" }}"
            ));
        }
        jobs.push(PlannedJob {
            name: job_name.clone(),
            sqls,
            target,
            depends_on: spec.depends_on.clone(),
            max_attempts,
            retry,
            timeout_secs,
            execution_mode,
            result_formats: spec.result_formats.or(d.result_formats),
            params,
        });
    }

    if problems.is_empty() {
        if let Some(cycle) = find_cycle(&jobs) {
            problems.push(format!(
                "{shown}: the jobs form a cycle: {}: remove one of these depends_on",
                cycle.join(" -> ")
            ));
        }
    }
    if problems.is_empty() {
        // An upstream value must come from an ancestor, or it may not exist
        // yet when the job runs.
        let ancestors = ancestors(&jobs);
        for job in &jobs {
            for (pname, p) in &job.params {
                if let ParamValue::Upstream { job: from, .. } = p {
                    if !ancestors[&job.name].contains(from.as_str()) {
                        problems.push(format!(
                            "{shown}: job {}: parameter {pname} takes a value from {from:?}, which is not upstream of it: add {from:?} to depends_on",
                            job.name
                        ));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Invalid { problems });
    }
    let jobs = topo_order(jobs);
    Ok(Pipeline {
        name,
        jobs,
        run_params,
        schedule,
        session_keep_alive_secs,
    })
}

/// A cycle as job names, first name repeated at the end.
fn find_cycle(jobs: &[PlannedJob]) -> Option<Vec<String>> {
    let deps: HashMap<&str, &[String]> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.depends_on.as_slice()))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut mark: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        n: &'a str,
        deps: &HashMap<&'a str, &'a [String]>,
        mark: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        mark.insert(n, 1);
        stack.push(n);
        for d in deps.get(n).copied().unwrap_or_default() {
            match mark.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| *s == d.as_str()).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(d.clone());
                    // Written in the direction of the arrows: a -> b means b depends on a.
                    cycle.reverse();
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(d.as_str(), deps, mark, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        mark.insert(n, 2);
        None
    }
    for j in jobs {
        if mark.get(j.name.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(j.name.as_str(), &deps, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn ancestors(jobs: &[PlannedJob]) -> HashMap<String, HashSet<String>> {
    let deps: HashMap<&str, &[String]> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.depends_on.as_slice()))
        .collect();
    let mut out = HashMap::new();
    for j in jobs {
        let mut seen = HashSet::new();
        let mut todo: Vec<&str> = j.depends_on.iter().map(|s| s.as_str()).collect();
        while let Some(n) = todo.pop() {
            if seen.insert(n.to_string()) {
                todo.extend(
                    deps.get(n)
                        .copied()
                        .unwrap_or_default()
                        .iter()
                        .map(|s| s.as_str()),
                );
            }
        }
        out.insert(j.name.clone(), seen);
    }
    out
}

/// Orders jobs so each follows its dependencies, keeping file order where
/// the graph allows (the graph is acyclic here).
fn topo_order(jobs: Vec<PlannedJob>) -> Vec<PlannedJob> {
    let mut placed: HashSet<String> = HashSet::new();
    let mut rest = jobs;
    let mut out = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let before = rest.len();
        let mut i = 0;
        while i < rest.len() {
            if rest[i].depends_on.iter().all(|d| placed.contains(d)) {
                let j = rest.remove(i);
                placed.insert(j.name.clone());
                out.push(j);
                i = 0;
            } else {
                i += 1;
            }
        }
        if rest.len() == before {
            // Unreachable for a validated pipeline; keep every job anyway.
            out.append(&mut rest);
        }
    }
    out
}

impl Pipeline {
    /// [`Pipeline::with_run_params_at`] for a run by hand: `scheduled_time`
    /// is now. (The one clock read here, kept until the CLI passes its
    /// clock.)
    pub fn with_run_params(self, given: &[(String, String)]) -> Result<Self, Invalid> {
        self.with_run_params_at(given, jiff::Timestamp::now())
    }

    /// Fills run-time parameters from `given` (name=value) and the
    /// defaults, and [`SCHEDULED_TIME`] with `scheduled_time` (the fire
    /// time) unless `given` has it. Unknown or missing values are errors
    /// naming the parameter.
    pub fn with_run_params_at(
        mut self,
        given: &[(String, String)],
        scheduled_time: jiff::Timestamp,
    ) -> Result<Self, Invalid> {
        let mut problems = Vec::new();
        let mut values: HashMap<String, String> = HashMap::new();
        values.insert(
            SCHEDULED_TIME.to_string(),
            crate::schedule::scheduled_time(scheduled_time),
        );
        for (k, v) in given {
            if k == SCHEDULED_TIME {
                match crate::schedule::parse_scheduled_time(v) {
                    Ok(t) => {
                        values.insert(k.clone(), crate::schedule::scheduled_time(t));
                    }
                    Err(e) => problems.push(format!("--param {k}: {e}")),
                }
                continue;
            }
            if !self.run_params.contains_key(k) {
                let known: Vec<&str> = self.run_params.keys().map(|s| s.as_str()).collect();
                problems.push(format!(
                    "--param {k}: the pipeline declares no such parameter (declared: {}; built in: {SCHEDULED_TIME})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            } else if v.is_empty() {
                problems.push(format!(
                    "--param {k}: the Data API does not accept an empty value"
                ));
            }
            values.insert(k.clone(), v.clone());
        }
        for (k, default) in &self.run_params {
            if !values.contains_key(k) {
                match default {
                    Some(d) => {
                        values.insert(k.clone(), d.clone());
                    }
                    None => problems.push(format!(
                        "parameter {k} has no default: give it with --param {k}=VALUE"
                    )),
                }
            }
        }
        if !problems.is_empty() {
            return Err(Invalid { problems });
        }
        for job in &mut self.jobs {
            for (_, p) in &mut job.params {
                if let ParamValue::RunTime(name) = p {
                    *p = ParamValue::Value(values.get(name.as_str()).cloned().unwrap_or_default());
                }
            }
        }
        Ok(self)
    }

    /// The graph in Mermaid or Graphviz dot, with states when given.
    pub fn graph(&self, format: GraphFormat, states: &HashMap<String, String>) -> String {
        let edges: Vec<(&str, &str)> = self
            .jobs
            .iter()
            .flat_map(|j| {
                j.depends_on
                    .iter()
                    .map(move |d| (d.as_str(), j.name.as_str()))
            })
            .collect();
        let names: Vec<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
        graph(format, &names, &edges, states)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

/// Renders a job graph. Edges go from a job to the job that depends on it.
///
/// Node ids are `n0`, `n1`, ... by the job's position in `names`, so two
/// names that differ only in punctuation (`a-b`, `a_b`) stay two nodes and
/// the same list gives the same ids; the job name (and its state, when
/// given) is the node's label, escaped for the format. An edge naming a job
/// not in `names` is left out.
pub fn graph(
    format: GraphFormat,
    names: &[&str],
    edges: &[(&str, &str)],
    states: &HashMap<String, String>,
) -> String {
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<(usize, usize)> = edges
        .iter()
        .filter_map(|(a, b)| Some((*index.get(a)?, *index.get(b)?)))
        .collect();
    // The label: the name, then the state if any, on the next line.
    let label = |n: &str, escape: fn(&str) -> String, newline: &str| match states.get(n) {
        Some(s) => format!("{}{newline}{}", escape(n), escape(s)),
        None => escape(n),
    };
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart TD\n");
            for (i, n) in names.iter().enumerate() {
                let l = label(n, mermaid_text, "<br/>");
                out.push_str(&format!("    n{i}[\"{l}\"]\n"));
            }
            for (a, b) in &edges {
                out.push_str(&format!("    n{a} --> n{b}\n"));
            }
            for (i, n) in names.iter().enumerate() {
                if let Some(s) = states.get(*n) {
                    out.push_str(&format!("    class n{i} {}\n", mermaid_class(s)));
                }
            }
            if !states.is_empty() {
                out.push_str("    classDef finished fill:#c8e6c9\n");
                out.push_str("    classDef failed fill:#ffcdd2\n");
                out.push_str("    classDef aborted fill:#ffcdd2\n");
                out.push_str("    classDef skipped fill:#eeeeee\n");
                out.push_str("    classDef cancelled fill:#eeeeee\n");
                out.push_str("    classDef submitted fill:#bbdefb\n");
                out.push_str("    classDef retry_wait fill:#fff9c4\n");
            }
        }
        GraphFormat::Dot => {
            out.push_str("digraph pipeline {\n    rankdir=TB;\n    node [shape=box];\n");
            for (i, n) in names.iter().enumerate() {
                let l = label(n, dot_text, "\\n");
                out.push_str(&format!("    n{i} [label=\"{l}\"];\n"));
            }
            for (a, b) in &edges {
                out.push_str(&format!("    n{a} -> n{b};\n"));
            }
            out.push_str("}\n");
        }
    }
    out
}

/// `s` with each character of `table` replaced by its text, and line
/// breaks by spaces (a label line is one line).
fn escape(s: &str, table: &[(char, &str)]) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match table.iter().find(|(k, _)| *k == c) {
            Some((_, text)) => out.push_str(text),
            None if c == '\n' || c == '\r' => out.push(' '),
            None => out.push(c),
        }
    }
    out
}

/// Text for a Mermaid label in `["..."]`: characters Mermaid reads as
/// markup or as the end of the label become its entity codes.
fn mermaid_text(s: &str) -> String {
    escape(
        s,
        &[
            ('"', "#quot;"),
            ('#', "#35;"),
            ('&', "#amp;"),
            ('<', "#lt;"),
            ('>', "#gt;"),
        ],
    )
}

/// A Mermaid class name for a state: lower case, letters, digits and _.
fn mermaid_class(state: &str) -> String {
    state
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Text for a DOT double-quoted string (one line of a label).
fn dot_text(s: &str) -> String {
    escape(s, &[('\\', "\\\\"), ('"', "\\\"")])
}

impl Pipeline {
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

/// A pipeline file read for storing as a schedule: its text, and every SQL
/// file it names (as written), so that any worker can rebuild it without
/// the files.
pub fn load_for_schedule(
    path: &Path,
) -> Result<(Pipeline, String, BTreeMap<String, String>), Invalid> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Invalid {
        problems: vec![format!("{shown}: cannot read: {e}")],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline")
        .to_string();
    let files = std::cell::RefCell::new(BTreeMap::new());
    let p = parse(&text, &shown, &stem, |p| {
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        };
        let sql = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        files
            .borrow_mut()
            .insert(p.display().to_string(), sql.clone());
        Ok(sql)
    })?;
    Ok((p, text, files.into_inner()))
}

/// A stored schedule's pipeline, rebuilt from its text and SQL files.
pub fn parse_stored(
    name: &str,
    text: &str,
    sql_files: &BTreeMap<String, String>,
) -> Result<Pipeline, Invalid> {
    parse(text, &format!("schedule {name}"), name, |p| {
        sql_files
            .get(&p.display().to_string())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{} was not stored with the schedule: add it again",
                    p.display()
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Pipeline, Invalid> {
        parse(text, "p.toml", "p", |p| {
            Err(format!("cannot read {}", p.display()))
        })
    }

    fn errors(text: &str) -> String {
        check(text).unwrap_err().to_string()
    }

    #[test]
    fn a_sql_parameter_without_a_value_is_named() {
        let e = errors(
            r#"
            [defaults]
            workgroup = "wg"
            [params]
            n = "7"
            [jobs.load]
            sql = "SELECT :n AS v, 'a:b' AS s, x::int FROM t"
            "#,
        );
        assert!(
            e.contains("job load: the SQL uses :n but the job gives it no value"),
            "{e}"
        );
        assert!(!e.contains(":b") && !e.contains(":int"), "{e}");
    }

    #[test]
    fn a_valid_pipeline_in_dependency_order() {
        let p = check(
            r#"
            name = "nightly"
            [defaults]
            workgroup = "wg"
            database = "dev"
            retries = { max_attempts = 3, initial_secs = 1 }
            [params]
            day = "2026-11-25"
            [jobs.report]
            sql = "SELECT * FROM t WHERE id > :since AND day = :day"
            depends_on = ["load"]
            params = { since = { from = "extract", column = "max_id" }, day = { param = "day" } }
            [jobs.extract]
            sql = "SELECT MAX(id) AS max_id FROM src"
            [jobs.load]
            sql = ["DELETE FROM t", "INSERT INTO t SELECT * FROM src"]
            depends_on = ["extract"]
            timeout_secs = 30
            retries = { max_attempts = 1 }
            "#,
        )
        .unwrap()
        .with_run_params(&[("day".into(), "2026-11-26".into())])
        .unwrap();
        assert_eq!(p.name, "nightly");
        let names: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["extract", "load", "report"]);
        assert_eq!(p.jobs[1].sqls.len(), 2);
        assert_eq!(p.jobs[1].max_attempts, 1);
        assert_eq!(p.jobs[1].retry.initial_secs, 1.0);
        assert_eq!(p.jobs[1].timeout_secs, Some(30));
        assert_eq!(p.jobs[2].max_attempts, 3);
        assert_eq!(p.jobs[0].target.workgroup.as_deref(), Some("wg"));
        assert_eq!(
            p.jobs[2].params,
            vec![
                (
                    "since".to_string(),
                    ParamValue::Upstream {
                        job: "extract".into(),
                        column: "max_id".into()
                    }
                ),
                ("day".to_string(), ParamValue::Value("2026-11-26".into())),
            ]
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let e = errors(
            r#"
            [jobs.a]
            sql = "SELECT 1"
            depends_on = ["c"]
            [jobs.b]
            sql = "SELECT 1"
            depends_on = ["a"]
            [jobs.c]
            sql = "SELECT 1"
            depends_on = ["b"]
            "#,
        );
        assert!(e.contains("cycle"), "{e}");
        assert!(
            e.contains("a -> b -> c -> a")
                || e.contains("b -> c -> a -> b")
                || e.contains("c -> a -> b -> c"),
            "{e}"
        );
    }

    #[test]
    fn missing_dependency_unknown_key_and_sql_rules() {
        let e = errors("[jobs.a]\nsql = \"SELECT 1\"\ndepends_on = [\"nope\"]\n");
        assert!(
            e.contains("p.toml: job a: depends_on \"nope\", which is not a job"),
            "{e}"
        );
        let e = errors("[jobs.a]\nsql = \"SELECT 1\"\ntimeout = 5\n");
        assert!(
            e.contains("job a") && e.contains("unknown field `timeout`"),
            "{e}"
        );
        let e = errors("[jobs.a]\n");
        assert!(e.contains("neither sql nor sql_file"), "{e}");
        let e = errors("[jobs.a]\nsql = \"SELECT 1\"\nsql_file = \"a.sql\"\n");
        assert!(e.contains("both sql and sql_file"), "{e}");
        let e = errors("[jobs.a]\nsql_file = \"a.sql\"\n");
        assert!(e.contains("cannot read a.sql"), "{e}");
        let e = errors("nme = \"x\"\n[jobs.a]\nsql = \"SELECT 1\"\n");
        assert!(e.contains("unknown field `nme`"), "{e}");
        let e = errors("[jobs.a]\nsql = \"SELECT 1\"\n[jobs.a]\nsql = \"SELECT 2\"\n");
        assert!(e.contains("duplicate") || e.contains("defined"), "{e}");
    }

    #[test]
    fn bad_parameter_references() {
        let e = errors(
            "[jobs.a]\nsql = \"SELECT 1\"\n[jobs.b]\nsql = \"SELECT :x\"\nparams = { x = { from = \"a\", column = \"c\" } }\n",
        );
        assert!(
            e.contains("not upstream of it: add \"a\" to depends_on"),
            "{e}"
        );
        let e = errors(
            "[jobs.b]\nsql = \"SELECT :x\"\nparams = { x = { from = \"zz\", column = \"c\" } }\n",
        );
        assert!(e.contains("\"zz\", which is not a job"), "{e}");
        let e = errors("[jobs.b]\nsql = \"SELECT :x\"\nparams = { x = { param = \"day\" } }\n");
        assert!(e.contains("not declared in [params]"), "{e}");
        let e = errors("[jobs.b]\nsql = \"SELECT :x\"\nparams = { x = { bogus = 1 } }\n");
        assert!(e.contains("parameter x: give a value"), "{e}");
        let p = check("[params]\nday = \"\"\n[jobs.b]\nsql = \"SELECT :x\"\nparams = { x = { param = \"day\" } }\n").unwrap();
        let e = p.clone().with_run_params(&[]).unwrap_err().to_string();
        assert!(e.contains("give it with --param day=VALUE"), "{e}");
        let e = p
            .with_run_params(&[("dya".into(), "1".into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--param dya: the pipeline declares no such parameter"),
            "{e}"
        );
    }

    /// The nodes (id -> label) and edges (label -> label) of a rendered
    /// graph, read back the way Mermaid and Graphviz read them.
    fn read_graph(text: &str) -> (HashMap<String, String>, Vec<(String, String)>) {
        let mut nodes = HashMap::new();
        let mut edges = Vec::new();
        for line in text.lines().map(str::trim) {
            let line = line.trim_end_matches(';');
            if let Some((a, b)) = line.split_once(" --> ").or(line.split_once(" -> ")) {
                edges.push((a.to_string(), b.to_string()));
            } else if let Some((id, rest)) =
                line.split_once("[\"").or(line.split_once(" [label=\""))
            {
                let label = rest.trim_end_matches(']').trim_end_matches('"');
                let old = nodes.insert(id.to_string(), label.to_string());
                assert!(old.is_none(), "node id {id} used twice:\n{text}");
            }
        }
        let edges = edges
            .into_iter()
            .map(|(a, b)| {
                let name = |id: &str| {
                    nodes
                        .get(id)
                        .unwrap_or_else(|| panic!("edge to an undeclared node {id}:\n{text}"))
                        .clone()
                };
                (name(&a), name(&b))
            })
            .collect();
        (nodes, edges)
    }

    #[test]
    fn graphs() {
        let p = check(
            "[jobs.a]\nsql = \"SELECT 1\"\n[jobs.b]\nsql = \"SELECT 1\"\ndepends_on = [\"a\"]\n",
        )
        .unwrap();
        let m = p.graph(GraphFormat::Mermaid, &HashMap::new());
        assert!(m.starts_with("flowchart TD\n"));
        assert_eq!(
            m,
            "flowchart TD\n    n0[\"a\"]\n    n1[\"b\"]\n    n0 --> n1\n"
        );
        let states = HashMap::from([("a".to_string(), "FINISHED".to_string())]);
        let d = p.graph(GraphFormat::Dot, &states);
        assert!(d.contains("    n0 [label=\"a\\nFINISHED\"];\n"), "{d}");
        assert!(d.contains("    n1 [label=\"b\"];\n"), "{d}");
        assert!(d.contains("    n0 -> n1;\n"), "{d}");
        let m = p.graph(GraphFormat::Mermaid, &states);
        assert!(m.contains("    n0[\"a<br/>FINISHED\"]\n"), "{m}");
        assert!(m.contains("    class n0 finished\n"), "{m}");
    }

    #[test]
    fn names_that_differ_only_in_punctuation_are_distinct_nodes() {
        // a-b and a_b are both valid names; a-b feeds x, a_b feeds y.
        let p = check(
            "[jobs.a-b]\nsql = \"SELECT 1\"\n[jobs.a_b]\nsql = \"SELECT 2\"\n\
             [jobs.x]\nsql = \"SELECT 3\"\ndepends_on = [\"a-b\"]\n\
             [jobs.y]\nsql = \"SELECT 4\"\ndepends_on = [\"a_b\"]\n",
        )
        .unwrap();
        for format in [GraphFormat::Mermaid, GraphFormat::Dot] {
            let text = p.graph(format, &HashMap::new());
            let (nodes, mut edges) = read_graph(&text);
            let mut labels: Vec<&str> = nodes.values().map(String::as_str).collect();
            labels.sort_unstable();
            assert_eq!(labels, ["a-b", "a_b", "x", "y"], "{format:?}:\n{text}");
            edges.sort();
            let want = [("a-b", "x"), ("a_b", "y")].map(|(a, b)| (a.to_string(), b.to_string()));
            assert_eq!(edges, want, "{format:?}:\n{text}");
            // Stable: the same pipeline gives the same text.
            assert_eq!(text, p.graph(format, &HashMap::new()));
        }
    }

    #[test]
    fn graph_labels_are_escaped() {
        let names = ["q\"uo\\te", "<b>#1&"];
        let edges = [(names[0], names[1])];
        let states = HashMap::from([(names[0].to_string(), "FAILED".to_string())]);
        let d = graph(GraphFormat::Dot, &names, &edges, &states);
        assert!(
            d.contains("    n0 [label=\"q\\\"uo\\\\te\\nFAILED\"];\n"),
            "{d}"
        );
        assert!(d.contains("    n1 [label=\"<b>#1&\"];\n"), "{d}");
        let m = graph(GraphFormat::Mermaid, &names, &edges, &states);
        assert!(m.contains("    n0[\"q#quot;uo\\te<br/>FAILED\"]\n"), "{m}");
        assert!(m.contains("    n1[\"#lt;b#gt;#35;1#amp;\"]\n"), "{m}");
        assert!(m.contains("    n0 --> n1\n"), "{m}");
        // An edge to a job that is not drawn is left out.
        let m = graph(GraphFormat::Mermaid, &names[..1], &edges, &HashMap::new());
        assert_eq!(m, "flowchart TD\n    n0[\"q#quot;uo\\te\"]\n");
    }

    const SCHEDULED: &str = r#"
        name = "nightly"
        [schedule]
        cron = "30 2 * * *"
        timezone = "America/New_York"
        catch_up = "all"
        max_catch_up = 10
        overlap = "allow"
        [params]
        region = "eu"
        [jobs.load]
        sql = "CALL load(:at, :region)"
        params = { at = { param = "scheduled_time" }, region = { param = "region" } }
        "#;

    #[test]
    fn a_schedule_and_the_built_in_scheduled_time() {
        use crate::schedule::{CatchUp, Overlap};
        let p = check(SCHEDULED).unwrap();
        let s = p.schedule.clone().unwrap();
        assert_eq!(s.cron(), "30 2 * * *");
        assert_eq!(s.timezone(), "America/New_York");
        assert_eq!(s.catch_up(), CatchUp::All { max: 10 });
        assert_eq!(s.overlap(), Overlap::Allow);
        assert!(!p.run_params.contains_key(SCHEDULED_TIME));
        // Fired by the schedule: the fire time.
        let fired = p
            .clone()
            .with_run_params_at(&[], "2026-11-28T07:30:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(
            fired.jobs[0].params,
            vec![
                (
                    "at".to_string(),
                    ParamValue::Value("2026-11-28T07:30:00Z".into())
                ),
                ("region".to_string(), ParamValue::Value("eu".into())),
            ]
        );
        // By hand, a time given (with an offset) wins, in UTC.
        let by_hand = p
            .clone()
            .with_run_params_at(
                &[(SCHEDULED_TIME.into(), "2026-11-25T03:30:00+01:00".into())],
                "2026-11-28T07:30:00Z".parse().unwrap(),
            )
            .unwrap();
        assert_eq!(
            by_hand.jobs[0].params[0].1,
            ParamValue::Value("2026-11-25T02:30:00Z".into())
        );
        let e = p
            .clone()
            .with_run_params(&[(SCHEDULED_TIME.into(), "tomorrow".into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--param scheduled_time: \"tomorrow\" is not an RFC 3339 time"),
            "{e}"
        );
        // By hand without a time: now, whole seconds in UTC.
        let now = p.with_run_params(&[]).unwrap();
        let ParamValue::Value(v) = &now.jobs[0].params[0].1 else {
            panic!("{:?}", now.jobs[0].params)
        };
        let t: jiff::Timestamp = v.parse().unwrap();
        assert!(v.ends_with('Z') && !v.contains('.'), "{v}");
        assert!(
            jiff::Timestamp::now().duration_since(t).as_secs() < 60,
            "{v}"
        );
    }

    #[test]
    fn scheduled_time_without_a_schedule() {
        let p = check(
            "[jobs.a]\nsql = \"SELECT :t\"\nparams = { t = { param = \"scheduled_time\" } }\n",
        )
        .unwrap();
        assert!(p.schedule.is_none());
        let p = p
            .with_run_params_at(&[], "2026-11-28T02:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(
            p.jobs[0].params[0].1,
            ParamValue::Value("2026-11-28T02:00:00Z".into())
        );
    }

    #[test]
    fn schedule_problems_are_listed_with_the_others() {
        let e = errors(
            "[schedule]\ncron = \"0 25 * * *\"\ntimezone = \"Europe/Pariss\"\n[jobs.a]\nsql = \"\"\n",
        );
        assert!(
            e.contains("p.toml: [schedule] cron \"0 25 * * *\": "),
            "{e}"
        );
        assert!(
            e.contains("p.toml: [schedule] timezone \"Europe/Pariss\": not an IANA time zone name"),
            "{e}"
        );
        assert!(e.contains("p.toml: job a: the SQL is empty"), "{e}");
        let e = errors(
            "[schedule]\ncron = \"0 2 * * *\"\ncatchup = \"all\"\n[jobs.a]\nsql = \"SELECT 1\"\n",
        );
        assert!(
            e.contains("p.toml: [schedule]: unknown field `catchup`"),
            "{e}"
        );
        let e = errors("[schedule]\ntimezone = \"UTC\"\n[jobs.a]\nsql = \"SELECT 1\"\n");
        assert!(
            e.contains("p.toml: [schedule]: missing field `cron`"),
            "{e}"
        );
        let e = errors(
            "[schedule]\ncron = \"0 2 * * *\"\n[params]\nday = \"\"\n[jobs.a]\nsql = \"SELECT 1\"\n",
        );
        assert!(
            e.contains(
                "p.toml: [params] day is required (\"\"), but a scheduled run cannot be given it"
            ),
            "{e}"
        );
        let e = errors("[params]\nscheduled_time = \"x\"\n[jobs.a]\nsql = \"SELECT 1\"\n");
        assert!(
            e.contains("p.toml: [params] scheduled_time: built in"),
            "{e}"
        );
        // Without [schedule], a required parameter is still fine.
        assert!(check("[params]\nday = \"\"\n[jobs.a]\nsql = \"SELECT 1\"\n").is_ok());
    }
}

//! A pipeline file as written: the TOML's tables, read by serde with
//! unknown fields refused. [`super::parse`] checks them.

use crate::domain::ResultFormats;
use serde::Deserialize;
use std::path::PathBuf;

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
    pub result_formats: Option<ResultFormats>,
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
    pub result_formats: Option<ResultFormats>,
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
    /// The events that start the pipeline ([`crate::trigger::TriggerSpec`]);
    /// read apart so its problems are listed with the others.
    pub trigger: Option<toml::Table>,
    /// Every job of a run in one Data API session, one statement at a
    /// time: temporary tables and session settings carry from job to job.
    #[serde(default)]
    pub session: bool,
    /// How long the session lives after each statement (SessionKeepAliveSeconds).
    pub session_keep_alive_secs: Option<i64>,
    pub jobs: toml::Table,
}

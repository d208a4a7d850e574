//! Validation of a pipeline file's text: every problem is listed, each
//! naming the file, the job and what to change.

use super::dag::{ancestors, find_cycle, topo_order};
use super::file::{JobSpec, ParamSpec, PipelineFile, SqlSpec};
use super::{Invalid, ParamValue, Pipeline, PlannedJob, SCHEDULED_TIME, SESSION_KEEP_ALIVE_SECS};
use crate::domain::Target;
use crate::retry::RetryPolicy;
use crate::schedule::{Schedule, ScheduleSpec};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

const NAME_RULE: &str = "letters, digits, _ or -";

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
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

    let trigger = match &file.trigger {
        None => None,
        Some(table) => {
            match crate::trigger::TriggerSpec::from_toml(&toml::Value::Table(table.clone())) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(format!("{shown}: {e}"));
                    None
                }
            }
        }
    };
    if let Some(t) = &trigger {
        // An event gives the values its [trigger.params] name, and only
        // those: each must be a declared run-time parameter, and each
        // required one must be given.
        for k in t.params.keys() {
            if !run_params.contains_key(k) && k != SCHEDULED_TIME {
                problems.push(format!(
                    "{shown}: [trigger.params] {k}: not a parameter of [params]: declare it there (`{k} = \"\"`)"
                ));
            }
        }
        for (k, default) in &run_params {
            if default.is_none() && !t.params.contains_key(k) {
                problems.push(format!(
                    "{shown}: [params] {k} is required (\"\"), but the trigger does not give it: add it to [trigger.params], or set a default"
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
        if let Some(secs) = timeout_secs {
            if !(1..=crate::domain::MAX_TIMEOUT_SECS).contains(&secs) {
                problems.push(format!(
                    "{at}: timeout_secs must be 1 to {} (30 days), not {secs}",
                    crate::domain::MAX_TIMEOUT_SECS
                ));
            }
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
        trigger,
        session_keep_alive_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check;
    use super::*;

    fn errors(text: &str) -> String {
        check(text).unwrap_err().to_string()
    }

    #[test]
    fn a_timeout_past_30_days_is_refused() {
        let e = errors(
            r#"
            [defaults]
            workgroup = "wg"
            [jobs.load]
            sql = "SELECT 1"
            timeout_secs = 10000000000000000
            "#,
        );
        assert!(e.contains("timeout_secs must be 1 to 2592000"), "{e}");
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

//! Run-time parameters: the values given for a run (`--param`, the API's
//! `params`) and the defaults, and the built-in [`SCHEDULED_TIME`].

use super::{Invalid, ParamValue, Pipeline, SCHEDULED_TIME};
use std::collections::HashMap;

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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check;
    use super::*;

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
}

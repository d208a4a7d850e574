//! The `[trigger]` table of a pipeline file and its checks:
//! [`TriggerSpec::from_toml`].

use super::{
    JsonPath, OnPause, Overlap, Pattern, TriggerSpec, MAX_ACTIVE_RUNS, MAX_BATCH_WINDOW_SECS,
};
use std::collections::BTreeMap;

/// The keys of a `[trigger]` table.
const KEYS: [&str; 7] = [
    "pattern",
    "params",
    "dedupe",
    "overlap",
    "max_active_runs",
    "batch_window_secs",
    "on_pause",
];

impl TriggerSpec {
    /// From the `[trigger]` table of a pipeline file. Every problem is
    /// reported (joined with "; "), each naming its key and value.
    pub fn from_toml(v: &toml::Value) -> Result<TriggerSpec, String> {
        let Some(table) = v.as_table() else {
            return Err(format!(
                "[trigger]: must be a table (with pattern = ...), not {}",
                shown(v)
            ));
        };
        let mut problems = Vec::new();
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "[trigger] unknown key {key:?}{}: the keys are {}",
                    closest_key(key)
                        .map(|k| format!(" (did you mean {k:?}?)"))
                        .unwrap_or_default(),
                    KEYS.join(", ")
                ));
            }
        }
        let pattern = match table.get("pattern") {
            Some(p) => Pattern::from_toml(p)
                .map_err(|e| problems.push(format!("[trigger] {e}")))
                .ok(),
            None => {
                problems.push(
                    "[trigger] pattern: missing: give the event pattern, like [trigger.pattern] with source = [\"aws.s3\"]"
                        .to_string(),
                );
                None
            }
        };
        let params = parse_params(table.get("params"), &mut problems);
        let dedupe = parse_dedupe(table.get("dedupe"), &mut problems);
        let overlap = match table.get("overlap") {
            None => Overlap::Queue,
            Some(v) => match v.as_str() {
                Some("queue") => Overlap::Queue,
                Some("skip") => Overlap::Skip,
                Some("allow") => Overlap::Allow,
                _ => {
                    problems.push(format!(
                        "[trigger] overlap {}: use \"queue\", \"skip\" or \"allow\"",
                        shown(v)
                    ));
                    Overlap::Queue
                }
            },
        };
        let on_pause = match table.get("on_pause") {
            None => OnPause::Keep,
            Some(v) => match v.as_str() {
                Some("keep") => OnPause::Keep,
                Some("drop") => OnPause::Drop,
                _ => {
                    problems.push(format!(
                        "[trigger] on_pause {}: use \"keep\" or \"drop\"",
                        shown(v)
                    ));
                    OnPause::Keep
                }
            },
        };
        let max_active_runs = bounded(
            table.get("max_active_runs"),
            "max_active_runs",
            "a whole number",
            MAX_ACTIVE_RUNS,
            &mut problems,
        );
        let batch_window_secs = bounded(
            table.get("batch_window_secs"),
            "batch_window_secs",
            "a whole number of seconds",
            MAX_BATCH_WINDOW_SECS,
            &mut problems,
        );
        match pattern {
            Some(pattern) if problems.is_empty() => Ok(TriggerSpec {
                pattern,
                params,
                dedupe,
                overlap,
                max_active_runs,
                batch_window_secs,
                on_pause,
            }),
            _ => Err(problems.join("; ")),
        }
    }
}

/// Whether a parameter name is letters, digits and `_`, starting with a
/// letter or `_`.
fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_params(v: Option<&toml::Value>, problems: &mut Vec<String>) -> BTreeMap<String, JsonPath> {
    let mut params = BTreeMap::new();
    let Some(v) = v else {
        return params;
    };
    let Some(table) = v.as_table() else {
        problems.push(format!(
            "[trigger] params: must be a table of name = \"path\", like params = {{ key = \"$.detail.object.key\" }}, not {}",
            shown(v)
        ));
        return params;
    };
    for (name, v) in table {
        if !valid_param_name(name) {
            problems.push(format!(
                "[trigger] params: parameter name {name:?}: letters, digits and _, starting with a letter or _"
            ));
            continue;
        }
        match v.as_str().map(JsonPath::parse) {
            Some(Ok(path)) => {
                params.insert(name.clone(), path);
            }
            Some(Err(e)) => problems.push(format!("[trigger] params.{name} {}: {e}", shown(v))),
            None => problems.push(format!(
                "[trigger] params.{name}: must be a path as a string, like \"$.detail.object.key\", not {}",
                shown(v)
            )),
        }
    }
    params
}

fn parse_dedupe(v: Option<&toml::Value>, problems: &mut Vec<String>) -> Vec<JsonPath> {
    let Some(v) = v else {
        return Vec::new();
    };
    let Some(items) = v.as_array() else {
        problems.push(format!(
            "[trigger] dedupe: must be a list of paths, like [\"$.detail.object.key\", \"$.detail.object.etag\"], not {}",
            shown(v)
        ));
        return Vec::new();
    };
    if items.is_empty() {
        problems.push(
            "[trigger] dedupe: an empty list: list at least one path, or leave dedupe out to dedupe on the event's \"id\""
                .to_string(),
        );
    }
    let mut paths = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().map(JsonPath::parse) {
            Some(Ok(path)) => paths.push(path),
            Some(Err(e)) => problems.push(format!("[trigger] dedupe[{i}] {}: {e}", shown(item))),
            None => problems.push(format!(
                "[trigger] dedupe[{i}]: must be a path as a string, like \"$.detail.object.key\", not {}",
                shown(item)
            )),
        }
    }
    paths
}

/// An optional whole number from 1 to `max`.
fn bounded(
    v: Option<&toml::Value>,
    key: &str,
    what: &str,
    max: u32,
    problems: &mut Vec<String>,
) -> Option<u32> {
    let v = v?;
    match v.as_integer().map(u32::try_from) {
        Some(Ok(n)) if (1..=max).contains(&n) => Some(n),
        _ => {
            problems.push(format!(
                "[trigger] {key} {}: must be {what} from 1 to {max}",
                shown(v)
            ));
            None
        }
    }
}

/// A TOML value as shown in an error: a string quoted, a number or a
/// boolean as written, anything else by its kind.
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// The key closest to a misspelt one, when it is close.
fn closest_key(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{err, s3_event, spec, table, with, EXAMPLE};
    use super::*;

    #[test]
    fn the_example_table() {
        let s = spec(EXAMPLE);
        assert_eq!(s.overlap, Overlap::Skip);
        assert_eq!(s.on_pause, OnPause::Drop);
        assert_eq!(s.max_active_runs, Some(2));
        assert_eq!(s.batch_window_secs, Some(5));
        assert_eq!(
            s.dedupe.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            [
                "$.detail.bucket.name",
                "$.detail.object.key",
                "$.detail.object.etag"
            ]
        );
        assert_eq!(
            s.params.keys().collect::<Vec<_>>(),
            ["bucket", "key", "size", "type"]
        );
        assert!(s.matches(&s3_event("sales/q1.csv")));
        assert!(!s.matches(&s3_event("hr/q1.csv")));
    }

    #[test]
    fn defaults() {
        let s = spec(&with(""));
        assert_eq!(s.overlap, Overlap::Queue);
        assert_eq!(s.on_pause, OnPause::Keep);
        assert_eq!(s.max_active_runs, None);
        assert_eq!(s.batch_window_secs, None);
        assert!(s.params.is_empty());
        assert!(s.dedupe.is_empty());
        assert_eq!(Overlap::default().as_str(), "queue");
        assert_eq!(Overlap::Skip.as_str(), "skip");
        assert_eq!(Overlap::Allow.as_str(), "allow");
        assert_eq!(OnPause::default().as_str(), "keep");
        assert_eq!(OnPause::Drop.as_str(), "drop");
        let bounds = spec(&with(
            "max_active_runs = 1000\nbatch_window_secs = 1\noverlap = \"allow\"",
        ));
        assert_eq!(bounds.max_active_runs, Some(1000));
        assert_eq!(bounds.batch_window_secs, Some(1));
        assert_eq!(bounds.overlap, Overlap::Allow);
    }

    #[test]
    fn key_errors() {
        assert_eq!(
            err(&with("overlapp = \"skip\"")),
            "[trigger] unknown key \"overlapp\" (did you mean \"overlap\"?): the keys are pattern, params, dedupe, overlap, max_active_runs, batch_window_secs, on_pause"
        );
        assert_eq!(
            err(&with("colour = 1")),
            "[trigger] unknown key \"colour\": the keys are pattern, params, dedupe, overlap, max_active_runs, batch_window_secs, on_pause"
        );
        assert_eq!(
            err("[trigger]\noverlap = \"skip\""),
            "[trigger] pattern: missing: give the event pattern, like [trigger.pattern] with source = [\"aws.s3\"]"
        );
        assert_eq!(
            TriggerSpec::from_toml(&toml::Value::Integer(1)).unwrap_err(),
            "[trigger]: must be a table (with pattern = ...), not 1"
        );
        assert_eq!(
            err("[trigger]\npattern = \"aws.s3\""),
            "[trigger] pattern: must be an object of fields, like { source = [\"aws.s3\"] }, not \"aws.s3\""
        );
        assert_eq!(
            err("[trigger.pattern]\ndetail = { object = { key = \"sales/\" } }"),
            "[trigger] pattern.detail.object.key: a matcher list must be an array, like [\"landing\"] or [{ prefix = \"sales/\" }]"
        );
    }

    #[test]
    fn policy_errors() {
        assert_eq!(
            err(&with("overlap = \"sometimes\"")),
            "[trigger] overlap \"sometimes\": use \"queue\", \"skip\" or \"allow\""
        );
        assert_eq!(
            err(&with("overlap = true")),
            "[trigger] overlap true: use \"queue\", \"skip\" or \"allow\""
        );
        assert_eq!(
            err(&with("on_pause = \"later\"")),
            "[trigger] on_pause \"later\": use \"keep\" or \"drop\""
        );
        for bad in ["0", "1001", "-1", "2.5", "\"2\""] {
            let shown = if bad == "\"2\"" { "\"2\"" } else { bad };
            assert_eq!(
                err(&with(&format!("max_active_runs = {bad}"))),
                format!("[trigger] max_active_runs {shown}: must be a whole number from 1 to 1000")
            );
        }
        assert_eq!(
            err(&with("batch_window_secs = 301")),
            "[trigger] batch_window_secs 301: must be a whole number of seconds from 1 to 300"
        );
        assert_eq!(
            err(&with("batch_window_secs = 0")),
            "[trigger] batch_window_secs 0: must be a whole number of seconds from 1 to 300"
        );
        // Every problem at once.
        assert_eq!(
            err(&with("overlap = \"x\"\non_pause = \"y\"")),
            "[trigger] overlap \"x\": use \"queue\", \"skip\" or \"allow\"; [trigger] on_pause \"y\": use \"keep\" or \"drop\""
        );
    }

    #[test]
    fn params_and_dedupe_errors() {
        assert_eq!(
            err(&with("params = { 1st = \"$.a\" }")),
            "[trigger] params: parameter name \"1st\": letters, digits and _, starting with a letter or _"
        );
        assert_eq!(
            err(&with("params = { \"my-key\" = \"$.a\" }")),
            "[trigger] params: parameter name \"my-key\": letters, digits and _, starting with a letter or _"
        );
        assert!(
            TriggerSpec::from_toml(&table(&with("params = { _a1 = \"$.a\", B_2 = \"$.b\" }")))
                .is_ok()
        );
        assert_eq!(
            err(&with("params = { key = \"detail.key\" }")),
            "[trigger] params.key \"detail.key\": a path starts with $ (the event), like $.detail.object.key"
        );
        assert_eq!(
            err(&with("params = { key = \"$.detail.*\" }")),
            "[trigger] params.key \"$.detail.*\": wildcard (*) at character 10 is not supported: a path names one value"
        );
        assert_eq!(
            err(&with("params = { key = 5 }")),
            "[trigger] params.key: must be a path as a string, like \"$.detail.object.key\", not 5"
        );
        assert_eq!(
            err(&with("params = \"$.a\"")),
            "[trigger] params: must be a table of name = \"path\", like params = { key = \"$.detail.object.key\" }, not \"$.a\""
        );
        assert_eq!(
            err(&with("dedupe = \"$.a\"")),
            "[trigger] dedupe: must be a list of paths, like [\"$.detail.object.key\", \"$.detail.object.etag\"], not \"$.a\""
        );
        assert_eq!(
            err(&with("dedupe = []")),
            "[trigger] dedupe: an empty list: list at least one path, or leave dedupe out to dedupe on the event's \"id\""
        );
        assert_eq!(
            err(&with("dedupe = [\"$.a\", \"$.b[\"]")),
            "[trigger] dedupe[1] \"$.b[\": unclosed [ at character 4: end it with ]"
        );
        assert_eq!(
            err(&with("dedupe = [\"$.a\", 1]")),
            "[trigger] dedupe[1]: must be a path as a string, like \"$.detail.object.key\", not 1"
        );
    }
}

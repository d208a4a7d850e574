//! Triggers: pipelines started by EventBridge events. Pure: no I/O, no
//! clock, no AWS. A pipeline file's `[trigger]` table becomes a
//! [`TriggerSpec`] with [`TriggerSpec::from_toml`]:
//!
//! ```toml
//! [trigger]
//! overlap = "queue"          # "queue" (default), "skip" or "allow"
//! max_active_runs = 2        # optional, 1 to 1000
//! batch_window_secs = 5      # optional, 1 to 300
//! dedupe = ["$.detail.bucket.name", "$.detail.object.key", "$.detail.object.etag"]
//! on_pause = "keep"          # "keep" (default) or "drop"
//! [trigger.pattern]
//! source = ["aws.s3"]
//! detail-type = ["Object Created"]
//! detail = { bucket = { name = ["landing"] }, object = { key = [{ prefix = "sales/" }] } }
//! [trigger.params]
//! key = "$.detail.object.key"
//! ```
//!
//! - `pattern` ([`Pattern`]): an EventBridge event pattern, written in
//!   TOML, checked as EventBridge checks it and sent to it as JSON
//!   ([`Pattern::as_json`]). A `$or` key is quoted in TOML: `"$or" = [...]`.
//! - `params`: run parameters taken from the event, each a path
//!   ([`JsonPath`]) such as `$.detail.object.key` ([`TriggerSpec::evaluate`]).
//! - `dedupe`: the paths whose values identify an event, so a redelivered
//!   or repeated event starts no second run; without it, the event's `id`.
//! - `overlap`, `max_active_runs`, `batch_window_secs`, `on_pause`: the
//!   policies the caller applies (see [`Overlap`], [`OnPause`]).
//!
//! # Where each rule lives
//!
//! - `pattern`: the pattern's structure (objects, leaves, `$or`) and how it
//!   matches an event;
//! - `matcher`: the matchers of a leaf (literals, `prefix`, `anything-but`,
//!   `exists`, ...);
//! - `compare`: `numeric`, `wildcard` and `cidr`;
//! - `path`: paths into an event;
//! - `spec`: the `[trigger]` table and its checks ([`TriggerSpec::from_toml`]);
//!   this module: the types and [`TriggerSpec::evaluate`].

mod compare;
mod matcher;
mod path;
mod pattern;
mod spec;

pub use path::JsonPath;
pub use pattern::Pattern;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The highest `max_active_runs`.
pub const MAX_ACTIVE_RUNS: u32 = 1000;
/// The longest `batch_window_secs`.
pub const MAX_BATCH_WINDOW_SECS: u32 = 300;

/// What a matching event does while runs of the pipeline are active (as
/// many as `max_active_runs` allows). Applied by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// The event waits, and starts its run when one ends (default).
    #[default]
    Queue,
    /// The event is passed over (recorded, but no run starts).
    Skip,
    /// The event starts its run at once.
    Allow,
}

impl Overlap {
    /// The name used in `[trigger]` ("queue", "skip", "allow").
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Queue => "queue",
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }
}

/// What happens to matching events while the trigger is paused. Applied
/// by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnPause {
    /// They are kept, and start their runs when the trigger resumes
    /// (default).
    #[default]
    Keep,
    /// They are dropped.
    Drop,
}

impl OnPause {
    /// The name used in `[trigger]` ("keep", "drop").
    pub fn as_str(self) -> &'static str {
        match self {
            OnPause::Keep => "keep",
            OnPause::Drop => "drop",
        }
    }
}

/// A checked `[trigger]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSpec {
    /// Which events start a run.
    pub pattern: Pattern,
    /// Run parameters by name, each taken from the event at its path.
    pub params: BTreeMap<String, JsonPath>,
    /// The paths whose values make an event's dedupe key; empty: the
    /// event's `id`.
    pub dedupe: Vec<JsonPath>,
    /// What a matching event does while runs are active.
    pub overlap: Overlap,
    /// How many runs may be active at once (`None`: the caller's default).
    pub max_active_runs: Option<u32>,
    /// Matching events within this many seconds are gathered for one run
    /// (`None`: each event on its own). Applied by the caller.
    pub batch_window_secs: Option<u32>,
    /// What happens to matching events while the trigger is paused.
    pub on_pause: OnPause,
}

/// What a matching event gives a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    /// The run parameters' values, as text.
    pub params: BTreeMap<String, String>,
    /// Identifies the event: `id:` and the event's id, or the SHA-256 (hex)
    /// of the `dedupe` values.
    pub dedupe_key: String,
}

impl TriggerSpec {
    /// Whether this event is one of the trigger's.
    pub fn matches(&self, event: &Value) -> bool {
        self.pattern.matches(event)
    }

    /// The run parameters and the dedupe key of a matching event (it does
    /// not check the pattern), or what is wrong with this event: a
    /// parameter whose path is missing, null or an empty string (the Data
    /// API takes neither), a missing dedupe path, or no `id`. A string is
    /// taken as is; a number or a boolean as its JSON text; an object or
    /// an array as compact JSON.
    pub fn evaluate(&self, event: &Value) -> Result<Evaluated, String> {
        let mut problems = Vec::new();
        let mut params = BTreeMap::new();
        for (name, path) in &self.params {
            match param_text(path.get(event)) {
                Ok(text) => {
                    params.insert(name.clone(), text);
                }
                Err(why) => problems.push(format!("parameter {name}: {path} {why}")),
            }
        }
        let dedupe_key = self.dedupe_key(event).map_err(|e| problems.push(e)).ok();
        match dedupe_key {
            Some(dedupe_key) if problems.is_empty() => Ok(Evaluated { params, dedupe_key }),
            _ => Err(problems.join("; ")),
        }
    }

    fn dedupe_key(&self, event: &Value) -> Result<String, String> {
        if self.dedupe.is_empty() {
            return match event.get("id") {
                Some(Value::String(id)) => Ok(format!("id:{id}")),
                _ => Err("dedupe: the event has no \"id\" string to dedupe on; set dedupe in [trigger] to paths of the event".to_string()),
            };
        }
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for path in &self.dedupe {
            match path.get(event) {
                Some(v) => values.push(v.clone()),
                None => missing.push(path.to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "dedupe: the event has no {}",
                missing.join(", no ")
            ));
        }
        let text = Value::Array(values).to_string();
        Ok(Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

/// A run parameter's text, or why there is none (after the path).
fn param_text(v: Option<&Value>) -> Result<String, &'static str> {
    match v {
        None => Err("is not in the event"),
        Some(Value::Null) => Err("is null in the event, and the Data API takes no NULL parameter"),
        Some(Value::String(s)) if s.is_empty() => {
            Err("is an empty string in the event, and the Data API takes no empty parameter value")
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
    }
}

/// Helpers for the tests of `[trigger]` tables (here and in `spec`).
#[cfg(test)]
pub(crate) mod testing {
    use super::TriggerSpec;
    use serde_json::{json, Value};

    pub const EXAMPLE: &str = r#"
        [trigger]
        overlap = "skip"
        max_active_runs = 2
        batch_window_secs = 5
        dedupe = ["$.detail.bucket.name", "$.detail.object.key", "$.detail.object.etag"]
        on_pause = "drop"
        [trigger.pattern]
        source = ["aws.s3"]
        detail-type = ["Object Created"]
        detail = { bucket = { name = ["landing"] }, object = { key = [{ prefix = "sales/" }] } }
        [trigger.params]
        key = "$.detail.object.key"
        size = "$.detail.object.size"
        bucket = "$.detail.bucket"
        type = '$["detail-type"]'
    "#;

    /// The `[trigger]` table of a pipeline file's text.
    pub fn table(text: &str) -> toml::Value {
        let mut file: toml::Table = toml::from_str(text).unwrap();
        file.remove("trigger").unwrap()
    }

    pub fn spec(text: &str) -> TriggerSpec {
        TriggerSpec::from_toml(&table(text)).unwrap()
    }

    pub fn err(text: &str) -> String {
        TriggerSpec::from_toml(&table(text)).unwrap_err()
    }

    /// A minimal trigger with these lines added.
    pub fn with(lines: &str) -> String {
        format!("[trigger]\n{lines}\n[trigger.pattern]\nsource = [\"aws.s3\"]\n")
    }

    pub fn s3_event(key: &str) -> Value {
        json!({
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1",
            "resources": ["arn:aws:s3:::landing"],
            "detail": {
                "version": "0",
                "bucket": { "name": "landing" },
                "object": { "key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184" },
                "reason": "PutObject"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{s3_event, spec, with, EXAMPLE};
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluate_the_example() {
        let e = spec(EXAMPLE).evaluate(&s3_event("sales/q1.csv")).unwrap();
        assert_eq!(e.params["key"], "sales/q1.csv");
        assert_eq!(e.params["size"], "5");
        assert_eq!(e.params["bucket"], r#"{"name":"landing"}"#);
        assert_eq!(e.params["type"], "Object Created");
        // The SHA-256 of ["landing","sales/q1.csv","b1946ac92492d2347c6235b4d2611184"].
        let text = r#"["landing","sales/q1.csv","b1946ac92492d2347c6235b4d2611184"]"#;
        let expected: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(e.dedupe_key, expected);
        assert_eq!(e.dedupe_key.len(), 64);
        // Same object, same key; another object, another key.
        let mut again = s3_event("sales/q1.csv");
        again["id"] = json!("another-delivery");
        assert_eq!(
            spec(EXAMPLE).evaluate(&again).unwrap().dedupe_key,
            e.dedupe_key
        );
        let other = spec(EXAMPLE).evaluate(&s3_event("sales/q2.csv")).unwrap();
        assert_ne!(other.dedupe_key, e.dedupe_key);
    }

    #[test]
    fn parameter_texts() {
        let s = spec(&with(
            "params = { s = \"$.s\", i = \"$.i\", f = \"$.f\", b = \"$.b\", a = \"$.a\", o = \"$.o\" }",
        ));
        let e = s
            .evaluate(&json!({
                "id": "x",
                "s": "text \"quoted\"",
                "i": -12,
                "f": 2.5,
                "b": false,
                "a": [1, "two", null],
                "o": { "k": [true] }
            }))
            .unwrap();
        assert_eq!(e.params["s"], "text \"quoted\"");
        assert_eq!(e.params["i"], "-12");
        assert_eq!(e.params["f"], "2.5");
        assert_eq!(e.params["b"], "false");
        assert_eq!(e.params["a"], r#"[1,"two",null]"#);
        assert_eq!(e.params["o"], r#"{"k":[true]}"#);
        assert_eq!(e.dedupe_key, "id:x");
    }

    #[test]
    fn evaluate_errors() {
        let s = spec(&with(
            "params = { key = \"$.detail.object.key\", n = \"$.n\", e = \"$.e\" }",
        ));
        assert_eq!(
            s.evaluate(&json!({ "id": "x", "n": null, "e": "", "detail": {} })).unwrap_err(),
            "parameter e: $.e is an empty string in the event, and the Data API takes no empty parameter value; \
             parameter key: $.detail.object.key is not in the event; \
             parameter n: $.n is null in the event, and the Data API takes no NULL parameter"
        );
        let no_id = spec(&with(""));
        let why = "dedupe: the event has no \"id\" string to dedupe on; set dedupe in [trigger] to paths of the event";
        assert_eq!(
            no_id.evaluate(&json!({ "source": "aws.s3" })).unwrap_err(),
            why
        );
        assert_eq!(no_id.evaluate(&json!({ "id": 5 })).unwrap_err(), why);
        let dedupe = spec(&with("dedupe = [\"$.a\", \"$.b\", \"$.c[0]\"]"));
        assert_eq!(
            dedupe.evaluate(&json!({ "b": null, "c": [] })).unwrap_err(),
            "dedupe: the event has no $.a, no $.c[0]"
        );
        // A null dedupe value is a value.
        assert!(dedupe
            .evaluate(&json!({ "a": 1, "b": null, "c": [2] }))
            .is_ok());
    }
}

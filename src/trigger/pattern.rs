//! An EventBridge event pattern: checked as EventBridge checks it, sent
//! as is to PutRule, and matched here the way EventBridge matches it (for
//! tests, `pipeline check` and replays).
//!
//! The rules, after "Content filtering in Amazon EventBridge event
//! patterns" (EventBridge User Guide):
//! - every level of a pattern is an object; every key of it must match;
//! - a nested object matches the event's object at that key. When the
//!   event holds an array of objects there, one element must match the
//!   whole nested object (two fields are not matched from different
//!   elements). A missing field, or a value that is not an object, has no
//!   fields: only `exists: false` matches under it;
//! - a leaf is a non-empty list of matchers; it matches when any matcher
//!   matches any of the field's values (an array's elements, arrays
//!   flattened; an object is no value);
//! - `$or` is a list of at least two patterns for the same level, one of
//!   which must match (with the level's other keys).

use super::matcher::{leaf_matches, Matcher, MATCHER_NAMES};
use serde_json::{Map, Value};

/// A checked EventBridge event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    json: Value,
    root: Fields,
}

/// One level of a pattern: its fields and its `$or` alternatives.
#[derive(Debug, Clone, PartialEq)]
struct Fields {
    fields: Vec<(String, Node)>,
    /// Empty when the level has no `$or`.
    any_of: Vec<Fields>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(Vec<Matcher>),
    Nested(Fields),
}

const LIST_HINT: &str =
    "a matcher list must be an array, like [\"landing\"] or [{ prefix = \"sales/\" }]";

impl Pattern {
    /// Checks an event pattern. An error names where the problem is
    /// (`pattern.detail.object.key: ...`, `pattern.$or[1].source[0]: ...`)
    /// and what to write instead.
    pub fn parse(v: &Value) -> Result<Pattern, String> {
        let Value::Object(map) = v else {
            return Err(format!(
                "pattern: must be an object of fields, like {{ source = [\"aws.s3\"] }}, not {v}"
            ));
        };
        let root = parse_fields(map, "pattern", false, false)?;
        Ok(Pattern {
            json: v.clone(),
            root,
        })
    }

    /// Converts a TOML pattern (tables, arrays, strings, numbers,
    /// booleans) to JSON and checks it with [`Pattern::parse`]. TOML has
    /// no null; a TOML date or time is refused (write it as a string).
    pub fn from_toml(v: &toml::Value) -> Result<Pattern, String> {
        Pattern::parse(&toml_to_json(v, "pattern")?)
    }

    /// Whether `event` matches this pattern.
    pub fn matches(&self, event: &Value) -> bool {
        fields_match(&self.root, Some(event))
    }

    /// The pattern as JSON: the text to send to EventBridge (PutRule's
    /// EventPattern).
    pub fn as_json(&self) -> &Value {
        &self.json
    }
}

/// One level of a pattern at `at`: the root, a nested field's object
/// (`field`) or a `$or` alternative; `in_or` under a `$or`.
fn parse_fields(
    map: &Map<String, Value>,
    at: &str,
    field: bool,
    in_or: bool,
) -> Result<Fields, String> {
    if map.is_empty() {
        return Err(format!(
            "{at}: an empty object matches nothing; give at least one field, like {{ source = [\"aws.s3\"] }}"
        ));
    }
    // `key = { prefix = "a" }`: a matcher written without its array.
    if field && map.len() == 1 {
        if let Some(name) = map.keys().find(|k| MATCHER_NAMES.contains(&k.as_str())) {
            return Err(format!(
                "{at}: {LIST_HINT}; a matcher such as {{ {name} = ... }} goes inside the array, like [{{ {name} = ... }}]"
            ));
        }
    }
    let mut fields = Vec::new();
    let mut any_of = Vec::new();
    for (key, v) in map {
        let here = format!("{at}.{key}");
        if key == "$or" {
            any_of = parse_or(v, &here)?;
            continue;
        }
        if in_or && MATCHER_NAMES.contains(&key.as_str()) {
            return Err(format!(
                "{here}: {key:?} is a matcher name and cannot be a field name inside $or"
            ));
        }
        let node = match v {
            Value::Object(inner) => Node::Nested(parse_fields(inner, &here, true, in_or)?),
            Value::Array(items) => Node::Leaf(parse_leaf(items, &here)?),
            _ => return Err(format!("{here}: {LIST_HINT}")),
        };
        fields.push((key.clone(), node));
    }
    Ok(Fields { fields, any_of })
}

fn parse_or(v: &Value, at: &str) -> Result<Vec<Fields>, String> {
    let shape = "$or is an array of at least two patterns, like [{ source = [\"a\"] }, { detail-type = [\"b\"] }]";
    let Value::Array(items) = v else {
        return Err(format!("{at}: {shape}"));
    };
    if items.len() < 2 {
        return Err(format!("{at}: {shape}; found {}", items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => parse_fields(map, &format!("{at}[{i}]"), false, true),
            other => Err(format!(
                "{at}[{i}]: each $or alternative is a pattern object, not {other}"
            )),
        })
        .collect()
}

fn parse_leaf(items: &[Value], at: &str) -> Result<Vec<Matcher>, String> {
    if items.is_empty() {
        return Err(format!(
            "{at}: an empty matcher list matches nothing; give at least one value or matcher"
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| Matcher::parse(v, &format!("{at}[{i}]")))
        .collect()
}

/// Whether `event` (`None`: missing) matches one level of a pattern.
fn fields_match(level: &Fields, event: Option<&Value>) -> bool {
    match event {
        Some(Value::Array(items)) if !items.is_empty() => {
            items.iter().any(|item| fields_match(level, Some(item)))
        }
        Some(Value::Array(_)) => fields_match(level, None),
        _ => {
            let object = event.and_then(Value::as_object);
            level.fields.iter().all(|(key, node)| {
                let field = object.and_then(|o| o.get(key));
                match node {
                    Node::Leaf(matchers) => leaf_matches(matchers, field),
                    Node::Nested(inner) => fields_match(inner, field),
                }
            }) && (level.any_of.is_empty()
                || level.any_of.iter().any(|alt| fields_match(alt, event)))
        }
    }
}

fn toml_to_json(v: &toml::Value, at: &str) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{at}: {f} is not a number JSON can hold"))?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => {
            return Err(format!(
                "{at}: a TOML date or time ({d}) cannot be in an event pattern (JSON has none): quote it as a string, like \"{d}\""
            ))
        }
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| toml_to_json(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, item)| Ok((k.clone(), toml_to_json(item, &format!("{at}.{k}"))?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pattern(v: Value) -> Pattern {
        Pattern::parse(&v).unwrap()
    }

    fn err(v: Value) -> String {
        Pattern::parse(&v).unwrap_err()
    }

    /// The pattern of the module's example, in TOML as a pipeline file
    /// has it.
    fn s3_pattern() -> Pattern {
        let text = r#"
            source = ["aws.s3"]
            detail-type = ["Object Created"]
            detail = { bucket = { name = ["landing"] }, object = { key = [{ prefix = "sales/" }] } }
        "#;
        let table: toml::Table = toml::from_str(text).unwrap();
        Pattern::from_toml(&toml::Value::Table(table)).unwrap()
    }

    /// An S3 "Object Created" event as EventBridge delivers it.
    fn s3_event(bucket: &str, key: &str) -> Value {
        json!({
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1",
            "resources": [format!("arn:aws:s3:::{bucket}")],
            "detail": {
                "version": "0",
                "bucket": { "name": bucket },
                "object": {
                    "key": key,
                    "size": 5,
                    "etag": "b1946ac92492d2347c6235b4d2611184",
                    "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                    "sequencer": "617f08299329d189"
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": "PutObject"
            }
        })
    }

    #[test]
    fn the_s3_object_created_example() {
        let p = s3_pattern();
        assert!(p.matches(&s3_event("landing", "sales/2024/q1.csv")));
        assert!(!p.matches(&s3_event("landing", "hr/people.csv")));
        assert!(!p.matches(&s3_event("archive", "sales/2024/q1.csv")));
        let mut deleted = s3_event("landing", "sales/2024/q1.csv");
        deleted["detail-type"] = json!("Object Deleted");
        assert!(!p.matches(&deleted));
        let mut other_source = s3_event("landing", "sales/2024/q1.csv");
        other_source["source"] = json!("my.app");
        assert!(!p.matches(&other_source));
        assert_eq!(
            p.as_json(),
            &json!({
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": { "name": ["landing"] },
                    "object": { "key": [{ "prefix": "sales/" }] }
                }
            })
        );
    }

    #[test]
    fn as_json_is_the_pattern_given() {
        let v = json!({ "detail": { "size": [{ "numeric": [">", 0] }], "$or": [{ "a": [1] }, { "b": [null] }] } });
        assert_eq!(pattern(v.clone()).as_json(), &v);
    }

    #[test]
    fn every_key_must_match() {
        let p = pattern(json!({ "source": ["a"], "detail": { "x": [1], "y": [2] } }));
        assert!(p.matches(&json!({ "source": "a", "detail": { "x": 1, "y": 2, "z": 3 } })));
        assert!(!p.matches(&json!({ "source": "a", "detail": { "x": 1 } })));
        assert!(!p.matches(&json!({ "source": "b", "detail": { "x": 1, "y": 2 } })));
        assert!(!p.matches(&json!({ "detail": { "x": 1, "y": 2 } })));
    }

    #[test]
    fn nested_objects_need_objects() {
        let p = pattern(json!({ "detail": { "bucket": { "name": ["landing"] } } }));
        assert!(p.matches(&json!({ "detail": { "bucket": { "name": "landing" } } })));
        assert!(!p.matches(&json!({ "detail": { "bucket": "landing" } })));
        assert!(!p.matches(&json!({ "detail": "landing" })));
        assert!(!p.matches(&json!({})));
        // A leaf does not match an object.
        let leaf = pattern(json!({ "detail": ["landing"] }));
        assert!(!leaf.matches(&json!({ "detail": { "name": "landing" } })));
    }

    #[test]
    fn arrays_of_objects_match_element_by_element() {
        let p = pattern(json!({ "employees": { "first": ["Anna"], "last": ["Smith"] } }));
        let event = |last: &str| {
            json!({ "employees": [
                { "first": "John", "last": "Doe" },
                { "first": "Anna", "last": last },
                [ { "first": "Peter", "last": "Jones" } ]
            ] })
        };
        assert!(p.matches(&event("Smith")));
        // Anna and Jones are in different elements.
        assert!(!p.matches(&event("Jones")));
        let nested = pattern(json!({ "employees": { "first": ["Peter"] } }));
        assert!(nested.matches(&event("Smith")));
        let top = pattern(json!({ "resources": ["arn:aws:s3:::landing"] }));
        assert!(top.matches(&s3_event("landing", "k")));
        assert!(!top.matches(&s3_event("archive", "k")));
    }

    #[test]
    fn missing_fields_with_exists_and_anything_but() {
        let absent = pattern(json!({ "detail": { "c-count": [{ "exists": false }] } }));
        assert!(absent.matches(&json!({ "detail": { "state": "running" } })));
        assert!(absent.matches(&json!({ "detail": { "c-count": { "c1": 100 } } })));
        assert!(absent.matches(&json!({ "other": 1 })));
        assert!(absent.matches(&json!({ "detail": "text" })));
        assert!(absent.matches(&json!({ "detail": [] })));
        assert!(!absent.matches(&json!({ "detail": { "c-count": 5 } })));
        assert!(!absent.matches(&json!({ "detail": { "c-count": null } })));
        let present = pattern(json!({ "detail": { "c-count": [{ "exists": true }] } }));
        assert!(present.matches(&json!({ "detail": { "c-count": 0 } })));
        assert!(!present.matches(&json!({ "detail": {} })));
        assert!(!present.matches(&json!({ "other": 1 })));
        let but = pattern(json!({ "detail": { "state": [{ "anything-but": "initializing" }] } }));
        assert!(but.matches(&json!({ "detail": { "state": "running" } })));
        assert!(!but.matches(&json!({ "detail": { "state": "initializing" } })));
        assert!(!but.matches(&json!({ "detail": {} })));
        assert!(!but.matches(&json!({})));
        let either = pattern(
            json!({ "detail": { "state": [{ "anything-but": "x" }, { "exists": false }] } }),
        );
        assert!(either.matches(&json!({ "detail": {} })));
        assert!(either.matches(&json!({ "detail": { "state": "y" } })));
        assert!(!either.matches(&json!({ "detail": { "state": "x" } })));
    }

    #[test]
    fn or_alternatives() {
        let p = pattern(json!({
            "source": ["aws.cloudwatch"],
            "$or": [
                { "metricName": ["CPUUtilization", "ReadLatency"] },
                { "metricType": ["MetricType"], "namespace": ["AWS/EC2"] },
                { "detail": { "scope": ["Service"] } }
            ]
        }));
        let ev = |extra: Value| {
            let mut e = json!({ "source": "aws.cloudwatch" });
            if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            e
        };
        assert!(p.matches(&ev(json!({ "metricName": "ReadLatency" }))));
        assert!(p.matches(&ev(
            json!({ "metricType": "MetricType", "namespace": "AWS/EC2" })
        )));
        assert!(!p.matches(&ev(json!({ "metricType": "MetricType" }))));
        assert!(p.matches(&ev(json!({ "detail": { "scope": "Service" } }))));
        assert!(!p.matches(&ev(json!({ "metricName": "Other" }))));
        assert!(!p.matches(&json!({ "source": "x", "metricName": "ReadLatency" })));
        // $or inside a nested level, and nested $or.
        let nested = pattern(json!({ "detail": { "$or": [
            { "a": [1] },
            { "b": [2], "$or": [{ "c": [3] }, { "d": [4] }] }
        ] } }));
        assert!(nested.matches(&json!({ "detail": { "a": 1 } })));
        assert!(nested.matches(&json!({ "detail": { "b": 2, "d": 4 } })));
        assert!(!nested.matches(&json!({ "detail": { "b": 2 } })));
        assert!(!nested.matches(&json!({ "detail": { "c": 3 } })));
    }

    #[test]
    fn from_toml_converts_every_toml_type() {
        let text = r#"
            a = ["s", 5, 2.5, true]
            "$or" = [{ b = [{ numeric = [">", 0, "<=", 5] }] }, { c = [{ exists = false }] }]
        "#;
        let table: toml::Table = toml::from_str(text).unwrap();
        let p = Pattern::from_toml(&toml::Value::Table(table)).unwrap();
        assert_eq!(
            p.as_json(),
            &json!({
                "a": ["s", 5, 2.5, true],
                "$or": [{ "b": [{ "numeric": [">", 0, "<=", 5] }] }, { "c": [{ "exists": false }] }]
            })
        );
        assert!(p.matches(&json!({ "a": 2.5, "b": 5 })));
        assert!(p.matches(&json!({ "a": "s" })));
        assert!(!p.matches(&json!({ "a": "s", "b": 6, "c": 1 })));
    }

    #[test]
    fn from_toml_errors() {
        let table: toml::Table = toml::from_str("time = [1979-05-27]\nn = [nan]").unwrap();
        let mut only_time = table.clone();
        only_time.remove("n");
        assert_eq!(
            Pattern::from_toml(&toml::Value::Table(only_time)).unwrap_err(),
            "pattern.time[0]: a TOML date or time (1979-05-27) cannot be in an event pattern (JSON has none): quote it as a string, like \"1979-05-27\""
        );
        let mut only_nan = table;
        only_nan.remove("time");
        assert_eq!(
            Pattern::from_toml(&toml::Value::Table(only_nan)).unwrap_err(),
            "pattern.n[0]: NaN is not a number JSON can hold"
        );
        assert_eq!(
            Pattern::from_toml(&toml::Value::String("aws.s3".into())).unwrap_err(),
            "pattern: must be an object of fields, like { source = [\"aws.s3\"] }, not \"aws.s3\""
        );
    }

    #[test]
    fn structure_errors_name_the_place() {
        assert_eq!(
            err(json!({ "detail": { "object": { "key": "sales/" } } })),
            "pattern.detail.object.key: a matcher list must be an array, like [\"landing\"] or [{ prefix = \"sales/\" }]"
        );
        assert_eq!(
            err(json!({ "source": 5 })),
            "pattern.source: a matcher list must be an array, like [\"landing\"] or [{ prefix = \"sales/\" }]"
        );
        assert_eq!(
            err(json!({ "detail": { "object": { "key": { "prefix": "sales/" } } } })),
            "pattern.detail.object.key: a matcher list must be an array, like [\"landing\"] or [{ prefix = \"sales/\" }]; a matcher such as { prefix = ... } goes inside the array, like [{ prefix = ... }]"
        );
        assert_eq!(
            err(json!({ "size": { "numeric": [">", 0] } })),
            "pattern.size: a matcher list must be an array, like [\"landing\"] or [{ prefix = \"sales/\" }]; a matcher such as { numeric = ... } goes inside the array, like [{ numeric = ... }]"
        );
        assert_eq!(
            err(json!([])),
            "pattern: must be an object of fields, like { source = [\"aws.s3\"] }, not []"
        );
        assert_eq!(
            err(json!({})),
            "pattern: an empty object matches nothing; give at least one field, like { source = [\"aws.s3\"] }"
        );
        assert_eq!(
            err(json!({ "detail": {} })),
            "pattern.detail: an empty object matches nothing; give at least one field, like { source = [\"aws.s3\"] }"
        );
        assert_eq!(
            err(json!({ "detail": { "bucket": { "name": [] } } })),
            "pattern.detail.bucket.name: an empty matcher list matches nothing; give at least one value or matcher"
        );
        assert_eq!(
            err(json!({ "detail": { "key": ["a", { "prefix": 1 }] } })),
            "pattern.detail.key[1].prefix: must be a string, like { prefix = \"sales/\" }, not 1"
        );
        assert_eq!(
            err(json!({ "detail": { "key": [["a"]] } })),
            "pattern.detail.key[0]: a matcher cannot be a list; put the values in the field's one list, like [\"a\", \"b\"]"
        );
    }

    #[test]
    fn or_errors() {
        let shape = "$or is an array of at least two patterns, like [{ source = [\"a\"] }, { detail-type = [\"b\"] }]";
        assert_eq!(
            err(json!({ "$or": { "a": ["x"] } })),
            format!("pattern.$or: {shape}")
        );
        assert_eq!(
            err(json!({ "detail": { "$or": [{ "a": ["x"] }] } })),
            format!("pattern.detail.$or: {shape}; found 1")
        );
        assert_eq!(
            err(json!({ "$or": [] })),
            format!("pattern.$or: {shape}; found 0")
        );
        assert_eq!(
            err(json!({ "$or": [{ "a": ["x"] }, ["b"]] })),
            "pattern.$or[1]: each $or alternative is a pattern object, not [\"b\"]"
        );
        assert_eq!(
            err(json!({ "$or": [{ "a": ["x"] }, {}] })),
            "pattern.$or[1]: an empty object matches nothing; give at least one field, like { source = [\"aws.s3\"] }"
        );
        assert_eq!(
            err(json!({ "$or": [{ "a": ["x"] }, { "numeric": [1] }] })),
            "pattern.$or[1].numeric: \"numeric\" is a matcher name and cannot be a field name inside $or"
        );
        assert_eq!(
            err(json!({ "$or": [{ "a": ["x"] }, { "b": { "c": [{ "wildcard": "a**" }] } }] })),
            "pattern.$or[1].b.c[0].wildcard \"a**\": consecutive * at character 3: one * already matches any run of characters"
        );
        // Outside $or, a field may have a matcher's name.
        let p = pattern(json!({ "detail": { "prefix": ["a"], "other": ["b"] } }));
        assert!(p.matches(&json!({ "detail": { "prefix": "a", "other": "b" } })));
    }
}

//! The matchers of an event pattern's leaves (`["landing"]`,
//! `[{ prefix = "sales/" }]`, ...), their checks and how each matches an
//! event's value, after "Content filtering in Amazon EventBridge event
//! patterns" (EventBridge User Guide) and the rule compiler of
//! EventBridge's open-source matcher, Event Ruler.

use super::compare::{Cidr, Range, Wildcard};
use serde_json::{Map, Number, Value};

/// The names of the matchers, as listed in errors.
pub(crate) const MATCHER_NAMES: [&str; 8] = [
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "anything-but",
    "numeric",
    "exists",
    "cidr",
];

const KNOWN: &str =
    "prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists or cidr";

/// One element of a leaf's list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    /// A literal: a string, number, boolean or null equal to the value
    /// (numbers by value: 5 matches 5.0; "5" does not match 5).
    Exact(Value),
    /// A string starting with the text (compared in lowercase when
    /// `ignore_case`, the text then stored lowercased).
    Prefix { text: String, ignore_case: bool },
    /// A string ending with the text.
    Suffix { text: String, ignore_case: bool },
    /// A string equal to this lowercased text once lowercased.
    EqualsIgnoreCase(String),
    /// A string matching a `*` pattern.
    Wildcard(Wildcard),
    /// A present value not matching this.
    AnythingBut(AnythingBut),
    /// A JSON number within bounds.
    Numeric(Range),
    /// A present value (`true`) or an absent one (`false`).
    Exists(bool),
    /// A string holding an IP address within a network.
    Cidr(Cidr),
}

/// What `anything-but` excludes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnythingBut {
    /// These strings, or these numbers.
    Values(Vec<Value>),
    Prefix(String),
    Suffix(String),
    Wildcard(Wildcard),
    /// These strings in any case (stored lowercased).
    EqualsIgnoreCase(Vec<String>),
}

/// Whether a leaf's matchers match an event's field (`None`: missing).
/// The field's values are its scalars, arrays flattened (an object or an
/// empty array has none): `exists: false` matches a field with none; any
/// other matcher needs one value it matches.
pub(crate) fn leaf_matches(matchers: &[Matcher], field: Option<&Value>) -> bool {
    let mut values = Vec::new();
    if let Some(v) = field {
        scalars(v, &mut values);
    }
    if values.is_empty() {
        return matchers.contains(&Matcher::Exists(false));
    }
    values
        .iter()
        .any(|v| matchers.iter().any(|m| m.matches_value(v)))
}

fn scalars<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| scalars(i, out)),
        Value::Object(_) => {}
        scalar => out.push(scalar),
    }
}

impl Matcher {
    /// Checks one element of a leaf's list; `at` names it in errors
    /// (`pattern.detail.object.key[0]`).
    pub(crate) fn parse(v: &Value, at: &str) -> Result<Matcher, String> {
        match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
                Ok(Matcher::Exact(v.clone()))
            }
            Value::Array(_) => Err(format!(
                "{at}: a matcher cannot be a list; put the values in the field's one list, like [\"a\", \"b\"]"
            )),
            Value::Object(map) => parse_object(map, at),
        }
    }

    /// Whether this matcher matches one present scalar value.
    fn matches_value(&self, v: &Value) -> bool {
        let s = v.as_str();
        match self {
            Matcher::Exact(p) => same(p, v),
            Matcher::Prefix { text, ignore_case } => {
                s.is_some_and(|s| fold(s, *ignore_case).starts_with(text.as_str()))
            }
            Matcher::Suffix { text, ignore_case } => {
                s.is_some_and(|s| fold(s, *ignore_case).ends_with(text.as_str()))
            }
            Matcher::EqualsIgnoreCase(text) => s.is_some_and(|s| s.to_lowercase() == *text),
            Matcher::Wildcard(w) => s.is_some_and(|s| w.matches(s)),
            Matcher::AnythingBut(but) => !but.excludes(v),
            Matcher::Numeric(r) => v.as_f64().is_some_and(|n| r.contains(n)),
            Matcher::Exists(present) => *present,
            Matcher::Cidr(c) => s.is_some_and(|s| c.contains(s)),
        }
    }
}

impl AnythingBut {
    /// Whether `v` is one of the excluded values. A value of another type
    /// than the exclusion (a number for a prefix) is not excluded.
    fn excludes(&self, v: &Value) -> bool {
        let s = v.as_str();
        match self {
            AnythingBut::Values(vals) => vals.iter().any(|x| same(x, v)),
            AnythingBut::Prefix(p) => s.is_some_and(|s| s.starts_with(p.as_str())),
            AnythingBut::Suffix(p) => s.is_some_and(|s| s.ends_with(p.as_str())),
            AnythingBut::Wildcard(w) => s.is_some_and(|s| w.matches(s)),
            AnythingBut::EqualsIgnoreCase(vals) => {
                s.is_some_and(|s| vals.contains(&s.to_lowercase()))
            }
        }
    }
}

fn fold(s: &str, ignore_case: bool) -> std::borrow::Cow<'_, str> {
    if ignore_case {
        s.to_lowercase().into()
    } else {
        s.into()
    }
}

/// Literal equality: same type, numbers by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        _ => a == b,
    }
}

fn same_number(x: &Number, y: &Number) -> bool {
    x == y || matches!((x.as_f64(), y.as_f64()), (Some(a), Some(b)) if a == b)
}

fn parse_object(map: &Map<String, Value>, at: &str) -> Result<Matcher, String> {
    let mut entries = map.iter();
    let (Some((name, v)), None) = (entries.next(), entries.next()) else {
        if map.is_empty() {
            return Err(format!("{at}: an empty matcher {{}}: use {KNOWN}"));
        }
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        return Err(format!(
            "{at}: a matcher has one key, found {} ({}): make each its own element, like [{{ prefix = \"a\" }}, {{ suffix = \"b\" }}]",
            keys.len(),
            keys.join(", ")
        ));
    };
    let at = format!("{at}.{name}");
    match name.as_str() {
        "prefix" | "suffix" => {
            let (text, ignore_case) = match v {
                Value::String(s) => (s.clone(), false),
                Value::Object(inner) => match ignore_case_text(inner) {
                    Some(s) => (s.to_lowercase(), true),
                    None => {
                        return Err(format!(
                            "{at}: use a string, like {{ {name} = \"sales/\" }}, or {{ {name} = {{ equals-ignore-case = \"sales/\" }} }}"
                        ))
                    }
                },
                other => {
                    return Err(format!(
                        "{at}: must be a string, like {{ {name} = \"sales/\" }}, not {other}"
                    ))
                }
            };
            Ok(if name == "prefix" {
                Matcher::Prefix { text, ignore_case }
            } else {
                Matcher::Suffix { text, ignore_case }
            })
        }
        "equals-ignore-case" => match v {
            Value::String(s) => Ok(Matcher::EqualsIgnoreCase(s.to_lowercase())),
            other => Err(format!("{at}: must be a string, not {other}")),
        },
        "wildcard" => match v {
            Value::String(s) => Ok(Matcher::Wildcard(Wildcard::parse(s, &at)?)),
            other => Err(format!(
                "{at}: must be a string, like \"dir/*.csv\", not {other}"
            )),
        },
        "anything-but" => Ok(Matcher::AnythingBut(parse_anything_but(v, &at)?)),
        "numeric" => Ok(Matcher::Numeric(Range::parse(v, &at)?)),
        "exists" => match v {
            Value::Bool(b) => Ok(Matcher::Exists(*b)),
            other => Err(format!("{at}: must be true or false, not {other}")),
        },
        "cidr" => match v {
            Value::String(s) => Ok(Matcher::Cidr(Cidr::parse(s, &at)?)),
            other => Err(format!(
                "{at}: must be a string, like \"10.0.0.0/24\", not {other}"
            )),
        },
        other => Err(format!("{at}: unknown matcher {other:?}: use {KNOWN}")),
    }
}

/// The text of `{ equals-ignore-case = "text" }`.
fn ignore_case_text(map: &Map<String, Value>) -> Option<&str> {
    match map.get("equals-ignore-case") {
        Some(Value::String(s)) if map.len() == 1 => Some(s),
        _ => None,
    }
}

fn parse_anything_but(v: &Value, at: &str) -> Result<AnythingBut, String> {
    const TAKES: &str = "anything-but takes a string, a number, a list of strings or of numbers, or one of { prefix | suffix | wildcard | equals-ignore-case = ... }";
    match v {
        Value::String(_) | Value::Number(_) => Ok(AnythingBut::Values(vec![v.clone()])),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(format!("{at}: an empty list excludes nothing; {TAKES}"));
            }
            let strings = items.iter().all(Value::is_string);
            let numbers = items.iter().all(Value::is_number);
            if !strings && !numbers {
                return Err(format!(
                    "{at}: a list is all strings or all numbers (no mix, no true, false or null)"
                ));
            }
            Ok(AnythingBut::Values(items.clone()))
        }
        Value::Object(map) => {
            let only = if map.len() == 1 {
                map.iter().next()
            } else {
                None
            };
            let Some((name, inner)) = only else {
                return Err(format!("{at}: {TAKES}"));
            };
            let at = format!("{at}.{name}");
            match (name.as_str(), inner) {
                ("prefix" | "suffix", Value::String(s)) if s.is_empty() => Err(format!(
                    "{at}: an empty {name} would exclude every string; give some text"
                )),
                ("prefix", Value::String(s)) => Ok(AnythingBut::Prefix(s.clone())),
                ("suffix", Value::String(s)) => Ok(AnythingBut::Suffix(s.clone())),
                ("wildcard", Value::String(s)) => {
                    Ok(AnythingBut::Wildcard(Wildcard::parse(s, &at)?))
                }
                ("equals-ignore-case", Value::String(s)) => {
                    Ok(AnythingBut::EqualsIgnoreCase(vec![s.to_lowercase()]))
                }
                ("equals-ignore-case", Value::Array(items))
                    if !items.is_empty() && items.iter().all(Value::is_string) =>
                {
                    Ok(AnythingBut::EqualsIgnoreCase(
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_lowercase)
                            .collect(),
                    ))
                }
                ("equals-ignore-case", _) => Err(format!(
                    "{at}: must be a string or a non-empty list of strings"
                )),
                ("prefix" | "suffix" | "wildcard", other) => {
                    Err(format!("{at}: must be a string, not {other}"))
                }
                _ => Err(format!("{at}: {TAKES}")),
            }
        }
        other => Err(format!("{at}: {other} is not allowed; {TAKES}")),
    }
}

/// Helpers for the tests of the matchers (here and in `compare`).
#[cfg(test)]
pub(crate) mod testing {
    use super::{leaf_matches, Matcher};
    use serde_json::Value;

    fn list(pattern: Value) -> Vec<Matcher> {
        pattern
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, v)| Matcher::parse(v, &format!("pattern.f[{i}]")).unwrap())
            .collect()
    }

    /// Whether the leaf `pattern` matches a field holding `value`.
    pub fn hit(pattern: Value, value: Value) -> bool {
        leaf_matches(&list(pattern), Some(&value))
    }

    /// Whether the leaf `pattern` matches a missing field.
    pub fn missing(pattern: Value) -> bool {
        leaf_matches(&list(pattern), None)
    }

    /// The error of one matcher, located at `pattern.f[0]`.
    pub fn err(matcher: Value) -> String {
        Matcher::parse(&matcher, "pattern.f[0]").unwrap_err()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{err, hit, missing};
    use serde_json::json;

    #[test]
    fn exact_literals() {
        assert!(hit(json!(["landing"]), json!("landing")));
        assert!(hit(json!(["a", "landing"]), json!("landing")));
        assert!(!hit(json!(["landing"]), json!("Landing")));
        assert!(!hit(json!(["landing"]), json!("landing2")));
        assert!(hit(json!([""]), json!("")));
        assert!(hit(json!([5]), json!(5)));
        assert!(hit(json!([5]), json!(5.0)));
        assert!(hit(json!([301.8]), json!(3.018e2)));
        assert!(hit(json!([123456789012u64]), json!(123456789012u64)));
        assert!(!hit(json!([5]), json!(6)));
        assert!(hit(json!([true]), json!(true)));
        assert!(!hit(json!([true]), json!(false)));
        assert!(hit(json!([null]), json!(null)));
        assert!(!missing(json!([null])));
        assert!(!missing(json!(["landing"])));
    }

    #[test]
    fn exact_types_do_not_mix() {
        assert!(!hit(json!(["5"]), json!(5)));
        assert!(!hit(json!([5]), json!("5")));
        assert!(!hit(json!(["true"]), json!(true)));
        assert!(!hit(json!([null]), json!("null")));
        assert!(!hit(json!([false]), json!(null)));
    }

    #[test]
    fn arrays_in_events_match_on_any_element() {
        assert!(hit(json!(["b"]), json!(["a", "b"])));
        assert!(!hit(json!(["c"]), json!(["a", "b"])));
        assert!(hit(json!([{ "prefix": "b" }]), json!([["a"], ["bc"]])));
        assert!(!hit(json!(["a"]), json!([])));
        assert!(!hit(json!([{ "exists": true }]), json!([])));
        assert!(hit(json!([{ "exists": false }]), json!([])));
        assert!(hit(json!([{ "anything-but": "a" }]), json!(["a", "b"])));
        assert!(!hit(
            json!([{ "anything-but": ["a", "b"] }]),
            json!(["a", "b"])
        ));
    }

    #[test]
    fn prefix_and_suffix() {
        assert!(hit(
            json!([{ "prefix": "sales/" }]),
            json!("sales/2024.csv")
        ));
        assert!(hit(json!([{ "prefix": "sales/" }]), json!("sales/")));
        assert!(!hit(
            json!([{ "prefix": "sales/" }]),
            json!("Sales/2024.csv")
        ));
        assert!(!hit(json!([{ "prefix": "5" }]), json!(55)));
        assert!(hit(json!([{ "prefix": "" }]), json!("anything")));
        assert!(hit(json!([{ "suffix": ".csv" }]), json!("sales/2024.csv")));
        assert!(!hit(json!([{ "suffix": ".csv" }]), json!("sales/2024.CSV")));
        assert!(!hit(
            json!([{ "suffix": ".csv" }]),
            json!("sales/2024.csv.gz")
        ));
        assert!(!missing(json!([{ "prefix": "" }])));
    }

    #[test]
    fn prefix_and_suffix_ignoring_case() {
        let prefix = json!([{ "prefix": { "equals-ignore-case": "EventB" } }]);
        assert!(hit(prefix.clone(), json!("eventbridge")));
        assert!(hit(prefix.clone(), json!("EVENTBRIDGE")));
        assert!(!hit(prefix, json!("events")));
        let suffix = json!([{ "suffix": { "equals-ignore-case": ".png" } }]);
        assert!(hit(suffix.clone(), json!("a.PNG")));
        assert!(hit(suffix.clone(), json!("a.png")));
        assert!(!hit(suffix.clone(), json!("a.jpg")));
        assert!(!hit(suffix, json!(1)));
    }

    #[test]
    fn equals_ignore_case() {
        let p = json!([{ "equals-ignore-case": "Landing" }]);
        assert!(hit(p.clone(), json!("LANDING")));
        assert!(hit(p.clone(), json!("landing")));
        assert!(hit(json!([{ "equals-ignore-case": "ÉTÉ" }]), json!("été")));
        assert!(!hit(p.clone(), json!("landings")));
        assert!(!hit(json!([{ "equals-ignore-case": "true" }]), json!(true)));
        assert!(!missing(p));
    }

    #[test]
    fn anything_but_values() {
        let p = json!([{ "anything-but": "initializing" }]);
        assert!(hit(p.clone(), json!("running")));
        assert!(!hit(p.clone(), json!("initializing")));
        assert!(hit(p.clone(), json!(5)));
        assert!(hit(p.clone(), json!(null)));
        assert!(!missing(p));
        let list = json!([{ "anything-but": ["stopped", "overloaded"] }]);
        assert!(hit(list.clone(), json!("running")));
        assert!(!hit(list.clone(), json!("stopped")));
        assert!(!hit(list, json!("overloaded")));
        let numbers = json!([{ "anything-but": [100, 200, 300] }]);
        assert!(hit(numbers.clone(), json!(301.8)));
        assert!(!hit(numbers.clone(), json!(200)));
        assert!(!hit(numbers.clone(), json!(200.0)));
        assert!(hit(numbers, json!("200")));
        assert!(!hit(json!([{ "anything-but": 123 }]), json!(123)));
    }

    #[test]
    fn anything_but_prefix_suffix_wildcard_and_case() {
        let prefix = json!([{ "anything-but": { "prefix": "us-" } }]);
        assert!(hit(prefix.clone(), json!("eu-west-1")));
        assert!(!hit(prefix.clone(), json!("us-east-1")));
        assert!(hit(prefix.clone(), json!(7)));
        assert!(!missing(prefix));
        let suffix = json!([{ "anything-but": { "suffix": ".png" } }]);
        assert!(hit(suffix.clone(), json!("a.jpg")));
        assert!(!hit(suffix, json!("a.png")));
        let wildcard = json!([{ "anything-but": { "wildcard": "*/lib/*" } }]);
        assert!(hit(wildcard.clone(), json!("/usr/bin/x")));
        assert!(!hit(wildcard.clone(), json!("/usr/lib/x")));
        assert!(!missing(wildcard));
        let case = json!([{ "anything-but": { "equals-ignore-case": "initializing" } }]);
        assert!(hit(case.clone(), json!("running")));
        assert!(!hit(case.clone(), json!("INITIALIZING")));
        assert!(!missing(case));
        let cases =
            json!([{ "anything-but": { "equals-ignore-case": ["Stopped", "overloaded"] } }]);
        assert!(hit(cases.clone(), json!("running")));
        assert!(!hit(cases.clone(), json!("STOPPED")));
        assert!(!hit(cases, json!("Overloaded")));
    }

    #[test]
    fn exists() {
        assert!(hit(json!([{ "exists": true }]), json!("x")));
        assert!(hit(json!([{ "exists": true }]), json!(null)));
        assert!(hit(json!([{ "exists": true }]), json!(0)));
        assert!(!missing(json!([{ "exists": true }])));
        assert!(missing(json!([{ "exists": false }])));
        assert!(!hit(json!([{ "exists": false }]), json!("x")));
        assert!(!hit(json!([{ "exists": false }]), json!(null)));
        // Exists looks at leaves only: an object is no value.
        assert!(!hit(json!([{ "exists": true }]), json!({ "c1": 100 })));
        assert!(hit(json!([{ "exists": false }]), json!({ "c1": 100 })));
        // Any matcher of the list may match.
        assert!(missing(json!(["a", { "exists": false }])));
        assert!(hit(json!(["a", { "exists": false }]), json!("a")));
        assert!(!hit(json!(["a", { "exists": false }]), json!("b")));
    }

    #[test]
    fn matcher_errors() {
        assert_eq!(
            err(json!(["a"])),
            "pattern.f[0]: a matcher cannot be a list; put the values in the field's one list, like [\"a\", \"b\"]"
        );
        assert_eq!(
            err(json!({ "prefix": "a", "suffix": "b" })),
            "pattern.f[0]: a matcher has one key, found 2 (prefix, suffix): make each its own element, like [{ prefix = \"a\" }, { suffix = \"b\" }]"
        );
        assert_eq!(
            err(json!({ "prefix": 5 })),
            "pattern.f[0].prefix: must be a string, like { prefix = \"sales/\" }, not 5"
        );
        assert_eq!(
            err(json!({ "suffix": { "equals-ignore-case": 1 } })),
            "pattern.f[0].suffix: use a string, like { suffix = \"sales/\" }, or { suffix = { equals-ignore-case = \"sales/\" } }"
        );
        assert_eq!(
            err(json!({ "prefix": { "anything-but": "x" } })),
            "pattern.f[0].prefix: use a string, like { prefix = \"sales/\" }, or { prefix = { equals-ignore-case = \"sales/\" } }"
        );
        assert_eq!(
            err(json!({ "equals-ignore-case": ["a"] })),
            "pattern.f[0].equals-ignore-case: must be a string, not [\"a\"]"
        );
        assert_eq!(
            err(json!({ "wildcard": 1 })),
            "pattern.f[0].wildcard: must be a string, like \"dir/*.csv\", not 1"
        );
        assert_eq!(
            err(json!({ "exists": "yes" })),
            "pattern.f[0].exists: must be true or false, not \"yes\""
        );
    }
}

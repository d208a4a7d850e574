//! Paths into an event, such as `$.detail.object.key`: where a trigger
//! takes a run parameter or a part of its dedupe key from.
//!
//! The syntax is the plain subset of JSONPath that names one value:
//! - `$` is the whole event;
//! - `.name` is a field of an object (`$.detail.object.key`);
//! - `["name"]` or `['name']` is a field whose name has characters a
//!   dotted name cannot hold (`$["detail-type"]` also works as
//!   `$.detail-type`; `$.detail["my key"]` needs the brackets), with `\"`,
//!   `\'` and `\\` for a quote or a backslash;
//! - `[0]` is an element of an array, counted from 0.
//!
//! Wildcards (`*`), recursive descent (`..`), slices and filters are not
//! supported: a path names one value or none.

use serde_json::Value;
use std::fmt;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A field of an object.
    Field(String),
    /// An element of an array.
    Index(usize),
}

/// A parsed path into an event (`$.detail.object.key`,
/// `$.detail.items[0].id`, `$["detail-type"]`). Shown as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

/// The hint every "use brackets" error ends with.
const BRACKET_HINT: &str =
    "write a name with such characters in brackets, like $.detail[\"my key\"]";

impl JsonPath {
    /// Parses a path. An error says what is wrong and at which character
    /// (counted from 1); it does not repeat the path.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let chars: Vec<char> = text.chars().collect();
        if chars.first() != Some(&'$') {
            return Err("a path starts with $ (the event), like $.detail.object.key".to_string());
        }
        let mut steps = Vec::new();
        let mut i = 1;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    if chars.get(i + 1) == Some(&'.') {
                        return Err(format!(
                            "recursive descent (..) at character {} is not supported: name every field, like $.detail.object.key",
                            i + 1
                        ));
                    }
                    let (name, next) = dotted_name(&chars, i + 1)?;
                    steps.push(Step::Field(name));
                    i = next;
                }
                '[' => {
                    let (step, next) = bracket(&chars, i)?;
                    steps.push(step);
                    i = next;
                }
                c => {
                    return Err(format!(
                        "unexpected {c:?} at character {}: after $ or a field comes .name, [\"name\"] or [index]",
                        i + 1
                    ))
                }
            }
        }
        Ok(JsonPath {
            text: text.to_string(),
            steps,
        })
    }

    /// The value this path names in `v`, or `None` when a field is missing,
    /// an index is past the end, or a step meets a value of another kind
    /// (a field of an array, an index into an object).
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut at = v;
        for step in &self.steps {
            at = match (step, at) {
                (Step::Field(name), Value::Object(map)) => map.get(name)?,
                (Step::Index(n), Value::Array(items)) => items.get(*n)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The name after a `.` starting at `start`, and where the next step
/// starts.
fn dotted_name(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let mut end = start;
    while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
        let c = chars[end];
        if c == '*' {
            return Err(format!(
                "wildcard (*) at character {} is not supported: a path names one value",
                end + 1
            ));
        }
        if c == ']' || c == '"' || c == '\'' || c.is_whitespace() {
            return Err(format!(
                "{c:?} at character {} cannot be in a dotted name: {BRACKET_HINT}",
                end + 1
            ));
        }
        end += 1;
    }
    if end == start {
        return Err(format!(
            "empty segment at character {}: a . is followed by a field name",
            start
        ));
    }
    Ok((chars[start..end].iter().collect(), end))
}

/// The step in brackets opening at `open`, and where the next step starts.
fn bracket(chars: &[char], open: usize) -> Result<(Step, usize), String> {
    let unclosed = || format!("unclosed [ at character {}: end it with ]", open + 1);
    let first = *chars.get(open + 1).ok_or_else(unclosed)?;
    match first {
        '"' | '\'' => {
            let mut name = String::new();
            let mut i = open + 2;
            loop {
                let c = *chars.get(i).ok_or_else(|| {
                    format!(
                        "unclosed quote at character {}: end the name with {first}]",
                        open + 2
                    )
                })?;
                match c {
                    '\\' => {
                        let escaped = *chars.get(i + 1).ok_or_else(unclosed)?;
                        if escaped != '"' && escaped != '\'' && escaped != '\\' {
                            return Err(format!(
                                "unknown escape \\{escaped} at character {}: use \\\", \\' or \\\\",
                                i + 1
                            ));
                        }
                        name.push(escaped);
                        i += 2;
                    }
                    c if c == first => break,
                    c => {
                        name.push(c);
                        i += 1;
                    }
                }
            }
            // `i` is the closing quote.
            match chars.get(i + 1) {
                Some(']') => {}
                Some(c) => {
                    return Err(format!(
                        "unexpected {c:?} at character {}: a quoted name is followed by ]",
                        i + 2
                    ))
                }
                None => return Err(unclosed()),
            }
            if name.is_empty() {
                return Err(format!(
                    "empty segment at character {}: the brackets hold a field name",
                    open + 1
                ));
            }
            Ok((Step::Field(name), i + 2))
        }
        ']' => Err(format!(
            "empty segment at character {}: the brackets hold an index, like [0], or a quoted name, like [\"my key\"]",
            open + 1
        )),
        '*' => Err(format!(
            "wildcard [*] at character {} is not supported: a path names one value, like [0]",
            open + 1
        )),
        '?' => Err(format!(
            "filter [?...] at character {} is not supported: a path names one value",
            open + 1
        )),
        _ => {
            let close = chars[open..]
                .iter()
                .position(|&c| c == ']')
                .map(|p| open + p)
                .ok_or_else(unclosed)?;
            let inside: String = chars[open + 1..close].iter().collect();
            if inside.contains(':') {
                return Err(format!(
                    "slice [{inside}] at character {} is not supported: a path names one value, like [0]",
                    open + 1
                ));
            }
            if !inside.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "bad index [{inside}] at character {}: an index is a whole number from 0, like [0]; a name is quoted, like [\"{inside}\"]",
                    open + 1
                ));
            }
            let n = inside
                .parse::<usize>()
                .map_err(|_| format!("bad index [{inside}] at character {}: too large", open + 1))?;
            Ok((Step::Index(n), close + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "id": "e-1",
            "detail-type": "Object Created",
            "detail": {
                "object": { "key": "sales/2024.csv", "size": 42 },
                "items": [ { "id": "a" }, { "id": "b" } ],
                "my key": true,
                "quote\"d": 1,
                "it's": 2,
                "back\\slash": 3,
                "a.b": 4
            }
        })
    }

    fn get(path: &str) -> Option<Value> {
        JsonPath::parse(path).unwrap().get(&event()).cloned()
    }

    fn err(path: &str) -> String {
        JsonPath::parse(path).unwrap_err()
    }

    #[test]
    fn dotted_fields() {
        assert_eq!(get("$.detail.object.key"), Some(json!("sales/2024.csv")));
        assert_eq!(get("$.detail.object.size"), Some(json!(42)));
        assert_eq!(get("$.detail-type"), Some(json!("Object Created")));
        assert_eq!(get("$.detail.object.nope"), None);
        assert_eq!(get("$.id.more"), None);
    }

    #[test]
    fn the_whole_event() {
        assert_eq!(get("$"), Some(event()));
    }

    #[test]
    fn indexes() {
        assert_eq!(get("$.detail.items[0].id"), Some(json!("a")));
        assert_eq!(get("$.detail.items[1]"), Some(json!({ "id": "b" })));
        assert_eq!(get("$.detail.items[2]"), None);
        // An index into an object, a field of an array: nothing.
        assert_eq!(get("$.detail[0]"), None);
        assert_eq!(get("$.detail.items.id"), None);
    }

    #[test]
    fn brackets() {
        assert_eq!(get("$[\"detail-type\"]"), Some(json!("Object Created")));
        assert_eq!(get("$['detail-type']"), Some(json!("Object Created")));
        assert_eq!(get("$.detail[\"my key\"]"), Some(json!(true)));
        assert_eq!(
            get("$[\"detail\"][\"object\"].key"),
            Some(json!("sales/2024.csv"))
        );
        assert_eq!(get("$.detail[\"a.b\"]"), Some(json!(4)));
        assert_eq!(get("$.detail[\"quote\\\"d\"]"), Some(json!(1)));
        assert_eq!(get("$.detail['it\\'s']"), Some(json!(2)));
        assert_eq!(get("$.detail[\"it's\"]"), Some(json!(2)));
        assert_eq!(get("$.detail[\"back\\\\slash\"]"), Some(json!(3)));
        assert_eq!(get("$.detail[\"items\"][1][\"id\"]"), Some(json!("b")));
    }

    #[test]
    fn display_gives_the_text_back() {
        for text in [
            "$",
            "$.detail.object.key",
            "$[\"detail-type\"]",
            "$.detail.items[0].id",
        ] {
            let p = JsonPath::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(p.as_str(), text);
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            err("detail.key"),
            "a path starts with $ (the event), like $.detail.object.key"
        );
        assert_eq!(err(""), err("detail.key"));
        assert_eq!(
            err("$.detail..key"),
            "recursive descent (..) at character 9 is not supported: name every field, like $.detail.object.key"
        );
        assert_eq!(
            err("$..key"),
            "recursive descent (..) at character 2 is not supported: name every field, like $.detail.object.key"
        );
        assert_eq!(
            err("$.detail."),
            "empty segment at character 9: a . is followed by a field name"
        );
        assert_eq!(
            err("$.detail.*"),
            "wildcard (*) at character 10 is not supported: a path names one value"
        );
        assert_eq!(
            err("$.detail.items[*]"),
            "wildcard [*] at character 15 is not supported: a path names one value, like [0]"
        );
        assert_eq!(
            err("$.detail.items[?(@.id)]"),
            "filter [?...] at character 15 is not supported: a path names one value"
        );
        assert_eq!(
            err("$.detail.items[0:2]"),
            "slice [0:2] at character 15 is not supported: a path names one value, like [0]"
        );
        assert_eq!(
            err("$.detail.items[-1]"),
            "bad index [-1] at character 15: an index is a whole number from 0, like [0]; a name is quoted, like [\"-1\"]"
        );
        assert_eq!(
            err("$.detail[key]"),
            "bad index [key] at character 9: an index is a whole number from 0, like [0]; a name is quoted, like [\"key\"]"
        );
        assert_eq!(
            err("$.detail.items[99999999999999999999999]"),
            "bad index [99999999999999999999999] at character 15: too large"
        );
        assert_eq!(
            err("$.detail.items[0"),
            "unclosed [ at character 15: end it with ]"
        );
        assert_eq!(err("$.detail["), "unclosed [ at character 9: end it with ]");
        assert_eq!(
            err("$.detail[\"my key"),
            "unclosed quote at character 10: end the name with \"]"
        );
        assert_eq!(
            err("$.detail[\"my key\""),
            "unclosed [ at character 9: end it with ]"
        );
        assert_eq!(
            err("$.detail[\"my key\"x]"),
            "unexpected 'x' at character 18: a quoted name is followed by ]"
        );
        assert_eq!(
            err("$.detail[]"),
            "empty segment at character 9: the brackets hold an index, like [0], or a quoted name, like [\"my key\"]"
        );
        assert_eq!(
            err("$.detail[\"\"]"),
            "empty segment at character 9: the brackets hold a field name"
        );
        assert_eq!(
            err("$.detail[\"a\\nb\"]"),
            "unknown escape \\n at character 12: use \\\", \\' or \\\\"
        );
        assert_eq!(
            err("$.my key"),
            "' ' at character 5 cannot be in a dotted name: write a name with such characters in brackets, like $.detail[\"my key\"]"
        );
        assert_eq!(
            err("$.detail]"),
            "']' at character 9 cannot be in a dotted name: write a name with such characters in brackets, like $.detail[\"my key\"]"
        );
        assert_eq!(
            err("$detail"),
            "unexpected 'd' at character 2: after $ or a field comes .name, [\"name\"] or [index]"
        );
    }
}

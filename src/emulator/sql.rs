//! Pure SQL helpers of the emulator: finding the Data API's `:name`
//! parameters of a SQL text (to check them before it runs; the rewriting
//! itself happens on the parsed tree in `redshift`), and typing SQLite
//! values as Data API `Field`s.

use std::collections::HashMap;

/// A SQL text whose `:name` parameters were replaced by `?1..?K`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewritten {
    /// The SQL handed to SQLite.
    pub sql: String,
    /// Parameter names in placeholder order: `names[0]` is bound to `?1`.
    pub names: Vec<String>,
}

/// Replaces every `:name` outside quoted strings, quoted identifiers and
/// comments, and not part of a `::` cast, by `?N`, numbering distinct names
/// by first appearance. A name is `[0-9A-Za-z_]+` as in the API model.
pub(crate) fn rewrite_params(sql: &str) -> Rewritten {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                // Quoted string or identifier; a doubled quote escapes itself.
                let quote = c;
                out.push(c);
                i += 1;
                while i < n {
                    out.push(chars[i]);
                    if chars[i] == quote {
                        if i + 1 < n && chars[i + 1] == quote {
                            out.push(chars[i + 1]);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            '[' => {
                // SQLite's bracketed identifier.
                while i < n {
                    out.push(chars[i]);
                    i += 1;
                    if chars[i - 1] == ']' {
                        break;
                    }
                }
            }
            '-' if i + 1 < n && chars[i + 1] == '-' => {
                while i < n && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
            }
            '/' if i + 1 < n && chars[i + 1] == '*' => {
                out.push_str("/*");
                i += 2;
                while i < n {
                    if chars[i] == '*' && i + 1 < n && chars[i + 1] == '/' {
                        out.push_str("*/");
                        i += 2;
                        break;
                    }
                    out.push(chars[i]);
                    i += 1;
                }
            }
            '$' => {
                // Dollar quoting ($$ ... $$ or $tag$ ... $tag$), as Redshift has.
                let mut j = i + 1;
                while j < n && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if j < n && chars[j] == '$' && !chars[i + 1].is_ascii_digit() {
                    let tag: String = chars[i..=j].iter().collect();
                    let tag_chars: Vec<char> = tag.chars().collect();
                    out.push_str(&tag);
                    i = j + 1;
                    loop {
                        if i >= n {
                            break;
                        }
                        if chars[i..].starts_with(&tag_chars) {
                            out.push_str(&tag);
                            i += tag_chars.len();
                            break;
                        }
                        out.push(chars[i]);
                        i += 1;
                    }
                } else {
                    out.push(c);
                    i += 1;
                }
            }
            ':' if i + 1 < n && chars[i + 1] == ':' => {
                // A `::type` cast, never a parameter.
                out.push_str("::");
                i += 2;
            }
            ':' if i + 1 < n && is_name_char(chars[i + 1]) => {
                let mut j = i + 1;
                while j < n && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                let pos = match index.get(&name) {
                    Some(p) => *p,
                    None => {
                        names.push(name.clone());
                        index.insert(name, names.len());
                        names.len()
                    }
                };
                out.push('?');
                out.push_str(&pos.to_string());
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Rewritten { sql: out, names }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A parameter value that is a plain number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Numeric {
    Int(i64),
    Real(f64),
}

/// `Some` when `value` is written as a plain decimal number: an optional
/// `-`, digits without a leading zero (so codes such as `007` stay text),
/// an optional fraction. Anything else is bound as text.
pub(crate) fn numeric_param(value: &str) -> Option<Numeric> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || (int.len() > 1 && int.starts_with('0')) {
        return None;
    }
    match frac {
        None => value.parse().ok().map(Numeric::Int),
        Some(f) if all_digits(f) => value.parse().ok().map(Numeric::Real),
        Some(_) => None,
    }
}

/// True when `name` is a valid Data API parameter name (`[0-9a-zA-Z_]+`).
pub(crate) fn valid_param_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(is_name_char)
}

/// One value of a result row, typed from SQLite's storage class.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Long(i64),
    Double(f64),
    Text(String),
    Bool(bool),
    Blob(Vec<u8>),
}

/// SQLite's storage classes (and sqlx's names for declared types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageClass {
    Null,
    Integer,
    Real,
    Text,
    Blob,
}

impl StorageClass {
    /// From sqlx's type name of a value (`INTEGER`, `REAL`, `TEXT`, ...).
    pub(crate) fn from_sqlx_name(name: &str) -> StorageClass {
        match name {
            "INTEGER" | "INT4" | "BOOLEAN" => StorageClass::Integer,
            "REAL" => StorageClass::Real,
            "TEXT" | "DATE" | "TIME" | "DATETIME" => StorageClass::Text,
            "BLOB" => StorageClass::Blob,
            _ => StorageClass::Null,
        }
    }
}

impl Value {
    /// The Data API `Field` union member for this value.
    pub(crate) fn to_field(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Null => json!({ "isNull": true }),
            Value::Long(v) => json!({ "longValue": v }),
            Value::Double(v) if v.is_finite() => json!({ "doubleValue": v }),
            // JSON has no NaN or infinity: Redshift itself would not return
            // them as numbers either.
            Value::Double(v) => json!({ "stringValue": v.to_string() }),
            Value::Text(v) => json!({ "stringValue": v }),
            Value::Bool(v) => json!({ "booleanValue": v }),
            Value::Blob(v) => json!({ "blobValue": aws_smithy_types::base64::encode(v) }),
        }
    }

    /// The value as one CSV cell (RFC 4180 quoting; NULL is empty).
    pub(crate) fn to_csv(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Long(v) => v.to_string(),
            Value::Double(v) => v.to_string(),
            Value::Bool(v) => if *v { "t" } else { "f" }.to_string(),
            Value::Text(v) => csv_quote(v),
            Value::Blob(v) => aws_smithy_types::base64::encode(v),
        }
    }

    /// Approximate size in bytes, for ResultSize.
    pub(crate) fn size(&self) -> i64 {
        let n = match self {
            Value::Null => 0,
            Value::Long(_) | Value::Double(_) => 8,
            Value::Bool(_) => 1,
            Value::Text(v) => v.len(),
            Value::Blob(v) => v.len(),
        };
        i64::try_from(n).unwrap_or(i64::MAX)
    }
}

/// Quotes a CSV cell when it needs it: the `csv` crate's RFC 4180 quoting,
/// the same as the worker's result files.
pub(crate) fn csv_quote(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Necessary)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(s.len() + 3));
    // Writing into a Vec cannot fail, and the bytes are the input's UTF-8
    // plus ASCII quotes and the record's terminator, taken off.
    if w.write_record([s]).is_err() {
        return String::new();
    }
    match w.into_inner() {
        Ok(mut bytes) => {
            bytes.pop();
            String::from_utf8(bytes).unwrap_or_default()
        }
        Err(_) => String::new(),
    }
}

/// Redshift-like type name for a column, from SQLite's declared or observed
/// type.
pub(crate) fn redshift_type_name(sqlx_name: &str) -> &'static str {
    match sqlx_name {
        "INTEGER" | "INT4" => "int8",
        "REAL" => "float8",
        "TEXT" => "varchar",
        "BLOB" => "varbyte",
        "BOOLEAN" => "bool",
        "NUMERIC" => "numeric",
        "DATE" => "date",
        "TIME" => "time",
        "DATETIME" => "timestamp",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_quote("plain"), "plain");
        assert_eq!(csv_quote(""), "");
        assert_eq!(csv_quote("a,b"), "\"a,b\"");
        assert_eq!(csv_quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_quote("two\nlines"), "\"two\nlines\"");
    }

    fn rw(sql: &str) -> (String, Vec<String>) {
        let r = rewrite_params(sql);
        (r.sql, r.names)
    }

    #[test]
    fn rewrites_names_in_order_of_first_use() {
        let (sql, names) = rw("select * from t where a = :a and b = :b_2 or a = :a");
        assert_eq!(sql, "select * from t where a = ?1 and b = ?2 or a = ?1");
        assert_eq!(names, vec!["a", "b_2"]);
    }

    #[test]
    fn leaves_casts_strings_identifiers_and_comments_alone() {
        let sql = "select :x::int, ':y', \"col:z\", 'it''s :q' -- :c\n/* :d */ from t where w = :w";
        let (out, names) = rw(sql);
        assert_eq!(
            out,
            "select ?1::int, ':y', \"col:z\", 'it''s :q' -- :c\n/* :d */ from t where w = ?2"
        );
        assert_eq!(names, vec!["x", "w"]);
    }

    #[test]
    fn leaves_dollar_quotes_and_brackets_alone() {
        let (out, names) = rw("select $$ :a $$, $tag$ :b $tag$, [c:d], :e");
        assert_eq!(out, "select $$ :a $$, $tag$ :b $tag$, [c:d], ?1");
        assert_eq!(names, vec!["e"]);
    }

    #[test]
    fn lone_colon_and_time_literals() {
        let (out, names) = rw("select 1 : 2, '12:30:00'");
        assert_eq!(out, "select 1 : 2, '12:30:00'");
        assert!(names.is_empty());
        let (out, _) = rw("select a::text::varchar from t");
        assert_eq!(out, "select a::text::varchar from t");
    }

    #[test]
    fn unicode_is_preserved() {
        let (out, names) = rw("select 'été', :nom, \"ü\"");
        assert_eq!(out, "select 'été', ?1, \"ü\"");
        assert_eq!(names, vec!["nom"]);
    }

    #[test]
    fn unterminated_quotes_do_not_panic() {
        let (out, names) = rw("select 'abc :x");
        assert_eq!(out, "select 'abc :x");
        assert!(names.is_empty());
        let (out, _) = rw("select /* :x");
        assert_eq!(out, "select /* :x");
        let (out, _) = rw("select $$ :x");
        assert_eq!(out, "select $$ :x");
        let (out, _) = rw("select [a");
        assert_eq!(out, "select [a");
        let (out, names) = rw("select :");
        assert_eq!(out, "select :");
        assert!(names.is_empty());
    }

    #[test]
    fn positional_dollar_is_not_a_quote() {
        let (out, names) = rw("select $1, :a");
        assert_eq!(out, "select $1, ?1");
        assert_eq!(names, vec!["a"]);
    }

    #[test]
    fn numeric_params() {
        assert_eq!(numeric_param("100"), Some(Numeric::Int(100)));
        assert_eq!(numeric_param("-3"), Some(Numeric::Int(-3)));
        assert_eq!(numeric_param("0"), Some(Numeric::Int(0)));
        assert_eq!(numeric_param("2.50"), Some(Numeric::Real(2.5)));
        assert_eq!(numeric_param("007"), None);
        assert_eq!(numeric_param("1e5"), None);
        assert_eq!(numeric_param("2026-11-25"), None);
        assert_eq!(numeric_param(""), None);
        assert_eq!(numeric_param("99999999999999999999"), None);
    }

    #[test]
    fn param_names_validated() {
        assert!(valid_param_name("a_1"));
        assert!(!valid_param_name(""));
        assert!(!valid_param_name("a-b"));
    }

    #[test]
    fn fields_follow_the_union() {
        assert_eq!(Value::Null.to_field(), serde_json::json!({"isNull": true}));
        assert_eq!(
            Value::Long(-3).to_field(),
            serde_json::json!({"longValue": -3})
        );
        assert_eq!(
            Value::Double(1.5).to_field(),
            serde_json::json!({"doubleValue": 1.5})
        );
        assert_eq!(
            Value::Text("x".into()).to_field(),
            serde_json::json!({"stringValue": "x"})
        );
        assert_eq!(
            Value::Bool(true).to_field(),
            serde_json::json!({"booleanValue": true})
        );
        assert_eq!(
            Value::Blob(vec![0, 1, 2, 255]).to_field(),
            serde_json::json!({"blobValue": "AAEC/w=="})
        );
        assert_eq!(
            Value::Double(f64::NAN).to_field(),
            serde_json::json!({"stringValue": "NaN"})
        );
    }

    #[test]
    fn csv_cells() {
        assert_eq!(Value::Text("a,b".into()).to_csv(), "\"a,b\"");
        assert_eq!(
            Value::Text("say \"hi\"".into()).to_csv(),
            "\"say \"\"hi\"\"\""
        );
        assert_eq!(Value::Null.to_csv(), "");
        assert_eq!(Value::Long(7).to_csv(), "7");
    }

    #[test]
    fn storage_classes_and_type_names() {
        assert_eq!(
            StorageClass::from_sqlx_name("INTEGER"),
            StorageClass::Integer
        );
        assert_eq!(StorageClass::from_sqlx_name("REAL"), StorageClass::Real);
        assert_eq!(StorageClass::from_sqlx_name("TEXT"), StorageClass::Text);
        assert_eq!(StorageClass::from_sqlx_name("BLOB"), StorageClass::Blob);
        assert_eq!(StorageClass::from_sqlx_name("NULL"), StorageClass::Null);
        assert_eq!(redshift_type_name("INTEGER"), "int8");
        assert_eq!(redshift_type_name("TEXT"), "varchar");
    }
}

//! Pure value helpers of the emulator: parameter values as numbers, and
//! warehouse values typed as Data API `Field`s and CSV cells. (Finding the
//! `:name` parameters of a SQL text is a wire fact the daemon shares:
//! `redrelay_wire::rewrite_params`; the rewriting itself happens on the
//! parsed tree in `redshift`.)

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

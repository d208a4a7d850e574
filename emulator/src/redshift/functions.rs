//! What both warehouses share in rewriting calls: argument and date-part
//! reading, and the calls mapped by a template (one per warehouse), DECODE
//! and LISTAGG.

use super::*;

pub(super) fn parse_expr(sql: &str) -> Result<Expr, String> {
    Parser::new(&RedshiftSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("ERROR: internal rewrite produced bad SQL ({sql}): {e}"))
}

/// The arguments of a call as plain expressions.
pub(super) fn plain_args(args: &FunctionArguments, fname: &str) -> Result<Vec<Expr>, String> {
    match args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::Subquery(_) => Err(format!(
            "ERROR: function {fname} with a subquery argument is not supported by the emulator"
        )),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                _ => Err(format!(
                    "ERROR: function {fname} with named or wildcard arguments is not supported by the emulator"
                )),
            })
            .collect(),
    }
}

/// A date part given as a bare word (`day`) or a string (`'day'`).
pub(super) fn date_part(e: &Expr, fname: &str) -> Result<String, String> {
    let part = match e {
        Expr::Identifier(i) => i.value.to_lowercase(),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.to_lowercase(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let canonical = match part.as_str() {
        "year" | "years" | "y" | "yr" | "yrs" | "yy" | "yyy" | "yyyy" => "year",
        "quarter" | "quarters" | "qtr" | "qtrs" => "quarter",
        "month" | "months" | "mon" | "mons" => "month",
        "week" | "weeks" | "w" => "week",
        "day" | "days" | "d" => "day",
        "hour" | "hours" | "h" | "hr" | "hrs" => "hour",
        "minute" | "minutes" | "m" | "min" | "mins" => "minute",
        "second" | "seconds" | "s" | "sec" | "secs" => "second",
        _ => {
            return Err(format!(
                "ERROR: {fname}: date part {e} is not supported by the emulator (year, quarter, month, week, day, hour, minute, second)"
            ))
        }
    };
    Ok(canonical.to_string())
}

pub(super) fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Redshift calls mapped by a template: (name, arity, SQLite, PostgreSQL);
/// `{N}` is argument N, an empty template keeps the call as it is.
pub(super) const TEMPLATES: &[(&str, usize, &str, &str)] = &[
    (
        "nvl2",
        3,
        "CASE WHEN ({0}) IS NOT NULL THEN ({1}) ELSE ({2}) END",
        "CASE WHEN ({0}) IS NOT NULL THEN ({1}) ELSE ({2}) END",
    ),
    ("len", 1, "length({0})", "length({0})"),
    ("char_length", 1, "length({0})", ""),
    ("character_length", 1, "length({0})", ""),
    ("strpos", 2, "instr({0}, {1})", ""),
    ("charindex", 2, "instr({1}, {0})", "strpos({1}, {0})"),
    ("left", 2, "substr({0}, 1, {1})", ""),
    ("right", 2, "substr({0}, -({1}))", ""),
];

/// A call by TEMPLATES, or DECODE (as CASE, on both warehouses).
pub(super) fn template_call(
    f: &sqlparser::ast::Function,
    name: &str,
    backend: Backend,
) -> Result<Option<String>, String> {
    if name == "decode" {
        let args = plain_args(&f.args, name)?;
        if args.len() < 3 {
            return Err(format!(
                "ERROR: function decode takes at least 3 arguments, got {}",
                args.len()
            ));
        }
        let mut s = format!("CASE ({})", args[0]);
        let mut rest = &args[1..];
        while rest.len() >= 2 {
            s.push_str(&format!(" WHEN ({}) THEN ({})", rest[0], rest[1]));
            rest = &rest[2..];
        }
        if let Some(default) = rest.first() {
            s.push_str(&format!(" ELSE ({default})"));
        }
        s.push_str(" END");
        return Ok(Some(s));
    }
    let Some(&(_, arity, sqlite, pg)) = TEMPLATES.iter().find(|t| t.0 == name) else {
        return Ok(None);
    };
    let template = match backend {
        Backend::Sqlite => sqlite,
        Backend::Postgres => pg,
    };
    if template.is_empty() {
        return Ok(None);
    }
    let args = plain_args(&f.args, name)?;
    if args.len() != arity {
        return Err(format!(
            "ERROR: function {name} takes {arity} arguments, got {}",
            args.len()
        ));
    }
    let mut out = template.to_string();
    for (i, a) in args.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), &a.to_string());
    }
    Ok(Some(out))
}

/// LISTAGG's separator and ` ORDER BY ...` (from WITHIN GROUP).
pub(super) fn listagg_parts(f: &sqlparser::ast::Function, args: &[Expr]) -> (String, String) {
    let sep = args
        .get(1)
        .map(ToString::to_string)
        .unwrap_or_else(|| "''".to_string());
    let order = if f.within_group.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = f.within_group.iter().map(ToString::to_string).collect();
        format!(" ORDER BY {}", items.join(", "))
    };
    (sep, order)
}

//! Redshift expressions and functions rewritten for SQLite: casts,
//! DATEADD/DATEDIFF/DATE_TRUNC, TO_CHAR as strftime, and the rest.

use super::*;

/// One Redshift expression rewritten for SQLite; None when it stays.
pub(super) fn rewrite_expr(expr: &Expr) -> Result<Option<Expr>, String> {
    match expr {
        Expr::Cast {
            kind,
            expr: inner,
            data_type,
            ..
        } => {
            let what = match kind {
                CastKind::DoubleColon | CastKind::Cast => "",
                _ => "TRY_CAST / SAFE_CAST ",
            };
            if !what.is_empty() {
                return Err(format!("ERROR: {what}is not supported by the emulator"));
            }
            Ok(Some(cast_for_sqlite(inner, data_type)?))
        }
        Expr::Identifier(i) if i.quote_style.is_none() => match i.value.to_lowercase().as_str() {
            "sysdate" => parse_expr("datetime('now')").map(Some),
            _ => Ok(None),
        },
        Expr::CompoundIdentifier(parts) if parts.len() >= 3 => {
            // schema.table.column (or db.schema.table.column).
            let n = parts.len();
            let table = table_name(Some(&parts[n - 3].value), &parts[n - 2].value);
            let quote = if table.contains('.') {
                Some('"')
            } else {
                parts[n - 2].quote_style
            };
            Ok(Some(Expr::CompoundIdentifier(vec![
                Ident {
                    value: table,
                    quote_style: quote,
                    span: parts[n - 2].span,
                },
                parts[n - 1].clone(),
            ])))
        }
        Expr::Function(f) => rewrite_function(f),
        _ => Ok(None),
    }
}

pub(super) fn cast_for_sqlite(inner: &Expr, data_type: &DataType) -> Result<Expr, String> {
    let ty = data_type.to_string().to_lowercase();
    let base = ty.split('(').next().unwrap_or("").trim().to_string();
    let sql = match base.as_str() {
        "date" => format!("date({inner})"),
        "timestamp" | "timestamp without time zone" | "datetime" => format!("datetime({inner})"),
        "timestamptz" | "timestamp with time zone" => format!("datetime({inner})"),
        "time" | "time without time zone" => format!("time({inner})"),
        "int" | "integer" | "int4" | "bigint" | "int8" | "smallint" | "int2" => {
            format!("CAST({inner} AS INTEGER)")
        }
        "real" | "float4" | "float" | "float8" | "double precision" | "double" => {
            format!("CAST({inner} AS REAL)")
        }
        "decimal" | "numeric" | "dec" => {
            // Keep the scale: SQLite has no fixed-point type.
            let scale = match data_type {
                DataType::Decimal(info) | DataType::Numeric(info) | DataType::Dec(info) => {
                    match info {
                        sqlparser::ast::ExactNumberInfo::PrecisionAndScale(_, s) => Some(*s),
                        _ => None,
                    }
                }
                _ => None,
            };
            match scale {
                Some(s) => format!("ROUND(CAST({inner} AS REAL), {s})"),
                None => format!("CAST({inner} AS NUMERIC)"),
            }
        }
        "varchar" | "character varying" | "char" | "character" | "text" | "bpchar" | "nvarchar"
        | "nchar" | "string" => format!("CAST({inner} AS TEXT)"),
        "bool" | "boolean" => format!(
            "(CASE WHEN lower(CAST({inner} AS TEXT)) IN ('t','true','1','y','yes') THEN 1 \
             WHEN lower(CAST({inner} AS TEXT)) IN ('f','false','0','n','no') THEN 0 END)"
        ),
        _ => {
            return Err(format!(
                "ERROR: cast to {data_type} is not supported by the emulator's SQLite warehouse"
            ))
        }
    };
    parse_expr(&sql)
}

pub(super) fn rewrite_function(f: &sqlparser::ast::Function) -> Result<Option<Expr>, String> {
    let name = f.name.to_string().to_lowercase();
    if let Some(sql) = template_call(f, &name, Backend::Sqlite)? {
        return parse_expr(&sql).map(Some);
    }
    let a = || plain_args(&f.args, &name);
    let arity = |args: &[Expr], ok: &[usize]| -> Result<(), String> {
        if ok.contains(&args.len()) {
            Ok(())
        } else {
            Err(format!(
                "ERROR: function {name} takes {} arguments, got {}",
                ok.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" or "),
                args.len()
            ))
        }
    };
    let sql = match name.as_str() {
        "getdate" | "sysdate" | "now" => "datetime('now')".to_string(),
        "nvl" | "isnull" => {
            let args = a()?;
            if args.len() < 2 {
                arity(&args, &[2])?;
            }
            let list: Vec<String> = args.iter().map(ToString::to_string).collect();
            format!("coalesce({})", list.join(", "))
        }
        "dateadd" => {
            let args = a()?;
            arity(&args, &[3])?;
            let part = date_part(&args[0], "DATEADD")?;
            let (n, unit) = match part.as_str() {
                "week" => (format!("(({}) * 7)", args[1]), "days"),
                "quarter" => (format!("(({}) * 3)", args[1]), "months"),
                p => (format!("({})", args[1]), unit_plural(p)),
            };
            format!("datetime({}, {n} || ' {unit}')", args[2])
        }
        "datediff" => {
            let args = a()?;
            arity(&args, &[3])?;
            let part = date_part(&args[0], "DATEDIFF")?;
            let (x, y) = (&args[1], &args[2]);
            match part.as_str() {
                "year" => format!(
                    "(CAST(strftime('%Y', {y}) AS INTEGER) - CAST(strftime('%Y', {x}) AS INTEGER))"
                ),
                "quarter" => format!(
                    "((CAST(strftime('%Y', {y}) AS INTEGER) * 4 + (CAST(strftime('%m', {y}) AS INTEGER) + 2) / 3) \
                     - (CAST(strftime('%Y', {x}) AS INTEGER) * 4 + (CAST(strftime('%m', {x}) AS INTEGER) + 2) / 3))"
                ),
                "month" => format!(
                    "((CAST(strftime('%Y', {y}) AS INTEGER) * 12 + CAST(strftime('%m', {y}) AS INTEGER)) \
                     - (CAST(strftime('%Y', {x}) AS INTEGER) * 12 + CAST(strftime('%m', {x}) AS INTEGER)))"
                ),
                "week" => format!(
                    "CAST((julianday(date({y}, '-6 days', 'weekday 1')) - julianday(date({x}, '-6 days', 'weekday 1'))) / 7 AS INTEGER)"
                ),
                "day" => format!("CAST(julianday(date({y})) - julianday(date({x})) AS INTEGER)"),
                p => {
                    let secs = match p {
                        "hour" => 3600,
                        "minute" => 60,
                        _ => 1,
                    };
                    format!(
                        "(CAST(strftime('%s', {y}) AS INTEGER) / {secs} - CAST(strftime('%s', {x}) AS INTEGER) / {secs})"
                    )
                }
            }
        }
        "date_trunc" => {
            let args = a()?;
            arity(&args, &[2])?;
            let part = date_part(&args[0], "DATE_TRUNC")?;
            let d = &args[1];
            match part.as_str() {
                "year" => format!("datetime({d}, 'start of year')"),
                "month" => format!("datetime({d}, 'start of month')"),
                "quarter" => format!(
                    "datetime({d}, 'start of month', '-' || ((CAST(strftime('%m', {d}) AS INTEGER) - 1) % 3) || ' months')"
                ),
                "week" => format!("datetime(date({d}, '-6 days', 'weekday 1'))"),
                "day" => format!("datetime(date({d}))"),
                "hour" => format!("strftime('%Y-%m-%d %H:00:00', {d})"),
                "minute" => format!("strftime('%Y-%m-%d %H:%M:00', {d})"),
                _ => format!("datetime({d})"),
            }
        }
        "to_char" => {
            let args = a()?;
            arity(&args, &[2])?;
            let fmt = match &args[1] {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            let strf = to_char_format(&fmt)?;
            format!("strftime({}, {})", sql_str(&strf), args[0])
        }
        "listagg" => {
            let args = a()?;
            if args.is_empty() || args.len() > 2 {
                arity(&args, &[1, 2])?;
            }
            let (sep, order) = listagg_parts(f, &args);
            let distinct = match &f.args {
                FunctionArguments::List(l) => l
                    .duplicate_treatment
                    .is_some_and(|d| matches!(d, sqlparser::ast::DuplicateTreatment::Distinct)),
                _ => false,
            };
            if distinct {
                // SQLite's DISTINCT aggregate takes one argument only.
                format!("group_concat(DISTINCT {})", args[0])
            } else {
                format!("group_concat({}, {sep}{order})", args[0])
            }
        }
        "convert_timezone"
        | "median"
        | "percentile_cont"
        | "approximate"
        | "ratio_to_report"
        | "regexp_substr"
        | "regexp_count"
        | "regexp_replace"
        | "regexp_instr"
        | "json_extract_path_text"
        | "split_part"
        | "months_between"
        | "add_months"
        | "last_day"
        | "date_part"
        | "extract" => {
            return Err(format!(
                "ERROR: function {} is not supported by the emulator's SQLite warehouse",
                name.to_uppercase()
            ))
        }
        _ => return Ok(None),
    };
    parse_expr(&sql).map(Some)
}

pub(super) fn unit_plural(part: &str) -> &'static str {
    match part {
        "year" => "years",
        "month" => "months",
        "hour" => "hours",
        "minute" => "minutes",
        "second" => "seconds",
        _ => "days",
    }
}

/// Redshift's datetime format (TO_CHAR) as a strftime format.
pub(super) fn to_char_format(fmt: &str) -> Result<String, String> {
    const MAP: &[(&str, &str)] = &[
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("HH", "%I"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MS", "%f"),
        ("DDD", "%j"),
        ("AM", "%p"),
        ("PM", "%p"),
    ];
    if fmt.is_empty() {
        return Err("ERROR: TO_CHAR needs a literal format string in the emulator".into());
    }
    let mut out = String::new();
    let mut rest = fmt;
    'outer: while !rest.is_empty() {
        // Longest first for DDD vs DD.
        if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("DDD") {
            out.push_str("%j");
            rest = &rest[3..];
            continue;
        }
        for (k, v) in MAP {
            if rest.len() >= k.len()
                && rest.is_char_boundary(k.len())
                && rest[..k.len()].eq_ignore_ascii_case(k)
            {
                out.push_str(v);
                rest = &rest[k.len()..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_ascii_alphabetic() {
            let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            return Err(format!(
                "ERROR: TO_CHAR format element {word:?} is not supported by the emulator (YYYY, MM, DD, HH24, HH12, MI, SS, MS, DDD, AM)"
            ));
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

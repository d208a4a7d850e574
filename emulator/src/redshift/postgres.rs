//! Redshift expressions and functions rewritten for PostgreSQL, and the
//! Data API's parameters inlined as literals.

use super::*;

/// PostgreSQL: each `:name` becomes the value as a string literal, which
/// PostgreSQL types from its context (as Redshift does with parameters).
pub(super) fn inline_params(
    stmt: &mut Statement,
    params: &[(String, String)],
) -> Result<(), String> {
    let mut missing = None;
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                if let Some(name) = p.strip_prefix(':') {
                    match params.iter().find(|(n, _)| n == name) {
                        Some((_, value)) => v.value = Value::SingleQuotedString(value.clone()),
                        None => missing = Some(name.to_string()),
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    match missing {
        Some(name) => Err(format!("ERROR: no value for parameter :{name}")),
        None => Ok(()),
    }
}

/// One Redshift expression rewritten for PostgreSQL; None when it stays.
pub(super) fn rewrite_expr_pg(expr: &Expr) -> Result<Option<Expr>, String> {
    match expr {
        Expr::Identifier(i)
            if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("sysdate") =>
        {
            parse_expr("LOCALTIMESTAMP").map(Some)
        }
        Expr::CompoundIdentifier(parts) if parts.len() >= 4 => {
            // db.schema.table.column: the warehouse is the database.
            Ok(Some(Expr::CompoundIdentifier(
                parts[parts.len() - 3..].to_vec(),
            )))
        }
        Expr::Function(f) => rewrite_function_pg(f),
        _ => Ok(None),
    }
}

pub(super) fn rewrite_function_pg(f: &sqlparser::ast::Function) -> Result<Option<Expr>, String> {
    let name = f.name.to_string().to_lowercase();
    if let Some(sql) = template_call(f, &name, Backend::Postgres)? {
        return parse_expr(&sql).map(Some);
    }
    let a = || plain_args(&f.args, &name);
    let need = |args: &[Expr], n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "ERROR: function {name} takes {n} arguments, got {}",
                args.len()
            ))
        }
    };
    let interval = |part: &str| match part {
        "week" => "7 days".to_string(),
        "quarter" => "3 months".to_string(),
        p => format!("1 {p}"),
    };
    let sql = match name.as_str() {
        "getdate" | "sysdate" => "CAST(LOCALTIMESTAMP(0) AS timestamp)".to_string(),
        "nvl" => {
            let args = a()?;
            let list: Vec<String> = args.iter().map(ToString::to_string).collect();
            format!("coalesce({})", list.join(", "))
        }
        "dateadd" => {
            let args = a()?;
            need(&args, 3)?;
            let part = date_part(&args[0], "DATEADD")?;
            let unit = interval(&part);
            format!(
                "(CAST({} AS timestamp) + ({}) * INTERVAL '{unit}')",
                args[2], args[1]
            )
        }
        "datediff" => {
            let args = a()?;
            need(&args, 3)?;
            let part = date_part(&args[0], "DATEDIFF")?;
            let (x, y) = (
                format!("CAST({} AS timestamp)", args[1]),
                format!("CAST({} AS timestamp)", args[2]),
            );
            let ym = |t: &str| format!("(date_part('year', {t}) * 12 + date_part('month', {t}))");
            match part.as_str() {
                "year" => format!("CAST(date_part('year', {y}) - date_part('year', {x}) AS bigint)"),
                "quarter" => format!(
                    "CAST((date_part('year', {y}) * 4 + date_part('quarter', {y})) - (date_part('year', {x}) * 4 + date_part('quarter', {x})) AS bigint)"
                ),
                "month" => format!("CAST({} - {} AS bigint)", ym(&y), ym(&x)),
                "week" => format!(
                    "CAST((CAST(date_trunc('week', {y}) AS date) - CAST(date_trunc('week', {x}) AS date)) / 7 AS bigint)"
                ),
                "day" => format!("CAST(CAST({y} AS date) - CAST({x} AS date) AS bigint)"),
                p => format!(
                    "CAST(floor((extract(epoch FROM date_trunc('{p}', {y})) - extract(epoch FROM date_trunc('{p}', {x}))) / {}) AS bigint)",
                    match p {
                        "hour" => 3600,
                        "minute" => 60,
                        _ => 1,
                    }
                ),
            }
        }
        "listagg" => {
            let args = a()?;
            if args.is_empty() || args.len() > 2 {
                need(&args, 2)?;
            }
            let (sep, order) = listagg_parts(f, &args);
            format!("string_agg(CAST({} AS text), {sep}{order})", args[0])
        }
        _ => return Ok(None),
    };
    parse_expr(&sql).map(Some)
}

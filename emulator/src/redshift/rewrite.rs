//! The tree walk: every statement rewritten in place for the warehouse
//! (relations, expressions, CREATE TABLE's identity columns), and the
//! constructs refused with an error that names them.

use super::*;

pub(super) struct Rewriter {
    backend: Backend,
    /// Errors found while visiting (the first one is reported).
    error: Option<String>,
}

impl Rewriter {
    fn fail(&mut self, message: String) -> ControlFlow<()> {
        self.error.get_or_insert(message);
        ControlFlow::Break(())
    }
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if self.backend == Backend::Postgres {
            return ControlFlow::Continue(());
        }
        if let TableFactor::Table { name, alias, .. } = factor {
            if alias.is_none() {
                if let Some(parts) = ident_parts(name) {
                    if parts.len() >= 2 {
                        if let Some(t) = parts.last() {
                            *alias = Some(TableAlias {
                                explicit: true,
                                name: t.clone(),
                                columns: vec![],
                                at: None,
                            });
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        if self.backend == Backend::Postgres {
            // db.schema.table: the warehouse is the database.
            if relation.0.len() == 3 {
                relation.0.remove(0);
            }
        } else if let Some(mapped) = map_relation(relation) {
            *relation = mapped;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let rewritten = match self.backend {
            Backend::Sqlite => rewrite_expr(expr),
            Backend::Postgres => rewrite_expr_pg(expr),
        };
        match rewritten {
            Ok(Some(new)) => {
                *expr = new;
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(e) => self.fail(e),
        }
    }
}

/// Rewrites a statement in place for the warehouse; returns the parameter
/// names in placeholder order (SQLite; none on PostgreSQL, where the values
/// are inlined).
pub(super) fn rewrite(
    stmt: &mut Statement,
    backend: Backend,
    params: &[(String, String)],
) -> Result<Vec<String>, String> {
    if backend == Backend::Postgres {
        if let Statement::CreateTable(ct) = stmt {
            ct.diststyle = None;
            ct.distkey = None;
            ct.sortkey = None;
        }
    } else {
        refuse_unsupported(stmt)?;
    }
    if let (Backend::Sqlite, Statement::CreateTable(ct)) = (backend, &mut *stmt) {
        ct.diststyle = None;
        ct.distkey = None;
        ct.sortkey = None;
        for col in &mut ct.columns {
            let had_identity = col.options.iter().any(|o| {
                matches!(
                    o.option,
                    ColumnOption::Identity(_)
                        | ColumnOption::Generated {
                            generation_expr: None,
                            ..
                        }
                )
            });
            col.options.retain(|o| {
                !matches!(
                    o.option,
                    ColumnOption::Identity(_)
                        | ColumnOption::Generated {
                            generation_expr: None,
                            ..
                        }
                )
            });
            if had_identity && !matches!(col.data_type, DataType::Integer(_)) {
                // SQLite numbers rows itself for an INTEGER PRIMARY KEY.
                col.data_type = DataType::Integer(None);
            }
            if had_identity {
                col.options.extend(identity_options());
            }
        }
    }
    let mut rw = Rewriter {
        backend,
        error: None,
    };
    let _ = stmt.visit(&mut rw);
    if let Some(e) = rw.error {
        return Err(e);
    }
    if backend == Backend::Postgres {
        return inline_params(stmt, params).map(|()| Vec::new());
    }
    // Placeholders last, so that rewritten expressions keep them by name.
    let mut names: Vec<String> = Vec::new();
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &mut v.value {
                if let Some(name) = p.strip_prefix(':') {
                    let pos = match names.iter().position(|n| n == name) {
                        Some(i) => i + 1,
                        None => {
                            names.push(name.to_string());
                            names.len()
                        }
                    };
                    *p = format!("?{pos}");
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(names)
}

/// `INTEGER PRIMARY KEY AUTOINCREMENT`, as SQLite's dialect parses it.
pub(super) fn identity_options() -> Vec<sqlparser::ast::ColumnOptionDef> {
    let parsed = Parser::parse_sql(
        &SQLiteDialect {},
        "CREATE TABLE x (id INTEGER PRIMARY KEY AUTOINCREMENT)",
    );
    match parsed.ok().and_then(|mut s| s.pop()) {
        Some(Statement::CreateTable(ct)) => ct
            .columns
            .into_iter()
            .next()
            .map(|c| c.options)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub(super) fn refuse_unsupported(stmt: &Statement) -> Result<(), String> {
    let what = match stmt {
        Statement::Grant { .. } | Statement::Revoke { .. } => Some("GRANT / REVOKE"),
        Statement::CreateFunction { .. } => Some("CREATE FUNCTION"),
        Statement::CreateProcedure { .. } => Some("CREATE PROCEDURE"),
        Statement::Call(_) => Some("CALL (stored procedures)"),
        Statement::CreateUser(_) => Some("CREATE USER"),
        Statement::CreateRole(_) => Some("CREATE ROLE"),
        _ => None,
    };
    match what {
        Some(w) => Err(format!(
            "ERROR: {w} is not supported by the emulator's SQLite warehouse"
        )),
        None => Ok(()),
    }
}

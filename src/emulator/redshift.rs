//! Redshift SQL as real scripts carry it, run on the warehouse's engine.
//!
//! Each statement is parsed with sqlparser-rs (its Redshift dialect) and the
//! tree is rewritten for SQLite: schema-qualified names, Redshift's table
//! attributes (DISTSTYLE, DISTKEY, SORTKEY, ENCODE, BACKUP: accepted and
//! ignored, they only tune storage), `::` casts, Redshift's functions
//! (GETDATE, SYSDATE, NVL, NVL2, DECODE, DATEADD, DATEDIFF, DATE_TRUNC,
//! TO_CHAR, LISTAGG, LEN, STRPOS, ...) and the Data API's `:name`
//! parameters. A construct the layer cannot run fails with an error that
//! names it. CREATE SCHEMA / DATABASE, COPY and UNLOAD come back as plans of
//! their own for the engine to carry out.
//!
//! Schemas on SQLite: a table `s.t` of schema `s` is the SQLite table named
//! `"s.t"` (one file, one transaction for everything); `public` is SQLite's
//! plain name (`public.t` and `t` are the same table). `s.t` in a FROM
//! clause gets the alias `t`, so `t.col` keeps working as in Redshift.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CastKind, ColumnOption, CopyLegacyCsvOption, CopyLegacyOption, CopySource, CopyTarget,
    DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, ObjectType, SchemaName, Statement, TableAlias, TableFactor, Value, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::{RedshiftSqlDialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The default schema.
pub(crate) const PUBLIC: &str = "public";

/// The warehouse's engine, which the SQL is rewritten for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    /// PostgreSQL: schemas, casts and most functions are its own; Redshift's
    /// other functions are mapped; parameters are inlined as literals.
    Postgres,
}

/// What one SQL text asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// SQL for the warehouse, with `?N` placeholders bound to `params[N-1]`.
    Sql {
        sql: String,
        params: Vec<String>,
        /// INSERT, UPDATE, DELETE, MERGE: its change count is its row count.
        dml: bool,
    },
    CreateSchema {
        name: String,
        if_not_exists: bool,
    },
    DropSchema {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    CreateDatabase {
        name: String,
    },
    Copy(CopySpec),
    Unload(UnloadSpec),
}

/// Input formats of COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyFormat {
    /// Delimited text (DELIMITER, default `|`).
    Text,
    /// CSV (DELIMITER, default `,`; QUOTE).
    Csv,
    /// JSON 'auto': one object per line or concatenated, keys match columns.
    JsonAuto,
}

/// `COPY table [(cols)] FROM 's3://...' ...`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CopySpec {
    /// The table's schema (`public` when not given).
    pub schema: String,
    /// The table's own name.
    pub table: String,
    /// The table as the user wrote it (for messages).
    pub table_shown: String,
    pub columns: Vec<String>,
    pub from: String,
    pub format: CopyFormat,
    pub delimiter: Option<char>,
    pub quote: char,
    pub ignore_header: u64,
    pub gzip: bool,
    pub manifest: bool,
    pub null_as: Option<String>,
    pub empty_as_null: bool,
    pub blanks_as_null: bool,
}

impl CopySpec {
    /// A COPY of delimited text with Redshift's defaults.
    pub(crate) fn new(
        schema: String,
        table: String,
        table_shown: String,
        from: String,
    ) -> CopySpec {
        CopySpec {
            schema,
            table,
            table_shown,
            columns: Vec::new(),
            from,
            format: CopyFormat::Text,
            delimiter: None,
            quote: '"',
            ignore_header: 0,
            gzip: false,
            manifest: false,
            null_as: None,
            empty_as_null: false,
            blanks_as_null: false,
        }
    }
}

/// `UNLOAD ('select ...') TO 's3://...' ...`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UnloadSpec {
    /// The query, already translated for the warehouse.
    pub query: String,
    pub params: Vec<String>,
    pub to: String,
    pub csv: bool,
    pub delimiter: Option<char>,
    pub header: bool,
    pub parallel: bool,
    pub manifest: bool,
    pub allow_overwrite: bool,
    pub gzip: bool,
    pub null_as: Option<String>,
}

/// Whether a SQL text returns rows (a query, SHOW, EXPLAIN), as known from
/// its text before it runs: what ExecuteStatement answers as HasResultSet.
/// `None` when the text does not parse (the statement will fail).
pub(crate) fn returns_rows(sql: &str) -> Option<bool> {
    use sqlparser::ast::Statement;
    let statements = Parser::parse_sql(&RedshiftSqlDialect {}, sql).ok()?;
    let first = statements.first()?;
    Some(matches!(
        first,
        Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
    ))
}

/// Translates one SQL text (one statement) for the warehouse. On
/// PostgreSQL the parameters' values are inlined (`params`); on SQLite they
/// are bound later to the placeholders `Plan::Sql` names.
pub(crate) fn plan(
    sql: &str,
    backend: Backend,
    params: &[(String, String)],
) -> Result<Plan, String> {
    let dialect = RedshiftSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| format!("ERROR: syntax error: {e}"))?;
    let tokens = strip_storage_attributes(tokens);
    let mut statements = Parser::new(&dialect)
        .with_tokens(tokens)
        .parse_statements()
        .map_err(|e| format!("ERROR: syntax error: {}", parser_message(&e)))?;
    let mut stmt = match statements.len() {
        0 => return Err("ERROR: the SQL text holds no statement".into()),
        1 => statements.remove(0),
        n => {
            return Err(format!(
                "ERROR: the SQL text holds {n} statements; the Data API runs one per \
                 ExecuteStatement (use BatchExecuteStatement for several)"
            ))
        }
    };
    let pg = backend == Backend::Postgres;
    match &stmt {
        Statement::CreateSchema { .. } | Statement::Drop { .. } if pg => {}
        Statement::CreateSchema {
            schema_name,
            if_not_exists,
            ..
        } => {
            let name = match schema_name {
                SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => last_part(n)?,
                SchemaName::UnnamedAuthorization(i) => i.value.clone(),
            };
            return Ok(Plan::CreateSchema {
                name: name.to_lowercase(),
                if_not_exists: *if_not_exists,
            });
        }
        Statement::CreateDatabase { db_name, .. } => {
            return Ok(Plan::CreateDatabase {
                name: last_part(db_name)?.to_lowercase(),
            })
        }
        Statement::Drop {
            object_type: ObjectType::Schema,
            if_exists,
            names,
            cascade,
            ..
        } => {
            return Ok(Plan::DropSchema {
                names: names
                    .iter()
                    .map(|n| last_part(n).map(|s| s.to_lowercase()))
                    .collect::<Result<_, _>>()?,
                if_exists: *if_exists,
                cascade: *cascade,
            })
        }
        Statement::Copy { .. } => return copy_plan(stmt),
        Statement::Unload { .. } => return unload_plan(stmt, backend, params),
        _ => {}
    }
    let dml = matches!(
        stmt,
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) | Statement::Merge(_)
    );
    let params = rewrite(&mut stmt, backend, params)?;
    Ok(Plan::Sql {
        sql: stmt.to_string(),
        params,
        dml,
    })
}

fn parser_message(e: &sqlparser::parser::ParserError) -> String {
    match e {
        sqlparser::parser::ParserError::ParserError(m)
        | sqlparser::parser::ParserError::TokenizerError(m) => m.clone(),
        other => other.to_string(),
    }
}

fn last_part(name: &ObjectName) -> Result<String, String> {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Ok(i.value.clone()),
        _ => Err(format!("ERROR: the emulator cannot use the name {name}")),
    }
}

/// Drops the tokens of Redshift's storage attributes that sqlparser does not
/// know in a column definition: `ENCODE x`, a bare `DISTKEY` / `SORTKEY`
/// after a column, `COMPOUND` / `INTERLEAVED` before SORTKEY, `BACKUP YES|NO`.
/// Only in CREATE TABLE; tokens, never text, so strings stay untouched.
fn strip_storage_attributes(tokens: Vec<Token>) -> Vec<Token> {
    let is_create = tokens
        .iter()
        .find(|t| !matches!(t, Token::Whitespace(_)))
        .is_some_and(|t| matches!(t, Token::Word(w) if w.keyword == Keyword::CREATE));
    if !is_create {
        return tokens;
    }
    let kw = |t: &Token, name: &str| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(name));
    let next_solid = |tokens: &[Token], from: usize| {
        (from..tokens.len()).find(|&j| !matches!(tokens[j], Token::Whitespace(_)))
    };
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if kw(t, "ENCODE") || kw(t, "BACKUP") {
            // Skip the keyword and its one-word argument.
            match next_solid(&tokens, i + 1) {
                Some(j) if matches!(tokens[j], Token::Word(_)) => {
                    i = j + 1;
                    continue;
                }
                _ => {}
            }
        }
        if kw(t, "IDENTITY") {
            // Redshift's IDENTITY(seed, step): the standard spelling, which
            // sqlparser knows, then SQLite's own numbering (see `rewrite`).
            if let Some(j) = next_solid(&tokens, i + 1).filter(|&j| tokens[j] == Token::LParen) {
                if let Some(k) = (j..tokens.len()).find(|&k| tokens[k] == Token::RParen) {
                    let dialect = RedshiftSqlDialect {};
                    if let Ok(std) =
                        Tokenizer::new(&dialect, "GENERATED BY DEFAULT AS IDENTITY").tokenize()
                    {
                        out.extend(std);
                        i = k + 1;
                        continue;
                    }
                }
            }
        }
        if kw(t, "COMPOUND") || kw(t, "INTERLEAVED") {
            if let Some(j) = next_solid(&tokens, i + 1) {
                if kw(&tokens[j], "SORTKEY") {
                    i += 1;
                    continue;
                }
            }
        }
        if kw(t, "DISTKEY") || kw(t, "SORTKEY") {
            let followed_by_paren =
                next_solid(&tokens, i + 1).is_some_and(|j| tokens[j] == Token::LParen);
            if !followed_by_paren {
                i += 1;
                continue;
            }
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

/// Maps a name as Redshift sees it (`[db.]schema.table` or `table`) to the
/// SQLite table name.
pub(crate) fn table_name(schema: Option<&str>, table: &str) -> String {
    match schema.map(str::to_lowercase) {
        None => table.to_string(),
        Some(s) if s == PUBLIC => table.to_string(),
        Some(s) => format!("{s}.{table}"),
    }
}

/// Splits a SQLite table name back into (schema, table).
pub(crate) fn split_table_name(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, t)) => (s.to_string(), t.to_string()),
        None => (PUBLIC.to_string(), name.to_string()),
    }
}

fn ident_parts(name: &ObjectName) -> Option<Vec<Ident>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.clone()),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// The SQLite name of a relation, or None when it is unqualified.
fn map_relation(name: &ObjectName) -> Option<ObjectName> {
    let parts = ident_parts(name)?;
    let (schema, table) = match parts.as_slice() {
        [s, t] | [_, s, t] => (s, t),
        _ => return None,
    };
    let mapped = table_name(Some(&schema.value), &table.value);
    let quote = if mapped.contains('.') {
        Some('"')
    } else {
        table.quote_style
    };
    Some(ObjectName(vec![ObjectNamePart::Identifier(Ident {
        value: mapped,
        quote_style: quote,
        span: table.span,
    })]))
}

struct Rewriter {
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
fn rewrite(
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
fn identity_options() -> Vec<sqlparser::ast::ColumnOptionDef> {
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

fn refuse_unsupported(stmt: &Statement) -> Result<(), String> {
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

fn parse_expr(sql: &str) -> Result<Expr, String> {
    Parser::new(&RedshiftSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("ERROR: internal rewrite produced bad SQL ({sql}): {e}"))
}

/// The arguments of a call as plain expressions.
fn plain_args(args: &FunctionArguments, fname: &str) -> Result<Vec<Expr>, String> {
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
fn date_part(e: &Expr, fname: &str) -> Result<String, String> {
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

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One Redshift expression rewritten for SQLite; None when it stays.
fn rewrite_expr(expr: &Expr) -> Result<Option<Expr>, String> {
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

fn cast_for_sqlite(inner: &Expr, data_type: &DataType) -> Result<Expr, String> {
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

/// Redshift calls mapped by a template: (name, arity, SQLite, PostgreSQL);
/// `{N}` is argument N, an empty template keeps the call as it is.
const TEMPLATES: &[(&str, usize, &str, &str)] = &[
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
fn template_call(
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
fn listagg_parts(f: &sqlparser::ast::Function, args: &[Expr]) -> (String, String) {
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

fn rewrite_function(f: &sqlparser::ast::Function) -> Result<Option<Expr>, String> {
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

fn unit_plural(part: &str) -> &'static str {
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
fn to_char_format(fmt: &str) -> Result<String, String> {
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

/// PostgreSQL: each `:name` becomes the value as a string literal, which
/// PostgreSQL types from its context (as Redshift does with parameters).
fn inline_params(stmt: &mut Statement, params: &[(String, String)]) -> Result<(), String> {
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
fn rewrite_expr_pg(expr: &Expr) -> Result<Option<Expr>, String> {
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

fn rewrite_function_pg(f: &sqlparser::ast::Function) -> Result<Option<Expr>, String> {
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

fn copy_plan(stmt: Statement) -> Result<Plan, String> {
    let Statement::Copy {
        source,
        to,
        target,
        legacy_options,
        ..
    } = stmt
    else {
        return Err("ERROR: not a COPY".into());
    };
    if to {
        return Err("ERROR: COPY ... TO is not Redshift: use UNLOAD".into());
    }
    let (table_name_ast, columns) = match source {
        CopySource::Table {
            table_name,
            columns,
        } => (table_name, columns),
        CopySource::Query(_) => {
            return Err("ERROR: COPY (query) is not Redshift: use UNLOAD".into())
        }
    };
    let from = match target {
        CopyTarget::File { filename } => filename,
        other => {
            return Err(format!(
                "ERROR: COPY FROM {other} is not supported: the emulator loads from 's3://bucket/prefix'"
            ))
        }
    };
    if !from.starts_with("s3://") {
        return Err(format!(
            "ERROR: COPY FROM '{from}' is not supported: the emulator loads from 's3://bucket/prefix'"
        ));
    }
    let parts = ident_parts(&table_name_ast).unwrap_or_default();
    let schema = match parts.as_slice() {
        [.., s, _] => s.value.to_lowercase(),
        _ => PUBLIC.to_string(),
    };
    let mut spec = CopySpec::new(
        schema,
        last_part(&table_name_ast)?,
        table_name_ast.to_string(),
        from,
    );
    spec.columns = columns.iter().map(|c| c.value.clone()).collect();
    for opt in legacy_options {
        match opt {
            CopyLegacyOption::Csv(opts) => {
                spec.format = CopyFormat::Csv;
                for o in opts {
                    match o {
                        CopyLegacyCsvOption::Quote(q) => spec.quote = q,
                        CopyLegacyCsvOption::Header => spec.ignore_header = spec.ignore_header.max(1),
                        _ => {}
                    }
                }
            }
            CopyLegacyOption::Json(arg) => {
                match arg.as_deref().map(str::to_lowercase).as_deref() {
                    None | Some("auto") | Some("auto ignorecase") => {
                        spec.format = CopyFormat::JsonAuto
                    }
                    Some(other) => {
                        return Err(format!(
                            "ERROR: COPY JSON '{other}' (a JSONPaths file) is not supported by the emulator: use JSON 'auto'"
                        ))
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => spec.delimiter = Some(c),
            CopyLegacyOption::IgnoreHeader(n) => spec.ignore_header = n,
            CopyLegacyOption::Gzip => spec.gzip = true,
            CopyLegacyOption::Manifest { .. } => spec.manifest = true,
            CopyLegacyOption::Null(s) => spec.null_as = Some(s),
            CopyLegacyOption::EmptyAsNull => spec.empty_as_null = true,
            CopyLegacyOption::BlankAsNull => spec.blanks_as_null = true,
            // Authorization, region and tuning: accepted and ignored.
            CopyLegacyOption::IamRole(_)
            | CopyLegacyOption::Credentials(_)
            | CopyLegacyOption::Region(_)
            | CopyLegacyOption::CompUpdate { .. }
            | CopyLegacyOption::StatUpdate(_)
            | CopyLegacyOption::AcceptAnyDate
            | CopyLegacyOption::AcceptInvChars(_)
            | CopyLegacyOption::TruncateColumns
            | CopyLegacyOption::DateFormat(_)
            | CopyLegacyOption::TimeFormat(_)
            | CopyLegacyOption::RemoveQuotes => {}
            other => {
                return Err(format!(
                    "ERROR: COPY option {other} is not supported by the emulator (CSV, JSON 'auto', DELIMITER, IGNOREHEADER, GZIP, MANIFEST, NULL AS, EMPTYASNULL, BLANKSASNULL, IAM_ROLE)"
                ))
            }
        }
    }
    Ok(Plan::Copy(spec))
}

fn unload_plan(
    stmt: Statement,
    backend: Backend,
    params: &[(String, String)],
) -> Result<Plan, String> {
    let Statement::Unload {
        query,
        query_text,
        to,
        options,
        with,
        ..
    } = stmt
    else {
        return Err("ERROR: not an UNLOAD".into());
    };
    if !with.is_empty() {
        return Err("ERROR: UNLOAD ... WITH (...) is not supported by the emulator".into());
    }
    let query_sql = match (query, query_text) {
        (Some(q), _) => q.to_string(),
        (None, Some(text)) => text,
        (None, None) => return Err("ERROR: UNLOAD needs a query".into()),
    };
    let (query, params) = match plan(&query_sql, backend, params)? {
        Plan::Sql { sql, params, .. } => (sql, params),
        _ => return Err("ERROR: UNLOAD's query must be a SELECT".into()),
    };
    let to = to.value;
    if !to.starts_with("s3://") {
        return Err(format!(
            "ERROR: UNLOAD TO '{to}' is not supported: the emulator unloads to 's3://bucket/prefix'"
        ));
    }
    let mut spec = UnloadSpec {
        query,
        params,
        to,
        csv: false,
        delimiter: None,
        header: false,
        parallel: true,
        manifest: false,
        allow_overwrite: false,
        gzip: false,
        null_as: None,
    };
    for opt in options {
        match opt {
            CopyLegacyOption::Csv(opts) => {
                spec.csv = true;
                if opts.contains(&CopyLegacyCsvOption::Header) {
                    spec.header = true;
                }
            }
            CopyLegacyOption::Header => spec.header = true,
            CopyLegacyOption::Delimiter(c) => spec.delimiter = Some(c),
            CopyLegacyOption::Parallel(on) => spec.parallel = on.unwrap_or(true),
            CopyLegacyOption::Manifest { .. } => spec.manifest = true,
            CopyLegacyOption::AllowOverwrite => spec.allow_overwrite = true,
            CopyLegacyOption::Gzip => spec.gzip = true,
            CopyLegacyOption::Null(s) => spec.null_as = Some(s),
            CopyLegacyOption::IamRole(_)
            | CopyLegacyOption::Credentials(_)
            | CopyLegacyOption::Region(_)
            | CopyLegacyOption::MaxFileSize(_)
            | CopyLegacyOption::CleanPath
            | CopyLegacyOption::AddQuotes => {}
            other => {
                return Err(format!(
                    "ERROR: UNLOAD option {other} is not supported by the emulator (CSV, HEADER, DELIMITER, PARALLEL, MANIFEST, ALLOWOVERWRITE, GZIP, NULL AS, IAM_ROLE)"
                ))
            }
        }
    }
    Ok(Plan::Unload(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_sqlite(sql: &str) -> Result<Plan, String> {
        plan(sql, Backend::Sqlite, &[])
    }

    fn sql(text: &str) -> (String, Vec<String>) {
        match plan_sqlite(text) {
            Ok(Plan::Sql { sql, params, .. }) => (sql, params),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn quick_start_create_table_with_storage_attributes() {
        let (s, _) = sql(
            "CREATE TABLE IF NOT EXISTS public.region (r_regionkey int4 not null encode az64, \
             r_name char(25) not null encode lzo distkey, r_comment varchar(152) sortkey) diststyle all",
        );
        assert!(!s.to_lowercase().contains("encode"), "{s}");
        assert!(!s.to_lowercase().contains("dist"), "{s}");
        assert!(!s.to_lowercase().contains("sortkey"), "{s}");
        assert!(s.contains("IF NOT EXISTS region ("), "{s}");
        let (s, _) =
            sql("create table demo.t (id bigint identity(1,1), a int) compound sortkey(a)");
        assert!(s.contains("\"demo.t\""), "{s}");
        assert!(s.contains("PRIMARY KEY AUTOINCREMENT"), "{s}");
    }

    #[test]
    fn schemas_map_to_prefixed_names_with_aliases() {
        let (s, _) = sql("select t.a, demo.t.b from demo.t where t.a > 1");
        assert_eq!(
            s,
            "SELECT t.a, \"demo.t\".b FROM \"demo.t\" AS t WHERE t.a > 1"
        );
        let (s, _) = sql("insert into demo.t (a) select a from public.u");
        assert_eq!(s, "INSERT INTO \"demo.t\" (a) SELECT a FROM u AS u");
        let (s, _) = sql("select * from dev.public.u x");
        assert_eq!(s, "SELECT * FROM u x");
    }

    #[test]
    fn casts_functions_and_params() {
        let (s, p) =
            sql("select :a::int, nvl(b, 0), getdate(), sysdate from t where c = :b and d = :a");
        assert_eq!(p, vec!["a", "b"]);
        assert!(s.contains("CAST(?1 AS INTEGER)"), "{s}");
        assert!(s.contains("coalesce(b, 0)"), "{s}");
        assert!(s.contains("datetime('now')"), "{s}");
        assert!(s.contains("d = ?1"), "{s}");
        let (s, _) = sql("select decode(a, 1, 'one', 2, 'two', 'many'), nvl2(a, 'x', 'y') from t");
        assert!(s.contains("CASE (a) WHEN (1) THEN ('one')"), "{s}");
        assert!(s.contains("ELSE ('many') END"), "{s}");
        let (s, _) = sql("select dateadd(day, 3, '2024-01-30'), datediff(month, '2024-01-31', '2024-03-01'), date_trunc('month', d), to_char(d, 'YYYY-MM-DD') from t");
        assert!(s.contains("datetime('2024-01-30', (3) || ' days')"), "{s}");
        assert!(s.contains("strftime('%Y-%m-%d', d)"), "{s}");
        let (s, _) = sql("select listagg(name, ',') within group (order by name) from t");
        assert!(s.contains("group_concat(name, ',' ORDER BY name)"), "{s}");
    }

    #[test]
    fn postgres_keeps_its_own_and_maps_redshift_functions() {
        let p = [("min".to_string(), "it's 5".to_string())];
        let Ok(Plan::Sql { sql, params, .. }) = plan(
            "select nvl(a, 0)::int, getdate(), dateadd(day, 2, d), listagg(b, ',') within group (order by b) \
             from dev.demo.t where c > :min group by 1, 2, 3",
            Backend::Postgres,
            &p,
        ) else {
            panic!()
        };
        assert!(params.is_empty());
        assert!(sql.contains("coalesce(a, 0)::INT"), "{sql}");
        assert!(
            sql.contains("string_agg(CAST(b AS TEXT), ',' ORDER BY b)"),
            "{sql}"
        );
        assert!(sql.contains("FROM demo.t WHERE c > 'it''s 5'"), "{sql}");
        assert!(sql.contains("INTERVAL '1 day'"), "{sql}");
        let Ok(Plan::Sql { sql, .. }) = plan(
            "create table if not exists demo.r (id int identity(1,1), n char(5) encode lzo distkey) diststyle all",
            Backend::Postgres,
            &[],
        ) else {
            panic!()
        };
        assert_eq!(
            sql,
            "CREATE TABLE IF NOT EXISTS demo.r (id INT GENERATED BY DEFAULT AS IDENTITY, n CHAR(5))"
        );
        assert!(matches!(
            plan("create schema demo", Backend::Postgres, &[]),
            Ok(Plan::Sql { .. })
        ));
    }

    #[test]
    fn unsupported_constructs_are_named() {
        let e = plan_sqlite("select to_char(d, 'Mon YYYY') from t").unwrap_err();
        assert!(e.contains("Mon"), "{e}");
        let e = plan_sqlite("select median(a) from t").unwrap_err();
        assert!(e.contains("MEDIAN"), "{e}");
        let e = plan_sqlite("select a::super from t").unwrap_err();
        assert!(e.to_lowercase().contains("super"), "{e}");
        let e = plan_sqlite("selec 1").unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
    }

    #[test]
    fn schema_database_copy_unload_plans() {
        assert_eq!(
            plan_sqlite("create schema if not exists Demo").unwrap(),
            Plan::CreateSchema {
                name: "demo".into(),
                if_not_exists: true
            }
        );
        assert!(
            matches!(plan_sqlite("create database sales").unwrap(), Plan::CreateDatabase { name } if name == "sales")
        );
        let Plan::Copy(c) = plan_sqlite(
            "COPY demo.sales (id, amount) FROM 's3://b/in/' IAM_ROLE 'arn:aws:iam::1:role/r' FORMAT AS CSV DELIMITER ';' IGNOREHEADER 1 GZIP",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((c.schema.as_str(), c.table.as_str()), ("demo", "sales"));
        assert_eq!(c.columns, vec!["id", "amount"]);
        assert_eq!(c.format, CopyFormat::Csv);
        assert_eq!(c.delimiter, Some(';'));
        assert_eq!(c.ignore_header, 1);
        assert!(c.gzip);
        let Plan::Copy(c) =
            plan_sqlite("copy t from 's3://b/x.json' iam_role default format as json 'auto'")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(c.format, CopyFormat::JsonAuto);
        let Plan::Unload(u) = plan_sqlite(
            "UNLOAD ('select * from demo.sales where amount > 10') TO 's3://b/out/' IAM_ROLE 'arn:aws:iam::1:role/r' CSV HEADER PARALLEL OFF MANIFEST",
        )
        .unwrap() else {
            panic!()
        };
        assert!(u.csv && u.header && !u.parallel && u.manifest);
        assert!(u.query.contains("\"demo.sales\""), "{}", u.query);
    }
}

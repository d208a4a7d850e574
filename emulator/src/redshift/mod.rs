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

mod copy_unload;
mod functions;
mod names;
mod postgres;
mod rewrite;
mod sqlite;
#[cfg(test)]
mod tests;

pub(crate) use copy_unload::{CopyFormat, CopySpec, UnloadSpec};
pub(crate) use names::{split_table_name, table_name};

use copy_unload::*;
use functions::*;
use names::*;
use postgres::*;
use rewrite::*;
use sqlite::*;

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

pub(super) fn parser_message(e: &sqlparser::parser::ParserError) -> String {
    match e {
        sqlparser::parser::ParserError::ParserError(m)
        | sqlparser::parser::ParserError::TokenizerError(m) => m.clone(),
        other => other.to_string(),
    }
}

pub(super) fn last_part(name: &ObjectName) -> Result<String, String> {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Ok(i.value.clone()),
        _ => Err(format!("ERROR: the emulator cannot use the name {name}")),
    }
}

/// Drops the tokens of Redshift's storage attributes that sqlparser does not
/// know in a column definition: `ENCODE x`, a bare `DISTKEY` / `SORTKEY`
/// after a column, `COMPOUND` / `INTERLEAVED` before SORTKEY, `BACKUP YES|NO`.
/// Only in CREATE TABLE; tokens, never text, so strings stay untouched.
pub(super) fn strip_storage_attributes(tokens: Vec<Token>) -> Vec<Token> {
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

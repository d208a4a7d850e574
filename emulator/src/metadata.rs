//! The warehouse's catalog as the Data API shows it: ListDatabases,
//! ListSchemas, ListTables, DescribeTable; and the catalog's own changes
//! (CREATE SCHEMA, DROP SCHEMA, CREATE DATABASE).
//!
//! On SQLite, schemas and databases are rows of two registry tables in the
//! warehouse file (`_redrelay_schemas`, `_redrelay_databases`), changed in
//! the statement's transaction; a table `s.t` is the SQLite table `"s.t"`
//! (see `redshift`). On PostgreSQL, schemas, tables and columns are its own
//! (information_schema); databases are rows of `public._redrelay_databases`.
//! Every database shows the same tables: the emulator has one warehouse.

use serde::Deserialize;
use serde_json::{json, Value as Json};
use sqlx::{Executor, Row};

use super::engine::{page_limit, ApiError};
use super::redshift::{split_table_name, PUBLIC};
use super::warehouse::Conn;

/// The database every Redshift warehouse has.
pub(crate) const DEFAULT_DATABASE: &str = "dev";

/// Registry tables, created when the warehouse opens.
pub(crate) const REGISTRY_DDL: &str =
    "CREATE TABLE IF NOT EXISTS _redrelay_schemas (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS _redrelay_databases (name TEXT PRIMARY KEY);";

/// PostgreSQL's registry (schemas are its own).
pub(crate) const PG_REGISTRY_DDL: &str =
    "CREATE TABLE IF NOT EXISTS public._redrelay_databases (name TEXT PRIMARY KEY)";

/// The request of any of the four catalog operations.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MetadataRequest {
    pub cluster_identifier: Option<String>,
    pub workgroup_name: Option<String>,
    pub secret_arn: Option<String>,
    #[allow(dead_code)]
    pub db_user: Option<String>,
    pub database: Option<String>,
    #[allow(dead_code)]
    pub connected_database: Option<String>,
    pub schema_pattern: Option<String>,
    pub table_pattern: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

impl MetadataRequest {
    pub(crate) fn validate(&self, op: &str) -> Result<(), ApiError> {
        match (&self.cluster_identifier, &self.workgroup_name) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(
                    "Specify exactly one of ClusterIdentifier or WorkgroupName.",
                ))
            }
            (None, None) => {
                return Err(ApiError::validation(
                    "Either ClusterIdentifier or WorkgroupName must be specified.",
                ))
            }
            _ => {}
        }
        if op != "ListDatabases" && self.database.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::validation(
                "1 validation error detected: Value null at 'database' failed to satisfy constraint: Member must not be null",
            ));
        }
        if self.database.is_none() {
            return Err(ApiError::validation(
                "Database is required to connect with temporary credentials or a secret.",
            ));
        }
        Ok(())
    }
}

/// SQL LIKE: `%` any run, `_` one character, `\` escapes.
pub(crate) fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                t.first() == Some(&rest[0]) && go(&rest[1..], &t[1..])
            }
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Redshift's name and sizes for a declared column type.
pub(crate) struct RedshiftType {
    pub name: &'static str,
    pub length: i64,
    pub precision: i64,
    pub scale: i64,
}

/// Maps a declared SQLite column type (as written in CREATE TABLE) to
/// Redshift's type name.
pub(crate) fn redshift_type(declared: &str) -> RedshiftType {
    let lower = declared.trim().to_lowercase();
    let base = lower.split('(').next().unwrap_or("").trim().to_string();
    let args: Vec<i64> = lower
        .split_once('(')
        .map(|(_, a)| {
            a.trim_end_matches(')')
                .split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let t = |name, length, precision, scale| RedshiftType {
        name,
        length,
        precision,
        scale,
    };
    match base.as_str() {
        "smallint" | "int2" => t("int2", 0, 5, 0),
        "int" | "integer" | "int4" => t("int4", 0, 10, 0),
        "bigint" | "int8" => t("int8", 0, 19, 0),
        "decimal" | "numeric" | "dec" => t(
            "numeric",
            0,
            args.first().copied().unwrap_or(18),
            args.get(1).copied().unwrap_or(0),
        ),
        "real" | "float4" => t("float4", 0, 8, 8),
        "float" | "float8" | "double" | "double precision" => t("float8", 0, 17, 17),
        "bool" | "boolean" => t("bool", 0, 1, 0),
        "char" | "character" | "nchar" | "bpchar" => {
            let n = args.first().copied().unwrap_or(1);
            t("bpchar", n, n, 0)
        }
        "date" => t("date", 0, 13, 0),
        "timestamp" | "datetime" | "timestamp without time zone" => t("timestamp", 0, 29, 6),
        "timestamptz" | "timestamp with time zone" => t("timestamptz", 0, 35, 6),
        "time" => t("time", 0, 15, 6),
        "super" => t("super", 0, 0, 0),
        _ => {
            let n = args.first().copied().unwrap_or(256);
            t("varchar", n, n, 0)
        }
    }
}

fn db_err(e: sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => format!("ERROR: {}", d.message()),
        None => format!("ERROR: {e}"),
    }
}

/// Names from a one-column query.
async fn names(conn: &mut Conn, sql: &'static str) -> Result<Vec<String>, String> {
    let rows = match conn {
        Conn::Sqlite(c) => sqlx::query(sql)
            .fetch_all(&mut *c)
            .await
            .map(|rows| rows.iter().map(|r| r.get::<String, _>(0)).collect()),
        Conn::Pg(c) => sqlx::query(sql)
            .fetch_all(&mut c.conn)
            .await
            .map(|rows| rows.iter().map(|r| r.get::<String, _>(0)).collect()),
    };
    rows.map_err(db_err)
}

async fn schemas(conn: &mut Conn) -> Result<Vec<String>, String> {
    let mut out = match conn {
        Conn::Sqlite(_) => {
            let mut v = vec![PUBLIC.to_string()];
            v.extend(names(conn, "SELECT name FROM _redrelay_schemas").await?);
            v
        }
        Conn::Pg(_) => {
            names(
                conn,
                "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' \
                 AND nspname <> 'information_schema'",
            )
            .await?
        }
    };
    out.sort();
    Ok(out)
}

async fn databases(conn: &mut Conn) -> Result<Vec<String>, String> {
    let mut out = vec![DEFAULT_DATABASE.to_string()];
    out.extend(names(conn, "SELECT name FROM _redrelay_databases").await?);
    out.sort();
    out.dedup();
    Ok(out)
}

/// (schema, table, TABLE|VIEW) of every user table, sorted.
async fn tables(conn: &mut Conn) -> Result<Vec<(String, String, String)>, String> {
    let mut out: Vec<(String, String, String)> = match conn {
        Conn::Sqlite(c) => sqlx::query(
            "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_redrelay\\_%' ESCAPE '\\'",
        )
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            let (schema, table) = split_table_name(&r.get::<String, _>(0));
            (schema, table, r.get::<String, _>(1).to_uppercase())
        })
        .collect(),
        Conn::Pg(c) => sqlx::query(
            "SELECT table_schema::text, table_name::text, \
             CASE WHEN table_type = 'VIEW' THEN 'VIEW' ELSE 'TABLE' END \
             FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND table_schema NOT LIKE 'pg\\_%' AND table_name NOT LIKE '\\_redrelay\\_%'",
        )
        .fetch_all(&mut c.conn)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect(),
    };
    out.sort();
    Ok(out)
}

/// A table's columns: (name, declared type, not null, default).
async fn columns(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String, bool, Option<String>)>, String> {
    match conn {
        Conn::Sqlite(c) => {
            let name = super::redshift::table_name(Some(schema), table);
            let rows =
                sqlx::query("SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info(?)")
                    .bind(&name)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(db_err)?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get::<i64, _>(2) != 0, r.get(3)))
                .collect())
        }
        Conn::Pg(c) => {
            let rows = sqlx::query(
                "SELECT column_name::text, udt_name::text, character_maximum_length, \
                 numeric_precision, numeric_scale, is_nullable::text, column_default::text \
                 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
                 ORDER BY ordinal_position",
            )
            .bind(schema)
            .bind(table)
            .fetch_all(&mut c.conn)
            .await
            .map_err(db_err)?;
            Ok(rows
                .iter()
                .map(|r| {
                    let udt: String = r.get(1);
                    let len: Option<i32> = r.get(2);
                    let precision: Option<i32> = r.get(3);
                    let scale: Option<i32> = r.get(4);
                    let declared = match (udt.as_str(), len, precision, scale) {
                        (_, Some(l), _, _) => format!("{udt}({l})"),
                        ("numeric", _, Some(p), Some(s)) => format!("numeric({p},{s})"),
                        _ => udt.clone(),
                    };
                    (r.get(0), declared, r.get::<String, _>(5) == "NO", r.get(6))
                })
                .collect())
        }
    }
}

/// The SQLite connection, for the registry changes only SQLite needs.
fn sqlite(conn: &mut Conn) -> Result<&mut sqlx::SqliteConnection, String> {
    match conn {
        Conn::Sqlite(c) => Ok(c),
        Conn::Pg(_) => Err("ERROR: PostgreSQL runs schema changes itself".into()),
    }
}

pub(crate) async fn create_schema(
    conn: &mut Conn,
    name: &str,
    if_not_exists: bool,
) -> Result<(), String> {
    if schemas(conn).await?.iter().any(|s| s == name) {
        if if_not_exists {
            return Ok(());
        }
        return Err(format!("ERROR: Schema \"{name}\" already exists"));
    }
    sqlx::query("INSERT INTO _redrelay_schemas (name) VALUES (?)")
        .bind(name)
        .execute(sqlite(conn)?)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn drop_schema(
    conn: &mut Conn,
    name: &str,
    if_exists: bool,
    cascade: bool,
) -> Result<(), String> {
    if name == PUBLIC {
        return Err("ERROR: the emulator cannot drop schema public".into());
    }
    if !schemas(conn).await?.iter().any(|s| s == name) {
        if if_exists {
            return Ok(());
        }
        return Err(format!("ERROR: Schema \"{name}\" does not exist"));
    }
    let inside: Vec<(String, String, String)> = tables(conn)
        .await?
        .into_iter()
        .filter(|(s, _, _)| s == name)
        .collect();
    if !inside.is_empty() && !cascade {
        return Err(format!(
            "ERROR: cannot drop schema {name} because other objects depend on it"
        ));
    }
    for (schema, table, kind) in inside {
        let sql = format!(
            "DROP {kind} \"{}\"",
            format!("{schema}.{table}").replace('"', "\"\"")
        );
        sqlite(conn)?
            .execute(sqlx::AssertSqlSafe(sql))
            .await
            .map_err(db_err)?;
    }
    sqlx::query("DELETE FROM _redrelay_schemas WHERE name = ?")
        .bind(name)
        .execute(sqlite(conn)?)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn create_database(conn: &mut Conn, name: &str) -> Result<(), String> {
    if databases(conn).await?.iter().any(|d| d == name) {
        return Err(format!("ERROR: database \"{name}\" already exists"));
    }
    match conn {
        Conn::Sqlite(c) => sqlx::query("INSERT INTO _redrelay_databases (name) VALUES (?)")
            .bind(name)
            .execute(&mut *c)
            .await
            .map(|_| ()),
        Conn::Pg(c) => sqlx::query("INSERT INTO public._redrelay_databases (name) VALUES ($1)")
            .bind(name)
            .execute(&mut c.conn)
            .await
            .map(|_| ()),
    }
    .map_err(db_err)
}

/// One page of `items` from NextToken `offset:N`.
fn page<T: Clone>(
    items: &[T],
    next_token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match next_token {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("offset:")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::validation("Invalid NextToken."))?,
    };
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| format!("offset:{end}"));
    Ok((items[start..end].to_vec(), next))
}

fn with_next(mut v: Json, next: Option<String>) -> Json {
    if let (Some(t), Some(m)) = (next, v.as_object_mut()) {
        m.insert("NextToken".into(), json!(t));
    }
    v
}

/// Answers one catalog operation.
pub(crate) async fn answer(
    conn: &mut Conn,
    op: &str,
    req: &MetadataRequest,
) -> Result<Json, ApiError> {
    let internal = ApiError::internal;
    let max = page_limit(req.max_results, 1000)?;
    let known = databases(conn).await.map_err(internal)?;
    if let Some(db) = &req.database {
        if !known.iter().any(|d| d == db) {
            return Err(ApiError {
                kind: super::engine::ErrorKind::Validation,
                message: format!("FATAL: database \"{db}\" does not exist"),
                resource_id: None,
            });
        }
    }
    match op {
        "ListDatabases" => {
            let (items, next) = page(&known, req.next_token.as_deref(), max)?;
            Ok(with_next(json!({ "Databases": items }), next))
        }
        "ListSchemas" => {
            let pattern = req.schema_pattern.as_deref().unwrap_or("%");
            let all: Vec<String> = schemas(conn)
                .await
                .map_err(internal)?
                .into_iter()
                .filter(|s| like(pattern, s))
                .collect();
            let (items, next) = page(&all, req.next_token.as_deref(), max)?;
            Ok(with_next(json!({ "Schemas": items }), next))
        }
        "ListTables" => {
            let sp = req.schema_pattern.as_deref().unwrap_or("%");
            let tp = req.table_pattern.as_deref().unwrap_or("%");
            let all: Vec<Json> = tables(conn)
                .await
                .map_err(internal)?
                .into_iter()
                .filter(|(s, t, _)| like(sp, s) && like(tp, t))
                .map(|(s, t, k)| json!({ "schema": s, "name": t, "type": k }))
                .collect();
            let (items, next) = page(&all, req.next_token.as_deref(), max)?;
            Ok(with_next(json!({ "Tables": items }), next))
        }
        "DescribeTable" => {
            let schema = req.schema.as_deref().unwrap_or(PUBLIC).to_lowercase();
            let wanted: Vec<(String, String, String)> = tables(conn)
                .await
                .map_err(internal)?
                .into_iter()
                .filter(|(s, t, _)| {
                    *s == schema && req.table.as_deref().is_none_or(|want| want == t)
                })
                .collect();
            let mut column_list = Vec::new();
            for (s, t, _) in &wanted {
                let cols = columns(conn, s, t).await.map_err(internal)?;
                for (col, declared, notnull, default) in cols {
                    let ty = redshift_type(&declared);
                    let mut c = json!({
                        "isCaseSensitive": matches!(ty.name, "varchar" | "bpchar"),
                        "isCurrency": false,
                        "isSigned": matches!(ty.name, "int2" | "int4" | "int8" | "numeric" | "float4" | "float8"),
                        "label": col,
                        "name": col,
                        "nullable": if notnull { 0 } else { 1 },
                        "precision": ty.precision,
                        "scale": ty.scale,
                        "length": ty.length,
                        "schemaName": s,
                        "tableName": t,
                        "typeName": ty.name,
                    });
                    if let (Some(d), Some(m)) = (default, c.as_object_mut()) {
                        m.insert("columnDefault".into(), json!(d));
                    }
                    column_list.push(c);
                }
            }
            if wanted.is_empty() {
                if let Some(t) = &req.table {
                    return Err(ApiError::validation(format!(
                        "Table {schema}.{t} does not exist in database {}.",
                        req.database.as_deref().unwrap_or(DEFAULT_DATABASE)
                    )));
                }
            }
            let (items, next) = page(&column_list, req.next_token.as_deref(), max)?;
            let mut out = json!({ "ColumnList": items });
            if let (Some(t), Some(m)) = (&req.table, out.as_object_mut()) {
                m.insert("TableName".into(), json!(t));
            }
            Ok(with_next(out, next))
        }
        other => Err(ApiError::validation(format!(
            "{other} is not a catalog operation."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_semantics() {
        assert!(like("demo%", "demo_sales"));
        assert!(like("%", ""));
        assert!(like("d_mo", "demo"));
        assert!(!like("d_mo", "dmo"));
        assert!(like("a\\_b", "a_b"));
        assert!(!like("a\\_b", "axb"));
        assert!(!like("demo", "demos"));
    }

    #[test]
    fn redshift_type_names() {
        assert_eq!(redshift_type("INT4").name, "int4");
        assert_eq!(redshift_type("BIGINT").name, "int8");
        let v = redshift_type("VARCHAR(25)");
        assert_eq!((v.name, v.length), ("varchar", 25));
        let n = redshift_type("DECIMAL(12,2)");
        assert_eq!((n.name, n.precision, n.scale), ("numeric", 12, 2));
        assert_eq!(redshift_type("CHAR(10)").name, "bpchar");
        assert_eq!(redshift_type("TIMESTAMP").name, "timestamp");
        assert_eq!(redshift_type("").name, "varchar");
    }
}

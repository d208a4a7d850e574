//! Schemas on SQLite: `s.t` is the table named `"s.t"`, `public.t` is
//! plain `t`; a qualified name in FROM gets its last part as alias.

use super::*;

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

pub(super) fn ident_parts(name: &ObjectName) -> Option<Vec<Ident>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.clone()),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// The SQLite name of a relation, or None when it is unqualified.
pub(super) fn map_relation(name: &ObjectName) -> Option<ObjectName> {
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

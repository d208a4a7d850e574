//! COPY and UNLOAD against S3 (moto's S3 locally, through the standard
//! endpoint chain: AWS_ENDPOINT_URL_S3).
//!
//! COPY reads every object under the prefix (or the objects a MANIFEST
//! lists), gunzips them with GZIP, parses delimited text, CSV or JSON
//! 'auto', and inserts the rows in the statement's transaction. UNLOAD
//! writes the query's rows as delimited text or CSV: one object with
//! PARALLEL OFF (`<prefix>000`), else `<prefix>0000_part_00`, plus
//! `<prefix>manifest` with MANIFEST.

use std::io::Read;

use serde_json::{json, Value as Json};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, Row};

use super::redshift::{CopyFormat, CopySpec, UnloadSpec};
use super::sql::Value;
use super::warehouse::{Conn, QueryRows};

/// `s3://bucket/key` -> (bucket, key).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("ERROR: {url} is not an s3:// URL"))?;
    match rest.split_once('/') {
        Some((b, k)) if !b.is_empty() => Ok((b.to_string(), k.to_string())),
        None if !rest.is_empty() => Ok((rest.to_string(), String::new())),
        _ => Err(format!("ERROR: {url} names no bucket")),
    }
}

fn s3_err<E: std::error::Error>(what: &str, e: E) -> String {
    format!(
        "ERROR: S3 {what} failed: {}",
        aws_smithy_types::error::display::DisplayErrorContext(&e)
    )
}

async fn get_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_err(&format!("GetObject s3://{bucket}/{key}"), e))?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| format!("ERROR: reading s3://{bucket}/{key}: {e}"))?;
    Ok(bytes.into_bytes().to_vec())
}

async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await
            .map_err(|e| s3_err(&format!("ListObjectsV2 s3://{bucket}/{prefix}"), e))?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    keys.sort();
    Ok(keys)
}

/// The objects a COPY reads: under the prefix, or listed by the manifest.
async fn copy_sources(
    s3: &aws_sdk_s3::Client,
    spec: &CopySpec,
) -> Result<Vec<(String, String)>, String> {
    let (bucket, key) = split_url(&spec.from)?;
    if spec.manifest {
        let body = get_object(s3, &bucket, &key).await?;
        let manifest: Json = serde_json::from_slice(&body)
            .map_err(|e| format!("ERROR: Manifest file {} is not valid JSON: {e}", spec.from))?;
        let entries = manifest["entries"].as_array().cloned().unwrap_or_default();
        let mut out = Vec::new();
        for entry in entries {
            let url = entry["url"].as_str().ok_or_else(|| {
                format!(
                    "ERROR: Manifest file {} has an entry without url",
                    spec.from
                )
            })?;
            out.push(split_url(url)?);
        }
        return Ok(out);
    }
    let keys = list_keys(s3, &bucket, &key).await?;
    if keys.is_empty() {
        return Err(format!(
            "ERROR: The specified S3 prefix '{key}' does not exist\n  DETAIL: bucket {bucket}"
        ));
    }
    Ok(keys.into_iter().map(|k| (bucket.clone(), k)).collect())
}

/// The columns COPY fills: the list given, else every column of the table.
async fn target_columns(conn: &mut Conn, spec: &CopySpec) -> Result<Vec<String>, String> {
    if !spec.columns.is_empty() {
        return Ok(spec.columns.clone());
    }
    let names: Vec<String> = match conn {
        Conn::Sqlite(c) => sqlx::query("SELECT name FROM pragma_table_info(?)")
            .bind(super::redshift::table_name(Some(&spec.schema), &spec.table))
            .fetch_all(&mut *c)
            .await
            .map(|rows| rows.iter().map(|r| r.get::<String, _>(0)).collect()),
        Conn::Pg(c) => sqlx::query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        )
        .bind(&spec.schema)
        .bind(&spec.table)
        .fetch_all(&mut c.conn)
        .await
        .map(|rows| rows.iter().map(|r| r.get::<String, _>(0)).collect()),
    }
    .map_err(|e| format!("ERROR: {e}"))?;
    if names.is_empty() {
        return Err(format!(
            "ERROR: relation \"{}\" does not exist",
            spec.table_shown
        ));
    }
    Ok(names)
}

fn load_error(spec: &CopySpec, detail: String) -> String {
    format!(
        "ERROR: Load into table '{}' failed. Check 'sys_load_error_detail' system table for details.\n  DETAIL: {detail}",
        spec.table_shown
    )
}

/// One field as loaded: NULL AS, EMPTYASNULL and BLANKSASNULL applied.
fn field(spec: &CopySpec, raw: &str) -> Option<String> {
    if spec.null_as.as_deref() == Some(raw)
        || (spec.empty_as_null && raw.is_empty())
        || (spec.blanks_as_null && !raw.is_empty() && raw.trim().is_empty())
    {
        return None;
    }
    if spec.format == CopyFormat::Text && spec.null_as.is_none() && raw == "\\N" {
        return None;
    }
    Some(raw.to_string())
}

/// Rows of one object, as optional strings per column.
fn parse_object(
    spec: &CopySpec,
    columns: &[String],
    name: &str,
    text: &str,
) -> Result<Vec<Vec<Option<String>>>, String> {
    match spec.format {
        CopyFormat::JsonAuto => {
            let mut rows = Vec::new();
            for (n, value) in serde_json::Deserializer::from_str(text)
                .into_iter::<Json>()
                .enumerate()
            {
                let value = value.map_err(|e| {
                    load_error(spec, format!("{name}: record {}: invalid JSON: {e}", n + 1))
                })?;
                let obj = value.as_object().ok_or_else(|| {
                    load_error(
                        spec,
                        format!("{name}: record {} is not a JSON object", n + 1),
                    )
                })?;
                let lowered: std::collections::HashMap<String, &Json> =
                    obj.iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
                rows.push(
                    columns
                        .iter()
                        .map(|c| match lowered.get(&c.to_lowercase()) {
                            None | Some(Json::Null) => None,
                            Some(Json::String(s)) => Some(s.clone()),
                            Some(Json::Bool(b)) => Some(if *b { "1" } else { "0" }.to_string()),
                            Some(other) => Some(other.to_string()),
                        })
                        .collect(),
                );
            }
            Ok(rows)
        }
        CopyFormat::Csv | CopyFormat::Text => {
            let csv = spec.format == CopyFormat::Csv;
            let delimiter = spec.delimiter.unwrap_or(if csv { ',' } else { '|' });
            let delim = u8::try_from(u32::from(delimiter)).map_err(|_| {
                format!("ERROR: DELIMITER '{delimiter}' must be one ASCII character")
            })?;
            let quote = u8::try_from(u32::from(spec.quote)).unwrap_or(b'"');
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(delim)
                .quoting(csv)
                .quote(quote)
                .from_reader(text.as_bytes());
            let skip = usize::try_from(spec.ignore_header).unwrap_or(usize::MAX);
            let mut rows = Vec::new();
            for (n, record) in reader.records().enumerate() {
                let record =
                    record.map_err(|e| load_error(spec, format!("{name}: line {}: {e}", n + 1)))?;
                if n < skip || (record.len() == 1 && record.get(0) == Some("")) {
                    continue;
                }
                if record.len() != columns.len() {
                    return Err(load_error(
                        spec,
                        format!(
                            "{name}: line {}: Delimiter not found (expected {} columns, found {})",
                            n + 1,
                            columns.len(),
                            record.len()
                        ),
                    ));
                }
                rows.push(record.iter().map(|f| field(spec, f)).collect());
            }
            Ok(rows)
        }
    }
}

/// COPY: loads every object into the table; returns the rows loaded.
pub(crate) async fn copy(
    s3: &aws_sdk_s3::Client,
    conn: &mut Conn,
    spec: &CopySpec,
) -> Result<i64, String> {
    let columns = target_columns(conn, spec).await?;
    let sources = copy_sources(s3, spec).await?;
    let quoted = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let table = match conn {
        Conn::Sqlite(_) => quoted(&super::redshift::table_name(
            Some(&spec.schema),
            &spec.table,
        )),
        Conn::Pg(_) => format!("{}.{}", quoted(&spec.schema), quoted(&spec.table)),
    };
    let column_list = columns
        .iter()
        .map(|c| quoted(c))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO {table} ({column_list}) VALUES ({})",
        (1..=columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut loaded: i64 = 0;
    for (bucket, key) in sources {
        let name = format!("s3://{bucket}/{key}");
        let mut body = get_object(s3, &bucket, &key).await?;
        if spec.gzip {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body.as_slice())
                .read_to_end(&mut out)
                .map_err(|e| load_error(spec, format!("{name}: not a valid GZIP file: {e}")))?;
            body = out;
        }
        let text = String::from_utf8(body)
            .map_err(|e| load_error(spec, format!("{name}: invalid UTF-8: {e}")))?;
        let rows = parse_object(spec, &columns, &name, &text)?;
        let failed = |m: String| load_error(spec, format!("{name}: {m}"));
        match conn {
            Conn::Sqlite(c) => {
                for row in &rows {
                    let mut args = SqliteArguments::default();
                    for v in row {
                        args.add(v.clone()).map_err(|e| format!("ERROR: {e}"))?;
                    }
                    sqlx::query_with(AssertSqlSafe(insert.clone()), args)
                        .execute(&mut *c)
                        .await
                        .map_err(|e| {
                            failed(
                                e.as_database_error()
                                    .map_or(e.to_string(), |d| d.message().to_string()),
                            )
                        })?;
                }
            }
            Conn::Pg(_) => {
                // Literals, so that PostgreSQL types each value from its
                // column, as COPY does; 500 rows a statement.
                for chunk in rows.chunks(500) {
                    let values: Vec<String> = chunk
                        .iter()
                        .map(|row| {
                            let cells: Vec<String> = row
                                .iter()
                                .map(|v| match v {
                                    Some(v) => format!("'{}'", v.replace('\'', "''")),
                                    None => "NULL".to_string(),
                                })
                                .collect();
                            format!("({})", cells.join(", "))
                        })
                        .collect();
                    conn.raw(&format!(
                        "INSERT INTO {table} ({column_list}) VALUES {}",
                        values.join(", ")
                    ))
                    .await
                    .map_err(failed)?;
                }
            }
        }
        loaded += i64::try_from(rows.len()).unwrap_or(i64::MAX);
    }
    Ok(loaded)
}

fn cell(v: &Value, csv: bool, null_as: &str) -> String {
    match v {
        Value::Null => null_as.to_string(),
        Value::Text(s) if !csv => s.clone(),
        Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
        other => other.to_csv(),
    }
}

/// UNLOAD: writes the rows to S3; returns the rows unloaded.
pub(crate) async fn unload(
    s3: &aws_sdk_s3::Client,
    spec: &UnloadSpec,
    rows: &QueryRows,
) -> Result<i64, String> {
    let (bucket, prefix) = split_url(&spec.to)?;
    if !spec.allow_overwrite && !list_keys(s3, &bucket, &prefix).await?.is_empty() {
        return Err(
            "ERROR: Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, manually removing the target files in S3, or using the ALLOWOVERWRITE option.".to_string(),
        );
    }
    let delimiter = spec.delimiter.unwrap_or(if spec.csv { ',' } else { '|' });
    let null_as = spec.null_as.clone().unwrap_or_default();
    let mut text = String::new();
    if spec.header {
        text.push_str(&rows.columns.join(&delimiter.to_string()));
        text.push('\n');
    }
    for row in &rows.rows {
        let cells: Vec<String> = row.iter().map(|v| cell(v, spec.csv, &null_as)).collect();
        text.push_str(&cells.join(&delimiter.to_string()));
        text.push('\n');
    }
    let mut body = text.into_bytes();
    let mut key = if spec.parallel {
        format!("{prefix}0000_part_00")
    } else {
        format!("{prefix}000")
    };
    if spec.gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &body).map_err(|e| format!("ERROR: gzip: {e}"))?;
        body = enc.finish().map_err(|e| format!("ERROR: gzip: {e}"))?;
        key.push_str(".gz");
    }
    let size = body.len();
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(body.into())
        .send()
        .await
        .map_err(|e| s3_err(&format!("PutObject s3://{bucket}/{key}"), e))?;
    let n = i64::try_from(rows.rows.len()).unwrap_or(i64::MAX);
    if spec.manifest {
        let manifest = json!({
            "entries": [{ "url": format!("s3://{bucket}/{key}"), "meta": { "content_length": size, "record_count": n } }],
            "schema": { "elements": rows.columns.iter().map(|c| json!({ "name": c })).collect::<Vec<_>>() },
            "meta": { "content_length": size, "record_count": n },
        });
        let mkey = format!("{prefix}manifest");
        s3.put_object()
            .bucket(&bucket)
            .key(&mkey)
            .body(manifest.to_string().into_bytes().into())
            .send()
            .await
            .map_err(|e| s3_err(&format!("PutObject s3://{bucket}/{mkey}"), e))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: CopyFormat) -> CopySpec {
        let mut spec = CopySpec::new("public".into(), "t".into(), "t".into(), "s3://b/p".into());
        spec.format = format;
        spec
    }

    #[test]
    fn urls() {
        assert_eq!(split_url("s3://b/a/b").unwrap(), ("b".into(), "a/b".into()));
        assert_eq!(split_url("s3://b").unwrap(), ("b".into(), String::new()));
        assert!(split_url("http://x").is_err());
    }

    #[test]
    fn parses_csv_text_and_json() {
        let cols = vec!["a".to_string(), "b".to_string()];
        let mut s = spec(CopyFormat::Csv);
        s.ignore_header = 1;
        let rows = parse_object(&s, &cols, "x", "a,b\n1,\"x,y\"\n2,\n").unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("x,y".into())],
                vec![Some("2".into()), Some(String::new())]
            ]
        );
        let rows = parse_object(&spec(CopyFormat::Text), &cols, "x", "1|a\n2|\\N\n").unwrap();
        assert_eq!(rows[1], vec![Some("2".into()), None]);
        let rows = parse_object(
            &spec(CopyFormat::JsonAuto),
            &cols,
            "x",
            "{\"A\": 1, \"b\": \"z\"}\n{\"a\": 2}",
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("z".into())],
                vec![Some("2".into()), None]
            ]
        );
        let e = parse_object(&spec(CopyFormat::Csv), &cols, "x", "1,2,3\n").unwrap_err();
        assert!(e.contains("Load into table 't' failed"), "{e}");
    }
}

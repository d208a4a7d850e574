//! GetStatementResult (JSON) and GetStatementResultV2 (CSV): a result
//! served page by page, and the MaxResults of every listing.

use super::*;

impl Engine {
    /// GetStatementResult (JSON) or GetStatementResultV2 (CSV).
    pub(crate) fn result(
        &self,
        id: &str,
        next_token: Option<&str>,
        format: ResultFormat,
    ) -> Result<Json, ApiError> {
        check_id(id)?;
        let now = self.now();
        let (result, st_format) = {
            let mut store = lock(&self.store);
            let ttl = self.cfg.result_ttl_ms;
            let parent = id.split_once(':').map_or(id, |(p, _)| p);
            if store.forgotten.contains(parent) {
                return Err(ApiError::validation(
                    "The results of this statement have expired: results are kept for a limited time after the statement ends.",
                ));
            }
            let st = {
                let (st, _) = find(&store, id)?;
                st.id.clone()
            };
            let st = store
                .statements
                .get_mut(&st)
                .ok_or_else(|| ApiError::not_found("Query does not exist.", id))?;
            let i = match id.split_once(':') {
                Some((_, n)) => n.parse::<usize>().unwrap_or(1).saturating_sub(1),
                None if st.req.is_batch => {
                    return Err(ApiError::validation(
                        "Statement is a batch: fetch results by sub-statement id (Id:N).",
                    ))
                }
                None => 0,
            };
            let st_status = st.status;
            let st_format = st.req.result_format;
            let Some(sub) = st.subs.get_mut(i) else {
                return Err(ApiError::not_found("Query does not exist.", id));
            };
            if sub.status != Status::Finished || st_status != Status::Finished {
                let status = if st.req.is_batch {
                    sub.status
                } else {
                    st_status
                };
                return Err(ApiError::validation(format!(
                    "Query has not finished successfully: its status is {}.",
                    if status == Status::Finished {
                        st_status.as_str()
                    } else {
                        status.as_str()
                    }
                )));
            }
            if !sub.has_result_set {
                return Err(ApiError::not_found(
                    "Query does not have result. Please check query status with DescribeStatement.",
                    id,
                ));
            }
            let ended = sub.ended_ms.unwrap_or(now);
            if now >= ended.saturating_add(ttl) {
                sub.result = None;
                return Err(ApiError::validation(
                    "The results of this statement have expired: results are kept for a limited time after the statement ends.",
                ));
            }
            let Some(result) = sub.result.clone() else {
                return Err(ApiError::validation(
                    "The results of this statement have expired.",
                ));
            };
            (result, st_format)
        };
        match (format, st_format) {
            (ResultFormat::Json, ResultFormat::Csv) => {
                return Err(ApiError::validation(
                    "The statement's ResultFormat is CSV: use GetStatementResultV2.",
                ))
            }
            (ResultFormat::Csv, ResultFormat::Json) => {
                return Err(ApiError::validation(
                    "The statement's ResultFormat is JSON: use GetStatementResult.",
                ))
            }
            _ => {}
        }
        let total = result.rows.len();
        let offset = match next_token {
            None | Some("") => 0,
            Some(t) => t
                .strip_prefix("rows:")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0 && *n < total)
                .ok_or_else(|| ApiError::validation("Invalid NextToken."))?,
        };
        let end = offset.saturating_add(self.cfg.page_size.max(1)).min(total);
        let page = &result.rows[offset..end];
        let columns: Vec<Json> = result
            .columns
            .iter()
            .enumerate()
            .map(|(c, m)| column_json(m, &result.rows, c))
            .collect();
        let mut out = json!({
            "ColumnMetadata": columns,
            "TotalNumRows": total,
        });
        let records = match format {
            ResultFormat::Json => Json::Array(
                page.iter()
                    .map(|row| Json::Array(row.iter().map(Value::to_field).collect()))
                    .collect(),
            ),
            ResultFormat::Csv => {
                let mut text = String::new();
                if offset == 0 {
                    let header: Vec<String> = result
                        .columns
                        .iter()
                        .map(|c| sql::csv_quote(&c.name))
                        .collect();
                    text.push_str(&header.join(","));
                    text.push('\n');
                }
                for row in page {
                    let cells: Vec<String> = row.iter().map(Value::to_csv).collect();
                    text.push_str(&cells.join(","));
                    text.push('\n');
                }
                json!([{ "CSVRecords": text }])
            }
        };
        if let Some(m) = out.as_object_mut() {
            m.insert("Records".into(), records);
            if format == ResultFormat::Csv {
                m.insert("ResultFormat".into(), json!("CSV"));
            }
            if end < total {
                m.insert("NextToken".into(), json!(format!("rows:{end}")));
            }
        }
        Ok(out)
    }
}

pub(super) fn column_json(m: &ColumnMeta, rows: &[Vec<Value>], c: usize) -> Json {
    // An expression has no declared type: take the first value's class.
    let observed = rows.iter().find_map(|r| match r.get(c) {
        Some(Value::Long(_)) => Some("INTEGER"),
        Some(Value::Double(_)) => Some("REAL"),
        Some(Value::Text(_)) => Some("TEXT"),
        Some(Value::Blob(_)) => Some("BLOB"),
        Some(Value::Bool(_)) => Some("BOOLEAN"),
        _ => None,
    });
    let ty = match m.sqlx_type.as_str() {
        "NULL" => observed.unwrap_or("TEXT"),
        t => t,
    };
    let type_name = match &m.pg_type {
        Some(pg) => metadata::redshift_type(pg).name,
        None => sql::redshift_type_name(ty),
    };
    let numeric = matches!(type_name, "int8" | "float8" | "numeric");
    let (precision, scale) = match type_name {
        "int8" => (19, 0),
        "float8" => (17, 17),
        "bool" => (1, 0),
        _ => (256, 0),
    };
    json!({
        "isCaseSensitive": type_name == "varchar",
        "isCurrency": false,
        "isSigned": numeric,
        "label": m.name,
        "name": m.name,
        "nullable": 1,
        "precision": precision,
        "scale": scale,
        "schemaName": if m.table.is_empty() { "" } else { "public" },
        "tableName": m.table,
        "typeName": type_name,
        "length": 0,
    })
}

/// MaxResults of a listing: 0 or absent means `limit`, the most allowed.
pub(crate) fn page_limit(max_results: Option<i64>, limit: usize) -> Result<usize, ApiError> {
    match max_results {
        None | Some(0) => Ok(limit),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= limit => Ok(n),
            _ => Err(ApiError::validation(format!(
                "MaxResults must be between 0 and {limit}, got {n}."
            ))),
        },
    }
}

//! COPY (from S3 into a table) and UNLOAD (a query's rows to S3): the
//! plans the engine carries out with `s3io`.

use super::*;

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

pub(super) fn copy_plan(stmt: Statement) -> Result<Plan, String> {
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

pub(super) fn unload_plan(
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

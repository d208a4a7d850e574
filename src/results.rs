//! Fetching a FINISHED statement's result through every page into files:
//! CSV (with a header row) and JSON Lines (one object per row). A batch's
//! results are fetched per sub-statement (`<id>:N`), never by the parent id.
//! Files are written under a temporary name and renamed when complete, so a
//! crash never leaves a partial result under the final name. Result files
//! and their folders are readable by their owner only, as the ledger is.

use crate::dataapi::{ApiError, DataApi};
use crate::ledger::{Job, ResultFile};
use aws_sdk_redshiftdata::types::Field;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The Data API refused for good: recorded, not retried. Whether the
    /// results had expired is decided by the caller from the statement's
    /// expiry time, never from the message's wording.
    #[error("{0}")]
    Rejected(String),
    /// Try again later.
    #[error("{0}")]
    Transient(String),
    #[error("cannot write result file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl From<ApiError> for FetchError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Rejected(m) => FetchError::Rejected(m),
            ApiError::Throttled(m) | ApiError::Transient(m) => FetchError::Transient(m),
        }
    }
}

/// The directory that holds a job's result files.
pub fn job_dir(results_dir: &Path, job_id: i64) -> PathBuf {
    results_dir.join(format!("job-{job_id}"))
}

/// What [`fetch_job`] wrote: a file per result set, and the first row of
/// the last one (for upstream parameters).
#[derive(Debug, Default)]
pub struct Fetched {
    pub files: Vec<ResultFile>,
    pub first_row: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Fetches every result set of a FINISHED job into `job_dir`. Returns the
/// files written (none when the statement has no result set).
pub async fn fetch_job(
    api: &DataApi,
    job: &Job,
    results_dir: &Path,
) -> Result<Fetched, FetchError> {
    let Some(sid) = job.statement_id.as_deref() else {
        return Err(FetchError::Rejected(format!(
            "job {} has no statement id",
            job.id
        )));
    };
    let mut wanted: Vec<(i64, String)> = Vec::new();
    if job.sqls.len() == 1 && job.has_result_set == Some(true) {
        // ExecuteStatement said so: no DescribeStatement needed.
        wanted.push((0, sid.to_string()));
        return fetch_wanted(api, job, results_dir, wanted).await;
    }
    let described = api.describe(sid).await?;
    if described.subs.is_empty() {
        if described.has_result_set {
            wanted.push((0, sid.to_string()));
        }
    } else {
        for (i, sub) in described.subs.iter().enumerate() {
            if sub.has_result_set {
                let n = sub
                    .id
                    .rsplit_once(':')
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(i as i64 + 1);
                wanted.push((n, sub.id.clone()));
            }
        }
    }
    fetch_wanted(api, job, results_dir, wanted).await
}

/// Fetches the result sets `wanted` ((sub-statement number, id)).
async fn fetch_wanted(
    api: &DataApi,
    job: &Job,
    results_dir: &Path,
    wanted: Vec<(i64, String)>,
) -> Result<Fetched, FetchError> {
    let dir = job_dir(results_dir, job.id);
    let mut out = Fetched::default();
    for (sub, id) in wanted {
        let stem = if sub == 0 {
            "result".to_string()
        } else {
            format!("statement-{sub}")
        };
        let (file, first_row) = fetch_statement(api, &id, sub, &dir, &stem).await?;
        out.files.push(file);
        out.first_row = first_row;
    }
    Ok(out)
}

/// Creates a folder (and its parents) readable by its owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates (truncating) a file readable by its owner only, whatever the
/// umask.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

type Row = serde_json::Map<String, serde_json::Value>;

async fn fetch_statement(
    api: &DataApi,
    id: &str,
    sub: i64,
    dir: &Path,
    stem: &str,
) -> Result<(ResultFile, Option<Row>), FetchError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| FetchError::Io { path, source }
    };
    let csv_err = |path: &Path| {
        let path = path.display().to_string();
        move |e: csv::Error| FetchError::Io {
            path,
            source: std::io::Error::other(e),
        }
    };
    create_private_dir(dir).map_err(io(dir))?;
    let csv_path = dir.join(format!("{stem}.csv"));
    let jsonl_path = dir.join(format!("{stem}.jsonl"));
    let csv_tmp = dir.join(format!(".{stem}.csv.part"));
    let jsonl_tmp = dir.join(format!(".{stem}.jsonl.part"));
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(create_private_file(&csv_tmp).map_err(io(&csv_tmp))?);
    let mut jsonl =
        std::io::BufWriter::new(create_private_file(&jsonl_tmp).map_err(io(&jsonl_tmp))?);
    let mut token = None;
    let mut rows = 0i64;
    let mut columns: Option<Vec<String>> = None;
    let mut first_row = None;
    loop {
        let page = api.result_page(id, token.take()).await?;
        if columns.is_none() {
            csv.write_record(&page.columns).map_err(csv_err(&csv_tmp))?;
            columns = Some(page.columns.clone());
        }
        let cols = columns.as_deref().unwrap_or_default();
        for record in &page.records {
            csv.write_record(record.iter().map(field_text))
                .map_err(csv_err(&csv_tmp))?;
            let mut obj = serde_json::Map::with_capacity(record.len());
            for (i, f) in record.iter().enumerate() {
                let key = cols
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("column{}", i + 1));
                obj.insert(key, field_json(f));
            }
            serde_json::to_writer(&mut jsonl, &obj).map_err(|e| FetchError::Io {
                path: jsonl_tmp.display().to_string(),
                source: e.into(),
            })?;
            jsonl.write_all(b"\n").map_err(io(&jsonl_tmp))?;
            if first_row.is_none() {
                first_row = Some(obj);
            }
            rows += 1;
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let csv = csv.into_inner().map_err(|e| FetchError::Io {
        path: csv_tmp.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let jsonl = jsonl.into_inner().map_err(|e| FetchError::Io {
        path: jsonl_tmp.display().to_string(),
        source: e.into_error(),
    })?;
    for (file, tmp, path) in [(csv, &csv_tmp, &csv_path), (jsonl, &jsonl_tmp, &jsonl_path)] {
        file.sync_all().map_err(io(tmp))?;
        std::fs::rename(tmp, path).map_err(io(path))?;
    }
    let file = ResultFile {
        sub,
        statement_id: id.to_string(),
        rows,
        csv_path: csv_path.display().to_string(),
        jsonl_path: jsonl_path.display().to_string(),
    };
    // The first row of the last result set is what upstream parameters
    // read; `None` when this set is empty.
    Ok((file, first_row))
}

/// A field as text, for CSV: NULL is empty.
pub fn field_text(f: &Field) -> String {
    match f {
        Field::StringValue(s) => s.clone(),
        Field::LongValue(v) => v.to_string(),
        Field::DoubleValue(v) => v.to_string(),
        Field::BooleanValue(v) => v.to_string(),
        Field::IsNull(_) => String::new(),
        Field::BlobValue(b) => aws_smithy_types::base64::encode(b.as_ref()),
        _ => String::new(),
    }
}

/// A field as JSON: numbers stay numbers, NULL is null, blobs are base64.
pub fn field_json(f: &Field) -> serde_json::Value {
    use serde_json::Value;
    match f {
        Field::StringValue(s) => Value::String(s.clone()),
        Field::LongValue(v) => Value::from(*v),
        Field::DoubleValue(v) => serde_json::Number::from_f64(*v)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(v.to_string())),
        Field::BooleanValue(v) => Value::Bool(*v),
        Field::IsNull(_) => Value::Null,
        Field::BlobValue(b) => Value::String(aws_smithy_types::base64::encode(b.as_ref())),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        let f = sub.join("r.csv");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::remove_file(&f).unwrap();
        drop(create_private_file(&f).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(&sub), 0o700);
    }

    #[test]
    fn field_rendering() {
        assert_eq!(field_text(&Field::LongValue(-5)), "-5");
        assert_eq!(field_text(&Field::IsNull(true)), "");
        assert_eq!(field_json(&Field::IsNull(true)), serde_json::Value::Null);
        assert_eq!(field_json(&Field::LongValue(7)), serde_json::json!(7));
        assert_eq!(field_json(&Field::DoubleValue(1.5)), serde_json::json!(1.5));
        assert_eq!(
            field_json(&Field::BlobValue(aws_smithy_types::Blob::new(
                b"hi".to_vec()
            ))),
            serde_json::json!("aGk=")
        );
    }
}

//! Fetching a FINISHED statement's result through every page into files:
//! CSV (with a header row) and JSON Lines (one object per row). A batch's
//! results are fetched per sub-statement (`<id>:N`), never by the parent id.
//! Files are written under a temporary name and renamed when complete, so a
//! crash never leaves a partial result under the final name. Result files
//! and their folders are readable by their owner only, as the ledger is.

use crate::dataapi::{DataApi, DataApiError};
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

impl From<DataApiError> for FetchError {
    fn from(e: DataApiError) -> Self {
        match e {
            DataApiError::Rejected(m) => FetchError::Rejected(m),
            DataApiError::Throttled(m) | DataApiError::Transient(m) => FetchError::Transient(m),
        }
    }
}

// The type moved to the domain, below the ledger that stores it; the
// path stays for the ledger's imports until they name the domain.
use crate::domain::ResultFormats;

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
    default_formats: ResultFormats,
) -> Result<Fetched, FetchError> {
    let formats = job.result_formats_or(default_formats);
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
        return fetch_wanted(api, job, results_dir, wanted, formats).await;
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
    fetch_wanted(api, job, results_dir, wanted, formats).await
}

/// Fetches the result sets `wanted` ((sub-statement number, id)).
async fn fetch_wanted(
    api: &DataApi,
    job: &Job,
    results_dir: &Path,
    wanted: Vec<(i64, String)>,
    formats: ResultFormats,
) -> Result<Fetched, FetchError> {
    let dir = job_dir(results_dir, job.id);
    let mut out = Fetched::default();
    for (sub, id) in wanted {
        let stem = if sub == 0 {
            "result".to_string()
        } else {
            format!("statement-{sub}")
        };
        let (file, first_row) = if formats.csv_only() {
            fetch_csv(api, &id, sub, &dir, &stem).await?
        } else {
            fetch_statement(api, &id, sub, &dir, &stem, formats).await?
        };
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

/// A result file being written under a temporary name (`.NAME.part`),
/// renamed to its final name once complete. Pages are gathered in memory
/// and written, synced and renamed on the blocking pool, never on the
/// async runtime's threads (a slow disk or an fsync stalls no event).
struct PartFile {
    tmp: PathBuf,
    path: PathBuf,
    /// `None` only while a write of `buf` is on the blocking pool.
    file: Option<std::fs::File>,
    buf: Vec<u8>,
}

/// Written out once this much is gathered (memory stays about one page).
const SPILL_BYTES: usize = 256 * 1024;

/// Runs file-system work on the blocking pool; errors name `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, FetchError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res.map_err(|e| io_error(path, e)),
        Err(e) => Err(io_error(path, std::io::Error::other(e.to_string()))),
    }
}

impl PartFile {
    async fn create(dir: &Path, name: &str) -> Result<PartFile, FetchError> {
        let tmp = dir.join(format!(".{name}.part"));
        let path = dir.join(name);
        let at = tmp.clone();
        let file = blocking(&tmp, move || create_private_file(&at)).await?;
        Ok(PartFile {
            file: Some(file),
            buf: Vec::with_capacity(SPILL_BYTES),
            tmp,
            path,
        })
    }

    fn write(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Writes out what is gathered once it is [`SPILL_BYTES`] or more.
    async fn spill(&mut self) -> Result<(), FetchError> {
        if self.buf.len() >= SPILL_BYTES {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> Result<(), FetchError> {
        let Some(mut file) = self.file.take() else {
            return Err(io_error(
                &self.tmp,
                std::io::Error::other("an earlier write of this file failed"),
            ));
        };
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(SPILL_BYTES));
        let file = blocking(&self.tmp, move || file.write_all(&buf).map(|()| file)).await?;
        self.file = Some(file);
        Ok(())
    }

    /// Written, synced and renamed: complete under its final name.
    async fn finish(mut self) -> Result<String, FetchError> {
        self.write_out().await?;
        let (file, tmp, path) = (self.file.take(), self.tmp.clone(), self.path.clone());
        blocking(&self.path, move || {
            if let Some(f) = file {
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)
        })
        .await?;
        Ok(self.path.display().to_string())
    }
}

/// [`PartFile::finish`] of an optional file ("" for none).
async fn finish_opt(file: Option<PartFile>) -> Result<String, FetchError> {
    match file {
        Some(f) => f.finish().await,
        None => Ok(String::new()),
    }
}

/// Creates a job's result folder on the blocking pool.
async fn create_dir(dir: &Path) -> Result<(), FetchError> {
    let at = dir.to_path_buf();
    blocking(dir, move || create_private_dir(&at)).await
}

fn io_error(path: &Path, source: std::io::Error) -> FetchError {
    FetchError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A result kept as CSV, page by page with GetStatementResultV2: the CSV
/// text goes to the file as the Data API wrote it; only the first data row
/// is parsed (for upstream parameters). Memory stays at one page.
async fn fetch_csv(
    api: &DataApi,
    id: &str,
    sub: i64,
    dir: &Path,
    stem: &str,
) -> Result<(ResultFile, Option<Row>), FetchError> {
    create_dir(dir).await?;
    let mut csv = PartFile::create(dir, &format!("{stem}.csv")).await?;
    let mut token = None;
    let mut rows = 0i64;
    let mut first_row = None;
    let mut first = true;
    loop {
        let page = api.csv_page(id, token.take()).await?;
        if first {
            first = false;
            rows = page.total_rows.max(0);
            first_row = first_csv_row(&page.text);
            if page.text.is_empty() {
                // No row at all: the header from the column metadata.
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                w.write_record(&page.columns)
                    .map_err(|e| io_error(&csv.tmp, std::io::Error::other(e)))?;
                let header = w
                    .into_inner()
                    .map_err(|e| io_error(&csv.tmp, std::io::Error::other(e.to_string())))?;
                csv.write(&header);
            }
        }
        csv.write(page.text.as_bytes());
        csv.spill().await?;
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let csv_path = csv.finish().await?;
    let file = ResultFile {
        sub,
        statement_id: id.to_string(),
        rows,
        csv_path,
        jsonl_path: String::new(),
    };
    Ok((file, first_row))
}

/// The first data row of CSV text that starts with its header row, as
/// column -> text.
fn first_csv_row(text: &str) -> Option<Row> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = r.headers().ok()?.clone();
    let record = r.records().next()?.ok()?;
    Some(
        header
            .iter()
            .zip(record.iter())
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
    )
}

/// A result kept as JSON, page by page with GetStatementResult, written as
/// the files `formats` asks for.
async fn fetch_statement(
    api: &DataApi,
    id: &str,
    sub: i64,
    dir: &Path,
    stem: &str,
    formats: ResultFormats,
) -> Result<(ResultFile, Option<Row>), FetchError> {
    create_dir(dir).await?;
    let mut csv = match formats.csv {
        true => Some(PartFile::create(dir, &format!("{stem}.csv")).await?),
        false => None,
    };
    let mut jsonl = match formats.jsonl {
        true => Some(PartFile::create(dir, &format!("{stem}.jsonl")).await?),
        false => None,
    };
    let mut token = None;
    let mut rows = 0i64;
    let mut columns: Option<Vec<String>> = None;
    let mut first_row = None;
    let mut line = Vec::with_capacity(4096);
    let csv_tmp = csv.as_ref().map(|c| c.tmp.clone()).unwrap_or_default();
    let csv_error = |e: csv::Error| io_error(&csv_tmp, std::io::Error::other(e));
    // CSV records are written into memory, then moved to the file a page
    // at a time.
    let csv_writer = || {
        csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new())
    };
    loop {
        let page = api.result_page(id, token.take()).await?;
        let mut csv_out = csv.as_ref().map(|_| csv_writer());
        if columns.is_none() {
            if let Some(w) = csv_out.as_mut() {
                w.write_record(&page.columns).map_err(csv_error)?;
            }
            columns = Some(page.columns.clone());
        }
        let cols = columns.as_deref().unwrap_or_default();
        for record in &page.records {
            if let Some(w) = csv_out.as_mut() {
                w.write_record(record.iter().map(field_text))
                    .map_err(csv_error)?;
            }
            if jsonl.is_some() || first_row.is_none() {
                let mut obj = serde_json::Map::with_capacity(record.len());
                for (i, f) in record.iter().enumerate() {
                    let key = cols
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("column{}", i + 1));
                    obj.insert(key, field_json(f));
                }
                if let Some(out) = jsonl.as_mut() {
                    line.clear();
                    serde_json::to_writer(&mut line, &obj)
                        .map_err(|e| io_error(&out.tmp, e.into()))?;
                    line.push(b'\n');
                    out.write(&line);
                }
                if first_row.is_none() {
                    first_row = Some(obj);
                }
            }
            rows += 1;
        }
        if let (Some(w), Some(out)) = (csv_out.take(), csv.as_mut()) {
            let bytes = w
                .into_inner()
                .map_err(|e| io_error(&csv_tmp, std::io::Error::other(e.to_string())))?;
            out.write(&bytes);
            out.spill().await?;
        }
        if let Some(out) = jsonl.as_mut() {
            out.spill().await?;
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let csv_path = finish_opt(csv).await?;
    let jsonl_path = finish_opt(jsonl).await?;
    let file = ResultFile {
        sub,
        statement_id: id.to_string(),
        rows,
        csv_path,
        jsonl_path,
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

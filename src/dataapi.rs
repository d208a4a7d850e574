//! The Redshift Data API, as redrelay uses it: submit with WithEvent,
//! describe, cancel, page through results. Errors are classified where they
//! happen: throttling (wait and try again), rejected (the request can never
//! succeed), transient (try again later).

use crate::domain::Param;
use crate::ratelimit::Limits;
use crate::state::Outcome;
use aws_sdk_redshiftdata::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_redshiftdata::types::{Field, SqlParameter};
use aws_sdk_redshiftdata::Client;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DataApiError {
    /// ThrottlingException, ActiveStatementsExceededException, ...: the job
    /// stays READY and is submitted again after a backoff.
    #[error("Data API is throttling: {0}")]
    Throttled(String),
    /// ValidationException, ResourceNotFoundException, ...: will not succeed
    /// if tried again.
    #[error("Data API rejected the request: {0}")]
    Rejected(String),
    /// Network errors, timeouts, InternalServerException.
    #[error("Data API call failed: {0}")]
    Transient(String),
}

impl DataApiError {
    fn classify<E, R>(err: aws_sdk_redshiftdata::error::SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = err.code().unwrap_or_default().to_string();
        let message = match err.message() {
            Some(m) if !code.is_empty() => format!("{code}: {m}"),
            _ => DisplayErrorContext(&err).to_string(),
        };
        Self::of(&code, err.message(), message)
    }

    /// The kind of an error from its code and the service's message;
    /// `shown` is what the error says.
    fn of(code: &str, service_message: Option<&str>, shown: String) -> Self {
        let message = shown;
        match code {
            // Redshift Serverless answers throttling as a ValidationException
            // whose message is "Rate exceeded": throttling, not a failure.
            "ValidationException"
                if service_message.is_some_and(|m| m.contains("Rate exceeded")) =>
            {
                DataApiError::Throttled(message)
            }
            "ThrottlingException"
            | "ActiveStatementsExceededException"
            | "ActiveSessionsExceededException"
            | "TooManyRequestsException" => DataApiError::Throttled(message),
            "ValidationException"
            | "ResourceNotFoundException"
            | "ExecuteStatementException"
            | "BatchExecuteStatementException"
            | "AccessDeniedException"
            | "UnrecognizedClientException" => DataApiError::Rejected(message),
            _ => DataApiError::Transient(message),
        }
    }
}

/// What DescribeStatement says of a statement.
#[derive(Debug, Clone)]
pub struct Described {
    pub status: String,
    pub error: Option<String>,
    pub has_result_set: bool,
    pub result_rows: i64,
    /// A batch's sub-statements: (id, has_result_set, error).
    pub subs: Vec<SubStatement>,
}

#[derive(Debug, Clone)]
pub struct SubStatement {
    pub id: String,
    pub status: String,
    pub has_result_set: bool,
    pub error: Option<String>,
}

impl Described {
    /// The outcome, if the statement has ended.
    pub fn outcome(&self) -> Option<Outcome> {
        let error = || {
            self.error
                .clone()
                .or_else(|| self.subs.iter().find_map(|s| s.error.clone()))
                .unwrap_or_else(|| format!("statement {}", self.status))
        };
        match self.status.as_str() {
            "FINISHED" => Some(Outcome::Finished {
                rows: (self.result_rows >= 0).then_some(self.result_rows),
            }),
            "FAILED" => Some(Outcome::Failed { error: error() }),
            "ABORTED" => Some(Outcome::Aborted { error: error() }),
            _ => None,
        }
    }
}

pub use crate::domain::Accepted;

/// One page of a statement's result.
pub struct Page {
    pub columns: Vec<String>,
    pub records: Vec<Vec<Field>>,
    pub next_token: Option<String>,
}

#[derive(Clone)]
pub struct DataApi {
    client: Client,
    limits: std::sync::Arc<Limits>,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl DataApi {
    /// A client limited to AWS's default per-operation rates.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self::with_rate_scale(sdk, 1.0)
    }

    /// A client limited to AWS's default rates times `scale`.
    pub fn with_rate_scale(sdk: &aws_config::SdkConfig, scale: f64) -> Self {
        Self {
            client: Client::new(sdk),
            limits: std::sync::Arc::new(Limits::aws_defaults(scale)),
            metrics: None,
        }
    }

    /// Counts every call in `metrics` by operation and outcome.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn note<T>(&self, operation: &'static str, r: &Result<T, DataApiError>) {
        use crate::metrics::CallOutcome;
        if let Some(m) = &self.metrics {
            m.call(
                operation,
                match r {
                    Ok(_) => CallOutcome::ok,
                    Err(DataApiError::Throttled(_)) => CallOutcome::throttled,
                    Err(_) => CallOutcome::error,
                },
            );
        }
    }

    /// Submits an attempt with WithEvent=true, its StatementName and its
    /// ClientToken. Returns the statement id, and whether it has a result
    /// set when the response says. With `csv_results` the statement runs
    /// with ResultFormat CSV (its pages are then read with
    /// [`DataApi::csv_page`]).
    pub async fn submit(
        &self,
        t: &crate::domain::Submission<'_>,
        csv_results: bool,
    ) -> Result<Accepted, DataApiError> {
        let format = csv_results.then_some(aws_sdk_redshiftdata::types::ResultFormatString::Csv);
        let target = t.target.clone();
        target.check().map_err(DataApiError::Rejected)?;
        let params = sql_parameters(t.params)?;
        // ExecuteStatement and BatchExecuteStatement take the same fields
        // and answer the same ones, but are distinct types.
        // In a session already open, the session has the target; the call
        // names only the session (the Data API refuses both).
        let (target, session_id, keep_alive) = match t.session {
            Some(s) if s.id.is_some() => (
                crate::domain::Target::default(),
                s.id.clone(),
                Some(s.keep_alive_secs),
            ),
            Some(s) => (target, None, Some(s.keep_alive_secs)),
            None => (target, None, None),
        };
        let keep_alive = keep_alive.map(|k| k.clamp(1, 86_400) as i32);
        macro_rules! send_with_common_fields {
            ($builder:expr) => {{
                let out = $builder
                    .set_parameters(params)
                    .statement_name(t.statement_name)
                    .client_token(t.client_token)
                    .with_event(true)
                    .set_result_format(format)
                    .set_session_id(session_id)
                    .set_session_keep_alive_seconds(keep_alive)
                    .set_workgroup_name(target.workgroup)
                    .set_cluster_identifier(target.cluster)
                    .set_database(target.database)
                    .set_db_user(target.db_user)
                    .set_secret_arn(target.secret_arn)
                    .send()
                    .await
                    .map_err(DataApiError::classify)?;
                out.id().map(|id| Accepted {
                    id: id.to_string(),
                    has_result_set: out.has_result_set(),
                    session_id: out.session_id().map(str::to_string),
                })
            }};
        }
        let (operation, accepted) = if let [sql] = t.sqls {
            self.limits.execute.take().await;
            let accepted = async {
                Ok(send_with_common_fields!(self
                    .client
                    .execute_statement()
                    .sql(sql)))
            };
            ("ExecuteStatement", accepted.await)
        } else {
            self.limits.batch_execute.take().await;
            let accepted = async {
                Ok(send_with_common_fields!(self
                    .client
                    .batch_execute_statement()
                    .set_sqls(Some(t.sqls.to_vec()))
                    .set_execution_mode(t.execution_mode.map(
                        aws_sdk_redshiftdata::types::ExecutionMode::from
                    ))))
            };
            ("BatchExecuteStatement", accepted.await)
        };
        let accepted = accepted.and_then(|a| {
            a.ok_or_else(|| DataApiError::Transient("the Data API answered no statement id".into()))
        });
        self.note(operation, &accepted);
        accepted
    }

    /// This process's share of the account's rate quotas, when `workers`
    /// share them.
    pub fn set_share(&self, workers: usize) {
        self.limits.set_share(workers);
    }

    /// The current ExecuteStatement rate limit of this process (per second).
    pub fn execute_rate(&self) -> f64 {
        self.limits.execute.rate()
    }

    pub async fn describe(&self, id: &str) -> Result<Described, DataApiError> {
        self.describe_waiting(id, None).await
    }

    /// DescribeStatement with WaitTimeSeconds: the Data API answers once the
    /// statement has ended, or after `wait_secs` (at most 30) with its
    /// current status.
    pub async fn describe_waiting(
        &self,
        id: &str,
        wait_secs: Option<i32>,
    ) -> Result<Described, DataApiError> {
        self.limits.describe.take().await;
        let out = self
            .client
            .describe_statement()
            .id(id)
            .set_wait_time_seconds(wait_secs.map(|s| s.clamp(1, 30)))
            .send()
            .await
            .map_err(DataApiError::classify);
        self.note("DescribeStatement", &out);
        let out = out?;
        Ok(Described {
            status: out
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            error: out.error().map(str::to_string),
            has_result_set: out.has_result_set().unwrap_or(false),
            result_rows: out.result_rows(),
            subs: out
                .sub_statements()
                .iter()
                .map(|s| SubStatement {
                    id: s.id().to_string(),
                    status: s
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    has_result_set: s.has_result_set().unwrap_or(false),
                    error: s.error().map(str::to_string),
                })
                .collect(),
        })
    }

    pub async fn cancel(&self, id: &str) -> Result<bool, DataApiError> {
        self.limits.cancel.take().await;
        let out = self
            .client
            .cancel_statement()
            .id(id)
            .send()
            .await
            .map_err(DataApiError::classify);
        self.note("CancelStatement", &out);
        let out = out?;
        Ok(out.status().unwrap_or(false))
    }

    pub async fn result_page(&self, id: &str, token: Option<String>) -> Result<Page, DataApiError> {
        self.limits.get_result.take().await;
        let out = self
            .client
            .get_statement_result()
            .id(id)
            .set_next_token(token)
            .send()
            .await
            .map_err(DataApiError::classify);
        self.note("GetStatementResult", &out);
        let out = out?;
        Ok(Page {
            columns: column_names(out.column_metadata()),
            next_token: out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            records: out.records,
        })
    }

    /// One page of a result kept as CSV (the statement ran with
    /// ResultFormat CSV), by GetStatementResultV2: CSV text as the Data API
    /// wrote it (the first page starts with the header row), no per-field
    /// JSON to decode.
    pub async fn csv_page(&self, id: &str, token: Option<String>) -> Result<CsvPage, DataApiError> {
        self.limits.get_result.take().await;
        let out = self
            .client
            .get_statement_result_v2()
            .id(id)
            .set_next_token(token)
            .send()
            .await
            .map_err(DataApiError::classify);
        self.note("GetStatementResultV2", &out);
        let out = out?;
        let mut text = String::new();
        for r in out.records() {
            if let aws_sdk_redshiftdata::types::QueryRecords::CsvRecords(t) = r {
                text.push_str(t);
            }
        }
        Ok(CsvPage {
            columns: column_names(out.column_metadata()),
            total_rows: out.total_num_rows(),
            next_token: out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            text,
        })
    }
}

/// Column labels (names when unlabelled, `columnN` when neither).
fn column_names(meta: &[aws_sdk_redshiftdata::types::ColumnMetadata]) -> Vec<String> {
    meta.iter()
        .enumerate()
        .map(|(i, c)| {
            c.label()
                .or(c.name())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("column{}", i + 1))
        })
        .collect()
}

/// One page of a CSV result ([`DataApi::csv_page`]).
pub struct CsvPage {
    pub columns: Vec<String>,
    /// The result's rows in all pages (TotalNumRows).
    pub total_rows: i64,
    pub next_token: Option<String>,
    pub text: String,
}

fn sql_parameters(params: &[Param]) -> Result<Option<Vec<SqlParameter>>, DataApiError> {
    if params.is_empty() {
        return Ok(None);
    }
    params
        .iter()
        .map(|p| {
            SqlParameter::builder()
                .name(&p.name)
                .value(&p.value)
                .build()
                .map_err(|e| DataApiError::Rejected(format!("parameter {}: {e}", p.name)))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serverless_rate_exceeded_is_throttling() {
        let of = |code: &str, m: &str| DataApiError::of(code, Some(m), format!("{code}: {m}"));
        assert!(matches!(
            of("ValidationException", "Rate exceeded"),
            DataApiError::Throttled(_)
        ));
        assert!(matches!(
            of("ValidationException", "syntax error at or near"),
            DataApiError::Rejected(_)
        ));
        assert!(matches!(
            of("ThrottlingException", "slow down"),
            DataApiError::Throttled(_)
        ));
        assert!(matches!(
            of("InternalServerException", "oops"),
            DataApiError::Transient(_)
        ));
    }
}

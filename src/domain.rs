//! Domain types every module uses, and the rules that go with them, each in
//! one place: where a statement runs ([`Target`]), a SQL parameter
//! ([`Param`]) and its name rule, the Data API's batch limit, and which
//! files a job's results are written as ([`ResultFormats`]). This module
//! imports no other of the crate: every layer may use it.

use serde::{Deserialize, Serialize};

/// The longest `timeout_secs` a job may have (30 days): longer is a
/// mistake, and its milliseconds must stay far from an integer overflow in
/// the ledger's arithmetic.
pub const MAX_TIMEOUT_SECS: u64 = 30 * 86_400;

/// BatchExecuteStatement takes 1 to 40 SQL statements (a wire fact the
/// emulator enforces too), and the `:name` parameters a SQL text references.
pub use redrelay_wire::{param_names, MAX_BATCH_STATEMENTS};

/// Checks the number of statements of a job: one, or a batch of at most
/// [`MAX_BATCH_STATEMENTS`].
pub fn check_batch_size(n: usize) -> Result<(), String> {
    if n > MAX_BATCH_STATEMENTS {
        return Err(format!(
            "a batch holds at most {MAX_BATCH_STATEMENTS} statements, this one has {n}"
        ));
    }
    Ok(())
}

/// Where a statement runs: a Serverless workgroup or a provisioned cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub workgroup: Option<String>,
    pub cluster: Option<String>,
    pub database: Option<String>,
    pub db_user: Option<String>,
    pub secret_arn: Option<String>,
}

impl Target {
    /// `self` laid over `base`: a workgroup or cluster in `self` replaces
    /// both of `base`'s (they exclude each other); each other field of
    /// `self` replaces `base`'s when set.
    pub fn over(self, base: &Target) -> Target {
        let (workgroup, cluster) = if self.workgroup.is_some() || self.cluster.is_some() {
            (self.workgroup, self.cluster)
        } else {
            (base.workgroup.clone(), base.cluster.clone())
        };
        Target {
            workgroup,
            cluster,
            database: self.database.or_else(|| base.database.clone()),
            db_user: self.db_user.or_else(|| base.db_user.clone()),
            secret_arn: self.secret_arn.or_else(|| base.secret_arn.clone()),
        }
    }

    /// The workgroup or cluster name (per-target limits count by it).
    pub fn name(&self) -> &str {
        self.workgroup
            .as_deref()
            .or(self.cluster.as_deref())
            .unwrap_or_default()
    }

    /// Exactly one of a workgroup or a cluster, and a database.
    pub fn check(&self) -> Result<(), String> {
        match (&self.workgroup, &self.cluster) {
            (Some(_), Some(_)) => {
                return Err("both a workgroup and a cluster are set: give only one".into())
            }
            (None, None) => {
                return Err(
                    "no target: give --workgroup or --cluster (or set workgroup or cluster in redrelay.toml)"
                        .into(),
                )
            }
            _ => {}
        }
        if self.database.is_none() {
            return Err("no database: give --database (or set database in redrelay.toml)".into());
        }
        Ok(())
    }
}

/// A SQL parameter of a job (`:name` in the SQL). Its `Debug` shows the
/// name, never the value: values go to the Data API and nowhere else.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    /// Empty while the value is still to be taken from an upstream result.
    pub value: String,
    /// Take the value from the first row of this upstream job's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ParamFrom>,
}

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Param")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamFrom {
    pub job: i64,
    pub column: String,
}

/// A parameter name is what follows `:` in the SQL: letters, digits or _.
pub fn check_param_name(name: &str) -> Result<(), String> {
    if !redrelay_wire::valid_param_name(name) {
        return Err(format!(
            "parameter {name:?}: a name is letters, digits or _ (as :name in the SQL)"
        ));
    }
    Ok(())
}

/// A parameter with its value, as the Data API takes it: a valid name
/// (a leading `:` is dropped) and a value that is not empty.
pub fn param(name: &str, value: &str) -> Result<Param, String> {
    let name = name.trim().trim_start_matches(':');
    check_param_name(name)?;
    if value.is_empty() {
        return Err(format!(
            "parameter {name}: the Data API does not accept an empty value"
        ));
    }
    Ok(Param {
        name: name.to_string(),
        value: value.to_string(),
        from: None,
    })
}

/// Which files a job's results are written as: CSV (with a header row)
/// and/or JSON Lines. Written `csv`, `jsonl` or `csv,jsonl` (in
/// redrelay.toml, REDRELAY_RESULT_FORMATS, a pipeline's `result_formats`
/// and `submit --result-formats`); a TOML list also reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultFormats {
    pub csv: bool,
    pub jsonl: bool,
}

impl ResultFormats {
    /// The default: CSV only.
    pub const CSV: ResultFormats = ResultFormats {
        csv: true,
        jsonl: false,
    };

    /// CSV only: the statement runs with ResultFormat CSV and its pages are
    /// read with GetStatementResultV2 as CSV text (no per-field JSON).
    pub fn csv_only(self) -> bool {
        self.csv && !self.jsonl
    }

    /// Reads `csv`, `jsonl`, `csv,jsonl` (any order, spaces allowed).
    pub fn parse(text: &str) -> Result<ResultFormats, String> {
        let mut f = ResultFormats {
            csv: false,
            jsonl: false,
        };
        for word in text.split(',').map(str::trim) {
            match word.to_ascii_lowercase().as_str() {
                "csv" => f.csv = true,
                "jsonl" => f.jsonl = true,
                other => {
                    return Err(format!(
                        "result format {other:?} is not one of csv, jsonl (give csv, jsonl or csv,jsonl)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

impl Default for ResultFormats {
    fn default() -> Self {
        ResultFormats::CSV
    }
}

impl std::fmt::Display for ResultFormats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (self.csv, self.jsonl) {
            (true, true) => "csv,jsonl",
            (false, true) => "jsonl",
            _ => "csv",
        })
    }
}

impl serde::Serialize for ResultFormats {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ResultFormats {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Text {
            One(String),
            List(Vec<String>),
        }
        let text = match Text::deserialize(d)? {
            Text::One(s) => s,
            Text::List(v) => v.join(","),
        };
        ResultFormats::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_keeps_one_of_workgroup_or_cluster() {
        let base = Target {
            workgroup: Some("wg".into()),
            database: Some("dev".into()),
            secret_arn: Some("arn:s".into()),
            ..Default::default()
        };
        let t = Target {
            cluster: Some("c1".into()),
            db_user: Some("u".into()),
            ..Default::default()
        }
        .over(&base);
        assert_eq!(t.workgroup, None);
        assert_eq!(t.cluster.as_deref(), Some("c1"));
        assert_eq!(t.database.as_deref(), Some("dev"));
        assert_eq!(t.db_user.as_deref(), Some("u"));
        assert_eq!(t.secret_arn.as_deref(), Some("arn:s"));
        let same = Target::default().over(&base);
        assert_eq!(same, base);
        assert!(same.check().is_ok());
        assert!(Target::default().check().unwrap_err().contains("no target"));
    }

    #[test]
    fn param_debug_hides_the_value() {
        let p = Param {
            name: "day".into(),
            value: "s3cr3t-value".into(),
            from: None,
        };
        let shown = format!("{p:?} {:?}", vec![p.clone()]);
        assert!(
            shown.contains("day") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn names_and_batches() {
        assert!(check_param_name("day_1").is_ok());
        assert!(check_param_name("bad name").is_err());
        assert!(check_param_name("").is_err());
        assert!(check_batch_size(40).is_ok());
        assert!(check_batch_size(41).unwrap_err().contains("at most 40"));
    }
}

/// The session a job's statement runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The run's session, once its first statement opened it.
    pub id: Option<String>,
    /// SessionKeepAliveSeconds.
    pub keep_alive_secs: i64,
}

/// What ExecuteStatement / BatchExecuteStatement answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// The statement id.
    pub id: String,
    /// HasResultSet, when the response carries it: with `Some(false)` the
    /// results need no DescribeStatement and no fetch.
    pub has_result_set: Option<bool>,
    /// SessionId, for a statement run in a session.
    pub session_id: Option<String>,
}

impl Accepted {
    /// An answer with the statement id only.
    pub fn id(id: &str) -> Accepted {
        Accepted {
            id: id.to_string(),
            ..Accepted::default()
        }
    }
}

/// One attempt as the Data API is sent it: its SQL (one statement, or a
/// batch), parameters, target, StatementName, ClientToken and session.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    pub sqls: &'a [String],
    pub params: &'a [Param],
    pub target: Target,
    pub statement_name: &'a str,
    pub client_token: &'a str,
    pub session: Option<&'a Session>,
    /// A batch's ExecutionMode (`AUTO_COMMIT`), or one transaction.
    pub execution_mode: Option<&'a str>,
}

/// A host as a `Host` header or `api_allowed_hosts` names it: lower case,
/// an IPv6 address in brackets, with its port when one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName {
    host: String,
    port: Option<u16>,
}

impl HostName {
    /// `name`, `name:port`, `1.2.3.4:port` or `[::1]:port`; `None` for
    /// anything else (a scheme, a path, user info, an empty name).
    pub fn parse(text: &str) -> Option<HostName> {
        let text = text.trim();
        if text.is_empty() || text.contains(['/', '@', '?', '#', ' ']) {
            return None;
        }
        let authority: axum::http::uri::Authority = text.parse().ok()?;
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        // `Authority` takes "a:b:c" (an IPv6 address without brackets) as
        // a host; a Host header never is one.
        if host.contains(':') && !host.starts_with('[') {
            return None;
        }
        Some(HostName {
            host,
            port: authority.port_u16(),
        })
    }
}

impl HostName {
    /// The name or address, lower case (an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when one is given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

/// A value never shown: `****` in Debug and serialisation.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value itself, for comparing and sending; never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("****")
    }
}

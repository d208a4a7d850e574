//! `redrelay.toml`, each key overridable by `REDRELAY_<KEY>`. Endpoints and
//! credentials are not here: they come from the standard AWS configuration
//! chain (AWS_ENDPOINT_URL_SQS, AWS_PROFILE, AWS_REGION, ...).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to do with a message that is not a valid event of the configured
/// origin, or an event for a statement that is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnReject {
    /// Record it in the ledger and delete it from the queue.
    Ack,
    /// Record it and leave it on the queue: after `max_receive_count`
    /// receives SQS moves it to the dead-letter queue.
    Leave,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// URL of the SQS queue the EventBridge rule delivers to. When unset,
    /// it is looked up from `queue_name`.
    pub queue_url: Option<String>,
    /// Name of the SQS queue (`redrelay setup` creates it).
    pub queue_name: String,
    /// Name of the dead-letter queue (default: `<queue_name>-dlq`).
    pub dlq_name: Option<String>,
    /// Receives before SQS moves a message to the dead-letter queue.
    pub max_receive_count: u32,
    /// How long a received message stays invisible to other consumers.
    pub visibility_timeout_secs: u32,
    /// Long-poll wait of each ReceiveMessage (0-20).
    pub wait_time_secs: u32,
    /// Name of the EventBridge rule (`redrelay setup` creates it).
    pub rule_name: String,
    /// Event bus of the rule.
    pub event_bus: String,
    /// Where the ledger is: a SQLite file path (or `sqlite://PATH`), or a
    /// `postgres://USER@HOST:PORT/DATABASE[?sslmode=...]` URL to share one
    /// ledger between several workers.
    pub ledger: String,
    /// A file holding the PostgreSQL password (when the URL has none; else
    /// PGPASSWORD is used).
    pub ledger_password_file: Option<PathBuf>,
    /// Connections each process keeps to a PostgreSQL ledger.
    pub ledger_max_connections: u32,
    /// Where fetched results are written (one folder per job).
    pub results_dir: PathBuf,
    /// Default Redshift Serverless workgroup.
    pub workgroup: Option<String>,
    /// Default provisioned cluster identifier.
    pub cluster: Option<String>,
    /// Default database.
    pub database: Option<String>,
    /// Default database user (provisioned clusters, temporary credentials).
    pub db_user: Option<String>,
    /// Default Secrets Manager secret ARN for the database credentials.
    pub secret_arn: Option<String>,
    /// Only accept events from this account (events without an account
    /// field, as moto sends, are accepted).
    pub account: Option<String>,
    /// Only accept events from this region (default: the AWS region in use).
    pub region: Option<String>,
    /// Invalid messages (not JSON, wrong source or origin): ack or leave.
    pub on_invalid: OnReject,
    /// Events for statements that are not jobs of this ledger: ack or leave.
    pub on_foreign: OnReject,
    /// A SUBMITTED job with no end event after this long is checked with
    /// DescribeStatement (events can be lost).
    pub reconcile_after_secs: u64,
    /// At most this many statements in flight at once.
    pub max_in_flight: u32,
    /// At most this many statements in flight per workgroup or cluster
    /// (0 = only `max_in_flight` applies).
    pub max_in_flight_per_target: u32,
    /// Scale of the client-side Data API rate limits (1.0 = AWS's default
    /// quotas: ExecuteStatement 30/s, BatchExecuteStatement 20/s,
    /// DescribeStatement 100/s, GetStatementResult 20/s, CancelStatement
    /// 10/s). Lower it when other tools share the account's quota.
    pub api_rate_scale: f64,
    /// The worker deletes, every hour, inbox rows (raw event bodies) older
    /// than this many days, and the result files (with their rows) of jobs
    /// that ended before then; a job that has not ended keeps everything.
    /// 0 keeps everything forever. `redrelay ledger prune` does it on demand.
    pub retention_days: u64,
    /// Address of the worker's HTTP listener (/metrics, /healthz, /readyz):
    /// loopback by default; "" turns it off; port 0 picks a free port.
    pub listen: String,
    /// Publish redrelay's own "Job State Change" and "Run State Change"
    /// events to EventBridge (from an outbox written with each change).
    pub publish_events: bool,
    /// The bus they go to.
    pub publish_bus: String,
    /// Their `source`.
    pub publish_source: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            queue_url: None,
            queue_name: "redrelay-events".into(),
            dlq_name: None,
            max_receive_count: 5,
            visibility_timeout_secs: 120,
            wait_time_secs: 20,
            rule_name: "redrelay-statement-status".into(),
            event_bus: "default".into(),
            ledger: "redrelay.db".into(),
            ledger_password_file: None,
            ledger_max_connections: 5,
            results_dir: PathBuf::from("results"),
            workgroup: None,
            cluster: None,
            database: None,
            db_user: None,
            secret_arn: None,
            account: None,
            region: None,
            on_invalid: OnReject::Ack,
            on_foreign: OnReject::Ack,
            reconcile_after_secs: 300,
            max_in_flight: 50,
            max_in_flight_per_target: 0,
            api_rate_scale: 1.0,
            retention_days: 30,
            listen: "127.0.0.1:9464".into(),
            publish_events: false,
            publish_bus: "default".into(),
            publish_source: "redrelay".into(),
        }
    }
}

/// Keys whose environment value is a number, not a string.
const NUMERIC_KEYS: &[&str] = &[
    "max_receive_count",
    "visibility_timeout_secs",
    "wait_time_secs",
    "reconcile_after_secs",
    "max_in_flight",
    "max_in_flight_per_target",
    "api_rate_scale",
    "retention_days",
    "ledger_max_connections",
];

/// Keys whose environment value is true or false.
const BOOL_KEYS: &[&str] = &["publish_events"];

/// Every key of the file, in the order of the struct.
pub const KEYS: &[&str] = &[
    "queue_url",
    "queue_name",
    "dlq_name",
    "max_receive_count",
    "visibility_timeout_secs",
    "wait_time_secs",
    "rule_name",
    "event_bus",
    "ledger",
    "ledger_password_file",
    "ledger_max_connections",
    "results_dir",
    "workgroup",
    "cluster",
    "database",
    "db_user",
    "secret_arn",
    "account",
    "region",
    "on_invalid",
    "on_foreign",
    "reconcile_after_secs",
    "max_in_flight",
    "max_in_flight_per_target",
    "api_rate_scale",
    "retention_days",
    "listen",
    "publish_events",
    "publish_bus",
    "publish_source",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Invalid { path: String, message: String },
    #[error("environment variable {var} must be a number, got {value:?}")]
    NotANumber { var: String, value: String },
    #[error("environment variable {var} must be true or false, got {value:?}")]
    NotABool { var: String, value: String },
}

impl Config {
    /// Loads `path` (or `./redrelay.toml` when it exists, or the defaults),
    /// then applies `REDRELAY_<KEY>` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let default_path = Path::new("redrelay.toml");
        let path = path.or_else(|| default_path.exists().then_some(default_path));
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(environment)".into());
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: shown.clone(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Invalid {
                    path: shown.clone(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        for key in KEYS {
            let var = format!("REDRELAY_{}", key.to_ascii_uppercase());
            let Some(value) = env(&var).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = if BOOL_KEYS.contains(key) {
                let b = match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(ConfigError::NotABool {
                            var: var.clone(),
                            value: value.clone(),
                        })
                    }
                };
                toml::Value::Boolean(b)
            } else if *key == "api_rate_scale" {
                let f: f64 = value.trim().parse().map_err(|_| ConfigError::NotANumber {
                    var: var.clone(),
                    value: value.clone(),
                })?;
                toml::Value::Float(f)
            } else if NUMERIC_KEYS.contains(key) {
                let n: i64 = value.trim().parse().map_err(|_| ConfigError::NotANumber {
                    var: var.clone(),
                    value: value.clone(),
                })?;
                toml::Value::Integer(n)
            } else {
                toml::Value::String(value)
            };
            table.insert((*key).to_string(), value);
        }
        let cfg: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                path: shown.clone(),
                message: format!(
                    "{} (known keys: {})",
                    e.message().trim_end(),
                    KEYS.join(", ")
                ),
            })?;
        if !(cfg.api_rate_scale > 0.0 && cfg.api_rate_scale <= 100.0) {
            return Err(ConfigError::Invalid {
                path: shown,
                message: "api_rate_scale must be more than 0 (1.0 = AWS's default quotas)".into(),
            });
        }
        if cfg.wait_time_secs > 20 {
            return Err(ConfigError::Invalid {
                path: shown,
                message: "wait_time_secs must be 0 to 20 (the SQS long-poll maximum)".into(),
            });
        }
        Ok(cfg)
    }

    /// Where the ledger is (`ledger`, with `ledger_password_file` or
    /// PGPASSWORD for a PostgreSQL password).
    pub fn ledger_location(&self) -> Result<crate::ledger::Location, crate::ledger::LedgerError> {
        crate::ledger::location::parse(&self.ledger, self.ledger_password_file.as_deref(), |k| {
            std::env::var(k).ok()
        })
    }

    /// The listener's address; `None` when `listen` is empty.
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let s = self.listen.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| ConfigError::Invalid {
            path: "listen".into(),
            message: format!(
                "listen = {s:?} is not an address: write HOST:PORT, e.g. 127.0.0.1:9464 (\"\" turns it off)"
            ),
        })
    }

    /// The in-flight limits every submission honours.
    pub fn in_flight_limits(&self) -> crate::ledger::InFlightLimits {
        crate::ledger::InFlightLimits {
            max_in_flight: self.max_in_flight,
            per_target: self.max_in_flight_per_target,
        }
    }

    pub fn dlq_name(&self) -> String {
        self.dlq_name
            .clone()
            .unwrap_or_else(|| format!("{}-dlq", self.queue_name))
    }

    pub fn default_target(&self) -> crate::domain::Target {
        crate::domain::Target {
            workgroup: self.workgroup.clone(),
            cluster: self.cluster.clone(),
            database: self.database.clone(),
            db_user: self.db_user.clone(),
            secret_arn: self.secret_arn.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redrelay.toml");
        std::fs::write(
            &path,
            "queue_name = \"q1\"\nledger = \"a.db\"\nmax_in_flight = 3\nworkgroup = \"wg\"\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(cfg.queue_name, "q1");
        assert_eq!(cfg.ledger, "a.db");
        assert_eq!(cfg.max_in_flight, 3);
        assert_eq!(cfg.dlq_name(), "q1-dlq");
        let cfg = Config::load(
            Some(&path),
            env(&[
                ("REDRELAY_LEDGER", "b.db"),
                ("REDRELAY_MAX_IN_FLIGHT", "7"),
                ("REDRELAY_ON_INVALID", "leave"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.ledger, "b.db");
        assert_eq!(cfg.max_in_flight, 7);
        assert_eq!(cfg.on_invalid, OnReject::Leave);
        assert_eq!(cfg.workgroup.as_deref(), Some("wg"));
    }

    #[test]
    fn every_key_is_known_and_overridable() {
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for k in defaults.keys() {
            assert!(KEYS.contains(&k.as_str()), "{k} missing from KEYS");
        }
        for k in KEYS {
            let var = format!("REDRELAY_{}", k.to_ascii_uppercase());
            let value = if NUMERIC_KEYS.contains(k) || *k == "api_rate_scale" {
                "5"
            } else if BOOL_KEYS.contains(k) {
                "true"
            } else if *k == "listen" {
                "127.0.0.1:0"
            } else {
                "ack"
            };
            Config::load(None, env(&[(&var, value)])).unwrap_or_else(|e| panic!("{var}: {e}"));
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "queue_nam = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("queue_nam"), "{err}");
        let err = Config::load(None, env(&[("REDRELAY_MAX_IN_FLIGHT", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("REDRELAY_MAX_IN_FLIGHT"), "{err}");
        let err = Config::load(None, env(&[("REDRELAY_ON_FOREIGN", "drop")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("on_foreign") || err.contains("drop"), "{err}");
        assert!(Config::load(Some(&dir.path().join("missing.toml")), env(&[])).is_err());
    }
}

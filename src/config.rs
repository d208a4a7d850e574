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
    /// The files results are written as, unless a job says otherwise:
    /// `csv` (the default), `jsonl` or `csv,jsonl`.
    pub result_formats: crate::domain::ResultFormats,
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
    /// The bearer token every call of the JSON API (/api/...) must carry
    /// (`Authorization: Bearer TOKEN`); a fleet of workers shares one.
    /// Without one (nor `api_token_file`), the worker makes a random token
    /// at start, keeps it in `api_token_path` and serves on a loopback
    /// `listen` address only.
    pub api_token: Option<Secret>,
    /// A file holding the API token (its first line), instead of
    /// `api_token`.
    pub api_token_file: Option<PathBuf>,
    /// Where the worker keeps the token it makes when none is configured
    /// (a file of mode 0600). Default: beside a SQLite ledger
    /// (`<ledger>.api-token`), or `redrelay.api-token` in the working
    /// directory for a PostgreSQL ledger. `redrelay console-url` reads it.
    pub api_token_path: Option<PathBuf>,
    /// A second token that may only read (GET): for dashboards. Anything
    /// that changes state answers 403 with it.
    pub api_read_token: Option<Secret>,
    /// A file holding the read-only token (its first line), instead of
    /// `api_read_token`.
    pub api_read_token_file: Option<PathBuf>,
    /// Host names (or `name:port`) the listener answers to besides its own
    /// address, `localhost`, `127.0.0.1` and `[::1]` on its port: the names
    /// a proxy or a DNS record gives it. A request whose `Host` (or, for a
    /// state change, `Origin`) is anything else gets 403, which is what
    /// keeps other web sites out (DNS rebinding).
    pub api_allowed_hosts: Vec<String>,
}

pub use crate::domain::{HostName, Secret};

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
            result_formats: crate::domain::ResultFormats::CSV,
            listen: "127.0.0.1:9464".into(),
            publish_events: false,
            publish_bus: "default".into(),
            publish_source: "redrelay".into(),
            api_token: None,
            api_token_file: None,
            api_token_path: None,
            api_read_token: None,
            api_read_token_file: None,
            api_allowed_hosts: Vec::new(),
        }
    }
}

/// How a key's value is written: what an error about it says is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any text (a name, a URL, a path).
    Text,
    /// A whole number, 0 or more.
    Count,
    /// A number with a fraction allowed.
    Number,
    /// One of a few words, as the error says them ("ack or leave").
    Choice(&'static str),
    /// true or false.
    Flag,
    /// HOST:PORT, or empty for none (so an empty variable counts).
    Address,
    /// A list of text; in a variable, comma-separated.
    List,
}

impl Kind {
    /// What an error says the value of `key` must be.
    fn expected(self, key: &str) -> String {
        match self {
            Kind::Text => format!("{key} must be text"),
            Kind::Count => format!("{key} must be a whole number 0 or more"),
            Kind::Number => format!("{key} must be a number"),
            Kind::Choice(words) => format!("{key} must be {words}"),
            Kind::Flag => format!("{key} must be true or false (or yes/no, 1/0)"),
            Kind::Address => format!(
                "{key} must be an address HOST:PORT, e.g. 127.0.0.1:9464 (\"\" turns it off)"
            ),
            Kind::List => {
                format!("{key} must be a list of text, e.g. [\"a\", \"b\"] (in a variable: a,b)")
            }
        }
    }

    /// The TOML value of an environment variable's text, or `None` when it
    /// cannot be one of this kind.
    fn parse_env(self, text: &str) -> Option<toml::Value> {
        match self {
            Kind::Text | Kind::Choice(_) | Kind::Address => {
                Some(toml::Value::String(text.to_string()))
            }
            Kind::Flag => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(toml::Value::Boolean(true)),
                "false" | "0" | "no" => Some(toml::Value::Boolean(false)),
                _ => None,
            },
            Kind::Count => text.trim().parse().ok().map(toml::Value::Integer),
            Kind::List => Some(toml::Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| toml::Value::String(t.to_string()))
                    .collect(),
            )),
            Kind::Number => text.trim().parse().ok().map(toml::Value::Float),
        }
    }
}

const ACK_OR_LEAVE: Kind = Kind::Choice("ack or leave");

/// Every key of the file, in the order of the struct, with how it is
/// written.
const KEYS: &[(&str, Kind)] = &[
    ("queue_url", Kind::Text),
    ("queue_name", Kind::Text),
    ("dlq_name", Kind::Text),
    ("max_receive_count", Kind::Count),
    ("visibility_timeout_secs", Kind::Count),
    ("wait_time_secs", Kind::Count),
    ("rule_name", Kind::Text),
    ("event_bus", Kind::Text),
    ("ledger", Kind::Text),
    ("ledger_password_file", Kind::Text),
    ("ledger_max_connections", Kind::Count),
    ("results_dir", Kind::Text),
    ("workgroup", Kind::Text),
    ("cluster", Kind::Text),
    ("database", Kind::Text),
    ("db_user", Kind::Text),
    ("secret_arn", Kind::Text),
    ("account", Kind::Text),
    ("region", Kind::Text),
    ("on_invalid", ACK_OR_LEAVE),
    ("on_foreign", ACK_OR_LEAVE),
    ("reconcile_after_secs", Kind::Count),
    ("max_in_flight", Kind::Count),
    ("max_in_flight_per_target", Kind::Count),
    ("api_rate_scale", Kind::Number),
    ("retention_days", Kind::Count),
    ("result_formats", Kind::Choice("csv, jsonl or csv,jsonl")),
    ("listen", Kind::Address),
    ("publish_events", Kind::Flag),
    ("publish_bus", Kind::Text),
    ("publish_source", Kind::Text),
    ("api_token", Kind::Text),
    ("api_token_file", Kind::Text),
    ("api_token_path", Kind::Text),
    ("api_read_token", Kind::Text),
    ("api_read_token_file", Kind::Text),
    ("api_allowed_hosts", Kind::List),
];

/// The environment variable of a key.
fn env_var(key: &str) -> String {
    format!("REDRELAY_{}", key.to_ascii_uppercase())
}

/// The known key closest to a misspelt one, when it is close (clap's
/// measure for its own suggestions, `strsim`, already in the build).
fn closest_key(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|(k, _)| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Whether `value` is a valid value of `key` alone (every other key
/// default): what makes an error name the key that is wrong.
fn valid_alone(key: &str, value: &toml::Value) -> bool {
    let mut one = toml::Table::new();
    one.insert(key.to_string(), value.clone());
    one.try_into::<Config>().is_ok()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Invalid { path: String, message: String },
    #[error("config file {path} has an unknown key {key:?}{hint}; the keys are: {known}")]
    UnknownKey {
        path: String,
        key: String,
        /// ` (did you mean "queue_name"?)` when one key is close.
        hint: String,
        known: String,
    },
    #[error("config file {path}: {key} = {value} is invalid: {expected}")]
    FileValue {
        path: String,
        key: String,
        value: String,
        expected: String,
    },
    #[error("{var}={value} is invalid: {expected}")]
    EnvValue {
        var: String,
        value: String,
        expected: String,
    },
}

impl Config {
    /// Loads `path` (or `./redrelay.toml` when it exists, or the defaults),
    /// then applies `REDRELAY_<KEY>` variables from `env`. An error names
    /// the key (and the file or the variable) whose value is wrong, and
    /// what it must be.
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
        for (key, value) in &table {
            let Some((_, kind)) = KEYS.iter().find(|(k, _)| k == key) else {
                return Err(ConfigError::UnknownKey {
                    path: shown,
                    key: key.clone(),
                    hint: closest_key(key)
                        .map(|k| format!(" (did you mean {k:?}?)"))
                        .unwrap_or_default(),
                    known: KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
                });
            };
            if !valid_alone(key, value) {
                return Err(ConfigError::FileValue {
                    path: shown,
                    key: key.clone(),
                    value: value.to_string(),
                    expected: kind.expected(key),
                });
            }
        }
        // The keys set from the environment, with the text of each.
        let mut from_env: Vec<(&str, String)> = Vec::new();
        for &(key, kind) in KEYS {
            let var = env_var(key);
            // An empty variable is unset, except for an address, where
            // it means none (REDRELAY_LISTEN= turns the listener off).
            let Some(text) = env(&var).filter(|v| !v.is_empty() || kind == Kind::Address) else {
                continue;
            };
            let value = kind.parse_env(&text).filter(|v| valid_alone(key, v));
            let Some(value) = value else {
                return Err(ConfigError::EnvValue {
                    var,
                    value: text,
                    expected: kind.expected(key),
                });
            };
            table.insert(key.to_string(), value);
            from_env.push((key, text));
        }
        let cfg: Config =
            table
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    path: shown.clone(),
                    message: e.message().trim_end().to_string(),
                })?;
        if let Err((key, expected)) = cfg.check_ranges() {
            return Err(match from_env.iter().find(|(k, _)| *k == key) {
                Some((_, text)) => ConfigError::EnvValue {
                    var: env_var(key),
                    value: text.clone(),
                    expected,
                },
                None => ConfigError::FileValue {
                    path: shown,
                    key: key.to_string(),
                    value: table.get(key).map(|v| v.to_string()).unwrap_or_default(),
                    expected,
                },
            });
        }
        Ok(cfg)
    }

    /// The limits a value of the right type can still break: the key and
    /// what it must be.
    fn check_ranges(&self) -> Result<(), (&'static str, String)> {
        if !(self.api_rate_scale > 0.0 && self.api_rate_scale <= 100.0) {
            return Err((
                "api_rate_scale",
                "api_rate_scale must be more than 0 and at most 100 (1.0 = AWS's default quotas)"
                    .into(),
            ));
        }
        if !self.listen.trim().is_empty() && self.listen_addr().is_err() {
            return Err(("listen", Kind::Address.expected("listen")));
        }
        if let Some(bad) = self
            .api_allowed_hosts
            .iter()
            .find(|h| HostName::parse(h).is_none())
        {
            return Err((
                "api_allowed_hosts",
                format!(
                    "api_allowed_hosts: {bad:?} is not a host name: write a name or name:port \
                     as a browser's address bar has it, without http:// or a path, e.g. \
                     \"redrelay.example.com\" or \"redrelay.example.com:8443\""
                ),
            ));
        }
        if self.wait_time_secs > 20 {
            return Err((
                "wait_time_secs",
                "wait_time_secs must be 0 to 20 (the SQS long-poll maximum)".into(),
            ));
        }
        Ok(())
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

    /// Where the worker keeps the token it made (`api_token_path`; else
    /// `<ledger>.api-token` beside a SQLite ledger, or `redrelay.api-token`
    /// in the working directory for a PostgreSQL ledger).
    pub fn api_token_path(&self) -> Result<PathBuf, crate::ledger::LedgerError> {
        if let Some(p) = &self.api_token_path {
            return Ok(p.clone());
        }
        Ok(match self.ledger_location()? {
            crate::ledger::Location::Sqlite(p) => {
                let mut name = p.into_os_string();
                name.push(".api-token");
                PathBuf::from(name)
            }
            crate::ledger::Location::Postgres { .. } => PathBuf::from("redrelay.api-token"),
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
            assert!(
                KEYS.iter().any(|(key, _)| key == k),
                "{k} missing from KEYS"
            );
        }
        for &(k, kind) in KEYS {
            let var = env_var(k);
            let value = match kind {
                Kind::Count | Kind::Number => "5",
                Kind::Text => "ack",
                // The first word the choice names.
                Kind::Choice(words) => words
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .next()
                    .unwrap(),
                Kind::Flag => "true",
                Kind::Address => "127.0.0.1:0",
                Kind::List => "a.example, b.example:8443",
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

    /// A bad environment value names its variable, the value and what is
    /// expected (it used to say "config file (environment) is invalid").
    #[test]
    fn a_bad_environment_value_names_its_variable() {
        let said = |var: &str, value: &str| {
            Config::load(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            said("REDRELAY_MAX_IN_FLIGHT", "-3"),
            "REDRELAY_MAX_IN_FLIGHT=-3 is invalid: max_in_flight must be a whole number 0 or more"
        );
        assert_eq!(
            said("REDRELAY_RETENTION_DAYS", "soon"),
            "REDRELAY_RETENTION_DAYS=soon is invalid: retention_days must be a whole number 0 or more"
        );
        assert_eq!(
            said("REDRELAY_ON_FOREIGN", "drop"),
            "REDRELAY_ON_FOREIGN=drop is invalid: on_foreign must be ack or leave"
        );
        assert_eq!(
            said("REDRELAY_WAIT_TIME_SECS", "30"),
            "REDRELAY_WAIT_TIME_SECS=30 is invalid: wait_time_secs must be 0 to 20 \
             (the SQS long-poll maximum)"
        );
        assert_eq!(
            said("REDRELAY_PUBLISH_EVENTS", "maybe"),
            "REDRELAY_PUBLISH_EVENTS=maybe is invalid: publish_events must be true or false (or yes/no, 1/0)"
        );
        assert!(
            said("REDRELAY_LISTEN", "nowhere")
                .starts_with("REDRELAY_LISTEN=nowhere is invalid: listen must be an address"),
            "{}",
            said("REDRELAY_LISTEN", "nowhere")
        );
        assert!(said("REDRELAY_API_RATE_SCALE", "0").starts_with(
            "REDRELAY_API_RATE_SCALE=0 is invalid: api_rate_scale must be more than 0"
        ));
    }

    /// An empty REDRELAY_LISTEN turns the listener off; other empty
    /// variables leave the key as it was.
    #[test]
    fn an_empty_listen_variable_turns_the_listener_off() {
        let cfg = Config::load(
            None,
            env(&[("REDRELAY_LISTEN", ""), ("REDRELAY_QUEUE_NAME", "")]),
        )
        .unwrap();
        assert_eq!(cfg.listen_addr().unwrap(), None);
        assert_eq!(cfg.queue_name, "redrelay-events");
        for (text, on) in [("true", true), ("YES", true), ("1", true), ("no", false)] {
            let cfg = Config::load(None, env(&[("REDRELAY_PUBLISH_EVENTS", text)])).unwrap();
            assert_eq!(cfg.publish_events, on, "{text}");
        }
    }

    /// A bad value in the file names the file, the key and what is expected.
    #[test]
    fn a_bad_file_value_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "max_in_flight = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "config file {}: max_in_flight = \"x\" is invalid: \
                 max_in_flight must be a whole number 0 or more",
                path.display()
            )
        );
        std::fs::write(&path, "wait_time_secs = 21\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("wait_time_secs = 21 is invalid: wait_time_secs must be 0 to 20"),
            "{err}"
        );
    }

    /// api_allowed_hosts from a variable is a comma-separated list; a URL
    /// in it is refused with what to write instead.
    #[test]
    fn allowed_hosts_are_a_list_of_names() {
        let cfg = Config::load(
            None,
            env(&[("REDRELAY_API_ALLOWED_HOSTS", "a.example, B.example:8443")]),
        )
        .unwrap();
        assert_eq!(cfg.api_allowed_hosts, ["a.example", "B.example:8443"]);
        let err = Config::load(
            None,
            env(&[("REDRELAY_API_ALLOWED_HOSTS", "https://a.example/")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("without http://"), "{err}");
    }

    #[test]
    fn the_token_file_is_beside_a_sqlite_ledger() {
        let cfg = Config::load(None, env(&[("REDRELAY_LEDGER", "/var/lib/rr/l.db")])).unwrap();
        assert_eq!(
            cfg.api_token_path().unwrap(),
            PathBuf::from("/var/lib/rr/l.db.api-token")
        );
        let cfg =
            Config::load(None, env(&[("REDRELAY_LEDGER", "postgres://u@h:5432/db")])).unwrap();
        assert_eq!(
            cfg.api_token_path().unwrap(),
            PathBuf::from("redrelay.api-token")
        );
        let cfg = Config::load(None, env(&[("REDRELAY_API_TOKEN_PATH", "/run/t")])).unwrap();
        assert_eq!(cfg.api_token_path().unwrap(), PathBuf::from("/run/t"));
    }

    /// The unknown-key error lists the keys once (serde's own list used to
    /// come first, then ours).
    #[test]
    fn the_unknown_key_error_lists_the_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "queue_nam = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("unknown key \"queue_nam\" (did you mean \"queue_name\"?); the keys are: queue_url, "),
            "{err}"
        );
        std::fs::write(&path, "zzz = 1\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown key \"zzz\"; the keys are"), "{err}");
        assert_eq!(err.matches("queue_url").count(), 1, "{err}");
        assert_eq!(err.matches("retention_days").count(), 1, "{err}");
    }
}

//! Fault injection: seeded, reproducible decisions to drop, duplicate,
//! delay and reorder completion events, to fail, abort or hold statements,
//! and to throttle the API. Configured by flags and/or a TOML file; every
//! injected fault is counted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The whole fault configuration (the `--faults` TOML file has this shape).
///
/// ```toml
/// seed = 7
/// [events]
/// drop_prob = 0.1
/// duplicate_prob = 0.1
/// delay_prob = 0.2
/// delay_ms = 500
/// reorder_prob = 0.1
/// reorder_window_ms = 1000
/// [statements]
/// fail_prob = 0.05
/// abort_prob = 0.0
/// [[statements.rules]]
/// pattern = "load_sales"   # substring of the SQL or of the StatementName
/// action = "fail"          # fail | abort | hold | commit
/// first_attempts = 2       # only the first 2 attempts per statement name
/// message = "disk full"
/// [[statements.rules]]
/// pattern = "slow_"
/// action = "hold"
/// hold_ms = 3000
/// [api]
/// throttle_prob = 0.05
/// active_exceeded_prob = 0.0
/// max_active = 10
/// latency_ms = 20             # every API call answers after 20 ms ...
/// latency_jitter_ms = 10      # ... plus a uniform 0..=10 ms
/// [api.latency]               # per operation, instead of latency_ms
/// ExecuteStatement = 150
/// ```
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Seed of every random decision (0 when unset).
    pub seed: Option<u64>,
    /// Faults on completion events.
    pub events: EventFaults,
    /// Faults on statement execution.
    pub statements: StatementFaults,
    /// Faults on API calls.
    pub api: ApiFaults,
}

/// Faults on the status change events sent to EventBridge.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventFaults {
    /// Probability that an event is never sent.
    pub drop_prob: f64,
    /// Probability that an event is sent twice.
    pub duplicate_prob: f64,
    /// Probability that an event is delayed.
    pub delay_prob: f64,
    /// A delayed event waits a uniform random time in 0..=delay_ms.
    pub delay_ms: u64,
    /// Probability that an event is held back and sent after the next one.
    pub reorder_prob: f64,
    /// A held-back event is sent anyway after this long without a next
    /// event (1000 when 0).
    pub reorder_window_ms: u64,
}

/// Faults on statement execution.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatementFaults {
    /// Probability that a statement fails (nothing is committed).
    pub fail_prob: f64,
    /// Probability that a statement is aborted (nothing is committed).
    pub abort_prob: f64,
    /// Rules matched by substring, in order.
    pub rules: Vec<StatementRule>,
}

/// What a matching rule does to a statement.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// The statement fails with an error, nothing committed.
    Fail,
    /// The statement is aborted, nothing committed.
    Abort,
    /// The statement stays STARTED for `hold_ms` before it runs.
    Hold,
    /// Like `hold`, but the statement is committing: CancelStatement
    /// answers `Status: false` (it could not be cancelled) and the
    /// statement runs to its end.
    Commit,
}

/// One statement fault rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatementRule {
    /// Substring of the SQL (any SQL of a batch) or of the StatementName;
    /// empty matches every statement.
    pub pattern: String,
    /// What to do.
    pub action: RuleAction,
    /// Apply only to the first N attempts of each statement name (each SQL
    /// text when unnamed); every attempt when unset.
    #[serde(default)]
    pub first_attempts: Option<u32>,
    /// How long a `hold` keeps the statement STARTED.
    #[serde(default)]
    pub hold_ms: u64,
    /// Error text of a `fail`.
    #[serde(default)]
    pub message: Option<String>,
}

/// Faults on API calls.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiFaults {
    /// Probability that ExecuteStatement / BatchExecuteStatement answers
    /// ThrottlingException.
    pub throttle_prob: f64,
    /// Probability that ExecuteStatement / BatchExecuteStatement answers
    /// ActiveStatementsExceededException.
    pub active_exceeded_prob: f64,
    /// At most this many statements SUBMITTED or STARTED at once; beyond,
    /// ActiveStatementsExceededException.
    pub max_active: Option<usize>,
    /// Every API call answers after this many milliseconds (an operation
    /// named in `latency` takes its own value instead).
    pub latency_ms: u64,
    /// Plus a uniform random 0..=latency_jitter_ms (seeded).
    pub latency_jitter_ms: u64,
    /// Latency per operation name (`ExecuteStatement = 150`).
    pub latency: BTreeMap<String, u64>,
}

impl FaultConfig {
    /// Reads a TOML fault file.
    pub fn from_file(path: &Path) -> anyhow::Result<FaultConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read fault file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid fault file {}: {e}", path.display()))
    }

    /// Checks probabilities and rules.
    pub fn validate(&self) -> anyhow::Result<()> {
        let probs = [
            ("events.drop_prob", self.events.drop_prob),
            ("events.duplicate_prob", self.events.duplicate_prob),
            ("events.delay_prob", self.events.delay_prob),
            ("events.reorder_prob", self.events.reorder_prob),
            ("statements.fail_prob", self.statements.fail_prob),
            ("statements.abort_prob", self.statements.abort_prob),
            ("api.throttle_prob", self.api.throttle_prob),
            ("api.active_exceeded_prob", self.api.active_exceeded_prob),
        ];
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                anyhow::bail!("{name} must be between 0 and 1, got {p}");
            }
        }
        for rule in &self.statements.rules {
            if matches!(rule.action, RuleAction::Hold | RuleAction::Commit) && rule.hold_ms == 0 {
                anyhow::bail!("hold rule for {:?} needs hold_ms > 0", rule.pattern);
            }
        }
        for op in self.api.latency.keys() {
            if !KNOWN_OPERATIONS.contains(&op.as_str()) {
                anyhow::bail!(
                    "api.latency names {op:?}, not an operation of the Data API (one of {})",
                    KNOWN_OPERATIONS.join(", ")
                );
            }
        }
        if self.api.max_active == Some(0) {
            anyhow::bail!("max_active must be at least 1");
        }
        Ok(())
    }

    /// True when nothing is injected.
    pub fn is_empty(&self) -> bool {
        let d = FaultConfig {
            seed: self.seed,
            ..FaultConfig::default()
        };
        *self == d
    }
}

/// The Data API's operations (for checking per-operation settings).
pub const KNOWN_OPERATIONS: &[&str] = &[
    "BatchExecuteStatement",
    "CancelStatement",
    "DescribeStatement",
    "DescribeTable",
    "ExecuteStatement",
    "GetStatementResult",
    "GetStatementResultV2",
    "ListDatabases",
    "ListSchemas",
    "ListSessions",
    "ListStatements",
    "ListTables",
];

/// Parses `--api-latency-ms`: `MS` (every operation) or `Operation=MS`.
pub fn parse_latency(s: &str) -> Result<(Option<String>, u64), String> {
    let (op, ms) = match s.split_once('=') {
        Some((op, ms)) => (Some(op.trim().to_string()), ms),
        None => (None, s),
    };
    if let Some(op) = &op {
        if !KNOWN_OPERATIONS.contains(&op.as_str()) {
            return Err(format!(
                "{op:?} is not an operation of the Data API (one of {})",
                KNOWN_OPERATIONS.join(", ")
            ));
        }
    }
    let ms = ms
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("bad milliseconds in {s:?}: {e}"))?;
    Ok((op, ms))
}

/// Parses `N:PATTERN` (the pattern may itself contain `:`).
pub fn parse_count_pattern(s: &str) -> Result<(u64, String), String> {
    let (n, pattern) = s
        .split_once(':')
        .ok_or_else(|| format!("expected N:PATTERN, got {s:?}"))?;
    let n = n
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("bad number in {s:?}: {e}"))?;
    Ok((n, pattern.to_string()))
}

/// What the faults decided for one statement attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct StatementPlan {
    /// Fail with this error before anything runs.
    pub fail: Option<String>,
    /// Abort before anything commits.
    pub abort: bool,
    /// Stay STARTED this long before running.
    pub hold_ms: u64,
    /// CancelStatement cannot stop it (`Status: false`).
    pub uncancellable: bool,
}

impl StatementPlan {
    pub(crate) fn is_empty(&self) -> bool {
        *self == StatementPlan::default()
    }
}

/// What the faults decided for one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EventPlan {
    pub drop: bool,
    pub duplicate: bool,
    pub delay_ms: Option<u64>,
    pub reorder: bool,
}

/// An API fault to answer instead of running the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiFault {
    Throttle,
    ActiveExceeded,
}

/// Counts of injected faults, for logs and the record file.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub events_sent: AtomicU64,
    pub events_send_failed: AtomicU64,
    /// PutEvents calls made (retries included): fewer than events sent
    /// when they went in batches.
    pub put_events_calls: AtomicU64,
    pub events_dropped: AtomicU64,
    pub events_duplicated: AtomicU64,
    pub events_delayed: AtomicU64,
    pub events_reordered: AtomicU64,
    pub statements_failed: AtomicU64,
    pub statements_aborted: AtomicU64,
    pub statements_held: AtomicU64,
    pub api_throttled: AtomicU64,
    pub api_active_exceeded: AtomicU64,
    pub api_max_active_rejected: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "events_sent": g(&self.events_sent),
            "events_send_failed": g(&self.events_send_failed),
            "put_events_calls": g(&self.put_events_calls),
            "events_dropped": g(&self.events_dropped),
            "events_duplicated": g(&self.events_duplicated),
            "events_delayed": g(&self.events_delayed),
            "events_reordered": g(&self.events_reordered),
            "statements_failed": g(&self.statements_failed),
            "statements_aborted": g(&self.statements_aborted),
            "statements_held": g(&self.statements_held),
            "api_throttled": g(&self.api_throttled),
            "api_active_exceeded": g(&self.api_active_exceeded),
            "api_max_active_rejected": g(&self.api_max_active_rejected),
        })
    }
}

/// The decision maker: one seeded random stream per kind of decision, so
/// that, for the same sequence of calls of one kind, the same faults happen.
pub(crate) struct Faults {
    pub config: FaultConfig,
    pub counters: Counters,
    statement_rng: Mutex<StdRng>,
    event_rng: Mutex<StdRng>,
    api_rng: Mutex<StdRng>,
    latency_rng: Mutex<StdRng>,
    /// Attempts seen per (rule index, statement key).
    attempts: Mutex<HashMap<(usize, String), u64>>,
}

impl Faults {
    pub(crate) fn new(config: FaultConfig) -> Faults {
        let seed = config.seed.unwrap_or(0);
        Faults {
            config,
            counters: Counters::default(),
            statement_rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5354_4d54)),
            event_rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x4556_4e54)),
            api_rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x0041_5049)),
            latency_rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x004c_4154)),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Decides the faults of one statement attempt (not called for
    /// idempotent replays).
    pub(crate) fn plan_statement(&self, name: Option<&str>, sqls: &[String]) -> StatementPlan {
        let cfg = &self.config.statements;
        let mut plan = StatementPlan::default();
        let key = name
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| sqls.join("\n"));
        for (i, rule) in cfg.rules.iter().enumerate() {
            let matches = rule.pattern.is_empty()
                || sqls.iter().any(|s| s.contains(&rule.pattern))
                || name.is_some_and(|n| n.contains(&rule.pattern));
            if !matches {
                continue;
            }
            if let Some(first) = rule.first_attempts {
                let mut attempts = lock(&self.attempts);
                let seen = attempts.entry((i, key.clone())).or_insert(0);
                *seen += 1;
                if *seen > u64::from(first) {
                    continue;
                }
            }
            match rule.action {
                RuleAction::Fail => {
                    if plan.fail.is_none() && !plan.abort {
                        plan.fail = Some(rule.message.clone().unwrap_or_else(|| {
                            format!("ERROR: injected failure (rule {:?})", rule.pattern)
                        }));
                    }
                }
                RuleAction::Abort => {
                    if plan.fail.is_none() {
                        plan.abort = true;
                    }
                }
                RuleAction::Hold => plan.hold_ms = plan.hold_ms.max(rule.hold_ms),
                RuleAction::Commit => {
                    plan.hold_ms = plan.hold_ms.max(rule.hold_ms);
                    plan.uncancellable = true;
                }
            }
        }
        if cfg.fail_prob > 0.0 || cfg.abort_prob > 0.0 {
            let mut rng = lock(&self.statement_rng);
            let fail = rng.random_bool(cfg.fail_prob);
            let abort = rng.random_bool(cfg.abort_prob);
            if plan.fail.is_none() && !plan.abort {
                if fail {
                    plan.fail = Some("ERROR: injected random failure".to_string());
                } else if abort {
                    plan.abort = true;
                }
            }
        }
        plan
    }

    /// Decides the faults of one event.
    pub(crate) fn plan_event(&self) -> EventPlan {
        let cfg = &self.config.events;
        if cfg.drop_prob == 0.0
            && cfg.duplicate_prob == 0.0
            && cfg.delay_prob == 0.0
            && cfg.reorder_prob == 0.0
        {
            return EventPlan::default();
        }
        let mut rng = lock(&self.event_rng);
        // Always draw the same number of values, so that one decision does
        // not shift the others.
        let drop = rng.random_bool(cfg.drop_prob);
        let duplicate = rng.random_bool(cfg.duplicate_prob);
        let delay = rng.random_bool(cfg.delay_prob);
        let delay_ms = rng.random_range(0..=cfg.delay_ms);
        let reorder = rng.random_bool(cfg.reorder_prob);
        EventPlan {
            drop,
            duplicate: !drop && duplicate,
            delay_ms: (!drop && delay).then_some(delay_ms),
            reorder: !drop && !delay && reorder,
        }
    }

    /// How long a held-back (reordered) event waits at most.
    pub(crate) fn reorder_window_ms(&self) -> u64 {
        match self.config.events.reorder_window_ms {
            0 => 1000,
            ms => ms,
        }
    }

    /// How long a call of `operation` waits before it is answered.
    pub(crate) fn api_latency(&self, operation: &str) -> std::time::Duration {
        let cfg = &self.config.api;
        let base = cfg
            .latency
            .get(operation)
            .copied()
            .unwrap_or(cfg.latency_ms);
        let jitter = if cfg.latency_jitter_ms > 0 {
            lock(&self.latency_rng).random_range(0..=cfg.latency_jitter_ms)
        } else {
            0
        };
        std::time::Duration::from_millis(base.saturating_add(jitter))
    }

    /// Decides whether an Execute/BatchExecute call is refused at random
    /// (ThrottlingException or ActiveStatementsExceededException).
    pub(crate) fn plan_api_random(&self) -> Option<(ApiFault, String)> {
        let cfg = &self.config.api;
        if cfg.throttle_prob == 0.0 && cfg.active_exceeded_prob == 0.0 {
            return None;
        }
        let mut rng = lock(&self.api_rng);
        let throttle = rng.random_bool(cfg.throttle_prob);
        let exceeded = rng.random_bool(cfg.active_exceeded_prob);
        if throttle {
            Counters::bump(&self.counters.api_throttled);
            Some((ApiFault::Throttle, "Rate exceeded".to_string()))
        } else if exceeded {
            Counters::bump(&self.counters.api_active_exceeded);
            Some((
                ApiFault::ActiveExceeded,
                "Active statements exceeded the allowed quota.".to_string(),
            ))
        } else {
            None
        }
    }
}

/// Locks a mutex, recovering the data if a holder panicked (the data here
/// stays consistent across a panic: counters and random generators).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, action: RuleAction) -> StatementRule {
        StatementRule {
            pattern: pattern.into(),
            action,
            first_attempts: None,
            hold_ms: 0,
            message: None,
        }
    }

    #[test]
    fn parses_the_documented_toml() {
        let text = r#"
seed = 7
[events]
drop_prob = 0.1
delay_ms = 500
[[statements.rules]]
pattern = "load_sales"
action = "fail"
first_attempts = 2
[[statements.rules]]
pattern = "slow_"
action = "hold"
hold_ms = 3000
[api]
max_active = 10
latency_ms = 20
latency_jitter_ms = 5
[api.latency]
ExecuteStatement = 150
"#;
        let cfg: FaultConfig = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.seed, Some(7));
        assert_eq!(cfg.statements.rules.len(), 2);
        assert_eq!(cfg.api.max_active, Some(10));
        let faults = Faults::new(cfg.clone());
        for _ in 0..20 {
            let ms = faults.api_latency("ExecuteStatement").as_millis();
            assert!((150..=155).contains(&ms), "{ms}");
            let ms = faults.api_latency("ListTables").as_millis();
            assert!((20..=25).contains(&ms), "{ms}");
        }
        let typo: FaultConfig = toml::from_str("[api.latency]\nExecuteStatment = 1").unwrap();
        assert!(typo.validate().is_err());
        assert!(toml::from_str::<FaultConfig>("bogus = 1").is_err());
        let bad: FaultConfig = toml::from_str("[events]\ndrop_prob = 2.0").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn first_attempts_count_per_statement_name() {
        let mut cfg = FaultConfig::default();
        let mut r = rule("load", RuleAction::Fail);
        r.first_attempts = Some(2);
        cfg.statements.rules.push(r);
        let f = Faults::new(cfg);
        let sql = vec!["insert into t select 1".to_string()];
        assert!(f.plan_statement(Some("load_a"), &sql).fail.is_some());
        assert!(f.plan_statement(Some("load_b"), &sql).fail.is_some());
        assert!(f.plan_statement(Some("load_a"), &sql).fail.is_some());
        assert!(f.plan_statement(Some("load_a"), &sql).fail.is_none());
        assert!(f.plan_statement(Some("other"), &sql).fail.is_none());
    }

    #[test]
    fn hold_and_abort_rules_match_sql() {
        let mut cfg = FaultConfig::default();
        let mut hold = rule("pg_sleep", RuleAction::Hold);
        hold.hold_ms = 50;
        cfg.statements.rules.push(hold);
        cfg.statements
            .rules
            .push(rule("drop table", RuleAction::Abort));
        let f = Faults::new(cfg);
        let p = f.plan_statement(None, &["select pg_sleep".to_string()]);
        assert_eq!(p.hold_ms, 50);
        assert!(!p.abort);
        let p = f.plan_statement(None, &["x".into(), "drop table t".into()]);
        assert!(p.abort);
    }

    #[test]
    fn random_decisions_are_reproducible() {
        let mut cfg = FaultConfig {
            seed: Some(42),
            ..FaultConfig::default()
        };
        cfg.events.drop_prob = 0.3;
        cfg.events.duplicate_prob = 0.3;
        cfg.events.reorder_prob = 0.3;
        let a = Faults::new(cfg.clone());
        let b = Faults::new(cfg);
        let pa: Vec<EventPlan> = (0..50).map(|_| a.plan_event()).collect();
        let pb: Vec<EventPlan> = (0..50).map(|_| b.plan_event()).collect();
        assert_eq!(pa, pb);
        assert!(pa.iter().any(|p| p.drop));
        assert!(pa.iter().any(|p| !p.drop));
    }

    #[test]
    fn random_api_faults() {
        let mut cfg = FaultConfig::default();
        assert!(Faults::new(cfg.clone()).plan_api_random().is_none());
        cfg.api.throttle_prob = 1.0;
        let f = Faults::new(cfg);
        assert_eq!(f.plan_api_random().map(|x| x.0), Some(ApiFault::Throttle));
    }

    #[test]
    fn latency_flags() {
        assert_eq!(parse_latency("150"), Ok((None, 150)));
        assert_eq!(
            parse_latency("ExecuteStatement=40"),
            Ok((Some("ExecuteStatement".to_string()), 40))
        );
        assert!(parse_latency("Nope=3").is_err());
        assert!(parse_latency("ExecuteStatement=x").is_err());
    }

    #[test]
    fn count_pattern() {
        assert_eq!(parse_count_pattern("2:a:b"), Ok((2, "a:b".to_string())));
        assert!(parse_count_pattern("x:a").is_err());
        assert!(parse_count_pattern("nocolon").is_err());
    }
}

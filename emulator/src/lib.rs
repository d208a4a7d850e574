//! Local Redshift Data API emulator (the `redrelay-emulator` binary, and
//! `redrelay emulator` in a redrelay built with its default `emulator`
//! feature).
//!
//! Speaks the Data API's wire protocol (awsJson1_1) so that the official
//! SDKs and the aws CLI work against it unchanged; runs the SQL for real on
//! a SQLite file or a PostgreSQL database that plays the warehouse; keeps
//! statements and their
//! results in memory; and, for `WithEvent`, publishes the "Redshift Data
//! Statement Status Change" event to EventBridge (moto locally). It can
//! inject faults, seeded and reproducible: see [`faults::FaultConfig`].
//!
//! It imports nothing of redrelay's daemon: what both must agree on (the
//! event's source, detail-type and detail, the batch limit, the `:name`
//! parameter syntax) comes from the `redrelay-wire` crate.
//!
//! Modules: `wire` (HTTP and JSON shapes), `engine` (statements, sessions,
//! execution, results: one file per concern), `warehouse` (SQLite or
//! PostgreSQL connections), `redshift` (Redshift SQL rewritten for the
//! warehouse with sqlparser-rs), `metadata` (the catalog operations),
//! `s3io` (COPY and UNLOAD on S3), `sql` (value typing), `events` (the
//! EventBridge publisher: faults applied, then batched PutEvents), `faults`
//! (fault decisions and counters), `record` (the JSON Lines record of what
//! ran).

mod engine;
mod events;
pub mod faults;
mod metadata;
mod record;
mod redshift;
mod s3io;
mod sql;
mod warehouse;
mod wire;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use engine::{system_clock, Engine, EngineConfig, Outside};
use faults::{FaultConfig, Faults, RuleAction, StatementRule};
use record::Recorder;

/// How long shutdown waits for running statements, then for events.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `redrelay emulator`: a local Redshift Data API.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback). Port 0 picks a free port; the bound address is printed on stdout as `listening on 127.0.0.1:PORT`.
    #[arg(long, default_value = "127.0.0.1:9300")]
    pub listen: SocketAddr,
    /// The warehouse the SQL runs on: a SQLite file (created if missing),
    /// or a PostgreSQL database as `postgres://user:password@host:port/db`.
    #[arg(long)]
    pub warehouse: PathBuf,
    /// Rows per GetStatementResult page.
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
    /// Account id used in ARNs and events.
    #[arg(long, default_value = "123456789012")]
    pub account: String,
    /// How long an ended statement and its results are kept, in seconds
    /// (AWS: 24 h). Past it the statement is forgotten: DescribeStatement
    /// answers ResourceNotFoundException, ListStatements omits it,
    /// GetStatementResult answers ValidationException (expired); the
    /// event's expireAt is the end time plus this. Closed sessions are
    /// forgotten after the same time.
    #[arg(long, default_value_t = 86_400)]
    pub result_ttl_secs: u64,
    /// How long a ClientToken is remembered, in seconds (AWS: 8 h): within
    /// it, the same token returns the same statement id and runs nothing.
    #[arg(long, default_value_t = 28_800)]
    pub client_token_ttl_secs: u64,
    /// Append the emulator's own record here as JSON Lines, flushed line by
    /// line: one `statement` line per ended statement (id, client_token,
    /// statement_name, sqls, state, created_ms, started_ms, ended_ms, ...),
    /// `replay`, `rejected` and `event` lines, and `counters` at shutdown.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Fault injection and latency (boxed: they are many).
    #[command(flatten)]
    pub faults: Box<FaultFlags>,
    /// At most N calls with WaitTimeSeconds wait on one statement; beyond
    /// it they answer ActiveWaitingRequestsExceededException.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_waiting_requests: usize,
}

/// Fault injection and latency flags; they override the --faults file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FaultFlags {
    /// TOML file of faults to inject (keys: seed, [events], [statements]
    /// with [[statements.rules]], [api]; see the module docs). The flags
    /// below override its values and add to its rules.
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// Seed of every random fault decision (default 0): the same seed and
    /// the same sequence of calls inject the same faults.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Probability (0..1) that a completion event is never sent.
    #[arg(long, value_name = "P")]
    pub event_drop_prob: Option<f64>,
    /// Probability (0..1) that a completion event is sent twice.
    #[arg(long, value_name = "P")]
    pub event_duplicate_prob: Option<f64>,
    /// Probability (0..1) that a completion event is delayed by a uniform
    /// random time up to --event-delay-ms (delayed events overtake others).
    #[arg(long, value_name = "P")]
    pub event_delay_prob: Option<f64>,
    /// Longest delay of a delayed event, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub event_delay_ms: Option<u64>,
    /// Probability (0..1) that a completion event is held back and sent
    /// right after the next event (or after --event-reorder-window-ms).
    #[arg(long, value_name = "P")]
    pub event_reorder_prob: Option<f64>,
    /// Longest time a held-back event waits for a next event, in
    /// milliseconds (default 1000).
    #[arg(long, value_name = "MS")]
    pub event_reorder_window_ms: Option<u64>,
    /// Fail every statement whose SQL (any SQL of a batch) or
    /// StatementName contains PATTERN; nothing is committed. Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub fail_sql: Vec<String>,
    /// Abort every statement whose SQL or StatementName contains PATTERN;
    /// nothing is committed. Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub abort_sql: Vec<String>,
    /// Fail the first N attempts of each statement name (each SQL text
    /// when unnamed) whose SQL or StatementName contains PATTERN, as
    /// `N:PATTERN`. Repeatable.
    #[arg(long, value_name = "N:PATTERN", value_parser = parse_count_pattern)]
    pub fail_first: Vec<(u64, String)>,
    /// Keep statements whose SQL or StatementName contains PATTERN STARTED
    /// for MS milliseconds before they run, as `MS:PATTERN` (an empty
    /// pattern matches all). CancelStatement ends the hold. Repeatable.
    #[arg(long, value_name = "MS:PATTERN", value_parser = parse_count_pattern)]
    pub hold: Vec<(u64, String)>,
    /// Like --hold, but the statement is committing: CancelStatement
    /// answers `Status: false` and it runs to its end, as `MS:PATTERN`.
    /// Repeatable.
    #[arg(long, value_name = "MS:PATTERN", value_parser = parse_count_pattern)]
    pub commit_hold: Vec<(u64, String)>,
    /// Probability (0..1) that a statement fails.
    #[arg(long, value_name = "P")]
    pub fail_prob: Option<f64>,
    /// Probability (0..1) that a statement is aborted.
    #[arg(long, value_name = "P")]
    pub abort_prob: Option<f64>,
    /// Probability (0..1) that ExecuteStatement / BatchExecuteStatement
    /// answers ThrottlingException (HTTP 400).
    #[arg(long, value_name = "P")]
    pub throttle_prob: Option<f64>,
    /// Probability (0..1) that ExecuteStatement / BatchExecuteStatement
    /// answers ActiveStatementsExceededException.
    #[arg(long, value_name = "P")]
    pub active_exceeded_prob: Option<f64>,
    /// At most N statements SUBMITTED or STARTED at once; beyond it,
    /// ExecuteStatement / BatchExecuteStatement answer
    /// ActiveStatementsExceededException (AWS: 500 per cluster).
    #[arg(long, value_name = "N")]
    pub max_active: Option<usize>,
    /// Answer every API call after MS milliseconds, or only calls of one
    /// operation as `Operation=MS` (e.g. `ExecuteStatement=150`).
    /// Repeatable; also `[api] latency_ms` / `[api.latency]` in --faults.
    #[arg(long, value_name = "MS|OPERATION=MS", value_parser = parse_latency)]
    pub api_latency_ms: Vec<(Option<String>, u64)>,
    /// Add a uniform random 0..=MS milliseconds (seeded) to every call's
    /// latency.
    #[arg(long, value_name = "MS")]
    pub api_latency_jitter_ms: Option<u64>,
}

fn parse_latency(s: &str) -> Result<(Option<String>, u64), String> {
    faults::parse_latency(s)
}

fn parse_count_pattern(s: &str) -> Result<(u64, String), String> {
    faults::parse_count_pattern(s)
}

impl EmulatorArgs {
    /// Arguments with defaults for the given warehouse file (for tests and
    /// embedding).
    pub fn new(warehouse: PathBuf) -> EmulatorArgs {
        EmulatorArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            warehouse,
            page_size: 1000,
            account: "123456789012".to_string(),
            result_ttl_secs: 86_400,
            client_token_ttl_secs: 28_800,
            record: None,
            faults: Box::default(),
            max_waiting_requests: 10,
        }
    }

    /// The fault configuration: the --faults file, overridden and extended
    /// by the flags.
    pub fn fault_config(&self) -> anyhow::Result<FaultConfig> {
        let f = &self.faults;
        let mut cfg = match &f.faults {
            Some(path) => FaultConfig::from_file(path)?,
            None => FaultConfig::default(),
        };
        if f.seed.is_some() {
            cfg.seed = f.seed;
        }
        let set = |dst: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut cfg.events.drop_prob, f.event_drop_prob);
        set(&mut cfg.events.duplicate_prob, f.event_duplicate_prob);
        set(&mut cfg.events.delay_prob, f.event_delay_prob);
        set(&mut cfg.events.reorder_prob, f.event_reorder_prob);
        set(&mut cfg.statements.fail_prob, f.fail_prob);
        set(&mut cfg.statements.abort_prob, f.abort_prob);
        set(&mut cfg.api.throttle_prob, f.throttle_prob);
        set(&mut cfg.api.active_exceeded_prob, f.active_exceeded_prob);
        if let Some(ms) = f.event_delay_ms {
            cfg.events.delay_ms = ms;
        }
        if let Some(ms) = f.event_reorder_window_ms {
            cfg.events.reorder_window_ms = ms;
        }
        if f.max_active.is_some() {
            cfg.api.max_active = f.max_active;
        }
        for (op, ms) in &f.api_latency_ms {
            match op {
                Some(op) => {
                    cfg.api.latency.insert(op.clone(), *ms);
                }
                None => cfg.api.latency_ms = *ms,
            }
        }
        if let Some(ms) = f.api_latency_jitter_ms {
            cfg.api.latency_jitter_ms = ms;
        }
        let rule = |pattern: &str, action| StatementRule {
            pattern: pattern.to_string(),
            action,
            first_attempts: None,
            hold_ms: 0,
            message: None,
        };
        for p in &f.fail_sql {
            cfg.statements.rules.push(rule(p, RuleAction::Fail));
        }
        for p in &f.abort_sql {
            cfg.statements.rules.push(rule(p, RuleAction::Abort));
        }
        for (n, p) in &f.fail_first {
            let mut r = rule(p, RuleAction::Fail);
            r.first_attempts = Some(u32::try_from(*n).unwrap_or(u32::MAX));
            cfg.statements.rules.push(r);
        }
        for (action, list) in [
            (RuleAction::Hold, &f.hold),
            (RuleAction::Commit, &f.commit_hold),
        ] {
            for (ms, p) in list {
                let mut r = rule(p, action);
                r.hold_ms = *ms;
                cfg.statements.rules.push(r);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs the emulator until `shutdown` is cancelled.
pub async fn run(args: EmulatorArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "the emulator listens on loopback only; {} is not a loopback address",
            args.listen
        );
    }
    if args.page_size == 0 {
        anyhow::bail!("--page-size must be at least 1");
    }
    let fault_config = args.fault_config()?;
    let recorder = Arc::new(Recorder::open(args.record.as_deref())?);
    let spec = warehouse::WarehouseSpec::parse(&args.warehouse.to_string_lossy());
    let warehouse = spec.open().await?;
    if !fault_config.is_empty() {
        tracing::info!(
            faults = %serde_json::to_string(&fault_config).unwrap_or_default(),
            "Fault injection is on."
        );
    }
    let faults = Arc::new(Faults::new(fault_config));
    let stop_events = CancellationToken::new();
    let (events, publisher) = events::spawn(
        args.account.clone(),
        Arc::clone(&faults),
        Arc::clone(&recorder),
        stop_events.clone(),
    );
    if args.max_waiting_requests == 0 {
        anyhow::bail!("--max-waiting-requests must be at least 1");
    }
    // S3 (COPY, UNLOAD) and Secrets Manager (SecretArn) through the
    // standard chain: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SECRETS_MANAGER.
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(aws_config::Region::new("us-east-1"));
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(region)
        .load()
        .await;
    let s3_config = aws_sdk_s3::config::Builder::from(&sdk)
        // moto and other local S3s serve buckets by path, not host name.
        .force_path_style(true)
        .build();
    let outside = Outside {
        s3: aws_sdk_s3::Client::from_conf(s3_config),
        secrets: aws_sdk_secretsmanager::Client::new(&sdk),
    };
    let secs_ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let engine = Arc::new(Engine::new(
        EngineConfig {
            page_size: args.page_size,
            result_ttl_ms: secs_ms(args.result_ttl_secs),
            client_token_ttl_ms: secs_ms(args.client_token_ttl_secs),
            account: args.account.clone(),
            max_waiting: args.max_waiting_requests,
        },
        system_clock,
        warehouse,
        spec.clone(),
        outside,
        events,
        Arc::clone(&recorder),
        Arc::clone(&faults),
    ));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, warehouse = %spec.shown(), "Redshift Data API emulator listening.");

    // Forgets expired statements and closes idle sessions, every second
    // (sessions have keep-alives of a few seconds).
    let sweeper = {
        let engine = Arc::clone(&engine);
        let stop = shutdown.clone();
        let every = Duration::from_secs(1);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => engine.sweep(),
                }
            }
        })
    };

    let served = axum::serve(listener, wire::router(Arc::clone(&engine)))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    tracing::info!("Emulator stopping.");
    sweeper.abort();
    engine.shutdown(SHUTDOWN_GRACE).await;
    stop_events.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, publisher)
        .await
        .is_err()
    {
        tracing::warn!("Events still being sent at shutdown were abandoned.");
    }
    let mut counters = faults.counters.snapshot();
    if let Some(m) = counters.as_object_mut() {
        m.insert(
            "statements_in_memory".into(),
            serde_json::json!(engine.statements_in_memory()),
        );
    }
    tracing::info!(counters = %counters, "Emulator stopped.");
    recorder.write(&serde_json::json!({
        "kind": "counters",
        "at_ms": system_clock(),
        "counters": counters,
    }));
    served.context("the emulator's HTTP server failed")
}

//! The worker's metrics, in Prometheus text format (`/metrics`). Names are
//! `redrelay_*` with their unit; label sets are small and bounded (never a
//! job id). docs/operations.md says what each means.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispositionLabel {
    pub disposition: String,
}

/// A Data API call's outcome (the label values are the variant names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CallOutcome {
    ok,
    throttled,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabel {
    pub operation: &'static str,
    pub outcome: CallOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

/// Buckets in seconds, from 1 ms to about 17 minutes.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 21)
}

/// Every metric of a worker process.
pub struct Metrics {
    registry: Registry,
    pub events_received: Family<DispositionLabel, Counter>,
    pub api_calls: Family<CallLabel, Counter>,
    pub client_token_replays: Counter,
    pub jobs_entered: Family<StateLabel, Counter>,
    pub reaction: Histogram,
    pub event_lag: Histogram,
    pub queue_wait: Histogram,
    pub job_run_time: Histogram,
    pub fetch_time: Histogram,
    pub jobs: Family<StateLabel, Gauge>,
    pub oldest_in_flight: Gauge<f64, AtomicU64>,
    pub in_flight: Gauge,
    pub leader: Gauge,
    pub last_receive: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("redrelay");
        let m = Metrics {
            events_received: Family::default(),
            api_calls: Family::default(),
            client_token_replays: Counter::default(),
            jobs_entered: Family::default(),
            reaction: Histogram::new(seconds_buckets()),
            event_lag: Histogram::new(seconds_buckets()),
            queue_wait: Histogram::new(seconds_buckets()),
            job_run_time: Histogram::new(seconds_buckets()),
            fetch_time: Histogram::new(seconds_buckets()),
            jobs: Family::default(),
            oldest_in_flight: Gauge::default(),
            in_flight: Gauge::default(),
            leader: Gauge::default(),
            last_receive: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_received",
            "Messages consumed from the queue, by what became of them",
            m.events_received.clone(),
        );
        registry.register(
            "data_api_calls",
            "Redshift Data API calls by operation and outcome (ok, throttled, error)",
            m.api_calls.clone(),
        );
        registry.register(
            "client_token_replays",
            "Submissions that resumed an attempt with its ClientToken (the Data API returns the same statement)",
            m.client_token_replays.clone(),
        );
        registry.register(
            "jobs_entered",
            "Jobs this worker moved into each state",
            m.jobs_entered.clone(),
        );
        registry.register_with_unit(
            "reaction",
            "A dependent job released by its parent's end: READY to accepted by the Data API",
            prometheus_client::registry::Unit::Seconds,
            m.reaction.clone(),
        );
        registry.register_with_unit(
            "event_delivery_lag",
            "An event's time to its receipt by this worker",
            prometheus_client::registry::Unit::Seconds,
            m.event_lag.clone(),
        );
        registry.register_with_unit(
            "queue_wait",
            "READY to submitted (accepted by the Data API)",
            prometheus_client::registry::Unit::Seconds,
            m.queue_wait.clone(),
        );
        registry.register_with_unit(
            "job_run_time",
            "Submitted to the statement's end",
            prometheus_client::registry::Unit::Seconds,
            m.job_run_time.clone(),
        );
        registry.register_with_unit(
            "result_fetch_time",
            "Fetching every page of a job's results",
            prometheus_client::registry::Unit::Seconds,
            m.fetch_time.clone(),
        );
        registry.register(
            "jobs",
            "Jobs in the ledger by state (counted by the leader)",
            m.jobs.clone(),
        );
        registry.register_with_unit(
            "oldest_in_flight_job_age",
            "Age of the oldest statement in flight (counted by the leader; 0 when none)",
            prometheus_client::registry::Unit::Seconds,
            m.oldest_in_flight.clone(),
        );
        registry.register(
            "statements_in_flight",
            "Statements running (SUBMITTED jobs), from the ledger",
            m.in_flight.clone(),
        );
        registry.register(
            "leader",
            "1 when this worker is the leader",
            m.leader.clone(),
        );
        registry.register_with_unit(
            "last_successful_receive_timestamp",
            "When the last SQS receive succeeded (Unix time)",
            prometheus_client::registry::Unit::Seconds,
            m.last_receive.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "Cannot encode the metrics.");
        }
        out
    }

    pub fn call(&self, operation: &'static str, outcome: CallOutcome) {
        self.api_calls
            .get_or_create(&CallLabel { operation, outcome })
            .inc();
    }

    pub fn entered(&self, state: &'static str) {
        self.jobs_entered.get_or_create(&StateLabel { state }).inc();
    }
}

/// Milliseconds as seconds, for histograms (negative clock skew is 0).
pub fn secs(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

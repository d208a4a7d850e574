//! Time, passed in: the logic never reads the system clock itself, so tests
//! of backoff and timeouts are deterministic.

use std::sync::atomic::{AtomicI64, Ordering};

/// A time in epoch milliseconds (the ledger's and the clock's unit) as a
/// timestamp: the one conversion, for schedules, the API and the CLI.
pub fn timestamp(ms: i64) -> Result<jiff::Timestamp, OutOfRange> {
    jiff::Timestamp::from_millisecond(ms).map_err(|e| OutOfRange {
        ms,
        reason: e.to_string(),
    })
}

/// A time in epoch milliseconds beyond what a timestamp holds (the years
/// -9999 to 9999).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time {ms} ms: {reason}")]
pub struct OutOfRange {
    pub ms: i64,
    reason: String,
}

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self(AtomicI64::new(start_ms))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

//! Client-side rate limits per Data API operation, so that redrelay stays
//! under the account's quotas instead of discovering them by throttling.
//! Defaults follow AWS's published Redshift Data API quotas (requests per
//! second per account and region); `api_rate_scale` in the configuration
//! scales them all, e.g. 0.5 when other tools share the quota. Several
//! workers on one ledger share the quota: each takes 1/N of every rate
//! ([`Limits::set_share`]), N being the live workers the ledger lists.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, bursts up to `burst`. The rate
/// and burst can be divided among workers ([`Bucket::set_divisor`]).
#[derive(Debug)]
pub struct Bucket {
    full_rate: f64,
    full_burst: f64,
    /// (tokens, last refill, rate, burst)
    state: Mutex<(f64, Instant, f64, f64)>,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        let rate = rate.max(0.01);
        let burst = burst.max(1.0);
        Self {
            full_rate: rate,
            full_burst: burst,
            state: Mutex::new((burst, Instant::now(), rate, burst)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (f64, Instant, f64, f64)> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// This process's share: the full rate and burst divided by `n`.
    pub fn set_divisor(&self, n: usize) {
        let n = n.max(1) as f64;
        let mut g = self.lock();
        g.2 = (self.full_rate / n).max(0.01);
        g.3 = (self.full_burst / n).max(1.0);
        g.0 = g.0.min(g.3);
    }

    /// The current rate (tokens per second).
    pub fn rate(&self) -> f64 {
        self.lock().2
    }

    /// Takes a token, or says how long to wait for one.
    fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut guard = self.lock();
        let (tokens, last, rate, burst) = *guard;
        let refilled =
            (tokens + now.saturating_duration_since(last).as_secs_f64() * rate).min(burst);
        if refilled >= 1.0 {
            *guard = (refilled - 1.0, now, rate, burst);
            Ok(())
        } else {
            *guard = (refilled, now, rate, burst);
            Err(Duration::from_secs_f64((1.0 - refilled) / rate))
        }
    }

    /// Waits for a token.
    pub async fn take(&self) {
        loop {
            match self.try_take(Instant::now()) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}

/// One bucket per operation redrelay calls.
#[derive(Debug)]
pub struct Limits {
    pub execute: Bucket,
    pub batch_execute: Bucket,
    pub describe: Bucket,
    pub get_result: Bucket,
    pub cancel: Bucket,
}

impl Limits {
    /// Takes this process's share when `workers` share the account's quota.
    pub fn set_share(&self, workers: usize) {
        for b in [
            &self.execute,
            &self.batch_execute,
            &self.describe,
            &self.get_result,
            &self.cancel,
        ] {
            b.set_divisor(workers);
        }
    }

    /// AWS's default quotas (per second): ExecuteStatement 30,
    /// BatchExecuteStatement 20, DescribeStatement 100, GetStatementResult
    /// 20, CancelStatement 10; each scaled by `scale`.
    pub fn aws_defaults(scale: f64) -> Self {
        let b = |rate: f64| Bucket::new(rate * scale, (rate * scale).ceil());
        Self {
            execute: b(30.0),
            batch_execute: b(20.0),
            describe: b(100.0),
            get_result: b(20.0),
            cancel: b(10.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let b = Bucket::new(10.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.try_take(t0).is_ok());
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::from_millis(90),
            "{wait:?}"
        );
        assert!(b.try_take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.try_take(t0 + Duration::from_millis(100)).is_err());
        // Never more than the burst, however long it waited.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.try_take(later).is_ok());
        }
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn a_share_divides_rate_and_burst() {
        let b = Bucket::new(30.0, 30.0);
        b.set_divisor(3);
        assert!((b.rate() - 10.0).abs() < 1e-9);
        let t0 = Instant::now() + Duration::from_secs(10);
        for _ in 0..10 {
            assert!(b.try_take(t0).is_ok());
        }
        assert!(b.try_take(t0).is_err(), "burst is a third too");
        b.set_divisor(1);
        assert!((b.rate() - 30.0).abs() < 1e-9);
    }
}

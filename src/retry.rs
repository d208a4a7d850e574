//! Retry policy: a plain value, attempt-based exponential backoff with a cap
//! and seeded jitter (no clock, no global randomness).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Wait before the second attempt, in seconds.
    pub initial_secs: f64,
    /// Longest wait between attempts, in seconds.
    pub max_secs: f64,
    /// Each wait is the previous one times this.
    pub multiplier: f64,
    /// Fraction of each wait drawn at random (0 = none, 1 = full jitter).
    pub jitter: f64,
}

impl RetryPolicy {
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        initial_secs: 10.0,
        max_secs: 600.0,
        multiplier: 2.0,
        jitter: 0.2,
    };

    /// Checks the values, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.initial_secs.is_finite() && self.initial_secs >= 0.0) {
            return Err("initial_secs must be 0 or more".into());
        }
        if !(self.max_secs.is_finite() && self.max_secs >= self.initial_secs) {
            return Err("max_secs must be at least initial_secs".into());
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err("multiplier must be 1 or more".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err("jitter must be between 0 and 1".into());
        }
        Ok(())
    }

    /// The wait after failed attempt number `attempt` (1-based), in ms.
    /// `seed` makes the jitter reproducible (the job's uid, say).
    pub fn delay_ms(&self, attempt: i64, seed: u64) -> i64 {
        let exp = (attempt.max(1) - 1).min(64) as i32;
        let base = (self.initial_secs * self.multiplier.powi(exp)).min(self.max_secs);
        let unit = splitmix(seed ^ attempt as u64) as f64 / u64::MAX as f64;
        let secs = base * (1.0 - self.jitter * unit);
        (secs * 1000.0).round() as i64
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A stable seed from a string (a job's uid).
pub fn seed_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let p = RetryPolicy {
            initial_secs: 1.0,
            max_secs: 5.0,
            multiplier: 2.0,
            jitter: 0.0,
        };
        let d: Vec<i64> = (1..=5).map(|a| p.delay_ms(a, 7)).collect();
        assert_eq!(d, vec![1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn jitter_is_bounded_and_reproducible() {
        let p = RetryPolicy {
            jitter: 0.5,
            ..RetryPolicy::DEFAULT
        };
        for seed in 0..200 {
            let d = p.delay_ms(1, seed);
            assert!((5000..=10000).contains(&d), "{d}");
            assert_eq!(d, p.delay_ms(1, seed));
        }
    }

    #[test]
    fn validation_names_the_field() {
        let bad = RetryPolicy {
            multiplier: 0.5,
            ..RetryPolicy::DEFAULT
        };
        assert!(bad.validate().unwrap_err().contains("multiplier"));
        assert!(RetryPolicy::DEFAULT.validate().is_ok());
    }
}

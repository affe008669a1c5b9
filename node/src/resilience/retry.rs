//! Retries with exponential backoff and full jitter, limited by a retry budget so that
//! retries cannot multiply load during an outage.

use std::time::Duration;

/// Backoff between attempts: attempt `n` (from 0) waits a uniformly random time in
/// `[0, min(max, base * 2^n)]` ("full jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
    /// Attempts in all (the first one included).
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(50), max: Duration::from_secs(2), max_attempts: 4 }
    }
}

impl Backoff {
    /// The wait before retry number `n` (0 = before the second attempt), given a uniform
    /// random `unit` in [0, 1).
    pub fn delay(&self, n: u32, unit: f64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX)).min(self.max);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A token bucket of retries: every first attempt deposits `ratio` tokens (up to `cap`),
/// every retry withdraws one. During an outage first attempts keep failing, the bucket
/// drains, and retries stop: at most about `ratio` extra load.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    tokens: f64,
    ratio: f64,
    cap: f64,
}

impl RetryBudget {
    /// A budget allowing retries of about `ratio` of requests, with `cap` saved up.
    pub fn new(ratio: f64, cap: f64) -> RetryBudget {
        RetryBudget { tokens: cap, ratio, cap }
    }

    /// Account for a first attempt.
    pub fn deposit(&mut self) {
        self.tokens = (self.tokens + self.ratio).min(self.cap);
    }

    /// Take a token for a retry, if one is left.
    pub fn withdraw(&mut self) -> bool {
        // A little slack: ten deposits of 0.1 must buy a retry despite rounding.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(0.2, 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_ceilings_grow_and_cap() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1), max_attempts: 10 };
        assert_eq!(b.delay(0, 0.999_999), Duration::from_millis(100).mul_f64(0.999_999));
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(200));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn the_budget_drains_in_an_outage_and_refills_with_traffic() {
        let mut budget = RetryBudget::new(0.1, 2.0);
        assert!(budget.withdraw() && budget.withdraw());
        assert!(!budget.withdraw(), "saved-up tokens are gone");
        for _ in 0..9 {
            budget.deposit();
        }
        assert!(!budget.withdraw(), "0.9 tokens are not a retry");
        budget.deposit();
        assert!(budget.withdraw(), "ten first attempts buy one retry");
    }
}

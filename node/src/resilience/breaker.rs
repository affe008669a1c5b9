//! A circuit breaker per peer: closed until `failure_threshold` failures within
//! `window`; then open, refusing calls at once for `cooldown`; then half-open, letting a
//! single probe through: its success closes the breaker, its failure reopens it.
//! Pure bookkeeping with time passed in, so it is tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Breaker thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `window` that open the breaker.
    pub failure_threshold: usize,
    /// The window failures are counted in.
    pub window: Duration,
    /// How long an open breaker refuses calls before letting a probe through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; recent failures are counted.
    Closed,
    /// Calls are refused until `until`.
    Open {
        /// When a probe may go through.
        until: Instant,
    },
    /// One probe is (or may be) in flight.
    HalfOpen {
        /// Whether the probe has been handed out.
        probing: bool,
    },
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Time until a probe may go through.
    pub retry_in: Duration,
}

/// One peer's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    failures: VecDeque<Instant>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Breaker {
        Breaker { cfg, state: BreakerState::Closed, failures: VecDeque::new() }
    }

    /// The current state (moving an expired open breaker to half-open).
    pub fn state(&mut self, now: Instant) -> &BreakerState {
        if let BreakerState::Open { until } = self.state {
            if now >= until {
                self.state = BreakerState::HalfOpen { probing: false };
            }
        }
        &self.state
    }

    /// May a call go through now? In half-open, only the first caller (the probe) may.
    pub fn allow(&mut self, now: Instant) -> Result<(), Rejected> {
        match self.state(now).clone() {
            BreakerState::Closed => Ok(()),
            BreakerState::Open { until } => Err(Rejected { retry_in: until - now }),
            BreakerState::HalfOpen { probing: false } => {
                self.state = BreakerState::HalfOpen { probing: true };
                Ok(())
            }
            BreakerState::HalfOpen { probing: true } => Err(Rejected { retry_in: self.cfg.cooldown }),
        }
    }

    /// Record a call's success: a successful probe closes the breaker.
    pub fn success(&mut self) {
        self.failures.clear();
        self.state = BreakerState::Closed;
    }

    /// Record a call's failure: enough of them (or a failed probe) open the breaker.
    pub fn failure(&mut self, now: Instant) {
        if matches!(self.state, BreakerState::HalfOpen { .. }) {
            self.state = BreakerState::Open { until: now + self.cfg.cooldown };
            return;
        }
        self.failures.push_back(now);
        while self.failures.front().is_some_and(|t| now.duration_since(*t) > self.cfg.window) {
            self.failures.pop_front();
        }
        if self.failures.len() >= self.cfg.failure_threshold {
            self.failures.clear();
            self.state = BreakerState::Open { until: now + self.cfg.cooldown };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        }
    }

    #[test]
    fn opens_after_the_threshold_fails_fast_then_probes_once() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for i in 0..3 {
            assert!(b.allow(t0).is_ok(), "call {i} allowed while closed");
            b.failure(t0 + Duration::from_millis(i));
        }
        let r = b.allow(t0 + Duration::from_secs(1)).unwrap_err();
        assert!(r.retry_in <= Duration::from_millis(4010) && r.retry_in > Duration::from_secs(3), "{r:?}");
        let later = t0 + Duration::from_secs(6);
        assert!(b.allow(later).is_ok(), "the probe goes through");
        assert!(b.allow(later).is_err(), "only one probe at a time");
        b.success();
        assert_eq!(b.state(later), &BreakerState::Closed);
        assert!(b.allow(later).is_ok());
    }

    #[test]
    fn a_failed_probe_reopens_and_old_failures_fall_out_of_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        b.failure(t0);
        b.failure(t0 + Duration::from_secs(1));
        b.failure(t0 + Duration::from_secs(20)); // the first two are out of the window
        assert!(b.allow(t0 + Duration::from_secs(20)).is_ok());
        b.failure(t0 + Duration::from_secs(21));
        b.failure(t0 + Duration::from_secs(22));
        assert!(b.allow(t0 + Duration::from_secs(22)).is_err(), "three within the window");
        let probe_at = t0 + Duration::from_secs(28);
        assert!(b.allow(probe_at).is_ok());
        b.failure(probe_at);
        assert!(matches!(b.state(probe_at), BreakerState::Open { .. }));
    }
}

//! One clock for every replica driver on the node (issue #20): a single timer wakes all
//! of them together, instead of a timer per replica. Besides one timer for thousands of
//! replicas, the replicas' ticks coincide, so the heartbeats and fetches one tick makes
//! reach the replication hub together and leave in one bundle per peer.

use std::time::Duration;
use tokio::sync::watch;

/// The node's replica clock. [`Ticker::default`] has none: each driver then keeps its
/// own timer (tests that build a driver context by hand).
#[derive(Debug, Clone, Default)]
pub struct Ticker {
    rx: Option<watch::Receiver<u64>>,
}

impl Ticker {
    /// The period the replicas tick at: half their heartbeat, at least 5 ms.
    pub fn period(heartbeat_ms: u64) -> Duration {
        Duration::from_millis((heartbeat_ms / 2).max(5))
    }

    /// Start the clock (on the current runtime): it ticks every `period` until every
    /// subscriber and this handle are gone. Ticks a driver was too busy to take count once.
    pub fn start(period: Duration) -> Ticker {
        let (tx, rx) = watch::channel(0u64);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                interval.tick().await;
                n = n.wrapping_add(1);
                if tx.send(n).is_err() {
                    return;
                }
            }
        });
        Ticker { rx: Some(rx) }
    }

    /// A driver's ticks: the node's clock, or a timer of its own every `period`.
    pub(super) fn subscribe(&self, period: Duration) -> Tick {
        match &self.rx {
            Some(rx) => Tick::Shared(rx.clone()),
            None => {
                let mut own = tokio::time::interval(period);
                own.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Tick::Own(own)
            }
        }
    }
}

/// One driver's view of the clock.
pub(super) enum Tick {
    Shared(watch::Receiver<u64>),
    Own(tokio::time::Interval),
}

impl Tick {
    /// Wait for the next tick (the first comes at once).
    pub(super) async fn tick(&mut self) {
        match self {
            Tick::Shared(rx) => {
                if rx.changed().await.is_err() {
                    // The clock stopped: the node is going down.
                    std::future::pending::<()>().await;
                }
            }
            Tick::Own(own) => {
                own.tick().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn subscribers_tick_together_at_the_period() {
        let ticker = Ticker::start(Duration::from_millis(50));
        let (mut a, mut b) = (ticker.subscribe(Duration::ZERO), ticker.subscribe(Duration::ZERO));
        // The first tick comes at once.
        let t0 = tokio::time::Instant::now();
        a.tick().await;
        b.tick().await;
        for _ in 0..3 {
            a.tick().await;
            b.tick().await;
        }
        let elapsed = t0.elapsed();
        assert!(elapsed >= Duration::from_millis(150) && elapsed < Duration::from_millis(200), "{elapsed:?}");
    }

    #[test]
    fn the_period_is_half_a_heartbeat_and_never_zero() {
        assert_eq!(Ticker::period(100), Duration::from_millis(50));
        assert_eq!(Ticker::period(0), Duration::from_millis(5));
    }
}

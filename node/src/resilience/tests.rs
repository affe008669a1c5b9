//! The layer under paused time: no test sleeps for real.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn layer() -> Resilience {
    Resilience::new(ResilienceConfig {
        timeouts: Timeouts {
            metadata: Duration::from_secs(1),
            margin: Duration::from_secs(1),
            admin: Duration::from_secs(1),
            status: Duration::from_secs(1),
        },
        breaker: BreakerConfig {
            failure_threshold: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        },
        backoff: Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1), max_attempts: 3 },
        retry_ratio: 0.2,
    })
}

fn dead() -> NetworkError {
    NetworkError::Request { peer: "p".into(), source: crate::network::cause("connection refused") }
}

#[tokio::test(start_paused = true)]
async fn a_failing_peer_opens_its_breaker_then_calls_fail_fast_and_a_recovered_peer_closes_it() {
    let r = layer();
    let peer = PeerId::random();
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = || {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(dead())
        }
    };
    for _ in 0..3 {
        let _ = r.call(&peer, CallKind::Admin, failing).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let err = r.call(&peer, CallKind::Admin, failing).await.unwrap_err();
    assert!(matches!(err, CallError::CircuitOpen { .. }), "{err}");
    assert!(err.to_string().contains("circuit open, retry in 5 s"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "an open breaker does not call the peer");
    assert_eq!(r.breaker_states()[0].state, "open");
    tokio::time::advance(Duration::from_secs(6)).await;
    let ok = r.call(&peer, CallKind::Admin, || async { Ok::<_, NetworkError>(7) }).await.unwrap();
    assert_eq!(ok, 7, "the probe goes through and closes the breaker");
    assert!(r.breaker_states().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_stop_at_the_attempt_limit_and_only_for_safe_calls() {
    let r = layer();
    let peer = PeerId::random();
    let calls = Arc::new(AtomicUsize::new(0));
    let count = |c: Arc<AtomicUsize>| {
        move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(dead())
            }
        }
    };
    let _ = r.call(&peer, CallKind::Metadata, count(calls.clone())).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "metadata is retried up to the attempt limit");
    let other = PeerId::random();
    let admin = Arc::new(AtomicUsize::new(0));
    let _ = r.call(&other, CallKind::Admin, count(admin.clone())).await;
    assert_eq!(admin.load(Ordering::SeqCst), 1, "admin changes are never retried");
    let produce = Arc::new(AtomicUsize::new(0));
    let kind = CallKind::Produce { timeout: Duration::from_secs(1), idempotent: false };
    let _ = r.call(&PeerId::random(), kind, count(produce.clone())).await;
    assert_eq!(produce.load(Ordering::SeqCst), 1, "a non-idempotent produce is never retried");
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_retries_during_an_outage() {
    let r = layer();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..40 {
        let c = calls.clone();
        // A fresh peer each time, so breakers do not hide the budget.
        let _ = r
            .call(&PeerId::random(), CallKind::Metadata, move || {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(dead())
                }
            })
            .await;
    }
    let retries = calls.load(Ordering::SeqCst) - 40;
    // 10 saved-up tokens plus 0.2 per first attempt: at most 18 retries, not 80.
    assert!(retries <= 18, "{retries} retries for 40 failing calls");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_peer_times_out_by_call_type() {
    let r = layer();
    let started = Instant::now();
    let err = r
        .call(&PeerId::random(), CallKind::Admin, std::future::pending::<Result<(), NetworkError>>)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::TimedOut { .. }), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let kind = CallKind::Fetch { wait: Duration::from_secs(3) };
    let started = Instant::now();
    let mut first = true;
    r.call(&PeerId::random(), kind, || {
        let hang = first;
        first = false;
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok::<_, NetworkError>(())
        }
    })
    .await
    .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(4), "a fetch waits its long-poll plus the margin");
}

#[tokio::test(start_paused = true)]
async fn a_new_connection_closes_an_open_breaker_at_once() {
    let r = layer();
    let peer = PeerId::random();
    for _ in 0..3 {
        let _ = r.call(&peer, CallKind::Admin, || async { Err::<(), _>(dead()) }).await;
    }
    let open = r.call(&peer, CallKind::Admin, || async { Ok::<_, NetworkError>(()) }).await;
    assert!(matches!(open, Err(CallError::CircuitOpen { .. })), "{open:?}");
    r.reset(&peer);
    assert!(r.breaker_states().is_empty());
    r.call(&peer, CallKind::Admin, || async { Ok::<_, NetworkError>(()) }).await.unwrap();
}

//! The resilience layer: every remote call meshlog makes, node to node and client to
//! node, goes through [`Resilience::call`]: a timeout chosen per call type, a circuit
//! breaker per peer, and retries with exponential backoff and full jitter for calls
//! that are safe to repeat, limited by a retry budget. The rest of the code uses this
//! rather than ad-hoc loops.

pub mod breaker;
pub mod retry;

pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use retry::{Backoff, RetryBudget};

use crate::network::{NetworkError, PeerId, ToNodeId};
use meshlog_protocol::group::GroupRequest;
pub use meshlog_protocol::mesh::BreakerStatus;
use meshlog_protocol::messages::ClientRequest;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What kind of call, which decides its timeout and whether it may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Metadata and status reads (list, describe, cluster status, discovery): retried.
    Metadata,
    /// A best-effort status probe of a peer while answering someone else (one try,
    /// short timeout): a dead peer must not make the answer late.
    Status,
    /// A fetch that may long-poll for `wait`: retried.
    Fetch {
        /// The long-poll wait the request asks for.
        wait: Duration,
    },
    /// A produce that may take `timeout` to be acknowledged; retried only if
    /// `idempotent` (an idempotent producer's retry cannot be written twice).
    Produce {
        /// The produce's own ack timeout.
        timeout: Duration,
        /// Whether the batch carries producer id and sequence.
        idempotent: bool,
    },
    /// A change that must not be repeated blindly (topic creation, registrations).
    Admin,
}

/// How long a consumer-group commit may wait for the offsets log to take it.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

impl CallKind {
    /// The resilience class of a client request: fetches and reads may be retried, a
    /// produce without an idempotent producer may not.
    pub fn of(req: &ClientRequest) -> CallKind {
        match req {
            ClientRequest::Produce(p) => {
                let idempotent =
                    meshlog_protocol::batch::parse_header(&p.batch).is_ok_and(|h| h.has_producer_id());
                CallKind::Produce { timeout: Duration::from_millis(p.timeout_ms as u64), idempotent }
            }
            ClientRequest::Fetch(f) => CallKind::Fetch { wait: Duration::from_millis(f.max_wait_ms as u64) },
            // A commit waits for the offsets log like an idempotent produce (repeating one
            // writes the same values again).
            ClientRequest::Group(GroupRequest::Commit(_)) => {
                CallKind::Produce { timeout: COMMIT_TIMEOUT, idempotent: true }
            }
            ClientRequest::CreateTopic { .. }
            | ClientRequest::DeleteTopic { .. }
            | ClientRequest::AlterTopic(_)
            | ClientRequest::RegisterService(_)
            | ClientRequest::DeregisterService { .. } => CallKind::Admin,
            _ => CallKind::Metadata,
        }
    }
}

/// Timeouts per call type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Metadata and status reads.
    pub metadata: Duration,
    /// Added to a fetch's long-poll wait and a produce's ack timeout.
    pub margin: Duration,
    /// Admin changes.
    pub admin: Duration,
    /// Best-effort status probes.
    pub status: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            metadata: Duration::from_secs(5),
            margin: Duration::from_secs(5),
            admin: Duration::from_secs(15),
            status: Duration::from_secs(2),
        }
    }
}

impl CallKind {
    fn timeout(&self, t: &Timeouts) -> Duration {
        match *self {
            CallKind::Metadata => t.metadata,
            CallKind::Status => t.status,
            CallKind::Fetch { wait } => wait + t.margin,
            CallKind::Produce { timeout, .. } => timeout + t.margin,
            CallKind::Admin => t.admin,
        }
    }

    /// Whether a failed call of this kind may be tried again.
    pub fn retriable(&self) -> bool {
        match self {
            CallKind::Metadata | CallKind::Fetch { .. } => true,
            CallKind::Produce { idempotent, .. } => *idempotent,
            CallKind::Admin | CallKind::Status => false,
        }
    }
}

/// Why a resilient call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The peer's breaker is open: failing fast.
    #[error("peer {peer}: circuit open, retry in {} s", retry_in.as_secs_f64().ceil() as u64)]
    CircuitOpen {
        /// The peer.
        peer: String,
        /// Until a probe may go through.
        retry_in: Duration,
    },
    /// No answer in time.
    #[error("peer {peer}: no answer within {} ms", after.as_millis())]
    TimedOut {
        /// The peer.
        peer: String,
        /// The timeout.
        after: Duration,
    },
    /// The call failed in transit.
    #[error(transparent)]
    Network(NetworkError),
}

impl CallError {
    /// Whether the call certainly never reached the peer (an open breaker, a failed
    /// dial), so sending it elsewhere cannot make it happen twice.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            CallError::CircuitOpen { .. }
                | CallError::Network(NetworkError::NotSent { .. } | NetworkError::Dial { .. })
        )
    }
}

/// Settings of the layer.
#[derive(Debug, Clone, Default)]
pub struct ResilienceConfig {
    /// Timeouts per call type.
    pub timeouts: Timeouts,
    /// Breaker thresholds.
    pub breaker: BreakerConfig,
    /// Backoff between retries.
    pub backoff: Backoff,
    /// Share of first attempts that may be retried (and the saved-up cap).
    pub retry_ratio: f64,
}

/// Breakers, budget and policy shared by every call of one node or client.
pub struct Resilience {
    cfg: ResilienceConfig,
    breakers: Mutex<HashMap<PeerId, Breaker>>,
    budget: Mutex<RetryBudget>,
    rng: Mutex<u64>,
}

impl Resilience {
    /// A layer with `cfg` (a zero `retry_ratio` means the default 0.2).
    pub fn new(cfg: ResilienceConfig) -> Resilience {
        let ratio = if cfg.retry_ratio > 0.0 { cfg.retry_ratio } else { 0.2 };
        Resilience {
            cfg,
            breakers: Mutex::new(HashMap::new()),
            budget: Mutex::new(RetryBudget::new(ratio, 10.0)),
            rng: Mutex::new(rand::random::<u64>() | 1),
        }
    }

    fn unit_random(&self) -> f64 {
        let mut s = crate::sync::lock(&self.rng);
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }

    fn with_breaker<T>(&self, peer: &PeerId, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut map = crate::sync::lock(&self.breakers);
        f(map.entry(*peer).or_insert_with(|| Breaker::new(self.cfg.breaker)))
    }

    /// Run `attempt` against `peer` with the kind's timeout, the peer's breaker, and
    /// retries (backoff, jitter, budget) if the kind allows them.
    pub async fn call<T, F, Fut>(&self, peer: &PeerId, kind: CallKind, mut attempt: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, NetworkError>>,
    {
        let timeout = kind.timeout(&self.cfg.timeouts);
        crate::sync::lock(&self.budget).deposit();
        let mut n = 0;
        loop {
            self.with_breaker(peer, |b| b.allow(Instant::now().into_std()))
                .map_err(|r| CallError::CircuitOpen { peer: peer.to_string(), retry_in: r.retry_in })?;
            let err = match tokio::time::timeout(timeout, attempt()).await {
                Ok(Ok(v)) => {
                    self.with_breaker(peer, Breaker::success);
                    return Ok(v);
                }
                Ok(Err(e)) => CallError::Network(e),
                Err(_) => CallError::TimedOut { peer: peer.to_string(), after: timeout },
            };
            self.with_breaker(peer, |b| b.failure(Instant::now().into_std()));
            n += 1;
            let may_retry = kind.retriable()
                && n < self.cfg.backoff.max_attempts
                && crate::sync::lock(&self.budget).withdraw();
            if !may_retry {
                return Err(err);
            }
            tokio::time::sleep(self.cfg.backoff.delay(n - 1, self.unit_random())).await;
        }
    }

    /// Close `peer`'s breaker: a new connection to it was just established, which says
    /// more than the failures that opened it (a restarted node is reachable again and
    /// may lead partitions at once; waiting out the cooldown would stall its clients).
    pub fn reset(&self, peer: &PeerId) {
        crate::sync::lock(&self.breakers).remove(peer);
    }

    /// Every breaker that is not closed.
    pub fn breaker_states(&self) -> Vec<BreakerStatus> {
        let now = Instant::now().into_std();
        let mut map = crate::sync::lock(&self.breakers);
        let mut v: Vec<BreakerStatus> = map
            .iter_mut()
            .filter_map(|(peer, b)| {
                let (state, retry_in_ms) = match b.state(now) {
                    BreakerState::Closed => return None,
                    BreakerState::Open { until } => {
                        ("open", until.saturating_duration_since(now).as_millis() as u64)
                    }
                    BreakerState::HalfOpen { .. } => ("half-open", 0),
                };
                Some(BreakerStatus { peer: peer.node_id(), state: state.into(), retry_in_ms })
            })
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }
}

#[cfg(test)]
mod tests;

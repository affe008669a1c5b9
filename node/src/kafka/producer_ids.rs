//! InitProducerId: ids for Kafka's idempotent producers, unique across the mesh without
//! a coordinator, and the epoch bump of KIP-360.
//!
//! An id is this node's broker id (31 bits, from its PeerId, unique in the mesh: the
//! listener already depends on it) in the high half and a 32-bit counter in the low
//! half. The counter is reserved in blocks of [`BLOCK`]: the end of the reserved block
//! is made durable (sled flush + fsync) before any id of it is handed out, so a
//! restarted node starts after it and never hands out an id twice. A store that starts
//! without a counter (a new node, or a lost store under a kept node key) starts at a
//! random point of the lower half of the range, so a node whose store was wiped does not
//! hand out its old ids again (unless it lands within the ids it used before).
//! Per-node blocks beat random 63-bit ids: no collision to detect, the same cost.
//!
//! The epoch: a client re-initialising with its id and epoch (v3+, after an
//! UNKNOWN_PRODUCER_ID or a sequence it cannot resolve) gets the same id with the next
//! epoch, which fences its older batches at every partition (INVALID_PRODUCER_EPOCH);
//! at the last epoch it gets a new id, as Kafka does. No state is kept per producer:
//! ids are unique, so only their owner bumps them.
//!
//! Transactions are not served: a request with a transactional id is refused with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients treat as fatal (no retry loop).

use super::Kafka;
use crate::storage::{keys, StorageError, Store};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use meshlog_protocol::ErrorCode;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Ids reserved (made durable) at a time.
pub const BLOCK: u64 = 1024;

/// One past the last counter value (32 bits).
const COUNTER_END: u64 = 1 << 32;

/// Kafka's TRANSACTIONAL_ID_AUTHORIZATION_FAILED: this client may not use transactions.
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

/// The counter: next value to hand out, end of the durable reservation.
#[derive(Debug, Clone, Copy)]
struct Counter {
    next: u64,
    reserved: u64,
}

/// This node's producer ids.
pub struct ProducerIds {
    prefix: i64,
    store: Arc<Store>,
    counter: Mutex<Option<Counter>>,
}

/// Why no id could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// The reservation could not be made durable.
    #[error("cannot reserve producer ids: {0}")]
    Storage(#[from] StorageError),
    /// Every id of this node was handed out (2^32 of them).
    #[error("this node has handed out all of its producer ids")]
    Exhausted,
}

impl ProducerIds {
    /// The ids of the node with `broker_id` (non-negative), reserved in `store`.
    pub fn new(broker_id: i32, store: Arc<Store>) -> ProducerIds {
        ProducerIds { prefix: i64::from(broker_id.max(0)) << 32, store, counter: Mutex::new(None) }
    }

    /// A producer id never handed out before by any node of the mesh.
    pub async fn allocate(&self) -> Result<i64, IdError> {
        let mut guard = self.counter.lock().await;
        let mut c = match *guard {
            Some(c) => c,
            None => {
                let reserved = self.load()?;
                Counter { next: reserved, reserved }
            }
        };
        if c.next >= c.reserved {
            let end = c.next.checked_add(BLOCK).filter(|e| *e <= COUNTER_END).ok_or(IdError::Exhausted)?;
            self.reserve(end).await?;
            c.reserved = end;
        }
        let id = self.prefix | c.next as i64;
        c.next += 1;
        *guard = Some(c);
        Ok(id)
    }

    /// The end of the last durable reservation, or a random start for a new store.
    fn load(&self) -> Result<u64, StorageError> {
        let saved = self.store.meta_get(keys::KAFKA_PRODUCER_IDS)?;
        Ok(match saved.and_then(|b| <[u8; 8]>::try_from(&*b).ok()) {
            Some(b) => u64::from_be_bytes(b),
            None => rand::random::<u64>() % (COUNTER_END / 2),
        })
    }

    /// Make `end` the durable end of the reservation before anything below it is used.
    async fn reserve(&self, end: u64) -> Result<(), StorageError> {
        let store = self.store.clone();
        let write = move || {
            store.meta_put(keys::KAFKA_PRODUCER_IDS, &end.to_be_bytes())?;
            store.flush_meta()
        };
        match tokio::task::spawn_blocking(write).await {
            Ok(r) => r,
            Err(e) => {
                Err(StorageError::Damaged { what: "producer id reservation".into(), reason: e.to_string() })
            }
        }
    }
}

/// The id and epoch for a client re-initialising as (`id`, `epoch`): the next epoch,
/// or `None` (a new id) when the epoch is the last one or none is given.
pub fn bumped(id: i64, epoch: i16) -> Option<(i64, i16)> {
    (id >= 0 && (0..i16::MAX - 1).contains(&epoch)).then_some((id, epoch + 1))
}

impl Kafka {
    /// Answer InitProducerId.
    pub(super) async fn init_producer_id(
        &self,
        req: InitProducerIdRequest,
        version: i16,
    ) -> InitProducerIdResponse {
        let mut out =
            InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
        if let Some(tid) = &req.transactional_id {
            tracing::info!(transactional_id = %tid.0, "Kafka transactions are not supported: InitProducerId refused");
            out.error_code = TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            return out;
        }
        let current = if version >= 3 { bumped(req.producer_id.0, req.producer_epoch) } else { None };
        let (id, epoch) = match current {
            Some(bumped) => bumped,
            None => match self.producer_ids.allocate().await {
                Ok(id) => (id, 0),
                Err(e) => {
                    tracing::warn!(error = %e, "InitProducerId failed");
                    out.error_code = ErrorCode::Unknown.as_i16();
                    return out;
                }
            },
        };
        out.with_producer_id(ProducerId(id)).with_producer_epoch(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{StoreOptions, SEGMENT_BYTES};

    fn store(dir: &std::path::Path) -> Arc<Store> {
        let opts = StoreOptions { cache_capacity_bytes: 8 << 20, segment_bytes: SEGMENT_BYTES };
        Arc::new(Store::open(dir, &opts).unwrap())
    }

    #[tokio::test]
    async fn ids_carry_the_broker_id_and_are_never_handed_out_twice_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _restart in 0..3 {
            let ids = ProducerIds::new(12345, store(dir.path()));
            for _ in 0..(BLOCK + 5) {
                let id = ids.allocate().await.unwrap();
                assert_eq!(id >> 32, 12345, "the node's prefix");
                assert!(id >= 0);
                assert!(seen.insert(id), "id {id} handed out twice");
            }
        }
        let other = tempfile::tempdir().unwrap();
        let id = ProducerIds::new(777, store(other.path())).allocate().await.unwrap();
        assert_eq!(id >> 32, 777, "another node's ids cannot meet these");
    }

    #[test]
    fn a_reinit_bumps_the_epoch_until_the_last_then_asks_for_a_new_id() {
        assert_eq!(bumped(42, 0), Some((42, 1)));
        assert_eq!(bumped(42, i16::MAX - 2), Some((42, i16::MAX - 1)));
        assert_eq!(bumped(42, i16::MAX - 1), None);
        assert_eq!(bumped(-1, -1), None, "a first init");
        assert_eq!(bumped(42, -1), None);
    }
}

//! The outbox forwarder: the task that delivers what `acks=local` produces left in this
//! node's outbox, through the gateway's router, oldest batch of each partition first.
//!
//! It only delivers and drops delivered batches; what enters the outbox and how it is
//! stored belong to `crate::outbox`.

use super::Gateway;
use meshlog_protocol::messages::{ClientRequest, ProduceRequest};
use meshlog_protocol::types::Acks;
use std::sync::Arc;
use std::time::Duration;

/// How long the forwarder waits before retrying partitions it could not deliver to.
const OUTBOX_RETRY: Duration = Duration::from_millis(500);

/// The produce timeout of a delivery, as a client's `acks=all` produce would carry.
const DELIVERY_TIMEOUT_MS: u32 = 10_000;

/// Deliver the outbox: the oldest batch of each partition, in order, until the node
/// stops. A batch leaves the outbox only once the partition's leader acknowledged it
/// with `acks=all` (a retry after a lost answer is recognised as a duplicate).
pub async fn forward_outbox(gw: Arc<Gateway>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let mut stuck = false;
        for ((topic, partition), key) in gw.outbox.heads() {
            stuck |= !deliver_head(&gw, topic, partition, &key).await;
        }
        let idle = gw.outbox.heads().is_empty();
        tokio::select! {
            _ = gw.outbox.wake.notified(), if idle => {}
            _ = tokio::time::sleep(OUTBOX_RETRY), if stuck => {}
            _ = std::future::ready(()), if !idle && !stuck => {}
            _ = crate::sync::stopped(&mut shutdown) => return,
        }
    }
}

/// Deliver the batch at `key`, the oldest of `topic`-`partition`, and drop it once
/// acknowledged. False when it stays queued (unreadable, or not delivered yet).
async fn deliver_head(gw: &Gateway, topic: String, partition: u32, key: &[u8]) -> bool {
    let part = (topic, partition);
    let bytes = match gw.outbox.read(key) {
        Ok(Some(b)) => b,
        Ok(None) => {
            // Listed but not stored: nothing to deliver; drop it rather than spin.
            let _ = gw.outbox.delivered(&part, key);
            return true;
        }
        Err(e) => {
            tracing::warn!(topic = %part.0, partition, error = %e, "outbox: cannot read a queued batch");
            return false;
        }
    };
    let req = ProduceRequest {
        topic: part.0.clone(),
        partition,
        acks: Acks::All,
        timeout_ms: DELIVERY_TIMEOUT_MS,
        leader_epoch: None,
        batch: bytes,
    };
    match gw.router.route(&part.0, partition, ClientRequest::Produce(req)).await {
        Ok(_) => {
            if let Err(e) = gw.outbox.delivered(&part, key) {
                tracing::error!(topic = %part.0, partition, error = %e, "outbox: cannot drop a delivered batch");
            }
            true
        }
        Err(e) => {
            tracing::debug!(topic = %part.0, partition, error = %e, "outbox: delivery deferred");
            false
        }
    }
}

//! Store-and-forward for edge nodes: `acks=local` batches are made durable in this
//! node's outbox and acknowledged as *accepted locally*; a forwarder delivers them to
//! the partition's log in order, exactly once, whenever the partition's owner can be
//! reached. Exactly once comes from the idempotent producer: the node stamps every
//! outbox batch with its own producer id and a per-partition sequence (made durable
//! before the ack), so a delivery retried after a lost answer is recognised by the owner
//! and not written twice.
//!
//! Owns the queue and the stamping only: it sends nothing itself
//! (`gateway::forward_outbox` delivers), and its keys are [`crate::storage::keys`]'.

use crate::storage::{keys, GroupCommit, KvTree, StorageError, Store};
use meshlog_protocol::batch;
use meshlog_protocol::mesh::OutboxDepth;
use meshlog_protocol::{ErrorCode, WireError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

type Part = (String, u32);

#[derive(Default)]
struct Queue {
    /// Storage keys and sizes of queued batches, oldest first.
    items: VecDeque<(Vec<u8>, usize)>,
    /// The sequence the next batch of this partition gets.
    next_seq: i32,
}

/// The outbox of this node.
pub struct Outbox {
    store: Arc<Store>,
    commit: GroupCommit,
    tree: KvTree,
    producer_id: i64,
    max_bytes: u64,
    state: Mutex<(BTreeMap<Part, Queue>, u64, u64)>,
    /// Woken when something is queued.
    pub wake: Notify,
}

fn storage(e: StorageError) -> WireError {
    WireError::new(ErrorCode::StorageError, e.to_string())
}

impl Outbox {
    /// Open the outbox (recovering queued batches) with a size bound.
    pub fn open(store: Arc<Store>, commit: GroupCommit, max_bytes: u64) -> Result<Outbox, StorageError> {
        let tree = store.kv(keys::OUTBOX_TREE)?;
        let producer_id = match store.meta_get(keys::OUTBOX_PRODUCER_ID)? {
            Some(b) => <[u8; 8]>::try_from(&*b).map(i64::from_be_bytes).unwrap_or(1),
            None => {
                // Positive and random: unique across nodes with overwhelming probability.
                let id = (rand::random::<u64>() >> 1) as i64;
                store.meta_put(keys::OUTBOX_PRODUCER_ID, &id.to_be_bytes())?;
                id
            }
        };
        let mut queues: BTreeMap<Part, Queue> = BTreeMap::new();
        let (mut total, mut next) = (0u64, 0u64);
        for (k, v) in tree.entries()? {
            let Some((topic, p, n)) = keys::parse_outbox_item(&k) else { continue };
            queues.entry((topic, p)).or_default().items.push_back((k, v.len()));
            total += v.len() as u64;
            next = next.max(n + 1);
        }
        for (key, v) in store.meta_scan(keys::OUTBOX_SEQ_PREFIX)? {
            let (Some((t, p)), Ok(seq)) =
                (keys::parse_outbox_seq(&key), <[u8; 4]>::try_from(&*v).map(i32::from_be_bytes))
            else {
                continue;
            };
            queues.entry((t.to_string(), p)).or_default().next_seq = seq;
        }
        let state = Mutex::new((queues, total, next));
        Ok(Outbox { store, commit, tree, producer_id, max_bytes, state, wake: Notify::new() })
    }

    /// Queue a batch for `topic`-`partition`; durable when this returns.
    pub async fn enqueue(&self, topic: &str, partition: u32, mut bytes: Vec<u8>) -> Result<(), WireError> {
        let header = batch::parse_header(&bytes)
            .map_err(|e| WireError::new(ErrorCode::CorruptMessage, format!("invalid record batch: {e}")))?;
        if header.has_producer_id() {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                "acks=local batches must not carry a producer id: the node stamps its own",
            ));
        }
        {
            let mut st = crate::sync::lock(&self.state);
            let (queues, total, next) = &mut *st;
            if *total + bytes.len() as u64 > self.max_bytes {
                return Err(WireError::new(
                    ErrorCode::OutboxFull,
                    format!(
                        "outbox full: {total} of {} bytes queued; accepting again as it drains",
                        self.max_bytes
                    ),
                ));
            }
            let q = queues.entry((topic.to_string(), partition)).or_default();
            batch::set_producer(&mut bytes, self.producer_id, 0, q.next_seq)
                .map_err(|e| WireError::new(ErrorCode::CorruptMessage, e.to_string()))?;
            q.next_seq = batch::increment_sequence(q.next_seq, header.last_offset_delta.saturating_add(1));
            let key = keys::outbox_item(topic, partition, *next);
            *next += 1;
            self.tree.put(&key, &bytes).map_err(storage)?;
            let seq_key = keys::outbox_seq(topic, partition);
            self.store.meta_put(&seq_key, &q.next_seq.to_be_bytes()).map_err(storage)?;
            q.items.push_back((key, bytes.len()));
            *total += bytes.len() as u64;
        }
        self.commit.flush().await.map_err(storage)?;
        self.wake.notify_one();
        Ok(())
    }

    /// The oldest queued batch of every partition that has one.
    pub fn heads(&self) -> Vec<(Part, Vec<u8>)> {
        let st = crate::sync::lock(&self.state);
        st.0.iter().filter_map(|(part, q)| q.items.front().map(|(k, _)| (part.clone(), k.clone()))).collect()
    }

    /// The stored bytes under `key`.
    pub fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree.get(key)?.map(|b| b.to_vec()))
    }

    /// The head of `part` was delivered: drop it.
    pub fn delivered(&self, part: &Part, key: &[u8]) -> Result<(), StorageError> {
        self.tree.remove(key)?;
        let mut st = crate::sync::lock(&self.state);
        let (queues, total, _) = &mut *st;
        if let Some(q) = queues.get_mut(part) {
            if q.items.front().is_some_and(|(k, _)| k == key) {
                let (_, len) = q.items.pop_front().unwrap_or_default();
                *total = total.saturating_sub(len as u64);
            }
        }
        Ok(())
    }

    /// Queued batches and bytes per partition, for `cluster status`.
    pub fn depth(&self) -> Vec<OutboxDepth> {
        let st = crate::sync::lock(&self.state);
        st.0.iter()
            .filter(|(_, q)| !q.items.is_empty())
            .map(|((topic, partition), q)| OutboxDepth {
                topic: topic.clone(),
                partition: *partition,
                batches: q.items.len() as u64,
                bytes: q.items.iter().map(|(_, n)| *n as u64).sum(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreOptions;
    use meshlog_protocol::batch::BatchBuilder;

    fn batch(n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(1, None, Some(format!("r{i}").as_bytes()), &[]);
        }
        b.build().unwrap()
    }

    #[tokio::test]
    async fn batches_get_consecutive_sequences_survive_reopen_and_respect_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open(
                dir.path(),
                &StoreOptions { cache_capacity_bytes: 8 << 20, segment_bytes: crate::storage::SEGMENT_BYTES },
            )
            .unwrap(),
        );
        let commit = GroupCommit::start(store.clone()).unwrap();
        // Reopening over the same store recovers the queue from what it persisted.
        let open = || Outbox::open(store.clone(), commit.clone(), 400).unwrap();
        let ob = open();
        ob.enqueue("t", 0, batch(3)).await.unwrap();
        ob.enqueue("t", 0, batch(2)).await.unwrap();
        let heads = ob.heads();
        let first = ob.read(&heads[0].1).unwrap().unwrap();
        let h = batch::validate(&first, 1 << 20).unwrap();
        assert_eq!((h.producer_id, h.base_sequence), (ob.producer_id, 0));
        ob.delivered(&heads[0].0, &heads[0].1).unwrap();
        let second = ob.read(&ob.heads()[0].1).unwrap().unwrap();
        assert_eq!(batch::parse_header(&second).unwrap().base_sequence, 3, "sequences continue");
        let err = ob.enqueue("t", 0, batch(40)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::OutboxFull, "{err}");
        let id = ob.producer_id;
        drop(ob);
        let ob = open();
        assert_eq!(ob.producer_id, id, "the producer id is kept");
        assert_eq!(ob.depth()[0].batches, 1, "the undelivered batch is still queued");
        ob.enqueue("t", 0, batch(1)).await.unwrap();
        let last = ob.read(&ob.heads()[0].1).unwrap().unwrap();
        assert_eq!(batch::parse_header(&last).unwrap().base_sequence, 3, "head is still the second batch");
    }
}

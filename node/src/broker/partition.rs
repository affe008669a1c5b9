//! One partition replica's stored log on this node: recovery of the entries the replica
//! core needs, the storage operations its driver executes (store, truncate), reads up to
//! the high watermark, long-poll waits, retention and compaction (in [`compact`]).
//!
//! Offsets are dense and start at 0. A batch is stored exactly as the producer sent it,
//! with only its base offset and partition leader epoch written in, both outside the
//! CRC. The high watermark (HW) is the replica core's commit point, set by the driver;
//! it never moves back, and consumers see only what is below it. It is also saved in
//! the metadata so a restarted replica serves committed data at once.

mod compact;

pub use compact::CompactStats;

use crate::replica::{self, Entry, Epoch, ProducerSeq, ProducerState};
use crate::storage::{keys, PartitionLog, StorageError, Store, StoredBytes};
use meshlog_protocol::batch::{self, BatchHeader};
use meshlog_protocol::messages::FetchResponse;
use meshlog_protocol::types::{CleanupPolicy, OffsetSpec, TopicConfig};
use meshlog_protocol::{ErrorCode, WireError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Mutable bookkeeping, guarded by one short-lived lock.
#[derive(Debug, Clone)]
struct State {
    log_start: u64,
    /// The epoch of the batch just below `log_start` (0 if none was ever deleted).
    start_epoch: Epoch,
    /// The producer state of the batches deleted below `log_start`.
    deleted_producers: Vec<ProducerState>,
    log_end: u64,
    size_bytes: u64,
    /// Set when the store returned a corrupt batch: the partition stops serving.
    failed: Option<String>,
    /// Set when a write or flush failed: the replica stops, reads go on.
    write_failed: Option<String>,
}

/// A partition's log and its offsets.
pub struct Partition {
    topic: String,
    id: u32,
    log: PartitionLog,
    store: Arc<Store>,
    state: Mutex<State>,
    /// Held while the log's head moves (retention, compaction, a reset), so that no two
    /// of them interleave their saves and deletions.
    head: Mutex<()>,
    hw: watch::Sender<u64>,
}

fn storage_err(e: StorageError) -> WireError {
    WireError::new(ErrorCode::StorageError, e.to_string())
}

impl Partition {
    /// Open the partition's log and recover its offsets and entries (for the replica
    /// core) from what the store holds. A batch that fails to parse ends the recovered
    /// log there and marks the partition failed.
    pub fn open(store: Arc<Store>, topic: &str, id: u32) -> Result<(Partition, Vec<Entry>), StorageError> {
        let log = store.log(topic, id)?;
        let (saved_start, start_epoch) = read_start(&store, topic, id)?;
        let deleted_producers = match store.meta_get(&keys::producers(topic, id))? {
            Some(b) => meshlog_protocol::codec::decode(&b)
                .map_err(|e| StorageError::decode(format!("producer state of {topic}-{id}"), e))?,
            None => Vec::new(),
        };
        let mut state = State {
            log_start: saved_start,
            start_epoch,
            deleted_producers,
            log_end: saved_start,
            size_bytes: 0,
            failed: None,
            write_failed: None,
        };
        // A head deletion saved its new start before the crash, but the batches below it
        // may still sit in a segment that was in use: forget them.
        log.remove_below(saved_start)?;
        if let Some((base, _)) = log.first()? {
            state.log_start = base.max(saved_start);
            state.log_end = state.log_start;
        }
        let mut entries = Vec::new();
        for entry in log.iter() {
            let (base, bytes) = entry?;
            match batch::parse_header(&bytes) {
                Ok(h) if base == state.log_end || entries.is_empty() => {
                    state.size_bytes += bytes.len() as u64;
                    let e = as_entry(base, &h);
                    state.log_end = e.end();
                    entries.push(e);
                }
                Ok(_) => {
                    state.failed = Some(format!("gap in the log before offset {base}"));
                    break;
                }
                Err(e) => {
                    state.failed = Some(format!("corrupt batch at offset {base}: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = log.corruption() {
            state.failed.get_or_insert(why);
        }
        if let Some(why) = &state.failed {
            tracing::error!(topic, partition = id, %why, "partition refuses to serve");
        }
        let saved_hw = read_u64(&store, &keys::high_watermark(topic, id))?.unwrap_or(0);
        let (hw, _) = watch::channel(saved_hw.min(state.log_end).max(state.log_start));
        let part = Partition {
            topic: topic.to_string(),
            id,
            log,
            store,
            state: Mutex::new(state),
            head: Mutex::new(()),
            hw,
        };
        Ok((part, entries))
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partition number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Why the partition does not serve, if it does not.
    pub fn failure(&self) -> Option<String> {
        self.state().failed.clone()
    }

    /// Record that a write or flush failed: the replica stops (no more writes or
    /// replication until a restart), while what is committed is still served.
    pub fn mark_write_failed(&self, why: String) {
        self.state().write_failed = Some(why);
    }

    /// Why writes stopped, if they did (see [`Partition::mark_write_failed`]).
    pub fn write_failure(&self) -> Option<String> {
        let st = self.state();
        st.failed.clone().or_else(|| st.write_failed.clone())
    }

    /// Store a batch at `base` (durable after the next flush). A failed write marks
    /// the partition failed: the replica stops, since its core believes the write made.
    pub fn store_batch(&self, base: u64, bytes: &[u8], count: u32) -> Result<(), StorageError> {
        if let Err(e) = self.log.append(base, bytes) {
            self.state().write_failed = Some(format!("write at offset {base} failed: {e}"));
            return Err(e);
        }
        let mut st = self.state();
        st.log_end = base + count as u64;
        st.size_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Delete every batch at or after `end` (an entry boundary); durable after the next
    /// flush.
    pub fn truncate(&self, end: u64) -> Result<(), StorageError> {
        let doomed = self.log.read(end, u64::MAX, usize::MAX)?;
        self.log.truncate(end)?;
        let cut: u64 = doomed.iter().filter(|(b, _)| *b >= end).map(|(_, bytes)| bytes.len() as u64).sum();
        let mut st = self.state();
        st.size_bytes -= cut;
        st.log_end = st.log_end.min(end).max(st.log_start);
        Ok(())
    }

    /// The stored batches from `from` (a batch base) up to `to`, stopping past
    /// `max_bytes` (at least one batch).
    pub fn read_batches(
        &self,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, StoredBytes)>, StorageError> {
        Ok(self.log.read(from, to, max_bytes)?.into_iter().filter(|(b, _)| *b >= from).collect())
    }

    /// Move the high watermark forward to `hw` (never back) and save it.
    pub fn set_hw(&self, hw: u64) {
        if advance(&self.hw, hw) {
            if let Err(e) =
                self.store.meta_put(&keys::high_watermark(&self.topic, self.id), &hw.to_be_bytes())
            {
                tracing::warn!(topic = %self.topic, partition = self.id, error = %e, "cannot save the high watermark");
            }
        }
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> u64 {
        *self.hw.borrow()
    }

    /// The epoch of the batch just below the log start (what the replica core compares
    /// for a log whose head was deleted).
    pub fn start_epoch(&self) -> Epoch {
        self.state().start_epoch
    }

    /// The producer state of the batches deleted below the log start.
    pub fn deleted_producers(&self) -> Vec<ProducerState> {
        self.state().deleted_producers.clone()
    }

    /// The log start with the producer state of what lies below it, read together.
    pub fn start_and_deleted_producers(&self) -> (u64, Vec<ProducerState>) {
        let st = self.state();
        (st.log_start, st.deleted_producers.clone())
    }

    fn head(&self) -> std::sync::MutexGuard<'_, ()> {
        crate::sync::lock(&self.head)
    }

    /// Save `start` as the log's first offset, `epoch` as that of the batch below it,
    /// and the producer state of everything below it (durable after the next flush).
    fn save_start(
        &self,
        start: u64,
        epoch: Epoch,
        producers: Vec<ProducerState>,
    ) -> Result<(), StorageError> {
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&start.to_be_bytes());
        value[8..].copy_from_slice(&epoch.get().to_be_bytes());
        let encoded = meshlog_protocol::codec::encode(&producers)
            .map_err(|e| StorageError::encode("producer state", e))?;
        self.store.meta_put(&keys::producers(&self.topic, self.id), &encoded)?;
        self.store.meta_put(&keys::log_start(&self.topic, self.id), &value)
    }

    /// Take `start`, `epoch` and `producers` as the partition's log start.
    fn started_at(&self, start: u64, epoch: Epoch, producers: Vec<ProducerState>) {
        let mut st = self.state();
        (st.log_start, st.start_epoch, st.deleted_producers) = (start, epoch, producers);
    }

    /// Delete the leading batches `doomed` (base, entry, stored bytes), which start at
    /// the log start, under the head lock: the new start, its epoch and the producer
    /// state are saved and flushed first, so that a crash after a segment file went
    /// never finds a log that forgot where it starts or who wrote what it lost.
    /// Returns how many batches went.
    fn delete_head(&self, doomed: &[(u64, Entry, u64)]) -> Result<usize, StorageError> {
        let (Some(first), Some(last)) = (doomed.first(), doomed.last()) else { return Ok(0) };
        let (start, before) = {
            let st = self.state();
            (st.log_start, st.deleted_producers.clone())
        };
        // A pending reset moved the start past these batches; they go with it. (A pass
        // that failed half-way moved nothing: its retry finds the same start.)
        if first.0 < start {
            return Ok(0);
        }
        let entries: Vec<Entry> = doomed.iter().map(|d| d.1).collect();
        let producers = replica::producers_after(&before, &entries);
        self.save_start(last.1.end(), last.1.epoch, producers.clone())?;
        self.store.flush()?;
        for (base, _, _) in doomed {
            self.log.remove(*base)?;
        }
        self.started_at(last.1.end(), last.1.epoch, producers);
        let bytes: u64 = doomed.iter().map(|d| d.2).sum();
        let mut st = self.state();
        st.size_bytes = st.size_bytes.saturating_sub(bytes);
        Ok(doomed.len())
    }

    /// A follower's log fell below its leader's start: save the new start, its epoch and
    /// the leader's producer state of what lies below it. Flush before
    /// [`Partition::reset`], so that a crash between the two leaves a log that knows
    /// where it starts (reopened, it forgets the batches below the start).
    pub fn save_reset_start(
        &self,
        start: u64,
        start_epoch: Epoch,
        producers: Vec<ProducerState>,
    ) -> Result<(), StorageError> {
        let _head = self.head();
        if start < self.state().log_start {
            return Err(StorageError::refused(
                "reset",
                format!("{}-{}: a reset to {start} would move the log start back", self.topic, self.id),
            ));
        }
        self.save_start(start, start_epoch, producers.clone())?;
        self.started_at(start, start_epoch, producers);
        Ok(())
    }

    /// Drop every batch: the log continues, empty, from the start saved by
    /// [`Partition::save_reset_start`] (which must be durable); the rest is durable after
    /// the next flush.
    pub fn reset(&self) -> Result<(), StorageError> {
        let _head = self.head();
        self.log.truncate(0)?;
        let mut st = self.state();
        (st.log_end, st.size_bytes) = (st.log_start, 0);
        Ok(())
    }

    /// (log start, log end, bytes stored).
    pub fn offsets(&self) -> (u64, u64, u64) {
        let st = self.state();
        (st.log_start, st.log_end, st.size_bytes)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    fn check_serving(&self) -> Result<(), WireError> {
        match &self.state().failed {
            None => Ok(()),
            Some(why) => Err(WireError::new(
                ErrorCode::StorageError,
                format!(
                    "partition {}-{} is not served: {why}; it needs repair or a catch-up from a healthy replica",
                    self.topic, self.id
                ),
            )),
        }
    }

    /// Read whole batches from `offset` up to the HW, waiting up to `max_wait` for data
    /// when `offset` is at or above the HW. An offset above the HW but within the log is
    /// not out of range (as in Kafka): after a restart this replica's HW starts from the
    /// saved one, which may lag what consumers have already read.
    pub async fn fetch(
        &self,
        offset: u64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<FetchResponse, WireError> {
        self.check_serving()?;
        let mut rx = self.hw.subscribe();
        let (log_start, log_end) = {
            let st = self.state();
            (st.log_start, st.log_end)
        };
        let hw = *rx.borrow_and_update();
        let end = hw.max(log_end);
        if offset < log_start || offset > end {
            return Err(WireError::new(
                ErrorCode::OffsetOutOfRange,
                format!(
                    "offset {offset} is out of range for {}-{}: valid offsets are {log_start}..={end}",
                    self.topic, self.id
                ),
            ));
        }
        if offset >= hw && !max_wait.is_zero() {
            let _ = tokio::time::timeout(max_wait, rx.wait_for(|&h| h > offset)).await;
        }
        let hw = *self.hw.borrow();
        let log_start = self.state().log_start;
        let mut records = Vec::new();
        if offset < hw {
            for (base, bytes) in self.log.read(offset, hw, max_bytes).map_err(storage_err)? {
                if let Err(e) = batch::verify_crc(&bytes) {
                    return Err(self.fail(format!("corrupt batch at offset {base}: {e}")));
                }
                records.extend_from_slice(&bytes);
            }
        }
        Ok(FetchResponse { high_watermark: hw, log_start_offset: log_start, records })
    }

    fn fail(&self, why: String) -> WireError {
        tracing::error!(topic = %self.topic, partition = self.id, %why, "partition stops serving");
        self.state().failed = Some(why.clone());
        WireError::new(
            ErrorCode::CorruptMessage,
            format!("{}-{}: {why}; the partition stops serving", self.topic, self.id),
        )
    }

    /// Resolve an offset spec against the log.
    pub fn list_offset(&self, spec: OffsetSpec) -> Result<u64, WireError> {
        self.check_serving()?;
        let hw = *self.hw.borrow();
        match spec {
            OffsetSpec::Earliest => Ok(self.state().log_start),
            OffsetSpec::Latest => Ok(hw),
            OffsetSpec::Timestamp(ts) => self.offset_for_time(ts, hw),
        }
    }

    fn offset_for_time(&self, ts: i64, hw: u64) -> Result<u64, WireError> {
        for entry in self.log.iter() {
            let (base, bytes) = entry.map_err(storage_err)?;
            if base >= hw {
                break;
            }
            let h = batch::parse_header(&bytes)
                .map_err(|e| WireError::new(ErrorCode::CorruptMessage, e.to_string()))?;
            if h.max_timestamp < ts || h.is_control() {
                continue;
            }
            let recs = batch::records(&bytes)
                .map_err(|e| WireError::new(ErrorCode::CorruptMessage, e.to_string()))?;
            if let Some(r) = recs.iter().find(|r| r.timestamp >= ts) {
                return Ok(r.offset as u64);
            }
        }
        Ok(hw)
    }

    /// Delete the oldest batches past `retention.ms` or `retention.bytes`. Only batches
    /// wholly below the HW are deleted, and never the last one (as Kafka keeps its active
    /// segment): a replica's last batch is where its log's last epoch is read from after
    /// a restart. Returns how many batches were removed. A compacted topic
    /// (`cleanup.policy=compact`) keeps its batches: nothing is deleted.
    pub fn enforce_retention(&self, config: &TopicConfig, now_ms: i64) -> Result<usize, StorageError> {
        if config.cleanup_policy == CleanupPolicy::Compact {
            return Ok(0);
        }
        let _head = self.head();
        let hw = *self.hw.borrow();
        let Some((last_base, _)) = self.log.last()? else { return Ok(0) };
        let mut size = self.state().size_bytes;
        let mut doomed = Vec::new();
        for entry in self.log.iter() {
            let (base, bytes) = entry?;
            let Ok(h) = batch::parse_header(&bytes) else {
                break;
            };
            let e = as_entry(base, &h);
            let too_old =
                config.retention_ms.is_some_and(|ms| h.max_timestamp < now_ms.saturating_sub(ms as i64));
            let too_big = config.retention_bytes.is_some_and(|max| size > max);
            if e.end() > hw || base >= last_base || !(too_old || too_big) {
                break;
            }
            size = size.saturating_sub(bytes.len() as u64);
            doomed.push((base, e, bytes.len() as u64));
        }
        self.delete_head(&doomed)
    }
}

fn advance(hw: &watch::Sender<u64>, end: u64) -> bool {
    hw.send_if_modified(|h| {
        let moved = end > *h;
        if moved {
            *h = end;
        }
        moved
    })
}

/// The saved log start and the epoch below it: 16 bytes, or 8 (an older node's
/// record, without the epoch), or nothing (a log that never lost its head).
fn read_start(store: &Store, topic: &str, id: u32) -> Result<(u64, Epoch), StorageError> {
    let Some(b) = store.meta_get(&keys::log_start(topic, id))? else { return Ok((0, Epoch::new(0))) };
    let word = |i: usize| b.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map(u64::from_be_bytes);
    match (b.len(), word(0), word(8)) {
        (16, Some(start), Some(epoch)) => Ok((start, Epoch::new(epoch))),
        (8, Some(start), _) => Ok((start, Epoch::new(0))),
        _ => Err(StorageError::Damaged {
            what: format!("partition {topic}-{id}"),
            reason: format!("a saved log start of {} bytes, not 8 or 16", b.len()),
        }),
    }
}

fn read_u64(store: &Store, key: &str) -> Result<Option<u64>, StorageError> {
    Ok(store.meta_get(key)?.and_then(|b| <[u8; 8]>::try_from(&*b).ok()).map(u64::from_be_bytes))
}

/// An idempotent producer's sequence range of a batch, if it has one.
pub fn producer_seq(h: &BatchHeader) -> Option<ProducerSeq> {
    h.has_producer_id().then(|| ProducerSeq {
        id: h.producer_id,
        epoch: h.producer_epoch,
        first_seq: h.base_sequence,
        last_seq: batch::increment_sequence(h.base_sequence, h.last_offset_delta),
    })
}

/// A stored batch as the replica core sees it: the epoch is the batch's partition
/// leader epoch (batches stored before replication carry -1: epoch 0), a control batch
/// is a leader's epoch-start marker.
pub fn as_entry(base: u64, h: &BatchHeader) -> Entry {
    // Validation refuses a negative lastOffsetDelta; were one to get here, it covers one
    // offset rather than overflowing (-1 as u32 + 1).
    let count = (h.last_offset_delta.max(0) as u32).saturating_add(1);
    let epoch = Epoch::new(h.partition_leader_epoch.max(0) as u64);
    Entry { base, count, epoch, producer: producer_seq(h), epoch_start: h.is_control() }
}

/// Validate a producer's batch: structure, CRC, size and the features this node supports.
pub fn check_batch(bytes: &[u8], config: &TopicConfig) -> Result<BatchHeader, WireError> {
    let max = config.max_message_bytes as usize;
    let header = batch::validate(bytes, max).map_err(|e| match e {
        batch::BatchError::TooLarge { size, max } => WireError::new(
            ErrorCode::MessageTooLarge,
            format!("record batch of {size} bytes exceeds max.message.bytes={max}"),
        ),
        other => WireError::new(ErrorCode::CorruptMessage, format!("invalid record batch: {other}")),
    })?;
    if header.is_transactional() || header.is_control() {
        return Err(WireError::new(
            ErrorCode::InvalidRequest,
            "transactional and control batches are not supported",
        ));
    }
    Ok(header)
}

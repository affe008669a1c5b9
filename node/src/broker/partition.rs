//! One partition's log on this node: offset assignment, durable appends, reads up to
//! the high watermark, long-poll waits, retention and recovery.
//!
//! Offsets are dense and start at 0. A batch is stored exactly as the producer sent it,
//! with only its base offset (and partition leader epoch) written in, both outside the
//! CRC. The high watermark (HW) is the end of the durable prefix: it moves only after a
//! group-commit flush that began after the append, and never moves back. Consumers see
//! only what is below the HW.

use crate::replica::producers::{Check, Producers};
use crate::replica::{Entry, Epoch, ProducerSeq};
use crate::storage::{GroupCommit, PartitionLog, StorageError, Store};
use meshlog_protocol::batch::{self, BatchHeader};
use meshlog_protocol::messages::{FetchResponse, ProduceResponse};
use meshlog_protocol::types::{Acks, OffsetSpec, PartitionStatus, TopicConfig};
use meshlog_protocol::{ErrorCode, WireError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The leader epoch written into batches until replication elects epochs.
const SINGLE_NODE_EPOCH: i32 = 0;

/// Mutable bookkeeping, guarded by one short-lived lock.
#[derive(Debug, Clone)]
struct State {
    log_start: u64,
    log_end: u64,
    size_bytes: u64,
    /// Set when the store returned a corrupt batch: the partition stops serving.
    failed: Option<String>,
    /// Idempotent producers' recent sequences, rebuilt from the log's batch headers.
    producers: Producers,
}

/// A partition's log and its offsets.
pub struct Partition {
    topic: String,
    id: u32,
    log: PartitionLog,
    store: Arc<Store>,
    commit: GroupCommit,
    state: Mutex<State>,
    hw: watch::Sender<u64>,
}

fn storage_err(e: StorageError) -> WireError {
    WireError::new(ErrorCode::StorageError, e.to_string())
}

impl Partition {
    /// Open the partition's log and recover its offsets from what the store holds.
    pub fn open(
        store: Arc<Store>,
        commit: GroupCommit,
        topic: &str,
        id: u32,
    ) -> Result<Partition, StorageError> {
        let log = store.log(topic, id)?;
        let saved_start = match store.meta_get(&log_start_key(topic, id))? {
            Some(b) => <[u8; 8]>::try_from(&*b).map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        };
        let mut state = State {
            log_start: saved_start,
            log_end: saved_start,
            size_bytes: 0,
            failed: None,
            producers: Producers::default(),
        };
        if let Some((base, _)) = log.first()? {
            state.log_start = base.max(saved_start);
        }
        for entry in log.iter() {
            let (base, bytes) = entry?;
            state.size_bytes += bytes.len() as u64;
            match batch::parse_header(&bytes) {
                Ok(h) => {
                    state.log_end = state.log_end.max(base + h.last_offset_delta as u64 + 1);
                    state.producers.observe(&as_entry(base, &h));
                }
                Err(e) => {
                    state.failed = Some(format!("corrupt batch at offset {base}: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = &state.failed {
            tracing::error!(topic, partition = id, %why, "partition refuses to serve");
        }
        let (hw, _) = watch::channel(state.log_end);
        Ok(Partition { topic: topic.to_string(), id, log, store, commit, state: Mutex::new(state), hw })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Append one producer batch and answer per `acks`.
    pub async fn append(
        &self,
        mut bytes: Vec<u8>,
        acks: Acks,
        config: &TopicConfig,
        timeout: Duration,
    ) -> Result<ProduceResponse, WireError> {
        self.check_serving()?;
        let header = check_batch(&bytes, config)?;
        let count = header.last_offset_delta as u64 + 1;
        let (base, duplicate) = {
            let mut st = self.state();
            match producer_seq(&header).map(|p| st.producers.check(&p)) {
                Some(Check::Duplicate { base, .. }) => (base, true),
                Some(Check::OutOfOrder { expected }) => {
                    return Err(WireError::new(
                        ErrorCode::OutOfOrderSequenceNumber,
                        format!(
                            "producer {} sent sequence {} but {expected} was expected next",
                            header.producer_id, header.base_sequence
                        ),
                    ))
                }
                Some(Check::Fenced) => {
                    return Err(WireError::new(
                        ErrorCode::InvalidProducerEpoch,
                        format!(
                            "producer {} epoch {} is fenced by a newer epoch",
                            header.producer_id, header.producer_epoch
                        ),
                    ))
                }
                Some(Check::Fresh) | None => {
                    let base = st.log_end;
                    // Both fields are outside the CRC; the slice was validated to hold a header.
                    let _ = batch::set_base_offset(&mut bytes, base as i64);
                    let _ = batch::set_partition_leader_epoch(&mut bytes, SINGLE_NODE_EPOCH);
                    self.log.append(base, &bytes).map_err(storage_err)?;
                    st.log_end = base + count;
                    st.size_bytes += bytes.len() as u64;
                    st.producers.observe(&as_entry(base, &header));
                    (base, false)
                }
            }
        };
        let end = base + count;
        let response = ProduceResponse {
            base_offset: Some(base),
            record_count: count as u32,
            accepted_locally: false,
            duplicate,
        };
        if acks == Acks::None {
            // Fire-and-forget still makes the data durable and visible soon.
            let commit = self.commit.clone();
            let hw = self.hw.clone();
            tokio::spawn(async move {
                if commit.flush().await.is_ok() {
                    advance(&hw, end);
                }
            });
            return Ok(response);
        }
        match tokio::time::timeout(timeout, self.commit.flush()).await {
            Ok(Ok(())) => {
                advance(&self.hw, end);
                Ok(response)
            }
            Ok(Err(e)) => Err(storage_err(e)),
            Err(_) => Err(WireError::new(
                ErrorCode::RequestTimedOut,
                format!(
                    "batch at offset {base} of {}-{} was not flushed within {} ms; it may still become durable",
                    self.topic,
                    self.id,
                    timeout.as_millis()
                ),
            )),
        }
    }

    /// Read whole batches from `offset` up to the HW, waiting up to `max_wait` for data
    /// when `offset` is exactly at the HW.
    pub async fn fetch(
        &self,
        offset: u64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<FetchResponse, WireError> {
        self.check_serving()?;
        let mut rx = self.hw.subscribe();
        let log_start = self.state().log_start;
        let hw = *rx.borrow_and_update();
        if offset < log_start || offset > hw {
            return Err(WireError::new(
                ErrorCode::OffsetOutOfRange,
                format!(
                    "offset {offset} is out of range for {}-{}: valid offsets are {log_start}..={hw}",
                    self.topic, self.id
                ),
            ));
        }
        if offset == hw && !max_wait.is_zero() {
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
            if h.max_timestamp < ts {
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
    /// wholly below the HW are deleted. Returns how many batches were removed.
    pub fn enforce_retention(&self, config: &TopicConfig, now_ms: i64) -> Result<usize, StorageError> {
        let hw = *self.hw.borrow();
        let mut removed = 0;
        for entry in self.log.iter() {
            let (base, bytes) = entry?;
            let Ok(h) = batch::parse_header(&bytes) else {
                break;
            };
            let end = base + h.last_offset_delta as u64 + 1;
            let size = self.state().size_bytes;
            let too_old =
                config.retention_ms.is_some_and(|ms| h.max_timestamp < now_ms.saturating_sub(ms as i64));
            let too_big = config.retention_bytes.is_some_and(|max| size > max);
            if end > hw || !(too_old || too_big) {
                break;
            }
            // Record the new start first, so a crash between the two never loses it.
            self.store.meta_put(&log_start_key(&self.topic, self.id), &end.to_be_bytes())?;
            self.log.remove(base)?;
            let mut st = self.state();
            st.log_start = end;
            st.size_bytes -= bytes.len() as u64;
            removed += 1;
        }
        Ok(removed)
    }

    /// The partition's offsets and size; `replicas` is its replica set, owner first.
    pub fn status(&self, replicas: &[String]) -> PartitionStatus {
        let st = self.state().clone();
        PartitionStatus {
            partition: self.id,
            leader: replicas.first().cloned().unwrap_or_default(),
            replicas: replicas.to_vec(),
            log_start_offset: st.log_start,
            high_watermark: *self.hw.borrow(),
            log_end_offset: st.log_end,
            size_bytes: st.size_bytes,
            online: true,
            holders: Vec::new(),
        }
    }
}

fn advance(hw: &watch::Sender<u64>, end: u64) {
    hw.send_if_modified(|h| {
        let moved = end > *h;
        if moved {
            *h = end;
        }
        moved
    });
}

/// An idempotent producer's sequence range of a batch, if it has one.
fn producer_seq(h: &BatchHeader) -> Option<ProducerSeq> {
    h.has_producer_id().then(|| ProducerSeq {
        id: h.producer_id,
        epoch: h.producer_epoch,
        first_seq: h.base_sequence,
        last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
    })
}

/// A stored batch as the producer bookkeeping sees it.
fn as_entry(base: u64, h: &BatchHeader) -> Entry {
    let count = h.last_offset_delta as u32 + 1;
    Entry { base, count, epoch: Epoch(0), producer: producer_seq(h), epoch_start: false }
}

fn log_start_key(topic: &str, id: u32) -> String {
    format!("log_start/{topic}/{id}")
}

/// Validate a producer's batch: structure, CRC, size and the features this node supports.
fn check_batch(bytes: &[u8], config: &TopicConfig) -> Result<BatchHeader, WireError> {
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

//! Building one uncompressed batch from records, as Kafka's producer encodes it. The
//! builder only writes; what it writes passes [`super::validate`].

use super::records::Header;
use super::varint::{len_i32, put_varint, put_varlong, varint_len, varlong_len};
use super::{
    ATTRIBUTES_OFFSET, BATCH_HEADER_LEN, CRC_OFFSET, LOG_OVERHEAD, MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

/// Builds one uncompressed v2 batch. base_offset written as 0 (the leader assigns it).
///
/// `partitionLeaderEpoch` is written as -1 and attributes as 0 (no
/// compression, CreateTime, not transactional). `baseTimestamp` is the first
/// record's timestamp and `maxTimestamp` the largest, as Kafka's producer
/// writes them.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    count: usize,
    /// Encoded records, appended as they are pushed.
    records: Vec<u8>,
}

impl Default for BatchBuilder {
    /// Same as [`BatchBuilder::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// Encoded size of a nullable byte field (length prefix + bytes).
fn nullable_len(field: Option<&[u8]>) -> usize {
    match field {
        None => varint_len(-1),
        Some(b) => varint_len(len_i32(b.len())) + b.len(),
    }
}

/// Appends a nullable byte field: varint length (-1 for null) then bytes.
fn put_nullable(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b.len()));
            out.extend_from_slice(b);
        }
    }
}

impl BatchBuilder {
    /// A builder for a non-idempotent producer (producer id, epoch and base
    /// sequence all -1).
    pub fn new() -> Self {
        Self::with_producer(NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE)
    }

    /// A builder for an idempotent producer's batch.
    pub fn with_producer(producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        BatchBuilder {
            producer_id,
            producer_epoch,
            base_sequence,
            base_timestamp: 0,
            max_timestamp: 0,
            count: 0,
            records: Vec::new(),
        }
    }

    /// Appends a record with the next offset delta. Timestamps are stored as
    /// deltas from the first record's (wrapping, so any `i64` round-trips).
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        let offset_delta = len_i32(self.count);
        // The length prefix comes first, so the body size is computed
        // up front instead of encoding into a scratch buffer.
        let headers_len: usize = headers
            .iter()
            .map(|h| {
                varint_len(len_i32(h.key.len())) + h.key.len() + nullable_len(h.value.as_deref())
            })
            .sum();
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + nullable_len(key)
            + nullable_len(value)
            + varint_len(len_i32(headers.len()))
            + headers_len;
        let out = &mut self.records;
        out.reserve(varint_len(len_i32(body_len)) + body_len);
        put_varint(out, len_i32(body_len));
        out.push(0); // record attributes: unused in v2
        put_varlong(out, timestamp_delta);
        put_varint(out, offset_delta);
        put_nullable(out, key);
        put_nullable(out, value);
        put_varint(out, len_i32(headers.len()));
        for h in headers {
            put_varint(out, len_i32(h.key.len()));
            out.extend_from_slice(h.key.as_bytes());
            put_nullable(out, h.value.as_deref());
        }
        self.count += 1;
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size so far including the 61-byte header: exactly the length
    /// [`build`](Self::build) would return (for checking `batch.size`).
    pub fn size_bytes(&self) -> usize {
        BATCH_HEADER_LEN + self.records.len()
    }

    /// Encodes the header and CRC. Returns `None` if no record was pushed
    /// (Kafka rejects zero-record producer batches) or if the batch would
    /// exceed the `i32` limits of `batchLength`/`recordsCount`.
    pub fn build(self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let total = self.size_bytes();
        let batch_length = i32::try_from(total - LOG_OVERHEAD).ok()?;
        let count = i32::try_from(self.count).ok()?;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&NO_PARTITION_LEADER_EPOCH.to_be_bytes());
        out.extend_from_slice(&MAGIC_V2.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // CRC, patched below
        out.extend_from_slice(&0i16.to_be_bytes()); // attributes
        out.extend_from_slice(&(count - 1).to_be_bytes()); // lastOffsetDelta
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&self.records);
        let crc = crc32c::crc32c(out.get(ATTRIBUTES_OFFSET..)?);
        out.get_mut(CRC_OFFSET..ATTRIBUTES_OFFSET)?.copy_from_slice(&crc.to_be_bytes());
        Some(out)
    }
}

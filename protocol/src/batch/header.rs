//! The fixed 61-byte header of a batch: parsing it (never past the bytes present) and
//! patching, in place, the fields a leader or a re-sending node assigns. It does not
//! look at the records (see `records` and `validate`).

use super::varint::Reader;
use super::{
    BatchError, ATTRIBUTES_OFFSET, BATCH_HEADER_LEN, COMPRESSION_MASK, CONTROL_FLAG, CRC_OFFSET,
    LOG_OVERHEAD, MAGIC_V2, MIN_BATCH_LENGTH, NO_PRODUCER_ID, TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_FLAG,
};

/// The fixed 61-byte header of a v2 record batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Offset of the last record: `base_offset + last_offset_delta`
    /// (wrapping, as Java's `long` arithmetic does).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Total encoded size of the batch: `12 + batch_length`. A negative
    /// `batch_length` (impossible after [`parse_header`]) counts as 0.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD.saturating_add(usize::try_from(self.batch_length).unwrap_or(0))
    }

    /// Compression codec from attribute bits 0-2 (0 none, 1 gzip, 2 snappy,
    /// 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        // The mask keeps the value in 0..=7, so the cast cannot truncate.
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// True when attribute bit 4 (transactional) is set.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// True when attribute bit 5 (control batch) is set.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// True when attribute bit 3 is set: every record's timestamp is the
    /// batch's `max_timestamp` (LogAppendTime) instead of its own.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_MASK != 0
    }

    /// True when the batch carries a producer id (idempotent producer).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }
}

// ---------------------------------------------------------------------------
// Header parsing and in-place patching
// ---------------------------------------------------------------------------

/// Parse and check the fixed header only (length fields, magic); no CRC check. Never
/// panics on any input.
///
/// Checks that at least [`BATCH_HEADER_LEN`] bytes are present, that
/// `batchLength` can hold the header, that magic is 2 and that
/// `recordsCount` is not negative. It does not require `bytes` to contain
/// the whole batch, so it can be used on a prefix (e.g. to frame a stream).
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let mut r = Reader::new(bytes, 0);
    if r.remaining() < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated { needed: BATCH_HEADER_LEN, have: bytes.len() });
    }
    let base_offset = r.i64()?;
    let batch_length = r.i32()?;
    let partition_leader_epoch = r.i32()?;
    let magic = r.i8()?;
    // Magic first: another version has a different layout, so its length
    // field means something else and is not worth reporting.
    if magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(magic));
    }
    match usize::try_from(batch_length) {
        Ok(len) if len >= MIN_BATCH_LENGTH => {}
        _ => return Err(BatchError::BadBatchLength(batch_length)),
    }
    let header = BatchHeader {
        base_offset,
        batch_length,
        partition_leader_epoch,
        magic,
        crc: r.u32()?,
        attributes: r.i16()?,
        last_offset_delta: r.i32()?,
        base_timestamp: r.i64()?,
        max_timestamp: r.i64()?,
        producer_id: r.i64()?,
        producer_epoch: r.i16()?,
        base_sequence: r.i32()?,
        records_count: r.i32()?,
    };
    if header.records_count < 0 {
        return Err(BatchError::BadRecordCount(header.records_count));
    }
    Ok(header)
}

/// Writes `value` at `at` in `batch`, which must hold a full batch header.
pub(super) fn patch(batch: &mut [u8], at: usize, value: &[u8]) -> Result<(), BatchError> {
    let have = batch.len();
    if have < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated { needed: BATCH_HEADER_LEN, have });
    }
    let dst = batch
        .get_mut(at..at + value.len())
        .ok_or(BatchError::Truncated { needed: BATCH_HEADER_LEN, have })?;
    dst.copy_from_slice(value);
    Ok(())
}

/// Overwrite baseOffset in place (outside the CRC, as in Kafka, so the CRC
/// stays valid). Returns `Truncated` (and changes nothing) if `batch` is
/// shorter than a batch header; the rest of the header is not checked.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    patch(batch, 0, &base_offset.to_be_bytes())
}

/// Overwrite partitionLeaderEpoch in place (outside the CRC, as in Kafka).
/// Returns `Truncated` (and changes nothing) if `batch` is shorter than a
/// batch header; the rest of the header is not checked.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    patch(batch, 12, &epoch.to_be_bytes())
}

/// Stamp an idempotent producer's id, epoch and base sequence into a batch and
/// recompute its CRC (unlike the base offset, these fields are inside the CRC). For a
/// node re-sending batches on its own behalf, as the store-and-forward outbox does.
pub fn set_producer(
    batch: &mut [u8],
    id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Result<(), BatchError> {
    patch(batch, 43, &id.to_be_bytes())?;
    patch(batch, 51, &epoch.to_be_bytes())?;
    patch(batch, 53, &base_sequence.to_be_bytes())?;
    let crc = crc32c::crc32c(batch.get(ATTRIBUTES_OFFSET..).unwrap_or_default());
    patch(batch, CRC_OFFSET, &crc.to_be_bytes())
}

/// `sequence + increment` as Kafka counts producer sequences: past `i32::MAX` they wrap
/// to 0 (not to `i32::MIN`), so a batch's last sequence is
/// `increment_sequence(base_sequence, last_offset_delta)` and the next batch starts at
/// `increment_sequence(last, 1)`. A negative `increment` (no valid batch has one) wraps
/// as two's complement.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if increment >= 0 && sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence.wrapping_add(increment)
    }
}

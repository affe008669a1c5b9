//! Kafka record batch format v2 (magic 2), byte for byte.
//!
//! This module owns the on-wire and on-disk representation of record batches:
//! building uncompressed batches ([`BatchBuilder`]), parsing and validating a
//! batch received from a client ([`parse_header`], [`validate`]) or, stored, from a
//! peer ([`validate_replicated`]), patching the
//! two fields the leader assigns ([`set_base_offset`],
//! [`set_partition_leader_epoch`]), decoding records ([`records`]),
//! dropping records from a stored batch for compaction ([`retain_records`])
//! and splitting a concatenation of batches ([`split_batches`]).
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! offset  field
//!  0      baseOffset            i64
//!  8      batchLength           i32   bytes after this field
//! 12      partitionLeaderEpoch  i32
//! 16      magic                 i8    = 2
//! 17      crc                   u32   CRC32C of bytes 21..end
//! 21      attributes            i16
//! 23      lastOffsetDelta       i32
//! 27      baseTimestamp         i64
//! 35      maxTimestamp          i64
//! 43      producerId            i64
//! 51      producerEpoch         i16
//! 53      baseSequence          i32
//! 57      recordsCount          i32
//! 61      records...
//! ```
//!
//! Every decoding function is total: hostile input yields a [`BatchError`],
//! never a panic, and no allocation is sized from a length that has not first
//! been checked against the bytes actually present.

use std::iter::FusedIterator;

mod replicated;
pub use replicated::validate_replicated;

/// The only batch format version this module reads or writes.
pub const MAGIC_V2: i8 = 2;
/// Size of the fixed batch header, i.e. the offset of the first record.
pub const BATCH_HEADER_LEN: usize = 61;
/// `producerId` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producerEpoch` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `baseSequence` of a batch from a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;
/// `partitionLeaderEpoch` written by producers (the leader overwrites it).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Bytes before and including `batchLength` (Kafka's `LOG_OVERHEAD`).
pub const LOG_OVERHEAD: usize = 12;
/// Offset of the `magic` byte.
pub const MAGIC_OFFSET: usize = 16;
/// Offset of the `crc` field.
pub const CRC_OFFSET: usize = 17;
/// Offset of `attributes`, where the CRC-covered region starts.
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Offset of `recordsCount`, the last header field.
const RECORDS_COUNT_OFFSET: usize = 57;

/// Attribute bits 0-2: compression codec (0 = none).
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are LogAppendTime rather than CreateTime.
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
/// Attribute bit 4: the batch is part of a transaction.
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit 5: the batch holds control records (commit/abort markers).
pub const CONTROL_FLAG: i16 = 0x20;

/// Smallest `batchLength` that can hold the fixed header.
const MIN_BATCH_LENGTH: usize = BATCH_HEADER_LEN - LOG_OVERHEAD;
/// Smallest possible encoded record: seven one-byte fields (length,
/// attributes, timestampDelta, offsetDelta, keyLength, valueLength,
/// headersCount). Used to bound capacity reservations.
const MIN_RECORD_LEN: usize = 7;

/// Why a batch (or a slice claimed to be one) was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BatchError {
    /// Input ended before a field was complete: `needed` bytes were required
    /// (measured from the start of the batch) but only `have` exist.
    #[error("truncated batch: needed {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    /// The magic byte is not 2.
    #[error("unsupported record batch magic {0} (only 2 is supported)")]
    BadMagic(i8),
    /// `batchLength` is negative or too small to hold the fixed header.
    #[error("invalid batchLength {0}")]
    BadBatchLength(i32),
    /// `recordsCount` is negative.
    #[error("invalid recordsCount {0}")]
    BadRecordCount(i32),
    /// The stored CRC32C does not match the bytes.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The slice is longer than `12 + batchLength` (trailing bytes).
    #[error("batch length mismatch: header says {declared} bytes, slice has {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    /// The records section ended after `decoded` whole records although the
    /// header announced `declared`.
    #[error("record count mismatch: header says {declared}, decoded {decoded}")]
    RecordCountMismatch { declared: i32, decoded: usize },
    /// Record number `index` carries `offsetDelta` `found` instead of `index`.
    #[error("record {index} has offsetDelta {found}, expected {index}")]
    OffsetDeltaMismatch { index: i32, found: i32 },
    /// `lastOffsetDelta` disagrees with the number of records.
    #[error("lastOffsetDelta {stored} does not match record count (expected {expected})")]
    LastOffsetDeltaMismatch { stored: i32, expected: i32 },
    /// A varint longer than 5 bytes (varlong: 10) starting at `offset`.
    #[error("malformed varint at offset {offset}")]
    BadVarint { offset: usize },
    /// The batch is compressed with this codec; only uncompressed is supported.
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),
    /// The batch is larger than the configured maximum.
    #[error("batch of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    /// Bytes left in the records section after the last announced record.
    #[error("{count} unexpected bytes after the last record at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    /// A record is structurally invalid.
    #[error("invalid record: {reason}")]
    InvalidRecord { reason: &'static str },
    /// A stored batch's `baseOffset` is negative, or its last offset overflows.
    #[error("invalid baseOffset {0} for a stored batch")]
    BadBaseOffset(i64),
    /// `lastOffsetDelta` is negative: the batch would cover no offsets.
    #[error("invalid lastOffsetDelta {0} (a batch covers at least one offset)")]
    BadLastOffsetDelta(i32),
    /// Record number `index` of a stored batch has an offset delta outside
    /// `0..=lastOffsetDelta`, or not above the previous record's.
    #[error("record {index} has offsetDelta {found}, outside 0..={last_offset_delta} or out of order")]
    OffsetDeltaOutOfRange { index: i32, found: i32, last_offset_delta: i32 },
}

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

/// A record header: a UTF-8 key and an optional (nullable) value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A decoded record with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

// ---------------------------------------------------------------------------
// Varints
// ---------------------------------------------------------------------------

/// ZigZag-encodes a 32-bit value so small magnitudes get short varints.
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// ZigZag-encodes a 64-bit value.
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends `v` as a zigzag varint, as Kafka's `ByteUtils.writeVarint`.
fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, u64::from(zigzag32(v)));
}

/// Appends `v` as a zigzag varlong, as Kafka's `ByteUtils.writeVarlong`.
fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag64(v));
}

/// Appends an unsigned LEB128 value (7 bits per byte, low group first).
fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encoded size of `v` as a zigzag varint.
fn varint_len(v: i32) -> usize {
    uvarint_len(u64::from(zigzag32(v)))
}

/// Encoded size of `v` as a zigzag varlong.
fn varlong_len(v: i64) -> usize {
    uvarint_len(zigzag64(v))
}

/// Encoded size of an unsigned LEB128 value.
fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Clamps a length to `i32` for a length prefix. A field this large cannot
/// fit in a batch (`batchLength` is an `i32`), and [`BatchBuilder::build`]
/// refuses such batches, so the clamped value is never emitted.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

// ---------------------------------------------------------------------------
// Reader: a bounds-checked cursor over a batch
// ---------------------------------------------------------------------------

/// Cursor over `buf[..end]`. Positions are absolute within `buf` so that
/// errors report offsets from the start of the batch.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole of `buf`, starting at `pos`.
    fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos, end: buf.len() }
    }

    /// Bytes left before `end`.
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Consumes exactly `n` bytes, or reports how many were needed.
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        let truncated = BatchError::Truncated { needed: self.pos.saturating_add(n), have: self.end };
        let stop = match self.pos.checked_add(n) {
            Some(stop) if stop <= self.end => stop,
            _ => return Err(truncated),
        };
        let bytes = self.buf.get(self.pos..stop).ok_or(truncated)?;
        self.pos = stop;
        Ok(bytes)
    }

    /// Consumes a fixed-size array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BatchError> {
        let have = self.end;
        let needed = self.pos.saturating_add(N);
        self.take(N)?.try_into().map_err(|_| BatchError::Truncated { needed, have })
    }

    /// Consumes a big-endian `i8`.
    fn i8(&mut self) -> Result<i8, BatchError> {
        self.array::<1>().map(i8::from_be_bytes)
    }

    /// Consumes a big-endian `i16`.
    fn i16(&mut self) -> Result<i16, BatchError> {
        self.array::<2>().map(i16::from_be_bytes)
    }

    /// Consumes a big-endian `i32`.
    fn i32(&mut self) -> Result<i32, BatchError> {
        self.array::<4>().map(i32::from_be_bytes)
    }

    /// Consumes a big-endian `u32`.
    fn u32(&mut self) -> Result<u32, BatchError> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    /// Consumes a big-endian `i64`.
    fn i64(&mut self) -> Result<i64, BatchError> {
        self.array::<8>().map(i64::from_be_bytes)
    }

    /// Reads an unsigned LEB128 value of at most `max_bytes` bytes. Like
    /// Kafka's `ByteUtils.readVarint`, bits of the final byte that do not fit
    /// the target width are discarded rather than rejected.
    fn uvarint(&mut self, max_bytes: u32) -> Result<u64, BatchError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let [b] = self.array::<1>()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BatchError::BadVarint { offset: start })
    }

    /// Reads a zigzag varint (at most 5 bytes).
    fn varint(&mut self) -> Result<i32, BatchError> {
        // Truncating to 32 bits mirrors Java's int shifts.
        let raw = self.uvarint(5)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// Reads a zigzag varlong (at most 10 bytes).
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let raw = self.uvarint(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Reads a varint length prefix followed by that many bytes; -1 is null.
    /// The length is checked against the remaining bytes before any copy.
    fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, BatchError> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| BatchError::InvalidRecord { reason: what })?;
        self.take(len).map(Some)
    }
}

// ---------------------------------------------------------------------------
// Header parsing and in-place patching
// ---------------------------------------------------------------------------

/// Parse and check the fixed header only (length fields, magic); no CRC check. Never panics on any input.
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
fn patch(batch: &mut [u8], at: usize, value: &[u8]) -> Result<(), BatchError> {
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
pub fn set_producer(batch: &mut [u8], id: i64, epoch: i16, base_sequence: i32) -> Result<(), BatchError> {
    patch(batch, 43, &id.to_be_bytes())?;
    patch(batch, 51, &epoch.to_be_bytes())?;
    patch(batch, 53, &base_sequence.to_be_bytes())?;
    let crc = crc32c::crc32c(batch.get(ATTRIBUTES_OFFSET..).unwrap_or_default());
    patch(batch, CRC_OFFSET, &crc.to_be_bytes())
}

/// Kafka's control record type for a leader change (KIP-595): the key of the marker a
/// new leader writes at the start of its epoch.
pub const CONTROL_TYPE_LEADER_CHANGE: i16 = 2;

/// A control batch of one record marking the start of a leader's epoch: key = (version
/// 0, type [`CONTROL_TYPE_LEADER_CHANGE`]), value = the leader's epoch as big-endian
/// i64. Consumers skip control batches, as Kafka's do.
pub fn leader_change_marker(timestamp_ms: i64, epoch: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&CONTROL_TYPE_LEADER_CHANGE.to_be_bytes());
    let mut b = BatchBuilder::new();
    b.push(timestamp_ms, Some(&key), Some(&epoch.to_be_bytes()), &[]);
    let mut out = b.build().unwrap_or_default();
    // One small record always builds; set the control flag and recompute the CRC.
    let _ = patch(&mut out, ATTRIBUTES_OFFSET, &CONTROL_FLAG.to_be_bytes());
    let crc = crc32c::crc32c(out.get(ATTRIBUTES_OFFSET..).unwrap_or_default());
    let _ = patch(&mut out, CRC_OFFSET, &crc.to_be_bytes());
    out
}

// ---------------------------------------------------------------------------
// Record decoding
// ---------------------------------------------------------------------------

/// One record as it appears in the batch, borrowing key and value.
struct RawRecord<'a> {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    /// The whole record as encoded, length prefix included.
    encoded: &'a [u8],
}

/// Receives what [`walk_records`] decodes. Each record's headers are
/// delivered (in order) before the record itself, so validation can use a
/// sink that stores nothing and never allocates.
trait RecordSink<'a> {
    /// One header of the record currently being decoded.
    fn header(&mut self, key: &'a str, value: Option<&'a [u8]>);
    /// A fully decoded record; its headers were delivered just before.
    fn record(&mut self, rec: RawRecord<'a>);
}

/// Sink for [`validate`]: decoding is the check, nothing is kept.
struct Discard;

impl<'a> RecordSink<'a> for Discard {
    fn header(&mut self, _: &'a str, _: Option<&'a [u8]>) {}
    fn record(&mut self, _: RawRecord<'a>) {}
}

/// Decodes one record's headers (after the count) into `sink`.
fn decode_headers<'a>(body: &mut Reader<'a>, sink: &mut dyn RecordSink<'a>) -> Result<(), BatchError> {
    let count = body.varint()?;
    if count < 0 {
        return Err(BatchError::InvalidRecord { reason: "negative header count" });
    }
    for _ in 0..count {
        let key_len = body.varint()?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| BatchError::InvalidRecord { reason: "negative header key length" })?;
        let key = std::str::from_utf8(body.take(key_len)?)
            .map_err(|_| BatchError::InvalidRecord { reason: "header key is not valid UTF-8" })?;
        let value = body.nullable_bytes("negative header value length other than -1")?;
        sink.header(key, value);
    }
    Ok(())
}

/// Decodes one record at the reader's position into `sink`, returning its
/// offset delta.
fn decode_record<'a>(r: &mut Reader<'a>, sink: &mut dyn RecordSink<'a>) -> Result<i32, BatchError> {
    let record_start = r.pos;
    let len = r.varint()?;
    let len =
        usize::try_from(len).map_err(|_| BatchError::InvalidRecord { reason: "negative record length" })?;
    let body_start = r.pos;
    r.take(len)?;
    // The body is parsed through a sub-reader confined to the declared
    // length so a lying length cannot make fields bleed into the next record.
    let mut body = Reader { buf: r.buf, pos: body_start, end: r.pos };
    let _attributes = body.i8()?; // unused in v2, ignored as Kafka does
    let timestamp_delta = body.varlong()?;
    let offset_delta = body.varint()?;
    let key = body.nullable_bytes("negative key length other than -1")?;
    let value = body.nullable_bytes("negative value length other than -1")?;
    decode_headers(&mut body, sink)?;
    if body.remaining() != 0 {
        return Err(BatchError::InvalidRecord { reason: "record length does not match its fields" });
    }
    let encoded = r.buf.get(record_start..r.pos).unwrap_or_default();
    sink.record(RawRecord { timestamp_delta, offset_delta, key, value, encoded });
    Ok(offset_delta)
}

/// Checks everything about a batch occupying exactly `bytes` except the
/// records: header, length, CRC and compression. Shared by [`validate`] and
/// [`records`].
fn check_frame(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(bytes)?;
    let declared = header.total_len();
    if bytes.len() < declared {
        return Err(BatchError::Truncated { needed: declared, have: bytes.len() });
    }
    if bytes.len() > declared {
        return Err(BatchError::LengthMismatch { declared, actual: bytes.len() });
    }
    let covered = bytes.get(ATTRIBUTES_OFFSET..).unwrap_or_default();
    let computed = crc32c::crc32c(covered);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    if header.compression() != 0 {
        return Err(BatchError::UnsupportedCompression(header.compression()));
    }
    Ok(header)
}

/// Check one stored batch's framing and CRC32C without decoding its records: what a
/// node does before serving bytes it holds, so corrupt data is never served.
pub fn verify_crc(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    check_frame(bytes)
}

/// Walks the records section of a framed batch into `sink`. With `strict`,
/// offset deltas must be exactly `0..count`.
fn walk_records<'a>(
    bytes: &'a [u8],
    header: &BatchHeader,
    strict: bool,
    sink: &mut dyn RecordSink<'a>,
) -> Result<(), BatchError> {
    let mut r = Reader::new(bytes, BATCH_HEADER_LEN);
    for index in 0..header.records_count {
        if r.remaining() == 0 {
            // Ran out exactly at a record boundary: the count is the lie.
            return Err(BatchError::RecordCountMismatch {
                declared: header.records_count,
                decoded: usize::try_from(index).unwrap_or(0),
            });
        }
        let offset_delta = decode_record(&mut r, sink)?;
        if strict && offset_delta != index {
            return Err(BatchError::OffsetDeltaMismatch { index, found: offset_delta });
        }
    }
    if r.remaining() != 0 {
        return Err(BatchError::TrailingBytes { offset: r.pos, count: r.remaining() });
    }
    Ok(())
}

/// Full validation of ONE batch occupying exactly `bytes` (no trailing bytes).
///
/// Checks, in order: total size <= `max_batch_bytes` (before anything else,
/// so an oversized batch is never parsed); the header ([`parse_header`]);
/// `batchLength` consistent with `bytes.len()`; CRC32C; compression is none
/// (else `UnsupportedCompression`); at least one record; every record decodes
/// and lies within its length; offset deltas are `0..count` in order;
/// `recordsCount` matches; no trailing bytes; `lastOffsetDelta == count - 1`.
/// Does not allocate. Returns the header.
pub fn validate(bytes: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    if bytes.len() > max_batch_bytes {
        return Err(BatchError::TooLarge { size: bytes.len(), max: max_batch_bytes });
    }
    let header = check_frame(bytes)?;
    if header.records_count == 0 {
        // Kafka rejects producer batches with an empty offset range.
        return Err(BatchError::InvalidRecord { reason: "batch has no records" });
    }
    walk_records(bytes, &header, true, &mut Discard)?;
    let expected = header.records_count - 1;
    if header.last_offset_delta != expected {
        return Err(BatchError::LastOffsetDeltaMismatch { stored: header.last_offset_delta, expected });
    }
    Ok(header)
}

/// Sink for [`records`]: copies records out with absolute offsets and
/// timestamps.
struct Collect {
    header: BatchHeader,
    out: Vec<Record>,
    pending: Vec<Header>,
}

impl<'a> RecordSink<'a> for Collect {
    fn header(&mut self, key: &'a str, value: Option<&'a [u8]>) {
        self.pending.push(Header { key: key.to_owned(), value: value.map(<[u8]>::to_vec) });
    }

    fn record(&mut self, rec: RawRecord<'a>) {
        let h = &self.header;
        let timestamp = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(rec.timestamp_delta)
        };
        self.out.push(Record {
            offset: h.base_offset.wrapping_add(i64::from(rec.offset_delta)),
            timestamp,
            key: rec.key.map(<[u8]>::to_vec),
            value: rec.value.map(<[u8]>::to_vec),
            headers: std::mem::take(&mut self.pending),
        });
    }
}

/// Decode the records of one batch occupying exactly `bytes`.
///
/// Re-checks the frame (header, length, CRC32C, compression none) and the
/// record structure, so it is safe on arbitrary bytes: it never panics and
/// returns errors instead. Unlike [`validate`] it accepts zero-record
/// batches and non-contiguous offset deltas (as compaction can produce) and
/// applies no size limit. Offsets are `base_offset + offsetDelta`; timestamps
/// are `base_timestamp + timestampDelta`, or `max_timestamp` for every record
/// of a LogAppendTime batch, as Kafka's consumer reports them.
pub fn records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let header = check_frame(batch)?;
    // Bounded by the bytes present, so a huge recordsCount cannot force a
    // huge reservation.
    let count = usize::try_from(header.records_count).unwrap_or(0);
    let cap = count.min(batch.len().saturating_sub(BATCH_HEADER_LEN) / MIN_RECORD_LEN);
    let mut sink = Collect { header, out: Vec::with_capacity(cap), pending: Vec::new() };
    walk_records(batch, &header, false, &mut sink)?;
    Ok(sink.out)
}

/// Sink for [`retain_records`]: the decoded records and each one's encoded
/// bytes, to copy the kept ones verbatim.
struct CollectEncoded<'a> {
    records: Collect,
    encoded: Vec<&'a [u8]>,
}

impl<'a> RecordSink<'a> for CollectEncoded<'a> {
    fn header(&mut self, key: &'a str, value: Option<&'a [u8]>) {
        self.records.header(key, value);
    }

    fn record(&mut self, rec: RawRecord<'a>) {
        self.encoded.push(rec.encoded);
        self.records.record(rec);
    }
}

/// Rewrite one batch occupying exactly `bytes` without the records `keep`
/// refuses (it sees each record as [`records`] decodes it): what log
/// compaction stores in place of the original. `None` if every record is
/// kept.
///
/// The new batch keeps the original's header (base offset, partition leader
/// epoch, attributes, lastOffsetDelta, timestamps, producer id, epoch and base
/// sequence), so its offset range and producer sequence range are unchanged,
/// and the kept records byte for byte (their offset and timestamp deltas,
/// keys, values and headers); only batchLength, recordsCount and the CRC32C
/// are recomputed. Keeping no record gives a valid empty batch (recordsCount
/// 0), as Kafka's cleaner does; [`records`], [`verify_crc`] and
/// [`parse_header`] accept it, [`validate`] (for producers) does not. Checks
/// the input as [`records`] does and never panics.
pub fn retain_records(
    bytes: &[u8],
    mut keep: impl FnMut(&Record) -> bool,
) -> Result<Option<Vec<u8>>, BatchError> {
    let header = check_frame(bytes)?;
    let count = usize::try_from(header.records_count).unwrap_or(0);
    let cap = count.min(bytes.len().saturating_sub(BATCH_HEADER_LEN) / MIN_RECORD_LEN);
    let records = Collect { header, out: Vec::with_capacity(cap), pending: Vec::new() };
    let mut sink = CollectEncoded { records, encoded: Vec::with_capacity(cap) };
    walk_records(bytes, &header, false, &mut sink)?;
    let kept: Vec<&[u8]> =
        sink.records.out.iter().zip(&sink.encoded).filter(|(r, _)| keep(r)).map(|(_, e)| *e).collect();
    if kept.len() == sink.encoded.len() {
        return Ok(None);
    }
    let fixed = bytes.get(..BATCH_HEADER_LEN).unwrap_or_default();
    let mut out = Vec::with_capacity(fixed.len() + kept.iter().map(|e| e.len()).sum::<usize>());
    out.extend_from_slice(fixed);
    kept.iter().for_each(|e| out.extend_from_slice(e));
    // Smaller than the input, whose lengths fit in an i32.
    let batch_length = len_i32(out.len() - LOG_OVERHEAD);
    patch(&mut out, 8, &batch_length.to_be_bytes())?;
    patch(&mut out, RECORDS_COUNT_OFFSET, &len_i32(kept.len()).to_be_bytes())?;
    let crc = crc32c::crc32c(out.get(ATTRIBUTES_OFFSET..).unwrap_or_default());
    patch(&mut out, CRC_OFFSET, &crc.to_be_bytes())?;
    Ok(Some(out))
}

// ---------------------------------------------------------------------------
// Splitting a concatenation of batches
// ---------------------------------------------------------------------------

/// Iterator over the batches in a concatenation (see [`split_batches`]).
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Byte offset, within the input, of the next batch to be yielded (after
    /// an error: of the batch that failed). Lets a caller keep the valid
    /// prefix of the input.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<&'a [u8], BatchError>;

    /// Yields the next batch's bytes, framed by its header only (magic and
    /// `batchLength`); CRC and records are left to [`validate`]/[`records`].
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.bytes.get(self.pos..).filter(|r| !r.is_empty())?;
        let framed = parse_header(rest).and_then(|h| {
            let len = h.total_len();
            rest.get(..len).ok_or(BatchError::Truncated { needed: len, have: rest.len() })
        });
        match framed {
            Ok(batch) => {
                self.pos += batch.len();
                Some(Ok(batch))
            }
            Err(e) => {
                // One error ends the stream: after a bad frame there is no
                // reliable way to find the next batch boundary.
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for BatchIter<'_> {}

/// Iterate a concatenation of batches (what a fetch returns): yields each batch's byte slice; stops with an error item on a truncated/garbled trailer. Never panics.
///
/// Each item is framed from its header only (see [`parse_header`]); call
/// [`validate`] or [`records`] on it to check CRC and contents. `Truncated`
/// errors count bytes from the start of the failing batch; use
/// [`BatchIter::offset`] for its position. Empty input yields nothing.
pub fn split_batches(bytes: &[u8]) -> BatchIter<'_> {
    BatchIter { bytes, pos: 0, failed: false }
}

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

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
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) {
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
            .map(|h| varint_len(len_i32(h.key.len())) + h.key.len() + nullable_len(h.value.as_deref()))
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

#[cfg(test)]
mod tests;

//! Why a batch was rejected: one error type for every decoder of this module, with
//! the field and the position that failed. It holds no logic.

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
    /// The attributes name a compression codec Kafka does not define (5 to 7).
    #[error(
        "unsupported compression codec {0} (Kafka's are 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)"
    )]
    UnsupportedCompression(u8),
    /// A compressed batch's records do not decompress.
    #[error("{codec} records do not decompress: {reason}")]
    Decompress { codec: &'static str, reason: String },
    /// A compressed batch's records decompress to more than the bound (a decompression
    /// bomb, or a batch larger than anything a node reads).
    #[error("{codec} records decompress to more than {max} bytes")]
    DecompressedTooLarge { codec: &'static str, max: usize },
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
    #[error(
        "record {index} has offsetDelta {found}, outside 0..={last_offset_delta} or out of order"
    )]
    OffsetDeltaOutOfRange { index: i32, found: i32, last_offset_delta: i32 },
}

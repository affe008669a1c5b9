//! Kafka record batch format v2 (magic 2), byte for byte.
//!
//! This module owns the on-wire and on-disk representation of record batches:
//! building uncompressed batches ([`BatchBuilder`]), parsing and validating a
//! batch received from a client ([`parse_header`], [`validate`]) or, stored, from a
//! peer ([`validate_replicated`]), patching the
//! two fields the leader assigns ([`set_base_offset`],
//! [`set_partition_leader_epoch`]), decoding records ([`records`]),
//! dropping records from a stored batch for compaction ([`retain_records`])
//! and splitting a concatenation of batches ([`split_batches`]). Compressed batches
//! (gzip, snappy, lz4, zstd) are validated by header and CRC and kept as sent; reading
//! their records decompresses them into a bounded buffer ([`decompress`]).
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
//!
//! Submodules: `header` (the fixed header, parsed and patched), `varint` (Kafka's
//! varints and the bounds-checked reader), `validate` (a producer's batch, a stored
//! batch's frame and CRC), `replicated` (a stored batch from a peer), `records`
//! (decoding, compaction's rewrite), `compression` (the codecs, bounded), `split` (a
//! concatenation of batches), `builder`
//! (encoding) and `control` (the leader's epoch-start marker). Everything public is
//! re-exported here: callers name `batch::X`.

mod builder;
mod compression;
mod control;
mod error;
mod header;
mod records;
mod replicated;
mod split;
mod validate;
mod varint;

pub use builder::BatchBuilder;
pub use compression::{decompress, Codec, MAX_DECOMPRESSED_BYTES};
pub use control::{leader_change_marker, CONTROL_TYPE_LEADER_CHANGE};
pub use error::BatchError;
pub use header::{
    increment_sequence, parse_header, set_base_offset, set_partition_leader_epoch, set_producer,
    BatchHeader,
};
pub use records::{records, records_within, retain_records, Header, Record};
pub use replicated::validate_replicated;
pub use split::{split_batches, BatchIter};
pub use validate::{validate, verify_crc};

// For `replicated`: the record walk it shares with `validate`.
use records::{RawRecord, RecordSink};
use validate::{check_frame, walk_records};

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

#[cfg(test)]
mod tests;

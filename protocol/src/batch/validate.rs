//! Validation of a producer's batch ([`validate`]) and of a stored batch's frame and CRC
//! ([`verify_crc`]): every check a node makes before it stores or serves bytes. Never
//! panics and never allocates. A compressed batch is checked by its header and CRC
//! only: its records are the producer's, stored and served as sent (never decompressed
//! on the write path).

use super::records::{decode_record, Discard, RecordSink};
use super::varint::Reader;
use super::{parse_header, BatchError, BatchHeader, Codec, ATTRIBUTES_OFFSET, BATCH_HEADER_LEN};

/// Checks everything about a batch occupying exactly `bytes` except the
/// records: header, length, CRC and a compression codec Kafka defines. Shared by
/// [`validate`] and [`records`].
pub(super) fn check_frame(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
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
    Codec::of(header.compression())?;
    Ok(header)
}

/// Check one stored batch's framing and CRC32C without decoding its records: what a
/// node does before serving bytes it holds, so corrupt data is never served.
pub fn verify_crc(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    check_frame(bytes)
}

/// Walks the records section of a framed batch into `sink`. With `strict`,
/// offset deltas must be exactly `0..count`.
pub(super) fn walk_records<'a>(
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
/// `batchLength` consistent with `bytes.len()`; CRC32C; a codec Kafka defines
/// (else `UnsupportedCompression`); at least one record; `lastOffsetDelta ==
/// count - 1`; and, uncompressed, every record decodes and lies within its length,
/// offset deltas are `0..count` in order, `recordsCount` matches, no trailing bytes.
/// A compressed batch's records are not decompressed (the CRC covers them). Does not
/// allocate. Returns the header.
pub fn validate(bytes: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    if bytes.len() > max_batch_bytes {
        return Err(BatchError::TooLarge { size: bytes.len(), max: max_batch_bytes });
    }
    let header = check_frame(bytes)?;
    if header.records_count == 0 {
        // Kafka rejects producer batches with an empty offset range.
        return Err(BatchError::InvalidRecord { reason: "batch has no records" });
    }
    if header.compression() == 0 {
        walk_records(bytes, &header, true, &mut Discard)?;
    }
    let expected = header.records_count - 1;
    if header.last_offset_delta != expected {
        return Err(BatchError::LastOffsetDeltaMismatch {
            stored: header.last_offset_delta,
            expected,
        });
    }
    Ok(header)
}

//! Validation of a stored batch that arrives from another node (a follower's fetch from
//! its leader): the structural checks [`super::validate`] applies to a producer's batch,
//! relaxed only where a stored batch may legally differ from one a producer sends.
//!
//! A stored batch may be a leader's epoch-start marker (a control batch), or one that
//! compaction rewrote ([`super::retain_records`]): fewer records than its offset range,
//! with gaps between their offset deltas, possibly none at all. Everything else is as
//! strict as for a producer: magic, lengths, CRC32C, a known codec, every record
//! (of an uncompressed batch) decodes within its length, no trailing bytes; and what
//! the node computes from the header (the offsets `baseOffset..=baseOffset +
//! lastOffsetDelta`) must make sense.

use super::{check_frame, walk_records, BatchError, BatchHeader, RawRecord, RecordSink};

/// Sink that checks each record's offset delta lies in the batch's offset range and
/// grows strictly (a stored batch's records are in offset order), keeping the first
/// violation.
struct DeltaCheck {
    last_offset_delta: i32,
    index: i32,
    prev: Option<i32>,
    bad: Option<BatchError>,
}

impl<'a> RecordSink<'a> for DeltaCheck {
    fn header(&mut self, _: &'a str, _: Option<&'a [u8]>) {}

    fn record(&mut self, rec: RawRecord<'a>) {
        let d = rec.offset_delta;
        let in_order = self.prev.is_none_or(|p| d > p);
        if self.bad.is_none() && (d < 0 || d > self.last_offset_delta || !in_order) {
            self.bad = Some(BatchError::OffsetDeltaOutOfRange {
                index: self.index,
                found: d,
                last_offset_delta: self.last_offset_delta,
            });
        }
        self.prev = Some(d);
        self.index = self.index.saturating_add(1);
    }
}

/// Full validation of ONE stored batch occupying exactly `bytes`, as received from a
/// peer. Checks, in order: total size <= `max_batch_bytes` (before anything else); the
/// frame (header, magic, `batchLength`, CRC32C, compression none); `baseOffset >= 0`;
/// `lastOffsetDelta >= 0`, and the last offset within `i64`; `recordsCount` at most
/// `lastOffsetDelta + 1`; every record decodes within its length, with offset deltas
/// increasing within `0..=lastOffsetDelta`; no trailing bytes. Does not allocate.
pub fn validate_replicated(
    bytes: &[u8],
    max_batch_bytes: usize,
) -> Result<BatchHeader, BatchError> {
    if bytes.len() > max_batch_bytes {
        return Err(BatchError::TooLarge { size: bytes.len(), max: max_batch_bytes });
    }
    let header = check_frame(bytes)?;
    let lod = header.last_offset_delta;
    if header.base_offset < 0 || header.base_offset.checked_add(i64::from(lod.max(0))).is_none() {
        return Err(BatchError::BadBaseOffset(header.base_offset));
    }
    if lod < 0 {
        return Err(BatchError::BadLastOffsetDelta(lod));
    }
    if i64::from(header.records_count) > i64::from(lod) + 1 {
        return Err(BatchError::LastOffsetDeltaMismatch {
            stored: lod,
            expected: header.records_count - 1,
        });
    }
    if header.compression() != 0 {
        return Ok(header); // stored as the producer sent it; the CRC covers the records
    }
    let mut check = DeltaCheck { last_offset_delta: lod, index: 0, prev: None, bad: None };
    walk_records(bytes, &header, false, &mut check)?;
    match check.bad {
        Some(e) => Err(e),
        None => Ok(header),
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    /// Recompute the CRC after editing CRC-covered bytes.
    fn recrc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
        b[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    }

    fn three_records() -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for k in [b"a", b"b", b"a"] {
            b.push(1_000, Some(k), Some(b"v"), &[]);
        }
        b.build().unwrap()
    }

    #[test]
    fn what_a_leader_stores_passes() {
        let batch = three_records();
        assert_eq!(validate_replicated(&batch, 1 << 20).unwrap().last_offset_delta, 2);
        assert!(validate_replicated(&leader_change_marker(5, 7), 1 << 20).unwrap().is_control());
        // Compaction keeps the last record of key "a" only: one record, offsets 0..=2,
        // which a producer's batch could not be and a stored one is.
        let compacted = retain_records(&batch, |r| r.offset == 2).unwrap().unwrap();
        assert!(validate(&compacted, 1 << 20).is_err());
        assert_eq!(validate_replicated(&compacted, 1 << 20).unwrap().records_count, 1);
        let emptied = retain_records(&batch, |_| false).unwrap().unwrap();
        assert!(validate_replicated(&emptied, 1 << 20).is_ok());
    }

    #[test]
    fn a_negative_last_offset_delta_is_refused() {
        let mut b = retain_records(&three_records(), |_| false).unwrap().unwrap();
        b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        recrc(&mut b);
        assert_eq!(
            verify_crc(&b).map(|h| h.last_offset_delta),
            Ok(-1),
            "the CRC alone lets it through"
        );
        assert_eq!(validate_replicated(&b, 1 << 20), Err(BatchError::BadLastOffsetDelta(-1)));
    }

    #[test]
    fn more_records_than_offsets_or_deltas_outside_the_range_are_refused() {
        let mut b = three_records();
        b[23..27].copy_from_slice(&1i32.to_be_bytes());
        recrc(&mut b);
        assert_eq!(
            validate_replicated(&b, 1 << 20),
            Err(BatchError::LastOffsetDeltaMismatch { stored: 1, expected: 2 })
        );
        // Keep records 0 and 2 (deltas 0 and 2), then claim the range ends at 1.
        let mut c = retain_records(&three_records(), |r| r.offset != 1).unwrap().unwrap();
        c[23..27].copy_from_slice(&1i32.to_be_bytes());
        recrc(&mut c);
        assert_eq!(
            validate_replicated(&c, 1 << 20),
            Err(BatchError::OffsetDeltaOutOfRange { index: 1, found: 2, last_offset_delta: 1 })
        );
    }

    #[test]
    fn a_negative_or_overflowing_base_offset_and_oversized_batches_are_refused() {
        for base in [-1, i64::MAX - 1] {
            let mut b = three_records();
            set_base_offset(&mut b, base).unwrap();
            assert_eq!(validate_replicated(&b, 1 << 20), Err(BatchError::BadBaseOffset(base)));
        }
        let b = three_records();
        assert_eq!(
            validate_replicated(&b, b.len() - 1),
            Err(BatchError::TooLarge { size: b.len(), max: b.len() - 1 })
        );
        let mut bad_magic = three_records();
        bad_magic[MAGIC_OFFSET] = 1;
        assert_eq!(validate_replicated(&bad_magic, 1 << 20), Err(BatchError::BadMagic(1)));
    }
}

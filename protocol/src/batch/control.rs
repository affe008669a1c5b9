//! Control batches: the marker a new leader writes at the start of its epoch. Built
//! here, recognised by the control attribute bit ([`super::BatchHeader::is_control`]).

use super::header::patch;
use super::{BatchBuilder, ATTRIBUTES_OFFSET, CONTROL_FLAG, CRC_OFFSET};

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

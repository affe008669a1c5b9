//! Offsets-compaction bookkeeping: where each live key's latest record sits in the
//! offsets log, and which live records to write again so that compaction can free the
//! head of the log (a group that committed once and then went quiet would otherwise pin
//! it forever).
//!
//! Pure and meaning-free: it knows keys and offsets, not what the records say; the shard
//! (`super`) supplies the current values of the keys it picks.

use meshlog_protocol::group::OffsetsKey;
use std::collections::{BTreeMap, HashMap};

/// Offsets a partition may hold beyond four per live key before the oldest live
/// records are written again (so compaction can free the head of the log).
pub const REFRESH_SLACK: u64 = 1_000;
/// Live records written again per tick at most.
pub const REFRESH_BATCH: usize = 256;

/// The log offset of every live key's latest record, both ways.
#[derive(Debug, Clone, Default)]
pub(super) struct Live {
    by_offset: BTreeMap<u64, OffsetsKey>,
    at: HashMap<OffsetsKey, u64>,
}

impl Live {
    pub(super) fn clear(&mut self) {
        self.by_offset.clear();
        self.at.clear();
    }

    /// Live keys.
    pub(super) fn len(&self) -> usize {
        self.at.len()
    }

    /// Where `key`'s latest record is (`None`: deleted, or never written here).
    #[cfg(test)]
    pub(super) fn offset(&self, key: &OffsetsKey) -> Option<u64> {
        self.at.get(key).copied()
    }

    /// Note that `key`'s latest record is at `offset` (`None`: deleted).
    pub(super) fn place(&mut self, key: OffsetsKey, offset: Option<u64>) {
        if let Some(old) = self.at.remove(&key) {
            self.by_offset.remove(&old);
        }
        if let Some(o) = offset {
            self.by_offset.insert(o, key.clone());
            self.at.insert(key, o);
        }
    }

    /// The oldest live keys (at most [`REFRESH_BATCH`]), once they keep more than half
    /// of a log holding `log_start..log_end` from being compacted away and the log is
    /// well past the live keys' size; else none.
    pub(super) fn stale(&self, log_start: u64, log_end: u64) -> Vec<OffsetsKey> {
        let held = log_end.saturating_sub(log_start);
        let Some((&oldest, _)) = self.by_offset.iter().next() else { return Vec::new() };
        if held <= 4 * self.len() as u64 + REFRESH_SLACK || oldest >= log_start + held / 2 {
            return Vec::new();
        }
        self.by_offset.values().take(REFRESH_BATCH).cloned().collect()
    }

    /// The two maps hold as many placements (each key at one offset, each offset one
    /// key): cheap enough to check after every step.
    pub(super) fn consistent(&self) -> bool {
        self.by_offset.len() == self.at.len()
    }
}

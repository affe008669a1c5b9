//! Log compaction of one partition replica (`cleanup.policy=compact`): in the committed
//! part of the log, keep only the latest record of each key.
//!
//! It owns rewriting committed batches in place and deleting the leading batches left
//! without records. It must not delete a batch from the middle of the log (the replica
//! core's entries are recovered from the stored batches and must stay contiguous, and
//! followers fetch by entry), touch a batch that reaches the high watermark, or change
//! a batch's offset range, epoch or producer sequence range: the core's entries are the
//! same before and after, only records inside them disappear.
//!
//! Why it may run beside the replica's driver (appends, truncations, reads):
//! - Appends go to the log end, at or above the HW. Truncations never cut committed
//!   entries, which are all below the HW (the core never truncates below its own HW,
//!   and this replica's saved HW only ever counted entries a majority held). So the
//!   batches compaction rewrites are never written by anyone else.
//! - Even so, a rewrite is a compare-and-swap of exactly the bytes that were read
//!   ([`crate::storage::PartitionLog::replace_many`]): it can never bring back a batch
//!   that was removed meanwhile, nor overwrite one stored again.
//! - A segment file is rewritten whole and swapped in atomically: a reader, or a node
//!   that crashes, sees the old batch or the new one, both whole and valid, over the
//!   same offsets.
//! - Compaction and retention both run from the node's one retention task, never at
//!   once on a partition.

use super::Partition;
use crate::storage::{StorageError, StoredBytes};
use meshlog_protocol::batch::{self, BatchHeader, Record};
use meshlog_protocol::types::TopicConfig;
use std::collections::HashMap;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Batches stored again without some of their records.
    pub batches_rewritten: usize,
    /// Batches without records deleted from the log start.
    pub batches_removed: usize,
    /// Records dropped from rewritten batches.
    pub records_removed: usize,
    /// Bytes of the committed batches examined.
    pub bytes_before: u64,
    /// Bytes of the same batches afterwards (a deleted batch counts 0).
    pub bytes_after: u64,
}

impl CompactStats {
    /// Whether the pass changed anything stored.
    pub fn changed(&self) -> bool {
        self.batches_rewritten > 0 || self.batches_removed > 0
    }
}

/// A committed batch and its records (none decoded for a control batch).
struct Committed {
    base: u64,
    bytes: StoredBytes,
    header: BatchHeader,
    records: Vec<Record>,
}

impl Partition {
    /// Compact this replica's committed log by key: drop every record with a key that a
    /// later record below the high watermark supersedes, and a tombstone (null value)
    /// that is the latest of its key once its batch's max timestamp is more than
    /// `delete.retention.ms` before `now_ms`. Records without a key and control batches
    /// are kept. Changed batches are rewritten in place (empty ones stay, as empty
    /// batches); then the leading batches without records are deleted and the log
    /// start advances, the log's last batch excepted. Only batches wholly below the HW
    /// are touched. Reads the whole committed log.
    pub fn compact(&self, config: &TopicConfig, now_ms: i64) -> Result<CompactStats, StorageError> {
        let _head = self.head();
        let hw = self.high_watermark();
        let committed = self.committed_batches(hw)?;
        let latest = latest_offsets(&committed);
        let retention_ms = i64::try_from(config.delete_retention_ms).unwrap_or(i64::MAX);
        let tombstones_before_ms = now_ms.saturating_sub(retention_ms);
        let mut stats = CompactStats::default();
        let mut rewrites = Vec::new();
        for c in &committed {
            stats.bytes_before += c.bytes.len() as u64;
            stats.bytes_after += c.bytes.len() as u64;
            let expired = c.header.max_timestamp < tombstones_before_ms;
            let keep = |r: &Record| match &r.key {
                None => true,
                Some(k) => latest.get(k) == Some(&r.offset) && (r.value.is_some() || !expired),
            };
            if !c.header.is_control() && !c.records.iter().all(keep) {
                if let Some(new) = self.retained(c, keep) {
                    rewrites.push((c, new));
                }
            }
        }
        self.rewrite(&rewrites, &mut stats)?;
        self.drop_empty_prefix(hw, &mut stats)?;
        Ok(stats)
    }

    /// The batches wholly below `hw`, in order, decoded. Stops (with a warning) at a
    /// batch that does not decode: what lies beyond it is left alone.
    fn committed_batches(&self, hw: u64) -> Result<Vec<Committed>, StorageError> {
        let mut out = Vec::new();
        for entry in self.log.iter() {
            let (base, bytes) = entry?;
            let header = batch::parse_header(&bytes).ok().filter(|h| h.base_offset == base as i64);
            if header.is_some_and(|h| base + h.last_offset_delta as u64 + 1 > hw) {
                break;
            }
            let decoded = header.and_then(|h| match h.is_control() {
                true => Some((h, Vec::new())),
                false => batch::records(&bytes).ok().map(|r| (h, r)),
            });
            let Some((header, records)) = decoded else {
                let (topic, partition) = (&self.topic, self.id);
                tracing::warn!(topic, partition, offset = base, "compaction stops at a batch it cannot read");
                break;
            };
            out.push(Committed { base, bytes, header, records });
        }
        Ok(out)
    }

    /// `c` with only the records `keep` accepts, if that changes it.
    fn retained(&self, c: &Committed, keep: impl FnMut(&Record) -> bool) -> Option<Vec<u8>> {
        match batch::retain_records(&c.bytes, keep) {
            Ok(new) => new,
            // Cannot happen: the same bytes just decoded. Leave the batch as it is.
            Err(e) => {
                let (topic, partition) = (&self.topic, self.id);
                tracing::warn!(topic, partition, offset = c.base, error = %e, "cannot compact batch");
                None
            }
        }
    }

    /// Store each batch again as rewritten, if it is still stored as read (one rewrite
    /// of each segment file touched).
    fn rewrite(
        &self,
        rewrites: &[(&Committed, Vec<u8>)],
        stats: &mut CompactStats,
    ) -> Result<(), StorageError> {
        if rewrites.is_empty() {
            return Ok(());
        }
        let swaps: Vec<(u64, &[u8], &[u8])> =
            rewrites.iter().map(|(c, new)| (c.base, &*c.bytes, new.as_slice())).collect();
        let swapped = self.log.replace_many(&swaps)?;
        for ((c, new), swapped) in rewrites.iter().zip(swapped) {
            if !swapped {
                let (topic, partition) = (&self.topic, self.id);
                tracing::debug!(topic, partition, offset = c.base, "batch changed under compaction; skipped");
                continue;
            }
            let (old_len, new_len) = (c.bytes.len() as u64, new.len() as u64);
            let mut st = self.state();
            st.size_bytes = (st.size_bytes + new_len).saturating_sub(old_len);
            let kept = batch::parse_header(new).map_or(0, |h| h.records_count as usize);
            stats.batches_rewritten += 1;
            stats.records_removed += c.records.len().saturating_sub(kept);
            stats.bytes_after = (stats.bytes_after + new_len).saturating_sub(old_len);
        }
        Ok(())
    }

    /// Delete the leading batches below `hw` that hold no record (emptied batches and
    /// epoch-start markers), as retention deletes: the new log start is saved first.
    /// The log's last batch always stays: a reopened replica recovers its last epoch
    /// from it, and with an empty log it would count as holding nothing (epoch 0) when
    /// it compares logs in an election.
    fn drop_empty_prefix(&self, hw: u64, stats: &mut CompactStats) -> Result<(), StorageError> {
        let Some((last_base, _)) = self.log.last()? else { return Ok(()) };
        let mut doomed = Vec::new();
        for entry in self.log.iter() {
            let (base, bytes) = entry?;
            let Ok(h) = batch::parse_header(&bytes) else { break };
            let e = super::as_entry(base, &h);
            let holds_records = h.records_count > 0 && !h.is_control();
            if e.end() > hw || holds_records || base >= last_base {
                break;
            }
            doomed.push((base, e, bytes.len() as u64));
        }
        let removed = self.delete_head(&doomed)?;
        let bytes: u64 = doomed[..removed].iter().map(|d| d.2).sum();
        stats.batches_removed += removed;
        stats.bytes_after = stats.bytes_after.saturating_sub(bytes);
        Ok(())
    }
}

/// The offset of the latest record of each key in `committed` (control batches aside).
fn latest_offsets(committed: &[Committed]) -> HashMap<Vec<u8>, i64> {
    let mut latest = HashMap::new();
    for r in committed.iter().flat_map(|c| &c.records) {
        if let Some(k) = &r.key {
            latest.insert(k.clone(), r.offset);
        }
    }
    latest
}

#[cfg(test)]
mod tests;

//! The replica's view of its log: the entries (metadata of stored batches) in offset
//! order, and the questions the protocol asks of them (last epoch, where an epoch ends,
//! up-to-dateness).

use super::types::{Entry, Epoch};

/// Entries in offset order, contiguous from `start`.
#[derive(Debug, Clone, Default)]
pub struct Log {
    entries: Vec<Entry>,
    start: u64,
}

impl Log {
    /// A log holding `entries` (contiguous, in order) starting at `start`.
    pub fn new(start: u64, entries: Vec<Entry>) -> Log {
        Log { entries, start }
    }

    /// One past the last offset.
    pub fn end(&self) -> u64 {
        self.entries.last().map_or(self.start, Entry::end)
    }

    /// The epoch of the last entry (`Epoch(0)` for an empty log).
    pub fn last_epoch(&self) -> Epoch {
        self.entries.last().map_or(Epoch(0), |e| e.epoch)
    }

    /// Every entry.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Append an entry at the end.
    pub fn push(&mut self, e: Entry) {
        debug_assert_eq!(e.base, self.end(), "entries are contiguous");
        self.entries.push(e);
    }

    /// Drop every entry at or after `end` (which must be an entry boundary or beyond).
    pub fn truncate(&mut self, end: u64) {
        let keep = self.entries.partition_point(|e| e.end() <= end);
        self.entries.truncate(keep);
    }

    /// The end of epoch `epoch` in this log: where the first entry of a later epoch
    /// starts, or the log end. `None` if the log has no entry of exactly `epoch` (epoch
    /// 0, "nothing", always ends at the log start).
    pub fn end_of_epoch(&self, epoch: Epoch) -> Option<u64> {
        if epoch == Epoch(0) {
            return Some(
                self.entries.first().filter(|e| e.epoch == Epoch(0)).map_or(self.start, |_| self.end()),
            );
        }
        if !self.entries.iter().any(|e| e.epoch == epoch) {
            return None;
        }
        Some(self.entries.iter().find(|e| e.epoch > epoch).map_or(self.end(), |e| e.base))
    }

    /// The largest epoch in this log at or below `epoch`, and where it ends.
    pub fn floor_epoch(&self, epoch: Epoch) -> (Epoch, u64) {
        let floor = self.entries.iter().rev().map(|e| e.epoch).find(|e| *e <= epoch).unwrap_or(Epoch(0));
        (floor, self.end_of_epoch(floor).unwrap_or(self.start))
    }

    /// Whether a log ending with (`last_epoch`, `last_end`) is at least as up to date as
    /// this one (Raft's rule: later last epoch, or same epoch and at least as long).
    pub fn is_behind_or_equal(&self, last_epoch: Epoch, last_end: u64) -> bool {
        (last_epoch, last_end) >= (self.last_epoch(), self.end())
    }

    /// Up to `max` entries starting exactly at `offset` (empty if `offset` is not an entry
    /// boundary in this log).
    pub fn from(&self, offset: u64, max: usize) -> Vec<Entry> {
        let i = self.entries.partition_point(|e| e.base < offset);
        match self.entries.get(i) {
            Some(e) if e.base == offset => self.entries[i..].iter().take(max).copied().collect(),
            _ => Vec::new(),
        }
    }

    /// The entry that ends exactly at `end`, if any (for boundary checks).
    pub fn ends_at_boundary(&self, end: u64) -> bool {
        end == self.start || self.entries.binary_search_by(|e| e.end().cmp(&end)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(base: u64, count: u32, epoch: u64) -> Entry {
        Entry { base, count, epoch: Epoch(epoch), producer: None, epoch_start: false }
    }

    #[test]
    fn epoch_queries() {
        let log = Log::new(0, vec![e(0, 2, 1), e(2, 3, 1), e(5, 1, 3), e(6, 4, 3)]);
        assert_eq!(log.end(), 10);
        assert_eq!(log.last_epoch(), Epoch(3));
        assert_eq!(log.end_of_epoch(Epoch(1)), Some(5));
        assert_eq!(log.end_of_epoch(Epoch(3)), Some(10));
        assert_eq!(log.end_of_epoch(Epoch(2)), None);
        assert_eq!(log.floor_epoch(Epoch(2)), (Epoch(1), 5));
        assert_eq!(log.floor_epoch(Epoch(0)), (Epoch(0), 0));
        assert!(log.is_behind_or_equal(Epoch(3), 10));
        assert!(!log.is_behind_or_equal(Epoch(3), 9));
        assert!(log.is_behind_or_equal(Epoch(4), 0));
        assert_eq!(log.from(5, 10).len(), 2);
        assert!(log.from(4, 10).is_empty());
        let mut l2 = log.clone();
        l2.truncate(5);
        assert_eq!(l2.end(), 5);
        assert!(log.ends_at_boundary(5) && !log.ends_at_boundary(4));
    }
}

//! The replica's view of its log: the entries (metadata of stored batches) in offset
//! order, and the questions the protocol asks of them (last epoch, where an epoch ends,
//! up-to-dateness).

use super::types::{Entry, Epoch};

/// Entries in offset order, contiguous from `start`. What lay below `start` is gone
/// (retention deleted it, committed) but for its last epoch, `start_epoch`: Raft's
/// snapshot term. A log whose entries are all gone still compares in elections by
/// (`start_epoch`, `start`), never as an empty log.
#[derive(Debug, Clone, Default)]
pub struct Log {
    entries: Vec<Entry>,
    start: u64,
    start_epoch: Epoch,
}

impl Log {
    /// A log holding `entries` (contiguous, in order) starting at `start`.
    pub fn new(start: u64, entries: Vec<Entry>) -> Log {
        Log { entries, start, start_epoch: Epoch::new(0) }
    }

    /// The same log, with `epoch` as the epoch of the entry just below its start.
    pub fn with_start_epoch(mut self, epoch: Epoch) -> Log {
        self.start_epoch = epoch;
        self
    }

    /// The first offset it holds (or would hold).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The epoch of the last entry below the start (`Epoch::new(0)` if none is known).
    pub fn start_epoch(&self) -> Epoch {
        self.start_epoch
    }

    /// One past the last offset.
    pub fn end(&self) -> u64 {
        self.entries.last().map_or(self.start, Entry::end)
    }

    /// The epoch of the last entry (the start epoch for a log without entries).
    pub fn last_epoch(&self) -> Epoch {
        self.entries.last().map_or(self.start_epoch, |e| e.epoch)
    }

    /// Forget the entries that end at or before `start` (retention deleted them); the
    /// log then starts where the last of them ended.
    pub fn trim(&mut self, start: u64) {
        let gone = self.entries.partition_point(|e| e.end() <= start);
        if let Some(last) = gone.checked_sub(1).map(|i| self.entries[i]) {
            self.start = last.end();
            self.start_epoch = last.epoch;
            self.entries.drain(..gone);
        }
    }

    /// Drop every entry: the log continues, empty, from `start`, the entry below which
    /// was of `start_epoch`.
    pub fn reset(&mut self, start: u64, start_epoch: Epoch) {
        self.entries.clear();
        self.start = start;
        self.start_epoch = start_epoch;
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
    /// starts, or the log end. `None` if the log has no entry of exactly `epoch` and it
    /// is not the start epoch (which, without entries of its own, ends at the start;
    /// epoch 0, "nothing", is the start epoch of a log that never lost its head).
    pub fn end_of_epoch(&self, epoch: Epoch) -> Option<u64> {
        if !self.entries.iter().any(|e| e.epoch == epoch) {
            return (epoch == self.start_epoch).then_some(self.start);
        }
        Some(self.entries.iter().find(|e| e.epoch > epoch).map_or(self.end(), |e| e.base))
    }

    /// The largest epoch in this log at or below `epoch`, and where it ends.
    pub fn floor_epoch(&self, epoch: Epoch) -> (Epoch, u64) {
        let floor = self.entries.iter().rev().map(|e| e.epoch).find(|e| *e <= epoch);
        let floor = floor.unwrap_or(if self.start_epoch <= epoch { self.start_epoch } else { Epoch::new(0) });
        (floor, self.end_of_epoch(floor).unwrap_or(self.start))
    }

    /// Where `epoch` ends for a leader of `current` (Kafka's OffsetForLeaderEpoch, as its
    /// leader epoch cache answers): `None` for an epoch after `current`; the log end for
    /// `current` itself (it may have no entry yet); else the largest epoch at or below
    /// `epoch` that the log holds (or held just below its start) with the first offset
    /// of a later epoch, or `epoch` itself with the log start if it holds none.
    pub fn epoch_end(&self, epoch: Epoch, current: Epoch) -> Option<(Epoch, u64)> {
        if epoch > current {
            return None;
        }
        if epoch == current {
            return Some((current, self.end()));
        }
        let (floor, end) = self.floor_epoch(epoch);
        Some((if floor == Epoch::new(0) { epoch } else { floor }, end))
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
        Entry { base, count, epoch: Epoch::new(epoch), producer: None, epoch_start: false }
    }

    #[test]
    fn epoch_queries() {
        let log = Log::new(0, vec![e(0, 2, 1), e(2, 3, 1), e(5, 1, 3), e(6, 4, 3)]);
        assert_eq!(log.end(), 10);
        assert_eq!(log.last_epoch(), Epoch::new(3));
        assert_eq!(log.end_of_epoch(Epoch::new(1)), Some(5));
        assert_eq!(log.end_of_epoch(Epoch::new(3)), Some(10));
        assert_eq!(log.end_of_epoch(Epoch::new(2)), None);
        assert_eq!(log.floor_epoch(Epoch::new(2)), (Epoch::new(1), 5));
        assert_eq!(log.floor_epoch(Epoch::new(0)), (Epoch::new(0), 0));
        assert!(log.is_behind_or_equal(Epoch::new(3), 10));
        assert!(!log.is_behind_or_equal(Epoch::new(3), 9));
        assert!(log.is_behind_or_equal(Epoch::new(4), 0));
        assert_eq!(log.from(5, 10).len(), 2);
        assert!(log.from(4, 10).is_empty());
        let mut l2 = log.clone();
        l2.truncate(5);
        assert_eq!(l2.end(), 5);
        assert!(log.ends_at_boundary(5) && !log.ends_at_boundary(4));
    }

    #[test]
    fn epoch_ends_are_answered_as_kafkas_leader_epoch_cache_does() {
        let ep = Epoch::new;
        // Epoch 1 at 0..5 (no marker: elected over an empty log), 3 at 5..10; the
        // leader of epoch 4 has written nothing yet.
        let log = Log::new(0, vec![e(0, 5, 1), e(5, 1, 3), e(6, 4, 3)]);
        assert_eq!(log.epoch_end(ep(4), ep(4)), Some((ep(4), 10)), "the current epoch ends at the log end");
        assert_eq!(log.epoch_end(ep(5), ep(4)), None, "an epoch after the current one is unknown");
        assert_eq!(log.epoch_end(ep(3), ep(4)), Some((ep(3), 10)), "epoch 4 starts at the log end");
        assert_eq!(log.epoch_end(ep(2), ep(4)), Some((ep(1), 5)), "the largest epoch at or below 2");
        assert_eq!(log.epoch_end(ep(1), ep(4)), Some((ep(1), 5)));
        assert_eq!(log.epoch_end(ep(0), ep(4)), Some((ep(0), 0)), "below every epoch: the log start");
        // Retention deleted everything below 6 (the last deleted entry of epoch 3).
        let mut trimmed = log.clone();
        trimmed.trim(6);
        assert_eq!(trimmed.epoch_end(ep(3), ep(4)), Some((ep(3), 10)));
        assert_eq!(trimmed.epoch_end(ep(2), ep(4)), Some((ep(2), 6)), "only later epochs are left");
        // A leader's own epoch with a marker, after epoch 3.
        let mut led = log.clone();
        led.push(Entry { base: 10, count: 1, epoch: ep(4), producer: None, epoch_start: true });
        led.push(e(11, 2, 4));
        assert_eq!(led.epoch_end(ep(3), ep(4)), Some((ep(3), 10)));
        assert_eq!(led.epoch_end(ep(4), ep(4)), Some((ep(4), 13)));
    }

    #[test]
    fn a_trimmed_log_keeps_the_epoch_below_its_start() {
        let mut log = Log::new(0, vec![e(0, 2, 1), e(2, 3, 1), e(5, 1, 3), e(6, 4, 3)]);
        log.trim(4); // inside the second entry: only the first goes
        assert_eq!((log.start(), log.start_epoch(), log.entries().len()), (2, Epoch::new(1), 3));
        log.trim(6);
        assert_eq!((log.start(), log.start_epoch(), log.end()), (6, Epoch::new(3), 10));
        // Epoch 3 runs on past the start; epoch 1 is gone; nothing at or below 2 is held.
        assert_eq!(log.end_of_epoch(Epoch::new(3)), Some(10));
        assert_eq!(log.end_of_epoch(Epoch::new(1)), None);
        assert_eq!(log.floor_epoch(Epoch::new(2)), (Epoch::new(0), 6));
        log.trim(10);
        assert!(log.entries().is_empty());
        // Without entries it still compares as ending with epoch 3 at 10, not as empty.
        assert_eq!((log.last_epoch(), log.end()), (Epoch::new(3), 10));
        assert!(!log.is_behind_or_equal(Epoch::new(1), 50), "a stale candidate is not up to date");
        assert_eq!(log.end_of_epoch(Epoch::new(3)), Some(10));
        log.reset(20, Epoch::new(4));
        assert_eq!((log.start(), log.end(), log.last_epoch()), (20, 20, Epoch::new(4)));
        assert_eq!(log.floor_epoch(Epoch::new(5)), (Epoch::new(4), 20));
    }
}

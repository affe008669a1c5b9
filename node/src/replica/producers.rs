//! Idempotent producers: the last few batch sequences of each producer, kept from the
//! log itself (so they survive a leader change), to recognise retries and gaps.

use super::types::{Entry, ProducerSeq, ProducerState};
use meshlog_protocol::batch::increment_sequence;
use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer (Kafka keeps 5).
const RECENT_BATCHES: usize = 5;

/// Producers remembered for entries retention deleted, at most: the ones whose last
/// batch is oldest are forgotten first (Kafka expires them by time). It bounds the state
/// saved with a log start and sent with `Behind` (about 140 bytes each, so 1.4 MB).
pub const MAX_DELETED_PRODUCERS: usize = 10_000;

/// What a producer batch is, relative to what the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The next batch in sequence (or the first one seen).
    Fresh,
    /// A retry of a batch already in the log at `base` (ending at `end`).
    Duplicate {
        /// Where the original starts.
        base: u64,
        /// Where it ends.
        end: u64,
    },
    /// Sequences were skipped.
    OutOfOrder {
        /// The sequence expected.
        expected: i32,
    },
    /// An older producer epoch.
    Fenced,
    /// No state for this producer, and the batch does not start at sequence 0: its
    /// earlier batches were deleted with old entries, or have not arrived yet (a
    /// pipelined batch overtook the first). Kafka's UNKNOWN_PRODUCER_ID.
    UnknownProducer,
}

#[derive(Debug, Clone, Default)]
struct State {
    epoch: i16,
    /// (first seq, last seq, base offset, end offset), oldest first.
    recent: VecDeque<(i32, i32, u64, u64)>,
}

/// Producer states of one partition.
#[derive(Debug, Clone, Default)]
pub struct Producers {
    map: HashMap<i64, State>,
}

impl Producers {
    /// The states implied by a log's entries.
    pub fn rebuild(entries: &[Entry]) -> Producers {
        let mut p = Producers::default();
        for e in entries {
            p.observe(e);
        }
        p
    }

    /// The states implied by `snapshot` (what was remembered of deleted entries).
    pub fn from_snapshot(snapshot: &[ProducerState]) -> Producers {
        let map = snapshot
            .iter()
            .map(|s| (s.id, State { epoch: s.epoch, recent: s.recent.iter().copied().collect() }))
            .collect();
        Producers { map }
    }

    /// Every producer's state, by id.
    pub fn snapshot(&self) -> Vec<ProducerState> {
        let mut out: Vec<ProducerState> = self
            .map
            .iter()
            .map(|(id, st)| ProducerState {
                id: *id,
                epoch: st.epoch,
                recent: st.recent.iter().copied().collect(),
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// These states continued by `entries`.
    pub fn then(&self, entries: &[Entry]) -> Producers {
        let mut p = self.clone();
        for e in entries {
            p.observe(e);
        }
        p
    }

    /// Forget all but the `max` producers whose last batch ends latest.
    pub fn keep_latest(&mut self, max: usize) {
        if self.map.len() <= max {
            return;
        }
        let mut ends: Vec<(u64, i64)> =
            self.map.iter().map(|(id, st)| (st.recent.back().map_or(0, |r| r.3), *id)).collect();
        ends.sort_unstable();
        for (_, id) in &ends[..ends.len() - max] {
            self.map.remove(id);
        }
    }

    /// Account for an entry appended to the log.
    pub fn observe(&mut self, e: &Entry) {
        let Some(ps) = e.producer else { return };
        let st = self.map.entry(ps.id).or_default();
        if ps.epoch > st.epoch {
            *st = State { epoch: ps.epoch, recent: VecDeque::new() };
        }
        st.recent.push_back((ps.first_seq, ps.last_seq, e.base, e.end()));
        if st.recent.len() > RECENT_BATCHES {
            st.recent.pop_front();
        }
    }

    /// Classify a producer batch before appending it.
    pub fn check(&self, p: &ProducerSeq) -> Check {
        let Some(st) = self.map.get(&p.id) else {
            return if p.first_seq == 0 { Check::Fresh } else { Check::UnknownProducer };
        };
        if p.epoch < st.epoch {
            return Check::Fenced;
        }
        if p.epoch > st.epoch {
            return if p.first_seq == 0 { Check::Fresh } else { Check::OutOfOrder { expected: 0 } };
        }
        if let Some(&(_, _, base, end)) =
            st.recent.iter().find(|(f, l, _, _)| *f == p.first_seq && *l == p.last_seq)
        {
            return Check::Duplicate { base, end };
        }
        // Sequences wrap from i32::MAX to 0, as Kafka's do.
        let expected = st.recent.back().map_or(0, |(_, last, _, _)| increment_sequence(*last, 1));
        if p.first_seq == expected {
            Check::Fresh
        } else {
            Check::OutOfOrder { expected }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::types::Epoch;

    fn entry(base: u64, count: u32, first: i32) -> Entry {
        let producer = Some(ProducerSeq {
            id: 7,
            epoch: 0,
            first_seq: first,
            last_seq: increment_sequence(first, count as i32 - 1),
        });
        Entry { base, count, epoch: Epoch::new(1), producer, epoch_start: false }
    }

    #[test]
    fn retries_gaps_and_fencing() {
        let p = Producers::rebuild(&[entry(0, 3, 0), entry(3, 2, 3)]);
        let seq = |epoch, first, last| ProducerSeq { id: 7, epoch, first_seq: first, last_seq: last };
        assert_eq!(p.check(&seq(0, 3, 4)), Check::Duplicate { base: 3, end: 5 });
        assert_eq!(p.check(&seq(0, 5, 9)), Check::Fresh);
        assert_eq!(p.check(&seq(0, 7, 9)), Check::OutOfOrder { expected: 5 });
        assert_eq!(p.check(&seq(-1, 5, 9)), Check::Fenced);
        assert_eq!(p.check(&seq(1, 0, 0)), Check::Fresh);
        assert_eq!(p.check(&ProducerSeq { id: 8, epoch: 0, first_seq: 0, last_seq: 0 }), Check::Fresh);
        assert_eq!(
            p.check(&ProducerSeq { id: 8, epoch: 0, first_seq: 5, last_seq: 9 }),
            Check::UnknownProducer,
            "a producer never seen must start at 0"
        );
    }

    #[test]
    fn sequences_wrap_from_the_largest_to_zero() {
        // A batch of 3 starting at i32::MAX - 1 covers MAX-1, MAX, 0 (Kafka's wrap).
        let last = increment_sequence(i32::MAX - 1, 2);
        assert_eq!(last, 0);
        let wrapping = ProducerSeq { id: 7, epoch: 0, first_seq: i32::MAX - 1, last_seq: last };
        let e =
            Entry { base: 10, count: 3, epoch: Epoch::new(1), producer: Some(wrapping), epoch_start: false };
        let mut p = Producers::rebuild(&[entry(0, 10, i32::MAX - 11)]);
        assert_eq!(p.check(&wrapping), Check::Fresh);
        p.observe(&e);
        let seq = |first, last| ProducerSeq { id: 7, epoch: 0, first_seq: first, last_seq: last };
        assert_eq!(p.check(&seq(i32::MAX - 1, 0)), Check::Duplicate { base: 10, end: 13 });
        assert_eq!(p.check(&seq(1, 4)), Check::Fresh, "the next batch starts after 0");
        assert_eq!(p.check(&seq(i32::MIN, i32::MIN + 3)), Check::OutOfOrder { expected: 1 });
        let ends_at_max = Producers::rebuild(&[entry(0, 2, i32::MAX - 1)]);
        assert_eq!(ends_at_max.check(&seq(0, 0)), Check::Fresh);
    }

    #[test]
    fn keeping_the_latest_forgets_the_producers_whose_last_batch_is_oldest() {
        let of = |id: i64, base: u64| {
            let producer = Some(ProducerSeq { id, epoch: 0, first_seq: 0, last_seq: 0 });
            Entry { base, count: 1, epoch: Epoch::new(1), producer, epoch_start: false }
        };
        let mut p = Producers::rebuild(&[of(1, 0), of(2, 1), of(3, 2), of(1, 3)]);
        p.keep_latest(2);
        let ids: Vec<i64> = p.snapshot().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 3], "producer 2's last batch is the oldest");
    }
}

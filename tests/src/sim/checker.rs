//! The workload checker, run on the converged log after the heal: acknowledged `acks=all`
//! writes lost, values or producer sequences written twice, a producer's batches out of
//! sequence order, and committed offsets whose entry changed. The target is zero of each.

use std::collections::{HashMap, HashSet};

use super::storage::{starting_at, Stored, MARKER};
use super::world::World;

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// `acks=all` acknowledged values missing from their acknowledged offset.
    pub acked_lost: Vec<(u64, u64)>,
    /// Values present more than once.
    pub duplicated: Vec<u64>,
    /// Producer batches present twice (id, first seq).
    pub duplicated_seqs: Vec<(i64, i32)>,
    /// Producer batches whose sequence is not after the previous one's (id, first seq).
    pub reordered: Vec<(i64, i32)>,
    /// Committed offsets whose entry changed.
    pub changed: Vec<u64>,
    /// `acks=1` acknowledged values lost (allowed: reported, not a failure).
    pub leader_acked_lost: usize,
}

impl Verdict {
    /// Whether every count that must be zero is.
    pub fn clean(&self) -> bool {
        self.acked_lost.is_empty()
            && self.duplicated.is_empty()
            && self.duplicated_seqs.is_empty()
            && self.reordered.is_empty()
            && self.changed.is_empty()
    }
}

/// Check the final log `log` (the leader's; every replica holds the same) from its
/// `start` on: retention deleted what was below, committed.
pub(super) fn check(w: &World, log: &[Stored], start: u64) -> Verdict {
    let mut v = Verdict::default();
    let mut bases: HashMap<u64, Vec<u64>> = HashMap::new();
    for s in log.iter().filter(|s| s.payload & MARKER == 0) {
        bases.entry(s.payload).or_default().push(s.entry.base);
    }
    let at = |value: u64, base: u64| bases.get(&value).is_some_and(|b| b.contains(&base));
    v.acked_lost =
        w.inv.acked.keys().filter(|(base, value)| *base >= start && !at(*value, *base)).copied().collect();
    v.leader_acked_lost =
        w.acked_leader.iter().filter(|(value, base)| **base >= start && !at(**value, **base)).count();
    v.duplicated = bases.iter().filter(|(_, b)| b.len() > 1).map(|(value, _)| *value).collect();
    v.duplicated.sort_unstable();
    let mut last: HashMap<i64, i32> = HashMap::new();
    let mut seen = HashSet::new();
    for p in log.iter().filter_map(|s| s.entry.producer) {
        if !seen.insert((p.id, p.first_seq)) {
            v.duplicated_seqs.push((p.id, p.first_seq));
        } else if last.get(&p.id).is_some_and(|&prev| p.first_seq <= prev) {
            v.reordered.push((p.id, p.first_seq));
        }
        last.insert(p.id, p.last_seq);
    }
    v.changed = w
        .inv
        .committed
        .range(start..)
        .map(|(_, c)| c)
        .filter(|c| starting_at(log, c.entry.base).is_none_or(|s| s.hash != c.hash))
        .map(|c| c.entry.base)
        .collect();
    v
}

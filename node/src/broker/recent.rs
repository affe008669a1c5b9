//! The batches a leader stored last, kept in memory for its followers' fetches.
//!
//! Followers ask for exactly these moments after they were stored; reading them back
//! from the segment file cost a zeroed buffer, a page-cache copy and another copy per
//! follower. Each replica keeps at most [`REPLICA_BYTES`], and every replica of a node
//! together at most [`NODE_BYTES`], so a node leading thousands of written partitions
//! does not hold a mebibyte for each. When the node's budget is spent, a replica gives
//! up its own older batches for a new one, or keeps the new one out when that cannot
//! make room; its followers then read the file, as any fetch below what is kept does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes one replica keeps.
pub const REPLICA_BYTES: usize = 1 << 20;

/// Bytes every replica of a node keeps together.
pub const NODE_BYTES: usize = 64 << 20;

/// The bytes every replica of a node keeps, shared by their [`Recent`]s.
#[derive(Clone, Default)]
pub struct RecentBudget(Arc<AtomicUsize>);

impl RecentBudget {
    /// Bytes kept by every replica of this node now.
    pub fn used(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One replica's recent batches: (base offset, bytes as stored), in offset order, the
/// last one the batch stored last.
pub struct Recent {
    batches: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
    node: RecentBudget,
    replica_max: usize,
    node_max: usize,
}

impl Recent {
    /// An empty set within the default budgets, sharing `node`'s.
    pub fn new(node: RecentBudget) -> Recent {
        Recent::with_limits(node, REPLICA_BYTES, NODE_BYTES)
    }

    fn with_limits(node: RecentBudget, replica_max: usize, node_max: usize) -> Recent {
        Recent { batches: VecDeque::new(), bytes: 0, node, replica_max, node_max }
    }

    /// Keep `bytes`, just stored at `base`. This replica's older batches go first to
    /// make room; when even all of them would not make room on the node, the new batch
    /// is not kept. A batch at or below one kept means the log was cut, and everything
    /// kept goes.
    pub fn push(&mut self, base: u64, bytes: Vec<u8>) {
        if self.batches.back().is_some_and(|(b, _)| *b >= base) {
            self.clear();
        }
        let len = bytes.len();
        if len > self.replica_max {
            return self.clear();
        }
        while self.bytes + len > self.replica_max {
            self.pop_front();
        }
        if self.node.used().saturating_sub(self.bytes) + len > self.node_max {
            return;
        }
        while !self.reserve(len) {
            if !self.pop_front() {
                return;
            }
        }
        self.bytes += len;
        self.batches.push_back((base, bytes));
    }

    /// The kept batches from the one stored at `base` on, if it is kept.
    pub fn from(&self, base: u64) -> Option<impl Iterator<Item = (u64, &[u8])>> {
        let i = self.batches.binary_search_by_key(&base, |(b, _)| *b).ok()?;
        Some(self.batches.range(i..).map(|(b, v)| (*b, v.as_slice())))
    }

    /// Let every kept batch go.
    pub fn clear(&mut self) {
        self.node.0.fetch_sub(self.bytes, Ordering::SeqCst);
        self.batches.clear();
        self.bytes = 0;
    }

    /// Take `len` bytes of the node's budget, if it has them.
    fn reserve(&self, len: usize) -> bool {
        let max = self.node_max;
        self.node
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(len).filter(|&u| u <= max)
            })
            .is_ok()
    }

    fn pop_front(&mut self) -> bool {
        let Some((_, old)) = self.batches.pop_front() else { return false };
        self.bytes -= old.len();
        self.node.0.fetch_sub(old.len(), Ordering::SeqCst);
        true
    }
}

impl Drop for Recent {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases(r: &Recent, from: u64) -> Vec<u64> {
        r.from(from).map(|it| it.map(|(b, _)| b).collect()).unwrap_or_default()
    }

    #[test]
    fn a_replica_keeps_its_last_batches_within_its_budget() {
        let node = RecentBudget::default();
        let mut r = Recent::with_limits(node.clone(), 30, 100);
        for base in [0, 10, 20] {
            r.push(base, vec![0; 10]);
        }
        assert_eq!(bases(&r, 0), vec![0, 10, 20]);
        assert_eq!(bases(&r, 10), vec![10, 20]);
        assert!(r.from(5).is_none(), "not a kept base");
        r.push(30, vec![0; 15]);
        assert_eq!(bases(&r, 20), vec![20, 30], "the oldest went first");
        assert!(r.from(10).is_none());
        assert_eq!(node.used(), 25);
        r.push(40, vec![0; 31]);
        assert!(r.from(20).is_none() && r.from(40).is_none(), "too large for any budget: nothing kept");
        assert_eq!(node.used(), 0);
    }

    #[test]
    fn a_batch_at_or_below_a_kept_one_drops_them_all() {
        let node = RecentBudget::default();
        let mut r = Recent::with_limits(node.clone(), 100, 100);
        r.push(0, vec![1; 10]);
        r.push(10, vec![2; 10]);
        r.push(10, vec![3; 10]);
        assert_eq!(bases(&r, 10), vec![10]);
        assert!(r.from(0).is_none());
        assert_eq!(r.from(10).unwrap().next().unwrap().1, &[3; 10]);
        assert_eq!(node.used(), 10);
    }

    #[test]
    fn the_replicas_of_a_node_share_its_budget_and_give_it_back() {
        let node = RecentBudget::default();
        let mut a = Recent::with_limits(node.clone(), 30, 40);
        let mut b = Recent::with_limits(node.clone(), 30, 40);
        a.push(0, vec![0; 30]);
        b.push(0, vec![0; 10]);
        assert_eq!(node.used(), 40);
        // Even all of b's batches would not make room: b keeps what it has.
        b.push(1, vec![0; 20]);
        assert!(b.from(1).is_none());
        assert_eq!((bases(&b, 0), node.used()), (vec![0], 40));
        // They would: b's own older batches make way for a newer one.
        b.push(2, vec![0; 5]);
        assert_eq!((bases(&b, 2), node.used()), (vec![2], 35));
        b.push(3, vec![0; 10]);
        assert!(b.from(2).is_none());
        assert_eq!((bases(&b, 3), node.used()), (vec![3], 40));
        drop(a);
        assert_eq!(node.used(), 10, "a dropped replica gives its bytes back");
        b.clear();
        assert_eq!(node.used(), 0);
    }
}

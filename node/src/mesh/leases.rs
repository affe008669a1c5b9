//! Leader leases heard on gossip: which node leads a partition, as routing hints.
//!
//! A lease is only taken from a member of the partition's replica set (per the adopted
//! topic record), for a partition that exists, with an epoch not absurdly far above what
//! this node has seen, and it lapses after its lease time on this node's monotonic clock
//! unless renewed. Pure bookkeeping with time passed in; it never decides whether a write
//! is safe (the replicas' epochs do), but a poisoned table would send producers to a node
//! that does not lead, so every entry is checked and bounded.

use meshlog_protocol::mesh::LeaderLeases;
use meshlog_protocol::types::MAX_TOTAL_PARTITIONS;
use meshlog_protocol::{Epoch, NodeId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The longest lease trusted, whatever the announcement says. Honest nodes announce three
/// heartbeat intervals (a few seconds).
pub const MAX_LEASE_MS: u64 = 30_000;
/// How far above the highest epoch this node has seen for a partition an announced epoch
/// may be. Epochs grow by one per election, so a million elections unseen is not a real
/// mesh; it keeps `u64::MAX`-style epochs from pinning a partition's hint.
pub const MAX_LEASE_EPOCH_JUMP: u64 = 1 << 20;
/// The most leases held: one per partition the node knows of.
pub const MAX_LEASES: usize = MAX_TOTAL_PARTITIONS as usize;

/// What this node knows of a partition, to judge a lease for it.
pub struct PartitionFacts<'a> {
    /// The replica set, from the adopted topic record.
    pub replicas: &'a [NodeId],
    /// The epoch of this node's own replica of it, if it holds one.
    pub local_epoch: Option<Epoch>,
}

/// Why one announced lease was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseRefused {
    /// No such topic or partition here.
    #[error("lease for unknown partition {topic}-{partition}")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
    /// The announcer is not in the partition's replica set.
    #[error("{leader} announced a lease for {topic}-{partition} but is not one of its replicas")]
    NotAReplica {
        /// Announcer.
        leader: NodeId,
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
    /// The epoch is implausibly far above what this node has seen.
    #[error("lease for {topic}-{partition} at epoch {epoch}, more than {MAX_LEASE_EPOCH_JUMP} above {seen}")]
    EpochJump {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Announced epoch.
        epoch: Epoch,
        /// Highest epoch seen here.
        seen: Epoch,
    },
    /// The table is full.
    #[error("lease table full ({MAX_LEASES} leases)")]
    Full,
}

#[derive(Debug, Clone)]
struct Lease {
    epoch: Epoch,
    leader: NodeId,
    until: Instant,
}

/// The leases this node trusts, by (topic, partition).
#[derive(Debug, Default)]
pub struct LeaseTable {
    map: HashMap<(String, u32), Lease>,
}

impl LeaseTable {
    /// Take the valid leases of an announcement (whose `leader` network/ has checked is
    /// the gossip source); returns the refused ones. `facts` describes a partition, or
    /// `None` when this node does not know it.
    pub fn apply<'a>(
        &mut self,
        l: &LeaderLeases,
        now: Instant,
        facts: impl Fn(&str, u32) -> Option<PartitionFacts<'a>>,
    ) -> Vec<LeaseRefused> {
        let until = now + Duration::from_millis(l.lease_ms.min(MAX_LEASE_MS));
        let mut refused = Vec::new();
        for (topic, partition, epoch) in &l.partitions {
            let (topic, partition, epoch) = (topic.clone(), *partition, *epoch);
            let Some(f) = facts(&topic, partition) else {
                refused.push(LeaseRefused::UnknownPartition { topic, partition });
                continue;
            };
            if !f.replicas.contains(&l.leader) {
                refused.push(LeaseRefused::NotAReplica { leader: l.leader.clone(), topic, partition });
                continue;
            }
            let key = (topic, partition);
            let held = self.map.get(&key);
            let seen = held.map_or(Epoch::ZERO, |h| h.epoch).max(f.local_epoch.unwrap_or(Epoch::ZERO));
            if epoch.get() > seen.get().saturating_add(MAX_LEASE_EPOCH_JUMP) {
                let (topic, partition) = key;
                refused.push(LeaseRefused::EpochJump { topic, partition, epoch, seen });
                continue;
            }
            // A lapsed lease says nothing any more: any valid one replaces it.
            let replace = held.is_none_or(|h| epoch >= h.epoch || h.until <= now);
            if held.is_none() && self.map.len() >= MAX_LEASES {
                self.sweep(now);
                if self.map.len() >= MAX_LEASES {
                    refused.push(LeaseRefused::Full);
                    continue;
                }
            }
            if replace {
                self.map.insert(key, Lease { epoch, leader: l.leader.clone(), until });
            }
        }
        refused
    }

    /// The leader and epoch of a partition while its lease holds.
    pub fn get(&self, topic: &str, partition: u32, now: Instant) -> Option<(Epoch, &NodeId)> {
        let l = self.map.get(&(topic.to_string(), partition))?;
        (now < l.until).then_some((l.epoch, &l.leader))
    }

    /// Forget lapsed leases.
    pub fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, l| now < l.until);
    }

    /// Leases held (lapsed ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lease held for `topic`-`p`, its leader as text.
    fn got<'a>(table: &'a LeaseTable, topic: &str, p: u32, now: Instant) -> Option<(Epoch, &'a str)> {
        table.get(topic, p, now).map(|(e, l)| (e, l.as_str()))
    }

    fn set() -> Vec<NodeId> {
        vec!["a".into(), "b".into()]
    }

    fn lease(leader: &str, epoch: u64, lease_ms: u64) -> LeaderLeases {
        LeaderLeases { leader: leader.into(), lease_ms, partitions: vec![("t".into(), 0, Epoch::new(epoch))] }
    }

    fn facts<'a>(replicas: &'a [NodeId]) -> impl Fn(&str, u32) -> Option<PartitionFacts<'a>> + 'a {
        move |t: &str, p: u32| (t == "t" && p == 0).then_some(PartitionFacts { replicas, local_epoch: None })
    }

    #[test]
    fn leases_from_outside_the_set_or_for_unknown_partitions_are_refused() {
        let (mut table, now, replicas) = (LeaseTable::default(), Instant::now(), set());
        let refused = table.apply(&lease("rogue", 5, 1000), now, facts(&replicas));
        assert!(matches!(refused[..], [LeaseRefused::NotAReplica { .. }]), "{refused:?}");
        let unknown = LeaderLeases {
            leader: "a".into(),
            lease_ms: 1000,
            partitions: vec![("t".into(), 9, Epoch::new(1))],
        };
        let refused = table.apply(&unknown, now, facts(&replicas));
        assert!(matches!(refused[..], [LeaseRefused::UnknownPartition { .. }]), "{refused:?}");
        assert!(table.is_empty());
    }

    #[test]
    fn an_epoch_far_above_what_was_seen_is_refused() {
        let (mut table, now, replicas) = (LeaseTable::default(), Instant::now(), set());
        assert!(table.apply(&lease("a", 3, 1000), now, facts(&replicas)).is_empty());
        let refused = table.apply(&lease("b", u64::MAX, 1000), now, facts(&replicas));
        assert!(matches!(refused[..], [LeaseRefused::EpochJump { .. }]), "{refused:?}");
        assert_eq!(got(&table, "t", 0, now), Some((Epoch::new(3), "a")));
        // The next election's lease is taken.
        assert!(table.apply(&lease("b", 4, 1000), now, facts(&replicas)).is_empty());
        assert_eq!(got(&table, "t", 0, now), Some((Epoch::new(4), "b")));
    }

    #[test]
    fn a_lease_that_is_not_renewed_lapses() {
        let (mut table, now, replicas) = (LeaseTable::default(), Instant::now(), set());
        // Announced for an hour: trusted for MAX_LEASE_MS at most.
        table.apply(&lease("b", 9, 3_600_000), now, facts(&replicas));
        let later = now + Duration::from_millis(MAX_LEASE_MS + 1);
        assert_eq!(got(&table, "t", 0, later), None);
        // A lapsed lease of a higher epoch does not block a valid lower one.
        assert!(table.apply(&lease("a", 8, 1000), later, facts(&replicas)).is_empty());
        assert_eq!(got(&table, "t", 0, later), Some((Epoch::new(8), "a")));
        table.sweep(later + Duration::from_millis(1001));
        assert!(table.is_empty());
    }
}
